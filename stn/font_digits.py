"""Digits rendered from fonts: printed and handwriting-like shapes MNIST lacks.

Two disjoint sets of font files (split by family, so no test font is ever trained on):

- **train fonts** (print families and some script ones) are rendered MNIST-style (ink box 20 px,
  centred by mass on 28×28) into ``assets/font-digits.npz``, which the Wild dataset mixes in;
- **test fonts** (handwriting families) feed the upload-style test set in :mod:`stn.uploads`.

Fonts come from Debian's font packages (``/usr/share/fonts``); they are needed only to rebuild
the bundled file (``python -m stn.font_digits``), not to train or run the app.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

__all__ = ["TEST_FAMILIES", "font_files", "render_digit", "mnist_style", "build_bundle", "BUNDLE_PATH", "load_bundle"]

FONT_ROOT = Path("/usr/share/fonts")
BUNDLE_PATH = Path(__file__).resolve().parent.parent / "assets" / "font-digits.npz"

# Handwriting families held out for testing (directory names under /usr/share/fonts).
TEST_FAMILIES = ("humor-sans", "fifthhorseman", "breip", "kristi", "comic-neue", "bwht", "femkeklaver", "rufscript")
_SKIP = ("X11", "type1", "mplus")  # duplicates of other files; M+ is mostly Japanese


def font_files(split: str, root: Path = FONT_ROOT) -> list[Path]:
    """Font files of a split (``"train"`` or ``"test"``) that draw all ten digits, sorted."""
    files = []
    for path in sorted(root.rglob("*")):
        if path.suffix.lower() not in (".ttf", ".otf") or any(s in path.parts for s in _SKIP):
            continue
        if "noto" in path.parts and not path.name.startswith(("NotoSans-", "NotoSerif-", "NotoSansMono-")):
            continue
        held_out = any(f in path.parts for f in TEST_FAMILIES)
        if held_out != (split == "test"):
            continue
        if _draws_digits(path):
            files.append(path)
    return files


def _draws_digits(path: Path) -> bool:
    try:
        font = ImageFont.truetype(str(path), 48)
    except OSError:
        return False
    missing = _glyph(font, "\uffff")
    glyphs = [_glyph(font, str(d)) for d in range(10)]
    return all(g.any() and (missing is None or not np.array_equal(g, missing)) for g in glyphs) and len(
        {g.tobytes() for g in glyphs}
    ) == 10


def _glyph(font: ImageFont.FreeTypeFont, ch: str) -> np.ndarray:
    img = Image.new("L", (96, 96), 0)
    ImageDraw.Draw(img).text((48, 48), ch, fill=255, font=font, anchor="mm")
    return np.asarray(img)


def render_digit(path: Path, digit: int, size: int = 96) -> Image.Image:
    """White-on-black ``L`` image of ``digit`` in the font, cropped to its ink."""
    font = ImageFont.truetype(str(path), size)
    canvas = Image.new("L", (size * 2, size * 2), 0)
    ImageDraw.Draw(canvas).text((size, size), str(digit), fill=255, font=font, anchor="mm")
    return canvas.crop(canvas.getbbox())


def mnist_style(glyph: Image.Image) -> np.ndarray:
    """Fit an ink crop into a 20×20 box, centred by mass on 28×28, as MNIST was made. uint8."""
    w, h = glyph.size
    s = 20 / max(w, h)
    small = np.asarray(glyph.resize((max(1, round(w * s)), max(1, round(h * s))), Image.Resampling.LANCZOS), dtype=np.float32)
    out = np.zeros((28, 28), np.float32)
    mass = small.sum()
    cy = (small.sum(1) * np.arange(small.shape[0])).sum() / mass
    cx = (small.sum(0) * np.arange(small.shape[1])).sum() / mass
    y0 = int(round(13.5 - cy))
    x0 = int(round(13.5 - cx))
    y0 = min(max(y0, 0), 28 - small.shape[0])
    x0 = min(max(x0, 0), 28 - small.shape[1])
    out[y0 : y0 + small.shape[0], x0 : x0 + small.shape[1]] = small
    return np.clip(out, 0, 255).astype(np.uint8)


def build_bundle(path: Path = BUNDLE_PATH) -> Path:
    """Render every train font's digits MNIST-style into ``path`` (images uint8, labels, font names)."""
    images, labels, names = [], [], []
    for f in font_files("train"):
        for d in range(10):
            images.append(mnist_style(render_digit(f, d)))
            labels.append(d)
            names.append(f.name)
    np.savez_compressed(path, images=np.stack(images), labels=np.array(labels, np.uint8), fonts=np.array(names))
    return path


def load_bundle(path: Path = BUNDLE_PATH) -> tuple[np.ndarray, np.ndarray] | None:
    """``(images (N, 28, 28) uint8, labels (N,))`` from the bundled file, or None when absent."""
    if not path.exists():
        return None
    with np.load(path) as z:
        return z["images"], z["labels"].astype(np.int64)


if __name__ == "__main__":
    out = build_bundle()
    imgs, labs = load_bundle(out)  # type: ignore[misc]
    print(f"{out}: {len(imgs)} digits from {len(imgs) // 10} train fonts; test fonts: {len(font_files('test'))}")
