"""Every shipped model: card complete, weights load with safetensors, predictions sane and as carded."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from stn import load_model
from stn.data import data_root, get_spec
from stn.model import ModelConfig, STClassifier
from stn.zoo import ModelFileError, UnknownModelError, create_model, list_models, load_card, models_dir, save_model

MODELS = list_models()
CARD_KEYS = {"name", "description", "config", "dataset", "metrics", "training", "parameters"}


def test_zoo_is_not_empty() -> None:
    assert MODELS, f"no models in {models_dir()}"


@pytest.mark.parametrize("name", MODELS)
def test_card_is_complete(name: str) -> None:
    card = load_card(name)
    assert CARD_KEYS <= set(card)
    assert 0 <= card["metrics"]["test_error"] <= 1
    for key in ("seed", "epochs", "train_seconds", "hardware", "command", "batch_size"):
        assert key in card["training"], key
    assert card["training"]["command"].startswith("python -m stn train")
    assert "Creative Commons" in card["dataset"]["source"]
    assert card["name"] == name
    if "replay" in card:
        assert (models_dir() / card["replay"]).exists(), card["replay"]
    init = card["training"].get("init")
    if init is not None:  # a fine-tuned model counts every epoch since the first start
        assert {"model", "epochs", "test_error", "command"} <= set(init)
        assert card["training"]["total_epochs"] == pytest.approx(init["epochs"] + card["training"]["epochs"])


@pytest.mark.parametrize("name", MODELS)
def test_predicts_on_its_canvas(name: str) -> None:
    model = load_model(name, device="cpu")
    spec = get_spec(model.config.dataset)
    assert model.input_size == spec.canvas
    x = torch.rand(3, 1, *model.input_size) * 0.2
    pred = model.predict(x)
    assert pred.labels.shape == (3,)
    assert pred.probs.shape == (3, model.n_outputs)
    assert torch.allclose(pred.probs.sum(1), torch.ones(3), atol=1e-4)
    assert len(pred.crops) == model.heads
    if model.st is None:
        assert pred.params == []
    else:
        assert len(pred.params) == model.heads
        assert all(p.shape == (3, model.st.transform.n_params) and torch.isfinite(p).all() for p in pred.params)
        assert all(c.shape == (3, 1, *model.config.crop_size) for c in pred.crops)


@pytest.mark.parametrize("name", MODELS)
def test_card_carries_a_calibrated_floor(name: str) -> None:
    """Every shipped model knows how small a top logit it may be sure of (stn.calibration), and loads it."""
    cal = load_card(name).get("calibration")
    assert cal is not None, f"{name}: python -m stn calibrate {name} --write"
    assert cal["quantile"] == pytest.approx(0.005) and cal["read_right"] >= 0.8 * cal["images"] >= 800
    assert 0 < cal["sure_logit"] < 30 and cal["how"].startswith(f"python -m stn calibrate {name}")
    assert load_model(name, device="cpu").sure_logit == cal["sure_logit"]


def test_the_floor_makes_a_reading_a_guess() -> None:
    """``Prediction.top_logits`` is each head's largest logit, the least over heads; under ``sure_logit`` the
    reading is ``weak`` and not ``sure`` however peaked its probabilities; without a floor, the probability decides."""
    model = STClassifier(ModelConfig("pair", (42, 84), transform="affine", heads=2)).eval()
    x = torch.rand(4, 1, 42, 84)
    logits = model(x)  # (B, heads, 10)
    pred = model.predict(x)
    assert torch.allclose(pred.top_logits, logits.amax(-1).amin(-1), atol=1e-5)
    assert pred.sure_logit is None and not pred.weak.any()
    assert torch.equal(pred.sure, pred.probs.amax(1) >= 0.6)
    model.sure_logit = float(pred.top_logits.median())
    pred = model.predict(x)
    assert torch.equal(pred.weak, pred.top_logits < model.sure_logit) and pred.weak.any() and not pred.weak.all()
    assert not (pred.sure & pred.weak).any()
    model.sure_logit = -1e9
    assert torch.equal(model.predict(x).sure, model.predict(x).probs.amax(1) >= 0.6)


def test_each_load_is_a_model_of_its_own(tmp_path) -> None:
    """A caller who trains, moves or converts the model it loaded changes nobody else's copy."""
    model = STClassifier(ModelConfig("rts", (42, 42), transform="affine"))
    save_model(model, "mine", {"description": "t", "dataset": {"name": "rts"}, "metrics": {}}, tmp_path)
    first = load_model("mine", device="cpu", directory=tmp_path)
    first.double().train()
    with torch.no_grad():
        first.st.localization.head.bias.add_(1.0)
    second = load_model("mine", device="cpu", directory=tmp_path)
    assert second is not first and not second.training
    assert next(second.parameters()).dtype == torch.float32
    torch.testing.assert_close(second.st.localization.head.bias, model.st.localization.head.bias)
    x = torch.rand(2, 1, 42, 42)
    assert first.predict(x.double()).labels.shape == first.predict(x).labels.shape == (2,)  # the model's own dtype
    model.st.localization.head.bias.data.add_(0.5)  # new weights written under the same name are read again
    save_model(model, "mine", {"description": "t", "dataset": {"name": "rts"}, "metrics": {}}, tmp_path, overwrite=True)
    import os

    os.utime(tmp_path / "mine.safetensors", (1e9, 2e9))
    torch.testing.assert_close(load_model("mine", device="cpu", directory=tmp_path).st.localization.head.bias,
                               model.st.localization.head.bias)
    card = json.loads((tmp_path / "mine.json").read_text())  # a card rewritten alone (stn calibrate --write)
    card["calibration"] = {"sure_logit": 99.0}
    (tmp_path / "mine.json").write_text(json.dumps(card))
    os.utime(tmp_path / "mine.json", (1e9, 3e9))
    again = load_model("mine", device="cpu", directory=tmp_path)
    assert again.sure_logit == 99.0 and again.card["calibration"]["sure_logit"] == 99.0


@pytest.mark.parametrize("x,error,match", [
    (torch.rand(2, 1, 42, 42) * 255, ValueError, "from 0.* to 2[0-9][0-9].*/ 255"),
    ((torch.rand(2, 1, 42, 42) * 255).to(torch.uint8), TypeError, "float pixels.*uint8"),
    ((torch.rand(2, 1, 42, 42) - 0.13) / 0.31, ValueError, "no mean/std normalisation"),
    (torch.full((2, 1, 42, 42), float("nan")), ValueError, "NaN or infinite"),
], ids=["0-255", "uint8", "normalised", "nan"])
def test_predict_refuses_pixels_out_of_range(x, error, match) -> None:
    """Pixels of 0..255 were read as confident nonsense (13% right, every reading "sure"): now a sentence."""
    model = STClassifier(ModelConfig("rts", (42, 42), transform="affine"))
    with pytest.raises(error, match=match):
        model.predict(x)
    assert model.predict(torch.rand(2, 1, 42, 42) * 0.2).labels.shape == (2,)  # in [0, 1], light ink on dark: read


def test_two_heads_predict_an_empty_batch() -> None:
    model = STClassifier(ModelConfig("pair", (42, 84), transform="affine", heads=2))
    pred = model.predict(torch.zeros(0, 1, 42, 84))
    assert pred.labels.shape == (0,) and pred.probs.shape == (0, 100)


def test_unknown_model_lists_the_known_ones() -> None:
    with pytest.raises(UnknownModelError, match="Known: .*python -m stn models"):
        load_model("rts-afine")


def test_save_and_load_roundtrip(tmp_path) -> None:
    model = STClassifier(ModelConfig("rts", (42, 42), transform="tps", transform_options={"grid_size": 3}))
    with torch.no_grad():
        model.st.localization.head.bias.add_(0.01)
    save_model(model, "tiny", {"description": "t", "dataset": {"name": "rts"}, "metrics": {}}, tmp_path)
    card = json.loads((tmp_path / "tiny.json").read_text())
    assert card["config"]["transform_options"] == {"grid_size": 3}
    loaded = load_model("tiny", device="cpu", directory=tmp_path)
    x = torch.rand(2, 1, 42, 42)
    model.eval()
    assert torch.allclose(loaded(x), model(x), atol=1e-6)
    assert (tmp_path / "tiny.safetensors").stat().st_mode & 0o044, "weights readable by a non-root server"


# --------------------------------------------------------------------------- the traced fast path


@pytest.mark.parametrize(
    "config",
    [
        ModelConfig("rts", (42, 42), transform="affine"),
        ModelConfig("p", (28, 28), transform="projective"),
        ModelConfig("e", (28, 28), transform="tps", transform_options={"grid_size": 3}),
        ModelConfig("pair", (42, 84), transform="affine", heads=2),
        ModelConfig("rts", (42, 42), transform=None),
    ],
    ids=["affine", "projective", "tps", "two-heads", "cnn"],
)
def test_traced_predict_equals_eager(config) -> None:
    torch.manual_seed(0)
    model = STClassifier(config).train()  # predict evaluates in eval mode whatever the model's mode
    x = torch.rand(1, 1, *config.input_size)
    eager = model.predict(x)
    assert model.trace_for_inference() is True
    assert model._fast_forward(x) is not None  # the traced copy serves this shape
    fast = model.predict(x)
    assert model.training  # its modes are left as they were
    torch.testing.assert_close(fast.probs, eager.probs, atol=1e-5, rtol=1e-4)
    assert len(fast.params) == len(eager.params) and len(fast.crops) == len(eager.crops)
    for a, b in zip(fast.params + fast.crops, eager.params + eager.crops):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
    # other shapes (a batch of 3) still run eagerly, and agree
    batch = torch.rand(3, 1, *config.input_size)
    assert model._fast_forward(batch) is None
    assert model.predict(batch).probs.shape[0] == 3


@pytest.mark.parametrize(
    "config",
    [
        ModelConfig("r", (28, 28), transform="affine", localization="fc"),
        ModelConfig("rts", (42, 42), transform="attention"),
        ModelConfig("p", (28, 28), transform="projective"),
        ModelConfig("e", (28, 28), transform="tps", transform_options={"grid_size": 3}),
        ModelConfig("pair", (42, 84), transform="affine", heads=2),
    ],
    ids=["affine-fc", "attention", "projective", "tps", "two-heads"],
)
def test_traced_graph_builds_no_constants_per_call(config) -> None:
    """Every operation of the frozen graph depends on the input: masks, base grids and TPS weights are
    constants of the graph, not rebuilt on each call, even when the first call that builds them is the
    trace itself (caches emptied first)."""
    from stn import transforms

    for cached in (transforms._entry_mask, transforms._homogeneous_base_t, transforms._base_grid_cached,
                   transforms._grid_matrix, transforms._tps_weights):
        cached.cache_clear()
    model = STClassifier(config).eval()
    assert model.trace_for_inference()
    graph = next(iter(model._traced.values()))[0].graph
    live = {i.debugName() for i in graph.inputs() if i.type().kind() == "TensorType"}
    static = []
    for node in graph.nodes():
        if node.kind().startswith("prim::"):
            if any(i.debugName() in live for i in node.inputs()):
                live.update(o.debugName() for o in node.outputs())
            continue
        if any(i.debugName() in live for i in node.inputs()):
            live.update(o.debugName() for o in node.outputs())
        else:
            static.append(node.kind())
    assert not static, f"operations that do not depend on the input: {static}"


def test_traced_copy_is_dropped_when_the_weights_change() -> None:
    model = STClassifier(ModelConfig("rts", (42, 42), transform="affine")).eval()
    x = torch.rand(1, 1, 42, 42)
    assert model.trace_for_inference()
    with torch.no_grad():  # a training step, say
        next(model.classifier.parameters()).add_(0.5)
    assert model._fast_forward(x) is None  # stale: predict falls back to the eager forward
    eager = model.forward_all(x)[0].softmax(-1)[:, 0]
    torch.testing.assert_close(model.predict(x).probs, eager, atol=1e-6, rtol=1e-5)
    assert model.trace_for_inference() and model._fast_forward(x) is not None  # traced again


def test_no_torchscript_means_eager(monkeypatch) -> None:
    def broken(*args, **kwargs):
        raise RuntimeError("no TorchScript here")

    monkeypatch.setattr(torch.jit, "trace", broken)
    model = STClassifier(ModelConfig("rts", (42, 42), transform="affine"))
    assert model.trace_for_inference() is False
    assert model.predict(torch.rand(1, 1, 42, 42)).probs.shape == (1, 10)


# --------------------------------------------------------------------------- bad files in the zoo


def _tiny_zoo(tmp_path, name: str = "mine") -> STClassifier:
    model = STClassifier(ModelConfig("rts", (42, 42), transform="affine"))
    save_model(model, name, {"description": "t", "dataset": {"name": "rts"}, "metrics": {"test_error": 0.5},
                             "training": {"command": "python -m stn train --dataset rts"}}, tmp_path)
    return model


@pytest.mark.parametrize("damage,match", [
    (lambda b: b[:1000], (r"mine\.safetensors: the file is not a readable safetensors file \(truncated or corrupt.*"
                          r"download it again")),
    (lambda b: b"", r"mine\.safetensors: the file is not a readable safetensors file \(truncated or corrupt, 0 bytes"),
    (lambda b: b"version https://git-lfs.github.com/spec/v1\noid sha256:" + b"0" * 64 + b"\nsize 12345\n",
     r"mine\.safetensors: the file is not a safetensors file but a Git LFS pointer: run `git lfs pull`"),
], ids=["truncated", "empty", "lfs-pointer"])
def test_damaged_weights_are_named(tmp_path, damage, match) -> None:
    """A truncated file or a Git LFS pointer gave SafetensorError's "invalid header length" / "header too large"."""
    _tiny_zoo(tmp_path)
    weights = tmp_path / "mine.safetensors"
    weights.write_bytes(damage(weights.read_bytes()))
    with pytest.raises(ModelFileError, match=match) as info:
        load_model("mine", device="cpu", directory=tmp_path)
    assert isinstance(info.value, UnknownModelError) and isinstance(info.value, ValueError)  # what callers catch


def _edit_card(tmp_path, edit) -> None:
    path = tmp_path / "mine.json"
    card = json.loads(path.read_text())
    edit(card)
    path.write_text(json.dumps(card))


@pytest.mark.parametrize("damage,match", [
    (lambda d: (d / "mine.json").unlink(), r"mine\.json: no such file, but mine\.safetensors is there.*Restore"),
    (lambda d: (d / "mine.json").write_text("{\n"), r"mine\.json: the model card is not valid JSON \(.*line 2.*\): restore"),
    (lambda d: (d / "mine.json").write_text("[1, 2]"), r"mine\.json: the model card is JSON but not an object"),
    (lambda d: (d / "mine.json").write_bytes(b"version https://git-lfs.github.com/spec/v1\n"),
     r"mine\.json: the model card is a Git LFS pointer.*git lfs pull"),
    (lambda d: _edit_card(d, lambda c: c.pop("config")), r"mine\.json: the model card has no \"config\".*training\.command"),
    (lambda d: _edit_card(d, lambda c: c["config"].update(transform="tps")),
     (r"mine\.json: the card's \"config\" does not fit the weights in mine\.safetensors "
      r"\(st\.localization\.head\.weight is \(6, \d+\) in the weights, \(32, \d+\) for the card; 1 more differs\)")),
    (lambda d: _edit_card(d, lambda c: c["config"].update(colour=1)), r"\"config\" does not describe a model.*colour"),
    (lambda d: _edit_card(d, lambda c: c["config"].update(transform="tpz")), r"not describe a model.*transform 'tpz'"),
], ids=["no-card", "broken-json", "not-an-object", "lfs-pointer", "no-config", "config-mismatch", "unknown-key",
        "bad-value"])
def test_card_problems_are_named(tmp_path, damage, match) -> None:
    """Weights with no card (FileNotFoundError), broken JSON (no file named), a card whose config does not fit
    the weights (RuntimeError: size mismatch) or has none (KeyError): now a sentence naming the card."""
    _tiny_zoo(tmp_path)
    damage(tmp_path)
    with pytest.raises(ModelFileError, match=match):
        load_model("mine", device="cpu", directory=tmp_path)


def test_zoo_functions_take_a_str_path(tmp_path) -> None:
    model = _tiny_zoo(tmp_path)
    assert list_models(str(tmp_path)) == ["mine"]
    assert load_card("mine", str(tmp_path))["name"] == "mine"
    assert load_model("mine", device="cpu", directory=str(tmp_path)).config == model.config


# --------------------------------------------------------------------------- inputs a model cannot read

CONFIGS = [ModelConfig("rts", (42, 42), transform="affine"), ModelConfig("rts", (42, 42), transform=None)]


@pytest.mark.parametrize("config", CONFIGS, ids=["st", "cnn"])
def test_inputs_a_model_cannot_read_get_one_sentence(config) -> None:
    """A 3-D tensor gave "required rank 4 tensor to use channels_last format" (the layout change came before the
    check); the CNN baselines had no check at all ("mat1 and mat2 shapes cannot be multiplied", "expected scalar
    type Double"); a numpy array an AttributeError; a meta tensor "Tensor.item() cannot be called"."""
    model = STClassifier(config).eval()
    x = torch.rand(2, 1, 42, 42) * 0.2
    for bad in (x[0], x[:, :, :28, :28]):
        with pytest.raises(ValueError, match=r"this model was built for inputs \(B, 1, 42, 42\).*stn\.preprocess"):
            model(bad)
    with pytest.raises(TypeError, match="float64 but the model's weights are torch.float32"):
        model(x.double())
    with pytest.raises(TypeError, match="uint8: pixels must be floats"):
        model((x * 255).to(torch.uint8))
    with pytest.raises(TypeError, match=r"reads a torch\.Tensor.*got ndarray; torch\.from_numpy"):
        model(x.numpy())
    # predict takes a numpy array (any float dtype) as the tensor it holds
    torch.testing.assert_close(model.predict(x.numpy().astype(np.float64)).probs, model.predict(x).probs)
    with pytest.raises(TypeError, match="float pixels in \\[0, 1\\], got torch.uint8"):
        model.predict((x.numpy() * 255).astype(np.uint8))
    with pytest.raises(TypeError, match=r"expected a tensor or numpy array \(B, 1, 42, 42\), got list"):
        model.predict(x.tolist())
    with pytest.raises(ValueError, match="meta tensor"):
        model.predict(x.to("meta"))
    with pytest.raises(ValueError, match=r"expected input of shape \(B, 1, 42, 42\), got \(1, 42, 42\)"):
        model.predict(x[0])


@pytest.mark.parametrize("config", CONFIGS, ids=["st", "cnn"])
def test_predict_refuses_a_light_ground(config) -> None:
    """Dark ink on a light ground (1 - x) was read confidently wrong (r-affine 7% right, most of it "sure")."""
    model = STClassifier(config)
    torch.manual_seed(0)
    x = torch.rand(4, 1, 42, 42) * 0.2
    assert model.predict(x).labels.shape == (4,)
    with pytest.raises(ValueError, match=r"^the image has a light ground.*invert it \(1 - x\).*stn\.preprocess"):
        model.predict(1 - x[:1])
    with pytest.raises(ValueError, match=r"^image 2 of the batch \(and 1 more\) has a light ground"):
        model.predict(torch.cat([x[:2], 1 - x[2:]]))
    bold = x.clone()
    bold[:, :, 4:-4, 4:-4] = 1.0  # ink over most of the canvas, not over its edge: a digit, read
    assert model.predict(bold).labels.shape == (4,)
    assert model.predict(torch.rand(64, 1, 42, 42)).labels.shape == (64,)  # noise: no ground to speak of, read


HAVE_MNIST = any((data_root() / sub / "t10k-images-idx3-ubyte").exists() for sub in ("MNIST/raw", "raw", "."))


@pytest.mark.skipif(not HAVE_MNIST, reason="MNIST not found: set STN_DATA (CI sets it)")
@pytest.mark.parametrize("name", ["r-affine", "rts-affine", "tc-affine", "wild-affine", "pair-affine"])
def test_no_test_digit_has_a_light_ground_and_every_inverse_has(name) -> None:
    """On the zoo's own test images (1,000 per canvas) the polarity check refuses none, and every one inverted."""
    from stn.data import test_set
    from stn.model import _light_ground

    if name not in MODELS:
        pytest.skip(f"{name} is not in the zoo")
    model = load_model(name, device="cpu")
    x, _ = test_set(model.config.dataset, n=1000)
    assert int(_light_ground(x).sum()) == 0 and int(_light_ground(1 - x).sum()) == len(x)
    assert model.predict(x).labels.shape[0] == len(x)
    with pytest.raises(ValueError, match="light ground"):
        model.predict(1 - x[:1])


def test_a_bold_digit_moved_to_the_edge_is_not_a_light_ground() -> None:
    """The Invariance tab scales and moves a prepared digit: a bold "6" at 1.4× and 12 px left covered 53% of the
    canvas's edge, and the edge-median test refused it with a traceback. Light is now most (60%) of the edge; the
    app's engine, whose inputs are prepared or moved from prepared ones, skips the test."""
    import torch

    from stn.model import _light_ground

    x = torch.zeros(1, 1, 56, 56)
    x[0, 0, :, :30] = 1.0  # ink over the left 30 columns: 53% of the edge
    assert not bool(_light_ground(x)) and bool(_light_ground(1 - x * 0.1))
    if "wild-affine" not in MODELS:
        pytest.skip("wild-affine is not in the zoo")
    model = load_model("wild-affine", device="cpu")
    light = torch.ones(1, 1, 56, 56) * 0.9
    with pytest.raises(ValueError, match="light ground"):
        model.predict(light)
    assert model.predict(light, check_ground=False).labels.shape == (1,)


# --------------------------------------------------------------------------- create_model, save_model's guards


def test_create_model_is_load_model_or_the_same_architecture_fresh(tmp_path) -> None:
    """timm's ``create_model(name, pretrained=...)``: the zoo had only load_model (pretrained weights only)."""
    import stn

    assert stn.create_model is create_model and "create_model" in stn.__all__
    model = _tiny_zoo(tmp_path)
    (tmp_path / "mine.json").write_text(json.dumps({**json.loads((tmp_path / "mine.json").read_text()),
                                                    "calibration": {"sure_logit": 3.0}}))
    trained = create_model("mine", directory=tmp_path, device="cpu")
    assert not trained.training and trained.sure_logit == 3.0 and trained.card["name"] == "mine"
    for a, b in zip(trained.state_dict().values(), model.state_dict().values()):
        torch.testing.assert_close(a, b)
    torch.manual_seed(1)
    fresh = create_model("mine", pretrained=False, directory=tmp_path, device="cpu")
    assert fresh.config == model.config and not fresh.training and fresh.sure_logit is None
    key = "classifier.features.0.weight"  # fresh weights, not the trained ones
    assert key in fresh.state_dict() and not torch.equal(fresh.state_dict()[key], trained.state_dict()[key])
    assert fresh.predict(torch.rand(2, 1, 42, 42)).labels.shape == (2,)
    (tmp_path / "mine.safetensors").unlink()  # a fresh model needs only the card
    assert create_model("mine", pretrained=False, directory=tmp_path, device="cpu").config == model.config
    with pytest.raises(ModelFileError, match="no weights"):
        create_model("mine", directory=tmp_path, device="cpu")
    with pytest.raises(UnknownModelError, match="Unknown model 'nope'"):
        create_model("nope", pretrained=False, directory=tmp_path)


def test_save_model_does_not_replace_a_model_unless_told(tmp_path) -> None:
    """save_model wrote over a model of the same name (by default in the shipped models/) without a word."""
    model = _tiny_zoo(tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    with pytest.raises(ValueError, match=(rf"^a model named mine is already in {tmp_path} \(mine\.safetensors, "
                                          r"mine\.json\): save it under another name, or pass overwrite=True to replace it$")):
        save_model(model, "mine", {"description": "other"}, tmp_path)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    (tmp_path / "mine.safetensors").unlink()  # either file is enough
    with pytest.raises(ValueError, match=r"\(mine\.json\)"):
        save_model(model, "mine", {"description": "other"}, tmp_path)
    save_model(model, "mine", {"description": "other"}, tmp_path, overwrite=True)
    assert load_card("mine", tmp_path)["description"] == "other"


@pytest.mark.parametrize("name", ["../escape", "a/b", "a\\b", "", "..", ".hidden", "x.replay", "a b", "-x", "é", "x" * 101])
def test_save_model_refuses_a_name_that_is_not_a_file_name(tmp_path, name) -> None:
    """``../escape`` was written outside the directory, ``a/b`` into a subfolder that list_models never lists."""
    (tmp_path / "zoo").mkdir()
    model = STClassifier(ModelConfig("r", (28, 28)))
    with pytest.raises(ValueError, match=r"cannot name a model's files: use 1 to 100 letters, digits, '-' and '_'"):
        save_model(model, name, {}, tmp_path / "zoo")
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["zoo"]
