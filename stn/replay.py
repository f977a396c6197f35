"""Training replays: θ on a fixed probe batch and the loss/accuracy curves, recorded while a
model trains, saved beside it as ``models/NAME.replay.safetensors`` (a few hundred kB).

Crops are not stored: they are re-sampled from the probe images and the recorded θ, exactly
as the model sampled them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from stn.model import STClassifier

__all__ = ["Replay", "save_replay", "load_replay"]


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
    tensors = {
        "probe": (probe_x * 255).round().to(torch.uint8).contiguous(),
        "probe_labels": probe_y.contiguous(),
        "steps": torch.tensor(rep["step"], dtype=torch.int64),
        "params": torch.stack(rep["params"]).to(torch.float16).contiguous() if has_params else torch.zeros(0),
        "labels": torch.stack(rep["labels"]).contiguous(),
        "curve_step": torch.tensor(curve["step"], dtype=torch.int64),
        "curve_loss": torch.tensor(curve["loss"], dtype=torch.float32),
        "curve_acc": torch.tensor(curve["acc"], dtype=torch.float32),
    }
    save_file(tensors, str(path))
    Path(path).chmod(0o644)
    return path


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
    )
