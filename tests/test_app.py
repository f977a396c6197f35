"""app.py: every event function called directly (and its outputs run through Gradio's own
postprocessing, so a bad ``gr.update`` fails here, not in a browser), then the app launched
in-process on a free port and called through ``gradio_client`` for every public endpoint,
bad files included.

The event functions run on a tiny zoo written by ``tests/test_inference.py``'s helper (one model
per transform family, a two-head model and a CNN baseline), swapped in for the app's engine; the
launched app serves whatever the real zoo holds (the tiny one when ``models/`` is empty).
"""

from __future__ import annotations

import asyncio
import http.client
import importlib.util
import json
import os
import socket
import sys
import warnings
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "assets" / "examples"

gr = pytest.importorskip("gradio")


def _helpers():
    spec = importlib.util.spec_from_file_location("_stn_test_inference", Path(__file__).parent / "test_inference.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


HELPERS = _helpers()


@pytest.fixture(scope="module")
def tiny_zoo(tmp_path_factory) -> Path:
    return HELPERS.make_tiny_zoo(tmp_path_factory.mktemp("zoo"))


@pytest.fixture(scope="module")
def app(tiny_zoo, tmp_path_factory):
    """The app module; ``models/`` when it holds models, else the tiny zoo."""
    import stn.zoo

    os.environ.setdefault("GRADIO_TEMP_DIR", str(tmp_path_factory.mktemp("gradio")))
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    if not stn.zoo.list_models() and "app" not in sys.modules:
        os.environ["STN_MODELS"] = str(tiny_zoo)
    sys.path.insert(0, str(REPO))
    try:
        import app as module
    finally:
        sys.path.remove(str(REPO))
    return module


@pytest.fixture()
def tiny(app, tiny_zoo, monkeypatch, tmp_path):
    """The app's event functions on the tiny zoo."""
    from stn.inference import Engine

    engine = Engine(tiny_zoo, device="cpu", cache_dir=tmp_path / "sweeps")
    monkeypatch.setattr(app, "ENGINE", engine)
    monkeypatch.setattr(app, "DEFAULT", "wild-affine")
    monkeypatch.setattr(app, "DEFAULT_NOTE", "")
    return app


def digit_png(path: Path, size: int = 120, index: int = 0) -> Path:
    """A bundled MNIST test digit, dark on white, upscaled."""
    from stn.data import load_mnist

    x, _ = load_mnist("bundled", train=False)
    d = Image.fromarray((255 - x[index, 0].numpy() * 255).astype(np.uint8)).resize((size, size), Image.Resampling.BICUBIC)
    d.save(path)
    return path


def number_png(path: Path, indices: tuple[int, ...] = (0, 1)) -> Path:
    """Bundled MNIST test digits side by side, dark on white: a number."""
    from stn.data import load_mnist

    x, _ = load_mnist("bundled", train=False)
    ink = np.concatenate([np.pad(x[i, 0].numpy(), ((0, 0), (6, 6))) for i in indices], axis=1)
    Image.fromarray((255 - ink * 255).astype(np.uint8)).resize((ink.shape[1] * 5, 140), Image.Resampling.BICUBIC).save(path)
    return path


def picture_png(path: Path, model: str) -> Path:
    """A picture the tiny ``model`` reads: a digit, or for the pair model (which refuses one digit alone) a number."""
    return number_png(path) if HELPERS.TINY[model][4] > 1 else digit_png(path)


def _dependency(app, fn):
    for block_fn in app.demo.fns.values():
        if block_fn.fn is fn or getattr(block_fn.fn, "__wrapped__", None) is fn:
            return block_fn
    raise AssertionError(f"{fn.__name__} is not wired to any event")


def postprocess(app, fn, outputs):
    """Run ``outputs`` of event function ``fn`` through Gradio's postprocessing for its event."""
    from gradio.state_holder import SessionState

    block_fn = _dependency(app, fn)
    outs = list(outputs) if isinstance(outputs, tuple) else [outputs]
    outs = [dict(o) if isinstance(o, dict) else o for o in outs]  # Gradio pops keys off update dicts
    assert len(outs) == len(block_fn.outputs), f"{fn.__name__}: {len(outs)} values for {len(block_fn.outputs)} outputs"
    return asyncio.run(app.demo.postprocess_data(block_fn, outs, SessionState(app.demo)))


# --------------------------------------------------------------------------- main view


@pytest.mark.parametrize("name", list(HELPERS.TINY))
def test_predict_every_model(tiny, tmp_path, name):
    out = tiny.predict(str(picture_png(tmp_path / "d.png", name)), name)
    plot, reading, theta, answer, session = out
    assert plot["type"] == "plotly"  # as sent: the event skips Gradio's post-processing
    fig = json.loads(plot["plot"])
    assert fig["layout"]["height"] > 0 and fig["data"][0]["type"] == "heatmap"
    assert 'id="stn-summary"' in reading
    # the verdict as the JSON says it (the tiny models' random weights are mostly unsure)
    verdict = reading[reading.index("<h2>") : reading.index("</h2>")]  # the tab's first heading, under the page's h1
    assert ("is unsure: perhaps <b>" in verdict) is (not answer["sure"]) and (" reads <b>" in verdict) is answer["sure"]
    heads = tiny.ENGINE.info[name].heads if tiny.ENGINE.info[name].has_transformer else 1
    assert reading.count("<img src=\"data:image/png;base64,") == heads  # the crops, inline
    assert reading.count('class="stn-bar-row"') == 5 + (3 if name == "wild-affine" else 0)  # top 5 (+ the CNN's top 3)
    assert ('id="stn-baseline"' in reading) == (name == "wild-affine")  # the only tiny model with a CNN beside it
    assert "stn-theta" in theta
    json.dumps(out[:4])  # sent as they are: plain JSON types only
    assert answer["model"] == name and {"label", "sure", "probs", "theta"} <= set(answer)
    assert session.result.model == name
    postprocess(tiny, tiny.predict, out)


def test_predict_through_a_reader_process(tiny, tiny_zoo, tmp_path, monkeypatch):
    """With a reader process (stn.serving.ReaderPool, as `python app.py` starts on a multi-core CPU),
    predict answers as in the server's own process, errors included, and reads in its own process
    while the reader is down."""
    from stn.serving import ReaderPool

    path = str(digit_png(tmp_path / "d.png"))
    paths = {name: str(picture_png(tmp_path / f"{name}.png", name)) for name in HELPERS.TINY}
    here = {name: tiny.predict(paths[name], name) for name in HELPERS.TINY}
    pool = ReaderPool(tiny_zoo, workers=1, timeout=60)
    pool.start(wait=True)
    try:
        monkeypatch.setattr(tiny, "READER", pool)
        for name, expected in here.items():
            out = tiny.predict(paths[name], name)
            assert json.loads(out[0]["plot"]) == json.loads(expected[0]["plot"])
            assert out[1:4] == expected[1:4]
            assert out[4].result.model == name and out[4].source == paths[name] and out[4].result.reading.crops == []
        with pytest.raises(gr.Error, match="Unknown model"):
            tiny.predict(path, "nope")
        upload = _upload(Path(path))
        monkeypatch.setattr(tiny, "READER", None)
        json_here = tiny.read_api(upload, "wild-affine")
        monkeypatch.setattr(tiny, "READER", pool)
        assert tiny.read_api(upload, "wild-affine") == json_here  # the read endpoint's answer, from the reader
        blank = tmp_path / "blank.png"
        Image.new("RGB", (64, 64), "white").save(blank)
        with pytest.raises(gr.Error, match="no digit"):
            tiny.predict(str(blank), "wild-affine")
        worker = next(iter(pool._all))
        worker.process.kill()
        worker.process.wait(10)
        assert tiny.predict(path, "wild-affine")[1:4] == here["wild-affine"][1:4]  # read here meanwhile
    finally:
        pool.close()


def test_predict_errors(tiny, tmp_path):
    with pytest.raises(gr.Error, match="No image"):
        tiny.predict(None, "wild-affine")
    with pytest.raises(gr.Error, match="Unknown model"):
        tiny.predict(str(digit_png(tmp_path / "d.png")), "nope")
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    with pytest.raises(gr.Error, match="junk.png"):
        tiny.predict(str(junk), "wild-affine")
    blank = tmp_path / "blank.png"
    Image.new("RGB", (64, 64), "white").save(blank)
    with pytest.raises(gr.Error, match="no digit"):
        tiny.predict(str(blank), "wild-affine")


def _sketch(strokes: bool = True, size: int = 400) -> dict:
    layer = np.zeros((size, size, 4), dtype=np.uint8)
    if strokes:
        layer[80:320, 190:215, 3] = 255  # a "1"
        layer[80:320, 190:215, :3] = (249, 115, 22)
    composite = np.full((size, size, 4), 255, dtype=np.uint8)  # the theme's background, opaque
    return {"background": None, "layers": [layer], "composite": composite}


def _skipped(outputs) -> bool:
    import gradio as gr

    return all(isinstance(o, dict) and o == gr.skip() for o in outputs)


def test_a_clear_drops_the_wiped_drawings_reading(tiny, monkeypatch):
    """The button's and a model change's readings run beside the per-stroke ones: one of the wiped drawing
    that ends after a clear came back beside the empty pad. And a model change after a clear said the page's
    session had expired."""
    pad = tiny.Pad()
    assert tiny.predict_sketch_live(_sketch(False), "wild-affine", pad) == tiny.cleared_pad()
    assert (pad.clears, pad.clear) == (1, True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no toast: nothing was lost, the visitor wiped the pad
        changed = tiny.change_model("wild-cnn", None, pad)
    assert changed[1:] == tiny.cleared_pad() and "tiny wild-cnn" in changed[0]
    drawn = tiny.predict_sketch_live(_sketch(), "wild-affine", pad)
    assert drawn[3]["model"] == "wild-affine" and pad.clear is False

    infer = tiny._infer

    def cleared_meanwhile(image, name):  # the visitor clears the pad while this reading runs
        out = infer(image, name)
        tiny.predict_sketch_live(_sketch(False), "wild-affine", pad)
        return out

    monkeypatch.setattr(tiny, "_infer", cleared_meanwhile)
    assert _skipped(tiny.predict_sketch(_sketch(), "wild-affine", pad))
    assert pad.clear is True  # the late reading did not mark the pad as drawn on
    changed = tiny.change_model("wild-cnn", drawn[-1], pad)
    assert "tiny wild-cnn" in changed[0] and _skipped(changed[1:])
    assert _skipped(tiny.predict_sketch_live(_sketch(), "wild-affine", pad))
    monkeypatch.setattr(tiny, "_infer", infer)
    assert tiny.predict_sketch(_sketch(), "wild-affine", pad)[3]["model"] == "wild-affine"  # and then reads again


def test_sketch(tiny):
    with pytest.raises(gr.Error, match="empty"):
        tiny.sketch_image(_sketch(False))
    with pytest.raises(gr.Error, match="empty"):
        tiny.sketch_image(None)
    img = tiny.sketch_image(_sketch())
    assert img.mode == "RGBA" and np.asarray(img)[..., 3].max() == 255
    out = tiny.predict_sketch(_sketch(), "wild-affine")
    assert out[3]["model"] == "wild-affine"
    postprocess(tiny, tiny.predict_sketch, out)
    # "Clear canvas" sends the empty pad: the wiped drawing's reading and its session go with it
    live = tiny.predict_sketch_live(_sketch(False), "wild-affine")
    assert live == tiny.cleared_pad() and len(live) == 5
    assert live[0] is None and live[-1] is None and "pad is clear" in live[1] and live[3] is None
    postprocess(tiny, tiny.predict_sketch_live, live)
    drawn = tiny.predict_sketch_live(_sketch(), "wild-affine")
    assert drawn[3]["model"] == "wild-affine" and drawn[-1] is not None


def test_change_model(tiny, tmp_path):
    session = tiny.predict(str(digit_png(tmp_path / "d.png")), "wild-affine")[-1]
    out = tiny.change_model("tc-attention", session)
    assert "tiny tc-attention" in out[0] and out[-1].result.model == "tc-attention"
    assert out[-2]["transform"] == "attention"
    postprocess(tiny, tiny.change_model, out)
    empty = tiny.change_model("e-tps", None)
    postprocess(tiny, tiny.change_model, empty)


def test_examples_cover_every_model(app):
    shown = {m for _, m in app.EXAMPLES}
    assert shown == set(app.ENGINE.names) or not (EXAMPLES / "examples.json").exists()
    for path, model in app.EXAMPLES:
        assert Path(path).is_file() and Path(path).parent == EXAMPLES
    kinds = {Path(p).name.split("-")[0] for p, _ in app.EXAMPLES}
    if app.ENGINE.models_for("wild"):
        assert {"photo", "sketch"} <= kinds
    # each caption says what the picture is and which model reads it ("same · e-affine" said neither), short
    # enough for three columns on a phone
    for _, model, caption in app.EXAMPLE_ROWS:
        digit, what, name = caption.split(" · ")
        assert digit.isdigit() and what and name == model and len(caption) <= 40, caption


def test_a_refusal_stays_until_closed():
    """The views a refusal empties say "the message at the top of the page says why": its toast stays until it is
    closed (a 10 s toast was gone before a slow reader had read it)."""
    from webui.refusal import refusal

    err = refusal("There is no such example.")
    assert err.duration is None and err.message == "There is no such example." and not err.print_exception


def test_live_regions_are_marked_on_the_page(app):
    """The reading's verdict under the pad is a polite live region, set by the page's head script (Gradio has no
    attribute for it); not the live training's status line, which changes twice a second. The crops of the teaching
    tabs have a text alternative."""
    assert set(app.LIVE_REGIONS) == {"#stn-verdict-mini"}
    assert app.LIVE_REGIONS_JS in app.LAUNCH_KWARGS["head"] and "'role', 'status'" in app.LIVE_REGIONS_JS
    ids = {b.elem_id: b for b in app.demo.blocks.values() if getattr(b, "elem_id", None)}
    assert {"stn-verdict-mini", "watch-live-status"} <= set(ids)
    for crop in ("pg-crop", "kn-crop", "inv-crop", "watch-crops", "watch-live-crops"):
        assert ids[crop].alt_text, crop


def test_load_example_and_initial_view(app):
    if not app.EXAMPLES:
        pytest.skip("no models, so no examples")
    evt = gr.SelectData(None, {"index": 0, "value": None})
    out = app.load_example(evt)
    assert out[0] == app.EXAMPLES[0][0] and out[1] == app.EXAMPLES[0][1]
    postprocess(app, app.load_example, out)
    # sent as Gradio sends it (it pops keys off update dicts): the cache must not lose the baseline
    from gradio.state_holder import SessionState

    asyncio.run(app.demo.postprocess_data(_dependency(app, app.load_example), list(out), SessionState(app.demo)))
    again = app.load_example(evt)
    assert again[3] is out[3]  # cached: the same figure, computed once
    if app.ENGINE.info[out[1]].baseline:
        assert 'id="stn-baseline"' in again[4]
    init = app.initial_view()
    postprocess(app, app.initial_view, init)
    with pytest.raises(gr.Error):
        app.load_example(gr.SelectData(None, {"index": 999, "value": None}))


def test_every_example_predicts(app):
    for i, (path, model) in enumerate(app.EXAMPLES):
        out = app.example_outputs(i)
        assert out[3]["model"] == model, path


# --------------------------------------------------------------------------- θ playground


@pytest.mark.parametrize("name", list(HELPERS.TINY))
def test_playground(tiny, tmp_path, name):
    session = tiny.predict(str(picture_png(tmp_path / "d.png", name)), name)[-1]
    reset = tiny.playground_reset(session)
    postprocess(tiny, tiny.playground_reset, reset)
    info = session.result.info
    if info.transform is None:
        assert "plain CNN" in reset[0]["value"]
        return
    params = reset[1]
    sliders = {s: reset[2 + i] for i, s in enumerate(tiny.PG_SLIDERS)}
    vis = tiny._pg_visibility(info.transform)
    assert all(sliders[s]["visible"] == vis[s] for s in tiny.PG_SLIDERS)
    if info.transform == "affine":
        assert sliders["rotation"]["value"] == pytest.approx(30 if name == "wild-affine" else 0, abs=0.01)
    vals = {s: sliders[s]["value"] for s in tiny.PG_SLIDERS}
    cx, cy = reset[11]["value"], reset[12]["value"]
    # the predicted θ, unchanged, reads what the model read
    same = tiny.playground_update(session, params, "head 1", *vals.values(), 1, cx, cy)
    assert next(iter(same[4])) == next(iter(reset[16]))
    np.testing.assert_allclose(same[1][0], params[0], atol=2e-3)
    head = "head 2" if info.heads > 1 else "head 1"
    k = 1 if info.heads > 1 else 0
    if info.transform == "tps":
        moved = tiny.playground_update(session, params, head, *vals.values(), 1, cx + 0.3, cy)
        assert moved[1][0][0] == pytest.approx(cx + 0.3)
    else:
        vals["scale_x"] = 1.5
        moved = tiny.playground_update(session, params, head, *vals.values(), 1, cx, cy)
    assert not np.allclose(moved[1][k], params[k])
    if info.heads > 1:
        np.testing.assert_allclose(moved[1][0], params[0])  # the other head keeps its θ
    postprocess(tiny, tiny.playground_update, moved)
    sel = tiny.playground_select(session, moved[1], head, 2)
    postprocess(tiny, tiny.playground_select, sel)
    ident = tiny.playground_identity(session, head)
    postprocess(tiny, tiny.playground_identity, ident)
    assert np.allclose(ident[11][k], tiny.ENGINE.transform(name).identity(1)[0].numpy())


def test_playground_without_session(tiny):
    postprocess(tiny, tiny.playground_reset, tiny.playground_reset(None))
    postprocess(tiny, tiny.playground_update, tiny.playground_update(None, None, None, 0, 1, 1, 0, 0, 0, 0, 0, 1, 0, 0))
    postprocess(tiny, tiny.playground_identity, tiny.playground_identity(None, None))


# --------------------------------------------------------------------------- sampling kernel


@pytest.mark.parametrize("name", ["wild-affine", "pair-affine", "e-tps", "wild-cnn"])
def test_kernel(tiny, tmp_path, name):
    session = tiny.predict(str(picture_png(tmp_path / "d.png", name)), name)[-1]
    reset = tiny.kernel_reset(session)
    postprocess(tiny, tiny.kernel_reset, reset)
    if session.result.info.transform is None:
        assert "plain CNN" in reset[-1]
        return
    assert reset[0]["value"] == 14 and reset[0]["maximum"] == 27
    for mode in ("bilinear", "nearest"):
        _, _, formula = tiny.kernel_view(session, "head 1", mode, 3, 20)
        assert "row 3, col 20" in formula and ("eq. 5" in formula if mode == "bilinear" else "eq. 4" in formula)
        value = float(formula.split("The crop's pixel holds **")[1].split("**")[0])
        crop = tiny.ENGINE.warp(name, session.result.input, session.result.reading.params[0], mode)
        assert value == pytest.approx(float(crop[3, 20]), abs=1e-3)
        image = tiny.kernel_view(session, "head 1", mode, 3, 20)[1]  # the crop's text alternative names the pixel
        assert f"({mode} kernel), output pixel row 3, column 20" in image["alt_text"] and f"{value:.3f}" in image["alt_text"]
    f = max(1, round(tiny.KN_TARGET / 28))
    evt = gr.SelectData(None, {"index": [tiny.KN_BORDER + 20 * f + 1, tiny.KN_BORDER + 3 * f + 1], "value": None})
    click = tiny.kernel_click(session, "head 1", "bilinear", evt)
    assert click[0]["value"] == 3 and click[1]["value"] == 20
    postprocess(tiny, tiny.kernel_click, click)


def test_kernel_without_session(tiny):
    postprocess(tiny, tiny.kernel_reset, tiny.kernel_reset(None))


# --------------------------------------------------------------------------- invariance


def test_invariance(tiny, tmp_path):
    session = tiny.predict(str(digit_png(tmp_path / "d.png")), "wild-affine")[-1]
    reset = tiny.invariance_reset(session)
    postprocess(tiny, tiny.invariance_reset, reset)
    sweep = reset[4]
    assert sweep["angles"] == list(tiny.SWEEP_ANGLES) and len(sweep["recovered"]) == len(tiny.SWEEP_ANGLES)
    view = tiny.invariance_view(session, 45, 0.8, 3, -2, sweep)
    postprocess(tiny, tiny.invariance_view, view)
    assert "turned" in view[3] and "+45°" in view[3]
    chart = json.loads(view[4].plot)
    assert any(s.get("x0") == 45 for s in chart["layout"]["shapes"])
    plot, note = tiny.accuracy_chart(session)
    names = [t["name"] for t in json.loads(plot.plot)["data"]]
    assert names == ["wild-affine (ST-CNN)", "wild-cnn (plain CNN)"] and "test digits" in note
    postprocess(tiny, tiny.accuracy_chart_now, tiny.accuracy_chart_now(session))
    postprocess(tiny, tiny.invariance_reset, tiny.invariance_reset(None))
    cnn = tiny.predict(str(digit_png(tmp_path / "d.png")), "wild-cnn")[-1]
    postprocess(tiny, tiny.invariance_reset, tiny.invariance_reset(cnn))


def test_model_notes_end_their_sentences_once(app):
    """Some cards end their description with a full stop: the note under the selector read "classifier.. Compared"."""
    for name in app.ENGINE.names:
        assert ".." not in app.model_note(name).replace("...", ""), name


def test_a_plain_cnn_is_named_and_offered_no_dead_controls(tiny, tmp_path):
    """A plain CNN's reading: the Invariance tab says the plain CNN reads (it said "The transformer reads"), and the
    teaching tabs' controls that need a transformer (or any reading) are hidden, not left to do nothing."""
    cnn = tiny.predict(str(digit_png(tmp_path / "d.png")), "wild-cnn")[-1]
    view = tiny.invariance_view(cnn, 30, 1.0, 0, 0)
    postprocess(tiny, tiny.invariance_view, view)
    assert view[3].startswith("## The plain CNN reads") and view[2]["label"] == "The plain CNN reads"
    st = tiny.predict(str(digit_png(tmp_path / "d.png")), "wild-affine")[-1]
    view = tiny.invariance_view(st, 30, 1.0, 0, 0)
    assert view[3].startswith("## The transformer reads") and view[2]["label"] == "The transformer reads"
    for session, shown in ((None, False), (cnn, False), (st, True)):
        out = tiny.teaching_controls(session)
        postprocess(tiny, tiny.teaching_controls, out)
        assert all(u["visible"] is shown for u in out)
    wired = _dependency(tiny, tiny.teaching_controls)
    assert {tiny.pg_back._id, tiny.pg_ident._id, tiny.kn_row._id, tiny.acc_btn._id} <= {b._id for b in wired.outputs}
    assert [t[0] for t in wired.targets] == [tiny.session._id]  # (block id, event name): on each new reading


def test_invariance_says_what_the_transformer_does_with_a_turn(tiny, tmp_path, monkeypatch):
    """The tiny models' θ ignores the input: the verdict says the grid barely turns (on this picture
    until the test digits' sweep is ready, then on them) and offers the zoo's upright model, whose
    button reads the same picture with it."""
    monkeypatch.setattr(tiny, "UPRIGHT_MODELS", ("p-projective",))
    session = tiny.predict(str(digit_png(tmp_path / "d.png")), "wild-affine")[-1]
    reset = tiny.invariance_reset(session)
    postprocess(tiny, tiny.invariance_reset, reset)
    verdict, offer = reset[-2], reset[-1]
    assert "`wild-affine` barely turns its grid** (0% of the turn, on this picture turned up to ±90°)" in verdict
    assert "`p-projective`" in verdict and offer["visible"] is True and offer["value"] == "Read this picture with p-projective"
    tiny.ENGINE.accuracy_sweep("wild-affine")  # as the button computes it
    verdict, offer = tiny.invariance_verdict(session, reset[4])
    postprocess(tiny, tiny.invariance_verdict, (verdict, offer))
    assert "(0% of the turn, on 96 test digits turned up to ±90°)" in verdict and "On this picture: 0%." in verdict
    out = tiny.read_with_upright(session)
    postprocess(tiny, tiny.read_with_upright, out)
    assert out[0] == "p-projective" and out[-1].result.model == "p-projective"
    assert out[-1].source == session.source  # the same picture, read again
    reset = tiny.invariance_reset(out[-1])  # the upright model itself: no offer
    assert reset[-1]["visible"] is False
    monkeypatch.setattr(tiny, "UPRIGHT_MODELS", ())  # not in the zoo: nothing offered
    reset = tiny.invariance_reset(session)
    assert reset[-1]["visible"] is False and "was trained with a classifier" not in reset[-2]
    for name, phrase in (("p-projective", "trained on digits that are not turned"), ("e-tps", "trained on digits that are not turned"),
                         ("tc-attention", "cannot turn its grid")):
        other = tiny.predict(str(digit_png(tmp_path / "d.png")), name)[-1]
        assert phrase in tiny.invariance_reset(other)[-2], name
    cnn = tiny.predict(str(digit_png(tmp_path / "d.png")), "wild-cnn")[-1]
    assert "has no transformer" in tiny.invariance_reset(cnn)[-2]
    assert tiny.upright_model_for("r") is None
    monkeypatch.setattr(tiny, "UPRIGHT_MODELS", ("rts-affine-upright", "r-affine-upright"))
    assert [tiny.upright_model_for(d) for d in ("r", "rts", "wild")] == ["r-affine-upright", "rts-affine-upright", "rts-affine-upright"]


# --------------------------------------------------------------------------- about, config


def test_about_and_config(app):
    html = app.cards_html()
    for name in app.ENGINE.names:
        assert f"<b>{name}</b>" in html
    # a fine-tuned model's training is its whole history, then its last run (not the last run alone)
    tuned = {"epochs": 20.0, "total_epochs": 80.0, "steps": 9360, "train_seconds": 2888.0}
    assert app._training_cell(tuned) == "80 epochs in all (the last run: 20 epochs, 9360 steps, 2888 s)"
    assert app._training_cell({"epochs": 10.0, "steps": 4680, "train_seconds": 529.4}) == "10 epochs, 4680 steps, 529 s"
    assert ", 1 threads" not in html
    assert app.demo._queue.default_concurrency_limit == app.CONCURRENCY >= 2
    assert app.LAUNCH_KWARGS["max_file_size"] and app.LAUNCH_KWARGS["allowed_paths"] == [str(REPO / "assets" / "examples")]
    assert not {"server_name", "server_port"} & set(app.LAUNCH_KWARGS)  # GRADIO_SERVER_NAME/PORT decide
    first, second = app.launch_kwargs(), app.launch_kwargs()  # Gradio writes into app_kwargs at each launch
    assert first["app_kwargs"] is not second["app_kwargs"] and first["max_file_size"] == app.LAUNCH_KWARGS["max_file_size"]
    assert [m.cls.__name__ for m in first["app_kwargs"]["middleware"]] == ["UploadSpace", "RequestShape", "ReadAhead", "CompressPage"]
    assert callable(app.main) and app.gpu(len) is len  # no `spaces` here: the ZeroGPU wrapper is a no-op
    titles = [b.label for b in app.demo.blocks.values() if isinstance(b, gr.Tab)]
    order = [t for t in titles if t in ("Read a digit", "θ playground", "Sampling kernel", "Invariance", "Watch it learn", "About")]
    assert order[:4] == ["Read a digit", "θ playground", "Sampling kernel", "Invariance"] and order[-1] == "About"


# --------------------------------------------------------------------------- through gradio_client


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def client(app):
    from gradio_client import Client

    port = _free_port()
    _, url, _ = app.demo.launch(prevent_thread_lock=True, quiet=True, server_name="127.0.0.1", server_port=port, **app.launch_kwargs())
    c = Client(url, verbose=False)
    try:
        yield c, port
    finally:
        app.demo.close()


def _answer(result) -> dict:
    return next(o for o in result if isinstance(o, dict) and "label" in o and "theta" in o)


@pytest.mark.slow
def test_client_endpoints(app, client):
    c, _ = client
    api = c.view_api(return_format="dict")["named_endpoints"]
    assert {"/predict", "/models"} <= set(api)
    assert [p["parameter_name"] for p in api["/predict"]["parameters"]] == ["image", "model"]
    models = c.predict(api_name="/models")
    assert [m["name"] for m in models] == app.ENGINE.names


@pytest.mark.slow
def test_client_predicts_every_model(app, client, tmp_path):
    from gradio_client import handle_file

    c, _ = client
    for path, model in app.EXAMPLES:
        answer = _answer(c.predict(handle_file(path), model, api_name="/predict"))
        assert answer["model"] == model and isinstance(answer["label"], str)
        assert len(answer["theta"]) == app.ENGINE.info[model].heads * bool(app.ENGINE.info[model].transform)
        assert answer["probs"] and all(0 <= p <= 1 for p in answer["probs"].values())


def _odd_files(tmp_path: Path) -> dict[str, Path]:
    """Readable digits in odd containers."""
    base = Image.open(digit_png(tmp_path / "base.png", 96, 3)).convert("L")
    files = {}
    p = tmp_path / "grey16.png"
    Image.fromarray(np.asarray(base, dtype=np.uint16) * 257).save(p)
    files["16-bit"] = p
    p = tmp_path / "cmyk.jpg"
    base.convert("CMYK").save(p)
    files["CMYK"] = p
    p = tmp_path / "palette.png"
    base.convert("P").save(p)
    files["palette"] = p
    p = tmp_path / "anim.gif"
    base.save(p, save_all=True, append_images=[base.rotate(20)], duration=100, loop=0)
    files["animated"] = p
    return files


def _bad_files(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    files = {}
    p = tmp_path / "notes.txt"
    p.write_text("hello")
    files["text"] = (p, "not an image format")
    p = tmp_path / "empty.png"
    p.write_bytes(b"")
    files["empty"] = (p, "empty")
    good = (tmp_path / "good.png")
    digit_png(good)
    p = tmp_path / "cut.png"
    p.write_bytes(good.read_bytes()[:200])
    files["truncated"] = (p, "damaged or truncated|not an image")
    p = tmp_path / "blank.png"
    Image.new("L", (80, 80), 250).save(p)
    files["blank"] = (p, "no digit")
    p = tmp_path / "big.png"
    Image.new("1", (9000, 9000), 1).save(p)  # small file, 81 megapixels
    files["too many pixels"] = (p, "too large|too many pixels")
    p = tmp_path / "huge.bin.png"
    p.write_bytes(os.urandom(11 * 2**20))
    files["over the size limit"] = (p, "limit|too large|maximum|size")
    p = tmp_path / "drawing.svg"
    p.write_text('<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>')
    files["svg"] = (p, "svg")
    return files


@pytest.mark.slow
def test_client_odd_and_bad_files(app, client, tmp_path):
    from gradio_client import handle_file

    c, _ = client
    model = app.DEFAULT
    for kind, path in _odd_files(tmp_path).items():
        answer = _answer(c.predict(handle_file(str(path)), model, api_name="/predict"))
        assert answer["label"], kind
    for kind, (path, phrase) in _bad_files(tmp_path).items():
        with pytest.raises(Exception) as info:
            c.predict(handle_file(str(path)), model, api_name="/predict")
        message = str(info.value)
        assert "Traceback" not in message, kind
        import re

        assert re.search(phrase, message.lower()), f"{kind}: {message!r}"
    # the server keeps serving
    good = digit_png(tmp_path / "after.png")
    assert _answer(c.predict(handle_file(str(good)), model, api_name="/predict"))["model"] == model


@pytest.mark.slow
def test_client_unknown_model(app, client, tmp_path):
    from gradio_client import handle_file

    c, _ = client
    with pytest.raises(Exception, match="nope"):
        c.predict(handle_file(str(digit_png(tmp_path / "d.png"))), "nope", api_name="/predict")


def _get(port: int, path: str) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("GET", path)
        return conn.getresponse().status
    finally:
        conn.close()


@pytest.mark.slow
def test_only_assets_and_cache_are_served(app, client):
    _, port = client
    for target in (REPO / "app.py", REPO / "stn" / "zoo.py", REPO / "models", REPO / "assets" / "make_examples.py",
                   REPO / "assets" / "mnist-subset.npz"):
        assert _get(port, "/gradio_api/file=" + quote(str(target))) in (403, 404), target
    example = next(EXAMPLES.glob("*.png"))
    assert _get(port, "/gradio_api/file=" + quote(str(example))) == 200


# --------------------------------------------------------------------------- sessions, memory, the cache


def test_launch_bounds_memory_and_disk(app):
    """Gradio keeps a bounded number of sessions and deletes old cache files (issue 7: RSS and disk)."""
    cap = app.LAUNCH_KWARGS["state_session_capacity"]
    assert cap == app.SESSION_CAPACITY and 8 <= cap <= 256  # not Gradio's 10,000
    every, age = app.demo.delete_cache
    assert 0 < every <= age and age >= 600  # a file lives long enough to be fetched and re-read


def test_session_keeps_only_what_the_tabs_use(tiny, tmp_path):
    out = tiny.predict(str(digit_png(tmp_path / "d.png")), "wild-affine")
    session = out[-1]
    assert session.source == str(tmp_path / "d.png")
    res = session.result
    assert res.reading.crops == [] and res.baseline is None and res.prepared is None
    assert res.reading.params and res.input.shape == tuple(res.info.input_size)
    assert out[3]["baseline"] is not None  # the view still shows the baseline: only the session is lean
    # a sketch is kept as its compressed ink, and re-reading it with another model equals reading the drawing
    sketch = tiny.predict_sketch(_sketch(), "wild-affine")[-1]
    assert isinstance(sketch.source, tiny.Drawing) and len(sketch.source.alpha) < 20_000
    assert sketch.picture().tobytes() == tiny.sketch_image(_sketch()).tobytes()
    changed = tiny.change_model("wild-cnn", sketch)
    direct = tiny.predict_sketch(_sketch(), "wild-cnn")
    assert changed[-2] == direct[3]


def _warns_gone():
    return pytest.warns(UserWarning, match="again")


def _gone(values) -> bool:
    """Whether one of the outputs tells the user to read a digit again."""
    texts = [v.get("value") if isinstance(v, dict) else v for v in values]
    return any(isinstance(t, str) and "again" in t for t in texts)


def test_teaching_tabs_after_the_session_expired(tiny, monkeypatch):
    """An evicted or expired session reaches the handlers as ``None``: a clear sentence, never a traceback."""
    evt = gr.SelectData(None, {"index": [10, 10], "value": None})
    sliders = (0, 1, 1, 0, 0, 0, 0, 0)
    calls = {
        tiny.playground_reset: (None,),
        tiny.playground_update: (None, [[1, 0, 0, 0, 1, 0]], "head 1", *sliders, 1, 0, 0),
        tiny.playground_identity: (None, "head 1"),
        tiny.kernel_reset: (None,),
        tiny.kernel_view: (None, "head 1", "bilinear", 3, 4),
        tiny.kernel_click: (None, "head 1", "bilinear", evt),
        tiny.invariance_reset: (None,),
        tiny.invariance_view: (None, 30, 1.0, 0, 0, None),
        tiny.accuracy_chart_now: (None,),
    }
    for fn, args in calls.items():
        out = fn(*args)
        assert _gone(out), fn.__name__
        postprocess(tiny, fn, out)
    with _warns_gone():  # no text output here: a toast says it
        sel = tiny.playground_select(None, None, "head 1", 1)
    postprocess(tiny, tiny.playground_select, sel)
    with _warns_gone():
        changed = tiny.change_model("wild-cnn", None)
    assert "tiny wild-cnn" in changed[0]
    # the last model's reading is not left under the new model's name: the views are emptied
    assert changed[1:] == (*tiny.cleared_views(), None)
    postprocess(tiny, tiny.change_model, changed)
    monkeypatch.setattr(tiny, "UPRIGHT_MODELS", ())  # none in the zoo: an old page's click changes nothing
    postprocess(tiny, tiny.read_with_upright, tiny.read_with_upright(None))
    monkeypatch.setattr(tiny, "UPRIGHT_MODELS", ("p-projective",))
    with _warns_gone():
        up = tiny.read_with_upright(None)
    assert up[0] == "p-projective"
    postprocess(tiny, tiny.read_with_upright, up)
    postprocess(tiny, tiny.invariance_verdict, tiny.invariance_verdict(None, None))


def test_a_refusal_drops_the_reading_before_it(tiny, tmp_path):
    """A refused picture empties the views and drops the session: a model change then reads the refused picture
    again (the pair model reads a number), not the one read before it (it read "3" beside a "42" once)."""
    session = tiny.predict(str(digit_png(tmp_path / "d.png")), "wild-affine")[-1]
    number = str(number_png(tmp_path / "n.png"))
    with pytest.raises(gr.Error, match="several characters"):
        tiny.predict(number, "wild-affine")
    refused = tiny.Refused()
    out = tiny.refused_upload(number, refused)
    assert out == (*tiny.cleared_views(), None) and refused.source == number
    postprocess(tiny, tiny.refused_upload, out)
    for fn in (tiny.predict, tiny.predict_sketch, tiny.predict_sketch_live, tiny.change_model):  # every read is wired so
        after = [d for d in tiny.demo.fns.values() if d.trigger_after == _dependency(tiny, fn)._id and d.trigger_only_on_failure]
        assert len(after) == 1 and tiny.session in [b for b in after[0].outputs], fn.__name__
    with pytest.raises(gr.Error, match="several characters"):  # another one-digit model refuses it too
        tiny.change_model("wild-cnn", None, None, refused)
    assert tiny.refused_by_model(None, refused) == (*tiny.cleared_views(), None) and refused.source == number
    out = tiny.change_model("pair-affine", None, None, refused)  # the pair model reads it: the number's reading
    assert out[-1].source == number and out[-1].result.model == "pair-affine" and refused.source is None
    postprocess(tiny, tiny.change_model, out)
    assert tiny.change_model("wild-affine", session)[-1].source == session.source  # no refusal: as before
    sketch = {"background": None, "layers": [np.zeros((40, 40, 4), np.uint8)], "composite": None}
    sketch["layers"][0][5:35, 18:22, 3] = 255
    tiny.refused_sketch(sketch, refused)
    assert isinstance(refused.source, tiny.Drawing)
    tiny.refused_sketch(None, refused)  # an empty pad: nothing to read again
    assert refused.source is None


def test_change_model_after_the_upload_was_deleted(tiny, tmp_path):
    path = digit_png(tmp_path / "d.png")
    session = tiny.predict(str(path), "wild-affine")[-1]
    path.unlink()  # Gradio's delete_cache removed it
    with pytest.raises(gr.Error, match="no longer on the server"):
        tiny.change_model("wild-cnn", session)


# --------------------------------------------------------------------------- the read endpoint


def _upload(path: Path) -> dict:
    """``path`` copied into Gradio's upload folder, as ``/gradio_api/upload`` would store it."""
    from gradio.processing_utils import get_upload_folder

    folder = Path(get_upload_folder()) / "test-read"
    folder.mkdir(parents=True, exist_ok=True)
    dest = folder / path.name
    dest.write_bytes(path.read_bytes())
    return {"path": str(dest), "orig_name": path.name, "meta": {"_type": "gradio.FileData"}}


def test_predict_takes_the_raw_upload(tiny, tmp_path):
    """predict's event skips Gradio's pre-processing: the image arrives as the upload's payload."""
    src = digit_png(tmp_path / "d.png")
    by_path = tiny.predict(str(src), "wild-affine")
    by_payload = tiny.predict(_upload(src), "wild-affine")
    assert by_payload[3] == by_path[3] and by_payload[1] == by_path[1]
    for junk in (12, {"path": ["not", "a", "path"]}, {"nothing": "here"}):
        with pytest.raises(gr.Error, match="not an image"):
            tiny.predict(junk, "wild-affine")


def test_read_api(tiny, tmp_path):
    src = digit_png(tmp_path / "d.png")
    for name in ("wild-affine", "pair-affine", "wild-cnn"):
        pic = picture_png(tmp_path / f"{name}.png", name)
        answer = tiny.read_api(_upload(pic), name)
        assert answer == tiny.predict(str(pic), name)[3]  # predict's JSON, without the figures
    assert tiny.read_api(_upload(src))["model"] == "wild-affine"  # the default model
    assert tiny.read_api(_upload(src)["path"], None)["label"]  # a bare path is accepted too
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    blank = tmp_path / "blank.png"
    Image.new("RGB", (64, 64), "white").save(blank)
    refused = {
        "No image": None,
        "junk.png": _upload(junk),
        "no digit": _upload(blank),
        "Unknown model": (_upload(src), "nope"),
        "not uploaded to this server": {"path": str(src), "meta": {"_type": "gradio.FileData"}},
        "not a URL": {"path": "https://example.com/d.png", "url": "https://example.com/d.png"},
    }
    for phrase, value in refused.items():
        args = value if isinstance(value, tuple) else (value, "wild-affine")
        with pytest.raises(gr.Error, match=phrase):
            tiny.read_api(*args)
    with pytest.raises(gr.Error, match="not uploaded"):
        tiny.read_api({"path": _upload(src)["path"] + "/../../../../../../etc/passwd"}, "wild-affine")


def _rest(port: int, api_name: str, data: list, session_hash: str | None = None) -> tuple[str, object]:
    """One call over Gradio's plain REST API, as curl (and bench/load.py) make it: (event, data)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        body = {"data": data} | ({"session_hash": session_hash} if session_hash else {})
        conn.request("POST", f"/gradio_api/call/{api_name}", json.dumps(body), {"Content-Type": "application/json"})
        resp = conn.getresponse()
        assert resp.status == 200, resp.read()
        event_id = json.loads(resp.read())["event_id"]
        conn.request("GET", f"/gradio_api/call/{api_name}/{event_id}")
        stream = conn.getresponse().read().decode()
    finally:
        conn.close()
    event = None
    for line in stream.splitlines():
        if line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:") and event in ("complete", "error"):
            return event, json.loads(line[5:].strip())
    raise AssertionError(f"no complete or error event: {stream[:300]!r}")


def _rest_upload(port: int, path: Path) -> dict:
    import uuid

    boundary = uuid.uuid4().hex
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="{path.name}"\r\n'
            f"Content-Type: application/octet-stream\r\n\r\n").encode() + path.read_bytes() + f"\r\n--{boundary}--\r\n".encode()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request("POST", "/gradio_api/upload", body, {"Content-Type": f"multipart/form-data; boundary={boundary}"})
        resp = conn.getresponse()
        assert resp.status == 200
        server_path = json.loads(resp.read())[0]
    finally:
        conn.close()
    return {"path": server_path, "orig_name": path.name, "meta": {"_type": "gradio.FileData"}}


@pytest.mark.slow
def test_client_read(app, client, tmp_path):
    from gradio_client import handle_file

    c, _ = client
    api = c.view_api(return_format="dict")["named_endpoints"]
    assert [p["parameter_name"] for p in api["/read"]["parameters"]] == ["image", "model"]
    path, model = app.EXAMPLES[0] if app.EXAMPLES else (str(digit_png(tmp_path / "d.png")), app.DEFAULT)
    answer = c.predict(handle_file(path), model, api_name="/read")
    assert answer == _answer(c.predict(handle_file(path), model, api_name="/predict"))
    assert {"label", "probs", "theta", "model"} <= set(answer) and answer["model"] == model
    assert c.predict(image=handle_file(path), api_name="/read")["model"] == app.DEFAULT
    blank = tmp_path / "blank.png"
    Image.new("L", (80, 80), 250).save(blank)
    with pytest.raises(Exception, match="no digit") as info:
        c.predict(handle_file(str(blank)), model, api_name="/read")
    assert "Traceback" not in str(info.value)


@pytest.mark.slow
def test_rest_read_refuses_paths_not_uploaded(app, client, tmp_path):
    from webui.guard import NOT_UPLOADED

    _, port = client
    good = digit_png(tmp_path / "d.png")
    event, data = _rest(port, "read", [_rest_upload(port, good), None])
    assert event == "complete" and data[0]["model"] == app.DEFAULT
    for path in ("/etc/passwd", str(REPO / "app.py"), str(good)):
        for api in ("read", "predict"):
            event, data = _rest(port, api, [{"path": path, "meta": {"_type": "gradio.FileData"}}, None])
            assert event == "error" and "root:" not in json.dumps(data), path
            assert data["error"] == NOT_UPLOADED, (api, path, data)  # the app's sentence, not {"error": null}


@pytest.mark.slow
def test_rest_requests_get_a_sentence_and_nothing_is_fetched(app, client, tmp_path, monkeypatch):
    """Gradio downloads a file whose path is a web address before the app runs: refused first, with the
    app's sentence; ``read`` and ``predict`` take the image alone (the default model); a request that
    does not fit an endpoint, or a model that is not a name, is told so."""
    import gradio.processing_utils

    from webui.guard import NOT_A_URL

    fetched = []

    async def no_download(url, *args, **kwargs):
        fetched.append(url)
        raise AssertionError(f"the server fetched {url}")

    monkeypatch.setattr(gradio.processing_utils, "async_ssrf_protected_download", no_download)
    _, port = client
    good = _rest_upload(port, digit_png(tmp_path / "d.png"))
    for url in ("https://example.com/digit.png", "http://1.1.1.1/d.png", "//example.com/d.png"):
        for api in ("read", "predict"):
            event, data = _rest(port, api, [{"path": url, "url": url, "meta": {"_type": "gradio.FileData"}}, None])
            assert event == "error" and data["error"] == NOT_A_URL, (api, url, data)
    assert not fetched
    for api in ("read", "predict"):  # the image alone: the default model
        event, data = _rest(port, api, [good])
        assert event == "complete", (api, data)
        answer = next(o for o in data if isinstance(o, dict) and "label" in o)
        assert answer["model"] == app.DEFAULT
    event, data = _rest(port, "predict", [5, None])
    assert event == "error" and "does not fit the predict endpoint" in data["error"] and "/gradio_api/info" in data["error"]
    event, data = _rest(port, "read", [good, ["wild-affine"]])
    assert event == "error" and "named by a string" in data["error"] and "list" in data["error"]
    event, data = _rest(port, "read", [good, "x" * 100_000])
    assert event == "error" and "Unknown model" in data["error"] and len(data["error"]) < 2_000


@pytest.mark.slow
def test_rest_uploads_are_read_ahead(app, client, tmp_path, monkeypatch):
    """With a reader process, an upload starts being read as it lands (webui/read_ahead.py), and the
    predict (or read) call that follows takes that reading: the same answer as reading afresh. The
    Sketchpad's own uploads are not read ahead, nor anything with STN_READ_AHEAD=0."""
    import time

    from stn.serving import ReaderPool

    _, port = client
    pool = ReaderPool(app.ENGINE.directory, workers=1, timeout=60)
    pool.start(wait=True)
    stats = pool.ahead_stats

    def upload(path: Path, started: int) -> dict:
        file_data = _rest_upload(port, path)
        deadline = time.monotonic() + 60
        while stats["started"] < started or any(not f.done() for _, f in list(pool._ahead.values())):
            assert time.monotonic() < deadline, stats
            time.sleep(0.01)
        assert stats["started"] == started, stats
        return file_data

    try:
        monkeypatch.setattr(app, "READER", pool)
        monkeypatch.setattr(app, "_last_model", None)  # read ahead with the default model, as predict's None
        first = upload(digit_png(tmp_path / "d.png"), 1)
        event, data = _rest(port, "predict", [first, None])
        assert event == "complete" and stats["used"] == 1
        monkeypatch.setattr(app, "READER", None)
        fresh = app.predict(first, None)
        assert data[1:4] == list(fresh[1:4]) and json.loads(data[0]["plot"]) == json.loads(fresh[0]["plot"])
        monkeypatch.setattr(app, "READER", pool)

        second = upload(digit_png(tmp_path / "e.png", index=5), 2)
        event, data = _rest(port, "read", [second, None])
        assert event == "complete" and stats["used"] == 2 and data[0] == app.read_api(second, None)

        upload(digit_png(tmp_path / "layer_0.png", index=7), 2)  # a Sketchpad layer: not read ahead
        monkeypatch.setattr(app, "READ_AHEAD", False)
        upload(digit_png(tmp_path / "f.png", index=8), 2)
    finally:
        pool.close()


@pytest.mark.slow
def test_rest_sessions_are_bounded(app, client, tmp_path):
    """Each REST call opens a session; Gradio keeps at most the capacity, the oldest out first."""
    _, port = client
    cap = app.demo.state_holder.capacity
    assert cap == app.SESSION_CAPACITY
    upload = _rest_upload(port, digit_png(tmp_path / "d.png"))
    event, _ = _rest(port, "predict", [upload, app.DEFAULT], session_hash="tab-0")
    assert event == "complete"
    holder = app.demo.state_holder
    kept = holder.session_data["tab-0"].state_data.get(app.session._id)
    assert isinstance(kept, app.Session) and kept.result.reading.crops == []
    for _ in range(cap):
        assert _rest(port, "models", [])[0] == "complete"
    assert len(holder.session_data) <= cap and "tab-0" not in holder  # evicted: its tabs now get None
