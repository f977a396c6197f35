"""``app.py`` with the library's work memoised per image: what Gradio itself costs for the app's
``predict`` event (its inputs, its four outputs and the session, a 20 kB answer), without the
pre-processing, the models and the figures. Every distinct image is read once, for real.

    python bench/load.py --app bench/app_cached.py    # the 'app' row is then this variant
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import app

_read = app.read_file
_answers: dict[bytes, tuple] = {}


def _cached(image: str | None, model: str | None) -> tuple:
    key = Path(image).read_bytes() + str(model).encode() if image else b""
    if key not in _answers:
        _answers[key] = _read(image, model)
    return _answers[key]


app.read_file = _cached  # predict looks read_file up at call time

if __name__ == "__main__":
    app.main()
