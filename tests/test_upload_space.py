"""webui/upload_space.py: uploads are refused, with a sentence, while the upload folder's disk is nearly full;
everything else goes through (a hostile-traffic review filled 777 MB in 13 s with 10 MB uploads from 16 clients)."""

from __future__ import annotations

import asyncio
import shutil

import pytest

from webui.upload_space import FULL, UploadSpace


def _call(middleware: UploadSpace, method: str, path: str) -> tuple[int, bytes, bool]:
    reached = []

    async def app(scope, receive, send):
        reached.append(scope["path"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"[]"})

    middleware.app = app
    sent: list[dict] = []

    async def receive():
        raise AssertionError("the refused upload's body was read")

    async def send(message):
        sent.append(message)

    asyncio.run(middleware({"type": "http", "method": method, "path": path}, receive, send))
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return sent[0]["status"], body, bool(reached)


def test_an_upload_is_refused_while_the_disk_is_nearly_full(tmp_path, monkeypatch):
    from webui import upload_space

    total = 50 * 2**30  # a Space's disk, 512 MB of it free: under the 1 GB kept free
    monkeypatch.setattr(upload_space.shutil, "disk_usage",
                        lambda path: shutil._ntuple_diskusage(total, total - 2**29, 2**29))
    full = UploadSpace(None, folder=lambda: str(tmp_path), min_free=2**30)
    status, body, reached = _call(full, "POST", "/gradio_api/upload")
    assert status == 507 and body.decode() == FULL and not reached  # plain text: the page shows the body as it is
    # the rest of the app goes on: reading, the page, its events
    for method, path in (("GET", "/"), ("POST", "/gradio_api/queue/join"), ("GET", "/gradio_api/upload")):
        assert _call(full, method, path)[2], (method, path)


def test_an_upload_goes_through_with_room_or_no_folder_to_check(tmp_path):
    assert _call(UploadSpace(None, folder=lambda: str(tmp_path), min_free=0), "POST", "/gradio_api/upload")[:2] == (200, b"[]")
    gone = UploadSpace(None, folder=lambda: str(tmp_path / "not-yet"), min_free=2**62)
    assert _call(gone, "POST", "/gradio_api/upload")[2]


def test_the_app_installs_it():
    app = pytest.importorskip("app")
    names = [m.cls.__name__ for m in app.launch_kwargs()["app_kwargs"]["middleware"]]
    assert names[0] == "UploadSpace" and "RequestShape" in names and "ReadAhead" in names


def test_a_small_disk_keeps_a_tenth_free_not_a_gigabyte(tmp_path, monkeypatch, caplog):
    """A fixed 1 GB floor refused every upload, for good, where the temp disk is smaller (`docker run --tmpfs`)."""
    from webui import upload_space

    usage = {"free": 15 * 2**20}
    monkeypatch.setattr(upload_space.shutil, "disk_usage",
                        lambda path: shutil._ntuple_diskusage(16 * 2**20, 16 * 2**20 - usage["free"], usage["free"]))
    small = UploadSpace(None, folder=lambda: str(tmp_path), min_free=2**30)
    assert small.room() == (15 * 2**20, 16 * 2**20 // 10)
    assert _call(small, "POST", "/gradio_api/upload")[:2] == (200, b"[]")
    usage["free"] = 2**20  # under a tenth of 16 MB: refused, and a crowd's refusals are one log line
    with caplog.at_level("WARNING", logger="stn.app"):
        for _ in range(5):
            assert _call(small, "POST", "/gradio_api/upload")[0] == 507
    assert len([r for r in caplog.records if "refused" in r.getMessage()]) == 1
