"""Upload-style test sets: what Space visitors actually send, made reproducibly.

- **sketch**: MNIST *test* digits as a browser sketchpad delivers them: strokes in the alpha
  channel of a large transparent canvas (RGBA, 480–800 px), the digit 20–75% of the canvas,
  turned by U(-30°, 30°), anywhere on it.
- **font**: digits in the held-out *handwriting* fonts of :mod:`stn.font_digits` (never used in
  training), photographed-paper style: dark ink (black, blue, graphite) on paper-coloured RGB
  canvases of 200–600 px with uneven light, turned by U(-15°, 15°), blurred, JPEG-compressed.

Both go through :func:`stn.preprocess.prepare`, the same path as the app and the CLI.
"""

from __future__ import annotations

import io
from collections.abc import Iterator

import numpy as np
import torch
from PIL import Image, ImageFilter

from stn.data import load_mnist
from stn.font_digits import font_files, render_digit
from stn.model import STClassifier
from stn.preprocess import ImageError, prepare

__all__ = ["sketch_images", "font_images", "upload_accuracy"]


def sketch_images(n: int = 1000, seed: int = 0, root: str | None = None) -> Iterator[tuple[Image.Image, int]]:
    """``n`` sketch-style RGBA images of MNIST test digits, with their labels."""
    try:
        images, labels = load_mnist(root, train=False)
    except FileNotFoundError:
        images, labels = load_mnist("bundled", train=False)
    rng = np.random.default_rng(seed)
    for i in range(min(n, len(images))):
        side = int(rng.integers(480, 801))
        digit = Image.fromarray((images[i, 0].numpy() * 255).astype(np.uint8))
        size = int(side * rng.uniform(0.2, 0.75) * 28 / 20)  # the 28 box holds a 20 px digit
        digit = digit.resize((size, size), Image.Resampling.BICUBIC).rotate(
            float(rng.uniform(-30, 30)), resample=Image.Resampling.BICUBIC, expand=True
        )
        alpha = Image.new("L", (side, side), 0)
        x = int(rng.integers(-size // 8, max(1, side - digit.width + size // 8)))
        y = int(rng.integers(-size // 8, max(1, side - digit.height + size // 8)))
        alpha.paste(digit, (x, y))
        # A pen draws solid strokes: harden MNIST's soft edges as a brush would.
        alpha = alpha.point(lambda v: 255 if v > 110 else int(v * 1.5))
        ink = tuple(int(c) for c in rng.choice([[0, 0, 0], [20, 20, 20], [30, 60, 200]]))
        sketch = Image.new("RGBA", (side, side), (*ink, 0))
        sketch.putalpha(alpha)
        yield sketch, int(labels[i])


def font_images(variants: int = 3, seed: int = 0) -> Iterator[tuple[Image.Image, int]]:
    """Every digit of every held-out handwriting font, ``variants`` times, on paper. Needs the fonts."""
    rng = np.random.default_rng(seed)
    for path in font_files("test"):
        for digit in range(10):
            glyph = render_digit(path, digit, size=120)
            for _ in range(variants):
                w, h = int(rng.integers(200, 601)), int(rng.integers(200, 601))
                paper = np.array(rng.choice([[250, 248, 240], [235, 228, 210], [220, 220, 220], [255, 255, 255]]), np.float32)
                # uneven light: a gentle gradient across the sheet
                gy, gx = np.mgrid[0:h, 0:w].astype(np.float32)
                light = 1 - 0.15 * (rng.uniform() * gx / w + rng.uniform() * gy / h)
                canvas = paper[None, None, :] * light[..., None]
                scale = min(w, h) * rng.uniform(0.3, 0.8) / max(glyph.size)
                g = glyph.resize((max(1, int(glyph.width * scale)), max(1, int(glyph.height * scale))), Image.Resampling.LANCZOS)
                g = g.rotate(float(rng.uniform(-15, 15)), resample=Image.Resampling.BICUBIC, expand=True)
                mask = np.zeros((h, w), np.float32)
                x = int(rng.integers(0, max(1, w - g.width)))
                y = int(rng.integers(0, max(1, h - g.height)))
                crop = np.asarray(g, np.float32)[: h - y, : w - x] / 255
                mask[y : y + crop.shape[0], x : x + crop.shape[1]] = crop
                ink = np.array(rng.choice([[15, 15, 20], [30, 40, 120], [70, 70, 70]]), np.float32)
                rgb = canvas * (1 - mask[..., None]) + ink[None, None, :] * mask[..., None]
                img = Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(rng.uniform(0, 1.2)))
                buf = io.BytesIO()
                img.save(buf, "JPEG", quality=int(rng.integers(60, 95)))
                yield Image.open(io.BytesIO(buf.getvalue())), digit


def upload_accuracy(model: STClassifier, images: Iterator[tuple[Image.Image, int]], batch: int = 64) -> dict:
    """Accuracy of ``model`` (with :func:`prepare`) on upload-style images; a refused image counts as wrong."""
    cfg = model.config
    correct = total = refused = 0
    xs: list[torch.Tensor] = []
    ys: list[int] = []

    def flush() -> int:
        if not xs:
            return 0
        pred = model.predict(torch.cat(xs))
        hits = int((pred.labels == torch.tensor(ys)).sum())
        xs.clear()
        ys.clear()
        return hits

    for img, label in images:
        total += 1
        try:
            xs.append(prepare(img, tuple(cfg.input_size), float(cfg.digit_size)).tensor)
            ys.append(label)
        except ImageError:
            refused += 1
        if len(xs) >= batch:
            correct += flush()
    correct += flush()
    return {"accuracy": correct / max(1, total), "images": total, "refused": refused}
