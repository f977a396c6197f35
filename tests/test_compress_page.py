"""The page and its configuration go out gzipped; event streams and everything else as before
(``webui/compress_page.py``)."""

from __future__ import annotations

import asyncio

import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse, StreamingResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from webui.compress_page import PAGE_PATHS, CompressPage

PAGE = "<html>" + "the app's configuration " * 2000 + "</html>"  # 48 kB, like Gradio's page: compresses well


def _app(**kwargs) -> CompressPage:
    async def page(request):
        return PlainTextResponse(PAGE, media_type="text/html")

    async def stream(request):
        async def events():
            for i in range(3):
                yield f"data: {'x' * 2000} {i}\n\n"
                await asyncio.sleep(0)

        return StreamingResponse(events(), media_type="text/event-stream")

    routes = [Route(p, page) for p in ("/", "/config", "/gradio_api/info", "/other")]
    routes.append(Route("/gradio_api/queue/data", stream))
    return CompressPage(Starlette(routes=routes), **kwargs)


@pytest.mark.parametrize("path", PAGE_PATHS)
def test_the_page_is_gzipped_for_a_client_that_accepts_it(path):
    client = TestClient(_app())
    r = client.get(path, headers={"Accept-Encoding": "gzip, deflate, br"})
    assert r.headers["content-encoding"] == "gzip"
    assert int(r.headers["content-length"]) < len(PAGE) / 10
    assert r.text == PAGE  # the client undoes it
    assert "accept-encoding" in r.headers["vary"].lower()  # a cache keeps both forms apart


def test_a_client_that_does_not_accept_gzip_gets_the_page_as_it_is():
    r = TestClient(_app()).get("/", headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in r.headers and r.text == PAGE


def test_other_paths_and_event_streams_are_left_alone():
    client = TestClient(_app())
    r = client.get("/other", headers={"Accept-Encoding": "gzip"})
    assert "content-encoding" not in r.headers and r.text == PAGE  # Gradio compresses its files by extension
    r = client.get("/gradio_api/queue/data", headers={"Accept-Encoding": "gzip"})
    assert "content-encoding" not in r.headers  # a gzip stream would hold events back until its buffer fills
    assert r.text.count("data: ") == 3


def test_the_app_mounted_below_a_root_path_is_matched_under_it():
    client = TestClient(_app(), root_path="/space")
    r = client.get("/space/", headers={"Accept-Encoding": "gzip"})
    assert r.headers.get("content-encoding") == "gzip" and r.text == PAGE


def test_a_small_page_is_not_worth_compressing():
    r = TestClient(_app(minimum_size=10**6)).get("/", headers={"Accept-Encoding": "gzip"})
    assert "content-encoding" not in r.headers and r.text == PAGE
