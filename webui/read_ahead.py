"""Start reading an upload as soon as it lands, before the ``predict`` call that reads it arrives.

A browser (or ``curl``) reads a digit in two steps: it uploads the file (``POST .../upload``,
which answers with the file's path on the server), then calls ``predict`` with that path. Between
the two lie a network round trip and the event's own handling, time in which the server's reader
process would sit idle. :class:`ReadAhead` is an ASGI middleware that watches the upload route's
answers and hands each new path to a callback (``app.py``: :meth:`stn.serving.ReaderPool.read_ahead`
with the model last asked for); the ``predict`` that follows then waits for a reading already under
way, or done (``bench/README.md``, issue 7's seventh pass).

Only the paths Gradio's upload route itself wrote are passed on, after its answer and its
background tasks (which move the files into Gradio's cache) are complete; the Sketchpad's own
uploads (``background.png``, ``composite.png``, ``layer_N.png``: its layers, read by the Draw tab,
never by ``predict``) are left out.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import PurePath
from typing import Any

__all__ = ["EDITOR_FILES", "ReadAhead", "uploaded_paths"]

log = logging.getLogger("stn.app")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]], Awaitable[None]]

# The names Gradio's image editor (gr.Sketchpad) gives the files it uploads on every stroke.
EDITOR_FILES = re.compile(r"^(background|composite|layer_\d+)\.png$")
_MAX_ANSWER = 64 * 1024  # an upload's answer lists a few paths; anything longer is not one


def uploaded_paths(body: bytes) -> list[str]:
    """The paths in an upload route's JSON answer, less the image editor's own files."""
    try:
        paths = json.loads(body)
    except ValueError:
        return []
    if not isinstance(paths, list):
        return []
    return [p for p in paths if isinstance(p, str) and p and not EDITOR_FILES.match(PurePath(p).name)]


class ReadAhead:
    """ASGI middleware: after each successful ``POST`` to a path ending in ``/upload``, call
    ``on_upload(paths)`` with the uploaded files' paths (:func:`uploaded_paths`).

    ``on_upload`` runs on the event loop: it must only start work, never wait for it. Its errors are
    logged and never reach the upload's client.
    """

    def __init__(self, app: ASGIApp, on_upload: Callable[[list[str]], object]) -> None:
        self.app = app
        self.on_upload = on_upload

    async def __call__(self, scope: Scope, receive: Callable[[], Awaitable[Message]], send: Callable[[Message], Awaitable[None]]) -> None:
        if scope.get("type") != "http" or scope.get("method") != "POST" or not str(scope.get("path", "")).endswith("/upload"):
            await self.app(scope, receive, send)
            return
        status = 0
        body = bytearray()

        async def capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message.get("status", 0))
            elif message["type"] == "http.response.body" and status == 200 and len(body) <= _MAX_ANSWER:
                body.extend(message.get("body", b""))
            await send(message)

        await self.app(scope, receive, capture)  # returns once the answer is sent and the files are moved
        if status != 200 or len(body) > _MAX_ANSWER:
            return
        paths = uploaded_paths(bytes(body))
        if paths:
            try:
                self.on_upload(paths)
            except Exception:  # reading ahead is an optimisation: never fail an upload for it
                log.warning("read-ahead failed for %s", paths, exc_info=True)
