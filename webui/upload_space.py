"""Refuse uploads while the disk that holds them is nearly full, rather than let the server die of it.

Gradio caps each upload's size but not their number: uploads are kept until the cache sweep deletes
those older than an hour (``app.DELETE_CACHE``), so one client sending 10 MB files in parallel can
write tens of megabytes a second and fill a Space's disk within minutes, after which nothing works
(sessions, the reader, the log). :class:`UploadSpace` is an ASGI middleware that answers an upload
with ``507`` and a sentence while less than ``min_free`` bytes are free on the upload folder's disk;
everything else (reading what was uploaded before, the teaching tabs, drawings already sent) goes on,
and uploads are taken again once the sweep has made room.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

__all__ = ["FULL", "UploadSpace"]

log = logging.getLogger("stn.app")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]], Awaitable[None]]

FULL = ("The server has no room for uploads right now (its disk is nearly full; uploads are deleted after an "
        "hour): try again in a few minutes.")


class UploadSpace:
    """ASGI middleware: a ``POST`` to a path ending in ``/upload`` is answered ``507`` with :data:`FULL`
    while ``shutil.disk_usage(folder()).free < min_free``; the request's body is not read.

    ``folder`` is called at each upload (Gradio's upload folder may be set after start-up). A folder
    that cannot be checked (it does not exist yet) lets the upload through.
    """

    def __init__(self, app: ASGIApp, folder: Callable[[], str], min_free: int) -> None:
        self.app = app
        self.folder = folder
        self.min_free = int(min_free)

    def free(self) -> int | None:
        try:
            return shutil.disk_usage(self.folder()).free
        except OSError:
            return None

    async def __call__(self, scope: Scope, receive: Callable[[], Awaitable[Message]], send: Callable[[Message], Awaitable[None]]) -> None:
        if scope.get("type") == "http" and scope.get("method") == "POST" and str(scope.get("path", "")).endswith("/upload"):
            free = self.free()
            if free is not None and free < self.min_free:
                log.warning("upload refused: %d MB free on the upload folder's disk (at least %d MB kept free)",
                            free >> 20, self.min_free >> 20)
                body = json.dumps({"detail": FULL}).encode()
                await send({"type": "http.response.start", "status": 507,
                            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)
