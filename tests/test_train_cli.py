"""Training and the train/eval/models/table commands, end to end on the bundled subset."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from stn.data import test_set as make_test_set
from stn.model import ModelConfig, STClassifier
from stn.replay import load_replay
from stn.train import TrainConfig, Trainer, evaluate, fit


def test_trainer_lowers_the_loss_and_moves_theta() -> None:
    torch.manual_seed(0)
    model = STClassifier(ModelConfig("rts", (42, 42)))
    trainer = Trainer(model, TrainConfig(steps=60, batch_size=32, loc_lr_scale=0.3), root="bundled", device=torch.device("cpu"))
    first = [trainer.step()["loss"] for _ in range(5)]
    while not trainer.done:
        last = trainer.step()["loss"]
    assert last < sum(first) / 5
    theta = model.st.regress(make_test_set("rts", "bundled", n=8)[0])[0]
    assert (theta - model.st.transform.identity(8)).abs().max() > 1e-3


def test_fit_records_a_replay_and_evaluates(tmp_path) -> None:
    from stn.replay import save_replay

    cfg = ModelConfig("tc", (60, 60), transform="attention")
    model, res = fit(cfg, TrainConfig(steps=12, batch_size=16, replay_every=4), root="bundled", progress=False)
    assert res["steps"] == 12 and 0 <= res["test_error"] <= 1
    rep = load_replay(save_replay(tmp_path / "r.safetensors", res))
    assert rep.steps.tolist() == [0, 4, 8, 12]
    assert rep.params.shape == (4, 1, 16, 3)
    assert torch.allclose(rep.params[0, 0], model.st.transform.identity(16), atol=1e-3)
    crops = rep.crops(model, 3)
    assert crops[0].shape == (16, 1, 28, 28)
    x, y = make_test_set("tc", "bundled", n=50)
    assert evaluate(model, x, y) == pytest.approx(evaluate(model, x, y))


def _stn(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "stn", *args], capture_output=True, text=True, timeout=600, cwd=cwd)


@pytest.mark.slow
def test_train_eval_models_table_commands(tmp_path) -> None:
    d = str(tmp_path)
    r = _stn("train", "--dataset", "rts", "--steps", "20", "--batch-size", "32", "--name", "t-affine",
             "--data", "bundled", "--models-dir", d, "--quiet", "--threads", "1")
    assert r.returncode == 0, r.stderr
    assert "test error" in r.stdout
    card = json.loads((tmp_path / "t-affine.json").read_text())
    assert card["training"]["command"] == (
        "python -m stn train --dataset rts --steps 20 --batch-size 32 --name t-affine --data bundled "
        f"--models-dir {d} --quiet --threads 1"
    )
    assert (tmp_path / "t-affine.replay.safetensors").exists()
    # the card counts the data it was given: the bundled subset, not MNIST's 60,000 and 10,000
    from stn.data import load_mnist

    n_train, n_test = (len(load_mnist("bundled", train=t)[1]) for t in (True, False))
    assert card["dataset"]["train"].startswith(f"{n_train:,} MNIST training digits") and n_train < 60_000
    assert card["dataset"]["test"].startswith(f"the {n_test:,} MNIST test digits")
    # 20 steps: not a model to ship, so no logit floor, and the command to add one later
    assert "calibration" not in card and "t-affine: not calibrated (test error over 20%)" in r.stderr
    r = _stn("eval", "t-affine", "--data", "bundled", "--models-dir", d)
    assert r.returncode == 0 and "t-affine: test error" in r.stdout, r.stderr
    r = _stn("models", "--json", "--models-dir", d)
    assert json.loads(r.stdout)[0]["name"] == "t-affine"
    readme = tmp_path / "README.md"
    readme.write_text("x\n<!-- zoo-table:start -->\nPLACEHOLDER\n<!-- zoo-table:end -->\ny\n")
    r = _stn("table", "--readme", str(readme), "--chart", str(tmp_path / "chart.json"), "--models-dir", d)
    assert r.returncode == 0, r.stderr
    text = readme.read_text()
    assert "PLACEHOLDER" not in text and "| RTS |" in text and "(0.5)" in text
    assert json.loads((tmp_path / "chart.json").read_text())["data"][0]["name"] == "ours"
    # the repository's README and chart are the shipped zoo's: a scratch directory's table is printed, not written
    import stn

    repo = Path(stn.__file__).resolve().parent.parent
    before = [(repo / f).read_bytes() for f in ("README.md", "assets/table1.json") if (repo / f).exists()]
    r = _stn("table", "--models-dir", d)
    assert r.returncode == 0 and "| RTS |" in r.stdout and "README and chart not written" in r.stderr, r.stderr
    assert [(repo / f).read_bytes() for f in ("README.md", "assets/table1.json") if (repo / f).exists()] == before


def test_bad_arguments_are_one_sentence() -> None:
    r = _stn("train", "--dataset", "nope", "--steps", "1")
    assert r.returncode == 2
    assert "Unknown dataset 'nope'" in r.stderr and "Traceback" not in r.stderr
    r = _stn("eval", "no-such-model")
    assert r.returncode == 2 and "Unknown model" in r.stderr and "Traceback" not in r.stderr


def test_train_with_the_light_localisation_net(tmp_path) -> None:
    d = str(tmp_path)
    r = _stn("train", "--dataset", "rts", "--steps", "4", "--batch-size", "16", "--name", "t-light", "--loc-net", "light",
             "--data", "bundled", "--models-dir", d, "--quiet", "--threads", "1")
    assert r.returncode == 0, r.stderr
    card = json.loads((tmp_path / "t-light.json").read_text())
    assert card["config"]["loc_options"] == {"channels": 8, "hidden": 32, "pool": 3}
    from stn.zoo import load_model

    model = load_model("t-light", directory=tmp_path)
    assert model.st.localization.body[0].kernel_size == 3
    assert model.predict(torch.zeros(2, 1, 42, 42)).probs.shape == (2, 10)


def test_train_with_a_smaller_crop(tmp_path) -> None:
    """--crop-size: the transformer outputs a smaller window than the canvas; the classifier reads it."""
    d = str(tmp_path)
    r = _stn("train", "--dataset", "r", "--steps", "4", "--batch-size", "16", "--name", "t-box", "--crop-size", "20",
             "--start-scale", "0.714", "--data", "bundled", "--models-dir", d, "--quiet", "--threads", "1")
    assert r.returncode == 0, r.stderr
    card = json.loads((tmp_path / "t-box.json").read_text())
    assert card["config"]["crop_size"] == [20, 20] and card["config"]["input_size"] == [28, 28]
    from stn.zoo import load_model

    pred = load_model("t-box", directory=tmp_path).predict(torch.zeros(2, 1, 28, 28))
    assert pred.probs.shape == (2, 10) and tuple(pred.crops[0].shape) == (2, 1, 20, 20)
    r = _stn("train", "--dataset", "r", "--steps", "1", "--crop-size", "4", "--data", "bundled", "--models-dir", d)
    assert r.returncode == 2 and "--crop-size must be between 8 and 64" in r.stderr and "Traceback" not in r.stderr


def test_fine_tune_from_a_zoo_model(tmp_path) -> None:
    """--init starts from a model's weights and architecture; its card is kept in the new one."""
    d = str(tmp_path)
    common = ["--data", "bundled", "--models-dir", d, "--quiet", "--threads", "1", "--batch-size", "16"]
    r = _stn("train", "--dataset", "rts", "--steps", "4", "--name", "t-base", "--loc-net", "light", *common)
    assert r.returncode == 0, r.stderr
    # the architecture flags are the base model's: --loc-net is not repeated
    r = _stn("train", "--dataset", "rts", "--steps", "1", "--lr", "1e-12", "--name", "t-tuned", "--init", "t-base", *common)
    assert r.returncode == 0, r.stderr
    card = json.loads((tmp_path / "t-tuned.json").read_text())
    base = json.loads((tmp_path / "t-base.json").read_text())
    assert card["config"] == base["config"]
    assert card["training"]["init"]["model"] == "t-base" and card["training"]["init"]["test_error"] == base["metrics"]["test_error"]
    assert card["training"]["total_epochs"] == round(base["training"]["epochs"] + card["training"]["epochs"], 2)
    from stn.zoo import load_model

    a, b = load_model("t-base", directory=tmp_path), load_model("t-tuned", directory=tmp_path)
    for (name, p), q in zip(a.named_parameters(), b.parameters()):
        torch.testing.assert_close(p, q, msg=name)  # one step at lr 1e-12: the weights it started from
    r = _stn("train", "--dataset", "rts", "--steps", "1", "--lr", "1e-12", "--init", "t-base", *common)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "t-base-ft.json").exists()  # the default name never overwrites another model
    r = _stn("train", "--dataset", "r", "--steps", "1", "--name", "t-bad", "--init", "t-base", *common)
    assert r.returncode == 2 and "was trained on RTS, not on R" in r.stderr and "Traceback" not in r.stderr


def test_a_frozen_classifier_leaves_the_work_to_the_transformer() -> None:
    """freeze_classifier: the classifier's weights and batch-norm statistics stay as given; θ moves."""
    torch.manual_seed(0)
    donor = STClassifier(ModelConfig("mnist", (28, 28), transform=None))
    Trainer(donor, TrainConfig(steps=3, batch_size=16), root="bundled", device=torch.device("cpu")).step()  # BN stats move
    model = STClassifier(ModelConfig("r", (28, 28)))
    model.classifier.load_state_dict(donor.classifier.state_dict())
    before = {k: v.clone() for k, v in model.classifier.state_dict().items()}
    trainer = Trainer(model, TrainConfig(steps=8, batch_size=16, loc_lr_scale=1.0, freeze_classifier=True), root="bundled",
                      device=torch.device("cpu"))
    while not trainer.done:
        trainer.step()
    for k, v in model.classifier.state_dict().items():
        torch.testing.assert_close(v, before[k], msg=k)
    assert all(p.requires_grad for p in model.st.parameters())
    theta = model.st.regress(make_test_set("r", "bundled", n=8)[0])[0]
    assert (theta - model.st.transform.identity(8)).abs().max() > 1e-3
    with pytest.raises(ValueError, match="nothing else to train"):
        Trainer(STClassifier(ModelConfig("r", (28, 28), transform=None)), TrainConfig(steps=1, freeze_classifier=True),
                root="bundled", device=torch.device("cpu"))


def test_classifier_from_an_upright_cnn(tmp_path) -> None:
    """--classifier-from copies a model's classifier (refusing one of another shape); the card says where it came from."""
    d = str(tmp_path)
    common = ["--data", "bundled", "--models-dir", d, "--quiet", "--threads", "1", "--batch-size", "16"]
    r = _stn("train", "--dataset", "mnist", "--transform", "none", "--steps", "3", "--name", "t-upright", *common)
    assert r.returncode == 0, r.stderr
    r = _stn("train", "--dataset", "r", "--steps", "2", "--name", "t-turns", "--classifier-from", "t-upright",
             "--freeze-classifier", "--loc-lr-scale", "1", *common)
    assert r.returncode == 0, r.stderr
    card = json.loads((tmp_path / "t-turns.json").read_text())
    upright = json.loads((tmp_path / "t-upright.json").read_text())
    assert card["training"]["classifier_from"] == {
        "model": "t-upright", "dataset": "mnist", "test_error": upright["metrics"]["test_error"],
        "command": upright["training"]["command"], "frozen": True,
    }
    from stn.zoo import load_model

    a, b = load_model("t-upright", directory=tmp_path), load_model("t-turns", directory=tmp_path)
    for (name, p), q in zip(a.classifier.state_dict().items(), b.classifier.state_dict().values()):
        torch.testing.assert_close(p, q, msg=name)
    r = _stn("train", "--dataset", "r", "--steps", "1", "--name", "t-turns-ft", "--init", "t-turns", *common)
    assert r.returncode == 0, r.stderr  # fine-tuned, the card still says where the classifier came from
    tuned = json.loads((tmp_path / "t-turns-ft.json").read_text())
    assert tuned["training"]["init"]["classifier_from"] == card["training"]["classifier_from"]
    r = _stn("eval", "t-turns", "t-upright", "--rotation", "20", "--data", "bundled", "--models-dir", d)
    assert r.returncode == 0, r.stderr
    assert "Turned MNIST test digits (20), centred on the 28×28 canvas" in r.stdout and "| +90 |" in r.stdout
    assert "The grid follows" in r.stdout.split("t-upright:")[0] and "| -45 | " in r.stdout.split("t-upright:")[1]
    r = _stn("train", "--dataset", "rts", "--steps", "1", "--crop-size", "20", "--classifier-from", "t-upright", *common)
    assert r.returncode == 2 and "its classifier reads 28×28" in r.stderr and "this model's reads 20×20" in r.stderr
    assert "Traceback" not in r.stderr
    r = _stn("train", "--dataset", "r", "--steps", "1", "--freeze-classifier", *common)
    assert r.returncode == 2 and "--classifier-from MODEL" in r.stderr and "Traceback" not in r.stderr


def test_an_affine_model_warm_starts_tps(tmp_path) -> None:
    """--init AFFINE --transform tps: the TPS model starts with the affine model's crops."""
    d = str(tmp_path)
    common = ["--data", "bundled", "--models-dir", d, "--quiet", "--threads", "1", "--batch-size", "16"]
    r = _stn("train", "--dataset", "rts", "--steps", "6", "--name", "t-aff", "--loc-net", "light", "--lr", "0.05", *common)
    assert r.returncode == 0, r.stderr
    r = _stn("train", "--dataset", "rts", "--transform", "tps", "--steps", "1", "--lr", "1e-12", "--name", "t-tps",
             "--init", "t-aff", *common)
    assert r.returncode == 0, r.stderr
    card = json.loads((tmp_path / "t-tps.json").read_text())
    base = json.loads((tmp_path / "t-aff.json").read_text())
    assert card["config"] == {**base["config"], "transform": "tps", "transform_options": {"grid_size": 4}}
    assert card["description"].startswith("ST-CNN tps") and card["training"]["init"]["model"] == "t-aff"
    assert card["training"]["init"]["transform"] == "affine"
    # the replay is the whole history: t-aff's run (its θ mapped to control points), then t-tps's
    ra, rt = load_replay(tmp_path / "t-aff.replay.safetensors"), load_replay(tmp_path / "t-tps.replay.safetensors")
    assert rt.params.shape[-1] == 32 and len(rt.steps) == len(ra.steps) + 1  # t-tps: 2 snapshots, the first dropped
    assert rt.steps.tolist() == [*ra.steps.tolist(), int(ra.steps[-1]) + 1]
    from stn.transforms import affine_embedding, get

    torch.testing.assert_close(rt.params[: len(ra.steps)], ra.params @ affine_embedding(get("tps")).T, atol=2e-3, rtol=0)
    assert rt.curve_step[-1] == int(ra.steps[-1]) + 1
    from stn.zoo import load_model

    aff, tps = load_model("t-aff", directory=tmp_path), load_model("t-tps", directory=tmp_path)
    x = make_test_set("rts", "bundled", n=16)[0]
    pa, pt = aff.predict(x), tps.predict(x)
    assert pt.params[0].shape == (16, 32)
    # the crops agree but for the affine's tanh on translation (the weights moved by 1e-12 only)
    assert (pa.crops[0] - pt.crops[0]).abs().mean() < 0.02
    # a chain of fine-tunings counts every epoch: t-aff (6 steps) -> t-tps (1) -> t-tps2 (1)
    r = _stn("train", "--dataset", "rts", "--steps", "1", "--lr", "1e-12", "--name", "t-tps2", "--init", "t-tps", *common)
    assert r.returncode == 0, r.stderr
    again = json.loads((tmp_path / "t-tps2.json").read_text())
    assert again["training"]["init"]["epochs"] == card["training"]["total_epochs"]
    assert again["training"]["total_epochs"] == round(card["training"]["total_epochs"] + again["training"]["epochs"], 2)
    r = _stn("train", "--dataset", "rts", "--transform", "attention", "--steps", "1", "--init", "t-aff", *common)
    assert r.returncode == 2 and "cannot represent every affine map" in r.stderr and "Traceback" not in r.stderr
    r = _stn("train", "--dataset", "rts", "--transform", "affine", "--steps", "1", "--init", "t-tps", *common)
    assert r.returncode == 2 and "cannot start from an ST-CNN tps" in r.stderr


def _replay(steps: list[int], n_params: int, probe_seed: int = 0):
    from stn.replay import Replay

    g = torch.Generator().manual_seed(probe_seed)
    s = len(steps)
    return Replay(
        probe=torch.rand(4, 1, 8, 8, generator=g), probe_labels=torch.arange(4) + probe_seed,
        steps=torch.tensor(steps), params=torch.rand(s, 1, 4, n_params) if n_params else torch.zeros(0),
        labels=torch.zeros(s, 4, dtype=torch.int64), curve_step=torch.tensor(steps[1:]),
        curve_loss=torch.ones(s - 1), curve_acc=torch.zeros(s - 1),
    )


def test_chain_replays_continues_the_steps_and_refuses_mismatches(tmp_path) -> None:
    from stn.replay import chain_replays, load_replay, write_replay

    a, b = _replay([0, 5, 10], 6), _replay([0, 4, 8], 6)
    c = chain_replays([a, b])
    assert c.steps.tolist() == [0, 5, 10, 14, 18] and c.curve_step.tolist() == [5, 10, 14, 18]
    assert c.runs.tolist() == [10]  # where the second run began
    assert chain_replays([c, _replay([0, 3], 6)]).runs.tolist() == [10, 18]  # a chain of chains keeps every start
    torch.testing.assert_close(c.params[3:], b.params[1:])
    back = load_replay(write_replay(tmp_path / "c.safetensors", c))
    assert back.steps.tolist() == c.steps.tolist() and torch.allclose(back.params, c.params, atol=1e-3)
    assert back.runs.tolist() == [10]
    with pytest.raises(ValueError, match="another probe batch"):
        chain_replays([a, _replay([0, 4], 6, probe_seed=1)])
    with pytest.raises(ValueError, match="give an embedding"):
        chain_replays([a, _replay([0, 4], 32)])
    with pytest.raises(ValueError, match="CNN run"):
        chain_replays([a, _replay([0, 4], 0)])
    wide = chain_replays([a, _replay([0, 4], 32)], [torch.ones(32, 6), None])
    assert wide.params.shape == (4, 1, 4, 32)


def test_a_trained_model_worth_shipping_is_calibrated() -> None:
    """After training, a model under 20% test error gets its card's ``calibration`` (stn.calibration); --calibrate 0 skips it."""
    import argparse

    from stn.cli import _calibrate_new
    from stn.zoo import DEFAULT_MODEL, list_models, load_model

    if DEFAULT_MODEL not in list_models():
        pytest.skip("default model not shipped")
    model = load_model(DEFAULT_MODEL, device="cpu")
    card: dict = {}
    _calibrate_new(model, "w-new", card, 0.02, argparse.Namespace(calibrate=60, data="bundled"))
    assert card["calibration"]["images"] == 60 and card["calibration"]["how"].startswith("python -m stn calibrate w-new --write")
    skipped: dict = {}
    _calibrate_new(model, "w-new", skipped, 0.02, argparse.Namespace(calibrate=0, data="bundled"))
    assert skipped == {}


def test_a_batch_larger_than_the_limit_is_refused_before_training(tmp_path, capsys) -> None:
    """``--limit 64 --batch-size 128`` ended in a bare StopIteration traceback."""
    from stn.cli import main

    rc = main(["train", "--dataset", "r", "--limit", "64", "--batch-size", "128", "--steps", "1", "--data", "bundled",
               "--models-dir", str(tmp_path), "--quiet", "--calibrate", "0"])
    err = capsys.readouterr().err
    assert rc == 2 and err == ("stn train: --batch-size 128 is more than the 64 training digits of --limit 64: "
                               "give --batch-size 64 or less, or a larger --limit\n")
    assert not list(tmp_path.iterdir())


def test_help_offers_only_what_each_command_uses(capsys) -> None:
    """``--data`` did nothing for predict, models and table; ``--name``'s default was only half told."""
    from stn.cli import build_parser

    sub = build_parser()._subparsers._group_actions[0].choices
    for command in ("predict", "models", "table"):
        assert "--data" not in sub[command].format_help(), command
    for command in ("train", "eval", "uploads", "calibrate"):
        assert "--data" in sub[command].format_help(), command
    help_text = " ".join(sub["train"].format_help().split())
    assert "DATASET-cnn with --transform none" in help_text and "MODEL-ft with --init MODEL" in help_text


def test_eval_rotation_says_when_it_is_not_measured(capsys) -> None:
    """``eval pair-affine --rotation`` printed "...it is measured on one digit per image" and measured nothing."""
    from stn.cli import main
    from stn.zoo import list_models

    if "pair-affine" not in list_models():
        pytest.skip("pair-affine is not in the zoo")
    rc = main(["eval", "pair-affine", "--rotation", "10", "--data", "bundled"])
    out, err = capsys.readouterr()
    assert rc == 1 and "pair-affine: test error" in out and "Turned MNIST" not in out
    assert err == ("stn eval: --rotation not measured for pair-affine: it reads 2 digits at once, and the rotation "
                   "test turns one digit on the canvas; give it a model that reads one digit\n")


def test_rotation_table_never_prints_minus_zero(monkeypatch) -> None:
    import argparse

    import stn.inference
    from stn.cli import _rotation_table

    def response(model, digits, labels, angles):
        angles = list(angles)
        n = len(angles)
        return {"n": len(digits), "angles": angles, "accuracy": [0.5] * n, "followed": -0.004,
                "recovered_q1": [-0.4] * n, "recovered_median": [-0.2] * n, "recovered_q3": [0.3] * n}

    monkeypatch.setattr(stn.inference, "rotation_response", response)
    table = _rotation_table(STClassifier(ModelConfig("r", (28, 28))), argparse.Namespace(data="bundled", rotation=4))
    assert "The grid follows 0% of the turn" in table and "-0" not in table


_QUICK = ["--data", "bundled", "--quiet", "--calibrate", "0", "--batch-size", "16"]


def test_train_refuses_to_overwrite_a_model(tmp_path, capsys, monkeypatch) -> None:
    """The README's ``train --dataset rts --transform affine`` replaced the shipped rts-affine and its card
    with a 3-step model without a word: the default name in the default directory."""
    from stn.cli import main
    from stn.zoo import list_models, models_dir

    if "rts-affine" not in list_models():
        pytest.skip("rts-affine is not in the zoo")
    zoo = tmp_path / "zoo"
    zoo.mkdir()
    for ext in (".safetensors", ".json", ".replay.safetensors"):
        (zoo / f"rts-affine{ext}").write_bytes((models_dir() / f"rts-affine{ext}").read_bytes())
    monkeypatch.setenv("STN_MODELS", str(zoo))  # the default models directory, a copy of the shipped one
    shipped = {p.name: p.read_bytes() for p in zoo.iterdir()}
    rc = main(["train", "--dataset", "rts", "--transform", "affine", "--steps", "1", *_QUICK])
    err = capsys.readouterr().err
    assert rc == 2 and err == (
        f"stn train: a model named rts-affine is already in {zoo} (rts-affine.safetensors, rts-affine.json, "
        "rts-affine.replay.safetensors): train under another name (--name NAME) or into another directory "
        "(--models-dir DIR), or give --force to replace it\n"
    )  # and refused before training: no "training rts-affine: ..." line
    assert {p.name: p.read_bytes() for p in zoo.iterdir()} == shipped
    # any one of its files is enough, and so is the replay its card names
    (zoo / "t-orphan.replay.safetensors").write_bytes(b"x")
    assert main(["train", "--dataset", "rts", "--steps", "1", "--name", "t-orphan", *_QUICK]) == 2
    assert "(t-orphan.replay.safetensors)" in capsys.readouterr().err
    (zoo / "t-card.json").write_text(json.dumps({"replay": "t-old.replay.safetensors"}))
    (zoo / "t-old.replay.safetensors").write_bytes(b"x")
    assert main(["train", "--dataset", "rts", "--steps", "1", "--name", "t-card", *_QUICK]) == 2
    assert "(t-card.json, t-old.replay.safetensors)" in capsys.readouterr().err
    # --force replaces it
    assert main(["train", "--dataset", "rts", "--transform", "affine", "--steps", "1", "--force", *_QUICK]) == 0
    card = json.loads((zoo / "rts-affine.json").read_text())
    assert card["training"]["steps"] == 1 and " --force " in card["training"]["command"]
    assert (zoo / "rts-affine.safetensors").read_bytes() != shipped["rts-affine.safetensors"]


def test_a_forced_fine_tune_under_its_own_name_keeps_the_history(tmp_path, capsys) -> None:
    """``--init f --name f``: the new replay was written over the starting model's before it was read, so
    the chained replay held the new run twice and lost the first."""
    from stn.cli import main

    common = [*_QUICK, "--models-dir", str(tmp_path)]
    assert main(["train", "--dataset", "rts", "--steps", "4", "--name", "t-f", *common]) == 0
    assert main(["train", "--dataset", "rts", "--steps", "2", "--init", "t-f", "--name", "t-f", *common]) == 2
    assert main(["train", "--dataset", "rts", "--steps", "2", "--init", "t-f", "--name", "t-f", "--force", *common]) == 0
    rep = load_replay(tmp_path / "t-f.replay.safetensors")
    assert rep.steps.tolist() == [0, 1, 2, 3, 4, 5, 6] and rep.runs.tolist() == [4]


def test_train_with_a_holdout_and_choose_on_it(tmp_path, capsys) -> None:
    """``--holdout N``: trained on the rest, measured on the last N training digits (val_error in the card);
    ``eval --split val`` measures them again, and refuses a model trained without one."""
    from stn.cli import main

    d = str(tmp_path)
    common = [*_QUICK, "--models-dir", d]
    assert main(["train", "--dataset", "rts", "--steps", "2", "--holdout", "1000", "--name", "t-val", *common]) == 0
    out = capsys.readouterr().out
    card = json.loads((tmp_path / "t-val.json").read_text())
    val = card["metrics"]["val_error"]
    assert card["dataset"]["holdout"] == {"digits": 1000, "of": 4000} and 0 <= val <= 1
    assert card["dataset"]["train"].startswith("the first 3,000 of the 4,000 MNIST training digits (the last 1,000 held out)")
    assert "test_error" in card["metrics"] and f"(val error {100 * val:.2f}% on 1,000 held-out digits)" in out
    assert main(["eval", "t-val", "--split", "val", "--data", "bundled", "--models-dir", d]) == 0
    assert capsys.readouterr().out == (f"t-val: val error {100 * val:.2f}% on 1000 held-out RTS training images "
                                       f"(card: {100 * val:.2f}%)\n")
    # a fine-tune keeps the split, from a model that held out (at least) the same digits
    assert main(["train", "--dataset", "rts", "--steps", "1", "--holdout", "1000", "--init", "t-val", *common]) == 0
    assert json.loads((tmp_path / "t-val-ft.json").read_text())["dataset"]["holdout"] == {"digits": 1000, "of": 4000}
    # a model trained on every digit has no validation split; the others are still measured
    assert main(["train", "--dataset", "rts", "--steps", "1", "--name", "t-all", *common]) == 0
    assert "val_error" not in json.loads((tmp_path / "t-all.json").read_text())["metrics"]
    capsys.readouterr()
    rc = main(["eval", "t-all", "t-val", "--split", "val", "--data", "bundled", "--models-dir", d])
    out, err = capsys.readouterr()
    assert rc == 1 and out.startswith("t-val: val error") and "t-all" not in out
    assert err == ("stn eval: t-all has no validation split: it was trained without --holdout, so its training saw "
                   "every training digit; evaluate it on the test set (--split test), or train it again with --holdout N\n")
    # held out from other data than --data gives: refused, not measured on digits it may have trained on
    other = tmp_path / "t-val.json"
    other.write_text(other.read_text().replace('"of": 4000', '"of": 60000'))
    assert main(["eval", "t-val", "--split", "val", "--data", "bundled", "--models-dir", d]) == 1
    assert capsys.readouterr().err == ("stn eval: t-val held out the last 1,000 of 60,000 training digits, but the data "
                                       "given has 4,000: give the --data it was trained on (see training.command in "
                                       "t-val.json)\n")


@pytest.mark.parametrize(("args", "message"), [
    (["--holdout", "4000"], "--holdout 4000 leaves none of the 4,000 training digits to train on: give --holdout 3999 or less"),
    (["--holdout", "1000", "--limit", "3500"], ("--limit 3500 reaches into the last 1,000 training digits, which --holdout "
                                                "1000 leaves out: give --limit 3000 or less, or a smaller --holdout")),
    (["--holdout", "3990"], ("--batch-size 16 is more than the 10 training digits --holdout 3990 leaves: give --batch-size "
                             "10 or less, or a smaller --holdout")),
    (["--holdout", "1000", "--init", "t-all"], ("--init t-all was trained on every training digit, digits that --holdout "
                                                "1000 leaves out among them, so the val error would not be held out: start "
                                                "from a model trained with --holdout 1000 (or more), or train without --holdout")),
    (["--holdout", "1000", "--classifier-from", "t-all"], "--classifier-from t-all was trained on every training digit"),
])
def test_a_holdout_that_cannot_hold_is_refused_before_training(tmp_path, capsys, args, message) -> None:
    from stn.cli import main

    common = [*_QUICK, "--models-dir", str(tmp_path)]
    if "t-all" in args:
        assert main(["train", "--dataset", "rts", "--transform", "none", "--steps", "1", "--name", "t-all", *common]) == 0
        capsys.readouterr()
    before = sorted(p.name for p in tmp_path.iterdir())
    assert main(["train", "--dataset", "rts", "--transform", "none", "--steps", "1", "--name", "t-new", *args, *common]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"stn train: {message}") and err.count("\n") == 1 and "training t-new" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == before


# --------------------------------------------------------------------------- refused before training, in one sentence


def _refused(capsys, argv: list[str], message: str) -> str:
    """``stn train ARGV`` refused with exit code 2 and one line that starts with ``message``, before training."""
    from stn.cli import main

    rc = main(["train", *argv])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith(f"stn train: {message}") and err.count("\n") == 1, err
    assert "training " not in err
    return err


@pytest.mark.parametrize("where", ["file", "under-a-file", "under-proc"])
def test_an_unusable_models_dir_is_refused_before_training(tmp_path, capsys, where) -> None:
    """``--models-dir`` a file (or under one, or where nothing can be made) trained the whole run, then died with
    a NotADirectoryError/FileNotFoundError traceback from the checkpoint's mkdir, and the run was lost."""
    a_file = tmp_path / "afile"
    a_file.write_text("")
    if where == "under-proc" and not Path("/proc/self").exists():
        pytest.skip("no /proc here")
    out = {"file": a_file, "under-a-file": a_file / "sub", "under-proc": Path("/proc/nope")}[where]
    common = ["--dataset", "r", "--name", "z1", "--steps", "2", "--limit", "200", "--threads", "1", *_QUICK]
    message = (f"--models-dir {out} is a file, not a directory: give a directory" if where == "file" else
               f"--models-dir {out} cannot be created or written into (")
    _refused(capsys, [*common, "--models-dir", str(out)], message)
    assert [p.name for p in tmp_path.iterdir()] == ["afile"]


def test_an_os_error_is_one_sentence_naming_the_path(tmp_path, capsys) -> None:
    """What the commands do not check for themselves: an OSError was a traceback; now a line naming the path."""
    from stn.cli import main

    (tmp_path / "zoo").mkdir()
    rc = main(["table", "--readme", str(tmp_path), "--chart", str(tmp_path / "chart.json"), "--models-dir",
               str(tmp_path / "zoo")])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1, err
    assert err.startswith(f"stn table: {tmp_path}: is a directory: check that the path exists"), err


def test_init_and_classifier_from_look_in_the_shipped_zoo_too(tmp_path, capsys) -> None:
    """``--init rts-affine --models-dir runs`` said "Unknown model 'rts-affine'. Known: t1" though ``stn models``
    lists it: the models directory is looked in first, then the shipped zoo, and the message names both."""
    from stn.cli import main
    from stn.zoo import list_models, models_dir

    if not {"rts-affine", "mnist-cnn"} <= set(list_models()):
        pytest.skip("rts-affine or mnist-cnn is not in the zoo")
    common = ["--steps", "1", "--threads", "1", *_QUICK, "--models-dir", str(tmp_path)]
    assert main(["train", "--dataset", "rts", "--init", "rts-affine", "--name", "t-ft", *common]) == 0, capsys.readouterr()
    card = json.loads((tmp_path / "t-ft.json").read_text())
    assert card["training"]["init"]["model"] == "rts-affine" and card["training"]["total_epochs"] > 1
    # the shipped model's replay, then this run's
    assert len(load_replay(tmp_path / "t-ft.replay.safetensors").runs) >= 1
    assert main(["train", "--dataset", "r", "--classifier-from", "mnist-cnn", "--name", "t-cf", *common]) == 0
    assert json.loads((tmp_path / "t-cf.json").read_text())["training"]["classifier_from"]["model"] == "mnist-cnn"
    capsys.readouterr()
    # a model of the same name in --models-dir comes first
    assert main(["train", "--dataset", "rts", "--init", "t-ft", "--name", "t-ft2", *common]) == 0
    assert json.loads((tmp_path / "t-ft2.json").read_text())["training"]["init"]["model"] == "t-ft"
    capsys.readouterr()
    for flag in ("--init", "--classifier-from"):
        _refused(capsys, ["--dataset", "rts", flag, "rts-afine", *common],
                 f"Unknown model 'rts-afine' for {flag}: it is not in --models-dir {tmp_path} (t-cf, t-ft, t-ft2) nor in "
                 f"the zoo {models_dir()} (")


@pytest.mark.parametrize("name", ["../escape", "a/b", "", "..", ".hidden", "x.replay", "a b", "-x", "x" * 101])
def test_a_name_that_is_not_a_file_name_is_refused(tmp_path, capsys, name) -> None:
    """``--name ../escape`` wrote outside the models directory, ``--name a/b`` into a subfolder never listed."""
    out = tmp_path / "zoo"
    _refused(capsys, ["--dataset", "r", f"--name={name}", "--steps", "1", "--models-dir", str(out), *_QUICK],
             f"--name {name!r} cannot name a model's files: use 1 to 100 letters, digits, '-' and '_', beginning with a "
             "letter or digit")
    assert list(tmp_path.iterdir()) == []


def test_transform_and_grid_size_are_checked_before_training(tmp_path, capsys) -> None:
    """``--transform foo`` printed "training r-foo: ..." before refusing it; ``--grid-size 3`` with another
    transform than tps was ignored without a word."""
    from stn.zoo import list_models

    common = ["--dataset", "r", "--steps", "1", "--models-dir", str(tmp_path), *_QUICK]
    _refused(capsys, [*common, "--transform", "foo"],
             "--transform 'foo' is not a transform: give affine, attention, projective, tps, or none (the CNN baseline)")
    for transform in ([], ["--transform", "affine"], ["--transform", "none"]):
        _refused(capsys, [*common, *transform, "--grid-size", "3"],
                 "--grid-size sets a thin-plate spline's control points, and this model's transform is ")
    if "r-tps" in list_models():  # fine-tuning keeps the starting model's grid
        _refused(capsys, [*common, "--init", "r-tps", "--grid-size", "3"],
                 "--grid-size 3: --init r-tps has a 4×4 grid, which fine-tuning keeps: leave --grid-size out")
    assert list(tmp_path.iterdir()) == []


def test_the_readme_tells_resume_from_init() -> None:
    """The Training section documented ``--resume`` and a later paragraph said "A run cannot be resumed"."""
    text = " ".join((Path(__file__).resolve().parent.parent / "README.md").read_text().split())
    assert "cannot be resumed" not in text
    assert "`--resume` continues an interrupted run" in text and "`--init` starts a new run" in text
