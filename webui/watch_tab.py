"""The "Watch it learn" tab: a training replay of every zoo model, and live training in the browser.

``build_watch_tab()`` creates the tab's components inside the caller's current ``gr.Tab`` and
wires its events. The event functions are plain module functions, testable without a browser.

Concurrency: the live-training event has its own ``concurrency_id`` and an explicit limit a
little above :class:`stn.live.LiveManager`'s cap, so that a visitor over the cap gets the
"busy" message at once instead of waiting in the queue; training steps run with one intra-op
thread (see :mod:`stn.live`). Replay events are light and unlimited.

A live run also ends when its page stops reading it: Gradio runs an event whether or not its client
reads the event stream, so a client that started a run and never opened the stream (or a tab the
phone froze) held one of the server's few training slots for the run's whole length (up to
``MAX_SECONDS``). The run checks its session's unread messages in Gradio's queue after each update.
"""

from __future__ import annotations

import asyncio
import atexit
import json
import logging
import math
import os
import shutil
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import gradio as gr
import numpy as np
from gradio.components.plot import PlotData
from PIL import Image

from stn.data import DATASETS
from stn.live import LIVE_DATASETS, MAX_STEPS, LiveBusy, LiveManager, LiveRun, LiveSettings, LiveUpdate, ink_offset
from stn.replay import Replay, load_replay
from stn.training_viz import ProbeView, crops_mosaic, curve_figure, with_step_marker
from stn.transforms import names as transform_names
from stn.zoo import list_models, load_card, load_model, models_dir
from webui.refusal import refusal

__all__ = [
    "MANAGER",
    "build_watch_tab",
    "play_replay",
    "render_replay",
    "replay_choices",
    "replay_playing",
    "replay_stopped",
    "show_replay",
    "stop_live",
    "train_live",
]

log = logging.getLogger("stn.app")

MANAGER = LiveManager()  # the server's live runs (cap: stn.live.default_max_runs())
UNREAD_LIMIT_S = 30.0  # a live run whose updates lie unread this long ends: its page is gone or never read it
UNREAD_SLACK = 2  # updates a reading page may lag behind (a slow phone link) without counting as gone
PLAY_INTERVAL = 0.3  # seconds per replay frame
PLAYS_AT_ONCE = 24  # replays playing at once (frames are drawn once: replay_frame); Gradio runs 40 events at most
LOC_LRS = ["1e-4", "3e-4", "1e-3", "3e-3", "1e-2"]
LIVE_DATASET_NAMES = {"rts": "RTS", "tc": "TC", "r": "R", "p": "P", "e": "E", "pair": "Pair"}  # the paper's names
DEFAULT_LIVE = LiveSettings()

BUNDLED_NOTE = (
    "Live runs train on the **4,000 MNIST training digits bundled with this Space** "
    "(`assets/mnist-subset.npz`, a compressed subset of MNIST, CC BY-SA 3.0), distorted afresh on "
    "every batch; the 16 probe images come from the bundled test digits. "
)


def _plot(fig: dict) -> PlotData:
    """A plotly dict figure for ``gr.Plot`` (skips plotly's slow validation)."""
    return PlotData(type="plotly", plot=json.dumps(fig, separators=(",", ":")))


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.0f}%"


# --------------------------------------------------------------------------- replay


@dataclass
class _ReplayBundle:
    name: str
    card: dict
    replay: Replay
    model: object
    view: ProbeView
    curve: dict  # base curve figure, the marker is added per frame
    centring_start: float
    version: int = 0  # the replay file's mtime (ns): a retrained model's frames are drawn anew


_BUNDLES: dict[tuple[str, str, int], _ReplayBundle] = {}
FRAME_CACHE = 512  # rendered replay frames kept (~45 kB each in memory, the crops' PNG on disk): 8 models' worth
_FRAMES: OrderedDict[tuple[str, str, int, int], tuple[PlotData, str, PlotData, str]] = OrderedDict()
_FRAMES_LOCK = threading.Lock()
_FRAME_DIR = Path(tempfile.mkdtemp(prefix="stn-replay-frames-"))
atexit.register(shutil.rmtree, _FRAME_DIR, ignore_errors=True)  # each server start made one and left it behind
_BUNDLES_LOCK = threading.Lock()


def _replay_path(name: str, directory: Path | None = None) -> Path | None:
    d = directory or models_dir()
    try:
        card = load_card(name, d)
    except (ValueError, OSError, json.JSONDecodeError):
        return None
    rel = card.get("replay")
    path = d / rel if rel else d / f"{name}.replay.safetensors"
    return path if path.exists() else None


def replay_choices(directory: Path | None = None) -> list[str]:
    """Zoo models that ship a replay file, sorted."""
    return [n for n in list_models(directory) if _replay_path(n, directory) is not None]


def _bundle(name: str) -> _ReplayBundle:
    d = models_dir()
    path = _replay_path(name, d)
    if path is None:
        raise refusal(
            f"No replay for {name!r}: the zoo has replays for {', '.join(replay_choices()) or 'no model yet'}."
        )
    mtime = path.stat().st_mtime_ns
    key = (str(d), name, mtime)
    with _BUNDLES_LOCK:
        if key in _BUNDLES:
            return _BUNDLES[key]
    card = load_card(name, d)
    rep = load_replay(path)
    model = load_model(name, device="cpu", directory=d)
    view = ProbeView(rep.probe, rep.probe_labels)
    total = int(rep.steps[-1]) if len(rep.steps) else 1
    curve = curve_figure(rep.curve_step.tolist(), rep.curve_loss.tolist(), rep.curve_acc.tolist(), total_steps=total,
                         run_starts=rep.runs.tolist())
    start = ink_offset(rep.crops(model, 0)) if rep.params.numel() else float("nan")
    bundle = _ReplayBundle(name, card, rep, model, view, curve, start, mtime)
    with _BUNDLES_LOCK:
        _BUNDLES[key] = bundle
    return bundle


def _replay_frame(name: str, index: int) -> tuple[PlotData, np.ndarray, PlotData, str]:
    b = _bundle(name)
    rep = b.replay
    n = len(rep.steps)
    i = int(min(max(int(index or 0), 0), n - 1))
    step = int(rep.steps[i])
    has_st = rep.params.numel() > 0 and b.model.st is not None
    params = [rep.params[i, k] for k in range(rep.params.shape[1])] if has_st else []
    transform = b.model.st.transform if has_st else None
    probe = _plot(b.view.figure(transform, params, rep.labels[i]))
    crops = rep.crops(b.model, i)
    mosaic = crops_mosaic(crops)
    curve = _plot(with_step_marker(b.curve, step))
    # the curve is sampled on its own steps: read it at the nearest point
    cs = rep.curve_step
    j = int((cs - step).abs().argmin()) if len(cs) else None
    loss = float(rep.curve_loss[j]) if j is not None and step > 0 else None
    acc = float(rep.curve_acc[j]) if j is not None and step > 0 else None
    truth = rep.probe_labels.view(len(rep.probe_labels), -1)
    spelled = truth[:, 0].clone()
    for k in range(1, truth.shape[1]):
        spelled = spelled * 10 + truth[:, k]
    correct = int((rep.labels[i] == spelled).sum())
    total = int(rep.steps[-1])
    parts = [f"**{name}**: step {step:,} of {total:,} (snapshot {i + 1}/{n})"]
    if step > 0:
        parts.append(f"training loss {loss:.3f}, accuracy {_pct(acc)}")
    parts.append(f"probe images read right: {correct}/{len(spelled)}")
    if has_st:
        parts.append(
            f"centring {ink_offset(crops):.2f} (identity: {b.centring_start:.2f}; 0 = digit centred in its crop)"
        )
        parts.append(_start_window(b.model.config.start_scale))
    else:
        parts.append("CNN baseline: no transformer, the classifier sees the whole image")
    return probe, mosaic, curve, " · ".join(parts)


def dataset_info(name: str | None) -> dict:
    """The live-training dataset picker's line under it: the picked dataset's distortion in full."""
    return gr.update(info=DATASETS[name].description if name in DATASETS else None)


def replay_frame(name: str, index: int) -> tuple[PlotData, str, PlotData, str]:
    """:func:`_replay_frame` with the crops as a PNG file, each frame rendered once and kept (the last
    ``FRAME_CACHE``): a frame cost ~30 ms to draw and encode, and a class pressing Play at once, or a flood of
    plays, asked for the same frames again and again (74 plays at once held other visitors' readings for 18 s)."""
    b = _bundle(name)
    i = int(min(max(int(index or 0), 0), len(b.replay.steps) - 1))
    key = (str(models_dir()), name, b.version, i)
    with _FRAMES_LOCK:
        if key in _FRAMES:
            _FRAMES.move_to_end(key)
            return _FRAMES[key]
    probe, mosaic, curve, info = _replay_frame(name, i)
    path = _FRAME_DIR / f"{name}-{b.version}-{i}.png"
    tmp = path.with_suffix(f".{threading.get_ident()}.tmp")
    Image.fromarray(mosaic).save(tmp, format="PNG", compress_level=1)
    os.replace(tmp, path)  # whole, for a visitor reading it meanwhile
    frame = (probe, str(path), curve, info)
    with _FRAMES_LOCK:
        _FRAMES[key] = frame
        while len(_FRAMES) > FRAME_CACHE:
            _FRAMES.popitem(last=False)
    return frame


def _start_window(scale: float) -> str:
    """Where a model's grid began training (its card's ``start_scale``), in words."""
    if scale >= 1.0:
        return "trained from the identity grid (the whole image)"
    return f"trained from a centred window {scale:.0%} of the image's side (`--start-scale {scale:g}`)"


def _from_zero(payload: float | str | None) -> float:
    """The snapshot slider's value as sent, from 0 up (none: the first): :func:`render_replay` stops at the
    model's last snapshot. Anything but a finite number is refused with a sentence."""
    if payload is None:
        return 0.0
    try:
        value = float(payload)
    except (TypeError, ValueError):
        value = math.nan
    if not math.isfinite(value):
        raise refusal(f"The snapshot must be a number from 0 up, not {str(payload)[:40]!r}.", title="Cannot read the request")
    return max(value, 0.0)


def show_replay(name: str | None):
    """Model picked: reset the slider to its snapshots and show the first one."""
    if not name:
        msg = ("Choose a model to replay its training." if replay_choices() else
               "No zoo model has a replay yet: they are recorded by `python -m stn train` (models/NAME.replay.safetensors).")
        return gr.update(value=0, maximum=1), None, None, None, msg
    b = _bundle(name)
    n = len(b.replay.steps)
    every = int(b.replay.steps[1] - b.replay.steps[0]) if n > 1 else 0
    probe, mosaic, curve, info = replay_frame(name, 0)
    slider = gr.update(
        value=0,
        minimum=0,
        maximum=max(n - 1, 1),
        step=1,
        label=f"Snapshot (one every {every:,} training steps)" if every else "Snapshot",
    )
    desc = b.card.get("description", "")
    return slider, probe, mosaic, curve, f"{info}  \n{desc}"


def render_replay(name: str | None, index: float):
    """Slider moved: the frame at snapshot ``index``."""
    if not name:
        return None, None, None, ""
    return replay_frame(name, int(index))


async def play_replay(name: str | None, index: float):
    """Play: advance the slider one snapshot every ``PLAY_INTERVAL`` s, from ``index`` (or from the start if at the end)."""
    if not name:
        return
    b = await asyncio.to_thread(_bundle, name)
    n = len(b.replay.steps)
    start = int(index or 0)
    start = 0 if start >= n - 1 else start
    for i in range(start, n):
        frame = await asyncio.to_thread(replay_frame, name, i)
        yield (i, *frame)
        await asyncio.sleep(PLAY_INTERVAL)


def replay_playing() -> tuple[dict, dict]:
    """Play and Pause while a replay plays: Pause live, Play not (a second press did nothing)."""
    return gr.update(interactive=False), gr.update(interactive=True)


def replay_stopped() -> tuple[dict, dict]:
    """Play and Pause while no replay plays: Play live, Pause not."""
    return gr.update(interactive=True), gr.update(interactive=False)


# --------------------------------------------------------------------------- live training


def _session(request: gr.Request | None) -> str:
    return getattr(request, "session_hash", None) or "local"


def _live_status(u: LiveUpdate, run: LiveRun) -> str:
    s = run.settings
    head = {
        "running": "Training",
        "done": "Done:",
        "stopped": "Stopped:",
        "timeout": f"Time limit ({s.max_seconds:.0f} s) reached:",
    }[u.status]
    parts = [
        f"**{head}** {s.transform} on {s.dataset.upper()}, step {u.step:,} of {u.total_steps:,}",
        f"{u.steps_per_second:.1f} steps/s" if u.step else "building",
        f"{u.elapsed:.0f} s",
    ]
    if u.loss is not None:
        parts.append(f"loss {u.loss:.3f}, accuracy {_pct(u.acc)}")
    parts.append(f"probe {u.probe_correct}/{len(u.labels)} right")
    if u.crops:
        parts.append(f"centring {u.centring:.2f} (identity {u.centring_start:.2f}; 0 = centred)")
    return " · ".join(parts)


def _live_frame(u: LiveUpdate, run: LiveRun, view: ProbeView):
    probe = _plot(view.figure(run.transform, u.params, u.labels))
    mosaic = crops_mosaic(u.crops) if u.crops else None
    curve = _plot(
        curve_figure(u.curve["step"], u.curve["loss"], u.curve["acc"], current=u.step, total_steps=u.total_steps)
    )
    return probe, mosaic, curve


def train_live(
    transform: str,
    dataset: str,
    steps: float,
    loc_lr: str | float,
    seed: float | None,
    run: LiveRun | None = None,
    request: gr.Request | None = None,
    *,
    unread: Callable[[str], int | None] | None = None,
):
    """Start a live run and stream its updates.

    Yields ``(run state, status, probe figure, crops, curve, start button, stop button)``. ``unread(session)``
    counts the session's messages its page has not read yet (``None``: not known); the run ends once more
    than :data:`UNREAD_SLACK` of them lie unread for :data:`UNREAD_LIMIT_S` seconds.
    """
    session = _session(request)
    busy = (gr.update(), gr.update(), gr.update())
    try:
        settings = replace(
            DEFAULT_LIVE,
            dataset=dataset,
            transform=transform,
            steps=int(steps),
            loc_lr=float(loc_lr),
            seed=int(seed or 0),
        ).checked()
    except (TypeError, ValueError) as exc:
        yield run, f"⚠️ {exc}", *busy, gr.update(interactive=True), gr.update(interactive=False)
        return
    try:
        live = MANAGER.start(session, settings)
    except LiveBusy as exc:
        gr.Warning(str(exc))
        yield run, f"⚠️ {exc}", *busy, gr.update(interactive=True), gr.update(interactive=False)
        return
    try:
        view = ProbeView(live.probe.cpu(), live.probe_labels)
        caught_up, unattended = time.monotonic(), False
        for u in live.updates():
            running = not u.finished
            status = _live_status(u, live)
            if unattended and not running:
                status = f"{status}\n\n{UNREAD_NOTE.format(seconds=UNREAD_LIMIT_S)}"
            yield (
                live,
                status,
                *_live_frame(u, live, view),
                gr.update(interactive=not running),
                gr.update(interactive=running),
            )
            backlog = unread(session) if unread is not None else None
            if backlog is None or backlog <= UNREAD_SLACK:
                caught_up = time.monotonic()
            elif not unattended and time.monotonic() - caught_up > UNREAD_LIMIT_S:
                unattended = True
                live.stop()
                log.info("live run stopped: %d updates unread for over %.0f s (its page is gone or never read it)",
                         backlog, UNREAD_LIMIT_S)
    finally:  # also when Gradio closes the generator (Stop, or the visitor left)
        live.close()
        MANAGER.release(session, live)


UNREAD_NOTE = ("This page did not read the run's updates for {seconds:.0f} s (the tab was closed, asleep or "
               "offline), so the server stopped the run and gave its training slot to others. Press Start to train again.")


def _unread_counter(blocks: gr.Blocks | None) -> Callable[[str], int | None]:
    """``unread(session)`` for :func:`train_live`: the session's messages waiting in ``blocks``' queue, which a
    reading page takes as they come (Gradio 6.31's ``Queue.pending_messages_per_session``)."""

    def unread(session: str) -> int | None:
        pending = getattr(getattr(blocks, "_queue", None), "pending_messages_per_session", None)
        messages = pending.get(session) if pending is not None else None
        return messages.qsize() if messages is not None else None

    return unread


def stop_live(run: LiveRun | None = None, request: gr.Request | None = None):
    """Stop this session's run (the training event is also cancelled); re-enables Start."""
    stopped = False
    if run is not None:
        run.stop()
        stopped = True
    stopped = MANAGER.stop(_session(request)) or stopped
    if stopped and run is not None and run.last is not None:
        msg = _live_status(replace(run.last, status="stopped"), run)
    else:
        msg = "No training run to stop."
    return msg, gr.update(interactive=True), gr.update(interactive=False)


def _stop_on_close(run: LiveRun | None) -> None:
    if run is not None:
        run.stop()


# --------------------------------------------------------------------------- layout


def build_watch_tab() -> None:
    """Create the tab's components in the current ``gr.Tab``/``gr.Blocks`` context and wire the events."""
    choices = replay_choices()
    gr.Markdown(
        "## Watch a spatial transformer learn where to look\n"
        "Each probe image shows the **sampling grid** of the transformer: the region that becomes the "
        "crop the classifier reads (one colour per head; the cross is where the crop's centre reads). At the "
        "start of training the grid is the whole image (the identity), or, for a model trained with `--start-scale` "
        "(most RTS and TC models and the `-crop20` ones: the replay's line below says which), a centred window; "
        "as the network learns, it moves and shrinks onto the digit (and turns with it, for `r-affine-upright` and `rts-affine-upright`), and the crops on the right fill up. Labels in the corners "
        "are the model's readings (green ✓ right, red ✗ wrong)."
    )
    with gr.Group():
        gr.Markdown("### Training replay of a zoo model")
        with gr.Row(equal_height=True):
            model = gr.Dropdown(
                choices=choices,
                value=choices[0] if choices else None,
                label="Model",
                scale=2,
                allow_custom_value=False,
            )
            try:
                n_snap = len(_bundle(choices[0]).replay.steps) if choices else 2
            except Exception:  # noqa: BLE001 -- a broken replay must not keep the app from starting
                n_snap = 2
            # buttons=[]: Gradio's ↺ would set the value without the .input event that draws the frame
            slider = gr.Slider(0, max(n_snap - 1, 1), value=0, step=1, label="Snapshot", scale=4, buttons=[])
            # The maximum the page shows is the model's own snapshot count; a script calling replay_frame for
            # another model, with no session, would meet the first model's. Past the end reads the last snapshot.
            # (Not a subclass: Gradio writes a .pyi beside the file of each. The session's copy of the slider, which
            # show_replay's update makes, gets this from guard_requests.)
            slider.preprocess = _from_zero  # type: ignore[method-assign]
            play = gr.Button("▶ Play", scale=1, min_width=90)
            # "⏸" has no glyph in the page's fonts on some phones; live only while a replay plays
            pause = gr.Button("Pause", scale=1, min_width=90, interactive=False)
        replay_info = gr.Markdown(
            "" if choices else "No zoo model has a replay yet: they appear as `python -m stn train` finishes."
        )
        with gr.Row():
            replay_probe = gr.Plot(
                label="Probe images and sampling grids", show_label=True, scale=3, min_width=320, elem_id="watch-probe"
            )
            replay_crops = gr.Image(
                label="Crops (what the classifier sees)",
                elem_id="watch-crops",
                alt_text="The 16 probe images' crops at this snapshot: what the classifier sees of each",
                format="png",
                height=380,
                interactive=False,
                scale=2,
                min_width=240,  # on a phone the crops go under the probe images, each as wide as the screen
                elem_classes=["stn-pixelated"],
            )
        replay_curve = gr.Plot(label="Training loss and accuracy", show_label=False)

    replay_outputs = [replay_probe, replay_crops, replay_curve, replay_info]
    playing = play.click(
        replay_playing, None, [play, pause], api_visibility="private", concurrency_limit=None, show_progress="hidden"
    ).then(
        play_replay,
        [model, slider],
        [slider, *replay_outputs],
        api_name="replay_play",
        # A play lasts ~20 s; Gradio runs at most 40 events at once, in the order they came, so 74 plays at once
        # held every reading behind them for 18 s. In a group of their own they wait for each other only.
        concurrency_limit=PLAYS_AT_ONCE,
        concurrency_id="stn-replay-play",
        show_progress="hidden",
    )
    # after a play that ended, failed or was cancelled (the page runs a cancelled event's .then listeners too)
    playing.then(replay_stopped, None, [play, pause], api_visibility="private", concurrency_limit=None, show_progress="hidden")
    # Another model, or a snapshot picked, stops the play first. The page runs an event's listeners one after another:
    # a play left running went on over the new model's frames, and a cancel listed after show_replay would come only
    # once the new model's first frame was shown, with the old play's frames landing over it until then.
    stop_play = {"cancels": [playing], "api_visibility": "private", "concurrency_limit": None}
    model.change(None, **stop_play)
    model.change(
        show_replay,
        model,
        [slider, *replay_outputs],
        api_name="replay_model",
        concurrency_limit=None,
        show_progress="hidden",
    )
    slider.input(None, **stop_play)
    slider.input(
        render_replay,
        [model, slider],
        replay_outputs,
        api_name="replay_frame",
        concurrency_limit=None,
        trigger_mode="always_last",
        show_progress="hidden",
    )
    pause.click(None, **stop_play)

    # live training
    with gr.Group():
        gr.Markdown(
            "### Train it yourself\n"
            + BUNDLED_NOTE
            + f"Affine on RTS finds the digits within about a minute on a 2-core CPU (faster on a GPU). "
            f"One run per visitor, at most {MANAGER.max_runs} at a time on this server."
        )
        with gr.Row():
            transform = gr.Dropdown(transform_names(), value=DEFAULT_LIVE.transform, label="Transform family")
            dataset = gr.Dropdown(  # short names (the full ones were cut off); the picked one's description below
                [(LIVE_DATASET_NAMES.get(d, d.upper()), d) for d in LIVE_DATASETS],
                value=DEFAULT_LIVE.dataset,
                label="Dataset",
                info=DATASETS[DEFAULT_LIVE.dataset].description,
            )
            steps = gr.Slider(
                50,
                MAX_STEPS,
                value=DEFAULT_LIVE.steps,
                step=50,
                label=f"Training steps (batches of {DEFAULT_LIVE.batch_size})",
                buttons=[],  # as the page's other sliders: no ↺
            )
            loc_lr = gr.Dropdown(
                LOC_LRS, value="1e-3", label="Localisation-net learning rate", info="the zoo trains it at 0.0003 (3e-4)"
            )
            seed = gr.Number(0, precision=0, label="Seed", minimum=0)
        with gr.Row():
            start = gr.Button("Start training", variant="primary")
            stop = gr.Button("Stop", variant="stop", interactive=False)
        live_status = gr.Markdown("", elem_id="watch-live-status")
        with gr.Row():
            live_probe = gr.Plot(label="Probe images and sampling grids", scale=3, min_width=320)
            live_crops = gr.Image(
                label="Crops", format="png", height=380, interactive=False, scale=2, min_width=240,
                elem_classes=["stn-pixelated"], elem_id="watch-live-crops",
                alt_text="The 16 probe images' crops at this training step: what the classifier sees of each",
            )
        live_curve = gr.Plot(label="Training loss and accuracy", show_label=False)
    run_state = gr.State(None, delete_callback=_stop_on_close)

    root = gr.context.Context.root_block
    unread = _unread_counter(root)

    def train_live_served(transform, dataset, steps, loc_lr, seed, run=None, request: gr.Request | None = None):
        # not functools.partial: Gradio passes gr.Request only to a function whose own signature asks for it
        yield from train_live(transform, dataset, steps, loc_lr, seed, run, request, unread=unread)

    training = start.click(
        train_live_served,
        [transform, dataset, steps, loc_lr, seed, run_state],
        [run_state, live_status, live_probe, live_crops, live_curve, start, stop],
        api_name="train_live",
        concurrency_limit=MANAGER.max_runs + 2,  # over the cap: answered at once with the busy message
        concurrency_id="stn-live-training",
        show_progress="hidden",
    )
    dataset.input(dataset_info, dataset, dataset, api_visibility="private", show_progress="hidden", concurrency_limit=None)
    stop.click(
        stop_live,
        [run_state],
        [live_status, start, stop],
        api_name="stop_live",
        cancels=[training],
        concurrency_limit=None,
    )

    if root is not None:  # the zoo fills up while the server runs: list its replays on each page load
        root.load(
            _on_load,
            model,
            [model, slider, *replay_outputs],
            api_name="replay_models",
            concurrency_limit=None,
            show_progress="hidden",
        )


def _on_load(current: str | None):
    """Page load: the current list of replays, and the first frame of the selected one."""
    names = replay_choices()
    value = current if current in names else (names[0] if names else None)
    return gr.update(choices=names, value=value), *show_replay(value)


if __name__ == "__main__":
    with gr.Blocks(title="stn: watch it learn") as demo, gr.Tab("Watch it learn"):
        build_watch_tab()
    demo.queue().launch(server_port=int(os.environ.get("PORT", "7860")))
