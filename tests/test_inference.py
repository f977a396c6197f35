"""stn.inference: the app's engine, on a tiny zoo written here (one model per family, a two-head
pair model and a CNN baseline) whose transformers regress a known θ, so that every code path is
exercised without the trained weights; and on the real zoo when it is there."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from stn import viz
from stn.inference import Engine, ImageError, UnknownModelError, distort_batch, fit_affine
from stn.model import SURE, ModelConfig, STClassifier
from stn.transforms import control_points
from stn.zoo import DEFAULT_MODEL, list_models, load_model, save_model

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "assets" / "examples"

# name: (dataset, canvas, transform, options, heads, digit size, θ the head regresses for every input)
TINY = {
    "wild-affine": ("wild", (56, 56), "affine", {}, 1, 32.0, viz.theta_from_reading(30, 0.6, 0.6, 0.0, 0.1, -0.2)),
    "wild-cnn": ("wild", (56, 56), None, {}, 1, 32.0, None),
    "pair-affine": ("pair", (42, 84), "affine", {}, 2, 62.0, viz.theta_from_reading(0, 0.5, 1, 0, -0.5, 0)
                    + viz.theta_from_reading(0, 0.5, 1, 0, 0.5, 0)),
    "e-tps": ("e", (28, 28), "tps", {"grid_size": 4}, 1, 20.0, (control_points(4) * 0.8).reshape(-1).tolist()),
    "p-projective": ("p", (28, 28), "projective", {}, 1, 18.0, viz.theta_from_reading(-20, 0.8, 0.8, 0, 0, 0) + [0.1, -0.05]),
    "tc-attention": ("tc", (60, 60), "attention", {}, 1, 20.0, [0.5, 0.2, -0.1]),
}


def _raw_bias(transform: str, theta: list[float], heads: int) -> torch.Tensor:
    """Pre-``bound`` parameters whose bounded value is ``theta`` (tanh on translations)."""
    per = len(theta) // heads
    out = []
    for k in range(heads):
        p = list(theta[k * per : (k + 1) * per])
        if transform in ("affine", "projective"):
            p[2], p[5] = math.atanh(p[2]), math.atanh(p[5])
        elif transform == "attention":
            p[1], p[2] = math.atanh(p[1]), math.atanh(p[2])
        out += p
    return torch.tensor(out)


def make_tiny_zoo(directory: Path) -> Path:
    """Small random models with known θ (zero localisation weights, θ in the bias)."""
    torch.manual_seed(0)
    for name, (ds, canvas, transform, options, heads, digit, theta) in TINY.items():
        cfg = ModelConfig(dataset=ds, input_size=canvas, transform=transform, transform_options=options, heads=heads,
                          channels=(4, 8), hidden=16, loc_options={"channels": 4, "hidden": 8}, digit_size=digit)
        model = STClassifier(cfg)
        if transform is not None:
            head = model.st.localization.head
            with torch.no_grad():
                head.weight.zero_()
                head.bias.copy_(_raw_bias(transform, theta, heads))
        card = {"description": f"tiny {name} for tests", "dataset": {"name": ds}, "metrics": {"test_error": 0.5}}
        save_model(model.eval(), name, card, directory)
    return directory


@pytest.fixture(scope="module")
def zoo(tmp_path_factory) -> Path:
    return make_tiny_zoo(tmp_path_factory.mktemp("zoo"))


@pytest.fixture(scope="module")
def engine(zoo, tmp_path_factory) -> Engine:
    return Engine(zoo, device="cpu", cache_dir=tmp_path_factory.mktemp("sweeps"))


def test_names_default_and_resolve(engine, zoo):
    assert set(engine.names) == set(TINY)
    assert engine.names[-1] == "wild-cnn"  # transformers first, CNNs last
    assert engine.default_model() == (DEFAULT_MODEL, "")
    assert engine.info["wild-affine"].baseline == "wild-cnn"
    assert engine.info["pair-affine"].heads == 2 and engine.info["wild-cnn"].transform is None
    with pytest.raises(UnknownModelError, match="Unknown model 'nope'.*wild-affine"):
        engine.resolve("nope")


def test_missing_default_falls_back_with_a_note(zoo):
    e = Engine(zoo, device="cpu", names=["e-tps", "rts-missing"])
    name, note = e.default_model()
    assert name == "e-tps" and DEFAULT_MODEL in note and "e-tps" in note
    empty = Engine(zoo / "nothing-here", device="cpu")
    assert empty.default_model()[0] is None and "No models" in empty.default_model()[1]


@pytest.mark.parametrize("name", list(TINY))
def test_predict_every_model(engine, name):
    info = engine.info[name]
    img = Image.fromarray((np.random.default_rng(0).random(info.input_size) * 40).astype(np.uint8), "L")
    img.paste(255, (info.input_size[1] // 3, info.input_size[0] // 4, info.input_size[1] // 3 + 4, 3 * info.input_size[0] // 4))
    r = engine.predict(img, name)
    assert r.input.shape == info.input_size
    assert len(r.reading.params) == (info.heads if info.transform else 0)
    assert len(r.reading.crops) == info.heads
    assert r.reading.probs.shape == (10**info.heads,) and abs(r.reading.probs.sum() - 1) < 1e-4
    assert len(r.reading.label) == info.heads and r.reading.label == max(r.reading.top(), key=r.reading.top().get)
    out = r.to_json()
    json.dumps(out)
    assert {"model", "label", "sure", "touching", "probs", "theta"} <= set(out)
    assert out["touching"] is False  # one upright bar
    assert out["model"] == name and len(out["theta"]) == len(r.reading.params)
    assert out["sure"] is (float(r.reading.probs.max()) >= SURE and not r.reading.weak)
    assert r.reading.top_logit is not None and r.reading.sure_logit == engine.models[name].sure_logit
    if out["baseline"] is not None:
        assert out["baseline"]["sure"] is (float(r.baseline.probs.max()) >= SURE)
    if info.transform:
        np.testing.assert_allclose(np.concatenate(out["theta"]), np.asarray(TINY[name][6]), atol=1e-4)
    assert (out["baseline"] is not None) == (name == "wild-affine")
    assert set(r.timings) >= {"prepare_ms", "model_ms", "baseline_ms"}


def test_touching_digits_are_noted_in_the_answer_and_the_panel(engine, touching_zeros):
    """Two pen-drawn "0"s run into each other: one mark, read as one digit with ``touching`` and the panel's note;
    a lean result (what a session keeps) has no pre-processing details, so no note."""
    from stn.serving import lean, reading_panel

    img = touching_zeros
    r = engine.predict(img, "wild-affine")
    assert r.touching and r.to_json()["touching"] is True and 'class="stn-touching"' in reading_panel(r)
    assert not lean(r).touching
    assert engine.predict(img, "pair-affine").to_json()["touching"] is False  # it reads two digits


def test_a_reading_on_weak_evidence_says_so_with_its_numbers(engine, monkeypatch, touching_zeros):
    """A model whose floor is over the reading's top logit: not sure, in the JSON and on the panel, which gives both numbers."""
    from stn.serving import reading_panel

    monkeypatch.setattr(engine.models["wild-affine"], "sure_logit", 1e6)
    monkeypatch.setattr(viz, "SURE", 0.0)  # the tiny model's probabilities are flat: let the logit be the only reason
    r = engine.predict(touching_zeros, "wild-affine")
    assert r.reading.weak and r.to_json()["sure"] is False
    panel = reading_panel(r)
    assert "is unsure: perhaps" in panel and f"its largest logit, {r.reading.top_logit:.1f}, is under 1000000.0," in panel


def test_a_reading_under_sure_is_a_guess():
    """``Reading.sure``: the top probability against SURE, at the boundary too; no probabilities, no answer."""
    from stn.inference import Reading

    def reading(probs: list[float]) -> Reading:
        return Reading(model="m", label="0", probs=np.asarray(probs, np.float32), class_names=[str(i) for i in range(len(probs))],
                       params=[], crops=[], head_labels=["0"])

    assert reading([SURE, 1 - SURE]).sure is True
    assert reading([0.59, 0.41]).sure is False
    assert reading([0.1] * 10).sure is False
    assert reading([]).sure is False
    weak = reading([0.9, 0.1])
    weak.top_logit, weak.sure_logit = 3.0, 5.0  # peaked probabilities on small logits: unlike the digits it knows
    assert weak.weak and weak.sure is False
    weak.top_logit = 5.0
    assert not weak.weak and weak.sure is True


def test_baseline_reads_the_same_input(engine):
    x = torch.rand(1, 1, 56, 56)
    r = engine.predict_tensor(x, "wild-affine")
    direct = engine.models["wild-cnn"].predict(x)
    np.testing.assert_allclose(r.baseline.probs, direct.probs[0].numpy(), atol=1e-6)


@pytest.mark.parametrize("side_thread", [True, False])
def test_predict_early_then_the_baseline(engine, monkeypatch, side_thread):
    """predict_early hands back the model's reading at once; the plain CNN's comes on request, the same
    as predict's (on a second thread where there is one, else in the caller's)."""
    if not side_thread:
        monkeypatch.setattr(engine, "_side", None)
    img = Image.fromarray((np.random.default_rng(1).random((56, 56)) * 255).astype(np.uint8), "L")
    full = engine.predict(img, "wild-affine")
    early, baseline = engine.predict_early(img, "wild-affine")
    np.testing.assert_allclose(early.reading.probs, full.reading.probs, atol=1e-6)
    got = baseline()
    assert got is early.baseline and got is baseline()  # waits once, then the same reading
    np.testing.assert_allclose(got.probs, full.baseline.probs, atol=1e-6)
    assert set(early.timings) >= {"prepare_ms", "model_ms", "baseline_ms"}
    cnn, none = engine.predict_early(img, "wild-cnn")  # a model with no baseline of its own
    assert none() is None and cnn.baseline is None


def test_traced_models_read_as_the_eager_ones(engine):
    x = torch.rand(1, 1, 56, 56)
    traced = engine.predict_tensor(x, "wild-affine")
    assert engine.models["wild-affine"]._traced  # batch 1 on the CPU: the frozen TorchScript copy
    eager = Engine(engine.directory, device="cpu", trace=False).predict_tensor(x, "wild-affine")
    np.testing.assert_allclose(traced.reading.probs, eager.reading.probs, atol=1e-5)
    np.testing.assert_allclose(traced.reading.params[0], eager.reading.params[0], atol=1e-5)
    np.testing.assert_allclose(traced.baseline.probs, eager.baseline.probs, atol=1e-5)


def test_read_with_predicted_theta_is_the_prediction(engine):
    for name in ("wild-affine", "pair-affine", "e-tps", "p-projective", "tc-attention"):
        x = torch.rand(engine.info[name].input_size)
        r = engine.predict_tensor(x, name)
        again = engine.read_with(name, x, r.reading.params)
        np.testing.assert_allclose(again.probs, r.reading.probs, atol=1e-5)
        for a, b in zip(again.crops, r.reading.crops):
            np.testing.assert_allclose(a, b, atol=1e-5)


def test_read_with_another_theta_changes_the_crop(engine):
    x = torch.rand(56, 56)
    r = engine.predict_tensor(x, "wild-affine")
    ident = engine.read_with("wild-affine", x, [np.array([1.0, 0, 0, 0, 1, 0])])
    assert np.abs(ident.crops[0] - r.reading.crops[0]).max() > 0.05


def test_warp_kernels(engine):
    x = torch.rand(56, 56)
    p = np.array(TINY["wild-affine"][6])
    bil = engine.warp("wild-affine", x, p, "bilinear")
    near = engine.warp("wild-affine", x, p, "nearest")
    assert bil.shape == near.shape == (28, 28)
    assert not np.allclose(bil, near)
    assert set(np.round(near.ravel(), 5)) <= set(np.round(x.numpy().ravel(), 5)) | {0.0}  # nearest copies pixels


def test_distort_identity_and_rotation():
    x = torch.zeros(1, 1, 28, 28)
    x[0, 0, 6:22, 13:15] = 1
    np.testing.assert_allclose(Engine.distort(x), x[0, 0].numpy(), atol=1e-5)
    turned = Engine.distort(x, 90)
    assert turned[13:15, 6:22].mean() > 0.8  # a vertical bar turned a quarter is horizontal
    batch = distort_batch(x, [0, 45, 90])
    assert batch.shape == (3, 1, 28, 28)


def test_fit_affine():
    theta = viz.theta_from_reading(25, 0.7, 0.9, 0.1, 0.2, -0.1)
    np.testing.assert_allclose(fit_affine("affine", theta), theta, atol=1e-9)
    np.testing.assert_allclose(fit_affine("attention", [0.5, 0.1, 0.2]), [0.5, 0, 0.1, 0, 0.5, 0.2], atol=1e-9)
    tps = fit_affine("tps", (control_points(4) * 0.5).reshape(-1).numpy())
    np.testing.assert_allclose(tps, [0.5, 0, 0, 0, 0.5, 0], atol=1e-6)


def test_rotation_sweep(engine):
    x = torch.rand(56, 56)
    s = engine.rotation_sweep("wild-affine", x, [-90.0, 0.0, 90.0])
    assert s["angles"] == [-90.0, 0.0, 90.0] and len(s["labels"]) == 3
    assert s["recovered"] == pytest.approx([0, 0, 0], abs=1e-3)  # this tiny θ does not depend on the input
    assert engine.rotation_sweep("wild-cnn", x, [0.0])["recovered"] is None


def test_accuracy_sweep_is_cached(engine):
    angles = (-90.0, 0.0, 90.0)
    out = engine.accuracy_sweep("wild-affine", angles, n=8)
    assert out["n"] == 8 and out["baseline"] == "wild-cnn"
    assert set(out["accuracy"]) == {"wild-affine", "wild-cnn"} and all(len(v) == 3 for v in out["accuracy"].values())
    assert len(out["recovered_median"]) == 3
    assert engine.has_sweep("wild-affine", angles, 8)
    assert list(engine.cache_dir.glob("sweep-wild-affine-*.json"))
    again = Engine(engine.directory, device="cpu", names=["wild-affine", "wild-cnn"], cache_dir=engine.cache_dir)
    assert again.has_sweep("wild-affine", angles, 8) and again.accuracy_sweep("wild-affine", angles, 8) == json.loads(json.dumps(out))
    pair = engine.accuracy_sweep("pair-affine", (0.0,), n=4)
    assert pair["baseline"] is None and len(pair["accuracy"]["pair-affine"]) == 1


def test_bad_images(engine, tmp_path):
    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    with pytest.raises(ImageError, match="notes.png"):
        engine.predict(str(bad), "wild-affine")
    blank = tmp_path / "blank.png"
    Image.new("L", (100, 100), 255).save(blank)
    with pytest.raises(ImageError, match="no digit"):
        engine.predict(str(blank), "wild-affine")
    with pytest.raises(ValueError, match="expected an input of 56×56"):
        engine.predict_tensor(torch.zeros(28, 28), "wild-affine")


# --------------------------------------------------------------------------- the real zoo

REAL = list_models()


@pytest.mark.skipif(not REAL, reason="no trained models in models/ yet")
def test_real_zoo_reads_its_own_examples():
    """Each shipped model reads the bundled example of its own task correctly (the examples' file
    names carry the label)."""
    e = Engine(device="cpu")
    index = json.loads((EXAMPLES / "examples.json").read_text())
    checked = 0
    for item in index:
        models = [m for m in e.models_for(item["task"]) if e.info[m].has_transformer]
        for m in models:
            r = e.predict(str(EXAMPLES / item["file"]), m)
            if item["file"].endswith(".png") and not item["file"].startswith("sketch"):
                checked += 1
                assert r.reading.top(3).get(item["label"], 0) > 0, f"{m} on {item['file']}: {r.reading.top(3)}"
    assert checked or not any(e.info[m].has_transformer for m in e.names)


def test_rotation_response_measures_the_grid_turn(zoo):
    """A tiny model's θ ignores its input (zero localisation weights): the grid never turns, whatever
    the digit's turn; a CNN has no grid; a two-head model is refused."""
    from stn.data import load_mnist
    from stn.inference import rotation_response

    digits, labels = load_mnist("bundled", train=False)
    model = load_model("p-projective", directory=zoo)
    res = rotation_response(model, digits[:12], labels[:12], [-60, 30, 90])
    assert res["angles"] == [-60.0, 0.0, 30.0, 90.0] and res["n"] == 12  # 0° added: the reference
    assert len(res["accuracy"]) == 4 and all(0 <= a <= 1 for a in res["accuracy"])
    assert np.allclose(res["recovered_median"], 0, atol=1e-6) and res["followed"] == pytest.approx(0, abs=1e-6)
    q1, med, q3 = (np.asarray(res[k]) for k in ("recovered_q1", "recovered_median", "recovered_q3"))
    assert np.all(q1 <= med + 1e-9) and np.all(med <= q3 + 1e-9)
    cnn = rotation_response(load_model("wild-cnn", directory=zoo), digits[:4], labels[:4], [45])
    assert cnn["followed"] is None and "recovered_median" not in cnn
    with pytest.raises(ValueError, match="several heads"):
        rotation_response(load_model("pair-affine", directory=zoo), digits[:4], labels[:4], [45])


def test_the_warm_up_stops_when_asked(zoo, tmp_path, monkeypatch) -> None:
    """A server stops the background warm-up before exiting: a thread inside torch during the interpreter's
    shutdown aborted the process now and then (SIGABRT)."""
    engine = Engine(zoo, device="cpu", cache_dir=tmp_path)
    swept: list[str] = []

    def slow_sweep(name, *args, **kwargs):
        swept.append(name)
        time.sleep(0.5)
        return {}

    monkeypatch.setattr(engine, "accuracy_sweep", slow_sweep)
    assert engine.stop_warm(timeout=1)  # never started: nothing to wait for
    thread = engine.warm()
    while not swept:
        time.sleep(0.01)
    assert engine.stop_warm(timeout=10) and not thread.is_alive()
    assert len(swept) == 1 < sum(engine.info[m].has_transformer for m in engine.names)  # stopped after the model it was on


def test_class_names_are_the_predictions_for_any_number_of_classes() -> None:
    """The app's class names match Prediction.class_names: ten classes a head are zero-padded numbers ("07" on the
    pair model); three classes on two heads are "00" ... "22", not "00" ... "08"."""
    from stn.inference import _class_names
    from stn.model import ModelConfig, STClassifier

    assert _class_names(10, 1)[7] == "7" and _class_names(100, 2)[7] == "07" and _class_names(100, 2)[75] == "75"
    assert _class_names(9, 2) == ["00", "01", "02", "10", "11", "12", "20", "21", "22"]
    model = STClassifier(ModelConfig("pair", (42, 84), transform="affine", heads=2, n_classes=3)).eval()
    pred = model.predict(torch.rand(4, 1, 42, 84))
    assert pred.class_names() == [_class_names(9, 2)[int(i)] for i in pred.labels]
