"""webui/guard.py on a small Blocks app of its own: what a request may bring, checked before Gradio acts
on it (the app's own endpoints are checked over REST in test_app.py and test_security.py)."""

from __future__ import annotations

import asyncio

import pytest

gr = pytest.importorskip("gradio")

from webui.guard import NOT_A_URL, guard_requests


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
