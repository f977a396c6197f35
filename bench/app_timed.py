"""``app.py`` with ``read_file`` and its parts timed inside the server: wall and thread CPU per call,
printed (medians of the last 100 calls) to the server's log. What the load test's requests cost in
the library's work, in the server, against the same work timed in one process. The stages run in the
server process (``STN_READERS=0`` unless set); with ``STN_READERS=1`` the log has the round trip to the
reader process (``reader``) instead.

    python bench/load.py --app bench/app_timed.py --rounds 1    # the log lies beside the other servers'
"""

from __future__ import annotations

import os
import statistics
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
# the stages run in this process (with a reader process the server would only wait for it)
os.environ.setdefault("STN_READERS", "0")

import app  # after the setting above

_times: dict[str, list[tuple[float, float]]] = defaultdict(list)
_lock = threading.Lock()


def _timed(name: str, fn):
    def wrapper(*args, **kwargs):
        w0, c0 = time.perf_counter(), time.thread_time()
        try:
            return fn(*args, **kwargs)
        finally:
            w, c = 1000 * (time.perf_counter() - w0), 1000 * (time.thread_time() - c0)
            with _lock:
                _times[name].append((w, c))
                if name == "read_file" and len(_times[name]) % 100 == 0:
                    parts = "; ".join(
                        f"{k} {statistics.median(x[0] for x in v[-100:]):.2f}/{statistics.median(x[1] for x in v[-100:]):.2f}"
                        for k, v in _times.items())
                    print(f"timed (wall/cpu ms, median of the last 100): {parts}", flush=True)
    return wrapper


app.read_file = _timed("read_file", app.read_file)
app.ENGINE.prepare = _timed("prepare", app.ENGINE.prepare)
app.ENGINE._predict_tensor = _timed("model", app.ENGINE._predict_tensor)
app._main_outputs = _timed("outputs", app._main_outputs)
app.Session.of = _timed("session", app.Session.of)
app.ReaderPool.read = _timed("reader", app.ReaderPool.read)  # with STN_READERS=1: the round trip to the worker

if __name__ == "__main__":
    app.main()
