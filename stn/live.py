"""Live training for the app: a short run that a visitor starts, watches and stops.

A :class:`LiveRun` trains an :class:`~stn.model.STClassifier` with the same
:class:`~stn.train.Trainer` as ``python -m stn train``, on the MNIST subset shipped in
``assets/`` (``root="bundled"``), and yields a :class:`LiveUpdate` every few steps: the curve so
far, θ and the crops on the task's 16 probe images, steps/s and a *centring* measure of how
well the crops have found the digits.

A :class:`LiveManager` is the server's bookkeeping: at most ``max_runs`` runs at a time for the
whole server and one per browser session; a run over the cap gets :class:`LiveBusy` with a
message for the person, not a queue.

Threads: ``torch.set_num_threads`` sets OpenMP's thread count *of the calling thread* (and the
default for threads that have not used torch yet). Training therefore runs in the request's own
thread, each chunk of steps inside :func:`intra_op_threads` (1 thread by default), which restores
the thread's previous count before the generator yields; the thread pool that serves the
predictions of other people keeps its threads. A generator may resume on another pool thread
after each ``yield``, so the limit is set per chunk, never across a ``yield``.
"""

from __future__ import annotations

import contextlib
import math
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

import torch

from stn.data import BUNDLED, DATASETS, get_spec
from stn.model import ModelConfig, STClassifier
from stn.train import TrainConfig, Trainer, default_device, probe_batch
from stn.transforms import base_grid
from stn.transforms import names as transform_names

__all__ = [
    "LIVE_DATASETS",
    "MAX_SECONDS",
    "MAX_STEPS",
    "LiveBusy",
    "LiveManager",
    "LiveRun",
    "LiveSettings",
    "LiveUpdate",
    "default_max_runs",
    "ink_offset",
    "intra_op_threads",
    "live_config",
]

MAX_STEPS = 1500  # the most steps a visitor may ask for
MAX_SECONDS = 240.0  # a run ends after this much wall-clock time, whatever it was asked
LIVE_DATASETS = ("rts", "tc", "r", "p", "e", "pair")  # Wild is left to the zoo: it needs many steps
_BUILD_LOCK = threading.Lock()  # model init draws from torch's global generator


def default_max_runs() -> int:
    """Server-wide cap on concurrent live runs: ``$STN_LIVE_MAX_RUNS``, else 2 with a GPU or
    4+ CPU cores, else 1 (on a 2-core CPU one run takes one core; predictions keep the other)."""
    env = os.environ.get("STN_LIVE_MAX_RUNS")
    if env:
        return max(1, int(env))
    if torch.cuda.is_available():
        return 2
    return max(1, min(2, (os.cpu_count() or 1) // 2))


@contextlib.contextmanager
def intra_op_threads(n: int | None) -> Iterator[None]:
    """Cap torch's intra-op threads *for the calling thread* to ``n`` inside the block (None: no change).

    >>> with intra_op_threads(1):
    ...     torch.get_num_threads()
    1
    """
    if not n:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(int(n))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def ink_offset(crops: list[torch.Tensor] | torch.Tensor) -> float:
    """How far the ink's centre of mass lies from the crop's centre, averaged over crops and heads.

    In units of the crop's half-width: 0 is a digit centred in its crop, 1 is ink centred on the
    crop's edge; a crop without ink counts 1. The *centring* the app shows falls as the
    transformer learns to find the digit (on RTS the identity crop leaves it about 0.2 off).

    Args:
        crops: ``(P, 1, h, w)`` or a list of them (one per head), ink bright, in [0, 1].

    >>> x = torch.zeros(1, 1, 28, 28); x[..., 10:18, 10:18] = 1
    >>> ink_offset(x)
    0.0
    """
    crops = [crops] if isinstance(crops, torch.Tensor) else list(crops)
    values = []
    for c in crops:
        c = c.detach().float()
        h, w = c.shape[-2:]
        mass = c[:, 0].clamp(min=0)  # (P, h, w)
        total = mass.sum(dim=(1, 2))  # (P,)
        xy = base_grid((h, w), c.device)  # (h, w, 2)
        com = torch.einsum("phw,hwc->pc", mass, xy) / total.clamp(min=1e-6).unsqueeze(1)
        d = com.norm(dim=1)
        values.append(torch.where(total > 1e-3, d, torch.ones_like(d)))
    return round(float(torch.cat(values).mean()), 4)


@dataclass
class LiveSettings:
    """What a visitor chooses. :meth:`checked` clamps numbers into the allowed range."""

    dataset: str = "rts"
    transform: str = "affine"
    steps: int = 400
    loc_lr: float = 1e-3  # learning rate of the localisation net (the zoo: 3e-4; 1e-3 centres fastest, bench/README.md)
    lr: float = 3e-3  # peak learning rate of the classifier
    seed: int = 0
    batch_size: int = 64
    update_every: int = 5  # steps between updates (at least ``min_interval`` s apart)
    min_interval: float = 0.5
    threads: int | None = 1  # intra-op threads while training (None: torch's default)
    max_seconds: float = MAX_SECONDS

    def checked(self) -> LiveSettings:
        """A copy with a known dataset/transform and every number in range; raises ValueError otherwise."""
        if self.dataset not in DATASETS:
            raise ValueError(f"Unknown dataset {self.dataset!r}. Known: {', '.join(LIVE_DATASETS)}.")
        if self.transform not in transform_names():
            raise ValueError(f"Unknown transform {self.transform!r}. Known: {', '.join(transform_names())}.")
        if not (math.isfinite(float(self.loc_lr)) and math.isfinite(float(self.lr))):
            raise ValueError("learning rates must be finite numbers")
        return replace(
            self,
            steps=int(min(max(int(self.steps), 10), MAX_STEPS)),
            loc_lr=float(min(max(float(self.loc_lr), 1e-5), 3e-2)),
            lr=float(min(max(float(self.lr), 1e-5), 3e-2)),
            seed=int(self.seed) % (2**31),
            batch_size=int(min(max(int(self.batch_size), 8), 256)),
            update_every=max(1, int(self.update_every)),
            max_seconds=float(min(max(float(self.max_seconds), 1.0), MAX_SECONDS)),
        )


def live_config(dataset: str, transform: str) -> ModelConfig:
    """The model a live run trains: the zoo's architecture for ``dataset`` with ``transform``."""
    spec = get_spec(dataset)
    return ModelConfig(
        dataset=spec.name,
        input_size=spec.canvas,
        transform=transform,
        transform_options={"grid_size": 4} if transform == "tps" else {},
        heads=spec.digits,
        digit_size=spec.digit_size,
    )


@dataclass
class LiveUpdate:
    """One streamed view of a live run."""

    step: int
    total_steps: int
    loss: float | None  # smoothed training loss (None before the first step)
    acc: float | None  # smoothed training accuracy
    curve: dict[str, list[float]]  # "step", "loss", "acc" so far (shared, do not modify)
    params: list[torch.Tensor]  # θ per head on the probe images, (P, n_params), CPU
    crops: list[torch.Tensor]  # crops per head on the probe images, (P, 1, h, w), CPU
    labels: torch.Tensor  # (P,) predicted classes of the probe images
    probe_correct: int  # probe images read right (all digits)
    centring: float  # :func:`ink_offset` of the crops (0 = centred)
    centring_start: float  # the same at step 0 (the identity)
    steps_per_second: float  # training steps per second of compute (excluding the time between updates)
    elapsed: float  # wall-clock seconds since the run started
    status: str = "running"  # "running", "done", "stopped" or "timeout"
    extras: dict = field(default_factory=dict)

    @property
    def finished(self) -> bool:
        return self.status != "running"


class LiveRun:
    """A short training run on the bundled MNIST subset, advanced by iterating :meth:`updates`.

    Args:
        settings: what to train (checked with :meth:`LiveSettings.checked`).
        device: where to train (default: CUDA when available).
        root: MNIST root; ``"bundled"`` is the subset in ``assets/``.
    """

    def __init__(self, settings: LiveSettings, device: torch.device | None = None, root: str = BUNDLED) -> None:
        self.settings = s = settings.checked()
        self.device = device or default_device()
        self.config = live_config(s.dataset, s.transform)
        train_cfg = TrainConfig(
            batch_size=s.batch_size,
            lr=s.lr,
            loc_lr_scale=s.loc_lr / s.lr,
            seed=s.seed,
            steps=s.steps,
            extra={"live": True},
        )
        with _BUILD_LOCK, intra_op_threads(s.threads):
            torch.manual_seed(s.seed)
            self.model = STClassifier(self.config)
            self.trainer = Trainer(self.model, train_cfg, root, self.device)
            self._total_steps = self.trainer.total_steps
            self._transform = self.model.st.transform if self.model.st is not None else None
            probe_x, self.probe_labels = probe_batch(s.dataset, root)
        self.probe = probe_x.to(self.device)
        self.curve: dict[str, list[float]] = {"step": [], "loss": [], "acc": []}
        self._loss: float | None = None
        self._acc: float | None = None
        self._stop = threading.Event()
        self.started = time.monotonic()
        self.last_active = self.started
        self.compute_seconds = 0.0
        self.centring_start: float | None = None
        self.status = "running"
        self.last: LiveUpdate | None = None  # the latest snapshot

    @property
    def transform(self):
        return self._transform

    @property
    def total_steps(self) -> int:
        return self._total_steps

    def stop(self) -> None:
        """Ask the run to end after the current chunk of steps (safe from any thread)."""
        self._stop.set()

    def close(self) -> None:
        """End the run and let go of what it trained with (the model, its gradients, the optimiser, the data):
        a visitor's session keeps its last run, for Stop's message and the last snapshot (:attr:`last`), until
        the session is evicted, and each kept run held ~8 MB."""
        self.stop()
        if self.status == "running":
            self.status = "stopped"
        self.trainer = self.model = self.probe = None  # type: ignore[assignment]

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def snapshot(self) -> LiveUpdate:
        """θ, crops and predictions on the probe images now, with the curve so far."""
        with intra_op_threads(self.settings.threads):
            pred = self.model.predict(self.probe)
        crops = pred.crops if self.model.st is not None else []
        centring = ink_offset(crops) if crops else float("nan")
        if self.centring_start is None:
            self.centring_start = centring
        truth = self.probe_labels.view(len(self.probe_labels), -1)
        digits = pred.head_probs.argmax(-1)  # (P, heads)
        correct = int((digits == truth).all(dim=1).sum())
        elapsed = time.monotonic() - self.started
        step = self.trainer.step_count
        self.last = LiveUpdate(
            step=step,
            total_steps=self.total_steps,
            loss=self._loss,
            acc=self._acc,
            curve=self.curve,
            params=pred.params,
            crops=crops,
            labels=pred.labels,
            probe_correct=correct,
            centring=centring,
            centring_start=self.centring_start,
            steps_per_second=step / self.compute_seconds if self.compute_seconds > 0 else 0.0,
            elapsed=elapsed,
            status=self.status,
        )
        return self.last

    def _train_chunk(self, n: int) -> None:
        with intra_op_threads(self.settings.threads):
            t0 = time.perf_counter()
            for _ in range(n):
                if self.trainer.done:
                    break
                m = self.trainer.step()
                self._loss = m["loss"] if self._loss is None else 0.9 * self._loss + 0.1 * m["loss"]
                self._acc = m["acc"] if self._acc is None else 0.9 * self._acc + 0.1 * m["acc"]
                self.curve["step"].append(self.trainer.step_count)
                self.curve["loss"].append(round(self._loss, 4))
                self.curve["acc"].append(round(self._acc, 4))
            self.compute_seconds += time.perf_counter() - t0
        self.last_active = time.monotonic()

    def updates(self) -> Iterator[LiveUpdate]:
        """Train to the end (or until :meth:`stop`, or ``max_seconds``), yielding a snapshot at
        step 0, then every ``update_every`` steps at most every ``min_interval`` seconds, and at the end.

        Nothing runs between two ``next()`` calls: the consumer's pace sets the pace.
        """
        s = self.settings
        last = time.monotonic()
        yield self.snapshot()
        while self.status == "running":
            self._train_chunk(s.update_every)
            now = time.monotonic()
            if self.trainer.done:
                self.status = "done"
            elif self._stop.is_set():
                self.status = "stopped"
            elif now - self.started > s.max_seconds:
                self.status = "timeout"
            if self.status != "running" or now - last >= s.min_interval:
                last = now
                yield self.snapshot()


class LiveBusy(RuntimeError):
    """A live run was refused: the server's cap is reached, or this session already has one."""


class LiveManager:
    """Admission for live runs: at most ``max_runs`` at once server-wide and one per session.

    A run counts until its generator ends or is closed (Gradio closes it when the event is
    cancelled); a run whose consumer went silent for ``stale_after`` seconds no longer counts.

    >>> mgr = LiveManager(max_runs=1)
    >>> mgr.active()
    0
    """

    def __init__(self, max_runs: int | None = None, stale_after: float = 30.0) -> None:
        self.max_runs = int(max_runs) if max_runs else default_max_runs()
        self.stale_after = float(stale_after)
        self._lock = threading.Lock()
        self._runs: dict[str, LiveRun | None] = {}  # session → run (None while it is being built)
        self._since: dict[str, float] = {}

    def _prune(self) -> None:
        now = time.monotonic()
        for key, run in list(self._runs.items()):
            idle = now - (run.last_active if run is not None else self._since[key])
            if (run is not None and run.status != "running") or idle > self.stale_after:
                if run is not None:
                    run.stop()
                del self._runs[key]
                self._since.pop(key, None)

    def active(self) -> int:
        """Number of runs counting against the cap now."""
        with self._lock:
            self._prune()
            return len(self._runs)

    def busy_message(self) -> str:
        n = self.max_runs
        return (
            f"The server is busy: {n} training run{'s' * (n > 1)} {'are' if n > 1 else 'is'} going on right now, "
            f"the most it allows at once so that predictions stay fast for everyone. "
            "Try again in a minute, or watch a replay above meanwhile."
        )

    def start(self, session: str, settings: LiveSettings, device: torch.device | None = None) -> LiveRun:
        """Admit and build a run for ``session``; raises :class:`LiveBusy` with a message if it may not start."""
        settings = settings.checked()
        with self._lock:
            self._prune()
            if session in self._runs:
                raise LiveBusy("You already have a training run going in this session: stop it first.")
            if len(self._runs) >= self.max_runs:
                raise LiveBusy(self.busy_message())
            self._runs[session] = None
            self._since[session] = time.monotonic()
        try:
            run = LiveRun(settings, device)
        except BaseException:
            self.release(session)
            raise
        with self._lock:
            self._runs[session] = run
        return run

    def release(self, session: str, run: LiveRun | None = None) -> None:
        """Free ``session``'s slot (only if it still holds ``run``, when given)."""
        with self._lock:
            if run is None or self._runs.get(session) is run:
                self._runs.pop(session, None)
                self._since.pop(session, None)

    def stop(self, session: str) -> bool:
        """Ask ``session``'s run to stop; False if it has none."""
        with self._lock:
            run = self._runs.get(session)
        if run is None:
            return False
        run.stop()
        return True

    def run(self, session: str, settings: LiveSettings, device: torch.device | None = None) -> Iterator[LiveUpdate]:
        """Admit, train and stream: a generator of :class:`LiveUpdate` that frees its slot when it
        ends or is closed. Raises :class:`LiveBusy` on the first ``next()`` if refused."""
        live = self.start(session, settings, device)
        try:
            yield from live.updates()
        finally:
            live.stop()
            self.release(session, live)
