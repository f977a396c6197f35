"""Load test of the running app's ``predict`` (or ``read``) over Gradio's plain REST API, against a floor.

Each request does what ``curl`` would: upload the image, start the call, read the event stream::

    POST /gradio_api/upload                       multipart "files"  -> ["/tmp/gradio/.../x.png"]
    POST /gradio_api/call/predict                 {"data": [FileData, model]} -> {"event_id": ...}
    GET  /gradio_api/call/predict/{event_id}      text/event-stream: "event: complete" / "event: error"

``--endpoint read`` drives the app's lean JSON endpoint (``/gradio_api/call/read``: the same
pre-processing and inference, no figures) instead of ``predict``; the floor is always driven
through its ``predict``.

(``gradio_client`` adds well over 100 ms a call on its own; it serves the correctness tests,
not these figures.) Both servers (``app.py``, and ``bench/floor_app.py`` whose handler only
decodes the upload) run at once, each on a free port; after a warm-up they take turns in
``--rounds`` rounds (1 client, the servers taking turns request by request; then ``--clients``
concurrent clients on each in turn), so that a shared machine whose speed drifts slows both alike. For each: requests, failures, p50/p95/p99 latency and
throughput over all rounds, the server's RSS before and after, and the ratios app/floor.

    python bench/load.py                       # app.py vs the floor, 1000 requests at 16 clients
    python bench/load.py --targets floor,infer # no app.py yet: the floor and a bare stn app
    python bench/load.py --quick               # a short check that everything runs
    python bench/load.py --endpoint read       # the app's JSON-only endpoint instead of predict
    python bench/load.py --targets floor,app,app+STN_CONCURRENCY=4   # variants: BASE+ENV=VALUE

Targets (2-core CPU): 0 failures; p50 ≤ 1.5× the floor's; throughput at 16 clients ≥ 0.6× the
floor's; RSS growth < 50 MB over the 1,000 requests.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import http.client
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # `python bench/load.py` from a checkout: stn is imported from it
    sys.path.insert(0, str(REPO))
TARGETS = {
    "app": ("app.py", {}),
    "floor": ("bench/floor_app.py", {"STN_FLOOR_HANDLER": "decode"}),
    "infer": ("bench/floor_app.py", {"STN_FLOOR_HANDLER": "infer"}),
}
FILE_COMPONENTS = {"image", "file", "imageslider", "uploadbutton"}
ENDPOINTS = ("predict", "read")  # the app's endpoints that read an image (read: JSON only)


# --------------------------------------------------------------------------- images


def example_images(directory: Path | None, out: Path, n: int = 24) -> list[Path]:
    """The images in ``directory`` (default: the app's examples, ``assets/examples``), else ``n``
    MNIST test digits photographed on paper (PNG and JPEG)."""
    if directory is None and (REPO / "assets" / "examples").is_dir():
        directory = REPO / "assets" / "examples"
    if directory is not None:
        files = sorted(p for p in directory.iterdir() if p.suffix.lower() in {".png", ".jpg", ".jpeg", ".webp"})
        index = directory / "examples.json"
        if index.is_file():  # the two-digit examples are for pair-affine: a one-digit model refuses a number
            pairs = {e["file"] for e in json.loads(index.read_text()) if len(str(e.get("label", ""))) > 1}
            files = [p for p in files if p.name not in pairs]
        if not files:
            sys.exit(f"no PNG/JPEG/WebP images in {directory}")
        return files
    import numpy as np
    from PIL import Image

    from stn.data import load_mnist

    x, _ = load_mnist("bundled", train=False)
    rng = np.random.default_rng(0)
    files = []
    for i in range(n):
        side = int(rng.integers(160, 480))
        digit = Image.fromarray((x[i, 0].numpy() * 255).astype(np.uint8)).resize((side // 2, side // 2), Image.Resampling.BICUBIC)
        ink = np.zeros((side, side), np.float32)
        o = side // 4 + int(rng.integers(-side // 8, side // 8))
        ink[o : o + side // 2, side // 4 : side // 4 + side // 2] = np.asarray(digit, np.float32) / 255
        paper = 0.9 + 0.06 * np.linspace(0, 1, side)[None, :]  # a little uneven light
        grey = paper * (1 - 0.85 * ink) + rng.normal(0, 0.015, ink.shape)
        img = Image.fromarray((np.clip(grey, 0, 1) * 255).astype(np.uint8)).convert("RGB")
        path = out / f"digit{i:02d}.{'jpg' if i % 2 else 'png'}"
        img.save(path, quality=90) if i % 2 else img.save(path)
        files.append(path)
    return files


# --------------------------------------------------------------------------- server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (the app's reader processes among them), from /proc."""
    out, todo = [], [pid]
    while todo:
        q = todo.pop()
        out.append(q)
        try:
            for task in Path(f"/proc/{q}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, ValueError):
            continue
    return out


def rss_mb(pid: int) -> float:
    """Resident memory of ``pid`` and its children, MB (psutil if installed, else /proc)."""
    try:
        import psutil

        p = psutil.Process(pid)
        return sum(q.memory_info().rss for q in [p, *p.children(recursive=True)]) / 2**20
    except ImportError:
        pass
    total = 0
    for q in process_tree(pid):
        try:
            for line in Path(f"/proc/{q}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except (OSError, ValueError):
            continue
    return total / 2**20


def cpu_seconds(pid: int) -> float:
    """CPU time of ``pid`` and its children, live (their own times) or ended (the parent's cutime/cstime)."""
    total = 0
    for i, q in enumerate(process_tree(pid)):
        try:
            fields = Path(f"/proc/{q}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12]) + (int(fields[13]) + int(fields[14]) if i == 0 else 0)
        except (OSError, ValueError, IndexError):
            continue
    return total / os.sysconf("SC_CLK_TCK")


class Server:
    """``python SCRIPT`` on a free port, as deployed; stopped on exit."""

    def __init__(self, script: str, env: dict[str, str], log_dir: Path, timeout: float = 300) -> None:
        self.script = script
        self.port = free_port()
        self.log = log_dir / f"{Path(script).stem}-{self.port}.log"
        full_env = dict(
            os.environ, GRADIO_SERVER_PORT=str(self.port), GRADIO_SERVER_NAME="127.0.0.1",
            GRADIO_ANALYTICS_ENABLED="False", **env,
        )
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen([sys.executable, script], cwd=REPO, env=full_env, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{script} exited with {self.proc.returncode}:\n{self.log.read_text()[-3000:]}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                conn.request("GET", "/gradio_api/info")
                resp = conn.getresponse()
                body = resp.read()
                conn.close()
                if resp.status == 200:
                    self.info = json.loads(body)
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{script} did not answer within {timeout:.0f} s:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.5)

    @property
    def rss_mb(self) -> float:
        return rss_mb(self.proc.pid)

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.proc.pid)

    def settle(self, idle: float = 0.1, timeout: float = 180) -> float:
        """Wait until the server uses under ``idle`` of a core (background work at start-up done)."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            c0 = self.cpu_seconds()
            time.sleep(2)
            if (self.cpu_seconds() - c0) / 2 < idle:
                break
        return time.monotonic() - t0

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# --------------------------------------------------------------------------- one request, as curl


class Client:
    """One keep-alive connection; :meth:`predict` = upload + call ``endpoint`` + read the stream."""

    def __init__(
        self, port: int, parameters: list[dict], model: str | None, endpoint: str = "predict", session_hash: str | None = None
    ) -> None:
        self.port = port
        self.session_hash = session_hash
        self.parameters = parameters
        self.model = model
        self.endpoint = endpoint
        self.conn: http.client.HTTPConnection | None = None

    def _request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None) -> tuple[int, bytes]:
        for attempt in (0, 1):  # a keep-alive connection the server closed is reopened once
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
            try:
                self.conn.request(method, path, body=body, headers=headers or {})
                resp = self.conn.getresponse()
                data = resp.read()
                if resp.getheader("connection", "").lower() == "close":
                    self.conn.close()
                    self.conn = None
                return resp.status, data
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                self.conn.close()
                self.conn = None
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def _inputs(self, file_data: dict) -> list:
        data = []
        for p in self.parameters:
            comp = str(p.get("component", "")).lower()
            name = str(p.get("parameter_name", "")).lower()
            python_type = str((p.get("python_type") or {}).get("type", "")).lower()
            if comp in FILE_COMPONENTS or python_type == "filepath":  # a component's file, or gr.api's FileData
                data.append(file_data)
            elif comp == "imageeditor":
                data.append({"background": file_data, "layers": [], "composite": file_data})
            elif "model" in name and self.model is not None:
                data.append(self.model)
            else:
                data.append(p.get("parameter_default"))
        return data

    def predict(self, image: Path, payload: bytes, limit: int | None = 300) -> tuple[bool, str]:
        """Upload ``payload`` as ``image``'s name and call the endpoint → (completed, the event's data
        or what went wrong), the data cut to ``limit`` characters (``None``: whole)."""
        boundary = uuid.uuid4().hex
        body = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="{image.name}"\r\n'
            f"Content-Type: application/octet-stream\r\n\r\n"
        ).encode() + payload + f"\r\n--{boundary}--\r\n".encode()
        status, out = self._request("POST", "/gradio_api/upload", body, {"Content-Type": f"multipart/form-data; boundary={boundary}"})
        if status != 200:
            return False, f"upload {status}: {out[:200]!r}"
        path = json.loads(out)[0]
        file_data = {"path": path, "orig_name": image.name, "meta": {"_type": "gradio.FileData"}}
        body = {"data": self._inputs(file_data)}
        if self.session_hash:  # Gradio's REST body accepts one: calls then share a session instead of opening one each
            body["session_hash"] = self.session_hash
        call = json.dumps(body).encode()
        status, out = self._request("POST", f"/gradio_api/call/{self.endpoint}", call, {"Content-Type": "application/json"})
        if status != 200:
            return False, f"call {status}: {out[:200]!r}"
        event_id = json.loads(out)["event_id"]
        status, out = self._request("GET", f"/gradio_api/call/{self.endpoint}/{event_id}")
        if status != 200:
            return False, f"stream {status}: {out[:200]!r}"
        event = None
        for line in out.decode("utf-8", "replace").splitlines():
            if line.startswith("event:"):
                event = line[6:].strip()
            elif line.startswith("data:") and event in ("complete", "error"):
                return event == "complete", line[5:].strip()[:limit]
        return False, f"no complete event in the stream: {out[:200]!r}"


# --------------------------------------------------------------------------- phases


@dataclass
class Phase:
    clients: int
    latencies: list[float] = field(default_factory=list)  # seconds, successful requests
    failures: list[str] = field(default_factory=list)
    wall: float = 0.0
    rss: list[tuple[int, float]] = field(default_factory=list)  # (requests done, server RSS MB) along the way
    server_cpu: float = 0.0  # CPU seconds the server process used in the phase
    client_cpu: float = 0.0  # CPU seconds this process (the clients) used

    @property
    def requests(self) -> int:
        return len(self.latencies) + len(self.failures)

    def pct(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        s = sorted(self.latencies)
        return 1000 * s[min(len(s) - 1, max(0, round(q / 100 * len(s) + 0.5) - 1))]

    @property
    def throughput(self) -> float:
        return len(self.latencies) / self.wall if self.wall else float("nan")

    def row(self) -> dict:
        return {
            "clients": self.clients, "requests": self.requests, "failures": len(self.failures),
            "p50_ms": round(self.pct(50), 1), "p95_ms": round(self.pct(95), 1), "p99_ms": round(self.pct(99), 1),
            "mean_ms": round(1000 * statistics.fmean(self.latencies), 1) if self.latencies else None,
            "throughput_rps": round(self.throughput, 2),
            "server_cpu_ms_per_request": round(1000 * self.server_cpu / max(1, self.requests), 1),
            "server_cores_busy": round(self.server_cpu / self.wall, 2) if self.wall else None,
            "client_cpu_ms_per_request": round(1000 * self.client_cpu / max(1, self.requests), 1),
        }


def run_phase(
    server: Server, images: list[Path], n: int, clients: int, model: str | None, endpoint: str = "predict", sessions: bool = False
) -> Phase:
    params = server.info["named_endpoints"][f"/{endpoint}"]["parameters"]
    payloads = {p: p.read_bytes() for p in images}
    phase = Phase(clients)
    lock = threading.Lock()
    counter = iter(range(n))

    def worker() -> None:
        client = Client(server.port, params, model, endpoint, uuid.uuid4().hex if sessions else None)
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                return
            img = images[i % len(images)]
            t0 = time.perf_counter()
            try:
                ok, msg = client.predict(img, payloads[img])
            except Exception as exc:  # noqa: BLE001 - a failed request is counted, not fatal
                ok, msg = False, f"{type(exc).__name__}: {exc}"
            dt = time.perf_counter() - t0
            with lock:
                (phase.latencies.append(dt) if ok else phase.failures.append(f"{img.name}: {msg}"))

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(clients)]
    cpu0, client0 = server.cpu_seconds(), time.process_time()
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    next_mark = 0
    while any(t.is_alive() for t in threads):  # sample RSS at every tenth of the requests: a leak grows, a warm-up levels off
        done = phase.requests
        if done >= next_mark:
            phase.rss.append((done, round(server.rss_mb, 1)))
            next_mark = done + max(1, n // 10)
        time.sleep(0.05)
    phase.wall = time.perf_counter() - t0
    phase.server_cpu, phase.client_cpu = server.cpu_seconds() - cpu0, time.process_time() - client0
    phase.rss.append((phase.requests, round(server.rss_mb, 1)))
    return phase


def run_interleaved(
    servers: dict[str, tuple[Server, str]], images: list[Path], n: int, model: str | None, sessions: bool = False
) -> dict[str, Phase]:
    """``n`` requests at 1 client to each server, taking turns request by request (the same image to
    each, the order swapped every request): whatever the machine's speed does meanwhile, both see it.

    Each server's wall time is the sum of its own requests' (it served them back to back), and its
    and the client's CPU are counted around its own requests only.
    """
    clients = {name: Client(srv.port, srv.info["named_endpoints"][f"/{ep}"]["parameters"], model, ep,
                            uuid.uuid4().hex if sessions else None) for name, (srv, ep) in servers.items()}
    payloads = {p: p.read_bytes() for p in images}
    phases = {name: Phase(1) for name in servers}
    names = list(servers)
    for i in range(n):
        img = images[i % len(images)]
        for name in names if i % 2 == 0 else names[::-1]:
            server, phase = servers[name][0], phases[name]
            cpu0, client0 = server.cpu_seconds(), time.process_time()
            t0 = time.perf_counter()
            try:
                ok, msg = clients[name].predict(img, payloads[img])
            except Exception as exc:  # noqa: BLE001 - a failed request is counted, not fatal
                ok, msg = False, f"{type(exc).__name__}: {exc}"
            dt = time.perf_counter() - t0
            phase.client_cpu += time.process_time() - client0
            phase.server_cpu += server.cpu_seconds() - cpu0
            phase.wall += dt
            (phase.latencies.append(dt) if ok else phase.failures.append(f"{img.name}: {msg}"))
    return phases


def merge(phases: list[Phase]) -> Phase:
    """One phase out of several rounds of it: latencies pooled, wall and CPU times summed."""
    out = Phase(phases[0].clients)
    done = 0
    for ph in phases:
        out.latencies += ph.latencies
        out.failures += ph.failures
        out.wall += ph.wall
        out.server_cpu += ph.server_cpu
        out.client_cpu += ph.client_cpu
        out.rss += [(done + n, mb) for n, mb in ph.rss if not (out.rss and n == 0)]  # a round's start is the last one's end
        done += ph.requests
    return out


def parse_target(name: str) -> tuple[str, dict[str, str]]:
    """``app``, ``floor``, ``infer``, or a variant ``BASE+KEY=VALUE[+KEY=VALUE...]`` that runs BASE
    with those environment settings → (BASE, settings).

    >>> parse_target("app+STN_CONCURRENCY=4+STN_THREADS=1")
    ('app', {'STN_CONCURRENCY': '4', 'STN_THREADS': '1'})
    """
    base, *settings = name.split("+")
    if base not in TARGETS or not all("=" in kv and kv.split("=", 1)[0] for kv in settings):
        raise RuntimeError(f"unknown target {name!r}: use {', '.join(TARGETS)}, or BASE+KEY=VALUE for a variant")
    return base, dict(kv.split("=", 1) for kv in settings)


def _start(name: str, args: argparse.Namespace, log_dir: Path) -> tuple[Server, str, float]:
    name, settings = parse_target(name)
    script, env = TARGETS[name]
    if name == "app" and args.app:
        script = args.app
    if not (REPO / script).exists():
        raise FileNotFoundError(f"{script} is not there")
    env = dict(env, **settings)
    if args.model:
        env["STN_FLOOR_MODEL"] = args.model
    if args.floor_input and name != "app":
        env["STN_FLOOR_INPUT"] = args.floor_input
    endpoint = args.endpoint if name == "app" else "predict"  # the floor and infer apps serve predict only
    print(f"{name}: starting {script} ...", file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    server = Server(script, env, log_dir)
    started = time.perf_counter() - t0
    if f"/{endpoint}" not in server.info.get("named_endpoints", {}):
        server.stop()
        raise RuntimeError(f"{script} has no api_name='{endpoint}' endpoint: {sorted(server.info.get('named_endpoints', {}))}")
    return server, endpoint, started


def bench_targets(names: list[str], images: list[Path], args: argparse.Namespace, log_dir: Path) -> list[dict]:
    """Start every server, then measure them in alternating rounds.

    Each round runs ``single / rounds`` requests at 1 client on the servers taking turns request by
    request (:func:`run_interleaved`), then ``requests / rounds`` at ``clients`` clients on each in
    turn, the order reversed every other round.
    On a shared machine whose speed drifts from minute to minute (a cloud VM), the app and the
    floor are then measured under the same conditions, and their ratios mean something; measured
    one after the other, the floor alone has been seen at 73 and at 132 req/s within five minutes.
    """
    servers: dict[str, tuple[Server, str, float]] = {}
    info: dict[str, dict] = {}
    try:
        for name in names:
            servers[name] = _start(name, args, log_dir)
        for name, (server, endpoint, _) in servers.items():
            settled = server.settle()
            rss_start = server.rss_mb
            warm = run_phase(server, images, args.warmup, 1, args.model, endpoint, args.session_per_client)
            if warm.failures:
                raise RuntimeError(f"{name}: warm-up failed: {warm.failures[0]}")
            info[name] = {"settle_s": round(settled, 1), "rss_start_mb": round(rss_start, 1)}
        for name, (server, _, _) in servers.items():
            server.settle()
            info[name]["rss_before_mb"] = round(server.rss_mb, 1)
        singles: dict[str, list[Phase]] = {n: [] for n in servers}
        many: dict[str, list[Phase]] = {n: [] for n in servers}
        rounds = max(1, args.rounds)
        for r in range(rounds):
            order = list(servers) if r % 2 == 0 else list(reversed(servers))
            # 1 client: the servers take turns request by request (paired: a drift in the machine's speed
            # within the round slows both alike); then the concurrent phase on each in turn
            share = args.single // rounds + (1 if r < args.single % rounds else 0)
            for name, phase in run_interleaved({n: (servers[n][0], servers[n][1]) for n in order}, images, share, args.model,
                                               args.session_per_client).items():
                singles[name].append(phase)
            share = args.requests // rounds + (1 if r < args.requests % rounds else 0)
            for name in order:
                server, endpoint, _ = servers[name]
                many[name].append(run_phase(server, images, share, args.clients, args.model, endpoint, args.session_per_client))
            print(f"round {r + 1}/{rounds}: " + ", ".join(
                f"{n} p50 {singles[n][-1].pct(50):.0f} ms, {many[n][-1].throughput:.0f} req/s" for n in servers), file=sys.stderr, flush=True)
        results = []
        for name, (server, endpoint, started) in servers.items():
            single, conc = merge(singles[name]), merge(many[name])
            rss_after = server.rss_mb
            results.append({
                "target": name, "endpoint": endpoint, "script": server.script, "startup_s": round(started, 1), **info[name],
                "alive": server.proc.poll() is None, "rss_after_mb": round(rss_after, 1),
                "rss_growth_mb": round(rss_after - info[name]["rss_before_mb"], 1),
                "single": single.row(), "concurrent": conc.row(), "rss_along_mb": conc.rss, "rounds": rounds,
                "failure_samples": (single.failures + conc.failures)[:5],
            })
        return results
    finally:
        for server, _, _ in servers.values():
            server.stop()


def machine() -> str:
    import gradio
    import torch

    from stn.train import cpu_name

    cpu = cpu_name()

    return f"{cpu}, {os.cpu_count()} cores; Python {platform.python_version()}, torch {torch.__version__}, gradio {gradio.__version__}"


def report(results: list[dict], args: argparse.Namespace) -> str:
    def server(r: dict) -> str:
        return r["target"] if r.get("endpoint", "predict") == "predict" else f"{r['target']} ({r['endpoint']})"

    lines = [
        f"load test {_dt.datetime.now().isoformat(timespec='minutes')}; {machine()}",
        (f"{args.single} requests at 1 client, then {args.requests} at {args.clients} clients, in {args.rounds} alternating rounds; "
         f"{args.n_images} example images; model {args.model or 'default'}; app endpoint {args.endpoint}"
         f"{'; one session per client (session_hash)' if args.session_per_client else '; a new session per call'}"),
        "",
        "| server | clients | requests | failures | p50 ms | p95 ms | p99 ms | req/s | server CPU ms/req | server cores busy | client CPU ms/req |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        for key in ("single", "concurrent"):
            p = r[key]
            lines.append(
                f"| {server(r)} | {p['clients']} | {p['requests']} | {p['failures']} | {p['p50_ms']:.0f} | "
                f"{p['p95_ms']:.0f} | {p['p99_ms']:.0f} | {p['throughput_rps']:.1f} | {p['server_cpu_ms_per_request']:.0f} | "
                f"{p['server_cores_busy']:.2f} | {p['client_cpu_ms_per_request']:.0f} |"
            )
    lines += ["", "| server | start s | RSS at start MB | RSS before MB | RSS after MB | growth MB | alive |", "|---|---:|---:|---:|---:|---:|---|"]
    for r in results:
        lines.append(f"| {server(r)} | {r['startup_s']} | {r['rss_start_mb']:.0f} | {r['rss_before_mb']:.0f} | {r['rss_after_mb']:.0f} | "
                     f"{r['rss_growth_mb']:+.1f} | {'yes' if r['alive'] else 'NO'} |")
    for r in results:
        lines.append(f"{server(r)} RSS (MB) after n of the concurrent requests: "
                     + ", ".join(f"{n}: {mb:.0f}" for n, mb in r["rss_along_mb"]))
    by = {r["target"]: r for r in results}
    floor = by.get("floor")
    if floor:
        lines += ["", "| vs floor | p50 ratio (1 client) | p50 ratio (concurrent) | throughput ratio (concurrent) |", "|---|---:|---:|---:|"]
        for r in results:
            if r is floor:
                continue
            lines.append(
                f"| {server(r)} | {r['single']['p50_ms'] / floor['single']['p50_ms']:.2f} | "
                f"{r['concurrent']['p50_ms'] / floor['concurrent']['p50_ms']:.2f} | "
                f"{r['concurrent']['throughput_rps'] / floor['concurrent']['throughput_rps']:.2f} |"
            )
        main = by.get("app") or by.get("infer")
        if main:
            checks = {
                "0 failures": main["single"]["failures"] + main["concurrent"]["failures"] == 0,
                "p50 ≤ 1.5× floor": main["single"]["p50_ms"] <= 1.5 * floor["single"]["p50_ms"],
                f"throughput at {args.clients} clients ≥ 0.6× floor": main["concurrent"]["throughput_rps"] >= 0.6 * floor["concurrent"]["throughput_rps"],
                "RSS growth < 50 MB": main["rss_growth_mb"] < 50,
                "server alive": main["alive"],
            }
            lines += ["", f"targets ({server(main)}): " + "; ".join(f"{k}: {'PASS' if v else 'FAIL'}" for k, v in checks.items())]
    for r in results:
        if r["failure_samples"]:
            lines += ["", f"{r['target']} failures, first {len(r['failure_samples'])}:", *("  " + f for f in r["failure_samples"])]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--targets", default=None,
                    help="comma list of app, floor, infer, or BASE+KEY=VALUE variants run with those environment "
                         "settings (default: app,floor; floor,infer without app.py)")
    ap.add_argument("--requests", type=int, default=1000, help="requests in the concurrent phase")
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--single", type=int, default=100, help="requests at 1 client")
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=5,
                    help="the servers take turns in this many rounds, each with its share of the requests (1: one after the other)")
    ap.add_argument("--model", default=None, help="model name sent to predict (default: the app's default)")
    ap.add_argument("--images", type=Path, default=None, help="folder of example images (default: assets/examples, else MNIST digits on paper)")
    ap.add_argument("--floor-input", choices=["image", "file"], default=None, help="input component of the floor app")
    ap.add_argument("--endpoint", choices=ENDPOINTS, default="predict",
                    help="the app's endpoint to drive: predict (the views and the JSON) or read (the JSON only)")
    ap.add_argument("--app", default=None, help="script to run as the app target (default app.py): to compare app variants")
    ap.add_argument("--session-per-client", action="store_true",
                    help="each client sends its own session_hash in the REST body (app and floor alike), as a script "
                         "that keeps a session would; without it every call opens a new Gradio session, as plain curl does")
    ap.add_argument("--quick", action="store_true", help="20 + 100 requests: check that it all runs")
    ap.add_argument("--logs", type=Path, default=None, help="keep the servers' logs in this folder (default: a temporary one)")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = ap.parse_args(argv)
    if args.quick:
        args.single, args.requests, args.warmup, args.rounds = 20, 100, 3, 2
    targets = args.targets.split(",") if args.targets else (["app", "floor"] if (REPO / "app.py").exists() else ["floor", "infer"])
    try:
        for t in targets:
            parse_target(t)
    except RuntimeError as exc:
        print(str(exc), file=sys.stderr)
        return 2
    if args.model is None:
        import stn

        names = stn.list_models()
        args.model = stn.DEFAULT_MODEL if stn.DEFAULT_MODEL in names or not names else names[0]
    if args.logs is not None:
        try:
            args.logs.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            print(f"--logs {args.logs}: cannot create this folder ({exc.strerror})", file=sys.stderr)
            return 2
    with tempfile.TemporaryDirectory(prefix="stn-load-") as tmp:
        tmp = Path(tmp)
        images = example_images(args.images, tmp)
        args.n_images = len(images)
        try:
            results = bench_targets(targets, images, args, args.logs or tmp)
        except (RuntimeError, FileNotFoundError) as exc:
            print(str(exc), file=sys.stderr)
            return 1
        for r in results:
            print(f"{r['target']}: p50 {r['single']['p50_ms']:.0f} ms (1 client), {r['concurrent']['throughput_rps']:.1f} req/s "
                  f"({args.clients} clients), {r['single']['failures'] + r['concurrent']['failures']} failures", file=sys.stderr, flush=True)
    text = report(results, args)
    print(text)
    if args.json:
        args.json.write_text(json.dumps({"results": results, "report": text}, indent=2) + "\n")
    failed = any(r["single"]["failures"] or r["concurrent"]["failures"] or not r["alive"] for r in results)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
