"""Shared fixtures: the dtypes and devices the library's tests run on (CUDA only where present),
the benchmark scripts as modules, the app module, and a picture of two digits that touch."""

import importlib.util
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest
import torch

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"


@pytest.fixture(params=[torch.float32, torch.float64], ids=["f32", "f64"])
def dtype(request) -> torch.dtype:
    return request.param


@pytest.fixture(params=["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
def device(request) -> torch.device:
    return torch.device(request.param)


def _load_bench(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def bench_script() -> Callable[[str], ModuleType]:
    """``bench_script("load")``: ``bench/load.py`` imported as a module (bench/ is not a package)."""
    return _load_bench


@pytest.fixture(scope="session")
def app_module(tmp_path_factory) -> ModuleType:
    """``app.py`` imported as a module, with Gradio's upload folder in a temporary one. Every test
    that imports the app goes through here or sets the same: the folder is fixed at import."""
    os.environ.setdefault("GRADIO_TEMP_DIR", str(tmp_path_factory.mktemp("gradio")))
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    sys.path.insert(0, str(REPO))
    try:
        import app
    finally:
        sys.path.remove(str(REPO))
    return app


def _start_server(cmd: list[str], env: dict[str, str], port: int, log: Path, timeout: float = 240) -> subprocess.Popen:
    """Start ``cmd`` (a ``python app.py``) with its output in ``log`` and wait until it answers on ``port``;
    the test fails with the log's tail if it exits or stays silent. The caller stops it."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            pytest.fail(f"{' '.join(cmd[1:])} exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/gradio_api/info", timeout=5) as r:
                if r.status == 200:
                    return proc
        except OSError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"{' '.join(cmd[1:])} did not answer on port {port} within {timeout:.0f} s:\n{log.read_text()[-3000:]}")
        time.sleep(1)


@pytest.fixture(scope="session")
def start_server() -> Callable[..., subprocess.Popen]:
    """``start_server(cmd, env, port, log)``: the app started in a subprocess and answering (see ``_start_server``)."""
    return _start_server


@pytest.fixture
def touching_zeros():
    """A picture of two pen-drawn "0"s run into each other (a thin stroke between them at mid-height): one
    mark that :func:`stn.preprocess.touching_digits` flags."""
    from PIL import Image, ImageDraw

    img = Image.new("L", (300, 160), 245)
    draw = ImageDraw.Draw(img)
    for cx in (100, 164):
        draw.ellipse([cx - 26, 40, cx + 26, 120], outline=20, width=7)
    draw.line([(124, 80), (140, 80)], fill=20, width=5)
    return img
