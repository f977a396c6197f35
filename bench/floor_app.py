"""The floor for ``bench/load.py``: a minimal Gradio app on the same stack as ``app.py``.

Its ``predict`` endpoint takes the same inputs as the app's, ``(image_filepath, model_name)``,
and, with ``STN_FLOOR_HANDLER``:

- ``decode`` (the floor): only decodes the uploaded image and returns a tiny JSON;
- ``infer``: decodes, pre-processes and runs the model (``stn.preprocess`` + ``predict``),
  and returns label/probs/theta: the app without its figures, to see where the app's time goes.

``STN_FLOOR_INPUT`` = ``image`` (``gr.Image(type="filepath", image_mode=None)``) or ``file``
(``gr.File``) picks the input component, to match the app's. The server listens on
``GRADIO_SERVER_NAME``:``GRADIO_SERVER_PORT`` like any Gradio app.

    GRADIO_SERVER_PORT=7861 python bench/floor_app.py
"""

from __future__ import annotations

import importlib.util
import os
import sys

# The same Gradio settings as app.py (its event-analytics summary every 1,000 events, not every event).
os.environ.setdefault("GRADIO_ANALYTICS_CACHE_FREQUENCY", "1000")
os.environ.setdefault("GRADIO_ANALYTICS_MAX_EVENTS", "1000")
# Gradio runs every event inside `import matplotlib` (twice, to pin its backend); where matplotlib is
# not installed each attempt searches the whole sys.path again (~0.3 ms an event). Record once that
# it is absent: `import matplotlib` then fails at once, as before.
if importlib.util.find_spec("matplotlib") is None:
    sys.modules["matplotlib"] = None  # type: ignore[assignment]

import gradio as gr  # after the settings above
from PIL import Image

HANDLER = os.environ.get("STN_FLOOR_HANDLER", "decode")
INPUT = os.environ.get("STN_FLOOR_INPUT", "image")
# The same queue settings as app.py (STN_CONCURRENCY there), so that the two compare like for like.
CONCURRENCY = int(os.environ.get("STN_CONCURRENCY", str(max(2, min(8, os.cpu_count() or 2)))))


def decode(path: str, model_name: str | None = None) -> dict:
    """Open and fully decode the upload; no model."""
    with Image.open(path) as img:
        img.load()
        return {"width": img.width, "height": img.height, "mode": img.mode}


def infer(path: str, model_name: str | None = None) -> dict:
    """stn pre-processing and inference, no figures."""
    import stn

    try:
        model = stn.load_model(model_name or stn.DEFAULT_MODEL, device="cpu")
        pred = model.predict(stn.preprocess(path, model))
    except (stn.ImageError, ValueError) as exc:
        raise gr.Error(str(exc)) from None
    return {
        "label": pred.class_names()[0],
        "probs": [round(float(p), 6) for p in pred.probs[0]],
        "theta": [[round(float(v), 6) for v in p[0]] for p in pred.params],
    }


HANDLERS = {"decode": decode, "infer": infer}

with gr.Blocks(title="stn floor") as demo:
    if INPUT == "file":
        image = gr.File(label="image", type="filepath")
    else:
        image = gr.Image(label="image", type="filepath", image_mode=None)
    model = gr.Textbox(label="model", value="")
    out = gr.JSON(label="result")
    button = gr.Button("predict")
    button.click(HANDLERS[HANDLER], [image, model], out, api_name="predict")

demo.queue(default_concurrency_limit=CONCURRENCY, max_size=64)

if __name__ == "__main__":
    if HANDLER == "infer":  # load before serving, as the app does; one thread per request, as app.py
        import torch

        import stn

        torch.set_num_threads(int(os.environ.get("STN_THREADS", "1")))

        stn.load_model(os.environ.get("STN_FLOOR_MODEL") or stn.DEFAULT_MODEL, device="cpu")
    demo.launch(max_file_size="20mb", show_error=True)
