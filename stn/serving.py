"""Serving the main view: what a page shows for one reading, in this process or in a worker process.

:func:`main_view` turns a :class:`stn.inference.Result` into the main view's parts (the grid
figure, the reading panel, θ, the JSON answer). :class:`ReaderPool` reads images and draws those
parts in worker processes (``python -m stn.serving``, each with its own :class:`~stn.inference.Engine`):

Why a process: on the CPU a web server's own Python (Gradio's event loop, its request handling)
and the reading's Python (pre-processing glue, figures) take turns on one GIL, so a 2-core server
used about 1.1 cores and each stage ran 1.3–1.8× slower than alone (``bench/README.md``, issue 7).
In a worker the reading has a core and warm caches of its own; the server only waits for it.

Reading ahead: :meth:`ReaderPool.read_ahead` starts a reading before anyone asks for it (the app calls
it when an upload lands, before the ``predict`` that reads it arrives); :meth:`ReaderPool.read` and
:meth:`ReaderPool.answer` then take that reading instead of starting another. At 1 client on a 2-core
CPU this cut the app's p50 from 1.55–1.59× a bare Gradio app's to 1.30–1.37× (issue 7's seventh pass).

Nothing here imports a UI library.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import CancelledError, Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import asdict, replace
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from stn import viz
from stn.inference import Engine, ImageError, ModelInfo, Reading, Result, UnknownModelError

if TYPE_CHECKING:
    from stn.transforms import Transform

__all__ = ["ReaderPool", "ReaderUnavailable", "decode_result", "encode_result", "figure_json", "lean", "main_view", "plot_height", "reading_panel"]

log = logging.getLogger(__name__)


def plot_height(size: tuple[int, int], width: int = 440, lo: int = 220, hi: int = 400) -> int:
    """Pixel height of a ``width``-wide plot of an ``(H, W)`` canvas, within ``[lo, hi]``."""
    h, w = size
    return int(min(hi, max(lo, width * h / w + 40)))


def reading_panel(result: Result) -> str:
    """The reading panel: the verdict, the crop(s), the class bars and the plain CNN's (HTML)."""
    r, b = result.reading, result.baseline
    return viz.reading_html(
        r.label, r.top(), r.crops if result.info.has_transformer else [result.input],
        transformer=result.info.has_transformer, head_labels=r.head_labels if result.info.heads > 1 else (),
        baseline=(b.model, b.label, b.top(3)) if b is not None else None, touching=result.touching,
        weak=(r.top_logit, r.sure_logit) if r.weak else None, baseline_weak=b is not None and b.weak,  # type: ignore[arg-type]
    )


def main_view(result: Result, transform: Transform | None, baseline: Callable[[], object] | None = None) -> tuple[dict, str, str, dict]:
    """The main view of a reading: the grid figure (a plotly dict), the reading panel and θ (HTML),
    and the JSON answer.

    ``baseline`` (from :meth:`stn.inference.Engine.predict_early`) is awaited only once the parts
    that do not need the plain CNN's answer are drawn.
    """
    info = result.info
    fig = viz.grid_figure(result.input, transform, result.reading.params, info.crop_size, height=plot_height(info.input_size))
    theta = viz.theta_html(info.transform, result.reading.params, info.input_size, info.transform_options)
    if baseline is not None:
        baseline()
    return fig, reading_panel(result), theta, result.to_json()


def lean(result: Result) -> Result:
    """``result`` without what only the main view draws (crops, the baseline's reading, the
    pre-processing details): what a session keeps."""
    return replace(result, reading=replace(result.reading, crops=[]), baseline=None, prepared=None, timings={})


def figure_json(fig: dict) -> str:
    """A plotly dict figure as JSON text (orjson where installed: ~10× json's speed)."""
    try:
        import orjson
    except ImportError:
        return json.dumps(fig)
    return orjson.dumps(fig, option=orjson.OPT_SERIALIZE_NUMPY).decode()




class ReaderUnavailable(RuntimeError):
    """No worker can read now (starting, restarting or failed): read in this process instead."""


# --------------------------------------------------------------------------- the messages
# JSON through the pipes, arrays as base64 bytes: the server never unpickles what a worker sends.

_ERRORS: dict[str, type[Exception]] = {"ImageError": ImageError, "UnknownModelError": UnknownModelError, "ValueError": ValueError}


def _array(a: np.ndarray) -> dict:
    a = np.ascontiguousarray(a)
    return {"dtype": a.dtype.str, "shape": list(a.shape), "data": base64.b64encode(a.tobytes()).decode("ascii")}


def _from_array(d: dict) -> np.ndarray:
    dtype = np.dtype(d["dtype"])
    if dtype.kind not in "biuf":
        raise ValueError(f"unexpected array type {dtype} from a reader process")
    return np.frombuffer(base64.b64decode(d["data"]), dtype=dtype).reshape(d["shape"]).copy()


def _number(v: object) -> float | None:
    if v is None:
        return None
    if not isinstance(v, (int, float)) or isinstance(v, bool):
        raise ValueError(f"unexpected number {v!r} from a reader process")
    return float(v)


def encode_result(result: Result) -> dict:
    """A lean :class:`~stn.inference.Result` (no crops, baseline or pre-processing details) as JSON types."""
    r = result.reading
    return {
        "model": result.model, "info": asdict(result.info), "input": _array(result.input),
        "reading": {"model": r.model, "label": r.label, "probs": _array(r.probs), "class_names": list(r.class_names),
                    "params": [_array(p) for p in r.params], "head_labels": list(r.head_labels),
                    "top_logit": r.top_logit, "sure_logit": r.sure_logit},
    }


def decode_result(d: dict) -> Result:
    """:func:`encode_result`'s inverse."""
    info = ModelInfo(**{**d["info"], "input_size": tuple(d["info"]["input_size"]), "crop_size": tuple(d["info"]["crop_size"])})
    r = d["reading"]
    reading = Reading(model=r["model"], label=r["label"], probs=_from_array(r["probs"]), class_names=list(r["class_names"]),
                      params=[_from_array(p) for p in r["params"]], crops=[], head_labels=list(r["head_labels"]),
                      top_logit=_number(r.get("top_logit")), sure_logit=_number(r.get("sure_logit")))
    return Result(model=d["model"], info=info, input=_from_array(d["input"]), reading=reading, baseline=None)


try:  # orjson (Gradio's own) where installed: a reading's 40 kB message in a fraction of json's time
    import orjson

    def _dumps(message: dict) -> bytes:
        return orjson.dumps(message)

    _loads: Callable[[bytes], dict] = orjson.loads
except ImportError:

    def _dumps(message: dict) -> bytes:
        return json.dumps(message).encode()

    _loads = json.loads


def _send(conn: Connection, message: dict) -> None:
    conn.send_bytes(_dumps(message))


def _receive(conn: Connection) -> dict:
    return _loads(conn.recv_bytes())


# --------------------------------------------------------------------------- in the worker process


def _serve(conn_in: Connection, conn_out: Connection, directory: str | None, threads: int, warm: list[str]) -> None:
    """The worker's loop (``python -m stn.serving``): one request at a time, until the server hangs up."""
    import torch

    # Ctrl-C in a terminal reaches the whole process group: the server closes its workers itself, and a
    # worker's own KeyboardInterrupt traceback only interleaved with the server's goodbye.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(threads)
    engine = Engine(directory or None, device="cpu")
    for name in warm:  # the frozen batch-1 copies, before the first request needs them
        if name in engine.models:
            engine._ensure_traced(name)
    try:
        _send(conn_out, {"ready": True})
    except OSError:  # the server is gone already
        return
    while True:
        try:
            request = _receive(conn_in)
        except (EOFError, OSError):  # the server hung up: done
            return
        image = request["path"] if "path" in request else base64.b64decode(request["bytes"])
        t0 = time.perf_counter()
        try:
            if request.get("answer_only"):  # the JSON answer, nothing drawn
                reply: dict = {"ok": {"answer": engine.predict(image, request["model"]).to_json()}}
            else:
                result, baseline = engine.predict_early(image, request["model"])
                fig, panel, theta, answer = main_view(result, engine.transform(request["model"]), baseline)
                # the figure as JSON text: one string to pass on, which the server sends as it is
                reply = {"ok": {"figure": figure_json(fig), "panel": panel, "theta": theta, "answer": answer,
                                "result": encode_result(lean(result))}}
        except Exception as exc:  # noqa: BLE001 - the library's errors (and any other) go back to the server
            reply = {"error": {"type": type(exc).__name__, "message": str(exc)}}
        reply["ms"] = 1000 * (time.perf_counter() - t0)  # the reading's wall time in the worker (benchmarks)
        try:
            _send(conn_out, reply)
        except OSError:
            return


# --------------------------------------------------------------------------- in the server


class _Worker:
    """One ``python -m stn.serving`` process and the two pipes to it."""

    def __init__(self, directory: str | None, threads: int, warm: tuple[str, ...]) -> None:
        req_r, req_w = os.pipe()
        rep_r, rep_w = os.pipe()
        # a process of its own (not multiprocessing's spawn, which would import the server's
        # __main__, i.e. the whole app, again in the worker)
        here = str(Path(__file__).resolve().parent.parent)  # where this stn package lies, whatever the cwd
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH")) if p)}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "stn.serving", str(req_r), str(rep_w), directory or "", str(threads), *warm],
            pass_fds=(req_r, rep_w), stdin=subprocess.DEVNULL, env=env,
        )
        os.close(req_r)
        os.close(rep_w)
        self.requests = Connection(req_w, readable=False)
        self.replies = Connection(rep_r, writable=False)

    def wait_ready(self, timeout: float) -> bool:
        try:
            return self.replies.poll(timeout) and _receive(self.replies).get("ready") is True
        except (EOFError, OSError, ValueError):
            return False

    def kill(self) -> None:
        for conn in (self.requests, self.replies):
            conn.close()
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)


class ReaderPool:
    """Worker processes that read images for the main view (:func:`main_view`'s parts, the figure as
    JSON text, and the lean :class:`~stn.inference.Result`).

    Args:
        directory: the zoo (default :func:`stn.zoo.models_dir`).
        workers: processes (each holds the zoo: ~0.3 GB); each reads one image at a time.
        threads: torch threads per worker.
        warm: models whose frozen copies are made at start (the default model and its CNN).
        timeout: seconds a reading may take before its worker is replaced.
        ahead_limit: readings :meth:`read_ahead` lets wait for a worker at once (more are not started).
        ahead_ttl: seconds a reading started ahead is kept for the request that would use it.
        ahead_keep: readings started ahead kept at most (the oldest go first): bounds their memory
            when uploads are never read.

    :meth:`read` raises :class:`ReaderUnavailable` until :meth:`start` has a worker up, and when a
    worker died or hung (it is then replaced in the background): the caller reads in its own
    process, so no request is lost. The library's own errors (an unreadable image, an unknown
    model) are raised again here with their sentence. Nothing crosses the pipes but JSON: the server
    never unpickles what a worker sends.
    """

    def __init__(self, directory: Path | str | None = None, workers: int = 1, threads: int = 1,
                 warm: tuple[str, ...] = (), timeout: float = 30.0, start_timeout: float = 300.0,
                 ahead_limit: int = 2, ahead_ttl: float = 60.0, ahead_keep: int = 32) -> None:
        self.directory = str(directory) if directory else None
        self.workers, self.threads, self.warm = workers, threads, tuple(warm)
        self.timeout, self.start_timeout = timeout, start_timeout
        self._idle: queue.Queue[_Worker] = queue.Queue()
        self._all: set[_Worker] = set()
        self._lock = threading.Lock()
        self._closed = False
        # read_ahead: readings started before anyone asked, by (path, model), oldest first
        self.ahead_limit, self.ahead_ttl, self.ahead_keep = ahead_limit, ahead_ttl, ahead_keep
        self._ahead: OrderedDict[tuple[str, str], tuple[float, Future]] = OrderedDict()
        self._direct: dict[tuple[str, str], int] = {}  # read() calls reading now, without a reading ahead
        self._ahead_pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="stn-read-ahead")
        self.ahead_stats = {"started": 0, "used": 0, "skipped": 0, "expired": 0}

    @property
    def ready(self) -> bool:
        """Whether a worker is up (idle or reading)."""
        return bool(self._all)

    def start(self, wait: bool = False) -> None:
        """Start the workers (in the background unless ``wait``); :meth:`read` works once one is up."""
        self._closed = False
        for _ in range(self.workers - len(self._all)):
            self._add(wait)

    def _add(self, wait: bool) -> None:
        def run() -> None:
            try:
                worker = _Worker(self.directory, self.threads, self.warm)
            except OSError:
                log.warning("cannot start a reader process; reading in the server process", exc_info=True)
                return
            if not worker.wait_ready(self.start_timeout) or self._closed:
                if not self._closed:
                    log.warning("a reader process did not start; reading in the server process")
                worker.kill()
                return
            with self._lock:
                self._all.add(worker)
            self._idle.put(worker)

        if wait:
            run()
        else:
            threading.Thread(target=run, name="stn-reader-start", daemon=True).start()

    def read_ahead(self, path: str, model: str) -> bool:
        """Start reading the file at ``path`` with ``model`` now, for a :meth:`read` of the same file
        and model that is expected to follow (an upload, before its ``predict`` arrives).

        Returns whether a reading was started: not when no worker is up, when ``ahead_limit``
        readings already wait for one (under load nothing is gained by reading early), or when this
        file and model are already being read (ahead, or by a :meth:`read` that came first).
        """
        if not self._all or self._closed:
            return False
        key = (path, model)
        now = time.monotonic()
        with self._lock:
            self._expire(now)
            waiting = sum(1 for _, f in self._ahead.values() if not f.running() and not f.done())
            if key in self._ahead or key in self._direct or waiting >= self.ahead_limit:
                self.ahead_stats["skipped"] += 1
                return False
            while len(self._ahead) >= self.ahead_keep:
                self._drop_oldest()
            self._ahead[key] = (now, self._ahead_pool.submit(self._read, path, model))
            self.ahead_stats["started"] += 1
        return True

    def _expire(self, now: float) -> None:
        """Drop readings started ahead that nobody took within ``ahead_ttl`` (under ``self._lock``)."""
        while self._ahead and now - next(iter(self._ahead.values()))[0] >= self.ahead_ttl:
            self._drop_oldest()

    def _drop_oldest(self) -> None:
        _, (_, future) = self._ahead.popitem(last=False)
        future.cancel()  # not started yet: never will be
        self.ahead_stats["expired"] += 1

    def take(self, path: str, model: str) -> tuple[str, str, str, dict, Result] | None:
        """The reading of ``path`` with ``model`` that :meth:`read_ahead` started (waited for if still
        under way), or ``None`` when there is none. Raises what the reading raised."""
        with self._lock:
            entry = self._ahead.pop((path, model), None)
        return None if entry is None else self._wait(entry[1])

    def _wait(self, future: Future) -> tuple[str, str, str, dict, Result] | None:
        try:
            answer = future.result(timeout=2 * self.timeout)
        except (CancelledError, FutureTimeout):
            return None
        with self._lock:
            self.ahead_stats["used"] += 1
        return answer

    def read(self, image: str | bytes, model: str) -> tuple[str, str, str, dict, Result]:
        """Read ``image`` (a path or bytes) with ``model`` in a worker: ``(figure JSON, panel, θ, answer,
        lean result)``. A reading of the same file and model started by :meth:`read_ahead` is used
        (waited for if still under way) instead of reading again."""
        if not isinstance(image, str):
            return self._read(image, model)
        key = (image, model)
        with self._lock:
            entry = self._ahead.pop(key, None)
            # a read_ahead of this file arriving while it is read here (its upload's hook ran late) is not started
            self._direct[key] = self._direct.get(key, 0) + 1
        try:
            ahead = self._wait(entry[1]) if entry is not None else None
            return ahead if ahead is not None else self._read(image, model)
        finally:
            with self._lock:
                self._direct[key] -= 1
                if not self._direct[key]:
                    del self._direct[key]

    def answer(self, image: str | bytes, model: str) -> dict:
        """Only the JSON answer (:meth:`stn.inference.Result.to_json`) for ``image`` read with ``model``
        in a worker, nothing drawn; a reading started ahead is used when there is one."""
        ahead = self.take(image, model) if isinstance(image, str) else None
        return ahead[3] if ahead is not None else self._ask(image, model, answer_only=True)["answer"]

    def _read(self, image: str | bytes, model: str) -> tuple[str, str, str, dict, Result]:
        ok = self._ask(image, model)
        try:
            return ok["figure"], ok["panel"], ok["theta"], ok["answer"], decode_result(ok["result"])
        except (ValueError, KeyError, TypeError) as exc:  # not a reading: a worker gone wrong
            raise ReaderUnavailable(f"a reader process answered {exc!r}") from None

    def _ask(self, image: str | bytes, model: str, answer_only: bool = False) -> dict:
        """One request to an idle worker: its ``ok`` part, or the library's error raised again."""
        if not self._all:
            raise ReaderUnavailable("no reader process is up")
        try:
            worker = self._idle.get(timeout=self.timeout)
        except queue.Empty:
            raise ReaderUnavailable("every reader process is busy") from None
        request: dict = {"path": image} if isinstance(image, str) else {"bytes": base64.b64encode(image).decode("ascii")}
        if answer_only:
            request["answer_only"] = True
        try:
            _send(worker.requests, {**request, "model": model})
            if not worker.replies.poll(self.timeout):
                raise TimeoutError(f"no answer in {self.timeout:.0f} s")
            reply = _receive(worker.replies)
            if "error" not in reply and not isinstance(reply.get("ok"), dict):
                raise ValueError(f"unexpected reply from a reader process: {sorted(reply)}")
        except (OSError, EOFError, TimeoutError, ValueError, KeyError, TypeError) as exc:
            self._replace(worker, repr(exc))
            raise ReaderUnavailable(str(exc)) from None
        self._idle.put(worker)
        if "error" in reply:
            err = reply["error"]
            raise _ERRORS.get(err["type"], RuntimeError)(err["message"] if err["type"] in _ERRORS else f"{err['type']}: {err['message']}")
        return reply["ok"]

    def _replace(self, worker: _Worker, why: str) -> None:
        log.warning("reader process %s failed (%s): starting another", worker.process.pid, why)
        with self._lock:
            self._all.discard(worker)
        worker.kill()
        if not self._closed:
            self._add(wait=False)

    def close(self) -> None:
        """Stop the workers."""
        self._closed = True
        with self._lock:
            workers, self._all = list(self._all), set()
            for _, future in self._ahead.values():
                future.cancel()
            self._ahead.clear()
        for worker in workers:
            worker.kill()


if __name__ == "__main__":  # a worker: python -m stn.serving REQUEST_FD REPLY_FD ZOO THREADS [WARM...]
    _serve(Connection(int(sys.argv[1]), writable=False), Connection(int(sys.argv[2]), readable=False),
           sys.argv[3], int(sys.argv[4]), sys.argv[5:])
