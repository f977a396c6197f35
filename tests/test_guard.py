"""webui/guard.py on a small Blocks app of its own: what a request may bring, checked before Gradio acts
on it (the app's own endpoints are checked over REST in test_app.py and test_security.py)."""

from __future__ import annotations

import asyncio

import pytest

gr = pytest.importorskip("gradio")

from webui.guard import NOT_A_URL, NOT_UPLOADED, guard_requests


def _nest(value: object, depth: int) -> object:
    for _ in range(depth):
        value = [value]
    return value


@pytest.fixture(scope="module")
def demo():
    with gr.Blocks() as blocks:
        file, number, out = gr.File(), gr.Number(), gr.Textbox()
        button = gr.Button()
        button.click(lambda f, n: "ok", [file, number], out, api_name="read")
        button.click(lambda f, n: "ok", [file, number], out, api_visibility="private")
        button.click(lambda f, n: f, [gr.Image(type="filepath"), number], out, api_name="raw", preprocess=False)
        button.click(lambda a, b: "ok", [gr.Slider(0, 10), gr.Dropdown(["a", "b"])], out, api_name="controls")
        rotation = gr.Slider(-180, 180, label="rotation of the grid (° anticlockwise)", elem_id="rotation")
        button.click(lambda a, b: "ok", [rotation, gr.Slider(0, 27, step=1, label="output row")], out,
                     api_visibility="private")
        snapshot = gr.Slider(0, 6, label="Snapshot")
        snapshot.preprocess = lambda payload: min(float(payload), 6.0)  # takes any number, as the replay's does
        button.click(lambda a: a, [snapshot], out, api_name="snapshot")
    guard_requests(blocks, optional_inputs=["read"])
    return blocks


def _run(demo, index: int, inputs: list) -> object:
    return asyncio.run(demo.preprocess_data(demo.fns[index], inputs, None))


@pytest.mark.parametrize("depth", [0, 3, 9, 40, 500])
def test_a_web_address_is_refused_at_any_depth(demo, monkeypatch, depth):
    """Gradio walks a request's files at any depth and downloads a path that is a web address: so does the check
    (it stopped at 8 levels), without recursion."""
    import gradio.processing_utils

    async def no_download(url, *args, **kwargs):
        raise AssertionError(f"the server fetched {url}")

    monkeypatch.setattr(gradio.processing_utils, "async_ssrf_protected_download", no_download)
    url = {"path": "https://example.com/d.png", "meta": {"_type": "gradio.FileData"}}
    with pytest.raises(gr.Error) as err:
        _run(demo, 0, [_nest(url, depth), 1])
    assert err.value.message == NOT_A_URL


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_nan_and_infinities_are_refused(demo, value):
    for inputs in ([None, value], [None, _nest({"a": value}, 50)]):
        with pytest.raises(gr.Error, match="NaN or infinite"):
            _run(demo, 0, inputs)


def test_missing_inputs_and_what_a_refusal_points_to(demo):
    assert _run(demo, 0, []) == [None, None]  # `read`: trailing inputs may be left out
    with pytest.raises(gr.Error, match=r"does not fit the read endpoint .*listed at /gradio_api/info"):
        _run(demo, 0, ["a path, not a file", 1])
    with pytest.raises(gr.Error, match="page's own events, not an API endpoint: reload the page") as err:
        _run(demo, 1, [])  # a private event: not padded, and not pointed to the API's list
    assert "/gradio_api/info" not in err.value.message


def test_only_uploaded_files_are_named(demo, tmp_path):
    """Gradio checks a file's path only where the request marks it as a file ("meta"): a path without the mark,
    or a bare string to an event that skips pre-processing (the app's ``predict``), read any file on the
    server and sent its pixels back. A file in the upload folder still goes through."""
    from gradio.utils import get_upload_folder

    outside = tmp_path / "d.png"
    outside.write_bytes(b"\x89PNG")
    for inputs in ([{"path": str(outside)}, 1], [str(outside), 1], ["/etc/passwd", 1], [{"path": "../../etc/passwd"}, 1],
                   [_nest({"path": "/proc/self/environ"}, 5), 1]):
        with pytest.raises(gr.Error) as err:
            _run(demo, 2, inputs)
        assert err.value.message == NOT_UPLOADED, inputs
    folder = tmp_path / "uploads"
    folder.mkdir()
    (folder / "d.png").write_bytes(b"\x89PNG")
    import os

    old = os.environ.get("GRADIO_TEMP_DIR")
    os.environ["GRADIO_TEMP_DIR"] = str(folder)
    try:
        assert str(get_upload_folder()) == str(folder)
        sent = _run(demo, 2, [{"path": str(folder / "d.png"), "meta": {"_type": "gradio.FileData"}}, 1])[0]
        assert sent["path"].endswith("d.png")  # went through (Gradio copies it into its cache)
        link = folder / "link.png"
        link.symlink_to(outside)  # a link in the folder to a file outside it
        with pytest.raises(gr.Error, match="not uploaded"):
            _run(demo, 2, [{"path": str(link)}, 1])
    finally:
        if old is None:
            os.environ.pop("GRADIO_TEMP_DIR", None)
        else:
            os.environ["GRADIO_TEMP_DIR"] = old


def test_gradios_own_checks_are_refusals_of_a_line(demo, caplog):
    """A value a control could not send (out of a slider's range, not among a dropdown's choices) was refused by
    Gradio with a traceback in the log and the value echoed back whole in a Python repr (a 1 MB string: a 1 MB
    error). Now it is the app's refusal: one line, naming the endpoint, the value cut short."""
    import logging

    assert _run(demo, 3, [5, "a"]) == [5, "a"]
    for inputs in ([1e308, "a"], [5, "abc" * 300_000], [5, {"x": 1, "path": None}]):
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="stn.app"), pytest.raises(gr.Error) as err:
            _run(demo, 3, inputs)
        assert err.value.print_exception is False and "does not fit the controls endpoint" in err.value.message
        assert len(err.value.message) < 400
        assert [r.getMessage()[:9] for r in caplog.records if r.name == "stn.app"] == ["refused ("]


def test_a_number_typed_past_a_sliders_range_names_the_slider(demo, caplog):
    """A slider's number box takes any number, and Enter sends it: 500 typed for the θ playground's rotation was
    refused as a request that "does not fit the playground_update endpoint", with advice to reload the page. On
    the page's own events it is a sentence naming the slider and its range (from the session's copy of the slider,
    which an update may have changed); a public endpoint's refusal is as before (test above)."""
    import logging

    from gradio.state_holder import SessionState

    assert _run(demo, 4, [-180, 27]) == [-180, 27]
    for inputs, said in (([500, 3], "Rotation of the grid takes values from -180 to 180."),
                         ([-180.5, 3], "Rotation of the grid takes values from -180 to 180."),
                         ([0, 28], "Output row takes values from 0 to 27.")):
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="stn.app"), pytest.raises(gr.Error) as err:
            _run(demo, 4, inputs)
        assert err.value.message == said and err.value.print_exception is False
        assert [r.getMessage() for r in caplog.records if r.name == "stn.app"] == [f"refused (Out of range): {said}"]
    state = SessionState(demo)
    rotation = demo.fns[4].inputs[0]
    state[rotation._id] = gr.Slider(-90, 90, label="tilt", render=False)  # as an update leaves it in the session
    with pytest.raises(gr.Error) as err:
        asyncio.run(demo.preprocess_data(demo.fns[4], [120, 3], state))
    assert err.value.message == "Tilt takes values from -90 to 90."


def test_a_sliders_own_preprocess_is_kept_in_the_sessions_copy(demo):
    """Gradio makes a session's copy of a control that an update changed from its class: a slider whose range check
    the app had replaced (the replay's snapshot slider) got the stock check back, refusing 500 typed into its box."""
    from gradio.state_holder import SessionState

    snapshot = demo.fns[5].inputs[0]
    state = SessionState(demo)
    state[snapshot._id] = gr.Slider(0, 3, label="Snapshot", render=False)  # as an update leaves it in the session
    assert asyncio.run(demo.preprocess_data(demo.fns[5], [500], state)) == [6.0]
    assert state[snapshot._id].maximum == 3  # the copy keeps its range for the page


def test_strokes_sent_ahead_are_bounded():
    """Gradio keeps a stroke's images, sent ahead of its reading, until a reading takes them: one whose reading
    never came (a closed page, a newer stroke read first) stayed for the server's life."""
    from webui.guard import BlobStore, bounded_sketch

    pad = bounded_sketch(gr.Sketchpad())
    assert isinstance(pad.blob_storage, BlobStore)
    store = BlobStore(limit=4)
    for i in range(10):
        store[f"stroke {i}"] = i
    assert list(store) == ["stroke 6", "stroke 7", "stroke 8", "stroke 9"]  # the oldest went first
    store["stroke 7"] = 70  # a stroke whose images come in parts is the newest at each
    store["stroke 10"] = 10
    assert list(store) == ["stroke 8", "stroke 9", "stroke 7", "stroke 10"]
    assert store.pop("stroke 10") == 10 and "stroke 10" not in store  # a reading takes its stroke


def test_a_fault_reading_a_drawing_is_logged_with_its_traceback(caplog):
    """A drawing that is not a picture is the visitor's; anything else is the server's, and is logged as such."""
    import logging

    from webui import guard

    def broken(payload):
        raise RuntimeError("the disk is full")

    stock = gr.Sketchpad()
    stock.preprocess = broken  # type: ignore[method-assign]
    wrapped = guard.bounded_sketch(stock)
    with caplog.at_level(logging.INFO, logger="stn.app"), pytest.raises(gr.Error, match="could not be read"):
        wrapped.preprocess({"background": None, "layers": [], "composite": None})
    assert any(r.levelno == logging.WARNING and r.exc_info for r in caplog.records), caplog.text

    def not_a_picture(payload):
        raise OSError("cannot identify image file")

    stock = gr.Sketchpad()
    stock.preprocess = not_a_picture  # type: ignore[method-assign]
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="stn.app"), pytest.raises(gr.Error, match="could not be read"):
        guard.bounded_sketch(stock).preprocess({"background": None, "layers": [], "composite": None})
    assert [r.levelno for r in caplog.records] == [logging.INFO] and "refused" in caplog.text
