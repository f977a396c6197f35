"""Security: weights from safetensors only, nothing unpickled, no files served from outside the
app's own assets, uploads size-capped, and no secrets in the repository."""

from __future__ import annotations

import http.client
import json
import os
import re
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from urllib.parse import quote

import pytest

import stn

REPO = Path(__file__).resolve().parent.parent

# --------------------------------------------------------------------------- no interpreter on an upload


def _eps_bytes() -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("L", (40, 40), 255).save(buf, "EPS")  # Pillow writes EPS without Ghostscript
    return buf.getvalue()


def _no_subprocess(monkeypatch) -> list:
    calls: list = []

    def refuse(*args, **kwargs):
        calls.append(args)
        raise AssertionError(f"an upload started a process: {args!r}")

    for name in ("Popen", "check_call", "run", "call"):
        monkeypatch.setattr(subprocess, name, refuse)
    return calls


def test_uploads_never_reach_ghostscript(monkeypatch):
    """An EPS upload is refused by name, and no decoder outside ``READ_FORMATS`` is ever tried."""
    from PIL import Image

    from stn.preprocess import READ_FORMATS, ImageError, open_image

    calls = _no_subprocess(monkeypatch)
    with pytest.raises(ImageError, match="poster.eps: PostScript/EPS is a print format"):
        open_image(_eps_bytes(), name="poster.eps")
    assert not calls
    assert "EPS" not in READ_FORMATS
    assert set(READ_FORMATS) <= {"PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF", "PPM", "AVIF"}
    opened = []
    real_open = Image.open
    monkeypatch.setattr(Image, "open", lambda fp, mode="r", formats=None: opened.append(formats) or real_open(fp, mode, formats))
    with pytest.raises(ImageError):
        open_image(b"\x00" * 64, name="junk.bin")
    assert opened == [READ_FORMATS]


def test_the_app_turns_ghostscript_off(monkeypatch, app_module):
    """Gradio decodes a sketch's layers with a plain ``PIL.Image.open``: in the app's process (the
    import sets the switch) an EPS posing as one fails to decode without starting Ghostscript."""
    import io

    from PIL import EpsImagePlugin, Image

    assert EpsImagePlugin.gs_binary is False
    calls = _no_subprocess(monkeypatch)
    img = Image.open(io.BytesIO(_eps_bytes()))
    with pytest.raises(OSError, match="Ghostscript"):
        img.load()
    assert not calls


# --------------------------------------------------------------------------- no pickle

UNPICKLING = re.compile(
    r"\btorch\.load\s*\(|\bimport\s+(c?pickle|dill|joblib|shelve)\b|\bfrom\s+(c?pickle|dill|joblib|shelve)\s+import"
    r"|allow_pickle\s*=\s*True|\bpickle\.loads?\b|torch\.serialization|\.from_pretrained\s*\("
)


def _python_sources() -> list[Path]:
    files = sorted((REPO / "stn").rglob("*.py"))
    files += [p for p in (REPO / "app.py", *sorted((REPO / "bench").glob("*.py"))) if p.exists()]
    return files


def test_nothing_unpickles():
    hits = []
    for path in _python_sources():
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if UNPICKLING.search(line.split("#", 1)[0]):
                hits.append(f"{path.relative_to(REPO)}:{n}: {line.strip()}")
    assert not hits, "code that may unpickle:\n" + "\n".join(hits)


def test_zoo_reads_safetensors_only():
    src = (REPO / "stn" / "zoo.py").read_text()
    assert "from safetensors" in src and "load_file" in src


def test_models_dir_holds_no_pickles():
    d = stn.zoo.models_dir()
    bad = [p.name for p in d.glob("*") if p.suffix in {".pt", ".pth", ".pkl", ".pickle", ".bin", ".ckpt", ".joblib"}]
    assert not bad, f"pickle-based weights in {d}: {bad}"


WEIGHTS = sorted(stn.zoo.models_dir().glob("*.safetensors"))


@pytest.mark.skipif(not WEIGHTS, reason=f"no weights in {stn.zoo.models_dir()} yet")
@pytest.mark.parametrize("path", WEIGHTS, ids=[p.name for p in WEIGHTS])
def test_weights_are_plain_safetensors(path: Path):
    """Every weights file parses as safetensors (a JSON header and raw tensors) and holds only tensors."""
    import json
    import struct

    from safetensors import safe_open

    raw = path.read_bytes()[:8]
    (header_len,) = struct.unpack("<Q", raw)
    header = json.loads(path.read_bytes()[8 : 8 + header_len])
    assert all(k == "__metadata__" or {"dtype", "shape", "data_offsets"} <= set(v) for k, v in header.items())
    with safe_open(str(path), framework="pt") as f:
        keys = list(f.keys())
        assert keys
        for k in keys[:3]:
            assert f.get_tensor(k).numel() >= 0


@pytest.mark.parametrize("name", stn.list_models())
def test_every_model_loads_from_safetensors(name):
    model = stn.load_model(name, device="cpu")
    assert sum(p.numel() for p in model.parameters()) > 0


# --------------------------------------------------------------------------- no secrets

SECRET_PATTERNS = {
    "Hugging Face token": r"\bhf_[A-Za-z0-9]{30,}",
    "GitHub token": r"\b(gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{40,})",
    "AWS access key": r"\b(AKIA|ASIA)[0-9A-Z]{16}\b",
    "OpenAI-style key": r"\bsk-[A-Za-z0-9_-]{32,}",
    "Slack token": r"\bxox[abprs]-[A-Za-z0-9-]{10,}",
    "Google API key": r"\bAIza[0-9A-Za-z_-]{35}\b",
    "private key": r"-----BEGIN [A-Z ]*PRIVATE KEY-----",
    "password assignment": r"(?i)\b(password|passwd|secret|api_key|token)\s*[:=]\s*['\"][^'\"\s]{8,}['\"]",
}


def _repo_files() -> list[Path]:
    """Tracked files, and new ones git would pick up (not ignored)."""
    try:
        out = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=REPO, capture_output=True, check=True, timeout=60,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        pytest.skip("not a git checkout")
    return [REPO / p for p in out.decode().split("\0") if p and (REPO / p).is_file()]


def test_no_secrets_in_repository():
    compiled = {k: re.compile(v) for k, v in SECRET_PATTERNS.items()}
    hits = []
    for path in _repo_files():
        if path.name in {".env", "id_rsa", "id_ed25519"} or path.suffix in {".pem", ".key", ".p12"}:
            hits.append(f"{path.relative_to(REPO)}: a credentials file")
            continue
        if path.stat().st_size > 2_000_000:
            continue
        data = path.read_bytes()
        if b"\0" in data[:4096]:
            continue  # binary (weights, images, npz)
        text = data.decode("utf-8", "replace")
        for kind, rx in compiled.items():
            for m in rx.finditer(text):
                line = text.count("\n", 0, m.start()) + 1
                hits.append(f"{path.relative_to(REPO)}:{line}: {kind}")
    assert not hits, "possible secrets:\n" + "\n".join(hits)


# --------------------------------------------------------------------------- the running app


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(port: int, path: str, timeout: float = 30) -> tuple[int, bytes]:
    """A raw GET: the path goes out exactly as written (no client-side ``..`` clean-up)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.putrequest("GET", path, skip_accept_encoding=True)
        conn.endheaders()
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


_SERVER_LOGS: dict[int, Path] = {}  # app_port's port → the file its server logs to


@pytest.fixture(scope="module")
def app_port(tmp_path_factory, start_server):
    """``python app.py`` in a subprocess, as deployed, on a free port."""
    if not (REPO / "app.py").exists():
        pytest.skip("app.py is not there yet: the path-traversal checks need the running app")
    port = _free_port()
    env = dict(os.environ, GRADIO_SERVER_PORT=str(port), GRADIO_SERVER_NAME="127.0.0.1",
               GRADIO_ANALYTICS_ENABLED="False", GRADIO_TEMP_DIR=str(tmp_path_factory.mktemp("gradio")))
    log = tmp_path_factory.mktemp("log") / "app.log"
    proc = start_server([sys.executable, "app.py"], env, port, log)
    _SERVER_LOGS[port] = log
    try:
        yield port
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()


def _secret_bits() -> dict[str, bytes]:
    """Files the server must never hand out, and a line of each that would give them away."""
    return {
        "/etc/passwd": b"root:",
        str(REPO / "stn" / "zoo.py"): b"def load_model",
        str(REPO / "app.py"): b"import gradio",
        str(REPO / "pyproject.toml"): b"[project]",
    }


def _attempts() -> list[str]:
    paths = []
    for target in _secret_bits():
        rel = os.path.relpath(target, REPO)
        for prefix in ("/gradio_api/file=", "/file=", "/gradio_api/file/", "/gradio_api/proxy=", "/static/", "/assets/",
                       "/gradio_api/static/", "/svelte/"):
            paths.append(prefix + target)
            paths.append(prefix + quote(target, safe=""))
            paths.append(prefix + rel)
            paths.append(prefix + "../" * 8 + target.lstrip("/"))
            paths.append(prefix + quote("../" * 8 + target.lstrip("/"), safe=""))
            paths.append(prefix + "..%2f" * 8 + target.lstrip("/"))
    paths += ["/../../../../etc/passwd", "/%2e%2e/%2e%2e/%2e%2e/etc/passwd", "/gradio_api/file=.git/config",
              "/gradio_api/file=" + str(REPO / ".git" / "config"), "/gradio_api/file=/proc/self/environ",
              "/gradio_api/file=models/../stn/zoo.py", "/gradio_api/file=assets/../app.py"]
    return paths


@pytest.mark.slow
def test_no_files_outside_the_app_are_served(app_port):
    markers = list(_secret_bits().values()) + [b"[core]", b"PATH="]
    leaked = []
    for path in _attempts():
        try:
            status, body = _get(app_port, path)
        except OSError:  # a refused or dropped request is a refusal
            continue
        if status == 200 and any(m in body for m in markers):
            leaked.append(f"{path} -> {status}, {body[:60]!r}")
    assert not leaked, "served files from outside the app:\n" + "\n".join(leaked)
    assert _get(app_port, "/gradio_api/info")[0] == 200, "the server died during the probing"
    # The control: the same route does serve the app's own assets, so the refusals above are real.
    own = sorted((REPO / "assets" / "examples").glob("*.png"))
    if own:
        status, body = _get(app_port, "/gradio_api/file=" + str(own[0]))
        assert status == 200 and body.startswith(b"\x89PNG"), f"the app's own example {own[0].name} is not served ({status})"


@pytest.mark.slow
def test_uploads_are_size_capped(app_port):
    """An upload over the limit is refused by the server (413), before the handler sees it."""
    from stn.preprocess import MAX_FILE_BYTES

    boundary = "stnboundary"
    payload = os.urandom(MAX_FILE_BYTES + 1024)
    body = (
        f"--{boundary}\r\nContent-Disposition: form-data; name=\"files\"; filename=\"big.png\"\r\n"
        "Content-Type: image/png\r\n\r\n"
    ).encode() + payload + f"\r\n--{boundary}--\r\n".encode()
    conn = http.client.HTTPConnection("127.0.0.1", app_port, timeout=60)
    try:
        conn.request("POST", "/gradio_api/upload", body=body,
                     headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
        resp = conn.getresponse()
        text = resp.read().decode("utf-8", "replace")
    finally:
        conn.close()
    assert resp.status == 413, f"an upload of {len(payload) / 2**20:.0f} MB was accepted ({resp.status}: {text[:200]})"


def _queue_call(port: int, session: str, fn_index: int, data: list, trigger: int | None, timeout: float = 60,
                event_data: object = None) -> dict:
    """One event as the page sends it (``/gradio_api/queue/join``, then the session's event stream)
    → the ``process_completed`` message."""
    body = json.dumps({"data": data, "event_data": event_data, "fn_index": fn_index, "trigger_id": trigger,
                       "session_hash": session}).encode()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("POST", "/gradio_api/queue/join", body=body, headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        text = resp.read()
        assert resp.status == 200, f"queue/join {resp.status}: {text[:300]!r}"
        conn.request("GET", f"/gradio_api/queue/data?session_hash={session}")
        stream = conn.getresponse()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = stream.fp.readline()
            if not line:
                break
            if line.startswith(b"data:"):
                msg = json.loads(line[5:])
                if msg.get("msg") == "process_completed":
                    return msg
    finally:
        conn.close()
    raise AssertionError(f"event {fn_index} did not complete within {timeout:.0f} s")


def _upload(port: int, data: bytes, name: str) -> dict:
    """POST ``data`` to ``/gradio_api/upload`` as the page does → the FileData a request sends."""
    boundary = uuid.uuid4().hex
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="{name}"\r\n'
            "Content-Type: image/png\r\n\r\n").encode() + data + f"\r\n--{boundary}--\r\n".encode()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        conn.request("POST", "/gradio_api/upload", body=body, headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
        path = json.loads(conn.getresponse().read())[0]
    finally:
        conn.close()
    return {"path": path, "orig_name": name, "meta": {"_type": "gradio.FileData"}}


@pytest.mark.slow
def test_crafted_event_values_are_refused(app_port):
    """The page's events take only what their controls can send: values a crafted request puts out of a
    slider's range (1e308, -1e12, a string), a head or a kernel not among the choices, a model not in the
    zoo, a sketch layer pointing at a server file. Each is refused at once without a traceback to the
    client, and the same session goes on working with a valid value afterwards."""
    status, body = _get(app_port, "/config")
    assert status == 200
    config = json.loads(body)
    comps = {c["id"]: c for c in config["components"]}
    deps = {d["api_name"]: d for d in config["dependencies"] if d.get("api_name")}
    session = uuid.uuid4().hex

    def call(name: str, values: dict[str, object]) -> dict:
        """``values`` by input label (states stay server-side: None); every other input its control's value."""
        dep = deps[name]
        data = []
        for cid in dep["inputs"]:
            comp = comps[cid]
            label = comp.get("props", {}).get("label")
            data.append(None if comp["type"] == "state" else values.get(label, comp.get("props", {}).get("value")))
        trigger = dep["targets"][0][0] if dep.get("targets") else None
        return _queue_call(app_port, session, dep["id"], data, trigger)

    example = min((REPO / "assets" / "examples").glob("*.png"))
    image = _upload(app_port, example.read_bytes(), example.name)
    assert call("predict", {"A picture of a digit": image})["success"], "the example was not read"

    rotation, scale_x = "rotation of the grid (° anticlockwise)", "scale x (< 1 zooms in)"
    crafted = [
        ("playground_update", {rotation: 1e308}),
        ("playground_update", {rotation: float("nan")}),  # a range check lets NaN through
        ("kernel_view", {"output row": float("nan")}),
        ("invariance_view", {"shift x (px)": float("inf")}),
        ("playground_update", {rotation: "ninety"}),
        ("playground_update", {scale_x: -1e12}),
        ("playground_update", {"Head": "head 99"}),
        ("kernel_view", {"output row": 10**9}),
        ("kernel_view", {"Sampling kernel": "bicubic; rm -rf /"}),
        ("invariance_view", {"rotate the input (° anticlockwise)": float("1e308")}),
        ("change_model", {"Model": "../../etc/passwd"}),
        ("predict_sketch_live", {"Draw a digit": {"background": None, "composite": None,
                                                  "layers": [{"path": "/etc/passwd", "meta": {"_type": "gradio.FileData"}}]}}),
    ]
    for name, values in crafted:
        msg = call(name, values)
        text = json.dumps(msg.get("output", {}))
        assert msg["success"] is False, f"{name} {values}: accepted: {text[:300]}"
        assert "Traceback" not in text and "root:" not in text, f"{name} {values}: {text[:300]}"
        assert msg.get("output", {}).get("error"), f"{name} {values}: refused without a word: {text[:300]}"
    # the control: each event, with values its controls can send, works in the same session
    for name, values in [("playground_update", {rotation: 30.0}), ("kernel_view", {"output row": 5}),
                         ("invariance_view", {"rotate the input (° anticlockwise)": 30.0}), ("change_model", {"Model": "r-affine"})]:
        ok = call(name, values)
        assert ok["success"], f"{name} {values} failed after the crafted events: {json.dumps(ok)[:300]}"
    assert _get(app_port, "/gradio_api/info")[0] == 200


@pytest.mark.slow
def test_requests_the_page_never_sends_get_a_sentence(app_port, tmp_path):
    """Found by a hostile-traffic review. ``predict`` read any file on the server when the request did not mark its
    path as a file (no "meta"), or sent it as a bare string, and sent its pixels back in the plot; a click event
    without its click data, a page-only event, a null or "NaN" snapshot and a value out of a control's range
    answered {"error": null} or Gradio's repr of the value, each with a traceback in the log. Each now gets a
    sentence and one log line."""
    from PIL import Image

    log = _SERVER_LOGS[app_port]
    start = log.stat().st_size
    config = json.loads(_get(app_port, "/config")[1])
    deps = config["dependencies"]
    by_name = {d["api_name"]: d for d in deps if d.get("api_name")}
    comps = {c["id"]: c for c in config["components"]}
    session = uuid.uuid4().hex

    def call(dep: dict, data: list, event_data: object = None) -> dict:
        trigger = dep["targets"][0][0] if dep.get("targets") else None
        return _queue_call(app_port, session, dep["id"], data, trigger, event_data=event_data)

    outside = tmp_path / "outside.png"  # a readable digit, outside the upload folder
    Image.open(min((REPO / "assets" / "examples").glob("*.png"))).save(outside)
    predict = by_name["predict"]
    for sent in ({"path": str(outside)}, str(outside), {"path": str(outside), "orig_name": "d.png"}, "/etc/passwd",
                 {"path": "/proc/self/environ"}):
        msg = call(predict, [sent, None])
        assert msg["success"] is False and "not uploaded to this server" in msg["output"]["error"], (sent, msg)
    # click events without their click data
    for fn in ("load_example", "kernel_click"):
        dep = next(d for d in deps if d.get("name") == fn or (d.get("api_name") or "").endswith(fn))
        data = [None if comps[i]["type"] == "state" else comps[i].get("props", {}).get("value") for i in dep["inputs"]]
        for event_data in (None, {"index": 5}, {"value": 1}):
            msg = call(dep, data, event_data)
            assert msg["success"] is False and "click" in (msg["output"].get("error") or ""), (fn, event_data, msg)
    # a page-only event (its function runs in the browser)
    js_only = next(d for d in deps if not d.get("backend_fn", True))
    msg = call(js_only, [None] * len(js_only["inputs"]))
    assert msg["success"] is False and "runs in the page only" in (msg["output"].get("error") or ""), msg
    # the snapshot of a replay: none is the first, "NaN" a sentence
    frame = by_name["replay_frame"]
    model = comps[frame["inputs"][0]]["props"]["value"]
    if model:
        assert call(frame, [model, None])["success"]
        msg = call(frame, [model, "NaN"])
        assert msg["success"] is False and "snapshot must be a number" in msg["output"]["error"], msg
    # Gradio's own range check: a sentence of a line, not the value echoed back
    msg = call(frame, [model, 1e12]) if model else None
    huge = call(by_name["replay_model"], ["x" * 200_000])
    assert huge["success"] is False and len(huge["output"]["error"]) < 400, huge["output"]["error"][:300]
    assert msg is None or msg["success"]  # past the end reads the last snapshot
    # requests naming nothing here: an event the app does not have, a stream for a session with nothing waiting,
    # the proxy route (each was a 78-line traceback, two of them a 500)
    conn = http.client.HTTPConnection("127.0.0.1", app_port, timeout=30)
    try:
        for method, path, body in (("POST", "/gradio_api/queue/join", json.dumps({"data": [], "fn_index": 999, "session_hash": "x"})),
                                   ("GET", "/gradio_api/queue/data?session_hash=nobody", None),
                                   ("GET", "/gradio_api/proxy=/x%00", None)):
            conn.request(method, path, body=body, headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            answer = resp.read()
            assert resp.status in (404, 422) and json.loads(answer)["detail"], (path, resp.status, answer[:200])
    finally:
        conn.close()
    time.sleep(1)
    with open(log, "rb") as f:
        f.seek(start)
        written = f.read().decode("utf-8", "replace")
    assert "Traceback" not in written, f"a refusal printed a traceback:\n{written[-3000:]}"
    assert len(written) < 20_000, "the refusals wrote the values sent into the log"


def test_a_refusal_is_one_log_line_not_a_traceback(app_port):
    """A refused upload, an empty sketchpad or an unknown model is the visitor's input, not a fault of the
    server: each is logged as one line saying what was refused. Gradio printed each one's traceback, so
    that the log of a Space that turns away junk looked like a server failing."""
    log = _SERVER_LOGS[app_port]
    start = log.stat().st_size
    status, body = _get(app_port, "/config")
    assert status == 200
    config = json.loads(body)
    deps = {d["api_name"]: d for d in config["dependencies"] if d.get("api_name")}
    comps = {c["id"]: c for c in config["components"]}
    session = uuid.uuid4().hex

    def call(name: str, first: object, model: object = "r-affine") -> dict:
        dep = deps[name]
        data = [first, model] + [None] * (len(dep["inputs"]) - 2)
        assert comps[dep["inputs"][1]]["type"] == "dropdown"
        return _queue_call(app_port, session, dep["id"], data, dep["targets"][0][0] if dep.get("targets") else None)

    text = _upload(app_port, b"this is not a picture", "digit.png")
    example = min((REPO / "assets" / "examples").glob("*.png"))
    refused = [
        ("predict", text, "r-affine"),
        ("predict", _upload(app_port, example.read_bytes(), example.name), "no-such-model"),
        ("predict_sketch", {"background": None, "composite": None, "layers": []}, "r-affine"),
    ]
    for name, first, model in refused:
        msg = call(name, first, model)
        assert msg["success"] is False and msg["output"].get("error"), f"{name}: not refused: {json.dumps(msg)[:300]}"
    deadline = time.monotonic() + 10
    while True:  # the log is written by another process
        with open(log, "rb") as f:
            f.seek(start)
            written = f.read().decode("utf-8", "replace")
        if written.count("refused (") >= len(refused) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert "Traceback" not in written, f"a refusal printed a traceback:\n{written[-3000:]}"
    for phrase in ("digit.png: this is not an image", "no-such-model", "sketchpad is empty"):
        assert phrase in written, f"no log line for the refusal ({phrase!r}):\n{written[-2000:]}"


@pytest.mark.slow
def test_an_outsized_drawing_is_refused_before_it_is_decoded(app_port, tmp_path):
    """A drawing's layers come as files the visitor uploads: one of 5000×5000 pixels (a small PNG, mostly
    transparent) was decoded whole, a quarter of a gigabyte at a time, and stalled other visitors. Now it
    is refused by its header with a sentence; a drawing of the sketchpad's size is read as before."""
    from PIL import Image, ImageDraw

    from webui.guard import SKETCH_MAX_PIXELS

    config = json.loads(_get(app_port, "/config")[1])
    dep = next(d for d in config["dependencies"] if d.get("api_name") == "predict_sketch")
    rest = [None] * (len(dep["inputs"]) - 1)  # the model (the default) and the page's states

    def layer(size: int) -> dict:
        img = Image.new("RGBA", (size, size), (0, 0, 0, 0))
        ImageDraw.Draw(img).line([(size // 2, size // 5), (size // 2, 4 * size // 5)], fill=(249, 115, 22, 255), width=size // 25)
        path = tmp_path / f"layer-{size}.png"
        img.save(path)
        return _upload(app_port, path.read_bytes(), "layer_0.png")

    big = 5000
    assert big * big > SKETCH_MAX_PIXELS
    session = uuid.uuid4().hex
    sketch = {"background": None, "layers": [layer(big)], "composite": None, "id": None}
    msg = _queue_call(app_port, session, dep["id"], [sketch, *rest], None)
    text = json.dumps(msg.get("output", {}), ensure_ascii=False)
    assert msg["success"] is False and "larger than any sketchpad" in text and f"{big}×{big}" in text, text[:300]
    for bad in ([{"path": 12, "meta": {"_type": "gradio.FileData"}}], None):  # not a file; no layers at all
        msg = _queue_call(app_port, session, dep["id"], [{"background": None, "layers": bad, "composite": None, "id": None},
                                                         *rest], None)
        out = msg.get("output", {})
        assert msg["success"] is False and out.get("error"), f"{bad}: {json.dumps(out)[:300]}"
    msg = _queue_call(app_port, session, dep["id"], [{"background": None, "layers": [layer(400)], "composite": None, "id": None},
                                                     *rest], None)
    assert msg["success"], json.dumps(msg.get("output", {}))[:300]
