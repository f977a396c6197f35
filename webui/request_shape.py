"""Answer requests that name nothing on this server with a short 404 or 422, before Gradio's routes.

Three unauthenticated requests made Gradio's routes fail with a traceback of about 78 lines in the
server's log each (and a 500 for two of them), so anyone could flood the log, and a Space's log is how
its owner finds real faults:

- ``POST .../queue/join`` with an ``fn_index`` the app does not have (Gradio looks it up unchecked);
- ``GET .../queue/data`` for a session that has no event waiting (Gradio starts the event stream,
  then raises ``404`` inside it);
- ``GET .../proxy=...`` with a malformed address (this app proxies nothing: that route serves
  ``gr.load`` of another Space).

:class:`RequestShape` answers each of these itself, in one log line at most; every other request goes
to the app untouched (a ``queue/join`` body is read once, checked and handed on as it came).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qs

__all__ = ["MAX_JOIN_BODY", "RequestShape"]

log = logging.getLogger("stn.app")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]], Awaitable[None]]

MAX_JOIN_BODY = 8 * 2**20  # an event's JSON: values and file paths (files are uploaded apart), never megabytes


async def _answer(send: Callable[[Message], Awaitable[None]], status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


class RequestShape:
    """ASGI middleware (see the module's text). ``fns`` returns the app's event functions by index
    (``Blocks.fns``); ``sessions`` the sessions with events waiting (Gradio's queue), or ``None`` when
    it cannot tell (then ``queue/data`` goes through)."""

    def __init__(self, app: ASGIApp, fns: Callable[[], Any], sessions: Callable[[], Any]) -> None:
        self.app = app
        self.fns = fns
        self.sessions = sessions

    async def __call__(self, scope: Scope, receive: Callable[[], Awaitable[Message]], send: Callable[[Message], Awaitable[None]]) -> None:
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        path, method = str(scope.get("path", "")), scope.get("method")
        if "/proxy=" in path:
            log.info("refused: %s %s (this app proxies nothing)", method, path[:120])
            await _answer(send, 404, "This server proxies nothing.")
            return
        if method == "GET" and path.endswith("/queue/data"):
            session = (parse_qs(scope.get("query_string", b"").decode("latin-1")).get("session_hash") or [""])[0]
            waiting = self.sessions()
            if waiting is not None and session not in waiting:
                await _answer(send, 404, "No event of this session is waiting: join the queue first (POST .../queue/join).")
                return
        if method == "POST" and path.endswith("/queue/join"):
            body = bytearray()
            more = True
            while more:
                message = await receive()
                if message["type"] != "http.request":  # the client left
                    return
                body.extend(message.get("body", b""))
                more = message.get("more_body", False)
                if len(body) > MAX_JOIN_BODY:
                    await _answer(send, 413, f"An event's request is at most {MAX_JOIN_BODY >> 20} MB: upload files apart.")
                    return
            problem = self._join_problem(bytes(body))
            if problem:
                log.info("refused: queue/join (%s)", problem)
                await _answer(send, 422, problem)
                return
            sent = False

            async def replay() -> Message:
                nonlocal sent
                if sent:
                    return await receive()
                sent = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}

            await self.app(scope, replay, send)
            return
        await self.app(scope, receive, send)

    def _join_problem(self, body: bytes) -> str | None:
        """What is wrong with a ``queue/join`` body that Gradio would fail on with a traceback, or ``None``."""
        try:
            request = json.loads(body)
        except ValueError:
            return None  # Gradio answers 422 itself
        if not isinstance(request, dict) or "fn_index" not in request:
            return None
        index = request["fn_index"]
        if isinstance(index, bool) or not isinstance(index, int):
            return None  # Gradio's own validation answers 422
        if index not in self.fns():
            return f"There is no event {index} on this server: the page's events are listed in /config."
        return None
