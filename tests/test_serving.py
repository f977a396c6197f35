"""stn.serving: the main view's parts, and reading them in worker processes (a real
``python -m stn.serving`` process on the tiny zoo of ``tests/test_inference.py``)."""

from __future__ import annotations

import importlib.util
import json
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from stn.inference import Engine, ImageError, UnknownModelError
from stn.serving import (
    ReaderPool,
    ReaderUnavailable,
    decode_result,
    encode_result,
    figure_json,
    lean,
    main_view,
    plot_height,
)


def _helpers():
    spec = importlib.util.spec_from_file_location("_stn_test_inference_serving", Path(__file__).parent / "test_inference.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def zoo(tmp_path_factory) -> Path:
    return _helpers().make_tiny_zoo(tmp_path_factory.mktemp("zoo"))


@pytest.fixture(scope="module")
def engine(zoo) -> Engine:
    return Engine(zoo, device="cpu")


@pytest.fixture(scope="module")
def digit(tmp_path_factory) -> str:
    from stn.data import load_mnist

    x, _ = load_mnist("bundled", train=False)
    path = tmp_path_factory.mktemp("img") / "digit.png"
    Image.fromarray((255 - x[0, 0].numpy() * 255).astype(np.uint8)).resize((120, 120)).save(path)
    return str(path)


@pytest.fixture(scope="module")
def number(tmp_path_factory) -> str:
    """Two digits side by side: the pair model refuses one digit alone."""
    from stn.data import load_mnist

    x, _ = load_mnist("bundled", train=False)
    ink = np.concatenate([np.pad(x[i, 0].numpy(), ((0, 0), (6, 6))) for i in (0, 1)], axis=1)
    path = tmp_path_factory.mktemp("img") / "number.png"
    Image.fromarray((255 - ink * 255).astype(np.uint8)).resize((ink.shape[1] * 5, 140)).save(path)
    return str(path)


@pytest.fixture(scope="module")
def pool(zoo):
    pool = ReaderPool(zoo, workers=1, warm=("wild-affine",), timeout=60)
    pool.start(wait=True)
    yield pool
    pool.close()


def _wait(pool: ReaderPool, seconds: float = 120) -> None:
    t0 = time.monotonic()
    while not pool.ready and time.monotonic() - t0 < seconds:
        time.sleep(0.1)
    assert pool.ready, "the reader process did not come back"


def test_plot_height():
    assert plot_height((56, 56)) == 400 and plot_height((28, 84)) == 220
    assert plot_height((28, 84), width=600) == 240


def test_main_view_and_lean(engine, digit):
    result, baseline = engine.predict_early(digit, "wild-affine")
    fig, panel, theta, answer = main_view(result, engine.transform("wild-affine"), baseline)
    assert fig["data"][0]["type"] == "heatmap" and fig["layout"]["height"] == plot_height(result.info.input_size)
    assert 'id="stn-summary"' in panel and "<table" in theta
    assert answer["label"] == result.reading.label and answer["baseline"] is not None  # the CNN was waited for
    assert json.loads(figure_json(fig)) == json.loads(json.dumps(fig))
    kept = lean(result)
    assert kept.reading.crops == [] and kept.baseline is None and kept.prepared is None
    assert result.reading.crops and result.baseline is not None  # the original is untouched


@pytest.mark.parametrize("name", ["wild-affine", "wild-cnn", "pair-affine", "e-tps", "p-projective", "tc-attention"])
def test_a_lean_result_crosses_as_json(engine, digit, number, name):
    if name not in engine.models:
        pytest.skip(f"{name} is not in the tiny zoo")
    kept = lean(engine.predict(number if name == "pair-affine" else digit, name))
    back = decode_result(json.loads(json.dumps(encode_result(kept))))
    assert back.info == kept.info and back.model == kept.model
    np.testing.assert_array_equal(back.input, kept.input)
    assert back.input.dtype == kept.input.dtype
    for field in ("model", "label", "class_names", "head_labels", "top_logit", "sure_logit"):
        assert getattr(back.reading, field) == getattr(kept.reading, field)
    assert back.reading.top_logit is not None and back.reading.sure == kept.reading.sure
    np.testing.assert_array_equal(back.reading.probs, kept.reading.probs)
    assert len(back.reading.params) == len(kept.reading.params)
    for a, b in zip(back.reading.params, kept.reading.params):
        np.testing.assert_array_equal(a, b)
    assert back.to_json() == kept.to_json()


def test_pool_reads_as_this_process(pool, engine, digit):
    fig_json, panel, theta, answer, kept = pool.read(digit, "wild-affine")
    result, baseline = engine.predict_early(digit, "wild-affine")
    fig, panel_here, theta_here, answer_here = main_view(result, engine.transform("wild-affine"), baseline)
    assert json.loads(fig_json) == json.loads(figure_json(fig))
    assert (panel, theta, answer) == (panel_here, theta_here, answer_here)
    assert kept.reading.label == result.reading.label and kept.reading.crops == []
    np.testing.assert_array_equal(kept.input, result.input)
    with open(digit, "rb") as f:  # bytes too
        assert pool.read(f.read(), "wild-affine")[3] == answer


def test_pool_passes_the_library_errors_back(pool, digit, tmp_path):
    with pytest.raises(ImageError, match="no such file"):
        pool.read(str(tmp_path / "missing.png"), "wild-affine")
    blank = tmp_path / "blank.png"
    Image.new("L", (64, 64), 255).save(blank)
    with pytest.raises(ImageError, match="no digit"):
        pool.read(str(blank), "wild-affine")
    with pytest.raises(UnknownModelError, match="Unknown model"):
        pool.read(digit, "no-such-model")
    assert pool.read(digit, "wild-affine")[3]["model"] == "wild-affine"  # and it still reads


def test_a_dead_worker_is_replaced(pool, digit):
    worker = next(iter(pool._all))
    worker.process.kill()
    worker.process.wait(10)
    with pytest.raises(ReaderUnavailable):  # the caller then reads in its own process
        pool.read(digit, "wild-affine")
    _wait(pool)
    assert pool.read(digit, "wild-affine")[3]["model"] == "wild-affine"


def test_unavailable_before_start_and_after_close(zoo, digit):
    pool = ReaderPool(zoo, workers=1)
    with pytest.raises(ReaderUnavailable):
        pool.read(digit, "wild-affine")
    pool.close()
    assert not pool.ready


def test_a_hung_reading_times_out_and_the_worker_is_replaced(zoo, digit):
    pool = ReaderPool(zoo, workers=1, timeout=1e-4)  # no reading is that fast: it counts as hung
    try:
        pool.start(wait=True)
        pid = next(iter(pool._all)).process.pid
        with pytest.raises(ReaderUnavailable):
            pool.read(digit, "wild-affine")
        pool.timeout = 60
        _wait(pool)
        assert next(iter(pool._all)).process.pid != pid
        assert pool.read(digit, "wild-affine")[3]["model"] == "wild-affine"
    finally:
        pool.close()


# --------------------------------------------------------------------------- reading ahead


def _settle(pool: ReaderPool, timeout: float = 60) -> None:
    """Until every reading started ahead is done."""
    deadline = time.monotonic() + timeout
    while any(not f.done() for _, f in list(pool._ahead.values())):
        assert time.monotonic() < deadline, "a reading started ahead never finished"
        time.sleep(0.01)


def test_a_reading_started_ahead_is_the_one_read_uses(pool, digit, tmp_path):
    direct = pool.read(digit, "wild-affine")
    stats = dict(pool.ahead_stats)
    assert pool.take(digit, "wild-affine") is None  # nothing started: nothing to take
    assert pool.read_ahead(digit, "wild-affine")
    assert not pool.read_ahead(digit, "wild-affine")  # once per file and model
    _settle(pool)
    ahead = pool.read(digit, "wild-affine")
    assert pool.ahead_stats["started"] == stats["started"] + 1 and pool.ahead_stats["used"] == stats["used"] + 1
    assert json.loads(ahead[0]) == json.loads(direct[0]) and ahead[1:4] == direct[1:4]
    assert ahead[4].to_json() == direct[4].to_json()
    assert pool.take(digit, "wild-affine") is None  # used once
    # another model than the one read ahead: read afresh, the reading ahead stays for its own call
    assert pool.read_ahead(digit, "e-tps")
    assert pool.read(digit, "wild-affine")[3] == direct[3]
    assert pool.read(digit, "e-tps")[3]["model"] == "e-tps"
    assert not pool._ahead


def test_a_reading_started_ahead_keeps_its_error(pool, tmp_path):
    blank = tmp_path / "blank.png"
    Image.new("L", (64, 64), 255).save(blank)
    assert pool.read_ahead(str(blank), "wild-affine")
    with pytest.raises(ImageError, match="no digit"):
        pool.read(str(blank), "wild-affine")
    assert pool.read_ahead(str(tmp_path / "missing.png"), "wild-affine")
    with pytest.raises(ImageError, match="no such file"):
        pool.take(str(tmp_path / "missing.png"), "wild-affine")


def test_reading_ahead_is_bounded(zoo, digit, tmp_path):
    pool = ReaderPool(zoo, workers=1, timeout=60, ahead_limit=1, ahead_keep=3, ahead_ttl=60)
    assert not pool.read_ahead(digit, "wild-affine")  # no worker up yet
    try:
        pool.start(wait=True)
        copies = []
        for i in range(6):
            p = tmp_path / f"d{i}.png"
            p.write_bytes(Path(digit).read_bytes())
            copies.append(str(p))
        started = [pool.read_ahead(p, "wild-affine") for p in copies]
        # one reading under way, one waiting for the worker: the rest are not started
        assert started[:2] == [True, True] and pool.ahead_stats["skipped"] >= 1
        _settle(pool)
        for p in copies:
            pool.read_ahead(p, "wild-affine")
            _settle(pool)
        assert len(pool._ahead) == 3  # the oldest went first
        assert [k[0] for k in pool._ahead] == copies[-3:]
        pool.ahead_ttl = 0  # ... and those nobody took in time
        assert pool.read_ahead(copies[0], "wild-affine")
        assert [k[0] for k in pool._ahead] == [copies[0]]
    finally:
        pool.close()
    assert not pool._ahead and not pool.read_ahead(digit, "wild-affine")


def test_no_reading_ahead_of_a_file_being_read(pool, digit):
    """The upload's hook can run after its predict call arrived: the file is then not read twice."""
    import threading

    started = threading.Event()
    real = pool._read

    def slow_read(image, model):
        started.set()
        time.sleep(0.3)
        return real(image, model)

    pool._read = slow_read
    try:
        t = threading.Thread(target=pool.read, args=(digit, "wild-affine"))
        t.start()
        started.wait(10)
        assert not pool.read_ahead(digit, "wild-affine")  # read() is on it
        t.join(60)
    finally:
        del pool._read
    assert not pool._direct and pool.read_ahead(digit, "wild-affine")  # once done, it may be read ahead again
    _settle(pool)
    assert pool.take(digit, "wild-affine") is not None


def test_only_the_answer(pool, digit, tmp_path):
    """answer(): the JSON answer alone, as read() gives it, errors included; a reading started ahead is used."""
    full = pool.read(digit, "wild-affine")
    assert pool.answer(digit, "wild-affine") == full[3]
    with open(digit, "rb") as f:
        assert pool.answer(f.read(), "wild-affine") == full[3]
    blank = tmp_path / "blank.png"
    Image.new("L", (64, 64), 255).save(blank)
    with pytest.raises(ImageError, match="no digit"):
        pool.answer(str(blank), "wild-affine")
    with pytest.raises(UnknownModelError):
        pool.answer(digit, "no-such-model")
    used = pool.ahead_stats["used"]
    assert pool.read_ahead(digit, "wild-affine")
    assert pool.answer(digit, "wild-affine") == full[3] and pool.ahead_stats["used"] == used + 1


def test_a_reading_ahead_on_a_dead_worker_hands_over(pool, digit):
    """The worker died: the reading started ahead fails as unavailable (the caller reads itself), and
    a new worker takes over."""
    worker = next(iter(pool._all))
    worker.process.kill()
    worker.process.wait(10)
    assert pool.read_ahead(digit, "wild-affine")
    with pytest.raises(ReaderUnavailable):
        pool.read(digit, "wild-affine")
    _wait(pool)
    assert pool.read(digit, "wild-affine")[3]["model"] == "wild-affine"
