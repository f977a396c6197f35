"""``python app.py`` as a Space or ``docker run`` starts it: what the process reaches for outside, and how it stops.

The server is started in a subprocess under a Python audit hook that records every name it looks up and
every address it connects to; Gradio's analytics, its version check and the Hub's telemetry looked up
api.gradio.app and huggingface.co unless the environment turned them off. Then it gets SIGTERM, as
``docker stop`` sends it: as a container's PID 1, Python ignored it (no default action there) and was killed
10 s later; now it closes the server and its reader process and exits 0.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads child processes from /proc"),
]

LOOPBACK = ("localhost", "127.0.0.1", "::1", "0.0.0.0", "")

WRAPPER = """
import json, runpy, sys
log = open(sys.argv[1], "a", buffering=1)

def hook(event, args):
    if event == "socket.getaddrinfo":
        log.write(json.dumps(["lookup", str(args[0])]) + "\\n")
    elif event == "socket.connect" and isinstance(args[1], tuple):
        log.write(json.dumps(["connect", str(args[1][0])]) + "\\n")

sys.addaudithook(hook)
sys.path.insert(0, sys.argv[2])
sys.argv = [sys.argv[2] + "/app.py"]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _children(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.fixture(scope="module")
def server(tmp_path_factory, start_server):
    if not (REPO / "app.py").exists():
        pytest.skip("app.py is not there yet")
    d = tmp_path_factory.mktemp("server")
    (d / "tmp").mkdir()
    wrapper = d / "audited_app.py"
    wrapper.write_text(WRAPPER)
    audit = d / "audit.jsonl"
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("GRADIO_ANALYTICS_ENABLED", "HF_HUB_DISABLE_TELEMETRY")}
    env.update(GRADIO_SERVER_NAME="127.0.0.1", GRADIO_SERVER_PORT=str(port), GRADIO_TEMP_DIR=str(d / "gradio"),
               TMPDIR=str(d / "tmp"), STN_READERS="1", PYTHONUNBUFFERED="1")
    log = d / "app.log"
    proc = start_server([sys.executable, str(wrapper), str(audit), str(REPO)], env, port, log)
    try:
        yield {"proc": proc, "audit": audit, "log": log, "tmp": d / "tmp", "port": port}
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(20)


def test_the_server_reaches_for_nothing_outside(server):
    time.sleep(5)  # Gradio's launch-time calls run in background threads
    calls = [json.loads(line) for line in server["audit"].read_text().splitlines()] if server["audit"].exists() else []
    outside = sorted({host for _, host in calls if host not in LOOPBACK and not host.startswith("127.")})
    assert outside == [], f"the server looked up or connected to {outside}"


def test_a_phone_gets_the_page_gzipped_and_no_web_fonts(server):
    """The page (the app's configuration inside it) went out as 270 kB of plain text; Soft's Montserrat and IBM Plex
    Mono were 197 kB of downloads more (bench/README.md, twenty-first pass)."""
    import gzip
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", server["port"], timeout=30)
    conn.request("GET", "/", headers={"Accept-Encoding": "gzip"})
    r = conn.getresponse()
    packed = r.read()
    assert r.getheader("Content-Encoding") == "gzip"
    conn.request("GET", "/")
    r = conn.getresponse()
    plain = r.read()
    assert r.getheader("Content-Encoding") is None and gzip.decompress(packed) == plain
    assert len(packed) < len(plain) / 5, (len(packed), len(plain))
    conn.request("GET", "/theme.css")
    css = conn.getresponse().read().decode()
    conn.close()
    assert "--font:" in css and "@font-face" not in css and "Montserrat" not in css and "Plex" not in css, css[:500]
    assert "Montserrat" not in plain.decode() and "static/fonts" not in plain.decode()


def test_sigterm_closes_the_server_and_its_reader(server):
    proc = server["proc"]
    deadline = time.monotonic() + 120
    while not (readers := _children(proc.pid)) and time.monotonic() < deadline:
        time.sleep(0.5)  # the reader process starts in the background
    assert readers, "no reader process started (STN_READERS=1)"
    assert list(server["tmp"].glob("stn-replay-frames-*")), "the replay frames' folder is made at start-up"
    proc.send_signal(signal.SIGTERM)
    try:
        code = proc.wait(60)
    except subprocess.TimeoutExpired:
        pytest.fail("SIGTERM did not stop the server within 60 s")
    assert code == 0, f"exit status {code} (negative: killed by the signal):\n{server['log'].read_text()[-2000:]}"
    deadline = time.monotonic() + 20
    while any(_alive(pid) for pid in readers) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(_alive(pid) for pid in readers), "a reader process outlived the server"
    assert not list(server["tmp"].glob("stn-replay-frames-*")), "the replay frames' folder was left behind"
    assert "Traceback" not in server["log"].read_text()


def test_torch_jit_deprecations_stay_out_of_the_log():
    """The zoo is traced at start-up while another thread reads the examples; `warnings.catch_warnings` is not
    thread-safe, so torch.jit's deprecation notes reached the log now and then. The server filters them."""
    code = ("import warnings, app\n"
            "with warnings.catch_warnings(record=True) as caught:\n"  # as torch.jit.trace warns, registry aside
            "    warnings.warn_explicit('`torch.jit.trace` is deprecated.', FutureWarning, 'torch/jit/_trace.py', 1,\n"
            "                           module='torch.jit._trace')\n"
            "print(len(caught))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300, check=False,
                         env={**os.environ, "STN_READERS": "0", "PYTHONPATH": str(REPO)})
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "0", out.stdout[-500:]


@pytest.mark.parametrize("zero_gpu", ["", "true"])
def test_only_zerogpu_hardware_changes_how_it_reads(tmp_path, zero_gpu):
    """Every Gradio Space has the `spaces` package, CPU ones too: its presence turned the reader process and the
    early drawing off on a free CPU Space, unlike anything benchmarked here. Only SPACES_ZERO_GPU means ZeroGPU."""
    (tmp_path / "spaces.py").write_text("def GPU(duration=60):\n    return lambda fn: ('wrapped', fn)\n")
    code = "import app\nprint(app.ZERO_GPU, app.gpu(len) is len)\n"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300, check=False,
                         env={**os.environ, "STN_READERS": "0", "PYTHONPATH": f"{tmp_path}{os.pathsep}{REPO}",
                              "SPACES_ZERO_GPU": zero_gpu})
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == ("True False" if zero_gpu else "False True")
