"""Checkpoints (stn/checkpoint.py) and resuming: an interrupted run ends with the weights of a run never
interrupted, bit for bit on the CPU; what cannot be resumed is refused in one sentence; nothing is pickled."""

from __future__ import annotations

import json
import os
import pickle
import shutil
import signal
from itertools import islice
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from stn.checkpoint import CheckpointError, check_weights, load_checkpoint, save_checkpoint
from stn.data import train_batches
from stn.localization import light_options
from stn.model import ModelConfig, STClassifier
from stn.train import Checkpointing, TrainConfig, Trainer, fit

CPU = torch.device("cpu")
# 32 digits in batches of 8: 4 steps an epoch, so step 3 is mid-epoch and step 4 an epoch's end
TINY = {"steps": 6, "batch_size": 8, "limit": 32}
# dropout in the classifier: the global random state must be carried over too
CONFIG = ModelConfig("r", (28, 28), loc_options=light_options((1, 28, 28)))


def _trainer() -> Trainer:
    torch.manual_seed(0)
    return Trainer(STClassifier(CONFIG), TrainConfig(**TINY), root="bundled", device=CPU)


def _assert_equal(a: object, b: object, where: str = "state") -> None:
    """Bit for bit: every tensor ``torch.equal``, everything else ``==``."""
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), where
        for k in a:
            _assert_equal(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_equal(x, y, f"{where}.{i}")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


@pytest.fixture(scope="module")
def uninterrupted() -> dict:
    """The model and optimiser state of a run of ``TINY`` never interrupted."""
    trainer = _trainer()
    while not trainer.done:
        trainer.step()
    return {"model": trainer.model.state_dict(), "optimizer": trainer.opt.state_dict()}


# --------------------------------------------------------------------------- the data stream


def _batches(stream):
    """Batch after batch, epoch after epoch, as Trainer draws them."""
    for epoch in stream:
        yield from epoch


@pytest.mark.parametrize("drawn", [0, 2, 4, 5], ids=["start", "mid-epoch", "epoch-end", "next-epoch"])
def test_a_batch_stream_resumes_where_it_was(drawn: int) -> None:
    # tc draws clutter from the stream's generator too; 32 digits, 4 batches an epoch
    reference = list(islice(_batches(train_batches("tc", 8, "bundled", seed=3, limit=32)), drawn + 6))
    stream = train_batches("tc", 8, "bundled", seed=3, limit=32)
    list(islice(_batches(stream), drawn))
    state = stream.state()
    if drawn:
        assert state.position == (drawn - 1) % 4 + 1 and state.order.shape == (32,)
    else:
        assert state.order is None  # the first epoch has not drawn its order yet
    again = list(islice(_batches(train_batches("tc", 8, "bundled", seed=3, limit=32, resume=state)), 6))
    for (x, y), (rx, ry) in zip(again, reference[drawn:], strict=True):
        assert torch.equal(x, rx) and torch.equal(y, ry)


# --------------------------------------------------------------------------- Trainer and fit


@pytest.mark.parametrize("k", [3, 4], ids=["mid-epoch", "epoch-boundary"])
def test_a_trainer_resumed_from_a_checkpoint_ends_bit_for_bit_the_same(tmp_path, uninterrupted, k: int) -> None:
    trainer = _trainer()
    for _ in range(k):
        trainer.step()
    save_checkpoint(tmp_path, trainer.state_dict())
    del trainer
    fresh = _trainer()  # another model, optimiser and data stream, as in a new process
    fresh.load_state_dict(load_checkpoint(tmp_path).trainer)
    assert fresh.step_count == k and fresh.images_seen == 8 * k
    while not fresh.done:
        fresh.step()
    _assert_equal(fresh.model.state_dict(), uninterrupted["model"], "model")
    _assert_equal(fresh.opt.state_dict(), uninterrupted["optimizer"], "optimizer")


def test_fit_resumes_from_the_last_checkpoint_when_a_step_was_cut_short(tmp_path, monkeypatch) -> None:
    """A KeyboardInterrupt inside a step (its batch drawn, its gradients made, the weights not yet moved)
    leaves a state not worth saving: the checkpoint of two steps before is the one resumed, and the run still
    ends with the weights, curve and replay of one never interrupted; its seconds add up."""
    train = TrainConfig(**TINY, replay_every=2)
    model, res = fit(CONFIG, train, "bundled", CPU, progress=False)
    calls = 0
    clip = torch.nn.utils.clip_grad_norm_

    def cut_short(*args, **kwargs):
        nonlocal calls
        calls += 1
        if calls == 4:
            raise KeyboardInterrupt
        return clip(*args, **kwargs)

    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", cut_short)
    with pytest.raises(KeyboardInterrupt):
        fit(CONFIG, train, "bundled", CPU, progress=False, checkpoint=Checkpointing(tmp_path, every=2))
    monkeypatch.undo()
    saved = load_checkpoint(tmp_path)
    assert saved.step == 2 and saved.records["resumed_at"] == []
    resumed = Checkpointing(tmp_path, every=2, resume=saved)
    again, res2 = fit(CONFIG, train, "bundled", CPU, progress=False, checkpoint=resumed)
    _assert_equal(again.state_dict(), model.state_dict(), "model")
    _assert_equal(res2["curve"], res["curve"], "curve")
    _assert_equal(res2["replay"], res["replay"], "replay")
    assert res2["test_error"] == res["test_error"] and res2["resumed_at"] == [2] and res["resumed_at"] == []
    assert res2["train_seconds"] >= round(saved.records["seconds"], 1)  # the part before counts
    assert load_checkpoint(tmp_path).step == 6  # the end of training is saved too: the caller deletes it


def test_nothing_is_pickled(tmp_path, monkeypatch) -> None:
    """Tensors in .safetensors, the rest in JSON; no pickle written or read, nor torch's own format."""
    trainer = _trainer()
    trainer.step()

    def refuse(*args, **kwargs):
        raise AssertionError("pickled")

    pickles = ((pickle, ("dump", "dumps", "load", "loads", "Pickler", "Unpickler")), (torch, ("save", "load")))
    for module, names in pickles:
        for name in names:
            monkeypatch.setattr(module, name, refuse)
    save_checkpoint(tmp_path, trainer.state_dict(), run={"what": "test"}, records={"curve": [0.5], "x": (1, 2)})
    back = load_checkpoint(tmp_path)
    monkeypatch.undo()
    assert back.records == {"curve": [0.5], "x": (1, 2)} and back.trainer["step_count"] == 1
    _assert_equal(back.trainer["model"], trainer.model.state_dict())
    files = sorted(p.name for p in tmp_path.iterdir())
    assert len(files) == 2 and files[0] == "checkpoint.json" and files[1].endswith(".safetensors"), files
    json.loads((tmp_path / files[0]).read_text())
    assert load_file(tmp_path / files[1])  # a safetensors file, whole
    assert all(not (tmp_path / f).read_bytes().startswith(b"\x80") for f in files)  # no pickle protocol header


# --------------------------------------------------------------------------- the CLI

QUICK = ["train", "--dataset", "r", "--loc-net", "light", "--steps", "6", "--batch-size", "8", "--limit", "32",
         "--data", "bundled", "--quiet", "--calibrate", "0", "--name", "t-run"]


def _cli(*args: str) -> int:
    from stn.cli import main

    try:
        return main([*QUICK, *args])
    except KeyboardInterrupt:  # fail this test, rather than end the whole session
        pytest.fail("stn train let a KeyboardInterrupt through")


@pytest.fixture(scope="module")
def cli_uninterrupted(tmp_path_factory) -> Path:
    """The models directory of ``QUICK`` run in one go."""
    d = tmp_path_factory.mktemp("whole")
    assert _cli("--models-dir", str(d)) == 0
    return d


def _interrupt_step(monkeypatch, after: int, how: str = "raise") -> None:
    """Trainer.step raises KeyboardInterrupt (``raise``) or sends this process SIGTERM (``sigterm``) on its
    call ``after + 1``."""
    real = Trainer.step
    calls = 0

    def step(self):
        nonlocal calls
        calls += 1
        if calls == after + 1:
            if how == "raise":
                raise KeyboardInterrupt
            if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):  # it would end the test session
                pytest.fail("nothing handles SIGTERM during training")
            os.kill(os.getpid(), signal.SIGTERM)  # handled at once, noted; the step still runs to its end
        return real(self)

    monkeypatch.setattr(Trainer, "step", step)


def _assert_same_model(a: Path, b: Path) -> None:
    _assert_equal(load_file(a / "t-run.safetensors"), load_file(b / "t-run.safetensors"), "weights")
    _assert_equal(load_file(a / "t-run.replay.safetensors"), load_file(b / "t-run.replay.safetensors"), "replay")
    cards = [json.loads((d / "t-run.json").read_text()) for d in (a, b)]
    for card in cards:  # what differs between two runs of one command, and a resumed run's record of its parts
        for k in ("command", "train_seconds", "images_per_second", "date", "resumed_at"):
            card["training"].pop(k, None)
    assert cards[0] == cards[1]


def test_ctrl_c_saves_the_run_and_resume_finishes_it(tmp_path, monkeypatch, capsys, cli_uninterrupted) -> None:
    d = str(tmp_path)
    _interrupt_step(monkeypatch, after=3)
    assert _cli("--models-dir", d) == 130
    monkeypatch.undo()
    out, err = capsys.readouterr()
    saved = tmp_path / "t-run.checkpoint"
    command = "python -m stn " + " ".join([*QUICK, "--models-dir", d, "--resume"])
    assert err.splitlines()[-1] == (f"stn train: interrupted; the run is saved at step 3 of 6 in {saved}: "
                                    f"resume it with {command}")
    assert "Traceback" not in err + out and not (tmp_path / "t-run.safetensors").exists()
    assert {p.suffix for p in saved.iterdir()} == {".json", ".safetensors"} and len(list(saved.iterdir())) == 2
    assert _cli("--models-dir", d, "--resume") == 0
    out, err = capsys.readouterr()
    assert "resuming t-run at step 3 of 6" in err and "t-run: test error" in out
    _assert_same_model(tmp_path, cli_uninterrupted)
    card = json.loads((tmp_path / "t-run.json").read_text())["training"]
    assert card["resumed_at"] == [3] and "--resume" not in card["command"] and card["steps"] == 6
    assert not saved.exists()  # the model is written: nothing left to resume


def test_sigterm_stops_after_the_step_and_resume_finishes_it(tmp_path, monkeypatch, capsys, cli_uninterrupted) -> None:
    """SIGTERM (a scheduler's, a closing laptop's) mid-step: the step ends, the run is saved, exit 143."""
    d = str(tmp_path)
    before = signal.getsignal(signal.SIGTERM)
    _interrupt_step(monkeypatch, after=1, how="sigterm")
    assert _cli("--models-dir", d) == 143
    monkeypatch.undo()
    err = capsys.readouterr().err
    assert "stn train: interrupted; the run is saved at step 2 of 6" in err and "Traceback" not in err
    assert signal.getsignal(signal.SIGTERM) is before  # put back as it was
    assert _cli("--models-dir", d, "--resume") == 0
    _assert_same_model(tmp_path, cli_uninterrupted)
    assert json.loads((tmp_path / "t-run.json").read_text())["training"]["resumed_at"] == [2]


def test_ctrl_c_before_the_first_step_is_done_leaves_nothing_to_resume(tmp_path, monkeypatch, capsys) -> None:
    _interrupt_step(monkeypatch, after=0)
    assert _cli("--models-dir", str(tmp_path)) == 130
    err = capsys.readouterr().err
    assert err.splitlines()[-1] == "stn train: interrupted before a checkpoint was written: nothing to resume"
    assert not list(tmp_path.iterdir())  # and nothing to refuse the next run for


@pytest.fixture(scope="module")
def one_step_in(tmp_path_factory) -> Path:
    """A models directory holding the checkpoint of ``QUICK`` interrupted after one step."""
    d = tmp_path_factory.mktemp("one-step")
    mp = pytest.MonkeyPatch()
    _interrupt_step(mp, after=1)
    try:
        assert _cli("--models-dir", str(d)) == 130
    finally:
        mp.undo()
    return d


@pytest.fixture
def interrupted(tmp_path, one_step_in) -> Path:
    shutil.copytree(one_step_in, tmp_path, dirs_exist_ok=True)
    return tmp_path


def _refused(capsys, *args: str) -> str:
    """Run ``QUICK`` with ``args``: refused before training, in one line; that line."""
    assert _cli(*args) == 2
    err = capsys.readouterr().err
    assert err.startswith("stn train: ") and err.count("\n") == 1 and "Traceback" not in err, err
    assert "training t-run" not in err and "resuming" not in err
    return err.strip()


def test_a_new_run_does_not_replace_an_interrupted_one_unless_forced(interrupted, capsys) -> None:
    d = str(interrupted)
    saved = interrupted / "t-run.checkpoint"
    assert _refused(capsys, "--models-dir", d) == (
        f"stn train: {saved} holds the checkpoint of an interrupted run of t-run (step 1 of 6): continue it with "
        "--resume (and the same arguments), or give --force to start over (the checkpoint is then deleted)")
    assert load_checkpoint(saved).step == 1  # untouched
    assert _cli("--models-dir", d, "--steps", "1", "--force") == 0
    assert "starting t-run over: deleted the checkpoint of its interrupted run (step 1 of 6)" in capsys.readouterr().err
    assert not saved.exists() and json.loads((interrupted / "t-run.json").read_text())["training"]["steps"] == 1


def test_resume_without_a_checkpoint_is_refused(tmp_path, interrupted, capsys) -> None:
    assert _refused(capsys, "--models-dir", str(tmp_path / "empty"), "--resume") == (
        f"stn train: --resume: there is no checkpoint of t-run to resume in {tmp_path / 'empty'} "
        "(no t-run.checkpoint/): run without --resume to start it, or give the --name and --models-dir of the "
        "interrupted run")
    err = _refused(capsys, "--models-dir", str(interrupted), "--name", "t-other", "--resume")
    assert err.endswith("(no t-other.checkpoint/; it holds t-run.checkpoint/): run without --resume to start "
                        "it, or give the --name and --models-dir of the interrupted run")


@pytest.mark.parametrize(("args", "difference"), [
    (["--dataset", "rts"], 'its model.dataset is "r", this run\'s is "rts"'),
    (["--transform", "tps"], 'its model.transform is "affine", this run\'s is "tps"'),
    (["--loc-net", "paper"], f"its model.loc_options is {json.dumps(light_options((1, 28, 28)))}, this run's is {{}}"),
    (["--batch-size", "4"], "its train.batch_size is 8, this run's is 4"),
    (["--steps", "7"], "its train.steps is 6, this run's is 7"),
    (["--seed", "1"], "its train.seed is 0, this run's is 1"),
    (["--limit", "40"], "its train.limit is 32, this run's is 40"),
    (["--holdout", "100"], "its train.holdout is 0, this run's is 100"),
])
def test_resume_with_other_arguments_is_refused(interrupted, one_step_in, capsys, args, difference) -> None:
    saved = interrupted / "t-run.checkpoint"
    err = _refused(capsys, "--models-dir", str(interrupted), *args, "--resume")
    command = "python -m stn " + " ".join([*QUICK, "--models-dir", str(one_step_in)])  # as the run was started
    assert err.startswith(f"stn train: {saved / 'checkpoint.json'} is of another run ({difference}")
    assert err.endswith(f"): resume it with the arguments it was started with ({command} --resume), or give --force "
                        "without --resume to start the run over")


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _edit_json(saved: Path, edit) -> None:
    body = json.loads((saved / "checkpoint.json").read_text())
    edit(body)
    (saved / "checkpoint.json").write_text(json.dumps(body))


def _rename_weight(body: dict) -> None:
    weights = body["trainer"]["model"]
    key = next(iter(weights))
    weights["not." + key] = weights.pop(key)


@pytest.mark.parametrize(("damage", "problem"), [
    (lambda d: _truncate(next(d.glob("*.safetensors"))), "is damaged (truncated or changed since it was written"),
    (lambda d: _truncate(d / "checkpoint.json"), "checkpoint.json is damaged (not valid JSON"),
    (lambda d: _edit_json(d, lambda b: b.pop("trainer")), "checkpoint.json is damaged (it has no 'trainer')"),
    (lambda d: _edit_json(d, lambda b: b["trainer"].pop("optimizer")),
     "checkpoint.json is damaged (its \"trainer\" has no 'optimizer')"),
    (lambda d: _edit_json(d, lambda b: b["trainer"]["model"].update({"extra": {"$tensor": "nope"}})),
     "checkpoint.json is damaged (it names a tensor state-"),
    (lambda d: _edit_json(d, _rename_weight), "checkpoint.json does not fit the model it was saved for (its weight "),
    (lambda d: [p.unlink() for p in d.glob("*.safetensors")], ", which checkpoint.json names, could not be read"),
], ids=["tensors-truncated", "json-truncated", "no-trainer", "no-optimizer", "missing-tensor", "wrong-weight-key",
        "no-tensor-file"])
def test_a_damaged_checkpoint_is_refused(interrupted, capsys, damage, problem: str) -> None:
    saved = interrupted / "t-run.checkpoint"
    damage(saved)
    err = _refused(capsys, "--models-dir", str(interrupted), "--resume")
    assert err.startswith(f"stn train: {saved}") and problem in err, err
    assert err.endswith(": it cannot be resumed; give --force without --resume to start the run over"), err
    with pytest.raises(CheckpointError, match="delete the checkpoint to start the run over"):  # the library's words
        check_weights(load_checkpoint(saved), STClassifier(CONFIG).state_dict())
