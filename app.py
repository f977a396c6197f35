"""Spatial Transformer Networks, made visible: a Gradio app (``python app.py``).

Upload or draw a digit; a spatial transformer (Jaderberg et al., NeurIPS 2015) finds it, and the
app shows where it looked (the sampling grid over the input), what it read (the rectified crop),
what it concluded, θ and its reading, and what a plain CNN trained on the same data says.
Tabs that teach: a θ playground, the sampling kernel pixel by pixel, invariance to rotation,
watching a transformer learn, and the paper with our reproduction of its Table 1.

The logic lives in :mod:`stn.inference` (models, predictions) and :mod:`stn.viz` (figures);
this file wires components to them. Every event function is a plain module function, tested
directly in ``tests/test_app.py``.

Environment: ``STN_MODELS`` (the zoo, default ``models/``), ``STN_THREADS`` (CPU threads per
request, default 1), ``STN_CONCURRENCY`` (requests served at once), ``STN_SESSIONS`` (sessions kept
in memory, see ``SESSION_CAPACITY``), ``STN_READERS`` (worker processes that read uploads, see
``READERS``), ``STN_READ_AHEAD`` (0: do not read uploads before their call, see ``read_ahead``), and
Gradio's own ``GRADIO_SERVER_NAME`` / ``GRADIO_SERVER_PORT``.
"""

from __future__ import annotations

import atexit
import importlib.util
import io
import json
import logging
import math
import os
import signal
import sys
import threading
import traceback
import warnings
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps
from pathlib import Path
from typing import Any

# Gradio recomputes a pandas summary of up to 10,000 past events after *every* event, for a
# monitoring page this app does not enable: ~3 ms of CPU a request, growing with the history.
# Summarise every 1,000 events and keep 1,000 (bench/floor_app.py uses the same settings).
os.environ.setdefault("GRADIO_ANALYTICS_CACHE_FREQUENCY", "1000")
os.environ.setdefault("GRADIO_ANALYTICS_MAX_EVENTS", "1000")
# The server fetches nothing at run time: Gradio's analytics and version check (api.gradio.app) and the Hub's
# telemetry (huggingface.co) otherwise call out at launch, as `python app.py` and a Space start it.
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
# Gradio runs every event inside `import matplotlib` (twice, to pin its backend); where matplotlib is
# not installed each attempt searches the whole sys.path again (~0.3 ms an event). Record once that
# it is absent: `import matplotlib` then fails at once, as before.
if importlib.util.find_spec("matplotlib") is None:
    sys.modules["matplotlib"] = None  # type: ignore[assignment]

import gradio as gr  # after the settings above

# The zoo's batch-1 copies are traced at start-up (stn.model) while the examples are read in another thread;
# `warnings.catch_warnings` is not thread-safe, so torch.jit's deprecation notes leaked into the log now and
# then. The server silences them for the whole process instead.
warnings.filterwarnings("ignore", category=FutureWarning, module=r"torch\.jit\.")
import numpy as np
import orjson
import torch
from gradio import FileData
from gradio.components.plot import PlotData
from gradio.processing_utils import get_upload_folder
from PIL import EpsImagePlugin, Image
from starlette.middleware import Middleware

from stn import serving, viz
from stn.inference import SWEEP_ANGLES, TRAIN_ROTATION, Engine, ImageError, Result, UnknownModelError, rotation_followed
from stn.preprocess import MAX_FILE_BYTES, MAX_PIXELS
from stn.serving import ReaderPool, ReaderUnavailable
from webui import sessions
from webui.compress_page import CompressPage
from webui.guard import NOT_A_URL, NOT_UPLOADED, bounded_sketch, guard_requests
from webui.read_ahead import ReadAhead
from webui.refusal import refusal
from webui.request_shape import RequestShape
from webui.upload_space import UploadSpace

try:  # Hugging Face ZeroGPU: a GPU is attached for the duration of each decorated call
    import spaces  # type: ignore[import-not-found]
except ImportError:  # everywhere else the decorator is a no-op
    spaces = None
# Every Gradio Space has `spaces` installed, CPU ones too: only SPACES_ZERO_GPU says the hardware is ZeroGPU.
# Elsewhere the app reads uploads in its reader process and draws while the CNN reads, as benchmarked.
ZERO_GPU = spaces is not None and os.environ.get("SPACES_ZERO_GPU", "").lower() in ("1", "t", "true")

ROOT = Path(__file__).resolve().parent
ASSETS = ROOT / "assets"
EXAMPLES_DIR = ASSETS / "examples"
log = logging.getLogger("stn.app")

# Uploads are decoded by stn.preprocess from its short list of formats, but Gradio decodes a
# sketch's layers (and an upload sent as a data: URL) with a plain PIL.Image.open: an EPS sent in
# their place must not reach Ghostscript, the interpreter Pillow would run on it.
EpsImagePlugin.gs_binary = False

ON_GPU = torch.cuda.is_available()
if not ON_GPU:
    # A request is a few milliseconds of tiny convolutions: one thread each, and requests in
    # parallel, beats intra-op threads (which spin and stall when the cores are shared).
    torch.set_num_threads(int(os.environ.get("STN_THREADS", "1")))
CONCURRENCY = int(os.environ.get("STN_CONCURRENCY", "8" if ON_GPU else str(max(2, min(8, os.cpu_count() or 2)))))
MAX_FILE_SIZE = "10mb"  # refused by the server before it is stored; preprocess caps bytes and pixels again

# Sessions Gradio keeps in memory (least recently used first out). Every browser tab is one, and so is
# every REST call made without a session_hash (curl, bench/load.py): each holds a copy of the config of
# all the app's blocks plus the last values of its outputs (the plot JSON among them) and our `Session`,
# about 0.35 MB once `predict` has run (bench/README.md, issue 7). Gradio's default, 10,000, lets that
# grow to several GB; 32 bounds it to about 11 MB. (Measured on a busy 2-core machine, 620 REST calls
# of predict: +42 MB with 32, +48 MB with 64, levelling off once the sessions are full, then about
# 25 kB a call that is not sessions: Gradio's own, the floor app grows alike.) The price: a tab is
# evicted once 32 other sessions have been active since its own last event (a burst of 32 API calls
# does it; a quiet Space with a few visitors never does), and its teaching tabs then say "upload or
# draw a digit again" (SESSION_GONE) instead of working on the last digit: one click to recover,
# against a server whose memory is bounded. The main view's own outputs stay on the page. Raise it
# with STN_SESSIONS on a larger machine.
SESSION_CAPACITY = int(os.environ.get("STN_SESSIONS", "32"))
# A REST call without a session_hash opens a session; Gradio would render all ~140 blocks' configs
# into it up front (12-25 ms of CPU a call). Build them when first used instead (webui/sessions.py).
sessions.install()
# Gradio writes every upload and every output image into its cache folder (GRADIO_TEMP_DIR): every 15
# minutes, delete those older than an hour (a closed tab's state lives an hour in Gradio too). Without
# it a Space's disk fills with uploads. An upload older than that can no longer be re-read when the
# model changes; change_model says so (UPLOAD_GONE).
DELETE_CACHE = (900, 3600)  # (every N seconds, files older than M seconds)
SESSION_GONE = ("**No digit to work on.** Nothing has been read on this page yet, the last picture was not read, or "
                "the page's session has expired (the server keeps only the most recent sessions): upload or draw a digit "
                "again in *Read a digit*.")
UPLOAD_GONE = ("The picture you read is no longer on the server (uploads are kept for an hour): "
               "upload or draw a digit again.")

ENGINE = Engine(cache_dir=ROOT / ".gradio" / "stn-sweeps")
DEFAULT, DEFAULT_NOTE = ENGINE.default_model()
# The zoo's models whose transformer turns digits upright (trained for a classifier that had only seen
# upright digits): the Invariance tab offers one when the current model leaves the turn to its classifier.
# Most general first: another task's picture is offered the first of them.
UPRIGHT_MODELS = tuple(n for n in ("wild-affine-upright", "rts-affine-upright", "r-affine-upright") if n in ENGINE.names)


def upright_model_for(dataset: str) -> str | None:
    """The upright model of the same task if the zoo has one, else the first of :data:`UPRIGHT_MODELS`."""
    same = f"{dataset}-affine-upright"
    return same if same in UPRIGHT_MODELS else next(iter(UPRIGHT_MODELS), None)


# On a CPU with a core to spare, the main view reads uploads in a worker process (stn.serving.ReaderPool):
# the server's own Python and the reading's then stop taking turns on one GIL (bench/README.md, issue 7's
# sixth pass). STN_READERS: worker processes (each holds the zoo, ~0.3 GB); 0 reads in the server process.
READERS = int(os.environ.get("STN_READERS", "1" if not ON_GPU and (os.cpu_count() or 1) > 1 else "0"))
READER: ReaderPool | None = None  # started by main(); importing app.py (the tests) reads in this process
# Uploads are read in the reader process as they land, with the model asked for last, before the call
# that reads them (webui/read_ahead.py); STN_READ_AHEAD=0 waits for the call.
READ_AHEAD = os.environ.get("STN_READ_AHEAD", "1") != "0"
_last_model: str | None = None


def gpu(fn: Callable) -> Callable:
    """``spaces.GPU`` on ZeroGPU hardware, else ``fn`` itself."""
    return spaces.GPU(duration=30)(fn) if ZERO_GPU else fn


# --------------------------------------------------------------------------- helpers


def raw_file_input(component: gr.Image) -> gr.Image:
    """Make a ``gr.Image`` hand the uploaded file's path to the app untouched.

    Stock ``gr.Image`` opens every upload with PIL before the app sees it (a corrupt file
    then fails with a generic error) and may re-encode it into a content-hashed cache path.
    Here the file goes as it is to :func:`stn.preprocess.open_image`, which checks size,
    format and mode and says in one sentence what is wrong. (The method is replaced on the
    instance: a ``gr.Image`` subclass would make Gradio write an ``app.pyi`` stub.)
    """
    stock = component.preprocess

    def preprocess(payload: Any) -> str | None:
        if payload is None:
            return None
        url = getattr(payload, "url", None) or ""
        if getattr(payload, "path", None) and not url.startswith("data:"):
            return str(payload.path)
        try:
            return stock(payload)
        except Exception as exc:  # any failure to decode is the same answer to the user
            if not isinstance(exc, (OSError, ValueError, Image.DecompressionBombError)):  # not the picture: the server
                log.warning("an upload sent as data could not be decoded", exc_info=True)
            raise refusal("This upload is not an image we can read. Send a PNG or JPEG of a digit.", title="Cannot read the image") from None

    component.preprocess = preprocess  # type: ignore[method-assign]
    return component


def _plot(fig: dict | str) -> PlotData:
    """A plotly dict figure (or its JSON text) for ``gr.Plot`` (no plotly validation; orjson: ~10× json's speed)."""
    return PlotData(type="plotly", plot=fig if isinstance(fig, str) else orjson.dumps(fig, option=orjson.OPT_SERIALIZE_NUMPY).decode())


def user_errors(fn: Callable) -> Callable:
    """Turn the library's errors into ``gr.Error`` with their one human sentence; log the rest."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except ImageError as exc:
            raise refusal(str(exc), title="Cannot read the image") from None
        except UnknownModelError as exc:
            raise refusal(str(exc), title="Unknown model") from None
        except Exception as exc:  # noqa: BLE001 - never a traceback in the browser
            log.error("%s failed: %s", fn.__name__, traceback.format_exc())
            raise refusal(f"Something went wrong while reading this image ({type(exc).__name__}); please try another one.") from None

    return wrapper


DRAWING_NAME = "Your drawing"  # how a refusal names the sketchpad's picture


@dataclass(frozen=True)
class Drawing:
    """A sketch as the session keeps it: its ink (the RGBA image's alpha plane), zlib-compressed.

    A 400×400 drawing is 640 kB as pixels and ~2 kB here, made in ~0.2 ms: a PNG of the RGBA
    image cost ~4 ms, on every stroke of the live Draw tab. :meth:`image` gives the same picture back.
    """

    alpha: bytes  # zlib (level 1) of the alpha plane, row-major uint8
    size: tuple[int, int]  # (width, height)

    @classmethod
    def of(cls, image: Image.Image) -> Drawing:
        return cls(zlib.compress(image.getchannel("A").tobytes(), 1), image.size)

    def image(self) -> Image.Image:
        """The RGBA picture: black strokes whose opacity is the ink, as :func:`sketch_image` makes them."""
        rgba = Image.new("RGBA", self.size, (0, 0, 0, 0))
        rgba.putalpha(Image.frombytes("L", self.size, zlib.decompress(self.alpha)))
        return _named_drawing(rgba)


@dataclass
class Session:
    """What the teaching tabs work on: the last prediction and the picture it came from.

    Gradio keeps one per session (browser tab or REST call) until the session is evicted, so it
    holds only what the tabs use (build it with :meth:`of`): the model's name and card, the model's
    input ``(H, W)`` and the reading's θ, label and probabilities. Not kept: the crops, the baseline's
    reading, the pre-processing details (the figures are Gradio's own output values, never here).
    """

    result: Result
    source: str | bytes | Drawing  # an upload's file path, PNG bytes, or a sketch: re-read when the model changes

    @classmethod
    def of(cls, result: Result, source: Any) -> Session:
        """A session for ``result`` read from ``source`` (a path, PNG bytes, a :class:`Drawing`, or a
        PIL image, kept as PNG bytes)."""
        lean = serving.lean(result)
        if isinstance(source, Image.Image):
            buf = io.BytesIO()
            source.save(buf, format="PNG")
            source = buf.getvalue()
        return cls(lean, source)

    def picture(self) -> str | bytes | Image.Image:
        """The picture to read again (a path, PNG bytes or the sketch's image)."""
        return self.source.image() if isinstance(self.source, Drawing) else self.source


_pct = viz.percent


_plot_height = serving.plot_height


def _model_label(name: str) -> str:
    """The name (task and family: ``rts-affine-upright``) and its test error: the part that tells the models apart
    stays in a phone's selector, which cut "rts-affine-upright (affine on RTS, 0.5% error)" before the error."""
    info = ENGINE.info[name]
    return f"{name} ({100 * info.test_error:.1f}% error)" if info.test_error is not None else name


def model_choices() -> list[tuple[str, str]]:
    """(label, name) pairs for the model selector: a one-line description from each card."""
    return [(_model_label(n), n) for n in ENGINE.names]


def model_note(name: str | None) -> str:
    """A few words about the selected model, from its card."""
    if not name or name not in ENGINE.info:
        return DEFAULT_NOTE or "No model selected."
    info = ENGINE.info[name]
    lines = [info.description.rstrip(".") + "."]  # some cards end their description with a full stop
    if info.baseline:
        lines.append(f"Compared with the plain CNN `{info.baseline}`, trained on the same data.")
    elif info.has_transformer:
        lines.append("No plain-CNN baseline of this task ships with the zoo.")
    if name != DEFAULT and DEFAULT_NOTE:
        lines.append(DEFAULT_NOTE)
    return " ".join(lines)


def _crops(result: Result, mark: tuple[int, int] | None = None) -> np.ndarray:
    crops = result.reading.crops if result.info.has_transformer else [result.input]
    return viz.crops_image(crops, mark=mark)


def _main_outputs(result: Result, baseline: Callable[[], object] | None = None) -> tuple:
    """The main view's outputs (:func:`stn.serving.main_view`, the plot as Gradio sends it); ``baseline``
    (from ``Engine.predict_early``) is awaited only once the parts that do not need it are drawn."""
    fig, panel, theta, answer = serving.main_view(result, ENGINE.transform(result.model), baseline)
    return (_plot(fig), panel, theta, answer)


N_MAIN = 4  # outputs of _main_outputs: grid figure, reading panel, θ, JSON answer


@gpu
def _infer(source: Any, model: str) -> Result:
    return ENGINE.predict(source, model)


def _resolve_model(model: str | None) -> str:
    if model is not None and not isinstance(model, str):
        raise refusal(f"The model is named by a string (e.g. {DEFAULT!r}), not a {type(model).__name__}; "
                       "GET /gradio_api/call/models lists them.", title="Unknown model")
    if not model:
        if DEFAULT is None:
            raise refusal(DEFAULT_NOTE)
        return DEFAULT
    return ENGINE.resolve(model)


# --------------------------------------------------------------------------- main view events


@user_errors
def read_file(image: str | None, model: str | None) -> tuple:
    """An image file and a model name → the main view's outputs and the session (for examples and tests).

    Returns the grid figure, the reading panel (verdict, crops, class bars, the plain CNN's bars) as
    HTML, θ as HTML, the JSON (``label``, ``probs``, ``theta``, ``model``, ...), and the session state.
    """
    if image is None or (isinstance(image, str) and not image.strip()):
        raise refusal("No image: upload a picture of a digit, or draw one in the Draw tab.", title="Nothing to read")
    name = _resolve_model(model)
    global _last_model
    _last_model = name
    if READER is not None:
        try:  # in a reader process (stn.serving.ReaderPool); in this one while none is ready
            fig, panel, theta, answer, result = READER.read(image, name)
            return (_plot(fig), panel, theta, answer, Session.of(result, image))
        except ReaderUnavailable:
            pass
    if not ZERO_GPU:  # the figures are drawn while the plain CNN still reads (Engine.predict_early)
        result, baseline = ENGINE.predict_early(image, name)
        return (*_main_outputs(result, baseline), Session.of(result, image))
    result = _infer(image, name)  # ZeroGPU: the GPU is attached only inside the decorated call
    return (*_main_outputs(result), Session.of(result, image))


def _upload_path(image: Any) -> str | None:
    """The upload's path from ``predict``'s raw input: its event skips Gradio's per-component
    pre-processing, so the image arrives as the upload's payload (already checked and moved into
    Gradio's cache), and the model name as it was sent."""
    if image is None or isinstance(image, str):
        return image
    try:
        payload = image if isinstance(image, FileData) else FileData(**image)
    except (TypeError, ValueError):  # not a dict, or not an upload's fields (pydantic's errors are ValueErrors)
        raise refusal("This upload is not an image we can read. Send a PNG or JPEG of a digit.", title="Cannot read the image") from None
    return upload.preprocess(payload)  # the Upload tab's image component (raw_file_input)


def _sent(outputs: tuple) -> tuple:
    """Outputs as Gradio would post-process them (``predict``'s event skips that step: each output's
    post-processing is a round trip to a worker thread). Only the plot needs it; HTML strings, the
    JSON answer (plain Python types) and the session go as they are."""
    return tuple(o.model_dump() if isinstance(o, PlotData) else o for o in outputs)


@user_errors
def predict(image: Any, model: str | None) -> tuple:
    """The ``predict`` endpoint: an image file and a model name → figures, label, θ and a JSON answer.

    Returns, as sent: the grid figure (plotly JSON), the reading panel (verdict, crops, class bars,
    the plain CNN's bars) as HTML, θ as HTML, the JSON (``label``, ``probs``, ``theta``, ``model``,
    ...), and the session state.
    """
    return _sent(read_file(_upload_path(image), model))


def sketch_alpha(value: dict | None) -> np.ndarray | None:
    """The Sketchpad's ink: the alpha plane of its strokes, ``(H, W)`` uint8, or None when nothing is drawn.

    Strokes live in the layers' alpha channel (the composite's background follows the theme,
    so it is used only when there are no layers).
    """
    layers = [] if not value else [np.asarray(layer) for layer in (value.get("layers") or []) if layer is not None]
    alpha = None
    for layer in layers:
        if layer.ndim == 3 and layer.shape[2] == 4:
            a = layer[..., 3]
        elif layer.ndim == 2:
            a = layer
        else:
            continue
        alpha = a if alpha is None else np.maximum(alpha, a)
    if alpha is None and value and value.get("composite") is not None:
        comp = np.asarray(value["composite"])
        if comp.ndim == 3 and comp.shape[2] == 4 and comp[..., 3].min() < 255:
            alpha = comp[..., 3]
    return None if alpha is None or int(alpha.max()) < 32 else alpha.astype(np.uint8)


def sketch_image(value: dict | None) -> Image.Image:
    """The Sketchpad's strokes as a transparent RGBA image whose alpha is the ink (:func:`sketch_alpha`).
    Raises ``gr.Error`` when nothing is drawn."""
    alpha = sketch_alpha(value)
    if alpha is None:
        raise refusal("The sketchpad is empty: draw a digit first.", title="Nothing to read")
    rgba = np.zeros((*alpha.shape, 4), dtype=np.uint8)
    rgba[..., 3] = alpha
    return _named_drawing(Image.fromarray(rgba, "RGBA"))


def _named_drawing(image: Image.Image) -> Image.Image:
    """The library names a picture by its ``filename`` in a refusal's sentence ("the image: ..." otherwise)."""
    image.filename = DRAWING_NAME  # type: ignore[attr-defined]
    return image


@dataclass
class Pad:
    """A page's sketchpad as the server follows it. A ``gr.State`` hands each event the session's own
    object, so a clear is seen by a reading already under way: one that began before it is dropped
    (the button's and a model change's readings run beside the per-stroke ones)."""

    clears: int = 0  # how many times the pad was found empty
    clear: bool = False  # empty now: a model change then has no picture, and says nothing of a session


@dataclass
class Refused:
    """The picture this page last had refused (its sentence in a toast), still shown in the input: a model change
    reads it again (another model may read it: a number on the pair model) instead of the last picture read.
    Mutated in place, as :class:`Pad` is."""

    source: str | bytes | Drawing | None = None


def _unless_cleared(pad: Pad | None, start: int, outputs: tuple) -> tuple:
    """``outputs``, or no change at all when the pad was cleared since the reading began."""
    if pad is not None and pad.clears != start:
        return tuple(gr.skip() for _ in outputs)
    return outputs


@user_errors
def predict_sketch(value: dict | None, model: str | None, pad: Pad | None = None) -> tuple:
    """Read the drawing on the sketchpad (same outputs as :func:`predict`)."""
    start = pad.clears if pad is not None else 0
    img = sketch_image(value)
    if pad is not None:
        pad.clear = False
    name = _resolve_model(model)
    result = _infer(img, name)
    return _unless_cleared(pad, start, (*_main_outputs(result), Session.of(result, Drawing.of(img))))


def predict_sketch_live(value: dict | None, model: str | None, pad: Pad | None = None) -> tuple:
    """:func:`predict_sketch` after each stroke; a pad left empty ("Clear canvas", Undo) empties the
    views, and a reading of the wiped drawing still under way is dropped (:class:`Pad`)."""
    if sketch_alpha(value) is None:
        if pad is not None:
            pad.clears += 1
            pad.clear = True
        return cleared_pad()
    return predict_sketch(value, model, pad)


NOT_READ_HTML = ('<div id="stn-not-read">Not read: the message at the top of the page says why. '
                 "Upload or draw another picture.</div>")


def cleared_views() -> tuple:
    """The main view after a refusal: emptied, so that the previous picture's reading (still on the
    page) is not taken for this one's; the refusal's sentence is in Gradio's toast."""
    return (None, NOT_READ_HTML, "", None)


def _refused(source: Any, refused: Refused | None) -> tuple:
    """The views emptied and the session dropped: the teaching tabs and a model change no longer work on the
    picture read before the refused one (a model change reads the refused one again, when it is known)."""
    if refused is not None:
        refused.source = source
    return (*cleared_views(), None)


def refused_upload(image: Any, refused: Refused | None = None) -> tuple:
    """After the Upload tab's picture was refused."""
    try:
        path = _upload_path(image)
    except gr.Error:  # not an upload: nothing to read again
        path = None
    return _refused(path, refused)


def refused_sketch(value: dict | None, refused: Refused | None = None) -> tuple:
    """After the drawing was refused."""
    try:
        drawing = Drawing.of(sketch_image(value))
    except Exception:  # noqa: BLE001 - an empty or damaged pad: nothing to read again
        drawing = None
    return _refused(drawing, refused)


def refused_by_model(session: Session | None, refused: Refused | None = None) -> tuple:
    """After the new model refused the picture: it is read again at the next model change."""
    return _refused(session.source if session is not None else refused.source if refused is not None else None, refused)


PAD_CLEARED_HTML = ('<div id="stn-pad-cleared">The pad is clear: draw a digit, and it is read after each stroke.</div>')


def cleared_pad() -> tuple:
    """The main view and the session once the pad is cleared: emptied, since the reading beside the pad
    was of the drawing just wiped (the teaching tabs, fed by the session, say there is no digit)."""
    return (None, PAD_CLEARED_HTML, "", None, None)


@user_errors
def change_model(model: str | None, session: Session | None, pad: Pad | None = None, refused: Refused | None = None) -> tuple:
    """A new model: its note, and the current picture read again with it (the one refused, if it was)."""
    note = model_note(model)
    if session is None and pad is not None and pad.clear:  # the pad was cleared: nothing to read, nothing lost
        return (note, *cleared_pad())
    if session is None and refused is not None and refused.source is not None:
        source = refused.source
        picture = source.image() if isinstance(source, Drawing) else source
        if isinstance(picture, str) and not Path(picture).is_file():
            raise refusal(UPLOAD_GONE, title="Read the digit again")
        result = _infer(picture, _resolve_model(model))
        refused.source = None
        return (note, *_main_outputs(result), Session.of(result, source))
    if session is None:  # evicted: the view shows a picture this server no longer has
        gr.Warning(SESSION_GONE.replace("*", ""), title="Read the digit again")
        # emptied, so that the last model's reading is not shown under the new model's name
        return (note, *cleared_views(), None)
    if isinstance(session.source, str) and not Path(session.source).is_file():  # deleted with Gradio's cache
        raise refusal(UPLOAD_GONE, title="Read the digit again")
    name = _resolve_model(model)
    start = pad.clears if pad is not None else 0
    result = _infer(session.picture(), name)
    if not isinstance(session.source, Drawing):
        return (note, *_main_outputs(result), Session.of(result, session.source))
    return (note, *_unless_cleared(pad, start, (*_main_outputs(result), Session.of(result, session.source))))


def initial_view() -> tuple:
    """What the page shows when it opens: the first example read by the default model."""
    if DEFAULT is None or not EXAMPLES:
        return (None, DEFAULT, model_note(DEFAULT), *(gr.skip() for _ in range(N_MAIN)), None)
    path, model = EXAMPLES[0]
    return (path, model, model_note(model), *example_outputs(0))


# --------------------------------------------------------------------------- θ playground

PG_SLIDERS = ("rotation", "scale_x", "scale_y", "shear", "tx", "ty", "px", "py")


def _pg_visibility(info_transform: str | None) -> dict[str, bool]:
    t = info_transform
    return {
        "rotation": t in ("affine", "projective"),
        "scale_x": t in ("affine", "projective", "attention"),
        "scale_y": t in ("affine", "projective"),
        "shear": t in ("affine", "projective"),
        "tx": t in ("affine", "projective", "attention"),
        "ty": t in ("affine", "projective", "attention"),
        "px": t == "projective",
        "py": t == "projective",
        "tps": t == "tps",
    }


def _slider_values(transform: str | None, p: np.ndarray) -> dict[str, float]:
    if transform in ("affine", "attention", "projective"):
        r = viz.affine_reading(transform, p)
        assert r is not None
        vals = {"rotation": r["rotation"], "scale_x": r["scale_x"], "scale_y": r["scale_y"], "shear": r["shear"], "tx": r["tx"], "ty": r["ty"]}
        vals["px"], vals["py"] = (float(p[6]), float(p[7])) if transform == "projective" else (0.0, 0.0)
        return vals
    return {"rotation": 0.0, "scale_x": 1.0, "scale_y": 1.0, "shear": 0.0, "tx": 0.0, "ty": 0.0, "px": 0.0, "py": 0.0}


def _params_from_sliders(transform: str, old: np.ndarray, vals: dict[str, float], point: int, cx: float, cy: float) -> np.ndarray:
    if transform == "attention":
        return np.array([vals["scale_x"], vals["tx"], vals["ty"]])
    if transform in ("affine", "projective"):
        theta = viz.theta_from_reading(vals["rotation"], vals["scale_x"], vals["scale_y"], vals["shear"], vals["tx"], vals["ty"])
        return np.array(theta + ([vals["px"], vals["py"]] if transform == "projective" else []))
    if transform == "tps":
        p = np.array(old, dtype=np.float64).copy()
        p[2 * point : 2 * point + 2] = (cx, cy)
        return p
    return np.asarray(old)


def _playground_view(session: Session, params: list[np.ndarray], point: int | None = None) -> tuple:
    res = session.result
    info = res.info
    reading = ENGINE.read_with(res.model, res.input, params)
    fig = viz.grid_figure(res.input, ENGINE.transform(res.model), params, info.crop_size,
                          height=_plot_height(info.input_size), highlight_point=point)
    crops = viz.crops_image(reading.crops)
    theta = viz.theta_html(info.transform, params, info.input_size, info.transform_options)
    verdict = f"## Through this θ the classifier reads **{reading.label}** ({_pct(reading.probs.max())})"
    if reading.label != res.reading.label:
        verdict += f" — with the predicted θ it read **{res.reading.label}**"
    return _plot(fig), crops, viz.shown_confidences(reading.top()), theta, verdict


PG_EMPTY = "Read a digit in the first tab: the playground starts from the θ the transformer predicted for it."
PG_GONE = SESSION_GONE + " The playground starts from the θ the transformer predicted for it."


def playground_reset(session: Session | None, head: str | None = None) -> tuple:
    """Start (again) from the predicted θ: slider values and visibility, head and point choices, views."""
    if session is None or not session.result.info.has_transformer:
        msg = PG_GONE if session is None else "This model is a plain CNN: there is no transformer and no θ to play with."
        hidden = [gr.update(visible=False)] * (len(PG_SLIDERS) + 3)
        return (gr.update(value=msg), None, *hidden, gr.update(visible=False), None, None, None, "")
    info = session.result.info
    params = [p.copy() for p in session.result.reading.params]
    k = _head_index(head, info.heads)
    vis = _pg_visibility(info.transform)
    vals = _slider_values(info.transform, params[k])
    sliders = [gr.update(value=_clamp_slider(s, vals[s]), visible=vis[s]) for s in PG_SLIDERS]
    n_points = len(params[k]) // 2 if info.transform == "tps" else 0
    point_upd = gr.update(visible=vis["tps"], maximum=max(2, n_points), value=1)
    cx, cy = (float(params[k][0]), float(params[k][1])) if info.transform == "tps" else (0.0, 0.0)
    cx_upd = gr.update(visible=vis["tps"], value=cx)
    cy_upd = gr.update(visible=vis["tps"], value=cy)
    head_upd = gr.update(visible=info.heads > 1, choices=[f"head {i + 1}" for i in range(info.heads)], value=f"head {k + 1}")
    plot, crops, label, theta, verdict = _playground_view(session, params, 0 if info.transform == "tps" else None)
    return (verdict, params, *sliders, point_upd, cx_upd, cy_upd, head_upd, plot, crops, label, theta)


SLIDER_RANGES = {"rotation": (-180, 180), "scale_x": (0.05, 2.0), "scale_y": (-2.0, 2.0), "shear": (-1.5, 1.5),
                 "tx": (-1.5, 1.5), "ty": (-1.5, 1.5), "px": (-0.5, 0.5), "py": (-0.5, 0.5)}


def _clamp_slider(name: str, v: float) -> float:
    lo, hi = SLIDER_RANGES[name]
    return float(min(hi, max(lo, round(float(v), 3))))


def _head_index(head: str | None, heads: int) -> int:
    try:
        k = int(str(head).split()[-1]) - 1
    except (ValueError, IndexError):
        k = 0
    return min(max(k, 0), heads - 1)


def playground_update(session: Session | None, params: list | None, head: str | None, rotation: float, scale_x: float,
                      scale_y: float, shear: float, tx: float, ty: float, px: float, py: float, point: float, cx: float,
                      cy: float) -> tuple:
    """A slider moved: the selected head's θ from the sliders, then grid, crop and answer."""
    if session is None:  # expired (the sliders show only once a digit was read)
        return SESSION_GONE, None, None, None, None, ""
    if not session.result.info.has_transformer or params is None:
        return (gr.skip(),) * 6
    info = session.result.info
    k = _head_index(head, info.heads)
    vals = dict(zip(PG_SLIDERS, (rotation, scale_x, scale_y, shear, tx, ty, px, py)))
    pt = int(point or 1) - 1
    params = [np.asarray(p, dtype=np.float64).copy() for p in params]
    params[k] = _params_from_sliders(info.transform, params[k], vals, pt, cx, cy)
    plot, crops, label, theta, verdict = _playground_view(session, params, pt if info.transform == "tps" else None)
    return verdict, params, plot, crops, label, theta


def playground_select(session: Session | None, params: list | None, head: str | None, point: float) -> tuple:
    """Another head or control point chosen: move the sliders to its current values."""
    if session is None:
        gr.Warning(SESSION_GONE.replace("*", ""), title="Read the digit again")
    if session is None or params is None or not session.result.info.has_transformer:
        return (gr.skip(),) * (len(PG_SLIDERS) + 3)
    info = session.result.info
    k = _head_index(head, info.heads)
    p = np.asarray(params[k], dtype=np.float64)
    vals = _slider_values(info.transform, p)
    pt = int(point or 1) - 1
    cx, cy = (float(p[2 * pt]), float(p[2 * pt + 1])) if info.transform == "tps" else (0.0, 0.0)
    plot = _plot(viz.grid_figure(session.result.input, ENGINE.transform(session.result.model), params, info.crop_size,
                                 height=_plot_height(info.input_size), highlight_point=pt if info.transform == "tps" else None))
    return (*[gr.update(value=_clamp_slider(s, vals[s])) for s in PG_SLIDERS], gr.update(value=cx), gr.update(value=cy), plot)


def playground_identity(session: Session | None, head: str | None) -> tuple:
    """θ of the identity for the selected head: the crop is the whole input, resized."""
    if session is None:
        return (*(gr.skip(),) * (len(PG_SLIDERS) + 2), SESSION_GONE, None, None, None, None, "")
    if not session.result.info.has_transformer:
        return (gr.skip(),) * (len(PG_SLIDERS) + 2 + 6)
    info = session.result.info
    k = _head_index(head, info.heads)
    t = ENGINE.transform(session.result.model)
    params = [p.copy() for p in session.result.reading.params]
    params[k] = t.identity(1).double()[0].numpy()
    vals = _slider_values(info.transform, params[k])
    plot, crops, label, theta, verdict = _playground_view(session, params, 0 if info.transform == "tps" else None)
    cx, cy = (float(params[k][0]), float(params[k][1])) if info.transform == "tps" else (0.0, 0.0)
    return (*[gr.update(value=_clamp_slider(s, vals[s])) for s in PG_SLIDERS], gr.update(value=cx), gr.update(value=cy),
            verdict, params, plot, crops, label, theta)


# --------------------------------------------------------------------------- sampling kernel

KN_TARGET = 448  # crop size in the kernel view (px): larger than shown, as Gradio maps clicks assuming no upscaling
KN_BORDER = 4


def kernel_view(session: Session | None, head: str | None, mode: str, row: float, col: float) -> tuple:
    """One output pixel of a head's crop: its source point, the input pixels feeding it and their weights."""
    if session is None:
        return (None, None, SESSION_GONE + " This view explains one pixel of its crop.")
    res = session.result
    info = res.info
    if not info.has_transformer:
        return (None, None, "This model is a plain CNN: it reads the input as it is, with no resampling to explain.")
    k = _head_index(head, info.heads)
    mode = mode if mode in ("bilinear", "nearest") else "bilinear"
    h, w = info.crop_size
    r, c = int(min(max(row, 0), h - 1)), int(min(max(col, 0), w - 1))
    t = ENGINE.transform(res.model)
    p = res.reading.params[k]
    crop = ENGINE.warp(res.model, res.input, p, mode)
    pt = viz.map_points(t, p, np.array([[(2 * c + 1) / w - 1, (2 * r + 1) / h - 1]]))[0]
    dense = np.linspace(-1, 1, 33)
    edge = np.concatenate([np.stack([dense, -np.ones_like(dense)], 1), np.stack([np.ones_like(dense), dense], 1),
                           np.stack([dense[::-1], np.ones_like(dense)], 1), np.stack([-np.ones_like(dense), dense[::-1]], 1)])
    ring = viz.map_points(t, p, edge)
    ring_px = np.stack([((ring[:, 0] + 1) * info.input_size[1] - 1) / 2, ((ring[:, 1] + 1) * info.input_size[0] - 1) / 2], 1)
    fig = viz.kernel_figure(res.input, (float(pt[0]), float(pt[1])), mode, region=[ring_px], height=_plot_height(info.input_size, 520, 240, 320))
    image = viz.crops_image([crop], target=KN_TARGET, border=KN_BORDER, colors=[viz.head_color(k)], mark=(r, c))
    gradient = viz.kernel_gradient(res.input, t, p, (h, w), (r, c), mode)
    formula = viz.kernel_formula(res.input, (float(pt[0]), float(pt[1])), mode, (r, c), k, gradient)
    value = float(crop[r, c])
    formula += f"\n\nThe crop's pixel holds **{value:.3f}**, as `grid_sample` computed it."
    alt = f"The crop ({mode} kernel), output pixel row {r}, column {c} framed: it holds {value:.3f}. Click a pixel to pick it."
    return _plot(fig), gr.update(value=image, alt_text=alt), formula


def kernel_reset(session: Session | None) -> tuple:
    """A new session: row/column sliders sized to the crop and centred, head choices, then the view."""
    if session is None or not session.result.info.has_transformer:
        return (gr.update(), gr.update(), gr.update(visible=False), *kernel_view(session, None, "bilinear", 0, 0))
    info = session.result.info
    h, w = info.crop_size
    r, c = h // 2, w // 2
    head_upd = gr.update(visible=info.heads > 1, choices=[f"head {i + 1}" for i in range(info.heads)], value="head 1")
    return (gr.update(maximum=h - 1, value=r), gr.update(maximum=w - 1, value=c), head_upd,
            *kernel_view(session, "head 1", "bilinear", r, c))


def kernel_click(session: Session | None, head: str | None, mode: str, evt: gr.SelectData) -> tuple:
    """A click on the crop picks the output pixel under it."""
    if session is None:
        return (gr.skip(), gr.skip(), *kernel_view(None, head, mode, 0, 0))
    if not session.result.info.has_transformer:
        return (gr.skip(),) * 5
    h, w = session.result.info.crop_size
    f = max(1, round(KN_TARGET / max(h, w)))
    index = evt.index
    if not (isinstance(index, (list, tuple)) and len(index) == 2 and all(isinstance(v, (int, float)) and math.isfinite(v) for v in index)):
        raise refusal("A click on the crop gives the pixel's (x, y): send two numbers.", title="Cannot read the request")
    x, y = index
    c = int(min(max((x - KN_BORDER) // f, 0), w - 1))
    r = int(min(max((y - KN_BORDER) // f, 0), h - 1))
    return (gr.update(value=r), gr.update(value=c), *kernel_view(session, head, mode, r, c))


# --------------------------------------------------------------------------- invariance


def invariance_view(session: Session | None, rotation: float, scale: float, dx: float, dy: float, sweep: dict | None = None) -> tuple:
    """The input rotated, scaled and shifted by the sliders, read again: grid, crop, both answers."""
    if session is None:
        return (None, None, None, SESSION_GONE, gr.skip())
    res = session.result
    x = ENGINE.distort(res.input, rotation, scale, (dx, dy))
    r = ENGINE.predict_tensor(x, res.model)
    info = r.info
    fig = viz.grid_figure(r.input, ENGINE.transform(r.model), r.reading.params, info.crop_size, height=_plot_height(info.input_size, 400, 220, 340))
    reader = "The transformer" if info.has_transformer else "The plain CNN"
    text = f"## {reader} reads **{r.reading.label}** ({_pct(r.reading.probs.max())})"
    if r.baseline is not None:
        text += f"; the plain CNN reads **{r.baseline.label}** ({_pct(r.baseline.probs.max())})"
    if r.info.has_transformer and r.reading.params:
        rot = viz.affine_reading("affine", _fit(r)) if info.transform != "affine" else viz.affine_reading("affine", r.reading.params[0])
        if rot is not None and info.transform != "attention":
            text += f"\nThe grid is turned {rot['rotation']:+.0f}° (the input by {rotation:+.0f}°)."
    chart = _rotation_chart(sweep, info, rotation) if sweep is not None else gr.skip()
    label = gr.update(value=viz.shown_confidences(r.reading.top(3)), label=f"{reader} reads")
    return _plot(fig), _crops(r), label, text, chart


N_TEACHING_CONTROLS = 6  # the playground's two buttons, the kernel's choice and sliders, the accuracy sweep's button


def teaching_controls(session: Session | None) -> tuple:
    """The teaching tabs' controls shown only where they do something: with a reading by a transformer (a plain CNN
    has no θ to play with, no sampling kernel, no sweep against itself; with no reading there is nothing to move)."""
    shown = gr.update(visible=session is not None and session.result.info.has_transformer)
    return (shown,) * N_TEACHING_CONTROLS


def _fit(r: Result) -> np.ndarray:
    from stn.inference import fit_affine

    return fit_affine(ENGINE.transform(r.model), r.reading.params[0])


def _rotation_chart(sweep: dict | None, info: Any, current: float | None = None) -> PlotData | None:
    if sweep is None or sweep.get("recovered") is None:
        return None
    acc = ENGINE.accuracy_sweep(info.name) if ENGINE.has_sweep(info.name) else None
    band = (acc["recovered_q1"], acc["recovered_q3"]) if acc and "recovered_q1" in acc else None
    tr = TRAIN_ROTATION.get(info.dataset)
    return _plot(viz.rotation_figure(
        sweep["angles"], sweep["recovered"], test_median=acc.get("recovered_median") if acc else None, test_band=band,
        trained=(-tr, tr) if tr else None, current=current,
    ))


def invariance_reset(session: Session | None) -> tuple:
    """A new session: sliders back to zero, this input's rotation sweep, what the model's transformer
    does with a turn (and the model that turns digits upright when this one does not), and the
    accuracy chart if ready."""
    zero = (gr.update(value=0), gr.update(value=1.0), gr.update(value=0), gr.update(value=0))
    if session is None:
        return (*zero, None, None, None, None, SESSION_GONE, None, None, "", "", gr.update(visible=False))
    res = session.result
    info = res.info
    h, w = info.input_size
    shift_upd = (gr.update(value=0, minimum=-(w // 3), maximum=w // 3), gr.update(value=0, minimum=-(h // 3), maximum=h // 3))
    sweep = ENGINE.rotation_sweep(res.model, res.input, list(SWEEP_ANGLES)) if info.has_transformer else None
    plot, crops, label, text, _ = invariance_view(session, 0, 1.0, 0, 0)
    chart = _rotation_chart(sweep, info, 0.0)
    acc_plot, note = accuracy_chart(session, compute=False)
    return (zero[0], zero[1], *shift_upd, sweep, plot, crops, label, text, chart, acc_plot, note, *invariance_verdict(session, sweep))


def invariance_verdict(session: Session | None, sweep: dict | None) -> tuple:
    """What the model's transformer does with a turn, in words, measured on the bundled test digits
    once their sweep is ready (on this picture until then), and the button to the model that turns
    digits upright when this one does not."""
    if session is None:
        return "", gr.update(visible=False)
    info = session.result.info
    within = TRAIN_ROTATION.get(info.dataset, 45.0)
    here = rotation_followed(sweep["angles"], sweep["recovered"], within) if sweep else None
    acc = ENGINE.accuracy_sweep(info.name) if info.has_transformer and ENGINE.has_sweep(info.name) else None
    upright = None if info.name in UPRIGHT_MODELS else upright_model_for(info.dataset)
    task = {"trained_on_turns": info.dataset in TRAIN_ROTATION, "can_turn": info.transform != "attention"}
    if acc is not None and acc.get("recovered_median") is not None:
        followed = rotation_followed(acc["angles"], acc["recovered_median"], within)
        verdict = viz.rotation_verdict(info.name, followed, within, upright, on=f"{acc['n']} test digits", picture=here,
                                       **task)
    else:
        followed = here
        verdict = viz.rotation_verdict(info.name, followed, within, upright, **task)
    offer = upright is not None and (followed is None or followed < 0.7)
    return verdict, gr.update(visible=offer, value=f"Read this picture with {upright}" if offer else None)


def read_with_upright(session: Session | None) -> tuple:
    """The Invariance tab's button: the model selector set to the model that turns digits upright
    (:func:`upright_model_for` the current task), and the current picture read again with it (the
    tabs then follow the new reading)."""
    name = upright_model_for(session.result.info.dataset if session is not None else "")
    if name is None:  # the button is hidden then; an old page may still send the click
        return tuple(gr.skip() for _ in range(N_MAIN + 3))
    return (name, *change_model(name, session))


def accuracy_chart(session: Session | None, compute: bool = True) -> tuple:
    """ST-CNN against the plain CNN over the rotation sweep of bundled test digits."""
    if session is None:
        return None, SESSION_GONE
    info = session.result.info
    if not info.has_transformer:
        return None, "This model is a plain CNN; pick a transformer to compare it with its baseline."
    if not compute and not ENGINE.has_sweep(info.name):
        return None, "The accuracy sweep is being computed for this model; press **Compute the accuracy sweep** to wait for it."
    acc = ENGINE.accuracy_sweep(info.name)
    tr = TRAIN_ROTATION.get(info.dataset)
    curves = {f"{info.name} (ST-CNN)": acc["accuracy"][info.name]}
    if acc.get("baseline"):
        curves[f"{acc['baseline']} (plain CNN)"] = acc["accuracy"][acc["baseline"]]
    fig = viz.accuracy_figure(acc["angles"], curves, trained=(-tr, tr) if tr else None, n=acc["n"])
    note = (f"{acc['n']} MNIST test digits from the bundled subset, placed on the model's canvas and rotated; "
            + ("the shaded band is the rotation range seen in training." if tr else "this task was trained without rotations."))
    if not acc.get("baseline"):
        note += " No plain-CNN baseline of this task ships with the zoo."
    return _plot(fig), note


def accuracy_chart_now(session: Session | None, progress: gr.Progress = gr.Progress()) -> tuple:  # noqa: B008
    """The button: compute the sweep (about ten seconds on a CPU) and draw it."""
    progress(0, desc="Rotating test digits and reading them with both models")
    return accuracy_chart(session, compute=True)


def _uploaded_file(image: FileData | dict | str | None) -> str:
    """The server path of an uploaded file, which must lie in Gradio's upload folder.

    ``gr.api`` endpoints get the request's JSON as it is (no component checks the path), so this
    does what ``gr.Image`` would: only files uploaded through ``/gradio_api/upload`` are read, never
    another path on the server, and URLs are not fetched.
    """
    path = image.get("path") if isinstance(image, dict) else getattr(image, "path", image)
    if not isinstance(path, str) or not path.strip():
        raise refusal("No image: upload a picture of a digit (POST /gradio_api/upload) and send its path.", title="Nothing to read")
    if "://" in path:
        raise refusal(NOT_A_URL, title="Cannot read the image")
    folder = os.path.realpath(get_upload_folder())
    real = os.path.realpath(path)
    if os.path.commonpath([folder, real]) != folder:
        raise refusal(NOT_UPLOADED, title="Cannot read the image")
    if not os.path.isfile(real):
        raise refusal(UPLOAD_GONE, title="Cannot read the image")
    return real


@user_errors
def read_api(image: FileData, model: str | None = None) -> dict:
    """The ``read`` endpoint: an image file (and a model name) → the JSON answer, no figures.

    The same pre-processing and inference as ``predict`` and the same JSON as its last output
    (``label``, ``probs``, ``theta``, ``model``, ``transform``, ``heads``, ``reading``, ``baseline``...);
    nothing is drawn and nothing is kept for the teaching tabs. A file that is not a readable
    digit is refused with one sentence that says why. ``model`` defaults to the app's default.
    """
    path, name = _uploaded_file(image), _resolve_model(model)
    if READER is not None:
        try:  # in the reader process (or the reading its upload started: webui/read_ahead.py)
            return READER.answer(path, name)
        except ReaderUnavailable:
            pass
    return _infer(path, name).to_json()


def read_ahead(paths: list[str]) -> None:
    """Start reading new uploads in the reader process, with the model asked for last, before the
    ``predict`` that reads them arrives (webui/read_ahead.py). Without a reader process: nothing."""
    if READER is None or not READ_AHEAD or not READER.ready:
        return
    name = _last_model or DEFAULT
    if name is None:
        return
    for path in paths:
        READER.read_ahead(path, name)


def list_models_api() -> list[dict]:
    """The ``models`` endpoint: each model of the zoo with its one-line description."""
    return [{"name": n, "description": ENGINE.info[n].description, "transform": ENGINE.info[n].transform,
             "heads": ENGINE.info[n].heads, "dataset": ENGINE.info[n].dataset, "test_error": ENGINE.info[n].test_error,
             "baseline": ENGINE.info[n].baseline, "default": n == DEFAULT} for n in ENGINE.names]


# --------------------------------------------------------------------------- about

PAPER = """
## The paper in a few sentences
A **spatial transformer** (Jaderberg, Simonyan, Zisserman and Kavukcuoglu, *Spatial Transformer
Networks*, NeurIPS 2015) is a module that a network uses to *look at* its input the way it needs
to. A small **localisation network** looks at the input and regresses the parameters θ of a
transformation; the **grid generator** turns θ into a sampling grid — for each output pixel, the
point of the input it reads; the **sampler** reads the input there with a differentiable kernel
(bilinear). Because every step is differentiable, the whole thing trains end to end from the
classification loss alone: nobody tells it where the digit is. It can learn to crop, rotate, scale
and un-warp the digit so that the classifier behind it sees a canonical view, and it beats a
plain CNN on every distorted-MNIST task of the paper (Table 1 below).

In this app the grid you see over the input is exactly that sampling grid; the crop is the
sampler's output, which the classifier reads. What each transformer learns is its own finding:
trained end to end on turned digits, most of this zoo's find the digit and its size and leave
most of the turn to their classifier (the *Invariance* tab measures how much of a turn each undoes);
the `*-upright` models, whose classifier had only ever seen upright digits, turn it upright.
"""


def _training_cell(tr: dict) -> str:
    """A card's training in a few words: for a fine-tuned model, the epochs of its whole history, then its last run."""
    epochs, total = tr.get("epochs"), tr.get("total_epochs")
    run = (f"{float(epochs):g} epochs, " if epochs is not None else "") + \
        f"{tr.get('steps', '–')} steps, {tr.get('train_seconds', 0):.0f} s"
    if total is not None and epochs is not None and float(total) != float(epochs):
        return f"{float(total):g} epochs in all (the last run: {run})"
    return run


def cards_html() -> str:
    """The model cards of the zoo as one table."""
    if not ENGINE.cards:
        return f"<p>{DEFAULT_NOTE}</p>"
    rows = []
    for name in ENGINE.names:
        c = ENGINE.cards[name]
        info = ENGINE.info[name]
        tr = c.get("training", {})
        err = c.get("metrics", {}).get("test_error")
        rows.append(
            "<tr>" + "".join(f"<td>{v}</td>" for v in (
                f"<b>{name}</b>", info.dataset.upper(), info.transform or "— (CNN)", info.heads,
                f"{100 * err:.2f}%" if err is not None else "–", f"{c.get('parameters', 0):,}",
                _training_cell(tr), str(tr.get("hardware", "–")).replace(", 1 threads", ", 1 thread"),
            )) + "</tr>"
        )
    head = "".join(f"<th>{h}</th>" for h in ("model", "data", "transform", "heads", "test error", "parameters", "training", "hardware"))
    return (f'<div class="stn-scroll" tabindex="0" role="region" aria-label="The model cards">'  # scrolled by keys too
            f'<table class="stn-cards"><tr>{head}</tr>{"".join(rows)}</table></div>')


# --------------------------------------------------------------------------- examples


def _examples() -> list[tuple[str, str, str]]:
    """(path, model, caption) for each example image whose task has a model in the zoo, then one
    row for each model not shown yet (every model gets an example)."""
    index = EXAMPLES_DIR / "examples.json"
    if not index.exists() or not ENGINE.info:
        return []
    rows: list[tuple[str, str, str]] = []
    shown: set[str] = set()
    by_task: dict[str, tuple[str, str]] = {}  # task -> its first example's (path, digit(s))
    for e in json.loads(index.read_text()):
        path = EXAMPLES_DIR / e["file"]
        # a transformer where the task has one (mnist has only the upright CNN)
        models = [m for m in ENGINE.models_for(e["task"]) if ENGINE.info[m].has_transformer] or ENGINE.models_for(e["task"])
        if not path.exists() or not models:
            continue
        pick = next((m for m in models if ENGINE.info[m].transform == e.get("transform")), models[0])
        if e["task"] == "wild" and DEFAULT in models:
            pick = DEFAULT
        if e.get("model") in models:  # the example was picked to show this model
            pick = e["model"]
        rows.append((str(path), pick, f"{e['label']} · {e['caption']} · {pick}"))
        shown.add(pick)
        by_task.setdefault(e["task"], (str(path), e["label"]))
    for name in ENGINE.names:
        task = ENGINE.info[name].dataset
        if name not in shown and task in by_task:  # what the picture is (a "same" read as nothing out of context)
            path, label = by_task[task]
            rows.append((path, name, f"{label} · {task.upper()} · {name}"))
    return rows


EXAMPLE_ROWS = _examples()
EXAMPLES = [(p, m) for p, m, _ in EXAMPLE_ROWS]


_EXAMPLE_CACHE: dict[int, tuple] = {}


def example_outputs(index: int) -> tuple:
    """The main view's outputs and the session for example ``index``, computed once and cached.

    Dicts are copied on the way out: Gradio pops keys off ``gr.update`` dicts as it sends them.
    """
    if index not in _EXAMPLE_CACHE:
        path, model = EXAMPLES[index]
        _EXAMPLE_CACHE[index] = read_file(path, model)
    return tuple(dict(o) if isinstance(o, dict) else o for o in _EXAMPLE_CACHE[index])


_BACKGROUND_STOP = threading.Event()  # set as the server exits: background work ends after its current item


def cache_examples() -> None:
    """Compute every example's outputs (at start-up, in the background)."""
    for i in range(len(EXAMPLES)):
        if _BACKGROUND_STOP.is_set():
            return
        try:
            example_outputs(i)
        except Exception:
            log.exception("example %s failed", EXAMPLES[i][0])


def load_example(evt: gr.SelectData) -> tuple:
    """A click on the examples gallery: the picture into the Upload tab, its model selected, and
    the cached outputs shown at once."""
    index = evt.index[0] if isinstance(evt.index, (list, tuple)) and evt.index else evt.index
    if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < len(EXAMPLES):
        raise refusal("There is no such example.")
    path, model = EXAMPLES[index]
    return (path, model, model_note(model), *example_outputs(index), gr.Tabs(selected="upload"))


# --------------------------------------------------------------------------- layout

CSS = """
.stn-pixelated img, .stn-pixelated canvas { image-rendering: pixelated; }
.stn-pixelated img { object-fit: contain !important; max-width: 100% !important; width: 100%; height: 100%; }
#pg-crop img, #inv-crop img { padding: 3px; box-sizing: border-box; }  /* keep the frames' edges */
.stn-readout { display: flex; flex-direction: column; gap: 6px; }
.stn-readout h2 { margin: 0 0 4px; }
.stn-readout p { margin: 2px 0; }
.stn-unsure, .stn-touching { padding: 4px 8px; border-left: 3px solid var(--color-accent); background: var(--background-fill-secondary); }
.stn-caption { font-size: 0.85rem; font-weight: 600; color: var(--body-text-color-subdued); margin-top: 4px; }
.stn-crops { display: flex; gap: 4%; align-items: flex-start; }
.stn-crops img { image-rendering: pixelated; max-width: 240px; height: auto; border: 5px solid; border-radius: 2px;
                 box-sizing: border-box; background: #000; }
.stn-bars { display: grid; gap: 3px; font-variant-numeric: tabular-nums; }
.stn-bar-row { display: grid; grid-template-columns: 2.2em 1fr 3.2em; align-items: center; gap: 6px; font-size: 0.9rem; }
.stn-bar-name { font-weight: 600; text-align: right; }
.stn-bar { height: 0.8em; background: var(--block-border-color, rgba(128,128,128,0.2)); border-radius: 3px; overflow: hidden; }
.stn-bar > span { display: block; height: 100%; }
.stn-bars-model .stn-bar > span { background: var(--color-accent, #f97316); }
.stn-bars-baseline .stn-bar > span { background: var(--neutral-400, #9ca3af); }
.stn-bar-pct { text-align: right; color: var(--body-text-color-subdued); }
#stn-upload img { image-rendering: pixelated; min-width: 60%; min-height: 60%; object-fit: contain; }
/* captions under the thumbnails, not over the digits; the block's label above the first row, not on it */
#stn-examples .thumbnail-item { aspect-ratio: auto !important; height: auto !important; display: flex; flex-direction: column; }
#stn-examples .thumbnail-item > img { aspect-ratio: 1 / 1; height: auto !important; flex: none; }
#stn-examples .caption-label { position: static !important; max-width: none !important; border: none !important;
                               border-radius: 0; background: none; font-size: 0.75rem; white-space: normal; line-height: 1.2;
                               padding: 3px 4px 4px; }
#stn-examples .grid-wrap { padding-top: 2.4rem; }
#stn-examples .grid-wrap { max-height: none !important; height: auto !important; overflow: visible !important; }
@media (max-width: 1100px) { #stn-examples .grid-container { grid-template-columns: repeat(5, minmax(0, 1fr)) !important; } }
.stn-theta { font-size: 0.92rem; line-height: 1.35; }
.stn-theta table { border-collapse: collapse; margin: 4px 0 10px; font-variant-numeric: tabular-nums; width: auto; border: none; }
.stn-theta td, .stn-theta th, .stn-theta tr { border: none !important; background: none !important; }
.stn-theta p { margin: 4px 0; }
.stn-theta .stn-matrix { border-left: 2px solid var(--body-text-color) !important; border-right: 2px solid var(--body-text-color) !important; }
.stn-matrix td { padding: 2px 10px; text-align: right; font-family: var(--font-mono); white-space: nowrap; }
.stn-tps td { font-size: 0.82rem; padding: 2px 6px; }
.stn-reading th { text-align: left; font-weight: 600; padding: 2px 12px 2px 0; color: var(--body-text-color-subdued); white-space: nowrap; }
.stn-reading td { padding: 2px 0; }
.stn-head { font-weight: 600; margin-top: 6px; }
.stn-swatch { display: inline-block; width: 12px; height: 12px; border-radius: 2px; margin-right: 6px; vertical-align: -1px; }
.stn-scroll { overflow-x: auto; }
#kn-formula .katex-display, #kn-formula p { overflow-x: auto; overflow-y: hidden; }
.stn-cards, .stn-table1 { border-collapse: collapse; font-size: 0.9rem; font-variant-numeric: tabular-nums; }
.stn-cards td, .stn-cards th, .stn-table1 td, .stn-table1 th { padding: 4px 10px; border-bottom: 1px solid var(--border-color-primary); text-align: left; white-space: nowrap; }
.stn-table1 .stn-t1-model { font-size: 0.8em; color: var(--body-text-color-subdued); }
.stn-ours-good b { color: #15803d; }  /* 4.8:1 on the light page (#1f9d55 was 3.3:1) */
.dark .stn-ours-good b { color: #4ade80; }
#stn-summary h2 { margin: 0 0 4px; }
/* a tab's verdict is its first heading (h2, under the page's h1), at the size it had as an h3 */
#stn-summary h2, #pg-verdict h2, #inv-verdict h2 { font-size: var(--text-lg); }
/* Sketchpad: the tool column at the pad's left edge, the canvas 24 px in from the left and 16 from the top: neither
   the tool column nor the buttons above sit on or beside the picture (at phone width Gradio put the column 15 px
   over it, and Chromium gives a touch near a button to the button: at 16 px a finger begun 8 px left of the
   picture drew nothing) */
#stn-sketch .toolbar-wrap { left: 0; }
#stn-sketch .pixi-target { top: 16px; left: 24px; width: calc(100% - 24px); height: calc(100% - 16px); }
#stn-verdict-mini { font-size: 1.05rem; min-height: 1.6em; padding: 2px 4px; }
/* an output picture's label above it, not over its top-left corner (it hid the crop's strokes there); the same for
   the invariance charts, whose legend is at their top */
.stn-pixelated:not(#stn-examples) label.float, #inv-rot-chart label.float, #inv-acc-chart label.float { position: static; margin-bottom: 6px; }
.stn-pixelated:not(#stn-examples):has(> label.float) { display: flex; flex-direction: column; }  /* the picture in the height left */
.stn-pixelated:not(#stn-examples):has(> label.float) > .image-container { flex: 1 1 0; min-height: 0; }
/* the reading itself is beside the pad: the verdict is hidden there from the eye only, still read out as a status */
@media (min-width: 1024px) {
  #stn-verdict-mini { position: absolute !important; width: 1px !important; height: 1px !important; min-height: 0 !important;
                      padding: 0 !important; margin: -1px !important; overflow: hidden !important; clip: rect(0 0 0 0) !important;
                      clip-path: inset(50%) !important; white-space: nowrap !important; border: 0 !important; }
}
/* keyboard focus in sight on a slider and a radio button (Gradio draws none: WCAG 2.4.7) */
:root { --stn-focus-ring: #c2410c; --stn-accent-text: #c2410c; }
.dark { --stn-focus-ring: #fdba74; --stn-accent-text: var(--color-accent); }
input[type=range]:focus-visible, input[type=radio]:focus-visible, input[type=radio]:checked:focus-visible, .stn-scroll:focus-visible {
  outline: 2px solid var(--stn-focus-ring) !important; outline-offset: 2px !important; }
/* the selected tab's name in a darker orange on a light page (*primary_500 was 2.7:1) */
button[role=tab][aria-selected=true] { color: var(--stn-accent-text) !important; }
/* Plotly's tick labels, axis titles and legends are drawn in a dark grey for the light page (stn.viz.FONT_COLOR):
   lighter on the dark one. Only these texts: a figure's coloured labels and annotations keep their colours. */
.dark .js-plotly-plot g[class$=tick] > text, .dark .js-plotly-plot g[class^=g-][class$=title] > text,
.dark .js-plotly-plot .legendtext, .dark .js-plotly-plot .gtitle { fill: #cbd5e1 !important; }
@media (max-width: 640px) {
  button.sm { min-height: 44px; }  /* a fingertip's size ("Identity θ", "Back to the predicted θ" were 26 px) */
  .stn-matrix td { padding: 2px 5px; }
  #stn-header p { font-size: 0.9rem; }
  #kn-formula .katex-display { font-size: 0.78em; }
  #stn-examples .caption-label { font-size: 0.68rem; line-height: 1.15; padding: 2px 3px 3px; }
  #stn-examples .grid-container { grid-template-columns: repeat(3, minmax(0, 1fr)) !important; }
  /* The playground's and the Invariance tab's sliders filled the screen, the crop and its reading a screen below:
     on a phone the crop and the reading come first, side by side, and stay at the top while the sliders move. */
  #pg-view, #inv-view { order: -1; position: sticky; top: 0; z-index: 100; flex-direction: row !important;
                        align-items: flex-start; gap: 8px; padding: 4px 0 6px; background: var(--body-background-fill);
                        box-shadow: 0 6px 6px -6px rgba(0, 0, 0, 0.25); }
  #pg-view > #pg-crop, #inv-view > #inv-crop { height: 140px !important; flex: 0 0 130px; min-width: 0 !important; }
  #pg-view > #pg-label, #inv-view > #inv-label { flex: 1 1 0; min-width: 0 !important; }
  #pg-label label.float, #inv-label label.float { position: static; margin-bottom: 4px; }  /* not over the class */
  #pg-view label.float, #inv-view label.float { font-size: 0.8rem; padding: 2px 6px; }
  #pg-view .icon-button-wrapper, #inv-view .icon-button-wrapper { display: none; }  /* no icons over a small crop */
}
"""

SELECT_BRUSH_JS = """() => {
  const pick = (tries) => {
    if (window.__stnBrush) return;
    const b = document.querySelector('#stn-sketch button[aria-label="Brush"]');
    if (b) { b.click(); window.__stnBrush = true; } else if (tries > 0) { setTimeout(() => pick(tries - 1), 200); }
  };
  setTimeout(() => pick(10), 150);
}"""

# Gradio's brush starts a stroke only on a pointerdown over the picture (BrushTool.on_pointer_down): a stroke
# begun in the pad's margin drew nothing, even where most of it crossed the picture. This starts it where the
# pointer enters the picture (mouse, pen or finger), with a pointerdown there. `window.editor` is Gradio's image
# editor (the page shows one); without it the pad behaves as before.
MARGIN_STROKES_JS = """(() => {
  let pending = null;
  const inside = (c, x, y) => {
    const ed = window.editor, b = ed && ed.image_container && ed.image_container.getBounds();
    if (!b) return null;
    const r = c.getBoundingClientRect(), px = x - r.left, py = y - r.top;
    return px >= b.x && px <= b.x + b.width && py >= b.y && py <= b.y + b.height;
  };
  document.addEventListener('pointerdown', (ev) => {
    pending = null;
    const c = ev.isTrusted && ev.button === 0 && ev.target instanceof HTMLCanvasElement && ev.target.closest('#stn-sketch .pixi-target') ? ev.target : null;
    if (c && inside(c, ev.clientX, ev.clientY) === false) pending = {c, id: ev.pointerId};
  }, true);
  window.addEventListener('pointermove', (ev) => {  // after the editor's own listener: it knows the pointer is over the picture
    if (!pending || ev.pointerId !== pending.id) return;
    if (!(ev.buttons & 1)) { pending = null; return; }
    if (!inside(pending.c, ev.clientX, ev.clientY)) return;
    const c = pending.c, tools = window.editor.tools, brush = tools && (tools.get ? tools.get('brush') : tools.brush);
    pending = null;
    if (brush && brush.is_drawing) return;  // the editor began this stroke itself
    c.dispatchEvent(new PointerEvent('pointerdown', {bubbles: true, cancelable: true, composed: true, clientX: ev.clientX,
      clientY: ev.clientY, screenX: ev.screenX, screenY: ev.screenY, pointerId: ev.pointerId, pointerType: ev.pointerType,
      isPrimary: ev.isPrimary, button: 0, buttons: 1, pressure: ev.pressure || 0.5, width: ev.width, height: ev.height}));
  });
  const end = (ev) => { if (pending && ev.pointerId === pending.id) pending = null; };
  window.addEventListener('pointerup', end, true);
  window.addEventListener('pointercancel', end, true);
})();"""

# Gradio draws a plot with Plotly.react at once, also in a hidden tab; there its width is 0 and Plotly falls back to
# 700 px, which stays when the tab is shown (its responsive mode listens to window resizes only): on a phone the
# playground's grid was cut in half. This resizes a plot when the width it is drawn at and its box's differ.
PLOT_RESIZE_JS = """(() => {
  const fit = (gd) => {
    const w = gd.clientWidth, fl = gd._fullLayout;
    if (w > 0 && fl && Math.abs(fl.width - w) > 1 && window.Plotly) window.Plotly.Plots.resize(gd);
  };
  const seen = new WeakSet(), ro = new ResizeObserver((entries) => entries.forEach((e) => fit(e.target)));
  let queued = false;
  const watch = () => {  // once a frame at most: a plot's own drawing mutates the page too
    queued = false;
    document.querySelectorAll('.js-plotly-plot').forEach((gd) => { if (!seen.has(gd)) { seen.add(gd); ro.observe(gd); } });
  };
  new MutationObserver(() => { if (!queued) { queued = true; requestAnimationFrame(watch); } })
    .observe(document.documentElement, {childList: true, subtree: true});
})();"""

# A phone's photo is a 3-5 MB JPEG: over a phone's uplink (0.75 Mbit/s) most of a minute before the reading can
# start, while the reading needs a few hundred pixels of the digit. A JPEG over SHRINK_BYTES chosen or dropped in the
# Upload tab is shrunk in the browser to SHRINK_SIDE px on its longer side (upright as its EXIF says), under its own name,
# before Gradio uploads it; other files, and JPEGs that would not get smaller, go as they are (a PNG's alpha holds a
# sketch's strokes). 60 of 60 12-MP photos read alike shrunk and not (bench/README.md, twenty-first pass). A JPEG
# the server would refuse (over 10 MB, over MAX_PIXELS by its header, or no header) goes as it is and gets its
# sentence: the browser never decodes a decompression bomb.
SHRINK_SIDE, SHRINK_BYTES = 1600, 1_000_000
SHRINK_PHOTOS_JS = """(() => {
  const SIDE = SHRINK_SIDE, BYTES = SHRINK_BYTES, MAX_BYTES = SHRINK_MAX_BYTES, MAX_PIXELS = SHRINK_MAX_PIXELS;
  const big = (f) => f.type === 'image/jpeg' && f.size > BYTES && f.size <= MAX_BYTES;
  const pixels = async (f) => {  // width × height from the JPEG's frame header, or 0
    const b = new Uint8Array(await f.slice(0, 1 << 18).arrayBuffer());
    if (b[0] !== 0xFF || b[1] !== 0xD8) return 0;
    for (let i = 2; i + 9 < b.length;) {
      if (b[i] !== 0xFF) return 0;
      const m = b[i + 1];
      if (m === 0xFF) { i += 1; continue; }
      if (m >= 0xC0 && m <= 0xCF && m !== 0xC4 && m !== 0xC8 && m !== 0xCC) return ((b[i + 5] << 8) | b[i + 6]) * ((b[i + 7] << 8) | b[i + 8]);
      i += 2 + ((b[i + 2] << 8) | b[i + 3]);
    }
    return 0;
  };
  const shrink = async (f) => {
    if (!big(f)) return f;
    const n = await pixels(f);
    if (!n || n > MAX_PIXELS) return f;
    let bmp;
    try { bmp = await createImageBitmap(f, {imageOrientation: 'from-image'}); } catch (e) { return f; }  // the server names what is wrong
    const k = Math.min(1, SIDE / Math.max(bmp.width, bmp.height));
    const c = document.createElement('canvas');
    c.width = Math.max(1, Math.round(bmp.width * k)); c.height = Math.max(1, Math.round(bmp.height * k));
    const g = c.getContext('2d');
    g.imageSmoothingQuality = 'high';
    g.drawImage(bmp, 0, 0, c.width, c.height);
    bmp.close();
    const blob = await new Promise((done) => c.toBlob(done, 'image/jpeg', 0.92));
    return blob && blob.size < f.size ? new File([blob], f.name, {type: 'image/jpeg', lastModified: f.lastModified}) : f;
  };
  const shrinkAll = async (files) => {
    try { return await Promise.all(files.map(shrink)); } catch (e) { return files; }
  };
  const ours = new WeakSet();
  document.addEventListener('change', async (ev) => {  // before Gradio's own listener on the input
    const input = ev.target;
    if (!(input instanceof HTMLInputElement) || input.type !== 'file' || !input.closest('#stn-upload')) return;
    if (ours.has(ev) || !Array.from(input.files || []).some(big)) return;
    ev.stopImmediatePropagation();
    try {
      const files = await shrinkAll(Array.from(input.files));
      const dt = new DataTransfer();
      files.forEach((f) => dt.items.add(f));
      input.files = dt.files;
    } catch (e) {}  // a browser without DataTransfer(): the files go as chosen
    const again = new Event('change', {bubbles: true});
    ours.add(again);
    input.dispatchEvent(again);
  }, true);
  // A photo dragged from a desktop's folder: the drop is held, and sent again carrying the shrunk file. Only where a
  // drop can be made with other files; elsewhere it goes on untouched, whole.
  const redrop = (() => {
    try { const d = new DataTransfer(); return new DragEvent('drop', {dataTransfer: d}).dataTransfer === d; } catch (e) { return false; }
  })();
  document.addEventListener('drop', async (ev) => {
    const at = ev.target;
    if (!redrop || ours.has(ev) || !(at instanceof Element) || !at.closest('#stn-upload') || !ev.dataTransfer) return;
    const dropped = Array.from(ev.dataTransfer.files || []);  // readable only while the event is dispatched
    if (!dropped.some(big)) return;
    ev.preventDefault();  // else the browser opens the file in the tab
    ev.stopImmediatePropagation();
    const dt = new DataTransfer();
    (await shrinkAll(dropped)).forEach((f) => dt.items.add(f));
    const again = new DragEvent('drop', {bubbles: true, cancelable: true, dataTransfer: dt});
    ours.add(again);
    at.dispatchEvent(again);
  }, true);
})();""".replace("SHRINK_SIDE", str(SHRINK_SIDE)).replace("SHRINK_BYTES", str(SHRINK_BYTES)).replace(
    "SHRINK_MAX_BYTES", str(min(MAX_FILE_BYTES, 10 * 2**20))).replace("SHRINK_MAX_PIXELS", str(MAX_PIXELS))

# Gradio's container clips with overflow: hidden, which makes it the scroller of anything sticky inside it (CSS
# above: the playground's and Invariance's crops on a phone); clip clips the same without scrolling. In the head:
# Gradio scopes the app's own CSS to elements inside the container.
HEAD_CSS = "@media (max-width: 640px) { .gradio-container { overflow: clip !important; } }"

# A click on an example far down the page (on a phone, 3,000 px below the reading) showed nothing where the person
# looked: the picture, its verdict and the selector are brought into view, unless they are already in it.
EXAMPLE_SCROLL_JS = """() => {
  const el = document.querySelector('#stn-upload');
  if (!el) return;
  const r = el.getBoundingClientRect();
  if (r.top < 0 || r.bottom > window.innerHeight) el.scrollIntoView({behavior: 'smooth', block: 'start'});
}"""

# The reading's verdict (its first line) copied under the pad, in the page: on a phone the reading is a screen below.
VERDICT_MINI_JS = """(html) => {
  const h = new DOMParser().parseFromString(html || '', 'text/html').querySelector('#stn-summary h2, #stn-not-read, #stn-pad-cleared');
  return h ? h.innerHTML : '';
}"""

# Regions whose new text a screen reader reads out when it changes (role=status: polite, after what it is saying):
# the reading's verdict under the pad (after an upload, an example, a drawing or a model change). Not the live
# training's status line: it changes twice a second while a run trains, and would be read out without end.
# Gradio has no attribute for it: set on each as it appears (a tab's blocks appear late).
LIVE_REGIONS = ("#stn-verdict-mini",)
LIVE_REGIONS_JS = """(() => {
  const mark = () => document.querySelectorAll(SELECTORS).forEach((e) => {
    if (e.getAttribute('role') !== 'status') { e.setAttribute('role', 'status'); e.setAttribute('aria-live', 'polite'); }
  });
  let queued = false;
  new MutationObserver(() => { if (!queued) { queued = true; requestAnimationFrame(() => { queued = false; mark(); }); } })
    .observe(document.documentElement, {childList: true, subtree: true});
})();""".replace("SELECTORS", repr(", ".join(LIVE_REGIONS)))

# Soft's text on orange and its subdued greys read under 4.5:1 on a light page (labels #f97316 on #ffedd5: 2.4:1;
# white on #f97316: 2.8:1; #94a3b8 on #f8fafc: 2.5:1): the same hues, darker shades (WCAG 1.4.3).
# The device's own fonts: Soft's Montserrat and IBM Plex Mono are 197 kB of downloads before a phone shows the page's
# text in them (bench/README.md, twenty-first pass).
SYSTEM_FONT = ("ui-sans-serif", "system-ui", "-apple-system", "Segoe UI", "Roboto", "sans-serif")
SYSTEM_FONT_MONO = ("ui-monospace", "SFMono-Regular", "Menlo", "Consolas", "monospace")
THEME = gr.themes.Soft(primary_hue="orange", secondary_hue="cyan", neutral_hue="slate",
                       font=SYSTEM_FONT, font_mono=SYSTEM_FONT_MONO).set(
    block_label_text_color="*primary_700",  # 4.5:1 on *primary_100
    block_title_text_color="*primary_700",
    block_label_background_fill_dark="*primary_700",  # white on it: 5.2:1 (on *primary_600: 3.6:1)
    button_primary_background_fill="*primary_700",
    button_primary_background_fill_dark="*primary_700",
    button_primary_background_fill_hover="*primary_800",
    button_primary_background_fill_hover_dark="*primary_800",
    button_primary_border_color="*primary_700",
    button_primary_border_color_dark="*primary_700",
    button_primary_border_color_hover="*primary_800",
    button_primary_border_color_hover_dark="*primary_800",
    checkbox_label_background_fill_selected="*primary_700",
    checkbox_label_background_fill_selected_dark="*primary_700",
    body_text_color_subdued="*neutral_500",  # 4.6:1 on *neutral_50
    link_text_color="*secondary_700",
    link_text_color_active="*secondary_700",
    link_text_color_hover="*secondary_800",
    link_text_color_visited="*secondary_700",
)

HEADER = """
# Spatial Transformer Networks, made visible
Upload or draw a digit. A **spatial transformer** ([Jaderberg et al., NeurIPS 2015](https://arxiv.org/abs/1506.02025))
finds it, and you see **where it looked** (the sampling grid over the input), **what it read** (the rectified crop),
**what it concluded**, and what a plain CNN trained on the same data says.
"""

with gr.Blocks(title="Spatial Transformer Networks, made visible", delete_cache=DELETE_CACHE) as demo:
    session = gr.State(None)
    pad = gr.State(Pad())
    refused = gr.State(Refused())
    gr.Markdown(HEADER, elem_id="stn-header")
    with gr.Tabs(overflow_behavior="wrap", elem_id="stn-tabs") as main_tabs:  # on a phone every lesson shows, not hidden in a menu
        # ------------------------------------------------------------------ main view
        with gr.Tab("Read a digit", id="main"):
            with gr.Row(equal_height=False):
                with gr.Column(scale=4, min_width=300):
                    with gr.Tabs() as input_tabs:
                        with gr.Tab("Upload", id="upload"):
                            upload = raw_file_input(gr.Image(
                                type="filepath", image_mode=None, sources=["upload", "clipboard"], label="A picture of a digit",
                                height=300, format="png", elem_id="stn-upload",
                            ))
                        with gr.Tab("Draw", id="draw") as draw_tab:
                            sketch = bounded_sketch(gr.Sketchpad(
                                label="Draw a digit", type="numpy", image_mode="RGBA", height=340, canvas_size=(400, 400),
                                brush=gr.Brush(default_size=14, colors=["#f97316"], color_mode="fixed"), elem_id="stn-sketch",
                                layers=False, transforms=(),
                            ))
                            sketch_btn = gr.Button("Read my drawing", variant="primary")
                            # What the sketchpad sends, relayed by page-side events (see the events below): never shown,
                            # and sharing the sketchpad's blob storage, so a stroke's blob id reads as the sketchpad's.
                            sketch_sent, sketch_btn_sent = (bounded_sketch(gr.Sketchpad(
                                label="Draw a digit", visible=False, type="numpy", image_mode="RGBA", canvas_size=(400, 400),
                                layers=False, transforms=(),
                            )) for _ in range(2))
                            sketch_sent.blob_storage = sketch_btn_sent.blob_storage = sketch.blob_storage
                    verdict_mini = gr.HTML(elem_id="stn-verdict-mini")  # the reading's verdict (VERDICT_MINI_JS)
                    model_dd = gr.Dropdown(choices=model_choices(), value=DEFAULT, label="Model", elem_id="stn-model", interactive=True)
                    model_md = gr.Markdown(model_note(DEFAULT), elem_id="stn-model-note")
                with gr.Column(scale=7, min_width=320):
                    with gr.Row(equal_height=False):
                        grid_plot = gr.Plot(label="Where it looks: the sampling grid", min_width=300, scale=3,
                                            elem_id="stn-grid")
                        with gr.Column(scale=2, min_width=240):
                            # verdict, crop(s), class bars and the plain CNN's: one output (viz.reading_html)
                            reading_out = gr.HTML(elem_id="stn-reading", min_height=200)
                    gr.Markdown("**θ and its reading**")
                    theta_out = gr.HTML(elem_id="stn-theta")
                    with gr.Accordion("API answer (JSON)", open=False):
                        json_out = gr.JSON(label="What the predict endpoint returns", elem_id="stn-json")
            main_outputs = [grid_plot, reading_out, theta_out, json_out]
            ex_gallery = gr.Gallery(
                value=[(p, c) for p, _, c in EXAMPLE_ROWS], label="Examples (click one)", columns=8, allow_preview=False,
                object_fit="contain", elem_id="stn-examples", elem_classes=["stn-pixelated"], visible=bool(EXAMPLE_ROWS),
                buttons=[],
            )

        # ------------------------------------------------------------------ θ playground
        with gr.Tab("θ playground", id="playground"):
            gr.Markdown("Change θ by hand and watch the grid, the crop and the classifier's answer follow. Which θ makes "
                        "the digit readable, and which loses it? The sliders start from the θ the transformer predicted. "
                        "θ maps each pixel of the crop to the point of the input it reads (a backward mapping): a scale "
                        "under 1 reads a smaller window, so the crop zooms in; shear slants the grid's columns "
                        "(θ = R·[[s_x, s_x·shear], [0, s_y]]). Another model's family shows other sliders.")
            pg_params = gr.State(None)
            pg_verdict = gr.Markdown(PG_EMPTY, elem_id="pg-verdict")
            with gr.Row(equal_height=False):
                with gr.Column(scale=2, min_width=280):
                    pg_head = gr.Radio(label="Head", choices=["head 1"], value="head 1", visible=False)
                    # Every slider here with buttons=[]: Gradio's ↺ (shown by default) sets the value without an .input
                    # event, and the views, which follow .input, were left showing the value before it.
                    sl = {
                        "rotation": gr.Slider(-180, 180, value=0, step=1, label="rotation of the grid (° anticlockwise)", buttons=[]),
                        "scale_x": gr.Slider(*SLIDER_RANGES["scale_x"], value=1, step=0.01, label="scale x (< 1 zooms in)", buttons=[]),
                        "scale_y": gr.Slider(*SLIDER_RANGES["scale_y"], value=1, step=0.01, label="scale y (< 0 mirrors)", buttons=[]),
                        "shear": gr.Slider(*SLIDER_RANGES["shear"], value=0, step=0.01, label="shear", buttons=[]),
                        "tx": gr.Slider(*SLIDER_RANGES["tx"], value=0, step=0.01, label="translation x (−1 left edge, +1 right edge)", buttons=[]),
                        "ty": gr.Slider(*SLIDER_RANGES["ty"], value=0, step=0.01, label="translation y (−1 top, +1 bottom)", buttons=[]),
                        "px": gr.Slider(*SLIDER_RANGES["px"], value=0, step=0.005, label="perspective x (h31)", visible=False, buttons=[]),
                        "py": gr.Slider(*SLIDER_RANGES["py"], value=0, step=0.005, label="perspective y (h32)", visible=False, buttons=[]),
                    }
                    pg_point = gr.Slider(1, 16, value=1, step=1, label="TPS control point (numbered on the grid)", visible=False, buttons=[])
                    pg_cx = gr.Slider(-1.5, 1.5, value=0, step=0.01, label="where it reads: x (normalised)", visible=False, buttons=[])
                    pg_cy = gr.Slider(-1.5, 1.5, value=0, step=0.01, label="where it reads: y (normalised)", visible=False, buttons=[])
                    with gr.Row():
                        pg_back = gr.Button("Back to the predicted θ", size="sm")
                        pg_ident = gr.Button("Identity θ", size="sm")
                with gr.Column(scale=3, min_width=300):
                    pg_plot = gr.Plot(label="Sampling grid on the input", elem_id="pg-grid")
                with gr.Column(scale=2, min_width=240, elem_id="pg-view"):
                    pg_crop = gr.Image(label="Crop through this θ", format="png", interactive=False, elem_classes=["stn-pixelated"],
                                       height=250, elem_id="pg-crop",
                                       alt_text="The crop through this θ: what the classifier reads (its reading is below)")
                    pg_label = gr.Label(num_top_classes=3, label="The classifier reads", elem_id="pg-label")
            pg_theta = gr.HTML()

        # ------------------------------------------------------------------ sampling kernel
        with gr.Tab("Sampling kernel", id="kernel"):
            gr.Markdown("Each pixel of the crop is read from one **source point** of the input. Pick an output pixel — "
                        "click it on the crop, or use the sliders — to see its source point, the input pixels that feed "
                        "it and their weights, in the paper's formula, and the gradient that flows back from it to the "
                        "image and to θ. Switch the kernel to see how the crop changes, and why training needs the bilinear one.")
            with gr.Row(equal_height=False):
                with gr.Column(scale=2, min_width=260):
                    kn_head = gr.Radio(label="Head", choices=["head 1"], value="head 1", visible=False)
                    kn_mode = gr.Radio(["bilinear", "nearest"], value="bilinear", label="Sampling kernel")
                    kn_row = gr.Slider(0, 27, value=14, step=1, label="output row", elem_id="kn-row", buttons=[])
                    kn_col = gr.Slider(0, 27, value=14, step=1, label="output column", elem_id="kn-col", buttons=[])
                    kn_crop = gr.Image(label="The crop (click a pixel)", format="png", interactive=False, elem_classes=["stn-pixelated"],
                                       height=260, elem_id="kn-crop", buttons=[],  # no icons over the pixels to tap
                                       alt_text="The crop, the picked output pixel framed: click a pixel, or set the output row and column")
                with gr.Column(scale=4, min_width=300):
                    kn_plot = gr.Plot(label="Source point; right: the pixels it reads, red weights", elem_id="kn-plot")
                    kn_formula = gr.Markdown(elem_id="kn-formula", latex_delimiters=[{"left": "$$", "right": "$$", "display": True},
                                                               {"left": "$", "right": "$", "display": False}])

        # ------------------------------------------------------------------ invariance
        with gr.Tab("Invariance", id="invariance"):
            gr.Markdown("Rotate, scale and shift the input and see what the transformer undoes: a change it undoes "
                        "leaves the crop as it was while the input moves (within the range it was trained on). "
                        "Which changes a transformer learns to undo is its own finding, from the labels alone.")
            with gr.Row(equal_height=False):
                with gr.Column(scale=1, min_width=300):  # on a phone the button goes under the verdict, not beside it
                    inv_verdict = gr.Markdown(elem_id="inv-verdict")
                inv_upright = gr.Button("Read this picture with the upright model", size="sm", visible=False, scale=0,
                                        min_width=260, elem_id="inv-upright")
            inv_sweep = gr.State(None)
            with gr.Row(equal_height=False):
                with gr.Column(scale=2, min_width=260):
                    inv_rot = gr.Slider(-180, 180, value=0, step=5, label="rotate the input (° anticlockwise)", buttons=[])
                    inv_scale = gr.Slider(0.5, 1.6, value=1.0, step=0.05, label="scale the input (× factor)", buttons=[])
                    inv_dx = gr.Slider(-18, 18, value=0, step=1, label="shift x (px)", buttons=[])
                    inv_dy = gr.Slider(-18, 18, value=0, step=1, label="shift y (px)", buttons=[])
                    inv_text = gr.Markdown()
                with gr.Column(scale=3, min_width=300):
                    inv_plot = gr.Plot(label="The moved input and the sampling grid", elem_id="inv-grid")
                with gr.Column(scale=2, min_width=240, elem_id="inv-view"):
                    inv_crop = gr.Image(label="The crop", format="png", interactive=False, elem_classes=["stn-pixelated"], height=250,
                                        elem_id="inv-crop", alt_text="The crop the transformer reads from the moved input")
                    inv_label = gr.Label(num_top_classes=3, label="The transformer reads", elem_id="inv-label")
            with gr.Row(equal_height=False):
                with gr.Column(min_width=300):
                    inv_chart = gr.Plot(label="Rotation the transformer undoes", elem_id="inv-rot-chart")
                with gr.Column(min_width=300):
                    acc_chart = gr.Plot(label="Accuracy: ST-CNN and plain CNN", elem_id="inv-acc-chart")
                    acc_note = gr.Markdown()
                    acc_btn = gr.Button("Compute the accuracy sweep", size="sm")

        # ------------------------------------------------------------------ watch it learn (issue 5)
        try:
            from webui.watch_tab import build_watch_tab
        except ImportError:
            build_watch_tab = None
        if build_watch_tab is not None:
            with gr.Tab("Watch it learn", id="watch"):
                build_watch_tab()

        # ------------------------------------------------------------------ about
        with gr.Tab("About", id="about"):
            gr.Markdown(PAPER)
            gr.Markdown("## Table 1, reproduced\nTest error (%): **the paper / ours** "
                        "(ours in bold where a model of that row was trained on that task, the model's name under it). "
                        "R: rotated, RTS: rotated-translated-scaled, P: projective, E: elastic, TC: translated and cluttered "
                        "(the paper's TC numbers are from §4.1's text); PAIR, WILD (uploads and sketches) and MNIST (plain, "
                        "upright digits) are our tasks only. Ours are measured on our own test sets, made afresh from MNIST's "
                        "test digits with our reading of each distortion, not on the paper's: a number in green with a ✓, at or below the "
                        "paper's, says the model is as good as the paper's on its own task, not that it beats it on the same test.")
            gr.HTML(f'<div class="stn-scroll" tabindex="0" role="region" aria-label="Table 1">'  # scrolled by keys too
                    f'{viz.table1_html(list(ENGINE.cards.values()))}</div>')
            gr.Markdown("## The model cards\nEvery model of the zoo, as its card in `models/NAME.json` describes it.")
            gr.HTML(cards_html())
            gr.Markdown("Code: the `stn` package (transforms, sampler, localisation nets, training) and this app. "
                        "MNIST by LeCun, Cortes and Burges, CC BY-SA 3.0.")

    # ---------------------------------------------------------------------- events
    main_all = [*main_outputs, session]
    # Gradio's per-component pre- and post-processing is one worker-thread round trip per input and
    # output; predict does its own (the upload's path, the plot's JSON): see _upload_path and _sent.
    reads = [
        upload.upload(predict, [upload, model_dd], main_all, api_name="predict", preprocess=False, postprocess=False,
                      api_description="Read an image file with a model: returns the views and a JSON with label, probs, theta."),
        # The sketchpad is the input of page-side (js) events only, which pass its value on to a hidden copy that the
        # server reads. Gradio 6.31's page keeps a loading status for every input of a server event once it has run,
        # and asks each such component for its value at every status message of every event on the page: the
        # sketchpad answers by uploading its three images again (about 45 uploads a stroke, more from other tabs).
        sketch_btn.click(None, [sketch], [sketch_btn_sent], js="(v) => v", api_visibility="private").then(
            predict_sketch, [sketch_btn_sent, model_dd, pad], main_all, api_visibility="private"),
        # .change carries the strokes (.input fires as a stroke starts, with an empty value)
        sketch_sent.change(predict_sketch_live, [sketch_sent, model_dd, pad], main_all, api_visibility="private",
                           trigger_mode="always_last", show_progress="hidden"),
    ]
    sketch.change(None, [sketch], [sketch_sent], js="(v) => v", api_visibility="private")
    # Gradio 6's Sketchpad opens with no tool selected: pick the brush the first time the Draw tab opens.
    draw_tab.select(None, None, None, js=SELECT_BRUSH_JS)
    # "Clear canvas" leaves no tool selected ("select the draw tool to start"): the next stroke would draw nothing
    # (the views are emptied by the .change the clearing fires, and a reading under way dropped: see Pad)
    sketch.clear(None, None, None, js="() => { window.__stnBrush = false; (" + SELECT_BRUSH_JS + ")(); }")
    reading_out.change(None, reading_out, verdict_mini, js=VERDICT_MINI_JS, show_progress="hidden")
    reads.append(model_dd.input(change_model, [model_dd, session, pad, refused], [model_md, *main_all], api_visibility="private"))
    # A refusal (its sentence in a toast) empties the views and drops the session: no earlier reading beside it, in
    # the teaching tabs or under the next model; the refused picture is kept for the next model change (Refused).
    # The upload's payload as sent (preprocess=False): a payload refused as no upload is not refused twice.
    for read, (refused_fn, given, raw) in zip(reads, ((refused_upload, upload, True), (refused_sketch, sketch_btn_sent, False),
                                                      (refused_sketch, sketch_sent, False), (refused_by_model, session, False))):
        read.failure(refused_fn, [given, refused], main_all, api_visibility="private", show_progress="hidden", preprocess=not raw)
    ex_gallery.select(load_example, None, [upload, model_dd, model_md, *main_all, input_tabs], api_visibility="private",
                      show_progress="minimal")
    ex_gallery.select(None, None, None, js=EXAMPLE_SCROLL_JS)
    demo.load(initial_view, None, [upload, model_dd, model_md, *main_all], api_visibility="private")

    # θ playground
    pg_sliders = [sl[s] for s in PG_SLIDERS]
    pg_view = [pg_plot, pg_crop, pg_label, pg_theta]
    session.change(playground_reset, [session], [pg_verdict, pg_params, *pg_sliders, pg_point, pg_cx, pg_cy, pg_head, *pg_view],
                   api_visibility="private", show_progress="hidden")
    pg_back.click(playground_reset, [session, pg_head], [pg_verdict, pg_params, *pg_sliders, pg_point, pg_cx, pg_cy, pg_head, *pg_view],
                  api_visibility="private")
    pg_inputs = [session, pg_params, pg_head, *pg_sliders, pg_point, pg_cx, pg_cy]
    for comp in [*pg_sliders, pg_cx, pg_cy]:
        comp.input(playground_update, pg_inputs, [pg_verdict, pg_params, *pg_view], api_visibility="private",
                   trigger_mode="always_last", show_progress="hidden")
    for comp in (pg_head, pg_point):
        comp.input(playground_select, [session, pg_params, pg_head, pg_point], [*pg_sliders, pg_cx, pg_cy, pg_plot],
                   api_visibility="private", show_progress="hidden")
    pg_ident.click(playground_identity, [session, pg_head], [*pg_sliders, pg_cx, pg_cy, pg_verdict, pg_params, *pg_view],
                   api_visibility="private")

    teaching = [pg_back, pg_ident, kn_mode, kn_row, kn_col, acc_btn]
    assert len(teaching) == N_TEACHING_CONTROLS
    session.change(teaching_controls, [session], teaching, api_visibility="private", show_progress="hidden")

    # sampling kernel
    kn_view = [kn_plot, kn_crop, kn_formula]
    session.change(kernel_reset, [session], [kn_row, kn_col, kn_head, *kn_view], api_visibility="private", show_progress="hidden")
    for comp in (kn_row, kn_col):
        comp.input(kernel_view, [session, kn_head, kn_mode, kn_row, kn_col], kn_view, api_visibility="private",
                   trigger_mode="always_last", show_progress="hidden")
    for comp in (kn_mode, kn_head):
        comp.input(kernel_view, [session, kn_head, kn_mode, kn_row, kn_col], kn_view, api_visibility="private", show_progress="hidden")
    kn_crop.select(kernel_click, [session, kn_head, kn_mode], [kn_row, kn_col, *kn_view], api_visibility="private",
                   show_progress="hidden")

    # invariance
    inv_view = [inv_plot, inv_crop, inv_label, inv_text, inv_chart]
    session.change(invariance_reset, [session],
                   [inv_rot, inv_scale, inv_dx, inv_dy, inv_sweep, inv_plot, inv_crop, inv_label, inv_text, inv_chart, acc_chart, acc_note,
                    inv_verdict, inv_upright],
                   api_visibility="private", show_progress="hidden")
    inv_upright.click(read_with_upright, [session], [model_dd, model_md, *main_all], api_visibility="private")
    for comp in (inv_rot, inv_scale, inv_dx, inv_dy):
        comp.input(invariance_view, [session, inv_rot, inv_scale, inv_dx, inv_dy, inv_sweep], inv_view, api_visibility="private",
                   trigger_mode="always_last", show_progress="hidden")
    acc_btn.click(accuracy_chart_now, [session], [acc_chart, acc_note], api_visibility="private").then(
        invariance_verdict, [session, inv_sweep], [inv_verdict, inv_upright], api_visibility="private", show_progress="hidden")

    gr.api(list_models_api, api_name="models")
    gr.api(read_api, api_name="read",
           api_description="Read an image file with a model (default: the app's): only the JSON answer (label, probs, theta, model).")

# No URL fetched, the app's sentences for refused paths, `read` and `predict` without a model name (webui/guard.py).
guard_requests(demo, optional_inputs=("read", "predict"))

demo.queue(default_concurrency_limit=CONCURRENCY, max_size=64)

# Launch settings shared by `python app.py` and the tests (server name and port come from
# GRADIO_SERVER_NAME / GRADIO_SERVER_PORT, Gradio's defaults otherwise).
LAUNCH_KWARGS: dict[str, Any] = {
    "theme": THEME,
    "css": CSS,
    "head": (f"<script>{MARGIN_STROKES_JS}</script><script>{PLOT_RESIZE_JS}</script><script>{LIVE_REGIONS_JS}</script>"
             f"<script>{SHRINK_PHOTOS_JS}</script><style>{HEAD_CSS}</style>"),
    "max_file_size": MAX_FILE_SIZE,
    "allowed_paths": [str(EXAMPLES_DIR)],  # the gallery's pictures; the rest of assets/ is read by the server only
    "show_error": False,
    "state_session_capacity": SESSION_CAPACITY,  # see SESSION_CAPACITY: bounds the memory sessions hold
}


# Uploads are refused while less than this is free on their disk (webui/upload_space.py): a full disk stops everything.
MIN_FREE_DISK = int(float(os.environ.get("STN_MIN_FREE_MB", "1024")) * 2**20)


def launch_kwargs() -> dict[str, Any]:
    """``demo.launch``'s settings: :data:`LAUNCH_KWARGS`, the read-ahead of uploads (their reading
    starts as they land, before their ``predict`` call: webui/read_ahead.py), the page sent gzipped
    (webui/compress_page.py), the refusal of uploads
    while the disk is nearly full (webui/upload_space.py) and of requests that name nothing here
    (webui/request_shape.py). A new dict each time: Gradio adds its own entries to ``app_kwargs`` at
    every launch."""
    waiting = lambda: getattr(getattr(demo, "_queue", None), "pending_messages_per_session", None)
    middleware = [Middleware(UploadSpace, folder=get_upload_folder, min_free=MIN_FREE_DISK),
                  Middleware(RequestShape, fns=lambda: demo.fns, sessions=waiting),
                  Middleware(ReadAhead, on_upload=read_ahead),
                  Middleware(CompressPage)]
    return {**LAUNCH_KWARGS, "app_kwargs": {"middleware": middleware}}


def main() -> None:
    """Start the server (``python app.py``); sweeps for the invariance tab are computed in the background."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if DEFAULT_NOTE:
        log.warning(DEFAULT_NOTE)
    global READER
    if READERS > 0 and not ZERO_GPU and DEFAULT is not None:
        warm = tuple(m for m in (DEFAULT, ENGINE.info[DEFAULT].baseline) if m)
        READER = ReaderPool(ENGINE.directory, workers=READERS, threads=torch.get_num_threads(), warm=warm)
        READER.start()  # in the background: until a worker is up, the server reads itself
    # `docker stop` and a Space's restart send SIGTERM; as the container's PID 1 Python would ignore it (no
    # default action there) and be killed 10 s later. Treat it as Ctrl-C: Gradio closes the server, we the reader.
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    examples = threading.Thread(target=cache_examples, name="stn-examples", daemon=True)
    try:
        demo.launch(prevent_thread_lock=True, **launch_kwargs())
        # after the server answers: example outputs, then the invariance sweeps, in the background
        examples.start()
        ENGINE.warm()
        demo.block_thread()
    except KeyboardInterrupt:  # before block_thread took over (it handles its own)
        demo.close()
    except BaseException:  # a fault: stop what runs in the background, then the traceback and exit status
        _stop_background(examples)
        raise
    _stop_background(examples)
    _exit()


def _stop_background(examples: threading.Thread) -> None:
    """End the background work (after the item it is on), then the reader process."""
    _BACKGROUND_STOP.set()
    if examples.is_alive():
        examples.join(10)
    ENGINE.stop_warm(timeout=30)  # a model's sweep takes a few seconds
    if READER is not None:
        READER.close()


def _exit() -> None:
    """The server and its background work have stopped: end the process, exit status 0.

    A thread still inside torch while the interpreter shuts down aborted the process now and then
    ("terminate called without an active exception", exit 134, 1 of 2 SIGTERMs a second after start-up):
    the process ends without the interpreter's shutdown once the exit handlers ran (a reading in flight on
    one of Gradio's threads would race it the same way as the background work did).
    """
    atexit._run_exitfuncs()  # the replay frames' folder, Gradio's own clean-up
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _stop_on_sigterm(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # Gradio's block_thread closes the server on it, as on Ctrl-C


if __name__ == "__main__":
    main()
