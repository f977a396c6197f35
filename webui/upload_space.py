"""Refuse uploads while the disk that holds them is nearly full, rather than let the server die of it.

Gradio caps each upload's size but not their number: uploads are kept until the cache sweep deletes
those older than an hour (``app.DELETE_CACHE``), so one client sending 10 MB files in parallel can
write tens of megabytes a second and fill a Space's disk within minutes, after which nothing works
(sessions, the reader, the log). :class:`UploadSpace` is an ASGI middleware that answers an upload
with ``507`` and a sentence while less than ``min_free`` bytes, or a tenth of the disk if that is less,
are free on the upload folder's disk; everything else (reading what was uploaded before, the teaching
tabs, drawings already sent) goes on, and uploads are taken again once the sweep has made room. (A
fixed 1 GB floor refused every upload, for good, on a temp disk smaller than that: `docker run --tmpfs`.)
"""

from __future__ import annotations

import logging
import math
import shutil
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

__all__ = ["FULL", "UploadSpace"]

log = logging.getLogger("stn.app")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]], Awaitable[None]]

FULL = ("The server has no room for uploads right now (its disk is nearly full; uploads are deleted after an "
        "hour): try again later, and read one of the examples meanwhile.")
LOG_EVERY = 60.0  # s between two log lines about refused uploads: a crowd's refusals are one line a minute


class UploadSpace:
    """ASGI middleware: a ``POST`` to a path ending in ``/upload`` is answered ``507`` with :data:`FULL`
    while the disk of ``folder()`` has less free than ``min_free`` or a tenth of its size, whichever is less
    (:meth:`room`); the request's body is not read.

    ``folder`` is called at each upload (Gradio's upload folder may be set after start-up). A folder
    that cannot be checked (it does not exist yet) lets the upload through.
    """

    def __init__(self, app: ASGIApp, folder: Callable[[], str], min_free: int) -> None:
        self.app = app
        self.folder = folder
        self.min_free = int(min_free)
        self._logged = -math.inf
        self._refused = 0

    def room(self) -> tuple[int, int] | None:
        """``(free bytes, the floor kept free)`` on the upload folder's disk, or ``None`` if it cannot be checked."""
        try:
            usage = shutil.disk_usage(self.folder())
        except OSError:
            return None
        return usage.free, min(self.min_free, usage.total // 10)

    async def __call__(self, scope: Scope, receive: Callable[[], Awaitable[Message]], send: Callable[[Message], Awaitable[None]]) -> None:
        if scope.get("type") == "http" and scope.get("method") == "POST" and str(scope.get("path", "")).endswith("/upload"):
            room = self.room()
            if room is not None and room[0] < room[1]:
                self._refused += 1
                now = time.monotonic()
                if now - self._logged >= LOG_EVERY:
                    log.warning("%d upload(s) refused: %d MB free on the upload folder's disk (at least %d MB kept free)",
                                self._refused, room[0] >> 20, room[1] >> 20)
                    self._logged, self._refused = now, 0
                # plain text: Gradio's page shows an upload's error body as it is, JSON and all
                body = FULL.encode()
                await send({"type": "http.response.start", "status": 507,
                            "headers": [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode())]})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)
