"""``python -m stn predict FILE... [--model NAME] [--json]``."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import stn
from stn.cli import main
from stn.model import SURE

REPO = Path(__file__).resolve().parent.parent
MODELS = stn.list_models()
needs_models = pytest.mark.skipif(not MODELS, reason=f"no models in {stn.zoo.models_dir()} yet (python -m stn train ...)")


def _digit_png(path: Path, index: int = 0, size: int = 160) -> Path:
    from stn.data import load_mnist

    x, _ = load_mnist("bundled", train=False)
    d = Image.fromarray((255 - x[index, 0].numpy() * 255).astype(np.uint8)).resize((size, size), Image.Resampling.BICUBIC)
    page = Image.new("L", (size * 3 // 2, size * 3 // 2), 255)
    page.paste(d, (size // 4, size // 4))
    page.save(path)
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("cli")
    broken = d / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    blank = d / "blank.png"
    Image.new("L", (100, 100), 255).save(blank)
    seven, two = _digit_png(d / "seven.png", 0), _digit_png(d / "two.png", 1)
    pair = d / "seventy-two.png"  # for the pair model, which refuses one digit alone
    with Image.open(seven) as a, Image.open(two) as b:
        both = Image.new("L", (a.width + b.width, a.height), 255)
        both.paste(a, (0, 0))
        both.paste(b, (a.width - a.width // 4, 0))
        both.save(pair)
    return {"seven": seven, "two": two, "pair": pair, "broken": broken, "blank": blank}


def _run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "stn", "predict", *args], capture_output=True, text=True, timeout=180, cwd=REPO, env=env, check=False)


@needs_models
@pytest.mark.parametrize("name", MODELS)
def test_json_lines_every_model(name, files, capsys):
    """In-process for speed: one JSON object per file with the documented keys and shapes."""
    model = stn.load_model(name, device="cpu")
    given = [files["seven"], files["two"]] if model.heads == 1 else [files["pair"]] * 2
    rc = main(["predict", "--json", "--cpu", "--model", name, *map(str, given)])
    out = capsys.readouterr().out.splitlines()
    assert rc == 0
    rows = [json.loads(line) for line in out]
    assert [Path(r["file"]).name for r in rows] == [f.name for f in given]
    for r in rows:
        assert set(r) == {"file", "model", "touching", "label", "sure", "probs", "theta"}
        assert r["touching"] is False
        assert r["model"] == name
        assert r["sure"] is (max(r["probs"]) >= SURE)
        assert len(r["probs"]) == model.n_outputs  # 10 for single digits, 100 for pairs
        assert all(isinstance(p, float) for p in r["probs"]) and abs(sum(r["probs"]) - 1) < 1e-3
        assert len(r["label"]) == model.heads and r["label"].isdigit()
        assert int(r["label"]) == int(np.argmax(r["probs"]))
        if model.st is None:
            assert r["theta"] == []
        else:
            assert len(r["theta"]) == model.heads
            n_params = model.st.transform.n_params if hasattr(model.st, "transform") else None
            for head in r["theta"]:
                assert all(isinstance(v, float) for v in head)
                if n_params:
                    assert len(head) == n_params


@needs_models
def test_default_model_labels(files):
    if stn.DEFAULT_MODEL not in MODELS:
        pytest.skip(f"default model {stn.DEFAULT_MODEL!r} not installed")
    proc = _run("--json", str(files["seven"]), str(files["two"]))
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["model"] for r in rows] == [stn.DEFAULT_MODEL] * 2
    assert [r["label"] for r in rows] == ["7", "2"]


@needs_models
def test_broken_file_among_good_ones(files):
    """Subprocess, as a user runs it: errors in line, the others predicted, exit status 1."""
    proc = _run("--json", "--model", MODELS[0], str(files["seven"]), str(files["broken"]), str(files["blank"]),
                str(files["two"]), str(files["seven"].with_name("missing.png")))
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [Path(r["file"]).name for r in rows] == ["seven.png", "broken.png", "blank.png", "two.png", "missing.png"]
    assert "label" in rows[0] and "label" in rows[3]
    assert set(rows[1]) == {"file", "error"} and rows[1]["error"].startswith("broken.png: ")
    assert "damaged or truncated" in rows[1]["error"]
    assert "no digit found" in rows[2]["error"]
    assert "no such file" in rows[4]["error"]


@needs_models
def test_table_output(files, capsys):
    rc = main(["predict", "--cpu", "--model", MODELS[0], str(files["seven"]), str(files["broken"])])
    captured = capsys.readouterr()
    assert rc == 1
    lines = captured.out.splitlines()
    assert lines[0].split() == ["file", "label", "prob", "model"]
    assert str(files["seven"]) in lines[1] and MODELS[0] in lines[1] and "%" in lines[1]
    assert "broken.png: the image file is damaged" in lines[2]
    assert "1 of 2 files could not be read" in captured.err


@needs_models
def test_table_marks_a_guess(files, capsys, monkeypatch):
    """A reading under SURE says it is a guess; a sure one says nothing more."""
    import stn.model

    assert main(["predict", "--cpu", "--model", MODELS[0], str(files["seven"])]) == 0
    line = capsys.readouterr().out.splitlines()[1]
    main(["predict", "--json", "--cpu", "--model", MODELS[0], str(files["seven"])])
    sure = json.loads(capsys.readouterr().out)["sure"]
    assert ("(unsure: under 60%, a guess)" in line) is (not sure)
    import stn.zoo

    floor = {"logit": 1e9}  # no evidence is that strong: a guess for its weak evidence
    load = stn.zoo.load_model

    def with_floor(*args, **kwargs):
        model = load(*args, **kwargs)
        model.sure_logit = floor["logit"]
        return model

    monkeypatch.setattr(stn.zoo, "load_model", with_floor)  # each load is a model of its own: set it on the CLI's
    assert main(["predict", "--cpu", "--model", MODELS[0], str(files["seven"])]) == 0
    out = capsys.readouterr().out.splitlines()[1]
    assert "(unsure: weak evidence, unlike the digits it knows; a guess)" in out or "(unsure: under 60%" in out
    floor["logit"] = None
    monkeypatch.setattr(stn.model, "SURE", 1.01)  # nothing is that sure: every reading is a guess
    assert main(["predict", "--cpu", "--model", MODELS[0], str(files["seven"])]) == 0
    assert "(unsure: under 101%, a guess)" in capsys.readouterr().out.splitlines()[1]


def test_unknown_model(files, capsys):
    rc = main(["predict", "--model", "rts-afine", str(files["seven"])])
    assert rc == 2
    err = capsys.readouterr().err
    assert "Unknown model 'rts-afine'" in err and "Known:" in err


@needs_models
def test_default_falls_back_with_a_note(files, tmp_path):
    """Without the default model the first listed one is used, with a note on stderr."""
    other = next((m for m in MODELS if m != stn.DEFAULT_MODEL), None)
    if other is None:
        pytest.skip("only the default model is installed")
    src = stn.zoo.models_dir()
    for ext in ("json", "safetensors"):
        shutil.copy(src / f"{other}.{ext}", tmp_path / f"{other}.{ext}")
    proc = _run("--json", "--models-dir", str(tmp_path), str(files["seven"]))
    assert proc.returncode == 0, proc.stderr
    assert f"default model {stn.DEFAULT_MODEL!r} is not installed; using {other!r}" in proc.stderr
    assert json.loads(proc.stdout)["model"] == other


def test_help_lists_predict():
    proc = subprocess.run([sys.executable, "-m", "stn", "--help"], capture_output=True, text=True, timeout=60, cwd=REPO, check=False)
    assert "predict" in proc.stdout


@needs_models
@pytest.mark.parametrize("damage,match", [
    (lambda d, n: (d / f"{n}.safetensors").write_bytes((d / f"{n}.safetensors").read_bytes()[:1000]),
     r"\.safetensors: the file is not a readable safetensors file \(truncated or corrupt"),
    (lambda d, n: (d / f"{n}.safetensors").write_text("version https://git-lfs.github.com/spec/v1\nsize 9\n"),
     r"\.safetensors: the file is not a safetensors file but a Git LFS pointer: run `git lfs pull`"),
    (lambda d, n: (d / f"{n}.json").unlink(), r"\.json: no such file, but .*\.safetensors is there"),
    (lambda d, n: (d / f"{n}.json").write_text("{\n"), r"\.json: the model card is not valid JSON \(.*line 2 column 1"),
], ids=["truncated", "lfs-pointer", "no-card", "broken-json"])
def test_a_damaged_model_is_one_line(files, tmp_path, capsys, damage, match):
    """A corrupt or LFS-pointer weights file, or a missing or broken card: one line naming the file, exit code 2."""
    name = MODELS[0]
    for ext in ("json", "safetensors"):
        shutil.copy(stn.zoo.models_dir() / f"{name}.{ext}", tmp_path / f"{name}.{ext}")
    damage(tmp_path, name)
    rc = main(["predict", "--cpu", "--model", name, "--models-dir", str(tmp_path), str(files["seven"])])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and err.startswith(f"stn predict: {tmp_path / name}.")
    assert re.search(match, err), err


def test_models_lists_a_hand_made_card_and_names_a_broken_one(tmp_path, capsys):
    """One damaged card made ``stn models`` fail outright (exit 2, nothing listed): now it is named on stderr and
    the others are still listed, with exit code 1 (as predict's, for files it could not read)."""
    from stn.model import ModelConfig, STClassifier

    for name in ("bare", "good"):  # no metrics, no description
        stn.zoo.save_model(STClassifier(ModelConfig("r", (28, 28))), name, {}, tmp_path)
    assert main(["models", "--models-dir", str(tmp_path)]) == 0
    assert capsys.readouterr().out.split() == ["bare", "-", "good", "-"]
    (tmp_path / "bare.json").write_text("")
    assert main(["models", "--models-dir", str(tmp_path)]) == 1
    out, err = capsys.readouterr()
    assert out.split() == ["good", "-"]
    assert err.count("\n") == 1 and err.startswith(f"stn models: {tmp_path / 'bare.json'}: the model card is not valid JSON")
    assert main(["models", "--json", "--models-dir", str(tmp_path)]) == 1
    out, err = capsys.readouterr()
    assert [c["name"] for c in json.loads(out)] == ["good"] and "bare.json" in err


@pytest.mark.parametrize("command", [["models"], ["predict", "x.png"], ["eval", "m"], ["table"]])
def test_a_models_dir_that_is_not_there_is_said(tmp_path, capsys, command):
    """``models --models-dir /nonexistent`` said "no models found" (exit 0), predict "Unknown model ... Known: none"."""
    missing, a_file = tmp_path / "nonexistent", tmp_path / "a-file"
    a_file.write_text("")
    assert main([*command, "--models-dir", str(missing)]) == 2
    assert capsys.readouterr().err == (f"stn {command[0]}: --models-dir {missing} does not exist: give the directory "
                                       "the models were trained into (stn train --models-dir DIR)\n")
    assert main([*command, "--models-dir", str(a_file)]) == 2
    assert f"--models-dir {a_file} is not a directory: " in capsys.readouterr().err
    (tmp_path / "empty").mkdir()  # there, with no model in it: said as such
    if command == ["models"]:
        assert main(["models", "--models-dir", str(tmp_path / "empty")]) == 0
        assert capsys.readouterr().out == f"no models found in {tmp_path / 'empty'}\n"


@needs_models
def test_predict_names_every_format_it_reads(files, tmp_path, capsys):
    """A file of another format was refused naming six formats; --help names eight (PPM, AVIF): now both name the
    formats stn.preprocess reads."""
    from stn.cli import build_parser
    from stn.preprocess import READ_FORMATS

    text = tmp_path / "notimage.png"
    text.write_text("not a picture\n")
    assert main(["predict", "--cpu", "--model", MODELS[0], str(text)]) == 1
    line = capsys.readouterr().out.splitlines()[1]
    sub = build_parser()._subparsers._group_actions[0].choices
    help_text = " ".join(sub["predict"].format_help().split())
    for fmt in READ_FORMATS:
        shown = {"WEBP": "WebP"}.get(fmt, fmt)
        assert shown in line and shown in help_text, fmt
    listed = re.search(r"Send an? (.*)\.$", line).group(1)
    assert f"{listed} images" in help_text, (listed, help_text)


@needs_models
def test_predict_says_a_directory_is_one(files, tmp_path, capsys):
    """``stn predict /tmp`` named the file "tmp": the directory is named as given, and said to be one."""
    assert main(["predict", "--cpu", "--json", "--model", MODELS[0], str(tmp_path), str(files["seven"])]) == 1
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert rows[0] == {"file": str(tmp_path), "error": f"{tmp_path} is a directory, not a picture file: give the "
                                                       f"picture files in it (e.g. {tmp_path / '*.png'})."}
    assert "label" in rows[1]
