"""Training checkpoints: the whole state of a run stopped part-way, from which it finishes exactly
as if it had never stopped (:func:`stn.train.fit`, ``python -m stn train --resume``).

A checkpoint is a directory (the CLI's is ``MODELS_DIR/NAME.checkpoint/``) of two files:

- ``state-*.safetensors``: every tensor (weights, the optimiser's moments, random states, the
  epoch's order of the digits, the replay so far), under flattened keys such as
  ``trainer.optimizer.state.3.exp_avg``;
- ``checkpoint.json``: everything else (the run's settings, step counts, the LR schedule, the
  curve so far), with ``{"$tensor": KEY}`` where a tensor was, and the tensor file's name and
  SHA-256.

Nothing is pickled: safetensors holds only numbers, JSON only plain data (tuples and dicts with
non-string keys are tagged, ``{"$tuple": [...]}``, ``{"$items": [[key, value], ...]}``). Each file
is written under a temporary name and moved into place with ``os.replace``, the tensors first and
the JSON, which names them, last: a run killed while saving leaves the previous checkpoint whole.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load as load_tensors
from safetensors.torch import save as save_tensors

__all__ = ["FORMAT", "Checkpoint", "CheckpointError", "CheckpointMismatch", "check_same_run", "check_weights",
           "load_checkpoint", "peek", "remove_checkpoint", "save_checkpoint"]

FORMAT = "stn-checkpoint/1"
META = "checkpoint.json"  # the commit record: names the tensor file it goes with
_START_OVER = "delete the checkpoint to start the run over"


class CheckpointError(ValueError):
    """A checkpoint that cannot be resumed. ``problem`` names the file and what is wrong; the message
    adds what to do (the CLI words it with its own flags)."""

    def __init__(self, problem: str, fix: str = _START_OVER) -> None:
        super().__init__(f"{problem}: {fix}")
        self.problem = problem


class CheckpointMismatch(CheckpointError):
    """A whole checkpoint, but of a run with other settings than the one asked to resume it."""


@dataclass
class Checkpoint:
    """A checkpoint read back by :func:`load_checkpoint`."""

    path: Path  # its directory
    file: Path  # its checkpoint.json, the file messages name
    run: dict  # the run's settings (stn.train.run_settings): compared before resuming
    trainer: dict  # stn.train.Trainer.state_dict()
    records: dict  # what fit recorded so far: curve, replay, smoothed loss and accuracy, seconds, resumed_at
    notes: dict  # stored beside, not compared: the CLI's command line

    @property
    def step(self) -> int:
        return int(self.trainer["step_count"])

    @property
    def total_steps(self) -> int:
        return int(self.trainer["total_steps"])


# --------------------------------------------------------------------------- plain data + tensors


def _encode(obj: object, key: str, tensors: dict[str, torch.Tensor]) -> object:
    """``obj`` as JSON data, its tensors moved into ``tensors`` under dotted keys that start with ``key``."""
    if isinstance(obj, torch.Tensor):
        if key in tensors:
            raise ValueError(f"save_checkpoint: two tensors would be stored as {key!r}")
        tensors[key] = obj.detach().cpu().contiguous()
        return {"$tensor": key}
    if isinstance(obj, tuple):
        return {"$tuple": [_encode(v, f"{key}.{i}", tensors) for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [_encode(v, f"{key}.{i}", tensors) for i, v in enumerate(obj)]
    if isinstance(obj, dict):
        if all(isinstance(k, str) and not k.startswith("$") for k in obj):
            return {k: _encode(v, f"{key}.{k}", tensors) for k, v in obj.items()}
        if not all(isinstance(k, (str, int)) and not isinstance(k, bool) for k in obj):
            raise TypeError(f"save_checkpoint: {key} has keys that are neither strings nor integers")
        return {"$items": [[k, _encode(v, f"{key}.{k}", tensors)] for k, v in obj.items()]}  # the optimiser's 0, 1, ...
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"save_checkpoint: {key} is a {type(obj).__name__}, not plain data or a tensor")


def _decode(obj: object, tensors: dict[str, torch.Tensor]) -> object:
    """The inverse of :func:`_encode`; a ``KeyError`` names a tensor the file lacks."""
    if isinstance(obj, list):
        return [_decode(v, tensors) for v in obj]
    if isinstance(obj, dict):
        if obj.keys() == {"$tensor"}:
            return tensors[obj["$tensor"]]
        if obj.keys() == {"$tuple"}:
            return tuple(_decode(v, tensors) for v in obj["$tuple"])
        if obj.keys() == {"$items"}:
            return {k: _decode(v, tensors) for k, v in obj["$items"]}
        return {k: _decode(v, tensors) for k, v in obj.items()}
    return obj


# --------------------------------------------------------------------------- files


def _write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` whole or not at all: a temporary name, flushed to disk, then ``os.replace``."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())  # a closed laptop or a power cut must not leave a renamed but empty file
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def save_checkpoint(
    directory: str | os.PathLike, trainer: dict, *, run: dict | None = None, records: dict | None = None,
    notes: dict | None = None,
) -> Path:
    """Write a checkpoint into ``directory`` (made if missing), replacing the one there atomically.

    Args:
        trainer: :meth:`stn.train.Trainer.state_dict`.
        run: the run's settings, JSON (:func:`stn.train.run_settings`), compared on resuming.
        records: what the training loop recorded so far (tensors and plain data).
        notes: anything else to keep beside it, JSON (not compared).

    Returns:
        The path of its ``checkpoint.json``.
    """
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {}
    body = {
        "format": FORMAT,
        "step": int(trainer["step_count"]),
        "total_steps": int(trainer["total_steps"]),
        "run": json.loads(json.dumps(run or {})),  # plain JSON, or a TypeError now rather than a half-written file
        "notes": json.loads(json.dumps(notes or {})),
        "trainer": _encode(trainer, "trainer", tensors),
        "records": _encode(records or {}, "records", tensors),
    }
    blob = save_tensors(tensors, metadata={"format": FORMAT})
    # a new name each time: the checkpoint.json on disk keeps naming the old file until it is replaced
    name = f"state-{body['step']:08d}-{uuid.uuid4().hex[:8]}.safetensors"
    _write_atomic(d / name, blob)
    body["tensors"] = {"file": name, "sha256": hashlib.sha256(blob).hexdigest(), "bytes": len(blob)}
    _write_atomic(d / META, (json.dumps(body, indent=1) + "\n").encode())
    for old in d.glob("state-*.safetensors"):
        if old.name != name:
            old.unlink(missing_ok=True)
    return d / META


def peek(directory: str | os.PathLike) -> dict | None:
    """A checkpoint's ``checkpoint.json`` without its tensors (``step``, ``total_steps``, ``run``, ``notes``,
    ...), or None where there is none. Raises :class:`CheckpointError` where it is not readable JSON."""
    path = Path(directory) / META
    if not path.exists():
        return None
    try:
        body = json.loads(path.read_bytes())
    except OSError as exc:
        raise CheckpointError(f"{path} could not be read ({exc.strerror or exc})") from None
    except ValueError as exc:  # JSONDecodeError, or bytes that are not UTF-8: cut short, or not ours
        raise CheckpointError(f"{path} is damaged (not valid JSON: {exc})") from None
    if not isinstance(body, dict):
        raise CheckpointError(f"{path} is damaged (JSON, but not an object)")
    return body


_TRAINER_KEYS = ("model", "optimizer", "scheduler", "step_count", "total_steps", "images_seen", "data", "rng")


def load_checkpoint(directory: str | os.PathLike) -> Checkpoint:
    """Read the checkpoint in ``directory``, checked whole: its JSON, its tensor file's SHA-256, and that
    every key the training loop needs is there. Raises :class:`CheckpointError` naming the file."""
    d = Path(directory)
    meta = d / META
    body = peek(d)
    if body is None:
        raise CheckpointError(f"there is no checkpoint in {d} (no {META})", "nothing to resume")
    missing = [k for k in ("format", "run", "notes", "trainer", "records", "tensors") if k not in body]
    if missing:
        raise CheckpointError(f"{meta} is damaged (it has no {missing[0]!r})")
    if body["format"] != FORMAT:
        raise CheckpointError(f"{meta} is of another format ({body['format']!r}, this stn reads {FORMAT!r})")
    ref = body["tensors"]
    name = ref.get("file") if isinstance(ref, dict) else None
    if not isinstance(name, str) or Path(name).name != name or not name.endswith(".safetensors"):
        raise CheckpointError(f"{meta} is damaged (its \"tensors\" names no tensor file)")
    file = d / name
    try:
        blob = file.read_bytes()
    except OSError as exc:
        raise CheckpointError(f"{file}, which {META} names, could not be read ({exc.strerror or exc})") from None
    if hashlib.sha256(blob).hexdigest() != ref.get("sha256"):
        size = f"{len(blob):,} bytes" + (f", {META} says {ref['bytes']:,}" if isinstance(ref.get("bytes"), int) else "")
        raise CheckpointError(f"{file} is damaged (truncated or changed since it was written: {size}, "
                              f"and its SHA-256 is not the one {META} records)")
    try:
        tensors = load_tensors(blob)
    except Exception as exc:  # noqa: BLE001 - SafetensorError: not a safetensors file after all
        raise CheckpointError(f"{file} is damaged (not a readable safetensors file: {exc})") from None
    try:
        trainer, records = _decode(body["trainer"], tensors), _decode(body["records"], tensors)
    except KeyError as exc:
        raise CheckpointError(f"{meta} is damaged (it names a tensor {file.name} lacks: {exc.args[0]})") from None
    except (TypeError, ValueError) as exc:  # a tag with the wrong shape of value
        raise CheckpointError(f"{meta} is damaged ({exc})") from None
    absent = [k for k in _TRAINER_KEYS if not isinstance(trainer, dict) or k not in trainer]
    if absent:
        raise CheckpointError(f"{meta} is damaged (its \"trainer\" has no {absent[0]!r})")
    if not isinstance(body["run"], dict) or not isinstance(records, dict):
        raise CheckpointError(f"{meta} is damaged (its \"run\" or \"records\" is not an object)")
    return Checkpoint(path=d, file=meta, run=body["run"], trainer=trainer, records=records,
                      notes=body["notes"] if isinstance(body["notes"], dict) else {})


_UNSET = object()  # a setting one of the two runs does not have


def _first_difference(theirs: object, ours: object, path: str = "") -> tuple[str, object, object] | None:
    """The first setting (a dotted path) where two runs' settings differ, in the order of ``ours``; a dict of
    options (``model.loc_options``) is named whole unless both runs have the same keys in it."""
    if isinstance(theirs, dict) and isinstance(ours, dict) and (not path or theirs.keys() == ours.keys()):
        for k in [*ours, *(k for k in theirs if k not in ours)]:
            found = _first_difference(theirs.get(k, _UNSET), ours.get(k, _UNSET), f"{path}.{k}" if path else k)
            if found:
                return found
        return None
    return None if theirs == ours else (path, theirs, ours)


def _say(value: object) -> str:
    return "not set" if value is _UNSET else json.dumps(value)


def check_same_run(checkpoint: Checkpoint, run: dict, fix: str | None = None) -> None:
    """Refuse (:class:`CheckpointMismatch`) a checkpoint of a run whose settings differ from ``run``
    (:func:`stn.train.run_settings`); the message names the first difference."""
    found = _first_difference(checkpoint.run, json.loads(json.dumps(run)))
    if found is None:
        return
    key, theirs, ours = found
    raise CheckpointMismatch(
        f"{checkpoint.file} is of another run (its {key} is {_say(theirs)}, this run's is {_say(ours)})",
        fix or f"resume it with the settings it was started with, or {_START_OVER}",
    )


def check_weights(checkpoint: Checkpoint, model_state: dict[str, torch.Tensor]) -> None:
    """Refuse (:class:`CheckpointError`) a checkpoint whose weights do not fit ``model_state`` (the state dict
    of the model its settings describe: same keys, same shapes): a damaged one, since the settings match."""
    theirs = checkpoint.trainer["model"]
    if not isinstance(theirs, dict):
        raise CheckpointError(f"{checkpoint.file} is damaged (its \"trainer\".\"model\" is not a state dict)")
    missing, extra = [k for k in model_state if k not in theirs], [k for k in theirs if k not in model_state]
    def shape(t: object) -> tuple:
        return tuple(getattr(t, "shape", ()))

    wrong = [k for k in model_state if k in theirs and shape(theirs[k]) != shape(model_state[k])]
    if missing or extra or wrong:
        k = (missing or extra or wrong)[0]
        what = ("missing" if missing else "not the model's" if extra
                else f"{shape(theirs[k])}, not {shape(model_state[k])}")
        raise CheckpointError(f"{checkpoint.file} does not fit the model it was saved for (its weight {k} is {what})")


def remove_checkpoint(directory: str | os.PathLike) -> None:
    """Delete a checkpoint: its JSON first (what is left is then no checkpoint), then its tensors and any
    temporary files; the directory goes too unless something else was put in it."""
    d = Path(directory)
    if not d.is_dir():
        return
    (d / META).unlink(missing_ok=True)
    for p in [*d.glob("state-*.safetensors"), *d.glob(".*.tmp")]:
        p.unlink(missing_ok=True)
    try:
        d.rmdir()
    except OSError:  # not empty: someone else's files
        pass
