"""The model zoo: named, pretrained models shipped in ``models/`` as ``NAME.safetensors`` + ``NAME.json``.

The JSON model card holds the architecture config (enough to rebuild the model), the data,
the metrics and how the weights were made. Weights are read with safetensors only: nothing
is unpickled, nothing is downloaded.
"""

from __future__ import annotations

import copy
import json
import os
import re
from functools import lru_cache
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from stn.model import ModelConfig, STClassifier

__all__ = ["models_dir", "list_models", "load_card", "load_model", "create_model", "save_model", "check_name",
           "baseline_for", "DEFAULT_MODEL", "UnknownModelError", "ModelFileError"]

DEFAULT_MODEL = "wild-affine"

MNIST_LICENSE = (
    "MNIST (LeCun, Cortes, Burges; http://yann.lecun.com/exdb/mnist/), derived from NIST Special "
    "Database 3 and 1. Made available under the Creative Commons Attribution-Share Alike 3.0 licence."
)


class UnknownModelError(ValueError):
    """No card of that name in the zoo."""


class ModelFileError(UnknownModelError):
    """A model's card or weights are in the zoo but cannot be used: one of the two is missing, a Git
    LFS pointer, corrupt, or the card does not fit the weights. The message names the file and the fix."""


def models_dir() -> Path:
    """``$STN_MODELS``, else the repository's ``models/`` folder."""
    env = os.environ.get("STN_MODELS")
    return Path(env) if env else Path(__file__).resolve().parent.parent / "models"


def _dir(directory: str | os.PathLike | None) -> Path:
    return Path(directory) if directory else models_dir()


# A model is NAME.safetensors, NAME.json and NAME.replay.safetensors side by side: a separator or ".." puts them
# outside the directory, a subfolder is never listed, and a dot lets names collide (model "x.replay" is x's replay).
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,99}")


def check_name(name: str, what: str = "model name") -> str:
    """``name`` if it can name a model's files in its directory, else a :class:`ValueError` saying which names can
    (``what`` names the argument in it, e.g. ``"--name"``).

    >>> check_name("rts-affine_2")
    'rts-affine_2'
    """
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValueError(f"{what} {name!r} cannot name a model's files: use 1 to 100 letters, digits, '-' and '_', "
                         "beginning with a letter or digit (e.g. my-rts_2)")
    return name


def list_models(directory: str | os.PathLike | None = None) -> list[str]:
    """Names of the models whose card and weights are both present, sorted."""
    d = _dir(directory)
    return sorted(p.stem for p in d.glob("*.json") if (d / f"{p.stem}.safetensors").exists())


LFS_POINTER = b"version https://git-lfs"  # how a Git LFS pointer file begins


def _is_lfs_pointer(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            return f.read(len(LFS_POINTER)) == LFS_POINTER
    except OSError:
        return False


def _retrain(name: str, card: dict | None) -> str:
    """The last resort of a message: re-train, the way the card says the model was made."""
    training = card.get("training") if isinstance(card, dict) else None
    if isinstance(training, dict) and training.get("command"):
        return f"re-train it (the command is in {name}.json: training.command)"
    return "re-train it (python -m stn train)"


def load_card(name: str, directory: str | os.PathLike | None = None) -> dict:
    """The model card of ``name`` as a dict.

    Raises:
        UnknownModelError: no such model (the message lists the known ones).
        ModelFileError: weights with no card, or a card that is not a JSON object (corrupt, a Git LFS pointer).
    """
    d = _dir(directory)
    path = d / f"{name}.json"
    if not path.exists():
        if (d / f"{name}.safetensors").exists():
            raise ModelFileError(f"{path}: no such file, but {name}.safetensors is there: the card holds the "
                                 f"architecture the weights need. Restore {path.name} beside them (`git checkout "
                                 f"models/{path.name}` in the repository), or re-train the model.")
        known = ", ".join(list_models(d)) or "none"
        raise UnknownModelError(f"Unknown model {name!r}. Known: {known} (python -m stn models).")
    try:
        card = json.loads(path.read_bytes())
    except OSError as exc:
        raise ModelFileError(f"{path}: the model card could not be read ({exc.strerror or exc}).") from None
    except ValueError as exc:  # JSONDecodeError, or bytes that are not UTF-8
        if _is_lfs_pointer(path):
            raise ModelFileError(f"{path}: the model card is a Git LFS pointer, not the card: run `git lfs pull` "
                                 "in the repository to fetch it.") from None
        raise ModelFileError(f"{path}: the model card is not valid JSON ({exc}): restore it (`git checkout "
                             f"models/{path.name}` in the repository), or re-train the model.") from None
    if not isinstance(card, dict):
        raise ModelFileError(f"{path}: the model card is JSON but not an object ({{...}}): restore it (`git checkout "
                             f"models/{path.name}` in the repository), or re-train the model.")
    return card


def _read_weights(path: Path, card: dict) -> dict[str, torch.Tensor]:
    """The tensors of a ``.safetensors`` file, or a :class:`ModelFileError` that says what is wrong with it."""
    try:
        return load_file(str(path), device="cpu")
    except OSError as exc:
        raise ModelFileError(f"{path}: the weights could not be read ({exc.strerror or exc}).") from None
    except Exception as exc:  # noqa: BLE001 - SafetensorError and friends: a truncated or corrupt file
        if _is_lfs_pointer(path):  # "header too large": the pointer's text read as a header length
            raise ModelFileError(f"{path}: the file is not a safetensors file but a Git LFS pointer: run "
                                 "`git lfs pull` in the repository to fetch the weights.") from None
        size = path.stat().st_size if path.exists() else 0
        raise ModelFileError(f"{path}: the file is not a readable safetensors file (truncated or corrupt, "
                             f"{size:,} bytes: {exc}): download it again (`git checkout models/{path.name}` "
                             f"or `git lfs pull`), or {_retrain(path.stem, card)}.") from None


@lru_cache(maxsize=64)
def _read(name: str, directory: str, versions: tuple[float, float]) -> tuple[dict, dict[str, torch.Tensor]]:
    """A model's card and weights (CPU), read once per version of the two files (``versions``: their mtimes)."""
    d = Path(directory)
    card = load_card(name, d)
    return card, _read_weights(d / f"{name}.safetensors", card)


def _fix(name: str, card: dict) -> str:
    return f"restore both files from one source (`git checkout models/{name}.*`), or {_retrain(name, card)}"


def _architecture(name: str, d: Path, card: dict) -> STClassifier:
    """A freshly initialised model of the architecture the card's config describes, or a :class:`ModelFileError`."""
    card_path = d / f"{name}.json"
    config = card.get("config")
    if not isinstance(config, dict):
        raise ModelFileError(f"{card_path}: the model card has no \"config\" (the architecture to rebuild the model "
                             f"from): {_fix(name, card)}.")
    try:
        return STClassifier(ModelConfig.from_dict(config))
    except (TypeError, ValueError, KeyError) as exc:
        raise ModelFileError(f"{card_path}: the card's \"config\" does not describe a model ({exc}): "
                             f"{_fix(name, card)}.") from None


def _build(name: str, d: Path, card: dict, state: dict[str, torch.Tensor]) -> STClassifier:
    """The model the card's config describes, with ``state`` loaded, or a :class:`ModelFileError`."""
    card_path, weights = d / f"{name}.json", d / f"{name}.safetensors"
    fix = _fix(name, card)
    model = _architecture(name, d, card)
    want = model.state_dict()
    missing = sorted(set(want) - set(state))
    extra = sorted(set(state) - set(want))
    wrong = [k for k in want if k in state and tuple(state[k].shape) != tuple(want[k].shape)]
    if missing or extra or wrong:
        if wrong:
            k = wrong[0]
            first = f"{k} is {tuple(state[k].shape)} in the weights, {tuple(want[k].shape)} for the card"
        else:
            first = f"{(missing or extra)[0]} is {'missing from' if missing else 'not in the card, but in'} the weights"
        more = len(missing) + len(extra) + len(wrong) - 1
        first += f"; {more} more differ" if more > 1 else "; 1 more differs" if more else ""
        raise ModelFileError(f"{card_path}: the card's \"config\" does not fit the weights in {weights.name} "
                             f"({first}): the two come from different models; {fix}.")
    model.load_state_dict(state)
    return model


def load_model(
    name: str = DEFAULT_MODEL, device: torch.device | str | None = None, directory: str | os.PathLike | None = None
) -> STClassifier:
    """Load a pretrained model from the zoo, in eval mode, on ``device`` (the GPU if there is one).

    Every call returns a new model (the file is read once): train it, move it or change its
    dtype without touching anyone else's copy.

    Raises:
        UnknownModelError: no such model.
        ModelFileError: its card or weights are missing, Git LFS pointers, corrupt, or do not fit together.

    >>> model = load_model("rts-affine")  # doctest: +SKIP
    >>> model.predict(torch.zeros(1, 1, *model.input_size)).labels.shape  # doctest: +SKIP
    torch.Size([1])
    """
    d = _dir(directory)
    weights, card_path = d / f"{name}.safetensors", d / f"{name}.json"
    if not weights.exists():
        load_card(name, d)  # an unknown name: its message lists the known ones
        raise ModelFileError(f"Model {name!r} has a card in {d} but no weights ({weights.name}): fetch them "
                             "(`git lfs pull` in the repository), or re-train the model.")
    if not card_path.exists():
        load_card(name, d)  # weights with no card: its message
    card, state = _read(name, str(d), (weights.stat().st_mtime, card_path.stat().st_mtime))
    model = _build(name, d, card, state)
    model.name = name  # type: ignore[attr-defined]
    model.card = copy.deepcopy(card)  # type: ignore[attr-defined]
    calibration = card.get("calibration")
    model.sure_logit = calibration.get("sure_logit") if isinstance(calibration, dict) else None
    return model.to(_device(device)).eval()


def _device(device: torch.device | str | None) -> str:
    return str(device) if device is not None else ("cuda" if torch.cuda.is_available() else "cpu")


def create_model(
    name: str, pretrained: bool = True, *, device: torch.device | str | None = None,
    directory: str | os.PathLike | None = None,
) -> STClassifier:
    """A zoo model by name, as timm's ``create_model``: with ``pretrained`` its trained weights (exactly what
    :func:`load_model` returns), else the same architecture, rebuilt from its card's config, with fresh
    initial weights (drawn from torch's global generator: seed it for a repeatable start).

    Either way the model is in eval mode, as :func:`load_model`'s are: call ``.train()`` before training it.
    A fresh model has no ``card`` nor ``sure_logit`` (``sure_logit`` is None): those describe trained weights.
    ``pretrained=False`` reads only the card, so it works where the weights are not fetched yet.

    Raises:
        UnknownModelError: no such model.
        ModelFileError: its card (or, with ``pretrained``, its weights) is missing, damaged or does not fit.

    >>> fresh = create_model("rts-affine", pretrained=False, device="cpu")
    >>> fresh.training, fresh.input_size, fresh.config == create_model("rts-affine", device="cpu").config
    (False, (42, 42), True)
    """
    if pretrained:
        return load_model(name, device=device, directory=directory)
    d = _dir(directory)
    return _architecture(name, d, load_card(name, d)).to(_device(device)).eval()


def baseline_for(name: str, directory: str | os.PathLike | None = None) -> str | None:
    """The plain-CNN model trained on the same data as ``name`` (``DATASET-cnn``), if shipped."""
    dataset = load_card(name, directory).get("dataset")
    if not isinstance(dataset, dict) or not dataset.get("name"):  # a hand-made card: no baseline to name
        return None
    base = f"{dataset['name']}-cnn"
    return base if base != name and base in list_models(directory) else None


def save_model(
    model: STClassifier, name: str, card: dict, directory: str | os.PathLike | None = None, *, overwrite: bool = False
) -> tuple[Path, Path]:
    """Write ``NAME.safetensors`` and ``NAME.json`` (the card gets ``name`` and ``config``) into ``directory``
    (default: :func:`models_dir`, the shipped zoo).

    Raises:
        ValueError: ``name`` cannot name the files (:func:`check_name`), or a model of that name is already there
            and ``overwrite`` is False (the default: a shipped model is not replaced by accident).
    """
    check_name(name)
    d = _dir(directory)
    there = [p.name for p in (d / f"{name}.safetensors", d / f"{name}.json") if p.exists()]
    if there and not overwrite:
        raise ValueError(f"a model named {name} is already in {d} ({', '.join(there)}): save it under another name, "
                         "or pass overwrite=True to replace it")
    d.mkdir(parents=True, exist_ok=True)
    weights = d / f"{name}.safetensors"
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(weights), metadata={"name": name})
    weights.chmod(0o644)  # safetensors writes 0600; a non-root server must read it
    card = {"name": name, **card, "config": model.config.to_dict()}
    path = d / f"{name}.json"
    path.write_text(json.dumps(card, indent=2) + "\n")
    return weights, path
