"""The "Watch it learn" tab: its event functions called directly, and the tab served and driven by gradio_client."""

from __future__ import annotations

import asyncio
import json
import socket

import numpy as np
import pytest

gr = pytest.importorskip("gradio")

from gradio.components.plot import PlotData

from stn.live import LiveManager, LiveSettings
from webui import watch_tab


@pytest.fixture(scope="module")
def zoo_dir(tmp_path_factory):
    """A throwaway zoo: an affine model and the CNN baseline, a few steps each, with their replays."""
    from stn.cli import main

    d = tmp_path_factory.mktemp("zoo")
    for args in (
        ["--dataset", "rts", "--steps", "6", "--name", "w-affine"],
        ["--dataset", "rts", "--transform", "none", "--steps", "3", "--name", "w-cnn"],
    ):
        assert main(["train", *args, "--batch-size", "16", "--data", "bundled", "--models-dir", str(d), "--quiet"]) == 0
    # a card without a replay file is not offered
    (d / "no-replay.json").write_text((d / "w-cnn.json").read_text().replace("w-cnn.replay", "gone.replay"))
    (d / "no-replay.safetensors").write_bytes((d / "w-cnn.safetensors").read_bytes())
    return d


@pytest.fixture
def zoo(zoo_dir, monkeypatch):
    monkeypatch.setenv("STN_MODELS", str(zoo_dir))
    monkeypatch.setattr(watch_tab, "MANAGER", LiveManager(max_runs=1))
    monkeypatch.setattr(watch_tab, "DEFAULT_LIVE", LiveSettings(batch_size=16))  # keep the test runs short
    return zoo_dir


class FakeRequest:
    def __init__(self, session: str) -> None:
        self.session_hash = session


def _figure(p) -> dict:
    assert isinstance(p, PlotData) and p.type == "plotly"
    return json.loads(p.plot)


def _png(path: str) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as img:
        return np.asarray(img)


class TestReplayEvents:
    def test_choices_are_models_with_a_replay(self, zoo) -> None:
        assert watch_tab.replay_choices() == ["w-affine", "w-cnn"]

    def test_show_and_render(self, zoo) -> None:
        slider, probe, crops, curve, info = watch_tab.show_replay("w-affine")
        assert slider["maximum"] == 6 and slider["value"] == 0 and "every 1 training steps" in slider["label"]
        assert len(_figure(probe)["data"]) == 4 and _png(crops).dtype == np.uint8
        assert "step 0 of 6" in info and "centring" in info
        assert "trained from the identity grid" in info  # the throwaway zoo's models start from the identity
        assert "centred window 70% of the image's side (`--start-scale 0.7`)" in watch_tab._start_window(0.7)
        probe, crops, curve, info = watch_tab.render_replay("w-affine", 6)
        assert "step 6 of 6" in info and "training loss" in info
        assert _figure(curve)["layout"]["shapes"][0]["x0"] == 6
        probe, crops, curve, info = watch_tab.render_replay("w-affine", 99)  # clamped to the last snapshot
        assert "snapshot 7/7" in info

    def test_dataset_picker_names_fit_and_the_pick_is_described(self) -> None:
        """Short names in the picker (the descriptions were cut off in it at phone width), the picked one's in full below."""
        from stn.data import DATASETS
        from stn.live import LIVE_DATASETS

        assert all(len(watch_tab.LIVE_DATASET_NAMES[d]) <= 4 for d in LIVE_DATASETS)
        assert watch_tab.dataset_info("rts")["info"] == DATASETS["rts"].description
        assert watch_tab.dataset_info("nonsense")["info"] is None

    def test_a_snapshot_that_is_not_a_number_is_refused(self) -> None:
        """``replay_frame`` with a null snapshot answered ``{"error": null}`` (a TypeError in the log), and "NaN" a
        ValueError: none is the first snapshot, anything but a finite number a sentence."""
        assert watch_tab._from_zero(None) == 0.0 and watch_tab._from_zero(-3) == 0.0 and watch_tab._from_zero("4") == 4.0
        for bad in ("NaN", "inf", "abc", [1], {"x": 1}):
            with pytest.raises(gr.Error, match="snapshot must be a number") as err:
                watch_tab._from_zero(bad)
            assert err.value.print_exception is False

    def test_a_frame_is_drawn_once(self, zoo, monkeypatch) -> None:
        """A class pressing Play at once (or a flood of plays) asks for the same frames: each is drawn and encoded
        once, kept (the last FRAME_CACHE), and drawn anew for a retrained model."""
        import os

        drawn = []
        real = watch_tab._replay_frame
        monkeypatch.setattr(watch_tab, "_replay_frame", lambda name, i: drawn.append((name, i)) or real(name, i))
        monkeypatch.setattr(watch_tab, "_FRAMES", watch_tab.OrderedDict())
        first = watch_tab.replay_frame("w-affine", 3)
        assert watch_tab.replay_frame("w-affine", 3) is first and watch_tab.render_replay("w-affine", 3)[1] == first[1]
        assert drawn == [("w-affine", 3)]
        assert watch_tab.replay_frame("w-affine", 99)[0] is watch_tab.replay_frame("w-affine", 6)[0]  # past the end: the last
        monkeypatch.setattr(watch_tab, "FRAME_CACHE", 2)
        for i in range(4):
            watch_tab.replay_frame("w-affine", i)
        assert len(watch_tab._FRAMES) == 2
        replay = zoo / "w-affine.replay.safetensors"
        st = replay.stat()
        os.utime(replay, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # retrained
        drawn.clear()
        watch_tab.replay_frame("w-affine", 3)
        assert drawn == [("w-affine", 3)]

    def test_cnn_baseline_has_no_grid(self, zoo) -> None:
        probe, crops, _curve, info = watch_tab.render_replay("w-cnn", 1)
        assert [t["mode"] for t in _figure(probe)["data"]] == ["text"] and "CNN baseline" in info
        assert _png(crops).shape[0] == _png(crops).shape[1]

    def test_no_model(self, zoo, monkeypatch) -> None:
        _slider, *_rest, info = watch_tab.show_replay(None)  # none picked, replays there: pick one
        assert info == "Choose a model to replay its training."
        monkeypatch.setattr(watch_tab, "replay_choices", lambda directory=None: [])
        _slider, *_rest, info = watch_tab.show_replay(None)
        assert "No zoo model has a replay yet" in info
        assert watch_tab.render_replay(None, 0) == (None, None, None, "")

    def test_unknown_model_is_a_clear_error(self, zoo) -> None:
        with pytest.raises(gr.Error, match="No replay for 'nope'"):
            watch_tab.render_replay("nope", 0)

    def test_play_advances_the_slider(self, zoo, monkeypatch) -> None:
        monkeypatch.setattr(watch_tab, "PLAY_INTERVAL", 0.0)

        async def collect(index):
            return [frame async for frame in watch_tab.play_replay("w-affine", index)]

        frames = asyncio.run(collect(3))
        assert [f[0] for f in frames] == [3, 4, 5, 6]
        assert [f[0] for f in asyncio.run(collect(6))][:2] == [0, 1]  # at the end: plays from the start

    def test_load_lists_the_zoo(self, zoo) -> None:
        dropdown, _slider, *_frame = watch_tab._on_load("gone")
        assert dropdown["choices"] == ["w-affine", "w-cnn"] and dropdown["value"] == "w-affine"


class TestLiveEvents:
    def test_streams_several_updates(self, zoo) -> None:
        outs = list(watch_tab.train_live("affine", "rts", 50, "3e-3", 0, None, FakeRequest("s1")))
        assert len(outs) >= 3
        run, status, _probe, crops, curve, start, stop = outs[-1]
        assert run.last.step == 50 and run.trainer is None and "**Done:** affine on RTS, step 50 of 50" in status
        assert start["interactive"] is True and stop["interactive"] is False
        assert outs[0][6]["interactive"] is True  # Stop is live while training
        assert len(_figure(curve)["data"][0]["x"]) == 50 and crops.ndim == 3
        assert watch_tab.MANAGER.active() == 0  # the slot is free again

    def test_cap_reached_message(self, zoo) -> None:
        held = watch_tab.MANAGER.start("someone-else", LiveSettings(steps=10))
        try:
            outs = list(watch_tab.train_live("affine", "rts", 50, "3e-3", 0, None, FakeRequest("s2")))
        finally:
            watch_tab.MANAGER.release("someone-else", held)
        assert len(outs) == 1
        run, status, *_, start, _stop = outs[0]
        assert run is None and "The server is busy" in status and start["interactive"] is True

    def test_bad_settings(self, zoo) -> None:
        (out,) = list(watch_tab.train_live("warp", "rts", 50, "3e-3", 0, None, FakeRequest("s3")))
        assert "Unknown transform 'warp'" in out[1]

    def test_stop(self, zoo) -> None:
        gen = watch_tab.train_live("affine", "rts", 1000, "3e-3", 0, None, FakeRequest("s4"))
        run = next(gen)[0]
        status, start, _stop = watch_tab.stop_live(run, FakeRequest("s4"))
        assert "**Stopped:** affine on RTS, step 0 of 1,000" in status and start["interactive"] is True
        last = list(gen)[-1]
        assert "**Stopped:**" in last[1] and run.last.step < 1000
        # the session keeps the run for Stop's words, not its data and optimiser (~7 MB a run kept)
        assert run.trainer is None and run.total_steps == 1000 and "**Stopped:**" in watch_tab.stop_live(run, FakeRequest("s4"))[0]
        assert watch_tab.stop_live(None, FakeRequest("nobody"))[0] == "No training run to stop."


    def test_a_run_nobody_reads_ends_and_frees_its_slot(self, zoo, monkeypatch) -> None:
        """Gradio runs an event whether or not its page reads it: a run whose updates lie unread ends (it held one
        of the server's few slots for up to 240 s); a run read as it goes, however long, does not."""
        monkeypatch.setattr(watch_tab, "UNREAD_LIMIT_S", 0.0)
        outs = list(watch_tab.train_live("affine", "rts", 1000, "3e-3", 0, None, FakeRequest("s5"), unread=lambda s: 5))
        run, status = outs[-1][:2]
        assert run.last.status == "stopped" and run.last.step < 1000 and watch_tab.MANAGER.active() == 0
        assert "did not read the run's updates for 0 s" in status and "Stopped:" in status
        assert "did not read" not in "".join(o[1] for o in outs[:-1])
        outs = list(watch_tab.train_live("affine", "rts", 20, "3e-3", 0, None, FakeRequest("s6"), unread=lambda s: 2))
        assert outs[-1][0].last.status == "done" and "did not read" not in outs[-1][1]
        outs = list(watch_tab.train_live("affine", "rts", 20, "3e-3", 0, None, FakeRequest("s7"), unread=lambda s: None))
        assert outs[-1][0].last.status == "done"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_tab_served_and_driven_by_gradio_client(zoo, tmp_path, monkeypatch) -> None:
    from gradio_client import Client

    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path))
    with gr.Blocks() as demo, gr.Tab("Watch it learn"):
        watch_tab.build_watch_tab()
    demo.queue()
    _, url, _ = demo.launch(prevent_thread_lock=True, server_port=_free_port(), quiet=True)
    try:
        client = Client(url, verbose=False)
        api = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
        assert {"/replay_model", "/replay_frame", "/replay_play", "/train_live", "/stop_live"} <= set(api)

        probe, _crops, _curve, info = client.predict("w-affine", 6, api_name="/replay_frame")
        assert "step 6 of 6" in info and json.loads(probe["plot"])["layout"]["height"] == 380
        # past the slider's first maximum (another model may have more snapshots): its last snapshot, no error
        probe, _crops, _curve, info = client.predict("w-affine", 500, api_name="/replay_frame")
        assert "step 6 of 6" in info

        job = client.submit("affine", "rts", 50, "3e-3", 0, api_name="/train_live")
        outs = job.result(timeout=600) and job.outputs()
        assert len(outs) >= 3, f"only {len(outs)} updates streamed"
        statuses = [o[0] for o in outs]
        assert "**Done:**" in statuses[-1] and "step 50 of 50" in statuses[-1]

        played = client.submit("w-affine", 0, api_name="/replay_play")
        played.result(timeout=120)
        assert [o[0] for o in played.outputs()][-1] == 6
    finally:
        demo.close()


def test_plays_wait_for_each_other_only(zoo) -> None:
    """Gradio runs at most 40 events at once, in order: 74 plays at once (~20 s each) held every reading behind
    them for 18 s. Plays have a group and a limit of their own, so a reading is never queued behind them."""
    with gr.Blocks() as demo:
        watch_tab.build_watch_tab()
    play = next(f for f in demo.fns.values() if f.api_name == "replay_play")
    assert play.concurrency_limit == watch_tab.PLAYS_AT_ONCE < 40 and play.concurrency_id == "stn-replay-play"


def _replay_wiring(demo) -> tuple[int, dict]:
    """The play event's id, and every listener by (component, event) in the order the page runs them."""
    play = next(i for i, f in demo.fns.items() if f.api_name == "replay_play")
    listeners: dict = {}
    for _i, f in sorted(demo.fns.items()):
        for target in f.targets:
            listeners.setdefault(tuple(target), []).append(f)
    return play, listeners


def test_a_new_replay_or_a_picked_snapshot_stops_the_play_first(zoo) -> None:
    """Picking another model while a replay played left the old play running: its frames and info line went on over
    the new model's, and the slider past the new model's snapshots. The model picker and the snapshot slider cancel
    the play before their own listener (the page runs an event's listeners one after another, so a cancel listed
    after show_replay came only once the new model's frame was shown), and so does Pause."""
    with gr.Blocks() as demo:
        watch_tab.build_watch_tab()
    play, listeners = _replay_wiring(demo)
    for api_name in ("replay_model", "replay_frame"):
        target = next(tuple(f.targets[0]) for f in demo.fns.values() if f.api_name == api_name)
        names = [f.api_name for f in listeners[target]]
        cancels = [k for k, f in enumerate(listeners[target]) if play in (f.cancels or [])]
        assert cancels and cancels[0] < names.index(api_name), (api_name, names)
    pause = next(b for b in demo.blocks.values() if isinstance(b, gr.Button) and b.value == "Pause")
    assert any(play in (f.cancels or []) for f in listeners[(pause._id, "click")])


def test_play_and_pause_show_whether_a_replay_plays(zoo) -> None:
    """Play and Pause were both live whatever happened: Play again while playing did nothing, Pause while not playing
    did nothing. Play turns Pause on and itself off; the play's end, its failure or its cancelling (another model,
    a snapshot picked, Pause) turns them back."""
    with gr.Blocks() as demo:
        watch_tab.build_watch_tab()
    play_fn, listeners = _replay_wiring(demo)
    play, pause = (next(b for b in demo.blocks.values() if isinstance(b, gr.Button) and b.value == v) for v in ("▶ Play", "Pause"))
    assert play.interactive is not False and pause.interactive is False
    (pressed,) = listeners[(play._id, "click")]
    assert pressed.fn() == (gr.update(interactive=False), gr.update(interactive=True))
    assert [b._id for b in pressed.outputs] == [play._id, pause._id]
    assert demo.fns[play_fn].trigger_after == pressed._id
    after = [f for f in demo.fns.values() if f.trigger_after == play_fn]
    assert len(after) == 1 and not after[0].trigger_only_on_success and not after[0].trigger_only_on_failure
    assert after[0].fn() == (gr.update(interactive=True), gr.update(interactive=False))
    assert [b._id for b in after[0].outputs] == [play._id, pause._id]


def test_the_snapshot_slider_takes_any_number_after_a_model_is_shown(zoo) -> None:
    """Past the model's last snapshot reads the last: but Gradio keeps a session's copy of a slider that an update
    changed (each page load shows a model), made from its class, and that copy refused 500 typed into the box with
    "This request does not fit the replay_frame endpoint (Value 500 is greater than maximum value 60.)". As the app
    serves the tab (webui/guard.py), the copy reads the last snapshot too."""
    from gradio.state_holder import SessionState

    from webui.guard import guard_requests

    with gr.Blocks() as demo:
        watch_tab.build_watch_tab()
    guard_requests(demo)
    show, frame = (next(f for f in demo.fns.values() if f.api_name == n) for n in ("replay_model", "replay_frame"))
    state = SessionState(demo)
    asyncio.run(demo.postprocess_data(show, list(watch_tab.show_replay("w-affine")), state))
    slider = show.outputs[0]
    assert state[slider._id] is not slider and state[slider._id].maximum == 6  # the session's copy
    assert asyncio.run(demo.preprocess_data(frame, ["w-affine", 500], state)) == ["w-affine", 500.0]
    assert "snapshot 7/7" in watch_tab.render_replay("w-affine", 500.0)[3]


@pytest.mark.slow
def test_a_served_run_whose_stream_is_never_read_frees_the_slot(zoo, tmp_path, monkeypatch) -> None:
    """Over plain REST: a client that joins `train_live` and never opens the event stream no longer holds the
    training slot for the run's whole length; a client that reads its stream trains to the end."""
    import threading
    import time

    import httpx

    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path))
    monkeypatch.setattr(watch_tab, "UNREAD_LIMIT_S", 1.0, raising=False)
    started: list = []
    start = watch_tab.MANAGER.start
    sessions: list[str] = []

    def record(session, *args, **kwargs):
        sessions.append(session)
        started.append(start(session, *args, **kwargs))
        return started[-1]

    monkeypatch.setattr(watch_tab.MANAGER, "start", record)
    with gr.Blocks() as demo:
        watch_tab.build_watch_tab()
    demo.queue()
    _, url, _ = demo.launch(prevent_thread_lock=True, server_port=_free_port(), quiet=True)
    try:
        api = url.rstrip("/") + "/gradio_api"
        index = next(i for i, f in demo.fns.items() if f.api_name == "train_live")
        join = {"data": ["affine", "rts", 1500, "1e-3", 0, None], "fn_index": index, "event_data": None}
        with httpx.Client(timeout=60) as http:
            assert http.post(f"{api}/queue/join", json={**join, "session_hash": "silent"}).status_code == 200
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and not (started and started[0].status != "running"):
                time.sleep(0.2)
            assert sessions == ["silent"]  # the page's session, as Gradio hands it over
            assert started[0].status == "stopped" and started[0].last.step < 1500
            deadline = time.monotonic() + 30
            while watch_tab.MANAGER.active() and time.monotonic() < deadline:
                time.sleep(0.2)
            assert watch_tab.MANAGER.active() == 0

            # a page that reads its stream, given 20 steps, is not stopped however slow the machine
            events: list[dict] = []

            def read() -> None:
                with http.stream("GET", f"{api}/queue/data", params={"session_hash": "reader"}) as response:
                    for line in response.iter_lines():
                        if line.startswith("data:"):
                            events.append(json.loads(line[5:]))
                            if events[-1].get("msg") in ("process_completed", "close_stream"):
                                return

            join["data"][2] = 50
            assert http.post(f"{api}/queue/join", json={**join, "session_hash": "reader"}).status_code == 200
            reader = threading.Thread(target=read)
            reader.start()
            reader.join(300)
        done = [e for e in events if e.get("msg") == "process_completed"]
        assert done and done[-1]["success"], events[-3:]
        assert "**Done:**" in done[-1]["output"]["data"][1] and started[-1].status == "done" and sessions[-1] == "reader"
    finally:
        demo.close()
