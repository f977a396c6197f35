"""webui/read_ahead.py: the upload route's answers are handed on, after its background tasks,
without the image editor's own files; nothing else is, and nothing breaks an upload."""

from __future__ import annotations

from fastapi import BackgroundTasks, FastAPI
from fastapi.responses import PlainTextResponse
from fastapi.testclient import TestClient
from starlette.middleware import Middleware

from webui.read_ahead import ReadAhead, uploaded_paths


def test_uploaded_paths_leave_out_the_editors_files():
    body = b'["/tmp/gradio/ab/photo.png", "/tmp/gradio/cd/composite.png", "/tmp/gradio/ef/layer_0.png", ' \
           b'"/tmp/gradio/gh/background.png", "/tmp/gradio/ij/layer_0b.png", 3, ""]'
    assert uploaded_paths(body) == ["/tmp/gradio/ab/photo.png", "/tmp/gradio/ij/layer_0b.png"]
    assert uploaded_paths(b"not json") == [] and uploaded_paths(b'{"path": "x.png"}') == []


def _server(on_upload, status: int = 200) -> tuple[TestClient, list[str]]:
    events: list[str] = []

    def seen(paths: list[str]) -> None:
        events.append("seen")
        on_upload(paths)

    app = FastAPI(middleware=[Middleware(ReadAhead, on_upload=seen)])

    @app.post("/gradio_api/upload")
    def upload(bg: BackgroundTasks):
        if status != 200:
            return PlainTextResponse("too large", status_code=status)
        bg.add_task(lambda: events.append("moved"))  # Gradio moves the files into its cache here
        return ["/tmp/gradio/ab/digit.png", "/tmp/gradio/cd/layer_1.png"]

    @app.get("/gradio_api/upload")
    def not_an_upload():
        return ["/tmp/gradio/ab/digit.png"]

    @app.post("/gradio_api/call/predict")
    def call():
        return ["/tmp/gradio/ab/digit.png"]

    return TestClient(app), events


def test_an_upload_is_handed_on_after_its_files_are_moved():
    got: list[list[str]] = []
    client, events = _server(got.append)
    r = client.post("/gradio_api/upload", files={"files": ("digit.png", b"x")})
    assert r.status_code == 200 and r.json()[0] == "/tmp/gradio/ab/digit.png"
    assert got == [["/tmp/gradio/ab/digit.png"]] and events == ["moved", "seen"]
    client.get("/gradio_api/upload")
    client.post("/gradio_api/call/predict")
    assert len(got) == 1  # not an upload: nothing handed on


def test_failed_uploads_and_failing_callbacks():
    got: list[list[str]] = []
    client, _ = _server(got.append, status=413)
    assert client.post("/gradio_api/upload", files={"files": ("big.png", b"x")}).status_code == 413
    assert got == []

    def broken(paths: list[str]) -> None:
        raise RuntimeError("reader gone")

    client, events = _server(broken)
    r = client.post("/gradio_api/upload", files={"files": ("digit.png", b"x")})
    assert r.status_code == 200 and r.json()[0] == "/tmp/gradio/ab/digit.png" and events == ["moved", "seen"]
