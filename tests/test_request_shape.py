"""webui/request_shape.py: requests that name nothing on this server get a short answer before Gradio's routes
(each made Gradio log a traceback of ~78 lines, two of them with a 500); the rest reach the app untouched."""

from __future__ import annotations

import asyncio
import json

from webui.request_shape import MAX_JOIN_BODY, RequestShape


def _call(method: str, path: str, body: bytes = b"", query: bytes = b"", chunks: int = 1,
          sessions: object = ("waiting",)) -> tuple[int, dict | None, bytes | None]:
    """→ (status, JSON answer or None, the body the app read, or None if the app was not reached)."""
    seen: list[bytes] = []

    async def app(scope, receive, send):
        got = bytearray()
        while True:
            m = await receive()
            got.extend(m.get("body", b""))
            if not m.get("more_body"):
                break
        seen.append(bytes(got))
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    shape = RequestShape(app, fns=lambda: {0: "fn", 1: "fn"}, sessions=lambda: sessions)
    step = max(1, -(-len(body) // chunks))
    parts = [body[i : i + step] for i in range(0, len(body), step)] or [b""]
    messages = [{"type": "http.request", "body": p, "more_body": i < len(parts) - 1} for i, p in enumerate(parts)]
    sent: list[dict] = []

    async def receive():
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    asyncio.run(shape({"type": "http", "method": method, "path": path, "query_string": query}, receive, send))
    out = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return sent[0]["status"], (json.loads(out) if sent[0]["status"] != 200 else None), (seen[0] if seen else None)


def test_an_event_the_app_does_not_have_is_a_422():
    join = json.dumps({"data": [], "fn_index": 999, "session_hash": "s", "event_data": None}).encode()
    status, answer, reached = _call("POST", "/gradio_api/queue/join", join)
    assert status == 422 and "no event 999" in answer["detail"] and reached is None


def test_a_join_the_app_has_reaches_it_whole_in_pieces_too():
    join = json.dumps({"data": ["x" * 5000], "fn_index": 1, "session_hash": "s"}).encode()
    for chunks in (1, 7):
        status, _, reached = _call("POST", "/gradio_api/queue/join", join, chunks=chunks)
        assert status == 200 and reached == join
    for odd in (b"not json", b"[]", json.dumps({"fn_index": "1"}).encode(), json.dumps({"data": []}).encode()):
        assert _call("POST", "/gradio_api/queue/join", odd)[2] == odd  # Gradio's own validation answers these


def test_an_oversized_join_is_refused():
    status, _, reached = _call("POST", "/gradio_api/queue/join", b"x" * (MAX_JOIN_BODY + 10), chunks=4)
    assert status == 413 and reached is None


def test_a_stream_for_a_session_with_nothing_waiting_is_a_404():
    status, answer, reached = _call("GET", "/gradio_api/queue/data", query=b"session_hash=nope")
    assert status == 404 and "join the queue first" in answer["detail"] and reached is None
    assert _call("GET", "/gradio_api/queue/data", query=b"session_hash=waiting")[0] == 200
    assert _call("GET", "/gradio_api/queue/data", query=b"session_hash=nope", sessions=None)[0] == 200  # cannot tell


def test_the_proxy_route_serves_nothing_and_the_rest_goes_through():
    assert _call("GET", "/gradio_api/proxy=/x%00")[0] == 404
    for method, path in (("GET", "/"), ("GET", "/config"), ("POST", "/gradio_api/upload"), ("POST", "/gradio_api/call/predict")):
        assert _call(method, path, b"{}")[2] is not None, (method, path)
