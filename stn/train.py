"""Training: one optimisation loop shared by the CLI (``python -m stn train``) and the app's
live training, with a replay of θ on a fixed probe batch recorded along the way, and
checkpoints (:mod:`stn.checkpoint`) from which an interrupted run finishes as if it never stopped."""

from __future__ import annotations

import dataclasses
import math
import os
import platform
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Self

import torch

from stn.checkpoint import Checkpoint, CheckpointError, check_same_run, check_weights, save_checkpoint
from stn.data import StreamState, get_spec, test_set, train_batches, training_digits, val_set
from stn.model import ModelConfig, STClassifier, loss_fn

__all__ = ["TrainConfig", "Trainer", "Checkpointing", "Interrupted", "evaluate", "fit", "run_settings", "hardware",
           "default_device"]


def default_device() -> torch.device:
    """CUDA when available, else CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def cpu_name() -> str:
    """The processor's model name (``/proc/cpuinfo``), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def hardware(device: torch.device) -> str:
    """A one-line description of where training ran, for the model card."""
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (CUDA {torch.version.cuda})"
    threads = torch.get_num_threads()
    return f"CPU: {cpu_name()}, {threads} thread{'s' if threads != 1 else ''}"


@dataclass
class TrainConfig:
    """Optimisation settings (stored in the model card)."""

    epochs: float = 10.0
    batch_size: int = 128
    lr: float = 3e-3
    loc_lr_scale: float = 0.1  # the paper's reduced learning rate for the localisation net
    weight_decay: float = 1e-4
    seed: int = 0
    steps: int | None = None  # overrides epochs when set
    limit: int | None = None  # use only the first N training digits
    # Leave out the last N training digits (0: none): never trained on, measured at the end as
    # the validation error, so that runs can be compared without looking at the test set.
    holdout: int = 0
    replay_every: int = 0  # record θ on the probe batch every N steps (0: off)
    # Keep the classifier as it starts (weights and batch-norm statistics), train only the
    # transformer: with a classifier that has only seen upright digits, undoing the distortion
    # is then the transformer's job alone (``stn train --classifier-from``).
    freeze_classifier: bool = False
    extra: dict = field(default_factory=dict)


class Trainer:
    """Step-by-step training of an :class:`STClassifier` on a distorted-MNIST task.

    AdamW with a one-cycle schedule; the localisation net runs at ``loc_lr_scale`` of the
    learning rate. With ``freeze_classifier`` the classifier is left out of the optimiser and
    kept in eval mode. Call :meth:`step` until :attr:`done`; between two steps,
    :meth:`state_dict` and :meth:`load_state_dict` stop and continue the run exactly.
    """

    def __init__(
        self,
        model: STClassifier,
        train: TrainConfig,
        root: str | os.PathLike | None = None,
        device: torch.device | None = None,
    ) -> None:
        self.model = model
        self.cfg = train
        self.device = device or default_device()
        self._root = root
        self.model.to(self.device)
        torch.manual_seed(train.seed)
        spec = get_spec(model.config.dataset)
        n_train = len(training_digits(root, train.holdout, train.limit)[1])
        self.steps_per_epoch = max(1, n_train // train.batch_size)
        self.total_steps = train.steps or max(1, int(math.ceil(train.epochs * self.steps_per_epoch)))
        if train.freeze_classifier:
            if model.st is None:
                raise ValueError("freeze_classifier: a plain CNN has nothing else to train")
            model.classifier.requires_grad_(False)
        loc = [p for n, p in model.named_parameters() if n.startswith("st.")]
        rest = [p for n, p in model.named_parameters() if not n.startswith("st.") and p.requires_grad]
        groups = [{"params": rest, "lr": train.lr}] if rest else []
        if loc:
            groups.append({"params": loc, "lr": train.lr * train.loc_lr_scale})
        self.opt = torch.optim.AdamW(groups, lr=train.lr, weight_decay=train.weight_decay)
        self.sched = torch.optim.lr_scheduler.OneCycleLR(
            self.opt, max_lr=[g["lr"] for g in groups], total_steps=self.total_steps, pct_start=0.15
        )
        self._epochs = train_batches(spec.name, train.batch_size, root, train.seed, self.device, train.limit,
                                     train.holdout)
        self._batches = next(self._epochs)
        self.step_count = 0
        self.images_seen = 0
        self._stepping = False

    @property
    def done(self) -> bool:
        return self.step_count >= self.total_steps

    @property
    def mid_step(self) -> bool:
        """Whether a step was cut short (an exception inside :meth:`step`): the weights, the optimiser
        and the data stream may then be part-way through it, a state not worth saving."""
        return self._stepping

    def state_dict(self) -> dict:
        """All the run needs to go on as if it never stopped: the model's, the optimiser's and the LR
        schedule's state dicts, the step and image counts, the data stream's position
        (:class:`stn.data.StreamState` as a dict) and torch's global random state (dropout draws from it).

        Call it between two steps. Like ``nn.Module.state_dict``, its tensors are the live ones: save
        or copy them before the next step.
        """
        if self._stepping:
            raise RuntimeError("Trainer.state_dict: the last step was cut short; its state is not one to continue from")
        data = self._epochs.state()
        rng = {"cpu": torch.get_rng_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        return {
            "model": self.model.state_dict(),
            "optimizer": self.opt.state_dict(),
            "scheduler": self.sched.state_dict(),
            "step_count": self.step_count,
            "total_steps": self.total_steps,
            "images_seen": self.images_seen,
            "data": {"generator": data.generator, "order": data.order, "position": data.position},
            "rng": rng,
        }

    def load_state_dict(self, state: dict) -> None:
        """Continue the run :meth:`state_dict` saved, in a Trainer built with the same model config,
        :class:`TrainConfig`, data and kind of device: the next :meth:`step` is the one it would have taken."""
        if state["total_steps"] != self.total_steps:
            raise ValueError(f"Trainer.load_state_dict: the state is of a run of {state['total_steps']} steps, "
                             f"this Trainer's is of {self.total_steps}")
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["optimizer"])
        self.sched.load_state_dict(state["scheduler"])
        data = state["data"]
        resume = StreamState(data["generator"], data["order"], int(data["position"]))
        cfg = self.cfg
        self._epochs = train_batches(get_spec(self.model.config.dataset).name, cfg.batch_size, self._root, cfg.seed,
                                     self.device, cfg.limit, cfg.holdout, resume=resume)
        self._batches = next(self._epochs)
        self.step_count, self.images_seen = int(state["step_count"]), int(state["images_seen"])
        torch.set_rng_state(state["rng"]["cpu"])
        if self.device.type == "cuda":
            torch.cuda.set_rng_state(state["rng"]["cuda"], self.device)
        self._stepping = False

    def _next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        try:
            return next(self._batches)
        except StopIteration:
            self._batches = next(self._epochs)
            return next(self._batches)

    def step(self) -> dict[str, float]:
        """One optimisation step; returns the batch's loss and accuracy."""
        self._stepping = True  # until the step is whole: see mid_step
        self.model.train()
        if self.cfg.freeze_classifier:
            self.model.classifier.eval()  # its batch-norm statistics stay those it was trained with
        x, y = self._next_batch()
        y = y.view(len(y), -1)
        logits = self.model(x)
        loss = loss_fn(logits, y)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 5.0)
        self.opt.step()
        if self.step_count < self.total_steps - 1:
            self.sched.step()
        self.step_count += 1
        self.images_seen += len(x)
        self._stepping = False
        acc = (logits.argmax(-1) == y).all(dim=1).float().mean()
        return {"loss": float(loss.detach()), "acc": float(acc)}

    @torch.no_grad()
    def snapshot(self, probe: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """θ per head and predicted labels on a fixed probe batch (for replays and live views)."""
        pred = self.model.predict(probe)
        return pred.params, pred.labels


@torch.no_grad()
def evaluate(model: STClassifier, x: torch.Tensor, y: torch.Tensor, batch_size: int = 500) -> float:
    """Error rate (fraction of images with any digit wrong) on ``x`` ``(N, 1, H, W)``, ``y`` ``(N,)|(N, d)``."""
    model.eval()
    dev = next(model.parameters()).device
    wrong = 0
    y = y.view(len(y), -1)
    for start in range(0, len(x), batch_size):
        logits = model(x[start : start + batch_size].to(dev))
        wrong += int((logits.argmax(-1).cpu() != y[start : start + batch_size]).any(dim=1).sum())
    return wrong / len(x)


def probe_batch(dataset: str, root: str | os.PathLike | None = None, n: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """The fixed probe images of a task: the first ``n`` of its test set."""
    x, y = test_set(dataset, root, n=max(n, 16))
    return x[:n], y[:n]


class Interrupted(KeyboardInterrupt):
    """A run stopped by the signal ``signum`` (SIGINT: Ctrl-C; SIGTERM); a KeyboardInterrupt, so that
    whatever handles Ctrl-C handles both. :func:`fit` raises it between two steps."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class _StopBetweenSteps:
    """Within it, SIGINT and SIGTERM are noted in :attr:`signum` rather than raised, so that the loop
    stops between two steps, in a state worth saving; a second one raises :class:`Interrupted` at once
    (someone who insists). Only the main thread receives signals: elsewhere nothing changes."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._before: dict[int, object] = {}

    def _note(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None:
            raise Interrupted(signum)
        self.signum = signum

    def __enter__(self) -> Self:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._before[sig] = signal.signal(sig, self._note)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._before.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)


@dataclass
class Checkpointing:
    """Where and when :func:`fit` saves the whole state of its run (:mod:`stn.checkpoint`). A checkpoint
    already in ``directory`` is replaced by the run's first unless it is the one given as ``resume``."""

    directory: str | os.PathLike
    # steps between two checkpoints; 0: none on a schedule. A checkpoint is also written when the
    # run is interrupted (KeyboardInterrupt, SIGTERM) and when training ends (the evaluation after
    # it may be interrupted too); the caller removes it once the model is safe.
    every: int = 0
    resume: Checkpoint | None = None  # a checkpoint of this same run to continue from
    info: dict = field(default_factory=dict)  # more of the run's settings (JSON), compared when resuming
    notes: dict = field(default_factory=dict)  # stored with it, not compared (the CLI's command line)


def run_settings(
    config: ModelConfig,
    train: TrainConfig,
    root: str | os.PathLike | None,
    device: torch.device,
    info: dict | None = None,
) -> dict:
    """What makes a run this run, as JSON: a checkpoint resumes only a run of the same settings.

    The model and training configs, the number of training digits the data gives (``--data``
    may point at the bundled subset or at MNIST) and the kind of device (the data stream's
    random generator differs between CPU and CUDA), then ``info``.
    """
    n_train = len(training_digits(root, train.holdout, train.limit)[1])
    return {"model": config.to_dict(), "train": dataclasses.asdict(train), "train_digits": n_train,
            "device": device.type, **(info or {})}


def fit(
    config: ModelConfig,
    train: TrainConfig,
    root: str | os.PathLike | None = None,
    device: torch.device | None = None,
    progress: bool = True,
    init: dict[str, torch.Tensor] | None = None,
    classifier_init: dict[str, torch.Tensor] | None = None,
    checkpoint: Checkpointing | None = None,
) -> tuple[STClassifier, dict]:
    """Train a model, from scratch or from the weights ``init`` (a state dict of the same
    architecture: fine-tuning); returns it and a dict of results for its card (and the replay):
    ``test_error``, and ``val_error`` on the held-out digits when ``train.holdout`` is set.

    ``classifier_init``: a state dict for the classifier alone (``ConvClassifier``'s keys), e.g. a
    CNN trained on upright digits, that the transformer then learns to feed.

    ``checkpoint``: save the run's state as :class:`Checkpointing` says, and continue from
    ``checkpoint.resume`` if given (refused with a :class:`stn.checkpoint.CheckpointError` unless
    it is of a run of the same settings, :func:`run_settings`). A resumed run ends with the weights,
    curve and replay of a run never interrupted (bit for bit on the CPU with the same number of
    threads); ``train_seconds`` counts all its parts and ``resumed_at`` lists the steps it resumed at.
    A SIGINT or SIGTERM in the main thread stops training after the step under way, saves and
    raises :class:`Interrupted`; a KeyboardInterrupt from anywhere else saves too, unless it cut
    a step short (the last checkpoint is then the one to resume from).
    """
    torch.manual_seed(train.seed)
    model = STClassifier(config)
    if init is not None:
        model.load_state_dict(init)
    if classifier_init is not None:
        model.classifier.load_state_dict(classifier_init)
    trainer = Trainer(model, train, root, device)
    probe_x, probe_y = probe_batch(config.dataset, root)
    replay: dict[str, list] = {"step": [], "params": [], "labels": []}
    curve: dict[str, list] = {"step": [], "loss": [], "acc": []}
    run_loss = run_acc = None
    seconds_before, resumed_at = 0.0, []
    run = run_settings(config, train, root, trainer.device, checkpoint.info) if checkpoint is not None else {}
    resume = checkpoint.resume if checkpoint is not None else None
    if resume is not None:
        check_same_run(resume, run)
        _load_trainer(trainer, resume)
        rec = resume.records
        lacking = [k for k in ("curve", "replay", "run_loss", "run_acc", "seconds", "resumed_at") if k not in rec]
        if lacking:
            raise CheckpointError(f"{resume.file} holds a Trainer's state but not fit's records ({lacking[0]!r})")
        replay, curve, run_loss, run_acc = rec["replay"], rec["curve"], rec["run_loss"], rec["run_acc"]
        seconds_before, resumed_at = float(rec["seconds"]), [*rec["resumed_at"], trainer.step_count]
    saved_at = trainer.step_count if resume is not None else None  # the step of the checkpoint on disk

    def record() -> None:
        params, labels = trainer.snapshot(probe_x)
        replay["step"].append(trainer.step_count)
        replay["params"].append(torch.stack(params) if params else torch.zeros(0))
        replay["labels"].append(labels)

    def save() -> None:
        nonlocal saved_at
        if checkpoint is None or saved_at == trainer.step_count or trainer.step_count == 0:  # at 0: nothing to lose
            return
        records = {"curve": curve, "replay": replay, "run_loss": run_loss, "run_acc": run_acc,
                   "seconds": seconds_before + time.perf_counter() - t0, "resumed_at": resumed_at}
        save_checkpoint(checkpoint.directory, trainer.state_dict(), run=run, records=records, notes=checkpoint.notes)
        saved_at = trainer.step_count

    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=trainer.total_steps, initial=trainer.step_count, unit="step", dynamic_ncols=True,
                   mininterval=2.0)
    t0 = time.perf_counter()
    images_before = trainer.images_seen
    if train.replay_every and resume is None:
        record()
    log_every = max(1, trainer.total_steps // 200)
    every = checkpoint.every if checkpoint is not None else 0
    whole_at = trainer.step_count  # the last step whose curve and replay are recorded too: a state to save
    try:
        with _StopBetweenSteps() as stop:
            while not trainer.done:
                m = trainer.step()
                run_loss = m["loss"] if run_loss is None else 0.95 * run_loss + 0.05 * m["loss"]
                run_acc = m["acc"] if run_acc is None else 0.95 * run_acc + 0.05 * m["acc"]
                if trainer.step_count % log_every == 0 or trainer.done:
                    curve["step"].append(trainer.step_count)
                    curve["loss"].append(run_loss)
                    curve["acc"].append(run_acc)
                if train.replay_every and (trainer.step_count % train.replay_every == 0 or trainer.done):
                    record()
                whole_at = trainer.step_count
                if every and trainer.step_count % every == 0:
                    save()
                if bar is not None:
                    bar.update(1)
                    if trainer.step_count % 20 == 0:
                        ips = (trainer.images_seen - images_before) / (time.perf_counter() - t0)
                        bar.set_postfix(loss=f"{run_loss:.3f}", acc=f"{run_acc:.3f}", img_s=f"{ips:.0f}")
                if stop.signum is not None:
                    raise Interrupted(stop.signum)
            save()  # trained: what follows (evaluation, the caller's writing of the model) may be interrupted too
            if stop.signum is not None:  # a signal during that save
                raise Interrupted(stop.signum)
    except KeyboardInterrupt:
        if not trainer.mid_step and trainer.step_count == whole_at:  # else the last checkpoint is the one to resume
            save()
        raise
    finally:
        if bar is not None:
            bar.close()
    seconds = seconds_before + time.perf_counter() - t0
    x_test, y_test = test_set(config.dataset, root)
    error = evaluate(model, x_test, y_test)
    results = {
        "test_error": error,
        **({"val_error": evaluate(model, *val_set(config.dataset, train.holdout, root))} if train.holdout else {}),
        "train_seconds": round(seconds, 1),
        "steps": trainer.step_count,
        "epochs": round(trainer.step_count / trainer.steps_per_epoch, 2),
        "images_per_second": round(trainer.images_seen / max(seconds, 1e-9), 1),
        "hardware": hardware(trainer.device),
        "curve": curve,
        "replay": replay,
        "probe": (probe_x, probe_y),
        "resumed_at": resumed_at,
    }
    return model.cpu().eval(), results


def _load_trainer(trainer: Trainer, checkpoint: Checkpoint) -> None:
    """``trainer.load_state_dict`` from a checkpoint, or a :class:`CheckpointError` that names its file: the
    settings matched (:func:`run_settings`), so a state that does not fit is a damaged one."""
    check_weights(checkpoint, trainer.model.state_dict())
    try:
        trainer.load_state_dict(checkpoint.trainer)
    except (RuntimeError, ValueError, KeyError, TypeError, IndexError, AttributeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{checkpoint.file} does not fit the run it was saved for ({first})") from None
