"""Inference for the demo: load the zoo once, read an image with a model and its CNN baseline.

:class:`Engine` holds every model of the zoo (loaded once, on the GPU when there is one) and
answers the questions the app asks:

- :meth:`Engine.predict`: any picture → :class:`Result` (the model's input, each head's θ and
  crop, the class probabilities, and what the plain CNN trained on the same data says);
- :meth:`Engine.read_with`: the same input read through a θ chosen by hand (the playground);
- :meth:`Engine.warp`: one head's crop with the bilinear or the nearest kernel;
- :meth:`Engine.rotation_sweep` and :meth:`Engine.accuracy_sweep`: the invariance views.

Nothing here imports a UI library: the functions are called directly by the tests.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from stn.model import SURE, STClassifier, _label_text
from stn.preprocess import ImageError, Prepared, prepare
from stn.transforms import Transform
from stn.viz import affine_reading, map_points, sample_points
from stn.zoo import DEFAULT_MODEL, UnknownModelError, baseline_for, list_models, load_card, load_model, models_dir

__all__ = ["TRAIN_ROTATION", "Engine", "ImageError", "ModelInfo", "Reading", "Result", "UnknownModelError", "fit_affine",
           "rotation_followed", "rotation_response"]

TOP_K = 5
# Rotation range (± degrees) each dataset is trained on (stn.data): shaded on the invariance charts.
TRAIN_ROTATION = {"r": 90.0, "rts": 45.0, "pair": 45.0, "wild": 90.0}
SWEEP_ANGLES = tuple(float(a) for a in range(-180, 181, 20))  # the invariance view's rotation sweep
SWEEP_DIGITS = 96  # bundled test digits per angle


@dataclass(frozen=True)
class ModelInfo:
    """What the app shows about a model, read from its card."""

    name: str
    description: str
    dataset: str
    transform: str | None  # None: the plain CNN baseline
    transform_options: dict
    heads: int
    input_size: tuple[int, int]
    crop_size: tuple[int, int]
    digit_size: float
    test_error: float | None
    baseline: str | None  # the CNN trained on the same data, if shipped

    @property
    def has_transformer(self) -> bool:
        return self.transform is not None

    @property
    def label(self) -> str:
        """One line for a model selector: the name and the card's description."""
        err = f" · {100 * self.test_error:.2f}% error" if self.test_error is not None else ""
        return f"{self.name} — {self.description}{err}"


@dataclass
class Reading:
    """One model's answer for one input."""

    model: str
    label: str  # the predicted class ("7", or "37" for a two-digit model)
    probs: np.ndarray  # (classes,) joint probabilities
    class_names: list[str]
    params: list[np.ndarray]  # one (n_params,) per head; empty for the CNN
    crops: list[np.ndarray]  # one (h, w) per head; the input itself for the CNN
    head_labels: list[str]  # what each head reads on its own
    top_logit: float | None = None  # each head's largest logit, the least over heads
    sure_logit: float | None = None  # the model's calibrated floor for it (stn.calibration), if any

    def top(self, k: int = TOP_K) -> dict[str, float]:
        """The ``k`` most probable classes, most probable first."""
        order = np.argsort(-self.probs)[:k]
        return {self.class_names[i]: float(self.probs[i]) for i in order}

    @property
    def weak(self) -> bool:
        """The evidence for every class is weak (``top_logit`` under ``sure_logit``): the input is
        unlike the digits the model knows, however peaked its probabilities (``Prediction.weak``)."""
        return self.top_logit is not None and self.sure_logit is not None and self.top_logit < self.sure_logit

    @property
    def sure(self) -> bool:
        """The top probability is at least :data:`stn.model.SURE` and the evidence is not :attr:`weak`;
        else ``label`` is a guess."""
        return bool(self.probs.max() >= SURE) and not self.weak if len(self.probs) else False


@dataclass
class Result:
    """A prediction with everything needed to draw it."""

    model: str
    info: ModelInfo
    input: np.ndarray  # (H, W) float32 in [0, 1]: the model's input
    reading: Reading
    baseline: Reading | None
    prepared: Prepared | None = None
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def touching(self) -> bool:
        """The picture's mark may be two digits that touch (:func:`stn.preprocess.touching_digits`):
        one digit is read all the same, and the app says so beside it."""
        return self.prepared is not None and self.prepared.touching

    def to_json(self, k: int = 10) -> dict:
        """The API's answer: ``label``, ``sure`` (false: the label is a guess), ``touching`` (the
        mark may be two digits that touch), ``probs`` (top ``k``),
        ``theta`` (raw parameters per head)..."""
        info = self.info
        out = {
            "model": self.model,
            "label": self.reading.label,
            "sure": self.reading.sure,
            "touching": self.touching,
            "probs": {c: round(p, 6) for c, p in self.reading.top(k).items()},
            "theta": [[round(float(v), 6) for v in p] for p in self.reading.params],
            "transform": info.transform,
            "heads": info.heads,
            "head_labels": self.reading.head_labels,
            "reading": [affine_reading(info.transform, p) for p in self.reading.params] if info.transform else [],
            "input_size": list(info.input_size),
            "baseline": None,
        }
        if self.baseline is not None:
            out["baseline"] = {
                "model": self.baseline.model,
                "label": self.baseline.label,
                "sure": self.baseline.sure,
                "probs": {c: round(p, 6) for c, p in self.baseline.top(k).items()},
            }
        return out


def fit_affine(transform: str | Transform, params: np.ndarray, out_size: tuple[int, int] = (8, 8)) -> np.ndarray:
    """Least-squares affine θ ``(6,)`` closest to any transform's grid (exact for affine/attention).

    Gives a rotation and scale reading for projective and TPS transformers too.
    """
    src = sample_points(out_size)
    dst = map_points(transform, params, src)
    a = np.concatenate([src, np.ones((len(src), 1))], axis=1)  # (N, 3)
    sol, *_ = np.linalg.lstsq(a, dst, rcond=None)  # (3, 2)
    return sol.T.reshape(-1)


def _info(name: str, directory: Path | None) -> ModelInfo:
    card = load_card(name, directory)
    cfg = card["config"]
    err = card.get("metrics", {}).get("test_error")
    return ModelInfo(
        name=name,
        description=str(card.get("description", "")).strip() or name,
        dataset=card.get("dataset", {}).get("name", cfg.get("dataset", "")),
        transform=cfg.get("transform"),
        transform_options=dict(cfg.get("transform_options") or {}),
        heads=int(cfg.get("heads", 1)) if cfg.get("transform") else 1,
        input_size=tuple(cfg["input_size"]),
        crop_size=tuple(cfg.get("crop_size", (28, 28))),
        digit_size=float(cfg.get("digit_size", 20.0)),
        test_error=None if err is None else float(err),
        baseline=baseline_for(name, directory),
    )


class Engine:
    """Every model of the zoo, loaded once; predictions on the GPU when there is one.

    Args:
        directory: the zoo (default :func:`stn.zoo.models_dir`, i.e. ``$STN_MODELS`` or ``models/``).
        device: default CUDA when available, else CPU.
        names: load only these models (default: all of :func:`stn.zoo.list_models`).
        cache_dir: where accuracy sweeps are kept between runs (default: memory only).
    """

    def __init__(
        self,
        directory: Path | str | None = None,
        device: str | torch.device | None = None,
        names: list[str] | None = None,
        cache_dir: Path | str | None = None,
        trace: bool | None = None,
    ) -> None:
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self._sweeps: dict[tuple, dict] = {}
        self.directory = Path(directory) if directory else models_dir()
        self.device = torch.device(device) if device else torch.device("cuda" if torch.cuda.is_available() else "cpu")
        found = list_models(self.directory)
        wanted = found if names is None else [n for n in names if n in found]
        self.info: dict[str, ModelInfo] = {}
        self.models: dict[str, STClassifier] = {}
        self.cards: dict[str, dict] = {}
        for name in wanted:
            self.cards[name] = load_card(name, self.directory)
            self.info[name] = _info(name, self.directory)
            self.models[name] = load_model(name, device=self.device, directory=self.directory)
        self._lock = threading.Lock()
        # On a CPU with cores to spare, the plain CNN reads the input on another thread while the
        # transformer does (torch ops release the GIL): a request waits for the slower of the two,
        # not for their sum. (On a GPU the kernels queue on one stream anyway.)
        self._side = (ThreadPoolExecutor(max_workers=4, thread_name_prefix="stn-baseline")
                      if self.device.type == "cpu" and (os.cpu_count() or 1) > 1 else None)
        # CPU: read one image with a frozen TorchScript copy of each model (STClassifier.trace_for_inference:
        # faster at batch 1, and the GIL is free during the forward). Made on a model's first reading
        # (or by warm()); a model that cannot be traced stays eager.
        self._trace = (self.device.type == "cpu") if trace is None else trace
        self._traced: set[str] = set()
        self._trace_lock = threading.Lock()  # not self._lock: a sweep holds that one for seconds
        self._warm_stop = threading.Event()
        self._warm_thread: threading.Thread | None = None

    # ----------------------------------------------------------------- the zoo

    @property
    def names(self) -> list[str]:
        """Model names: transformers first (by name), then the CNN baselines."""
        return sorted(self.info, key=lambda n: (not self.info[n].has_transformer, n))

    def default_model(self) -> tuple[str | None, str]:
        """The model to start with and a note when it is not :data:`stn.zoo.DEFAULT_MODEL`."""
        if DEFAULT_MODEL in self.info:
            return DEFAULT_MODEL, ""
        if not self.info:
            return None, (f"No models found in {self.directory}: train one with "
                          "`python -m stn train --dataset wild` (see the README).")
        first = self.names[0]
        return first, f"The default model {DEFAULT_MODEL} is not in {self.directory}; showing {first} instead."

    def resolve(self, name: str | None) -> str:
        """A known model name, or :class:`UnknownModelError` with the known ones."""
        if name in self.info:
            return str(name)
        known = ", ".join(self.names) or "none"
        shown = repr(name) if len(repr(name)) <= 60 else repr(name)[:56] + "...'"  # a request's name, echoed: short
        raise UnknownModelError(f"Unknown model {shown}; choose one of: {known}.")

    def models_for(self, dataset: str) -> list[str]:
        return [n for n in self.names if self.info[n].dataset == dataset]

    # ----------------------------------------------------------------- reading

    def _ensure_traced(self, name: str) -> None:
        if self._trace and name not in self._traced:
            with self._trace_lock:
                if name not in self._traced:
                    self.models[name].trace_for_inference(batch=1)
                    self._traced.add(name)

    def _reading(self, name: str, x: torch.Tensor) -> Reading:
        model = self.models[name]
        if x.shape[0] == 1:
            self._ensure_traced(name)
        pred = model.predict(x.to(self.device), check_ground=False)  # prepared here, or moved from a prepared input
        top = float(pred.top_logits[0]) if pred.top_logits is not None else None
        return self._to_reading(name, pred.probs[0], pred.head_probs[0], [p[0] for p in pred.params], [c[0, 0] for c in pred.crops], top)

    def _to_reading(self, name: str, probs: torch.Tensor, head_probs: torch.Tensor, params: list, crops: list,
                    top_logit: float | None = None) -> Reading:
        heads = head_probs.shape[0]
        n = probs.shape[0]
        names = _class_names(n, heads)
        probs_np = probs.detach().float().cpu().numpy()
        return Reading(
            model=name,
            label=names[int(probs_np.argmax())],
            probs=probs_np,
            class_names=names,
            params=[p.detach().double().cpu().numpy() if isinstance(p, torch.Tensor) else np.asarray(p, dtype=np.float64) for p in params],
            crops=[c.detach().float().cpu().numpy() for c in crops],
            head_labels=[str(int(h.argmax())) for h in head_probs],
            top_logit=top_logit,
            sure_logit=self.models[name].sure_logit,
        )

    def prepare(self, image: object, name: str) -> Prepared:
        """``image`` (path, bytes or PIL image) → the model's input; :class:`ImageError` if it cannot."""
        info = self.info[self.resolve(name)]
        return prepare(image, info.input_size, info.digit_size)  # type: ignore[arg-type]

    def predict(self, image: object, name: str) -> Result:
        """Read a picture: pre-process it for ``name`` and run the model and its CNN baseline.

        Raises:
            ImageError: the picture cannot be read as a digit (the message says why).
            UnknownModelError: no such model.
        """
        result, baseline = self.predict_early(image, name)
        baseline()
        return result

    def predict_early(self, image: object, name: str) -> tuple[Result, Callable[[], Reading | None]]:
        """:meth:`predict`, returning as soon as the model has read: the plain CNN may still be reading
        on another thread. Call the returned function to wait for it; it also fills ``result.baseline``.
        (The app draws its figures in the meantime.)"""
        name = self.resolve(name)
        t0 = time.perf_counter()
        prep = self.prepare(image, name)
        t1 = time.perf_counter()
        result, baseline = self._predict_tensor(prep.tensor, name)
        result.prepared = prep
        result.timings["prepare_ms"] = 1000 * (t1 - t0)
        return result, baseline

    def predict_tensor(self, x: torch.Tensor | np.ndarray, name: str) -> Result:
        """Read a model-space input ``(H, W)`` or ``(1, 1, H, W)`` in [0, 1] (no pre-processing)."""
        result, baseline = self._predict_tensor(x, name)
        baseline()
        return result

    def _predict_tensor(self, x: torch.Tensor | np.ndarray, name: str) -> tuple[Result, Callable[[], Reading | None]]:
        name = self.resolve(name)
        info = self.info[name]
        x = _as_batch(x)
        if tuple(x.shape[-2:]) != info.input_size:
            raise ValueError(f"expected an input of {info.input_size[0]}×{info.input_size[1]} for {name}, got {tuple(x.shape[-2:])}")
        b = info.baseline
        with_baseline = bool(b and b in self.info and self.info[b].input_size == info.input_size)
        t0 = time.perf_counter()
        side = self._side.submit(self._reading, b, x) if with_baseline and self._side is not None else None
        reading = self._reading(name, x)
        t1 = time.perf_counter()
        result = Result(model=name, info=info, input=x[0, 0].cpu().numpy().astype(np.float32), reading=reading,
                        baseline=None, timings={"model_ms": 1000 * (t1 - t0)})

        def baseline() -> Reading | None:
            if with_baseline and result.baseline is None:
                result.baseline = side.result() if side is not None else self._reading(b, x)  # type: ignore[arg-type]
            # baseline_ms: how much longer than the model the plain CNN kept the request
            result.timings.setdefault("baseline_ms", 1000 * (time.perf_counter() - t1))
            return result.baseline

        return result, baseline

    @torch.no_grad()
    def read_with(self, name: str, x: torch.Tensor | np.ndarray, params: list, mode: str = "bilinear") -> Reading:
        """Read ``x`` through hand-chosen θ (one parameter vector per head) instead of the regressed one."""
        name = self.resolve(name)
        model = self.models[name]
        if model.st is None:
            return self._reading(name, _as_batch(x))
        x = _as_batch(x).to(self.device)
        crops = [model.st.warp(x, torch.as_tensor(np.asarray(p), dtype=torch.float32, device=self.device).view(1, -1), mode)
                 for p in params]
        logits = model.classifier(torch.cat(crops, dim=0))  # (heads, n)
        head_probs = logits.softmax(dim=-1)
        probs = head_probs[0:1]
        for k in range(1, head_probs.shape[0]):  # joint reading of independent heads, as STClassifier.predict
            probs = (probs.unsqueeze(2) * head_probs[k : k + 1].unsqueeze(1)).flatten(1)
        return self._to_reading(name, probs[0], head_probs, list(params), [c[0, 0] for c in crops], float(logits.amax(dim=-1).amin()))

    @torch.no_grad()
    def warp(self, name: str, x: torch.Tensor | np.ndarray, params: np.ndarray, mode: str = "bilinear") -> np.ndarray:
        """One head's crop ``(h, w)`` of ``x`` for θ ``params`` with the ``bilinear`` or ``nearest`` kernel."""
        model = self.models[self.resolve(name)]
        if model.st is None:
            return _as_batch(x)[0, 0].numpy()
        p = torch.as_tensor(np.asarray(params), dtype=torch.float32, device=self.device).view(1, -1)
        return model.st.warp(_as_batch(x).to(self.device), p, mode)[0, 0].cpu().numpy()

    def transform(self, name: str) -> Transform | None:
        model = self.models[self.resolve(name)]
        return None if model.st is None else model.st.transform

    # ----------------------------------------------------------------- invariance

    @staticmethod
    def distort(x: torch.Tensor | np.ndarray, angle: float = 0.0, scale: float = 1.0, shift: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
        """Rotate ``x`` by ``angle``° anticlockwise and scale it about the centre, then shift it by
        ``shift`` = (x, y) pixels; the canvas keeps its size (what leaves it is lost)."""
        return distort_batch(_as_batch(x), [angle], scale, shift)[0, 0].numpy()

    @torch.no_grad()
    def rotation_sweep(self, name: str, x: torch.Tensor | np.ndarray, angles: list[float]) -> dict:
        """Rotate one input through ``angles`` and read each: the transformer's recovered rotation
        (relative to the unrotated input, unwrapped) and the label, per angle."""
        name = self.resolve(name)
        model = self.models[name]
        info = self.info[name]
        batch = distort_batch(_as_batch(x), [0.0, *angles])
        pred = model.predict(batch.to(self.device), check_ground=False)
        labels = _class_names(pred.probs.shape[1], pred.head_probs.shape[1])
        out = {"angles": list(angles), "labels": [labels[int(i)] for i in pred.labels[1:]], "recovered": None}
        if model.st is not None:
            rot = _rotations(model.st.transform, pred.params[0].double().numpy(), info.crop_size)
            out["recovered"] = _relative(rot[1:], rot[0]).tolist()
        return out

    def accuracy_sweep(self, name: str, angles: tuple[float, ...] = SWEEP_ANGLES, n: int = SWEEP_DIGITS) -> dict:
        """Accuracy of ``name`` and of its CNN baseline on ``n`` bundled MNIST test digits placed on
        the model's canvas and rotated by each angle; also the recovered rotation's quartiles.

        The digits do not depend on the user's input, so the answer is cached in memory and,
        with ``cache_dir``, on disk (keyed by the weights' size and time), and can be computed
        ahead by :meth:`warm`.
        """
        name = self.resolve(name)
        angles = tuple(float(a) for a in angles)
        key = (name, angles, int(n))
        with self._lock:
            if key in self._sweeps:
                return self._sweeps[key]
            path = self._sweep_path(name, angles, int(n))
            if path is not None and path.exists():
                try:
                    self._sweeps[key] = json.loads(path.read_text())
                    return self._sweeps[key]
                except (OSError, ValueError):
                    pass
            out = _accuracy_sweep(self, name, angles, int(n))
            self._sweeps[key] = out
            if path is not None:
                try:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    tmp = path.with_suffix(f".{os.getpid()}.tmp")
                    tmp.write_text(json.dumps(out))
                    tmp.replace(path)
                except OSError:
                    pass
            return out

    def has_sweep(self, name: str, angles: tuple[float, ...] = SWEEP_ANGLES, n: int = SWEEP_DIGITS) -> bool:
        """Whether :meth:`accuracy_sweep` would answer at once."""
        angles = tuple(float(a) for a in angles)
        if (name, angles, int(n)) in self._sweeps:
            return True
        path = self._sweep_path(name, angles, int(n))
        return path is not None and path.exists()

    def warm(self, names: list[str] | None = None) -> threading.Thread:
        """In a background thread: each model's traced copy, then the accuracy sweeps (default model first)."""
        first, _ = self.default_model()
        order = names if names is not None else sorted(self.names, key=lambda m: m != first)
        todo = [m for m in order if self.info[m].has_transformer]

        def run() -> None:
            for m in order:
                if self._warm_stop.is_set():
                    return
                try:
                    self._ensure_traced(m)
                except Exception:
                    logging.getLogger(__name__).warning("tracing %s failed", m, exc_info=True)
            for m in todo:
                if self._warm_stop.is_set():
                    return
                try:
                    self.accuracy_sweep(m)
                except Exception:
                    logging.getLogger(__name__).warning("accuracy sweep of %s failed", m, exc_info=True)

        self._warm_stop.clear()
        thread = threading.Thread(target=run, name="stn-sweeps", daemon=True)
        thread.start()
        self._warm_thread = thread
        return thread

    def stop_warm(self, timeout: float | None = None) -> bool:
        """Ask :meth:`warm`'s thread to stop after the model it is on, and wait for it up to ``timeout`` seconds.

        Returns whether it has stopped (or never ran). A server stops it before exiting: a thread still inside
        torch while the interpreter shuts down can abort the process ("terminate called without an active
        exception", SIGABRT).
        """
        self._warm_stop.set()
        thread = self._warm_thread
        if thread is not None:
            thread.join(timeout)
        return thread is None or not thread.is_alive()

    def _sweep_path(self, name: str, angles: tuple[float, ...], n: int) -> Path | None:
        if self.cache_dir is None:
            return None
        stamp = ""
        for m in (name, self.info[name].baseline):
            if m:
                st = (self.directory / f"{m}.safetensors").stat()
                stamp += f"{st.st_size:x}{int(st.st_mtime):x}"
        digest = hashlib.sha1(f"{stamp}|{angles}|{n}|{self.device.type}".encode()).hexdigest()[:16]
        return self.cache_dir / f"sweep-{name}-{digest}.json"


def _accuracy_sweep(engine: Engine, name: str, angles: tuple[float, ...], n: int) -> dict:
    from stn.data import load_mnist

    info = engine.info[name]
    images, labels = load_mnist("bundled", train=False)
    images, labels = images[:n], labels[:n]
    h, w = info.input_size
    heads = info.heads
    part = (h, w // heads)  # one digit per head, side by side
    # MNIST's ink box is about 20 px; scale it to the model's typical digit (Pair: ~19 px per half)
    scale = (19.0 if heads > 1 else info.digit_size) / 20.0
    order = [torch.roll(torch.arange(len(images)), -k) for k in range(heads)]
    target = sum(labels[order[k]] * 10 ** (heads - 1 - k) for k in range(heads))
    models = [name] + ([info.baseline] if info.baseline in engine.info else [])
    acc: dict[str, list[float]] = {m: [] for m in models}
    rots = []
    for a in angles:
        x = torch.cat([_place_batch(images[order[k]], part, a, scale) for k in range(heads)], dim=3)
        for m in models:
            pred = engine.models[m].predict(x.to(engine.device), check_ground=False)
            acc[m].append(float((pred.labels == target).float().mean()))
            if m == name and engine.models[m].st is not None:
                rots.append(_rotations(engine.models[m].st.transform, pred.params[0].double().numpy(), info.crop_size))
    out = {"angles": list(angles), "n": len(images), "accuracy": acc, "model": name, "baseline": models[1] if len(models) > 1 else None}
    if rots:
        r = np.stack(rots)  # (angles, n)
        zero = int(np.argmin(np.abs(np.asarray(angles))))
        rel = np.stack([_relative(r[:, i], r[zero, i], zero) for i in range(r.shape[1])], axis=1)
        out["recovered_median"] = np.median(rel, axis=1).tolist()
        out["recovered_q1"] = np.percentile(rel, 25, axis=1).tolist()
        out["recovered_q3"] = np.percentile(rel, 75, axis=1).tolist()
    return out


def _rotations(transform: Transform, params: np.ndarray, out_size: tuple[int, int]) -> np.ndarray:
    """Rotation (° anticlockwise) of the affine fit of each row of ``params`` ``(B, n_params)``."""
    rot = []
    for p in params:
        theta = p if transform.name == "affine" else fit_affine(transform, p)
        a, c = theta[0], theta[3]
        rot.append(-math.degrees(math.atan2(c, a)))  # as stn.transforms.decompose_affine, anticlockwise
    return np.asarray(rot)


def rotation_followed(angles: list[float], recovered: list[float] | None, within: float = 45.0) -> float | None:
    """How much of the input's turn the grid turns with: the least-squares slope through the origin
    of ``recovered`` against ``angles`` (both °), over the angles with ``0 < |angle| <= within``.

    1: the transformer turns every digit back upright; 0: its grid stays put and the classifier is
    left to read the turned digit. ``None`` when there is nothing to fit (no transformer, no angle).

    >>> rotation_followed([-40, 0, 40], [-30, 0, 30])
    0.75
    """
    if recovered is None:
        return None
    a = np.asarray(angles, dtype=float)
    r = np.asarray(recovered, dtype=float)
    keep = (np.abs(a) <= within) & (a != 0)
    if not keep.any():
        return None
    return float((a[keep] * r[keep]).sum() / (a[keep] ** 2).sum())


@torch.no_grad()
def rotation_response(model: STClassifier, digits: torch.Tensor, labels: torch.Tensor, angles: Sequence[float],
                      batch_size: int = 500) -> dict:
    """What a one-head model does with turned digits: each MNIST digit ``(N, 1, 28, 28)`` placed at
    the centre of the model's canvas at its typical size, turned by each angle (° anticlockwise).

    Returns ``angles``, per angle the ``accuracy`` and, for a transformer, the quartiles of the
    rotation its grid turns by relative to the same digit unturned (``recovered_q1``,
    ``recovered_median``, ``recovered_q3``; a transformer that turns every digit upright has
    them equal to the angle), and ``followed``, :func:`rotation_followed` of the medians over the
    model's training range (±45° where the dataset has none).
    """
    if model.heads != 1:
        raise ValueError("rotation_response reads one digit per image; this model has several heads")
    angles = [float(a) for a in angles]
    if 0.0 not in angles:
        angles = sorted([*angles, 0.0])
    cfg = model.config
    accuracy, rots = [], []
    for a in angles:
        right, rot = 0, []
        for i in range(0, len(digits), batch_size):
            x = _place_batch(digits[i : i + batch_size].float(), tuple(cfg.input_size), a, cfg.digit_size / 20.0)
            pred = model.predict(x, check_ground=False)
            right += int((pred.labels == labels[i : i + batch_size]).sum())
            if model.st is not None:
                rot.append(_rotations(model.st.transform, pred.params[0].double().numpy(), cfg.crop_size))
        accuracy.append(right / len(digits))
        if rot:
            rots.append(np.concatenate(rot))
    out: dict = {"angles": angles, "n": len(digits), "accuracy": accuracy, "followed": None}
    if rots:
        r = np.stack(rots)  # (angles, n)
        zero = angles.index(0.0)
        rel = np.stack([_relative(r[:, i], r[zero, i], zero) for i in range(r.shape[1])], axis=1)
        out["recovered_q1"] = np.percentile(rel, 25, axis=1).tolist()
        out["recovered_median"] = np.median(rel, axis=1).tolist()
        out["recovered_q3"] = np.percentile(rel, 75, axis=1).tolist()
        out["followed"] = rotation_followed(angles, out["recovered_median"], TRAIN_ROTATION.get(cfg.dataset, 45.0))
    return out


def _relative(rot: np.ndarray, ref: float, zero_index: int | None = None) -> np.ndarray:
    """Rotations relative to ``ref``, unwrapped so a sweep past ±180° stays continuous."""
    d = (np.asarray(rot) - ref + 180.0) % 360.0 - 180.0
    un = np.degrees(np.unwrap(np.radians(d)))
    if zero_index is not None:  # anchor the unwrapped curve at the unrotated input
        un = un - 360.0 * np.round(un[zero_index] / 360.0)
    return un


def _place_batch(digits: torch.Tensor, canvas: tuple[int, int], angle: float, scale: float) -> torch.Tensor:
    from stn.data import _place

    b = digits.shape[0]
    return _place(digits, canvas, torch.full((b,), float(angle)), torch.full((b,), float(scale)), torch.zeros(b, 2))


def distort_batch(x: torch.Tensor, angles: list[float], scale: float = 1.0, shift: tuple[float, float] = (0.0, 0.0)) -> torch.Tensor:
    """``x`` ``(1, 1, H, W)`` rotated by each angle (° anticlockwise), scaled, shifted (px) → ``(A, 1, H, W)``."""
    from stn.data import _place

    a = len(angles)
    h, w = x.shape[-2:]
    return _place(
        x.expand(a, -1, -1, -1).float().cpu(), (h, w), torch.tensor(angles, dtype=torch.float32),
        torch.full((a,), float(scale)), torch.tensor([shift], dtype=torch.float32).expand(a, 2),
    ).clamp(0, 1)


def _as_batch(x: torch.Tensor | np.ndarray) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x, dtype=torch.float32)
    if t.ndim == 2:
        t = t[None, None]
    elif t.ndim == 3:
        t = t[None]
    if t.ndim != 4 or t.shape[:2] != (1, 1):
        raise ValueError(f"expected an input of shape (H, W) or (1, 1, H, W), got {tuple(t.shape)}")
    return t.cpu()


@lru_cache(maxsize=8)
def _class_names(n: int, heads: int) -> list[str]:
    """Every joint class's text as :meth:`stn.model.Prediction.class_names` writes it (``n`` = the classes each
    head tells apart, to the power ``heads``): zero-padded numbers only for ten classes a head."""
    per = round(n ** (1 / heads))
    return [_label_text(i, heads, per) for i in range(n)]


def default_engine() -> Engine:
    """An :class:`Engine` on ``$STN_MODELS`` (or ``models/``)."""
    return Engine(os.environ.get("STN_MODELS") or None)
