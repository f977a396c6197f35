"""The benchmark scripts' own logic (their measurements are run by hand, see bench/README.md)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_load_targets_and_variants() -> None:
    load = _load("load")
    assert load.parse_target("floor") == ("floor", {})
    assert load.parse_target("app+STN_CONCURRENCY=4+X=a=b") == ("app", {"STN_CONCURRENCY": "4", "X": "a=b"})
    for bad in ("nope", "app+STN_CONCURRENCY", "app+=4"):
        with pytest.raises(RuntimeError, match="unknown target"):
            load.parse_target(bad)
    assert load.main(["--targets", "app,nope"]) == 2  # refused before any server starts
