"""Training replays: θ on a fixed probe batch and the loss/accuracy curves, recorded while a
model trains, saved beside it as ``models/NAME.replay.safetensors`` (a few hundred kB).

Crops are not stored: they are re-sampled from the probe images and the recorded θ, exactly
as the model sampled them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from stn.model import STClassifier

__all__ = ["Replay", "save_replay", "write_replay", "load_replay", "chain_replays"]


@dataclass
class Replay:
    """A recorded training run on a probe batch of P images with ``heads`` transformers."""

    probe: torch.Tensor  # (P, 1, H, W) float in [0, 1]
    probe_labels: torch.Tensor  # (P,) or (P, heads)
    steps: torch.Tensor  # (S,) step of each snapshot
    params: torch.Tensor  # (S, heads, P, n_params); (S, 0) for a CNN without transformer
    labels: torch.Tensor  # (S, P) predicted class at each snapshot
    curve_step: torch.Tensor  # (T,)
    curve_loss: torch.Tensor  # (T,) smoothed training loss
    curve_acc: torch.Tensor  # (T,) smoothed training accuracy
    # (R,) the step where each run after the first began: a fine-tuned model's replay chains its runs
    runs: torch.Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.int64))

    def crops(self, model: STClassifier, index: int) -> list[torch.Tensor]:
        """The crops ``(P, 1, h, w)`` per head at snapshot ``index``, sampled by ``model``'s transformer."""
        if model.st is None or self.params.numel() == 0:
            return [self.probe]
        return [model.st.warp(self.probe, self.params[index, k].float()) for k in range(self.params.shape[1])]


def save_replay(path: Path, results: dict) -> Path:
    """Write the replay recorded by :func:`stn.train.fit` (``results['replay']``, ``['curve']``, ``['probe']``)."""
    rep, curve = results["replay"], results["curve"]
    probe_x, probe_y = results["probe"]
    has_params = bool(rep["params"]) and rep["params"][0].numel() > 0
    replay = Replay(
        probe=probe_x,
        probe_labels=probe_y,
        steps=torch.tensor(rep["step"], dtype=torch.int64),
        params=torch.stack(rep["params"]) if has_params else torch.zeros(0),
        labels=torch.stack(rep["labels"]),
        curve_step=torch.tensor(curve["step"], dtype=torch.int64),
        curve_loss=torch.tensor(curve["loss"], dtype=torch.float32),
        curve_acc=torch.tensor(curve["acc"], dtype=torch.float32),
    )
    return write_replay(path, replay)


def write_replay(path: Path, replay: Replay) -> Path:
    """Write a :class:`Replay` (probe as bytes, θ as float16: a few hundred kB)."""
    tensors = {
        "probe": (replay.probe * 255).round().to(torch.uint8).contiguous(),
        "probe_labels": replay.probe_labels.contiguous(),
        "steps": replay.steps.to(torch.int64).contiguous(),
        "params": replay.params.to(torch.float16).contiguous() if replay.params.numel() else torch.zeros(0),
        "labels": replay.labels.contiguous(),
        "curve_step": replay.curve_step.to(torch.int64).contiguous(),
        "curve_loss": replay.curve_loss.to(torch.float32).contiguous(),
        "curve_acc": replay.curve_acc.to(torch.float32).contiguous(),
        "runs": replay.runs.to(torch.int64).contiguous(),
    }
    save_file(tensors, str(path))
    Path(path).chmod(0o644)
    return path


def chain_replays(parts: Sequence[Replay], embeddings: Sequence[torch.Tensor | None] | None = None) -> Replay:
    """One replay for a chain of runs, each started from the last one's weights (``stn train --init``).

    Run i's steps (snapshots and curve) continue from run i-1's last step, and its first snapshot,
    which repeats that run's last one (the same weights), is dropped. ``embeddings[i]``, an
    ``(n_params, n_params_i)`` matrix, maps run i's θ into the last run's family
    (:func:`stn.transforms.affine_embedding` when an affine model started a TPS); ``None`` keeps it.
    All runs must share the probe batch (:func:`stn.train.probe_batch` of one dataset).
    """
    if not parts:
        raise ValueError("chain_replays: no replays given")
    embeddings = list(embeddings) if embeddings is not None else [None] * len(parts)
    if len(embeddings) != len(parts):
        raise ValueError(f"chain_replays: {len(parts)} replays but {len(embeddings)} embeddings")
    first = parts[0]
    for k, r in enumerate(parts[1:], 1):
        same = r.probe.shape == first.probe.shape and torch.allclose(r.probe, first.probe, atol=0.5 / 255)
        if not same or not torch.equal(r.probe_labels, first.probe_labels):
            raise ValueError(f"chain_replays: run {k + 1} recorded another probe batch than run 1 (another dataset?)")
        if (r.params.numel() == 0) != (first.params.numel() == 0):
            raise ValueError("chain_replays: a CNN run (no θ) cannot continue a transformer run, or the reverse")
    steps, params, labels, c_step, c_loss, c_acc, runs = [], [], [], [], [], [], []
    offset = 0
    for k, (r, e) in enumerate(zip(parts, embeddings)):
        if k:
            runs.append(torch.tensor([offset]))
        runs.append(r.runs.to(torch.int64) + offset)
        keep = slice(0, None) if k == 0 else slice(1, None)
        steps.append(r.steps[keep] + offset)
        labels.append(r.labels[keep])
        if r.params.numel():
            p = r.params[keep].float()
            params.append(p @ e.to(p.dtype).T if e is not None else p)
        c_step.append(r.curve_step + offset)
        c_loss.append(r.curve_loss)
        c_acc.append(r.curve_acc)
        offset += int(r.steps[-1])
    widths = {p.shape[-1] for p in params}
    if len(widths) > 1:
        raise ValueError(f"chain_replays: θ of {sorted(widths)} numbers: give an embedding for the runs of another family")
    return Replay(
        probe=first.probe,
        probe_labels=first.probe_labels,
        steps=torch.cat(steps),
        params=torch.cat(params) if params else torch.zeros(0),
        labels=torch.cat(labels),
        curve_step=torch.cat(c_step),
        curve_loss=torch.cat(c_loss),
        curve_acc=torch.cat(c_acc),
        runs=torch.cat(runs).to(torch.int64),
    )


def load_replay(path: Path) -> Replay:
    """Read a replay file written by :func:`save_replay`."""
    t = load_file(str(path))
    return Replay(
        probe=t["probe"].float() / 255,
        probe_labels=t["probe_labels"],
        steps=t["steps"],
        params=t["params"].float(),
        labels=t["labels"],
        curve_step=t["curve_step"],
        curve_loss=t["curve_loss"],
        curve_acc=t["curve_acc"],
        runs=t.get("runs", torch.zeros(0, dtype=torch.int64)),
    )
