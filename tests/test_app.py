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
    out = tiny.predict(str(digit_png(tmp_path / "d.png")), name)
    summary, plot, crops, label, baseline, theta, answer, session = out
    assert "reads" in summary
    fig = json.loads(plot.plot)
    assert fig["layout"]["height"] > 0 and fig["data"][0]["type"] == "heatmap"
    assert crops.ndim == 3 and crops.shape[2] == 4 and crops.shape[0] >= 200  # large enough to see pixels
    assert len(label) == 5 and abs(sum(label.values())) <= 1.0001
    assert baseline["visible"] == (name == "wild-affine")
    assert "stn-theta" in theta
    assert answer["model"] == name and {"label", "probs", "theta"} <= set(answer)
    assert session.result.model == name
    postprocess(tiny, tiny.predict, out)


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


def test_sketch(tiny):
    with pytest.raises(gr.Error, match="empty"):
        tiny.sketch_image(_sketch(False))
    with pytest.raises(gr.Error, match="empty"):
        tiny.sketch_image(None)
    img = tiny.sketch_image(_sketch())
    assert img.mode == "RGBA" and np.asarray(img)[..., 3].max() == 255
    out = tiny.predict_sketch(_sketch(), "wild-affine")
    assert out[6]["model"] == "wild-affine"
    postprocess(tiny, tiny.predict_sketch, out)
    live = tiny.predict_sketch_live(_sketch(False), "wild-affine")  # quietly nothing while the pad is empty
    assert len(live) == 8
    postprocess(tiny, tiny.predict_sketch_live, live)


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
    assert again[4] is out[4]  # cached: the same figure, computed once
    if app.ENGINE.info[out[1]].baseline:
        assert again[7].get("value"), again[7]
    init = app.initial_view()
    postprocess(app, app.initial_view, init)
    with pytest.raises(gr.Error):
        app.load_example(gr.SelectData(None, {"index": 999, "value": None}))


def test_every_example_predicts(app):
    for i, (path, model) in enumerate(app.EXAMPLES):
        out = app.example_outputs(i)
        assert out[6]["model"] == model, path


# --------------------------------------------------------------------------- θ playground


@pytest.mark.parametrize("name", list(HELPERS.TINY))
def test_playground(tiny, tmp_path, name):
    session = tiny.predict(str(digit_png(tmp_path / "d.png")), name)[-1]
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
    session = tiny.predict(str(digit_png(tmp_path / "d.png")), name)[-1]
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


# --------------------------------------------------------------------------- about, config


def test_about_and_config(app):
    html = app.cards_html()
    for name in app.ENGINE.names:
        assert f"<b>{name}</b>" in html
    assert app.demo._queue.default_concurrency_limit == app.CONCURRENCY >= 2
    assert app.LAUNCH_KWARGS["max_file_size"] and app.LAUNCH_KWARGS["allowed_paths"] == [str(REPO / "assets")]
    assert not {"server_name", "server_port"} & set(app.LAUNCH_KWARGS)  # GRADIO_SERVER_NAME/PORT decide
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
    _, url, _ = app.demo.launch(prevent_thread_lock=True, quiet=True, server_name="127.0.0.1", server_port=port, **app.LAUNCH_KWARGS)
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
    for target in (REPO / "app.py", REPO / "stn" / "zoo.py", REPO / "models"):
        assert _get(port, "/gradio_api/file=" + quote(str(target))) in (403, 404), target
    example = next(EXAMPLES.glob("*.png"))
    assert _get(port, "/gradio_api/file=" + quote(str(example))) == 200
