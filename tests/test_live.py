"""stn.live: live training runs, their updates, the stop flag, threads and the server-wide cap."""

from __future__ import annotations

import threading
import time

import pytest
import torch

from stn.live import (
    MAX_STEPS,
    LiveBusy,
    LiveManager,
    LiveRun,
    LiveSettings,
    default_max_runs,
    ink_offset,
    intra_op_threads,
)


class TestInkOffset:
    def test_centred_blob_is_zero(self) -> None:
        x = torch.zeros(2, 1, 28, 28)
        x[..., 10:18, 10:18] = 1
        assert ink_offset(x) == 0.0

    def test_offset_in_half_widths(self) -> None:
        x = torch.zeros(1, 1, 28, 28)
        x[..., 13:15, 21] = 1  # pixel 21's centre: (2·21 + 1) / 28 − 1 = 15/28 right of centre
        assert ink_offset(x) == pytest.approx(15 / 28, abs=1e-4)

    def test_empty_crop_counts_as_lost(self) -> None:
        assert ink_offset([torch.zeros(3, 1, 28, 28)]) == 1.0

    def test_averages_heads(self) -> None:
        centred = torch.zeros(1, 1, 28, 28)
        centred[..., 13:15, 13:15] = 1
        assert ink_offset([centred, torch.zeros(1, 1, 28, 28)]) == pytest.approx(0.5)


class TestThreads:
    def test_restores_and_stays_in_its_thread(self) -> None:
        before = torch.get_num_threads()
        seen: dict[str, int] = {}
        inside = threading.Event()
        release = threading.Event()

        def train() -> None:
            with intra_op_threads(1):
                seen["worker"] = torch.get_num_threads()
                inside.set()
                release.wait(10)
            seen["worker_after"] = torch.get_num_threads()

        t = threading.Thread(target=train)
        t.start()
        assert inside.wait(10)
        seen["main_meanwhile"] = torch.get_num_threads()
        release.set()
        t.join()
        assert seen == {"worker": 1, "main_meanwhile": before, "worker_after": before}
        assert torch.get_num_threads() == before

    def test_none_changes_nothing(self) -> None:
        before = torch.get_num_threads()
        with intra_op_threads(None):
            assert torch.get_num_threads() == before

    def test_default_cap(self, monkeypatch) -> None:
        monkeypatch.setenv("STN_LIVE_MAX_RUNS", "3")
        assert default_max_runs() == 3 and LiveManager().max_runs == 3
        monkeypatch.delenv("STN_LIVE_MAX_RUNS")
        assert 1 <= default_max_runs() <= 2


class TestSettings:
    def test_clamps_numbers(self) -> None:
        s = LiveSettings(steps=10**6, loc_lr=5.0, seed=-1, batch_size=1, max_seconds=1e9).checked()
        assert s.steps == MAX_STEPS and s.loc_lr == 3e-2 and s.seed >= 0 and s.batch_size == 8
        assert s.max_seconds <= 240

    @pytest.mark.parametrize(
        ("kw", "match"),
        [
            ({"dataset": "svhn"}, r"Unknown dataset 'svhn'\. Known: rts, tc"),
            ({"transform": "warp"}, r"Unknown transform 'warp'\. Known: affine, attention, projective, tps"),
            ({"loc_lr": float("nan")}, "finite"),
        ],
    )
    def test_rejects(self, kw: dict, match: str) -> None:
        with pytest.raises(ValueError, match=match):
            LiveSettings(**kw).checked()


def _run(**kw) -> LiveRun:
    kw = {"steps": 50, "update_every": 10, "min_interval": 0.0, "device": None, **kw}
    device = kw.pop("device")
    return LiveRun(LiveSettings(**kw), device=device or torch.device("cpu"))


@pytest.mark.slow
def test_fifty_step_run_lowers_loss_moves_theta_and_streams() -> None:
    run = _run()
    ident = run.transform.identity(16)
    updates = list(run.updates())
    assert [u.step for u in updates] == [0, 10, 20, 30, 40, 50]
    first, last = updates[0], updates[-1]
    assert first.loss is None and first.status == "running" and last.status == "done" and last.finished
    assert torch.allclose(first.params[0], ident, atol=1e-5)  # starts at the identity
    curve = run.curve["loss"]
    assert len(curve) == 50 and last.curve is run.curve
    assert sum(curve[-5:]) / 5 < curve[0] - 0.2, curve  # the loss falls
    moved = (last.params[0] - ident).abs().max().item()
    assert moved > 0.02, f"θ moved only {moved:.4f} from the identity"
    assert last.steps_per_second > 0 and last.elapsed > 0
    assert last.crops[0].shape == (16, 1, 28, 28) and last.labels.shape == (16,)
    assert 0 <= last.probe_correct <= 16 and last.centring_start == first.centring
    assert 0 < first.centring < 1


@pytest.mark.slow
def test_stop_flag_ends_the_run_early() -> None:
    run = _run(steps=1000, update_every=2)
    statuses = []
    for u in run.updates():
        statuses.append(u.status)
        if u.step >= 4:
            threading.Thread(target=run.stop).start()  # from another thread, as the Stop button does
            time.sleep(0.05)
    assert statuses[-1] == "stopped" and run.trainer.step_count < 20


def test_time_limit() -> None:
    run = _run(steps=1000, update_every=1, max_seconds=1.0)
    run.started -= 5  # as if it had been going for a while
    statuses = [u.status for u in run.updates()]
    assert statuses[-1] == "timeout" and run.trainer.step_count <= 2


@pytest.mark.parametrize(("dataset", "transform", "heads", "n_params"), [("pair", "affine", 2, 6), ("e", "tps", 1, 32)])
def test_other_families_and_two_heads(dataset: str, transform: str, heads: int, n_params: int) -> None:
    run = _run(dataset=dataset, transform=transform, steps=4, update_every=2, batch_size=16)
    last = list(run.updates())[-1]
    assert last.status == "done" and len(last.params) == heads and len(last.crops) == heads
    assert last.params[0].shape == (16, n_params)


class TestManager:
    def test_cap_answers_with_the_message(self) -> None:
        mgr = LiveManager(max_runs=1)
        a = mgr.start("a", LiveSettings(steps=10))
        assert mgr.active() == 1
        with pytest.raises(LiveBusy, match="The server is busy: 1 training run is going on right now") as exc:
            mgr.start("b", LiveSettings(steps=10))
        assert "Try again in a minute" in str(exc.value)
        with pytest.raises(LiveBusy, match="already have a training run going in this session"):
            mgr.start("a", LiveSettings(steps=10))
        assert mgr.stop("a") and a.stopping and not mgr.stop("nobody")
        mgr.release("a", a)
        b = mgr.start("b", LiveSettings(steps=10))
        mgr.release("a", a)  # a stale release does not free b's slot
        assert mgr.active() == 1
        mgr.release("b", b)
        assert mgr.active() == 0

    def test_message_for_two(self) -> None:
        assert "2 training runs are going on" in LiveManager(max_runs=2).busy_message()

    def test_generator_frees_its_slot_when_done_or_closed(self) -> None:
        mgr = LiveManager(max_runs=1)
        stream = mgr.run("a", LiveSettings(steps=1000, update_every=1, min_interval=0.0))
        next(stream)
        assert mgr.active() == 1
        stream.close()  # what Gradio does when the event is cancelled
        assert mgr.active() == 0
        done = list(mgr.run("a", LiveSettings(steps=10, update_every=5, min_interval=0.0, batch_size=16)))
        assert done[-1].status == "done" and mgr.active() == 0

    def test_silent_runs_lose_their_slot(self) -> None:
        mgr = LiveManager(max_runs=1, stale_after=0.01)
        a = mgr.start("a", LiveSettings(steps=10))
        time.sleep(0.05)
        b = mgr.start("b", LiveSettings(steps=10))  # a's consumer went away: b may start
        assert a.stopping and mgr.active() == 1
        mgr.release("b", b)

    def test_a_failed_build_frees_the_slot(self, monkeypatch) -> None:
        import stn.live

        def boom(*a, **k):
            raise RuntimeError("no memory")

        monkeypatch.setattr(stn.live, "LiveRun", boom)
        mgr = LiveManager(max_runs=1)
        with pytest.raises(RuntimeError, match="no memory"):
            mgr.start("a", LiveSettings())
        assert mgr.active() == 0

    def test_concurrent_starts_respect_the_cap(self) -> None:
        mgr = LiveManager(max_runs=2)
        results: list[str] = []

        def go(i: int) -> None:
            try:
                mgr.start(f"s{i}", LiveSettings(steps=10, batch_size=16))
                results.append("ok")
            except LiveBusy:
                results.append("busy")

        threads = [threading.Thread(target=go, args=(i,)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(results) == ["busy", "busy", "ok", "ok"]
