"""The model zoo: named, pretrained models shipped in ``models/`` as ``NAME.safetensors`` + ``NAME.json``.

The JSON model card holds the architecture config (enough to rebuild the model), the data,
the metrics and how the weights were made. Weights are read with safetensors only: nothing
is unpickled, nothing is downloaded.
"""

from __future__ import annotations

import copy
import json
import os
from functools import lru_cache
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from stn.model import ModelConfig, STClassifier

__all__ = ["models_dir", "list_models", "load_card", "load_model", "save_model", "baseline_for", "DEFAULT_MODEL", "UnknownModelError"]

DEFAULT_MODEL = "wild-affine"

MNIST_LICENSE = (
    "MNIST (LeCun, Cortes, Burges; http://yann.lecun.com/exdb/mnist/), derived from NIST Special "
    "Database 3 and 1. Made available under the Creative Commons Attribution-Share Alike 3.0 licence."
)


class UnknownModelError(ValueError):
    """No card of that name in the zoo."""


def models_dir() -> Path:
    """``$STN_MODELS``, else the repository's ``models/`` folder."""
    env = os.environ.get("STN_MODELS")
    return Path(env) if env else Path(__file__).resolve().parent.parent / "models"


def list_models(directory: Path | None = None) -> list[str]:
    """Names of the models whose card and weights are both present, sorted."""
    d = directory or models_dir()
    return sorted(p.stem for p in d.glob("*.json") if (d / f"{p.stem}.safetensors").exists())


def load_card(name: str, directory: Path | None = None) -> dict:
    """The model card of ``name`` as a dict."""
    d = directory or models_dir()
    path = d / f"{name}.json"
    if not path.exists():
        known = ", ".join(list_models(d)) or "none"
        raise UnknownModelError(f"Unknown model {name!r}. Known: {known} (python -m stn models).")
    return json.loads(path.read_text())


@lru_cache(maxsize=64)
def _read(name: str, directory: str, versions: tuple[float, float]) -> tuple[dict, dict[str, torch.Tensor]]:
    """A model's card and weights (CPU), read once per version of the two files (``versions``: their mtimes)."""
    d = Path(directory)
    return load_card(name, d), load_file(str(d / f"{name}.safetensors"), device="cpu")


def load_model(name: str = DEFAULT_MODEL, device: torch.device | str | None = None, directory: Path | None = None) -> STClassifier:
    """Load a pretrained model from the zoo, in eval mode, on ``device`` (the GPU if there is one).

    Every call returns a new model (the file is read once): train it, move it or change its
    dtype without touching anyone else's copy.

    >>> model = load_model("rts-affine")  # doctest: +SKIP
    >>> model.predict(torch.zeros(1, 1, *model.input_size)).labels.shape  # doctest: +SKIP
    torch.Size([1])
    """
    d = Path(directory or models_dir())
    weights = d / f"{name}.safetensors"
    if not weights.exists():
        load_card(name, d)  # an unknown name: its message lists the known ones
        raise UnknownModelError(f"Model {name!r} has a card in {d} but no weights ({weights.name}).")
    card, state = _read(name, str(d), (weights.stat().st_mtime, (d / f"{name}.json").stat().st_mtime))
    model = STClassifier(ModelConfig.from_dict(card["config"]))
    model.load_state_dict(state)
    model.name = name  # type: ignore[attr-defined]
    model.card = copy.deepcopy(card)  # type: ignore[attr-defined]
    model.sure_logit = card.get("calibration", {}).get("sure_logit")
    dev = str(device) if device is not None else ("cuda" if torch.cuda.is_available() else "cpu")
    return model.to(dev).eval()


def baseline_for(name: str, directory: Path | None = None) -> str | None:
    """The plain-CNN model trained on the same data as ``name`` (``DATASET-cnn``), if shipped."""
    dataset = load_card(name, directory)["dataset"]["name"]
    base = f"{dataset}-cnn"
    return base if base != name and base in list_models(directory) else None


def save_model(model: STClassifier, name: str, card: dict, directory: Path | None = None) -> tuple[Path, Path]:
    """Write ``NAME.safetensors`` and ``NAME.json`` (the card gets ``name`` and ``config``)."""
    d = directory or models_dir()
    d.mkdir(parents=True, exist_ok=True)
    weights = d / f"{name}.safetensors"
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(weights), metadata={"name": name})
    weights.chmod(0o644)  # safetensors writes 0600; a non-root server must read it
    card = {"name": name, **card, "config": model.config.to_dict()}
    path = d / f"{name}.json"
    path.write_text(json.dumps(card, indent=2) + "\n")
    return weights, path
