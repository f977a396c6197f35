"""Send the page itself compressed: a phone on a slow link waits for it before anything shows.

Gradio compresses what it serves by file extension only (``.js``, ``.css``, ``.json``, ...: its
``BrotliMiddleware``), so the page, served at ``/`` with the app's whole configuration inside it
(270 kB for this app), and ``/config`` (the same configuration, 220 kB, which clients that do not
load the page fetch: ``gradio_client``, an embedded ``<gradio-app>``) go out as they are. Gzip brings the page to about 29 kB. :class:`CompressPage` is an ASGI
middleware that gzips the responses of those paths for a client that accepts gzip; it leaves every
other path alone (the event streams must not be buffered, and the rest is compressed by Gradio or
is already compressed: images, fonts).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

from starlette.middleware.gzip import GZipMiddleware

__all__ = ["PAGE_PATHS", "CompressPage"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]], Awaitable[None]]

PAGE_PATHS = ("/", "/config", "/gradio_api/info")  # the page, its configuration, the API's description


class CompressPage:
    """ASGI middleware: gzip the responses of ``paths`` (relative to the app's ``root_path``; a
    trailing ``/`` does not matter) over ``minimum_size`` bytes, for clients that accept gzip."""

    def __init__(self, app: ASGIApp, paths: Iterable[str] = PAGE_PATHS, minimum_size: int = 1024) -> None:
        self.app = app
        self.paths = frozenset(p.rstrip("/") for p in paths)
        self.gzip = GZipMiddleware(app, minimum_size=minimum_size)

    def _page(self, scope: Scope) -> bool:
        path = str(scope.get("path", ""))
        root = str(scope.get("root_path", "")).rstrip("/")
        if root and path.startswith(root):
            path = path[len(root):]
        return path.rstrip("/") in self.paths

    async def __call__(self, scope: Scope, receive: Callable[[], Awaitable[Message]], send: Callable[[Message], Awaitable[None]]) -> None:
        if scope.get("type") == "http" and scope.get("method") in ("GET", "HEAD") and self._page(scope):
            await self.gzip(scope, receive, send)
        else:
            await self.app(scope, receive, send)
