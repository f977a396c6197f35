"""Command-line interface: ``python -m stn {train,eval,models,predict,table,uploads,calibrate}`` (also ``stn ...``)."""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import shlex
import signal
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the CLI imports torch and the library lazily, so that --help stays quick
    from stn.checkpoint import Checkpoint
    from stn.model import ModelConfig, STClassifier
    from stn.replay import Replay
    from stn.train import Checkpointing, TrainConfig

__all__ = ["main"]


def _add_common(p: argparse.ArgumentParser, data: bool = True) -> None:
    """``--models-dir``, and ``--data`` for the commands that read MNIST (predict, models and table do not)."""
    if data:
        p.add_argument("--data", default=None, help="MNIST root in torchvision's layout (default: $STN_DATA)")
    p.add_argument("--models-dir", default=None, help="where model cards and weights live (default: models/)")


_REPO = Path(__file__).resolve().parent.parent  # the checkout this package lives in
TPS_GRID = 4  # control points per side of a thin-plate spline when --grid-size is not given


def _models_dir(args: argparse.Namespace) -> Path | None:
    return Path(args.models_dir) if args.models_dir else None


def _dir_named(args: argparse.Namespace, directory: Path) -> str:
    """How a message names the models directory: by the flag or variable that chose it."""
    if args.models_dir:
        return f"--models-dir {directory}"
    return f"$STN_MODELS ({directory})" if os.environ.get("STN_MODELS") else f"the models directory {directory}"


def _check_models_dir(args: argparse.Namespace) -> None:
    """The commands that read models: a directory that is not there is said, not taken for an empty zoo
    ("no models found", "Unknown model ... Known: none")."""
    from stn.zoo import models_dir

    d = _models_dir(args) or models_dir()
    if not d.is_dir():
        fix = ("give the directory the models were trained into (stn train --models-dir DIR)" if args.models_dir
               else "give one with --models-dir DIR or $STN_MODELS")
        raise ValueError(f"{_dir_named(args, d)} {'is not a directory' if d.exists() else 'does not exist'}: {fix}")


def _check_writable(args: argparse.Namespace, directory: Path) -> None:
    """Before training: ``directory`` is, or is now made, a directory this run can write into. A file there, or
    a place that cannot be written, ended the run after training with a traceback and the model lost."""
    if directory.exists() and not directory.is_dir():
        raise ValueError(f"{_dir_named(args, directory)} is a file, not a directory: give a directory to write the "
                         "model into (it is created if missing)")
    try:
        directory.mkdir(parents=True, exist_ok=True)
        # a file written, not os.access: that says yes to root on /proc or a read-only mount
        with tempfile.TemporaryFile(dir=directory):
            pass
    except OSError as exc:
        raise ValueError(f"{_dir_named(args, directory)} cannot be created or written into ({exc.strerror or exc}): "
                         "give a directory you can write to") from None


def cmd_train(args: argparse.Namespace) -> int:
    import torch

    from stn.checkpoint import CheckpointError, remove_checkpoint
    from stn.data import get_spec, load_mnist
    from stn.localization import light_options
    from stn.model import ModelConfig, change_transform
    from stn.replay import save_replay
    from stn.train import Checkpointing, TrainConfig, fit
    from stn.transforms import names as transform_names
    from stn.zoo import MNIST_LICENSE, check_name, models_dir, save_model

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.crop_size is not None and not 8 <= args.crop_size <= 64:
        raise ValueError(f"--crop-size must be between 8 and 64 pixels, got {args.crop_size}")
    spec = get_spec(args.dataset)
    # before the "training NAME: ..." line, which named the run r-foo and then refused the transform
    if args.transform not in (None, "none", *transform_names()):
        raise ValueError(f"--transform {args.transform!r} is not a transform: give {', '.join(transform_names())}, or "
                         "none (the CNN baseline)")
    if args.name is not None:
        check_name(args.name, "--name")
    if args.limit is not None and args.batch_size > args.limit:  # not one whole batch to train on
        raise ValueError(f"--batch-size {args.batch_size} is more than the {args.limit} training digits of --limit "
                         f"{args.limit}: give --batch-size {args.limit} or less, or a larger --limit")
    holdout = _holdout(args) if args.holdout else None
    init = _init_from(args, spec.name) if args.init else None
    if init is not None and holdout:
        _check_start("--init", args.init, init["card"], holdout)
    if args.freeze_classifier and not args.classifier_from:
        raise ValueError("--freeze-classifier keeps a trained classifier fixed: give it one with --classifier-from MODEL")
    if args.classifier_from and init is not None:
        raise ValueError("--classifier-from and --init both set the classifier's weights: use one of them")
    if args.transform is None:
        args.transform = (init["card"]["config"]["transform"] or "none") if init is not None else "affine"
    transform = None if args.transform == "none" else args.transform
    if args.grid_size is not None and transform != "tps":  # it was ignored without a word
        raise ValueError(f"--grid-size sets a thin-plate spline's control points, and this model's transform is "
                         f"{args.transform}: give --transform tps with it, or leave --grid-size out")
    options = {"grid_size": args.grid_size or TPS_GRID} if transform == "tps" else {}
    config = ModelConfig(
        dataset=spec.name,
        input_size=spec.canvas,
        transform=transform,
        transform_options=options,
        heads=spec.digits,
        localization=args.localization,
        loc_options=light_options((1, *spec.canvas)) if args.loc_net == "light" and args.localization == "cnn" else {},
        bound=not args.no_bound,
        start_scale=args.start_scale,
        digit_size=spec.digit_size,
        **({"crop_size": (args.crop_size, args.crop_size)} if args.crop_size else {}),
    )
    if init is not None:  # the architecture is the starting model's; its card is kept in ours
        config = ModelConfig.from_dict(init["card"]["config"])
        if transform != config.transform:  # an affine model as the start of a richer family
            config, init["weights"] = change_transform(config, init["weights"], transform, options)
        elif args.grid_size not in (None, have := config.transform_options.get("grid_size", TPS_GRID)):
            raise ValueError(f"--grid-size {args.grid_size}: --init {args.init} has a {have}×{have} grid, which "
                             "fine-tuning keeps: leave --grid-size out, or train a new tps model without --init")
        transform = config.transform
    name = check_name(args.name or (f"{args.init}-ft" if init is not None else
                                    f"{spec.name}-{args.transform if transform else 'cnn'}"), "--name")
    out = _models_dir(args) or models_dir()
    _refuse_overwrite(name, out, args.force)
    # where the run is saved as it goes (stn/checkpoint.py); main() names it if the run is interrupted
    args.checkpoint_dir = checkpoint_dir = out / f"{name}.checkpoint"
    started = _refuse_stale_checkpoint(name, checkpoint_dir, args) if not args.resume else None
    # the data's own sizes (the bundled subset has 4,000 and 1,000 digits, not MNIST's 60,000 and 10,000)
    n_train, n_test = (len(load_mnist(args.data, train=t)[1]) for t in (True, False))
    steps_per_epoch = (holdout["train"] if holdout else min(args.limit or n_train, n_train)) // args.batch_size
    total = args.steps or int(args.epochs * steps_per_epoch)
    train_cfg = TrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        loc_lr_scale=args.loc_lr_scale,
        seed=args.seed,
        steps=args.steps,
        limit=args.limit,
        holdout=args.holdout,
        replay_every=max(1, total // 60),
        freeze_classifier=args.freeze_classifier,
    )
    donor = _classifier_from(args, config) if args.classifier_from else None
    if donor is not None and holdout:
        _check_start("--classifier-from", args.classifier_from, donor["card"], holdout)
    # read before anything is written: with --force the new run may replace the starting model's own files
    before_replay = _replay_of(init["card"], init["directory"]) if init is not None else None
    command = [a for a in args.argv if a != "--resume"]  # the run's command, whichever part of it this is
    checkpointing = Checkpointing(checkpoint_dir, args.checkpoint_every,
                                  info={"init": args.init, "classifier_from": args.classifier_from},
                                  notes={"command": "python -m stn " + " ".join(shlex.quote(a) for a in command)})
    if args.resume:  # a run with no checkpoint to resume is refused before anything is made
        checkpointing.resume = _resume_from(name, checkpoint_dir, config, train_cfg, checkpointing, args)
    _check_writable(args, out)  # the last check before training: the run is saved there as it goes
    if args.resume:
        print(f"resuming {name} at step {checkpointing.resume.step} of {total}: {spec.description}", file=sys.stderr)
    else:
        if started is not None:  # --force: start over
            remove_checkpoint(checkpoint_dir)
            print(f"starting {name} over: deleted the checkpoint of its interrupted run ({started})", file=sys.stderr)
        print(f"training {name}: {spec.description}; {total} steps of {args.batch_size}", file=sys.stderr)
    try:
        model, res = fit(config, train_cfg, args.data, progress=not args.quiet, init=init["weights"] if init else None,
                         classifier_init=donor["weights"] if donor else None, checkpoint=checkpointing)
    except CheckpointError as exc:  # damage found only when loaded into the optimiser
        raise ValueError(f"{exc.problem}: it cannot be resumed; give --force without --resume to start the run "
                         "over") from None
    n_params = sum(p.numel() for p in model.parameters())
    card = {
        "description": args.description or f"{'ST-CNN ' + transform if transform else 'CNN baseline'} on {spec.name.upper()}: {spec.description}",
        "dataset": {
            "name": spec.name,
            "description": spec.description,
            "canvas": list(spec.canvas),
            "train": f"{n_train:,} MNIST training digits{f' (first {args.limit})' if args.limit else ''}, distorted afresh each epoch",
            "test": f"the {n_test:,} MNIST test digits, distorted once with a fixed seed (stn.data.test_set)",
            "source": MNIST_LICENSE,
        },
        "metrics": {"test_error": round(res["test_error"], 5), "test_accuracy": round(1 - res["test_error"], 5)},
        "training": {
            "seed": args.seed,
            "epochs": res["epochs"],
            "steps": res["steps"],
            "batch_size": args.batch_size,
            "optimizer": f"AdamW (weight decay 1e-4), one-cycle lr {args.lr}, localisation net x{args.loc_lr_scale}",
            "train_seconds": res["train_seconds"],
            "images_per_second": res["images_per_second"],
            "hardware": res["hardware"],
            "torch": torch.__version__,
            "date": _dt.date.today().isoformat(),
            "command": checkpointing.notes["command"],
        },
        "parameters": n_params,
        "replay": f"{name}.replay.safetensors",
    }
    if init is not None:
        before = init["card"]
        # a starting model that was itself fine-tuned counts all of its epochs
        before_epochs = before["training"].get("total_epochs", before["training"]["epochs"])
        card["training"]["init"] = {
            "model": args.init,
            "transform": before["config"]["transform"] or "none",
            "epochs": before_epochs,
            "test_error": before["metrics"]["test_error"],
            "command": before["training"]["command"],
            # where the starting model's classifier came from, if it came from another model
            **({"classifier_from": before["training"]["classifier_from"]} if "classifier_from" in before["training"] else {}),
        }
        card["training"]["total_epochs"] = round(before_epochs + res["epochs"], 2)
    if donor is not None:
        before = donor["card"]
        card["training"]["classifier_from"] = {
            "model": args.classifier_from,
            "dataset": before["dataset"]["name"],
            "test_error": before["metrics"]["test_error"],
            "command": before["training"]["command"],
            "frozen": bool(args.freeze_classifier),
        }
    if res["resumed_at"]:  # interrupted, and continued from a checkpoint: the steps it continued at
        card["training"]["resumed_at"] = res["resumed_at"]
    if holdout:
        _record_holdout(card, holdout, args.limit, res["val_error"])
    _calibrate_new(model, name, card, res["test_error"], args)
    # the replay after the calibration: a run interrupted before this point leaves none of its files behind
    out.mkdir(parents=True, exist_ok=True)
    replay_path = save_replay(out / f"{name}.replay.safetensors", res)
    if before_replay is not None:  # the replay shows the model's whole history: the starting model's runs, then this one
        _chain_replay(replay_path, before_replay, init["card"]["config"]["transform"], transform, options)
    save_model(model, name, card, out, overwrite=True)  # _refuse_overwrite asked before training (--force)
    remove_checkpoint(checkpoint_dir)  # the model is safe: nothing left to resume
    val = f" (val error {100 * res['val_error']:.2f}% on {holdout['digits']:,} held-out digits)" if holdout else ""
    print(
        f"{name}: test error {100 * res['test_error']:.2f}%{val} in {res['train_seconds']:.0f} s "
        f"({res['images_per_second']:.0f} img/s) -> {out / (name + '.safetensors')}"
    )
    return 0


def _refuse_overwrite(name: str, directory: Path, force: bool) -> None:
    """Refuse, before any training, to write over a model ``name`` already in ``directory`` (its
    weights, card or replay, or the replay its card names), unless ``force``: a short run under the
    default name replaced a shipped model and its card without a word."""
    if force:
        return
    files = [directory / f"{name}{ext}" for ext in (".safetensors", ".json", ".replay.safetensors")]
    try:
        named = json.loads(files[1].read_text()).get("replay")
    except (OSError, ValueError, AttributeError):  # no card, or not a JSON object: its own file is listed anyway
        named = None
    if isinstance(named, str) and named:
        files.append(directory / named)
    there = [f.name if f.parent == directory else str(f) for f in dict.fromkeys(files) if f.exists()]
    if there:
        raise ValueError(f"a model named {name} is already in {directory} ({', '.join(there)}): train under another "
                         f"name (--name NAME) or into another directory (--models-dir DIR), or give --force to replace it")


def _refuse_stale_checkpoint(name: str, directory: Path, args: argparse.Namespace) -> str | None:
    """Without ``--resume``: a checkpoint of an interrupted run of ``name`` is not replaced by a new run's
    unless ``--force`` says so (hours of training would be lost to a forgotten ``--resume``). Returns what
    the checkpoint holds ("step 9000 of 10000"), for a forced start to say what it deletes; None: none there."""
    from stn.checkpoint import CheckpointError, peek

    try:
        body = peek(directory)
        held = None if body is None else f"step {body.get('step')} of {body.get('total_steps')}"
    except CheckpointError:
        held = "damaged"
    if held is None or args.force:
        return held
    raise ValueError(f"{directory} holds the checkpoint of an interrupted run of {name} ({held}): continue it with "
                     "--resume (and the same arguments), or give --force to start over (the checkpoint is then "
                     "deleted)")


def _resume_from(
    name: str, directory: Path, config: ModelConfig, train_cfg: TrainConfig, checkpointing: Checkpointing,
    args: argparse.Namespace,
) -> Checkpoint:
    """``--resume``: the checkpoint of ``name``'s interrupted run, refused in one sentence (no checkpoint, a
    damaged one, one of a run with other arguments) before any training."""
    from stn.checkpoint import CheckpointError, CheckpointMismatch, check_same_run, check_weights, load_checkpoint, peek
    from stn.model import STClassifier
    from stn.train import default_device, run_settings

    over = "give --force without --resume to start the run over"
    try:
        if peek(directory) is None:
            others = sorted(f"{p.name}/" for p in directory.parent.glob("*.checkpoint")
                            if (p / "checkpoint.json").exists())
            there = f"; it holds {', '.join(others)}" if others else ""
            raise ValueError(f"--resume: there is no checkpoint of {name} to resume in {directory.parent} (no "
                             f"{directory.name}/{there}): run without --resume to start it, or give the --name and "
                             "--models-dir of the interrupted run")
        checkpoint = load_checkpoint(directory)
        run = run_settings(config, train_cfg, args.data, default_device(), checkpointing.info)
        check_same_run(checkpoint, run)
        check_weights(checkpoint, STClassifier(config).state_dict())
    except CheckpointMismatch as exc:
        started = checkpoint.notes.get("command")
        again = f" ({started} --resume)" if started else ""
        raise ValueError(f"{exc.problem}: resume it with the arguments it was started with{again}, or {over}") from None
    except CheckpointError as exc:
        raise ValueError(f"{exc.problem}: it cannot be resumed; {over}") from None
    return checkpoint


def _interrupted(args: argparse.Namespace) -> str:
    """The line a Ctrl-C or SIGTERM ends ``stn train`` with: where the run is saved and how to resume it."""
    from stn.checkpoint import CheckpointError, peek

    directory = getattr(args, "checkpoint_dir", None)
    try:
        body = peek(directory) if directory is not None else None
    except CheckpointError:
        body = None
    if body is None:
        return "interrupted before a checkpoint was written: nothing to resume"
    command = [a for a in args.argv if a != "--resume"] + ["--resume"]
    return (f"interrupted; the run is saved at step {body.get('step')} of {body.get('total_steps')} in {directory}: "
            "resume it with python -m stn " + " ".join(shlex.quote(a) for a in command))


def _holdout(args: argparse.Namespace) -> dict:
    """``--holdout N``: the last N training digits, checked against the data and ``--limit``:
    ``{"digits": N, "of": all training digits, "train": digits left to train on}``."""
    from stn.data import load_mnist

    n = len(load_mnist(args.data, train=True)[1])
    h = args.holdout
    if h >= n:
        raise ValueError(f"--holdout {h} leaves none of the {n:,} training digits to train on: give --holdout {n - 1} or less")
    if args.limit is not None and args.limit > n - h:
        raise ValueError(f"--limit {args.limit} reaches into the last {h:,} training digits, which --holdout {h} leaves "
                         f"out: give --limit {n - h} or less, or a smaller --holdout")
    train = min(args.limit or n, n - h)
    if args.batch_size > train:
        raise ValueError(f"--batch-size {args.batch_size} is more than the {train:,} training digits --holdout {h} "
                         f"leaves: give --batch-size {train} or less, or a smaller --holdout")
    return {"digits": h, "of": n, "train": train}


def _holdout_of(card: dict) -> dict | None:
    """A card's held-out split, ``{"digits": N, "of": M}`` (the last N of M training digits), or None."""
    dataset = card.get("dataset")
    h = dataset.get("holdout") if isinstance(dataset, dict) else None
    if isinstance(h, dict) and all(isinstance(h.get(k), int) and h[k] > 0 for k in ("digits", "of")):
        return {"digits": h["digits"], "of": h["of"]}
    return None


def _check_start(flag: str, model: str, card: dict, holdout: dict) -> None:
    """Refuse to start a held-out run from weights that were trained on the held-out digits."""
    theirs = _holdout_of(card)
    if theirs is None or theirs["of"] != holdout["of"] or theirs["digits"] < holdout["digits"]:
        saw = ("every training digit" if theirs is None else
               f"the first {theirs['of'] - theirs['digits']:,} of {theirs['of']:,} training digits")
        raise ValueError(f"{flag} {model} was trained on {saw}, digits that --holdout {holdout['digits']} leaves out "
                         f"among them, so the val error would not be held out: start "
                         f"from a model trained with --holdout {holdout['digits']} (or more), or train without --holdout")


def _record_holdout(card: dict, holdout: dict, limit: int | None, val_error: float) -> None:
    """The held-out split and its error, in the card beside the test set and the test error."""
    h, n = holdout["digits"], holdout["of"]
    first = f"the first {limit:,}" if limit else f"the first {n - h:,}"
    card["dataset"]["train"] = (f"{first} of the {n:,} MNIST training digits (the last {h:,} held out), "
                                "distorted afresh each epoch")
    card["dataset"]["val"] = (f"the last {h:,} of the {n:,} MNIST training digits, never trained on (nor drawn as "
                              "clutter or a second digit), distorted once with a fixed seed (stn.data.val_set)")
    card["dataset"]["holdout"] = {"digits": h, "of": n}
    card["metrics"]["val_error"] = round(val_error, 5)
    card["metrics"]["val_accuracy"] = round(1 - val_error, 5)


def _replay_of(card: dict, directory: Path) -> Replay | None:
    """The replay a model's card names, read into memory, or None (none named, or not there)."""
    from stn.replay import load_replay

    rel = card.get("replay")
    return load_replay(directory / rel) if rel and (directory / rel).exists() else None


def _chain_replay(path: Path, before: Replay, before_transform: str | None, transform: str | None, options: dict) -> None:
    """Prepend the starting model's replay ``before`` to the new run's, in the new run's family."""
    from stn.replay import chain_replays, load_replay, write_replay
    from stn.transforms import affine_embedding, get

    embed = None
    if transform is not None and before_transform != transform:
        embed = affine_embedding(get(transform, **options))
    write_replay(path, chain_replays([before, load_replay(path)], [embed, None]))


def _zoo_of(flag: str, name: str, args: argparse.Namespace) -> Path:
    """The directory of the model ``--init``/``--classifier-from`` names: ``--models-dir`` first, then the zoo's
    own directory (what ``stn models`` lists), so that a run trained into ``runs/`` can start from a shipped model."""
    from stn.zoo import UnknownModelError, list_models, models_dir

    places = [d for d in (_models_dir(args), models_dir()) if d is not None]
    if len(places) == 2 and places[0].resolve() == places[1].resolve():
        places.pop()
    for d in places:
        if (d / f"{name}.json").exists() or (d / f"{name}.safetensors").exists():
            return d  # a card or weights alone: load_card says what is missing
    looked = [f"{'--models-dir ' if d is places[0] and args.models_dir else 'the zoo '}{d} "
              f"({', '.join(list_models(d)) or 'no models'})" for d in places]
    raise UnknownModelError(f"Unknown model {name!r} for {flag}: it is not in {' nor in '.join(looked)}: give one of "
                            "those names")


def _init_from(args: argparse.Namespace, dataset: str) -> dict:
    """``--init NAME``: the zoo model's card, weights and directory, refused unless it was trained on ``dataset``."""
    from stn.zoo import load_card, load_model

    d = _zoo_of("--init", args.init, args)
    card = load_card(args.init, d)
    if card["dataset"]["name"] != dataset:
        raise ValueError(f"--init {args.init} was trained on {card['dataset']['name'].upper()}, not on "
                         f"{dataset.upper()}: fine-tune it with --dataset {card['dataset']['name']}.")
    return {"card": card, "weights": load_model(args.init, device="cpu", directory=d).state_dict(), "directory": d}


def _classifier_from(args: argparse.Namespace, config: ModelConfig) -> dict:
    """``--classifier-from NAME``: the zoo model's card and its classifier's weights, refused unless
    that classifier reads what this model's classifier reads (its input size, layer widths, classes)."""
    from stn.zoo import load_card, load_model

    d = _zoo_of("--classifier-from", args.classifier_from, args)
    card = load_card(args.classifier_from, d)
    donor = load_model(args.classifier_from, device="cpu", directory=d)
    dc = donor.config
    theirs = (tuple(dc.crop_size) if dc.transform else tuple(dc.input_size), tuple(dc.channels), dc.hidden, dc.n_classes)
    ours = (tuple(config.crop_size) if config.transform else tuple(config.input_size), tuple(config.channels), config.hidden,
            config.n_classes)
    if theirs != ours:
        raise ValueError(f"--classifier-from {args.classifier_from}: its classifier reads {theirs[0][0]}×{theirs[0][1]} with "
                         f"channels {theirs[1]}, hidden {theirs[2]}, {theirs[3]} classes; this model's reads "
                         f"{ours[0][0]}×{ours[0][1]} with channels {ours[1]}, hidden {ours[2]}, {ours[3]} classes. "
                         "Pick a model whose classifier has the same shape.")
    return {"card": card, "weights": donor.classifier.state_dict()}


def _calibrate_new(model: STClassifier, name: str, card: dict, test_error: float, args: argparse.Namespace) -> None:
    """A trained model's card gets its logit floor (stn.calibration) where the model is worth one."""
    from stn.calibration import calibrate

    how = f"python -m stn calibrate {name} --write"
    if not args.calibrate:
        return
    if test_error > 0.2:  # a short or failed run: not a model to ship, and too few right readings to calibrate on
        print(f"{name}: not calibrated (test error over 20%); when it is trained: {how}", file=sys.stderr)
        return
    try:
        card["calibration"] = calibrate(model.eval(), n=args.calibrate, root=args.data, name=name)
    except ValueError as exc:
        print(f"{name}: not calibrated ({exc}); {how}", file=sys.stderr)


def cmd_eval(args: argparse.Namespace) -> int:
    from stn.data import test_set, val_set
    from stn.train import evaluate
    from stn.zoo import load_card, load_model

    unmeasured = []  # asked for --rotation, but a model that reads several digits; --split val, but no holdout
    for name in args.names:
        card = load_card(name, _models_dir(args))
        model = load_model(name, directory=_models_dir(args))
        dataset = model.config.dataset  # the config's, checked by load_model; the card's other fields may be absent
        if args.split == "val":
            holdout = _val_split(name, card, args)
            if holdout is None:
                unmeasured.append(name)
                continue
            x, y = val_set(dataset, holdout["digits"], args.data)
            what = f"{len(x)} held-out {dataset.upper()} training images"
        else:
            x, y = test_set(dataset, args.data)
            what = f"{len(x)} {dataset.upper()} test images"
        err = evaluate(model, x, y)
        carded = (card.get("metrics") or {}).get(f"{args.split}_error")
        card_says = f"card: {100 * carded:.2f}%" if isinstance(carded, (int, float)) else f"the card has no {args.split} error"
        print(f"{name}: {args.split} error {100 * err:.2f}% on {what} ({card_says})")
        if args.rotation and model.heads != 1:
            print(f"stn eval: --rotation not measured for {name}: it reads {model.heads} digits at once, and the "
                  "rotation test turns one digit on the canvas; give it a model that reads one digit", file=sys.stderr)
            unmeasured.append(name)
        elif args.rotation:
            print(_rotation_table(model, args))
    return 1 if unmeasured else 0


def _val_split(name: str, card: dict, args: argparse.Namespace) -> dict | None:
    """``eval --split val``: the model's held-out split, or None after a sentence on stderr saying why
    there is none to measure (trained without --holdout, or on other data than ``--data``)."""
    from stn.data import load_mnist

    holdout = _holdout_of(card)
    if holdout is None:
        print(f"stn eval: {name} has no validation split: it was trained without --holdout, so its training saw "
              "every training digit; evaluate it on the test set (--split test), or train it again with --holdout N",
              file=sys.stderr)
        return None
    n = len(load_mnist(args.data, train=True)[1])
    if n != holdout["of"]:
        print(f"stn eval: {name} held out the last {holdout['digits']:,} of {holdout['of']:,} training digits, but "
              f"the data given has {n:,}: give the --data it was trained on (see training.command in {name}.json)",
              file=sys.stderr)
        return None
    return holdout


def _rotation_table(model: STClassifier, args: argparse.Namespace) -> str:
    """``stn eval --rotation``: the model's reading and its grid's turn for turned MNIST test digits (Markdown)."""
    from stn.data import load_mnist
    from stn.inference import rotation_response

    digits, labels = load_mnist(args.data, train=False)
    res = rotation_response(model, digits[: args.rotation], labels[: args.rotation], range(-90, 91, 15))
    lines = [f"Turned MNIST test digits ({res['n']}), centred on the {model.config.input_size[0]}×{model.config.input_size[1]} canvas:",
             "", "| input turn (°) | accuracy | grid turn, median (°) | quartiles (°) |", "|---:|---:|---:|---|"]
    for i, a in enumerate(res["angles"]):
        if res["followed"] is None:
            lines.append(f"| {a:+.0f} | {100 * res['accuracy'][i]:.1f}% | — | — |")
        else:
            q1, med, q3 = (round(res[k][i]) for k in ("recovered_q1", "recovered_median", "recovered_q3"))
            lines.append(f"| {a:+.0f} | {100 * res['accuracy'][i]:.1f}% | {med:+d} | {q1:+d} to {q3:+d} |")
    if res["followed"] is not None:
        # round() to an int: a turn followed by -0.3% printed "-0%"
        lines += ["", (f"The grid follows {round(100 * res['followed'])}% of the turn over the training range "
                       "(100%: every digit turned back upright; 0%: the classifier reads it turned).")]
    return "\n".join(lines)


def cmd_models(args: argparse.Namespace) -> int:
    from stn.zoo import ModelFileError, list_models, load_card, models_dir

    names = list_models(_models_dir(args))
    cards = {}
    for n in names:  # one damaged card is named on stderr; the others are still listed
        try:
            cards[n] = load_card(n, _models_dir(args))
        except ModelFileError as exc:
            print(f"stn models: {exc}", file=sys.stderr)
    if args.json:
        print(json.dumps(list(cards.values()), indent=2))
    elif not names:
        print(f"no models found in {_models_dir(args) or models_dir()}")
    else:
        for n, c in cards.items():  # a hand-made card may lack the fields a shipped one has
            err = (c.get("metrics") or {}).get("test_error")
            shown = f"{100 * err:5.2f}%" if isinstance(err, (int, float)) else f"{'-':>6}"
            print(f"{n:<18} {shown}  {c.get('description', '')}")
    return 1 if len(cards) < len(names) else 0  # as predict: 1 when some could not be read


def cmd_predict(args: argparse.Namespace) -> int:
    import torch

    from stn.model import SURE
    from stn.preprocess import ImageError, prepare
    from stn.zoo import DEFAULT_MODEL, list_models, load_model

    name = args.model
    if name is None:
        known = list_models(_models_dir(args))
        if DEFAULT_MODEL in known or not known:
            name = DEFAULT_MODEL  # an empty zoo gets load_model's "Unknown model" message
        else:
            name = known[0]
            print(f"stn predict: default model {DEFAULT_MODEL!r} is not installed; using {name!r}", file=sys.stderr)
    model = load_model(name, device="cpu" if args.cpu else None, directory=_models_dir(args))

    results: list[dict] = []  # one per file, in order
    tensors, slots = [], []
    weak: dict[int, bool] = {}  # a reading on weak evidence (Prediction.weak), by slot
    for f in args.files:
        if Path(f).is_dir():  # preprocess names a file by its last part: "tmp: is a folder" for /tmp
            results.append({"file": f, "error": f"{f} is a directory, not a picture file: give the picture files in "
                                                f"it (e.g. {Path(f) / '*.png'})."})
            continue
        try:
            prep = prepare(f, tuple(model.config.input_size), float(model.config.digit_size))
            tensors.append(prep.tensor)
            slots.append(len(results))
            results.append({"file": f, "model": name, "touching": prep.touching})
        except ImageError as exc:
            results.append({"file": f, "error": str(exc)})
        except Exception as exc:  # noqa: BLE001 - never a traceback for one bad file: say which and go on
            results.append({"file": f, "error": f"{Path(f).name}: could not be read ({type(exc).__name__}: {exc})."})
    if tensors:
        pred = model.predict(torch.cat(tensors))
        names = pred.class_names()
        for i, slot in enumerate(slots):
            r = results[slot]
            r["label"] = names[i]
            r["sure"] = bool(pred.sure[i])
            weak[slot] = bool(pred.weak[i])
            r["probs"] = [round(float(p), 6) for p in pred.probs[i]]
            r["theta"] = [[round(float(v), 6) for v in p[i]] for p in pred.params]
    failed = sum("error" in r for r in results)
    if args.json:
        for r in results:
            print(json.dumps(r), flush=True)
    else:
        width = max(len("file"), *(len(r["file"]) for r in results))
        print(f"{'file':<{width}}  {'label':>5}  {'prob':>6}  model")
        for slot, r in enumerate(results):
            if "error" in r:
                print(f"{r['file']:<{width}}  {'-':>5}  {'-':>6}  error: {r['error']}")
            else:
                guess = ("" if r["sure"] else "  (unsure: weak evidence, unlike the digits it knows; a guess)" if weak[slot]
                         else f"  (unsure: under {100 * SURE:.0f}%, a guess)")
                if r["touching"]:
                    guess += "  (two digits touching? read as one)"
                print(f"{r['file']:<{width}}  {r['label']:>5}  {100 * max(r['probs']):5.1f}%  {name}{guess}")
    if failed and not args.json:
        print(f"stn predict: {failed} of {len(results)} file{'s' * (len(results) > 1)} could not be read", file=sys.stderr)
    return 1 if failed else 0


def _formats() -> str:
    from stn.preprocess import formats_text

    return formats_text()


def cmd_table(args: argparse.Namespace) -> int:
    from stn.table import left_out, markdown_table, update_readme, write_chart
    from stn.zoo import models_dir

    table = markdown_table(_models_dir(args))
    print(table)
    if skipped := left_out(_models_dir(args)):
        print(f"stn table: left out (no dataset, config or test error in the card): {', '.join(skipped)}", file=sys.stderr)
    zoo = (_models_dir(args) or models_dir()).resolve()
    if zoo != (_REPO / "models").resolve() and not (args.readme or args.chart):
        # the README's table and chart are the shipped zoo's: another directory's models must not replace them
        print(f"{zoo} is not this repository's models/: README and chart not written (--readme FILE, --chart FILE "
              "to write them)", file=sys.stderr)
        return 0
    readme = Path(args.readme) if args.readme else _REPO / "README.md"
    chart = Path(args.chart) if args.chart else _REPO / "assets" / "table1.json"
    if readme.exists() and update_readme(readme, table):
        print(f"updated {readme}", file=sys.stderr)
    elif readme.exists():
        print(f"{readme} has no <!-- zoo-table:start --> / <!-- zoo-table:end --> markers; not changed", file=sys.stderr)
    else:
        print(f"{readme}: no such file; README not updated (--readme FILE)", file=sys.stderr)
    if not chart.parent.is_dir():
        raise ValueError(f"{chart.parent}: no such folder for the chart; give one with --chart FILE")
    print(f"wrote {write_chart(chart, _models_dir(args))}", file=sys.stderr)
    return 0


def cmd_uploads(args: argparse.Namespace) -> int:
    from stn.uploads import (
        NO_DIGIT_KINDS,
        PHOTO_CONDITIONS,
        cropped_images,
        font_images,
        guesses,
        no_digit_images,
        number_images,
        numbers_named,
        photo_images,
        sketch_images,
        upload_accuracy,
    )
    from stn.zoo import load_card, load_model, models_dir

    def pct(r: dict) -> str:
        return (f"{100 * r['accuracy']:.1f}% of {r['images']} ({r['refused']} refused, {r['unsure']} shown as a guess "
                f"({r['weak']} on weak evidence), {r['touching']} noted as maybe two touching)")

    if 0 < args.photos < len(PHOTO_CONDITIONS):
        raise ValueError(f"--photos {args.photos} is fewer than one photo for each of the {len(PHOTO_CONDITIONS)} "
                         f"conditions: give at least {len(PHOTO_CONDITIONS)}, or 0 for none")
    for name in args.names:
        model = load_model(name, device="cpu", directory=_models_dir(args))
        sets = {"sketch": upload_accuracy(model, sketch_images(args.sketches, root=args.data)),
                "font": upload_accuracy(model, font_images(args.font_variants))}
        per = args.photos // len(PHOTO_CONDITIONS)
        conditions = {c: upload_accuracy(model, photo_images(per, seed=i, root=args.data, conditions=(c,)))
                      for i, c in enumerate(PHOTO_CONDITIONS)} if per else {}
        if conditions:
            photos = {k: sum(r[k] for r in conditions.values()) for k in ("images", "refused", "unsure", "weak", "touching")}
            photos["accuracy"] = sum(r["accuracy"] * r["images"] for r in conditions.values()) / photos["images"]
            sets["photo"] = {**photos, "conditions": {c: r["accuracy"] for c, r in conditions.items()}}
        if args.cropped:
            sets["cropped"] = upload_accuracy(model, cropped_images(args.cropped, root=args.data))
        titles = {"sketch": "sketches", "font": "handwriting fonts", "photo": "photos", "cropped": "cropped to the digit"}
        parts = [f"{titles[k]} {pct(r)}" for k, r in sets.items() if r["images"]]
        if args.font_variants and not sets["font"]["images"]:
            parts.append("handwriting fonts not measured (the held-out fonts are not installed)")
        print(f"{name}:" + (" " + "; ".join(parts) if parts else ""))
        for c, r in conditions.items():
            print(f"  {c:18s} {pct(r)}")
        reads = max(1, round(model.config.input_size[1] / model.config.input_size[0]))  # digits side by side it reads
        if args.numbers:  # pre-processing only: told apart from one digit, or not (the model is not asked)
            n = numbers_named(number_images(args.numbers, root=args.data, digits=tuple(k for k in (2, 3, 4) if k > reads)),
                              tuple(model.config.input_size), float(model.config.digit_size))
            print(f"  numbers (more digits than it reads) refused as such: {n['named']} of {n['images']}"
                  f" ({n['refused otherwise']} refused for another reason)")
            if reads > 1:  # a lone digit, laid out the same way
                one = numbers_named(number_images(args.numbers, seed=2, root=args.data, digits=(1,)),
                                    tuple(model.config.input_size), float(model.config.digit_size))
                print(f"  single digits (fewer than it reads) refused as such: {one['one digit']} of {one['images']}"
                      f" ({one['named'] + one['refused otherwise']} refused for another reason)")
        if args.touching and reads == 1:  # one mark: noted (or refused where a gap shows after all), else read as one digit
            t = numbers_named(number_images(args.touching, seed=1, root=args.data, gap=(-0.05, 0.0)),
                              tuple(model.config.input_size), float(model.config.digit_size))
            plain = t["images"] - t["named"] - t["refused otherwise"] - t["touching"]
            print(f"  numbers written touching: {t['images']}, {t['named']} refused as a number, {t['touching']} read with the"
                  f" note, {plain} read as one digit without it ({t['refused otherwise']} refused for another reason)")
        if args.no_digits:  # the right answers: a refusal, or a reading shown as a guess; not a sure digit
            for kind in NO_DIGIT_KINDS:
                g = guesses(model, no_digit_images(max(1, args.no_digits // len(NO_DIGIT_KINDS)), kinds=(kind,)))
                print(f"  no digit ({kind}): {g['images']} pictures, {g['refused']} refused, {g['unsure']} shown as a guess"
                      f" ({g['weak']} on weak evidence), {g['sure']} read as a sure digit")
        if args.write:
            d = _models_dir(args) or models_dir()
            card = load_card(name, d)
            uploads = card["metrics"].get("uploads", {})
            # a set not measured here (no fonts installed) keeps what the card says
            uploads.update({k: r for k, r in sets.items() if r["images"]})
            uploads["how"] = "python -m stn uploads (stn/uploads.py)"
            card["metrics"]["uploads"] = uploads
            (d / f"{name}.json").write_text(json.dumps(card, indent=2) + "\n")
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    from stn.calibration import calibrate
    from stn.zoo import list_models, load_card, load_model, models_dir

    def canvas(name: str) -> str:  # a card with no config sorts first; load_model then says what is wrong with it
        return json.dumps((load_card(name, _models_dir(args)).get("config") or {}).get("input_size"))

    names = list_models(_models_dir(args)) if args.names == ["all"] else args.names
    # models of one canvas in a row: they share the prepared pictures (calibrate keeps the last two canvases)
    names = sorted(names, key=canvas)
    print(f"{'model':<22} {'sure_logit':>10}  {'right':>11}  under it (all pictures)")
    status = 0
    for name in names:
        model = load_model(name, device="cpu", directory=_models_dir(args))
        try:
            cal = calibrate(model, n=args.images, quantile=args.quantile, root=args.data)
        except ValueError as exc:
            print(f"{name:<22} {'-':>10}  not calibrated: {exc}")
            continue
        print(f"{name:<22} {cal['sure_logit']:>10.3f}  {cal['read_right']:>5} of {cal['images']:<4} {cal['under_floor']}")
        if args.write and cal["overlaps_uploads"]:  # a floor measured on the digits stn uploads tests it on
            print(f"stn calibrate: {name}'s card not written: the pictures were made from {cal['digits']}; write "
                  "it from the full MNIST (--data DIR or STN_DATA).", file=sys.stderr)
            status = 1
        elif args.write:
            d = _models_dir(args) or models_dir()
            card = load_card(name, d)
            card["calibration"] = cal
            (d / f"{name}.json").write_text(json.dumps(card, indent=2) + "\n")
    return status


def _whole(least: int):
    """An argparse type: a whole number of at least ``least``, or argparse's message naming the flag."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if value < least:
            raise argparse.ArgumentTypeError(f"must be at least {least}, got {value}")
        return value
    return parse


def _above_zero(text: str) -> float:
    """An argparse type: a finite number above zero."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be above 0, got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    from stn.zoo import DEFAULT_MODEL
    parser = argparse.ArgumentParser(
        prog="stn", description="Spatial Transformer Networks on distorted MNIST: train, evaluate, predict."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train a model and write models/NAME.{safetensors,json} (a NAME already there: --force)")
    p.add_argument("--dataset", required=True, help="r, rts, p, e, tc, pair, wild, or mnist (upright, undistorted)")
    p.add_argument("--transform", default=None,
                   help="affine (default), attention, projective, tps, or none (CNN baseline); with --init, "
                        "projective or tps starts from an affine model's crops")
    p.add_argument("--name", default=None,
                   help="model name: letters, digits, - and _ (default: DATASET-TRANSFORM; DATASET-cnn with "
                        "--transform none; MODEL-ft with --init MODEL)")
    p.add_argument("--epochs", type=_above_zero, default=10.0)
    p.add_argument("--steps", type=_whole(1), default=None, help="train this many steps instead of --epochs")
    p.add_argument("--batch-size", type=_whole(1), default=128)
    p.add_argument("--lr", type=_above_zero, default=3e-3)
    p.add_argument("--loc-lr-scale", type=_above_zero, default=0.1, help="localisation net lr = lr x this")
    p.add_argument("--localization", default="cnn", choices=["cnn", "fc"])
    p.add_argument("--loc-net", default="paper", choices=["paper", "light"],
                   help="size of the localisation CNN: the paper's, or a light one (8 channels, canvas pooled to ~14 px)")
    p.add_argument("--start-scale", type=_above_zero, default=1.0,
                   help="start θ at the centred window of this size instead of the identity (1.0)")
    p.add_argument("--grid-size", type=_whole(2), default=None,
                   help=f"TPS control points per side (default {TPS_GRID}; with --transform tps only)")
    p.add_argument("--crop-size", type=int, default=None,
                   help="side of the transformer's output, the classifier's input (default 28); smaller than the "
                        "canvas, the ST-CNN costs less than its CNN (e.g. 20: the MNIST digit's box)")
    p.add_argument("--no-bound", action="store_true", help="do not bound θ (tanh on translation etc.)")
    p.add_argument("--seed", type=_whole(0), default=0)
    p.add_argument("--limit", type=_whole(1), default=None, help="use only the first N training digits")
    p.add_argument("--holdout", type=_whole(0), default=0, metavar="N",
                   help="leave out the last N training digits (e.g. 10000): never trained on, measured at the end as "
                        "the card's val_error; choose between runs on it, not on the test error "
                        "(stn eval NAME --split val)")
    p.add_argument("--force", action="store_true",
                   help="replace a model of the same name in the models directory (refused without it); without "
                        "--resume, also start over a run whose interrupted checkpoint is there (it is deleted)")
    p.add_argument("--checkpoint-every", type=_whole(0), default=500, metavar="N",
                   help="save the whole run every N steps (default 500: about an epoch of MNIST in batches of 128, "
                        "a few minutes at most on a CPU; 0: only when interrupted) in MODELS_DIR/NAME.checkpoint/, "
                        "beside the model; Ctrl-C or SIGTERM saves it too, after the step under way. It is deleted "
                        "once the model is written")
    p.add_argument("--resume", action="store_true",
                   help="continue the interrupted run saved in MODELS_DIR/NAME.checkpoint/ (give the arguments it was "
                        "started with): it ends with the weights of a run never interrupted")
    p.add_argument("--threads", type=_whole(0), default=0, help="CPU threads (default: torch's choice)")
    p.add_argument("--description", default=None)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--init", default=None, metavar="MODEL",
                   help="fine-tune: start from this model's weights and architecture (same dataset), from "
                        "--models-dir or else the shipped zoo; "
                        "the architecture flags are then ignored (except --transform projective|tps, with --grid-size, "
                        "to warm-start that family from an affine model) and its card is recorded in the new one")
    p.add_argument("--classifier-from", default=None, metavar="MODEL",
                   help="start the classifier from this model's (same input size and layers; from --models-dir or "
                        "else the shipped zoo), e.g. a CNN trained on upright digits (--dataset mnist)")
    p.add_argument("--freeze-classifier", action="store_true",
                   help="with --classifier-from: train only the transformer; a classifier that has never seen a turned "
                        "digit leaves turning it upright to the transformer")
    p.add_argument("--calibrate", type=_whole(0), default=3000, metavar="N",
                   help="after training, the logit floor of a sure reading from N upload-style digits, into the card "
                        "(stn/calibration.py; 0: skip)")
    _add_common(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("eval", help="print a model's test error on its own test set (--split val: on its held-out digits)")
    p.add_argument("names", nargs="+")
    p.add_argument("--split", choices=["test", "val"], default="test",
                   help="test: the task's fixed test set (default); val: the training digits the model held out "
                        "(trained with --holdout N)")
    p.add_argument("--rotation", type=_whole(0), nargs="?", const=1000, default=0, metavar="N",
                   help="also turn N MNIST test digits (default 1000) from -90° to 90° and print the accuracy and how far "
                        "the transformer's grid turns with them")
    _add_common(p)
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("models", help="list the model zoo")
    p.add_argument("--json", action="store_true", help="print every model card as JSON")
    _add_common(p, data=False)
    p.set_defaults(func=cmd_models)

    p = sub.add_parser("predict", help="classify image files with a zoo model")
    p.add_argument("files", nargs="+", metavar="FILE", help=f"{_formats()} images")
    p.add_argument("--model", default=None, help=f"model name (default: {DEFAULT_MODEL}; python -m stn models lists them)")
    p.add_argument("--json", action="store_true", help='one JSON object per line: {"file", "model", "touching", "label", "sure", '
                                                       '"probs", "theta"}, or {"file", "error"} for a file it cannot read')
    p.add_argument("--cpu", action="store_true", help="run on the CPU even when a GPU is present")
    _add_common(p, data=False)
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("table", help="rebuild the README's table (ours vs. the paper) and its chart from the cards")
    p.add_argument("--readme", default=None, help="the README to update (default: the repository's README.md)")
    p.add_argument("--chart", default=None, help="where to write the plotly figure, JSON (default: the repository's "
                                                  "assets/table1.json)")
    _add_common(p, data=False)
    p.set_defaults(func=cmd_table)

    p = sub.add_parser("uploads", help="accuracy on the upload-style test sets (sketches, handwriting fonts, photos, cropped)")
    p.add_argument("names", nargs="+")
    p.add_argument("--sketches", type=_whole(0), default=1000)
    p.add_argument("--font-variants", type=_whole(0), default=3)
    p.add_argument("--photos", type=_whole(0), default=800,
                   help="photos in all, shared among the photo conditions, at least one each (0: none)")
    p.add_argument("--cropped", type=_whole(0), default=500, help="pictures cut down to the digit (0: none)")
    p.add_argument("--numbers", type=_whole(0), default=300, help="numbers written side by side, to be refused as such (0: none)")
    p.add_argument("--touching", type=_whole(0), default=200,
                   help="numbers written with their digits touching: refused, or read with a note (0: none)")
    p.add_argument("--no-digits", type=_whole(0), default=150,
                   help="pictures with no digit (scenes, print, shapes): refused, shown as a guess, or read as sure (0: none)")
    p.add_argument("--write", action="store_true", help="store the result in the model card")
    _add_common(p)
    p.set_defaults(func=cmd_uploads)

    p = sub.add_parser("calibrate", help="the least top logit of a sure reading, from upload-style digits (stn/calibration.py)")
    p.add_argument("names", nargs="+", help='model names, or "all"')
    p.add_argument("--images", type=_whole(1), default=3000, help="upload-style pictures to calibrate on")
    p.add_argument("--quantile", type=float, default=0.005, help="share of right readings to fall under the floor")
    p.add_argument("--write", action="store_true", help="store it in the model card (calibration.sure_logit)")
    _add_common(p)
    p.set_defaults(func=cmd_calibrate)

    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = argv
    from stn.data import DataNotFoundError
    from stn.zoo import UnknownModelError

    if args.command in ("train", "eval"):  # batches of 256, step after step: reuse their memory (stn/memory.py)
        from stn.memory import keep_freed_memory

        keep_freed_memory()
    # a SIGTERM ends a training run as Ctrl-C does: saved, with the line to resume it
    before = _raise_on_sigterm() if args.command == "train" else None
    try:
        if args.command != "train":  # train creates its directory; the others read one
            _check_models_dir(args)
        return int(args.func(args) or 0)
    except (DataNotFoundError, UnknownModelError, ValueError) as exc:
        print(f"stn {args.command}: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `stn models | head`: the reader has all it wanted; nothing more to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # Python's flush at exit would fail again
        return 128 + signal.SIGPIPE
    except OSError as exc:  # a file or folder that cannot be read or written: the path and why, not a traceback
        print(f"stn {args.command}: {_os_error(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM (stn.train.Interrupted): a line, not a traceback
        what = _interrupted(args) if args.command == "train" else "interrupted"
        print(f"stn {args.command}: {what}", file=sys.stderr)
        return 128 + int(getattr(exc, "signum", signal.SIGINT))  # the shell's way: 130 for Ctrl-C, 143 for SIGTERM
    finally:
        if before is not None:
            signal.signal(signal.SIGTERM, before)


def _os_error(exc: OSError) -> str:
    """An OSError as one sentence: the path(s), what is wrong, what to do."""
    paths = " -> ".join(str(f) for f in (exc.filename, exc.filename2) if f is not None)
    why = (exc.strerror or str(exc) or type(exc).__name__).rstrip(".")
    return (f"{paths + ': ' if paths else ''}{why[:1].lower() + why[1:]}: check that the path exists, is what it "
            "should be (a file or a directory) and can be read and written, then run the command again")


def _raise_on_sigterm() -> object | None:
    """Make SIGTERM raise :class:`stn.train.Interrupted` (a KeyboardInterrupt) instead of ending the process on
    the spot (training defers it to the end of the step under way); returns the handler it replaced, for
    ``main`` to put back. Main thread only (elsewhere: None, nothing changes)."""
    import threading

    from stn.train import Interrupted

    def handler(signum: int, frame: object) -> None:
        raise Interrupted(signum)

    if threading.current_thread() is not threading.main_thread():
        return None
    before = signal.signal(signal.SIGTERM, handler)
    return before if before is not None else signal.SIG_DFL
