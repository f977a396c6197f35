"""Training: one optimisation loop shared by the CLI (``python -m stn train``) and the app's
live training, with a replay of θ on a fixed probe batch recorded along the way."""

from __future__ import annotations

import math
import os
import platform
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from stn.data import get_spec, test_set, train_batches, training_digits, val_set
from stn.model import ModelConfig, STClassifier, loss_fn

__all__ = ["TrainConfig", "Trainer", "evaluate", "hardware", "default_device"]


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
    kept in eval mode. Call :meth:`step` until :attr:`done`.
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

    @property
    def done(self) -> bool:
        return self.step_count >= self.total_steps

    def _next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        try:
            return next(self._batches)
        except StopIteration:
            self._batches = next(self._epochs)
            return next(self._batches)

    def step(self) -> dict[str, float]:
        """One optimisation step; returns the batch's loss and accuracy."""
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


def fit(
    config: ModelConfig,
    train: TrainConfig,
    root: str | os.PathLike | None = None,
    device: torch.device | None = None,
    progress: bool = True,
    init: dict[str, torch.Tensor] | None = None,
    classifier_init: dict[str, torch.Tensor] | None = None,
) -> tuple[STClassifier, dict]:
    """Train a model, from scratch or from the weights ``init`` (a state dict of the same
    architecture: fine-tuning); returns it and a dict of results for its card (and the replay):
    ``test_error``, and ``val_error`` on the held-out digits when ``train.holdout`` is set.

    ``classifier_init``: a state dict for the classifier alone (``ConvClassifier``'s keys), e.g. a
    CNN trained on upright digits, that the transformer then learns to feed.
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

    def record() -> None:
        params, labels = trainer.snapshot(probe_x)
        replay["step"].append(trainer.step_count)
        replay["params"].append(torch.stack(params) if params else torch.zeros(0))
        replay["labels"].append(labels)

    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=trainer.total_steps, unit="step", dynamic_ncols=True, mininterval=2.0)
    t0 = time.perf_counter()
    if train.replay_every:
        record()
    run_loss = run_acc = None
    log_every = max(1, trainer.total_steps // 200)
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
        if bar is not None:
            bar.update(1)
            if trainer.step_count % 20 == 0:
                ips = trainer.images_seen / (time.perf_counter() - t0)
                bar.set_postfix(loss=f"{run_loss:.3f}", acc=f"{run_acc:.3f}", img_s=f"{ips:.0f}")
    wall = time.perf_counter() - t0
    if bar is not None:
        bar.close()
    x_test, y_test = test_set(config.dataset, root)
    error = evaluate(model, x_test, y_test)
    results = {
        "test_error": error,
        **({"val_error": evaluate(model, *val_set(config.dataset, train.holdout, root))} if train.holdout else {}),
        "train_seconds": round(wall, 1),
        "steps": trainer.step_count,
        "epochs": round(trainer.step_count / trainer.steps_per_epoch, 2),
        "images_per_second": round(trainer.images_seen / wall, 1),
        "hardware": hardware(trainer.device),
        "curve": curve,
        "replay": replay,
        "probe": (probe_x, probe_y),
    }
    return model.cpu().eval(), results
