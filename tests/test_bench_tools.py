"""The benchmark scripts' own logic (their measurements are run by hand, see bench/README.md)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"


def test_load_targets_and_variants(bench_script) -> None:
    load = bench_script("load")
    assert load.parse_target("floor") == ("floor", {})
    assert load.parse_target("app+STN_CONCURRENCY=4+X=a=b") == ("app", {"STN_CONCURRENCY": "4", "X": "a=b"})
    for bad in ("nope", "app+STN_CONCURRENCY", "app+=4"):
        with pytest.raises(RuntimeError, match="unknown target"):
            load.parse_target(bad)
    assert load.main(["--targets", "app,nope"]) == 2  # refused before any server starts


def test_load_takes_turns_request_by_request(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bench_script) -> None:
    """At 1 client the servers take turns request by request, the same image to each, the order swapped every
    request; each counts its own requests, failures and CPU."""
    load = bench_script("load")
    calls: list[tuple[int, str]] = []

    class FakeServer:
        def __init__(self, port: int) -> None:
            self.port, self.info, self.cpu = port, {"named_endpoints": {"/predict": {"parameters": []}}}, 0.0

        def cpu_seconds(self) -> float:
            self.cpu += 0.5  # read before and after each of its requests
            return self.cpu

    def predict(client, image: Path, payload: bytes, limit: int | None = 300) -> tuple[bool, str]:
        calls.append((client.port, image.name))
        return (client.port != 2 or image.name != "b.png"), "refused"

    monkeypatch.setattr(load.Client, "predict", predict)
    images = []
    for name in ("a.png", "b.png", "c.png"):
        (tmp_path / name).write_bytes(b"x")
        images.append(tmp_path / name)
    phases = load.run_interleaved({"app": (FakeServer(1), "predict"), "floor": (FakeServer(2), "predict")}, images, 4, None)
    assert calls == [(1, "a.png"), (2, "a.png"), (2, "b.png"), (1, "b.png"), (1, "c.png"), (2, "c.png"), (2, "a.png"), (1, "a.png")]
    assert len(phases["app"].latencies) == 4 and phases["app"].failures == []
    assert len(phases["floor"].latencies) == 3 and phases["floor"].failures == ["b.png: refused"]
    assert phases["app"].server_cpu == pytest.approx(4 * 0.5) and phases["app"].wall == pytest.approx(sum(phases["app"].latencies))


def test_load_logs_folder_that_cannot_be_made(tmp_path: Path, capsys: pytest.CaptureFixture[str], bench_script) -> None:
    """--logs names a folder (made when missing); one that cannot be made is refused in one sentence,
    before any server starts."""
    load = bench_script("load")
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    assert load.main(["--targets", "floor", "--logs", str(blocker / "logs")]) == 2
    assert "cannot create this folder" in capsys.readouterr().err


def test_app_timed_reports_stage_times(capsys: pytest.CaptureFixture[str], tmp_path_factory: pytest.TempPathFactory,
                                       monkeypatch: pytest.MonkeyPatch, bench_script) -> None:
    """bench/app_timed.py wraps the app's stages without changing what they return, and prints
    the medians of every 100 reads."""
    # as tests/test_app.py's fixture: Gradio's folders are fixed when the app is first imported
    os.environ.setdefault("GRADIO_TEMP_DIR", str(tmp_path_factory.mktemp("gradio")))
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    sys.path.insert(0, str(BENCH.parent))
    try:
        import app
    finally:
        sys.path.remove(str(BENCH.parent))
    if not app.ENGINE.names:
        pytest.skip("no models in models/")

    read_file, main_outputs, session_of = app.read_file, app._main_outputs, app.Session.__dict__["of"]
    reader_read = app.ReaderPool.read
    image = str(Path(app.EXAMPLES_DIR) / "wild-05-2.png")
    expected = app.read_file(image, None)
    try:
        monkeypatch.setenv("STN_READERS", "0")  # what app_timed sets, undone after the test
        timed = bench_script("app_timed")
        for _ in range(100):
            got = app.read_file(image, None)
        line = capsys.readouterr().out.strip().splitlines()[-1]
        assert line.startswith("timed (wall/cpu ms")
        for stage in ("prepare", "model", "outputs", "session", "read_file"):
            assert f"{stage} " in line
        assert got[3] == expected[3] and got[1] == expected[1]  # the JSON answer and the reading panel
        assert len(timed._times["read_file"]) == 100
    finally:
        app.read_file, app._main_outputs, app.Session.of = read_file, main_outputs, session_of
        app.ReaderPool.read = reader_read
        for name in ("prepare", "_predict_tensor"):  # the wrappers are instance attributes: back to the class's methods
            app.ENGINE.__dict__.pop(name, None)


def test_overhead_localisation_nets(capsys: pytest.CaptureFixture[str], bench_script) -> None:
    """bench/overhead.py times the zoo's three localisation nets against the same CNN; an unknown one is refused
    in one sentence. A tiny run fills every column of the table."""
    import torch

    from stn.localization import CNNLocalizer, FCLocalizer

    overhead = bench_script("overhead")
    cpu = torch.device("cpu")
    models = overhead._models("r", cpu, "fc")
    assert isinstance(models["loc"], FCLocalizer)
    assert isinstance(overhead._models("r", cpu, "light")["loc"], CNNLocalizer)
    assert models["cnn"].st is None and models["st-cnn"].classifier is models["cls-on-crop"]
    with pytest.raises(SystemExit, match="unknown localisation net 'tiny'"):
        overhead._models("r", cpu, "tiny")

    args = overhead.argparse.Namespace(datasets=["r"], loc_nets=["fc"], batches=[2], budget=2, rounds=1)
    rows = overhead.st_overhead(args, cpu)
    assert [(r["loc_net"], r["batch"], r["pass"]) for r in rows] == [("fc", 2, "fwd"), ("fc", 2, "fwd+bwd")]
    table = overhead.st_table(rows)
    assert table.count("\n| r 28×28 | fc | 2 |") == 2
    assert all(r["cnn_ms"] > 0 and r["st-cnn_ms"] > 0 and 0 < r["st_share"] for r in rows)
