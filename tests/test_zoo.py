"""Every shipped model: card complete, weights load with safetensors, predictions sane and as carded."""

from __future__ import annotations

import json

import pytest
import torch

from stn import load_model
from stn.data import get_spec
from stn.model import ModelConfig, STClassifier
from stn.zoo import UnknownModelError, list_models, load_card, models_dir, save_model

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
    save_model(model, "mine", {"description": "t", "dataset": {"name": "rts"}, "metrics": {}}, tmp_path)
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
    assert model.predict(x.float().clamp(0, 1).nan_to_num(0.0)).labels.shape == (2,)


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
