"""What a request may bring, checked before Gradio acts on it.

Gradio handles a request's files before the app's function runs (``Blocks.preprocess_data``): it
downloads a file whose ``path`` is a web address, refuses a path that was not uploaded, and decodes
a drawing's layers whatever their size. A refusal there reaches the visitor as a bare
``{"error": null}``, and the download and the decoding happen at all. :func:`guard_requests` puts
a check in front: no web address is fetched, a path that was not uploaded gets the app's sentence,
a request that does not fit its endpoint (or holds NaN, which a slider's range check lets through)
says so, a number typed past a slider's range on one of the page's own events gets a sentence naming
the slider and its range (a slider whose preprocess the app replaced keeps it in the session's copy an
update makes), and the public endpoints' trailing inputs may be left out (``read`` with an image alone
reads it with the default model). :func:`bounded_sketch` refuses a drawing whose layers are larger
than a sketchpad's before any is decoded.
"""

from __future__ import annotations

import functools
import inspect
import io
import logging
import math
import os
import re
import typing
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any

import gradio as gr
from gradio.exceptions import InvalidPathError
from gradio.utils import get_upload_folder
from PIL import Image, UnidentifiedImageError

from webui.refusal import refusal

__all__ = ["NOT_A_URL", "NOT_UPLOADED", "SKETCH_MAX_LAYERS", "SKETCH_MAX_PIXELS", "bounded_sketch", "guard_requests"]

log = logging.getLogger("stn.app")

NOT_A_URL = ("Send an uploaded file, not a URL: upload the picture (POST /gradio_api/upload) and send the path it returns. "
             "This server fetches nothing from the web.")
NOT_UPLOADED = ("This file was not uploaded to this server: upload the picture (POST /gradio_api/upload) and send the path "
                "it returns.")
SKETCH_MAX_PIXELS = 4096 * 4096  # a sketchpad's layers are its canvas (400×400 here, at most a few screens' pixels)
SKETCH_MAX_LAYERS = 8
SKETCH_MAX_PENDING = 256  # strokes sent ahead and not yet read, over all visitors (~15 kB each)


def _web_address(value: Any) -> bool:
    return isinstance(value, str) and value.lstrip().lower().startswith(("http://", "https://", "//", "ftp://"))


def _values(inputs: Any) -> Any:
    """Every dict, list and leaf value in ``inputs`` (a request's JSON), at any depth: Gradio walks files
    at any depth too. Iterative, so a deeply nested request cannot exhaust the stack."""
    stack = [inputs]
    while stack:
        value = stack.pop()
        yield value
        if isinstance(value, dict):
            stack.extend(value.values())
        elif isinstance(value, (list, tuple)):
            stack.extend(value)


def _fetches(inputs: Any) -> bool:
    """Whether ``inputs`` hold a file whose path is a web address: the one thing Gradio would download."""
    return any(isinstance(v, dict) and _web_address(v.get("path")) for v in _values(inputs))


def _file_paths(block_fn: Any, inputs: list[Any]) -> Iterable[str]:
    """The server paths a request names: every ``{"path": ...}`` at any depth, and a bare string sent
    for an image or file input (an event with ``preprocess=False`` hands it to the app as it is)."""
    for v in _values(inputs):
        if isinstance(v, dict) and isinstance(v.get("path"), str):
            yield v["path"]
    if not getattr(block_fn, "preprocess", True):
        for comp, v in zip(getattr(block_fn, "inputs", ()), inputs):
            if isinstance(comp, (gr.Image, gr.File, gr.ImageEditor)) and isinstance(v, str) and v:
                yield v


def _outside(path: str, folders: list[str]) -> bool:
    real = os.path.realpath(path)
    return not any(os.path.commonpath([f, real]) == f for f in folders)


def _not_finite(inputs: Any) -> bool:
    """Whether ``inputs`` hold NaN or an infinity: JSON from a browser never does (its NaN is null),
    and a slider's range check lets NaN through (every comparison with it is false)."""
    return any(isinstance(v, float) and not math.isfinite(v) for v in _values(inputs))


def _reason(exc: BaseException) -> str:
    if type(exc).__name__ == "ValidationError":  # pydantic's, for a file that is not a file
        return ('a file goes as {"path": "<the path POST /gradio_api/upload returned>", '
                '"meta": {"_type": "gradio.FileData"}}')
    text = exc.message if isinstance(exc, gr.Error) else str(exc)
    first = (str(text).strip().splitlines() or [type(exc).__name__])[0]
    return first if len(first) <= 160 else first[:157] + "..."


@functools.cache
def _select_params(fn: Callable) -> bool:
    try:
        hints = typing.get_type_hints(fn)
    except Exception:  # noqa: BLE001 - unresolvable annotations: Gradio then passes no event data either
        return False
    return any(isinstance(h, type) and issubclass(h, gr.SelectData) for h in hints.values())


def _takes_select_data(block_fn: Any) -> bool:
    """Whether ``block_fn``'s function takes a ``gr.SelectData`` (a click on a gallery or an image)."""
    fn = getattr(block_fn, "fn", None)
    return fn is not None and _select_params(inspect.unwrap(fn))


def _name(block_fn: Any) -> str:
    return block_fn.api_name or getattr(block_fn, "name", None) or "this"


_STOCK_RANGE_CHECK = {gr.Slider: gr.Slider.preprocess, gr.Number: gr.Number.preprocess}


def _control_name(block: Any) -> str:
    """A control's label as a sentence's subject: its note in brackets left off ("rotation of the grid
    (° anticlockwise)" is "Rotation of the grid")."""
    label = re.sub(r"\s*\([^()]*\)\s*$", "", str(getattr(block, "label", None) or "").strip()) or "This number"
    return label[0].upper() + label[1:]


def _keep_own_range_checks(block_fn: Any, state: Any) -> None:
    """Give the session's copy of a slider (or number box) the preprocess the app set on the slider itself.
    Gradio makes that copy from the class when an update changes the control (the replay's snapshot slider, at
    each model shown), so the copy ran the stock range check the app had replaced: 500 typed into the snapshot's
    box, meant to read the last snapshot, was refused as a request that "does not fit the replay_frame endpoint"."""
    for block in getattr(block_fn, "inputs", ()):
        own = vars(block).get("preprocess")
        if own is None or not isinstance(block, (gr.Slider, gr.Number)) or getattr(block, "_id", None) not in state:
            continue
        copy = state[block._id]
        if copy is not block and type(copy) is type(block) and "preprocess" not in vars(copy):
            copy.preprocess = own


def _out_of_range(block_fn: Any, inputs: list[Any], state: Any) -> gr.Error | None:
    """The refusal of a number outside its slider's (or number box's) range, naming the control, for an event
    of the page's own: its number box takes any number typed into it (Enter sends it), and Gradio's refusal
    named the endpoint and said to reload the page. The session's copy of a control has its current range."""
    for block, value in zip(getattr(block_fn, "inputs", ()), inputs if isinstance(inputs, list) else ()):
        if state is not None and getattr(block, "_id", None) in state:
            block = state[block._id]
        stock = _STOCK_RANGE_CHECK.get(type(block))
        # a control whose own preprocess the app set (the replay's snapshot slider takes any number) is left to it
        if stock is None or "preprocess" in vars(block) or type(block).preprocess is not stock:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            continue
        lo, hi = getattr(block, "minimum", None), getattr(block, "maximum", None)
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            span = (f"values from {lo:g} to {hi:g}" if lo is not None and hi is not None else
                    f"values from {lo:g} up" if lo is not None else f"values up to {hi:g}")
            return refusal(f"{_control_name(block)} takes {span}.", title="Out of range")
    return None


def _does_not_fit(block_fn: Any, exc: BaseException) -> gr.Error:
    """The refusal of a request that Gradio could not take for ``block_fn``, naming what it said was wrong."""
    listed = str(getattr(block_fn, "api_visibility", "public")) == "public"
    where = ("The inputs it takes are listed at /gradio_api/info." if listed else
             "It is one of the page's own events, not an API endpoint: reload the page.")
    return refusal(f"This request does not fit the {_name(block_fn)} endpoint ({_reason(exc)}). {where}",
                   title="Cannot read the request")


def guard_requests(blocks: gr.Blocks, optional_inputs: Iterable[str] = ()) -> None:
    """Check every request to ``blocks`` before Gradio handles its files (see the module's text).

    ``optional_inputs``: API names of endpoints whose missing trailing inputs are ``None`` (the
    function's default) rather than an error.
    """
    stock = blocks.preprocess_data
    optional = set(optional_inputs)

    async def preprocess_data(block_fn: Any, inputs: list[Any], *args: Any, **kwargs: Any) -> Any:
        if block_fn.fn is None:  # a page-side (js) event: Gradio answered {"error": null} with a traceback
            raise refusal(f"The {_name(block_fn)} event runs in the page only: there is nothing to call on the server.",
                          title="Cannot read the request")
        if block_fn.api_name in optional and isinstance(inputs, list) and len(inputs) < len(block_fn.inputs):
            inputs = [*inputs, *[None] * (len(block_fn.inputs) - len(inputs))]
        if _fetches(inputs):
            raise refusal(NOT_A_URL, title="Cannot read the image")
        if _not_finite(inputs):
            raise refusal("A number in this request is NaN or infinite: send finite numbers.", title="Cannot read the request")
        # Gradio checks a file's path only where the request marks it as a file ("meta"); without that mark,
        # or as a bare string to an event that skips pre-processing, any file on the server would be read
        folders = [os.path.realpath(f) for f in (get_upload_folder(), *(getattr(blocks, "allowed_paths", None) or ()))]
        if any(_outside(p, folders) for p in _file_paths(block_fn, inputs)):
            raise refusal(NOT_UPLOADED, title="Cannot read the image")
        state = kwargs["state"] if "state" in kwargs else (args[0] if args else None)
        if state is not None:
            _keep_own_range_checks(block_fn, state)
        page_only = str(getattr(block_fn, "api_visibility", "public")) != "public"  # a number in it was typed on the page
        if page_only and (out := _out_of_range(block_fn, inputs, state)) is not None:
            raise out
        try:
            return await stock(block_fn, inputs, *args, **kwargs)
        except gr.Error as exc:
            if not getattr(exc, "print_exception", True):  # the app's own refusal: a sentence, logged
                raise
            # Gradio's range and choice checks: a traceback in the log, and the value sent (of any size)
            # echoed back in a Python repr
            raise _does_not_fit(block_fn, exc) from None
        except InvalidPathError:
            raise refusal(NOT_UPLOADED, title="Cannot read the image") from None
        except Exception as exc:  # noqa: BLE001 - a request Gradio cannot take gets a sentence, not {"error": null}
            log.warning("request refused before %s ran: %s", _name(block_fn), _reason(exc))
            raise _does_not_fit(block_fn, exc) from None

    blocks.preprocess_data = preprocess_data  # type: ignore[method-assign]

    stock_api = blocks.process_api

    async def process_api(block_fn: Any, inputs: list[Any], *args: Any, **kwargs: Any) -> Any:
        fn = blocks.fns[block_fn] if isinstance(block_fn, int) else block_fn
        if _takes_select_data(fn):  # a click's data: Gradio reads its "index" and "value" before the app runs
            event = kwargs["event_data"] if "event_data" in kwargs else (args[5] if len(args) > 5 else None)
            data = getattr(event, "_data", None)
            if not (isinstance(data, dict) and "index" in data and "value" in data):
                raise refusal(f"The {_name(fn)} event needs the page's click (event_data with its index and value): "
                              "it is one of the page's own events, not an API endpoint; reload the page.",
                              title="Cannot read the request")
        return await stock_api(block_fn, inputs, *args, **kwargs)

    blocks.process_api = process_api  # type: ignore[method-assign]


def _pixels(image: Any) -> tuple[int, int]:
    """Width and height of a drawing's image (a file Gradio stored, or its bytes), from its header alone."""
    path = getattr(image, "path", None)
    source = (path if isinstance(path, str) else
              io.BytesIO(bytes(image)) if isinstance(image, (bytes, bytearray, memoryview)) else None)
    if source is None:
        raise refusal("The drawing's layers are not images: send PNG files.", title="Cannot read the drawing")
    try:
        with Image.open(source) as img:  # reads the header, decodes nothing
            return img.size
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError):
        raise refusal("The drawing's layers are not images we can read: send PNG files.",
                       title="Cannot read the drawing") from None


def bounded_sketch(component: gr.ImageEditor, max_pixels: int = SKETCH_MAX_PIXELS,
                   max_layers: int = SKETCH_MAX_LAYERS) -> gr.ImageEditor:
    """Make a Sketchpad (or ImageEditor) refuse, before decoding anything, a drawing of more than
    ``max_layers`` layers or with an image over ``max_pixels``; a drawing it cannot decode gets a
    sentence. (The method is replaced on the instance, as ``raw_file_input`` does.)"""
    stock = component.preprocess

    def preprocess(payload: Any) -> Any:
        if payload is None:
            return None
        parts = payload
        if getattr(payload, "id", None) is not None:  # strokes sent ahead as blobs
            parts = component.blob_storage.get(payload.id) or payload
        layers = [layer for layer in (getattr(parts, "layers", None) or []) if layer is not None]
        if len(layers) > max_layers:
            raise refusal(f"The drawing has {len(layers)} layers; a sketch here has at most {max_layers}.",
                           title="Cannot read the drawing")
        for image in (getattr(parts, "background", None), *layers, getattr(parts, "composite", None)):
            if image is None:
                continue
            w, h = _pixels(image)
            if w * h > max_pixels:
                raise refusal(f"The drawing is {w}×{h} pixels, larger than any sketchpad (at most {max_pixels // 1_000_000} "
                               "megapixels): upload it as a picture instead.", title="Cannot read the drawing")
        try:
            return stock(payload)
        except gr.Error:
            raise
        except Exception as exc:  # a layer that is not a picture, a truncated PNG
            if not isinstance(exc, (OSError, ValueError, Image.DecompressionBombError)):  # not the drawing: the server
                log.warning("a drawing could not be read", exc_info=True)
            raise refusal(f"The drawing could not be read ({type(exc).__name__}): draw it again.",
                           title="Cannot read the drawing") from None

    component.preprocess = preprocess  # type: ignore[method-assign]
    component.blob_storage = BlobStore()
    return component


class BlobStore(OrderedDict):
    """A Sketchpad's strokes sent ahead of a reading (Gradio's ``blob_storage``, id → the stroke's images), at most
    ``limit`` of them: Gradio drops an entry only when a reading takes it, and a stroke whose reading never comes
    (the page closed, a newer stroke read first) stayed for the server's life. The oldest go first."""

    def __init__(self, limit: int = SKETCH_MAX_PENDING) -> None:
        super().__init__()
        self.limit = limit

    def __setitem__(self, key: Any, value: Any) -> None:
        super().__setitem__(key, value)
        self.move_to_end(key)
        while len(self) > self.limit:
            self.popitem(last=False)
