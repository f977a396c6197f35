"""Upload-style test sets: what Space visitors actually send, made reproducibly.

- **sketch**: MNIST *test* digits as a browser sketchpad delivers them: strokes in the alpha
  channel of a large transparent canvas (RGBA, 480–800 px), the digit 20–75% of the canvas,
  turned by U(-30°, 30°), anywhere on it.
- **font**: digits in the held-out *handwriting* fonts of :mod:`stn.font_digits` (never used in
  training), photographed-paper style: dark ink (black, blue, graphite) on paper-coloured RGB
  canvases of 200–600 px with uneven light, turned by U(-15°, 15°), blurred, JPEG-compressed.

- **photo**: MNIST *test* digits written on paper and photographed where people are, one of
  :data:`PHOTO_CONDITIONS` each, in turn: a dim room, a hard shadow across the digit, a note on
  a dark desk, vignetting, lined or squared paper, a coloured pen, chalk on a board (light on
  dark), a webcam (small, blurred, noisy), a 12-megapixel phone photo, a tilted page, a pen
  lying on the page, a notebook page (its margin and a line of print), the digit circled,
  written in a box (a form) or underlined, clear of the digit (a frame that touches it is not in
  this set: bench/README.md, fourteenth pass, measures it); turned by U(-15°, 15°),
  JPEG-compressed.
- **number**: two to four MNIST *test* digits written side by side (a number: a year, an age),
  apart by 20-80% of their height, as a sketch (strokes in alpha) or a photo of paper. Every
  model here reads one digit (``pair-affine``: two), so the right answer is a sentence that says
  so, not a guess at a mixture: :func:`numbers_named` counts them. Written so close that they
  touch (``gap`` up to 0), they are one mark: the best pre-processing can do is a note that the
  reading may be two digits as one (:func:`stn.preprocess.touching_digits`), counted as well.
- **cropped**: MNIST *test* digits written with a pen one to four times MNIST's stroke width,
  then cut down to the digit (a screenshot or a photo cropped on the phone): the picture is the
  ink's box plus 0-4% of it, 60-300 px, the strokes running into its edges; PNG or JPEG.
- **no digit**: pictures that hold none, one of :data:`NO_DIGIT_KINDS` each, in turn: a smooth
  photo-like scene (colour, 300-800 px, JPEG), a page of print (1-14 lines, 10-40 px type), outlined
  circles and boxes. The right answer is a refusal or a reading shown as a guess (under
  :data:`stn.model.SURE`), not a sure digit: :func:`guesses` counts them.

All go through :func:`stn.preprocess.prepare`, the same path as the app and the CLI.
"""

from __future__ import annotations

import io
from collections.abc import Iterator

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFilter

from stn.data import load_mnist
from stn.font_digits import font_files, render_digit
from stn.model import SURE, STClassifier
from stn.preprocess import ImageError, prepare

__all__ = ["NO_DIGIT_KINDS", "PHOTO_CONDITIONS", "cropped_images", "font_images", "guesses", "no_digit_images", "number_images",
           "numbers_named", "photo_images", "sketch_images", "upload_accuracy"]

NO_DIGIT_KINDS = ("scene", "print", "shapes")


def sketch_images(n: int = 1000, seed: int = 0, root: str | None = None, start: int = 0) -> Iterator[tuple[Image.Image, int]]:
    """``n`` sketch-style RGBA images of MNIST test digits (from digit ``start`` on), with their labels."""
    images, labels = _mnist_test(root, start)
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


PHOTO_CONDITIONS = ("dim room", "hard shadow", "note on a desk", "vignetting", "lined paper", "squared paper",
                    "coloured pen", "chalk on a board", "webcam", "phone photo", "tilted page", "pen on the page",
                    "notebook page", "circled", "in a box", "underlined")


def _mnist_test(root: str | None, start: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """MNIST's test digits from ``start`` on (wrapping round): sets made from other digits than the
    first ones (:mod:`stn.calibration`'s) use a later ``start``. ``root="bundled"``: the 1,000 in
    ``assets/``; no silent fallback to them, which would measure other digits than the caller asked for.

    Raises:
        FileNotFoundError: no MNIST under ``root`` (or ``$STN_DATA``), with where it looked.
    """
    images, labels = load_mnist(root, train=False)
    start %= len(images)
    return (images.roll(-start, 0), labels.roll(-start, 0)) if start else (images, labels)


def _place(digit: np.ndarray, shape: tuple[int, int], rng: np.random.Generator, fill: tuple[float, float] = (0.3, 0.6),
           turn: float = 15.0) -> np.ndarray:
    """An MNIST digit ``(28, 28)`` in [0, 1] as an ink mask ``shape`` = (H, W): turned, its 20 px
    box ``fill`` of the shorter side, anywhere on the canvas with a margin."""
    h, w = shape
    size = max(8, int(min(h, w) * rng.uniform(*fill) * 28 / 20))
    img = Image.fromarray((digit * 255).astype(np.uint8)).resize((size, size), Image.Resampling.BICUBIC)
    img = img.rotate(float(rng.uniform(-turn, turn)), resample=Image.Resampling.BICUBIC, expand=True)
    a = np.asarray(img, np.float32)[:h, :w] / 255
    mask = np.zeros((h, w), np.float32)
    y = int(rng.integers(0, max(1, h - a.shape[0] + 1)))
    x = int(rng.integers(0, max(1, w - a.shape[1] + 1)))
    mask[y : y + a.shape[0], x : x + a.shape[1]] = a
    return mask


def _photo(condition: str, digit: np.ndarray, rng: np.random.Generator) -> Image.Image:
    """One photo of ``digit`` (``(28, 28)`` in [0, 1]) under ``condition`` (one of :data:`PHOTO_CONDITIONS`)."""
    u = rng.uniform
    h, w = (480, 640) if u() < 0.5 else (640, 480)
    if condition == "webcam":
        h, w = 240, 320
    noise = 0.02
    if condition == "note on a desk":  # a page 45-75% of the frame on a dark desk
        ph, pw = int(h * u(0.45, 0.75)), int(w * u(0.45, 0.75))
        grey = np.full((h, w), u(0.08, 0.3), np.float32)
        y, x = int(rng.integers(0, h - ph)), int(rng.integers(0, w - pw))
        grey[y : y + ph, x : x + pw] = u(0.85, 0.97) * (1 - 0.88 * _place(digit, (ph, pw), rng))
    elif condition == "chalk on a board":
        board = u(0.1, 0.25)
        grey = board + (u(0.7, 0.9) - board) * _place(digit, (h, w), rng)
        noise = 0.03
    elif condition == "phone photo":  # a 12 MP photo, the digit a small part of it
        h, w = (3000, 4000) if u() < 0.5 else (4000, 3000)
        paper = u(0.8, 0.95)
        mask = _place(digit, (h // 8, w // 8), rng, fill=(0.25, 0.5))
        mask = np.asarray(Image.fromarray((mask * 255).astype(np.uint8)).resize((w, h), Image.Resampling.BILINEAR), np.float32) / 255
        grey = paper * (1 - 0.9 * mask)
        noise = 0.0  # 12 M normal draws cost more than the rest; JPEG adds its own
    else:
        if condition in ("pen on the page", "notebook page", "circled", "in a box", "underlined"):  # the digit in the middle, marks around it
            mask = np.zeros((h, w), np.float32)
            mask[h // 5 : h // 5 + 3 * h // 5, w // 5 : w // 5 + 3 * w // 5] = _place(digit, (3 * h // 5, 3 * w // 5), rng, fill=(0.5, 0.85))
        else:
            mask = _place(digit, (h, w), rng)
        paper, pen = u(0.85, 0.97), u(0.03, 0.15)
        grey = np.full((h, w), paper, np.float32)
        if condition == "dim room":
            paper = u(0.22, 0.45)
            pen = paper * u(0.05, 0.25)
            grey[:] = paper
        elif condition == "hard shadow":  # an edge through the middle of the page, one side at 40-60% of the light
            cut = int(rng.integers(int(0.35 * w), int(0.65 * w)))
            side = slice(0, cut) if u() < 0.5 else slice(cut, w)
            grey[:, side] *= u(0.4, 0.6)
        elif condition == "vignetting":
            yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
            r = np.hypot((yy - h / 2) / (h / 2), (xx - w / 2) / (w / 2))
            grey *= 1 - u(0.4, 0.6) * np.clip(r - 0.3, 0, 1)
        elif condition == "lined paper":
            step = int(h * u(0.05, 0.08))
            for y in range(int(rng.integers(0, step)), h, step):
                grey[y : y + 2] *= 0.78
            grey[:, int(w * u(0.08, 0.15)) :][:, :2] *= 0.8  # the margin
        elif condition == "squared paper":
            step = int(min(h, w) * u(0.03, 0.06))
            grey[::step] *= 0.8
            grey[:, ::step] *= 0.8
        elif condition == "webcam":
            noise = 0.04
        if condition == "coloured pen":
            ink = np.array(rng.choice([[0.8, 0.1, 0.1], [0.1, 0.2, 0.7], [0.1, 0.5, 0.2]]), np.float32)
            rgb = grey[..., None] * (1 - mask[..., None]) + ink * grey[..., None] * mask[..., None]
            return _jpeg(Image.fromarray(np.clip(rgb * 255 + rng.normal(0, 255 * noise, rgb.shape), 0, 255).astype(np.uint8)), rng)
        grey = grey * (1 - (1 - pen / paper) * mask)
        if condition in ("pen on the page", "notebook page", "circled", "in a box", "underlined"):
            marks = Image.new("L", (w, h), 0)
            draw = ImageDraw.Draw(marks)
            if condition == "pen on the page":  # a pen lying below the digit, part of it out of the frame
                y, length = h * u(0.86, 0.93), w * u(0.5, 0.9)
                x = w * u(-0.2, 1.0) - length / 2
                draw.line([(x, y + h * u(-0.04, 0.04)), (x + length, y)], fill=int(255 * u(0.7, 0.9)), width=int(min(h, w) * u(0.03, 0.05)))
            elif condition in ("circled", "in a box", "underlined"):  # drawn around or under the digit with the same pen, clear of it
                ys, xs = np.nonzero(mask > 0.3)
                cy, cx = (ys.min() + ys.max()) / 2, (xs.min() + xs.max()) / 2
                ry, rx = (ys.max() - ys.min()) / 2, (xs.max() - xs.min()) / 2
                width = max(2, int(min(h, w) * u(0.008, 0.02)))
                if condition == "underlined":  # as a 6 or a 9 is, to show which way is up
                    y, half = ys.max() + min(h, w) * u(0.02, 0.06), rx * u(0.8, 1.3)
                    draw.line([(cx - half, y + u(-0.03, 0.03) * half), (cx + half, y)], fill=int(255 * (1 - pen / paper)), width=width)
                elif condition == "circled":
                    # clear of the digit's box (its corners inside the ellipse: √2 times its half sides), round-ish
                    ry, rx = ry * 1.414 * u(1.2, 1.4) + width, rx * 1.414 * u(1.2, 1.4) + width
                    rx = max(rx, 0.7 * ry)
                    draw.ellipse([cx - rx, cy - ry, cx + rx, cy + ry], outline=int(255 * (1 - pen / paper)), width=width)
                else:  # a box on a form: square, the digit anywhere inside it
                    side = max(ry, rx) * u(1.2, 1.5) + width
                    ox, oy = u(-0.15, 0.15) * side, u(-0.1, 0.1) * side
                    draw.rectangle([cx - side + ox, cy - side + oy, cx + side + ox, cy + side + oy],
                                   outline=int(255 * (1 - pen / paper)), width=width)
            else:  # a notebook's margin from top to bottom, a line of print above the digit
                x = w * u(0.06, 0.14)
                draw.line([(x, 0), (x, h)], fill=int(255 * u(0.3, 0.5)), width=int(rng.integers(2, 5)))
                y = h * u(0.04, 0.12)
                for cx in np.arange(w * 0.25, w * 0.92, 9):
                    draw.rectangle([cx, y, cx + rng.integers(3, 7), y + 7], fill=int(255 * 0.85))
            grey = grey * (1 - np.asarray(marks, np.float32) / 255)
        if condition == "tilted page":
            img = Image.fromarray(np.clip(grey * 255, 0, 255).astype(np.uint8))
            grey = np.asarray(img.rotate(float(u(-30, 30)), resample=Image.Resampling.BICUBIC, fillcolor=int(paper * 255)),
                              np.float32) / 255
    if noise:
        grey = grey + rng.normal(0, noise, grey.shape).astype(np.float32)
    img = Image.fromarray(np.clip(grey * 255, 0, 255).astype(np.uint8))
    if condition == "webcam":
        img = img.filter(ImageFilter.GaussianBlur(u(1.0, 2.0)))
    return _jpeg(img.convert("RGB"), rng)


def _jpeg(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=int(rng.integers(60, 93)))
    return Image.open(io.BytesIO(buf.getvalue()))


def photo_images(n: int = 800, seed: int = 0, root: str | None = None,
                 conditions: tuple[str, ...] = PHOTO_CONDITIONS, start: int = 0) -> Iterator[tuple[Image.Image, int]]:
    """``n`` photo-style JPEG images of MNIST test digits, with their labels; image ``i`` is taken
    under ``conditions[i % len(conditions)]`` (see :data:`PHOTO_CONDITIONS`)."""
    unknown = set(conditions) - set(PHOTO_CONDITIONS)
    if unknown:
        raise ValueError(f"unknown photo conditions {sorted(unknown)}; choose from {PHOTO_CONDITIONS}")
    images, labels = _mnist_test(root, start)
    rng = np.random.default_rng(seed)
    for i in range(min(n, len(images))):
        yield _photo(conditions[i % len(conditions)], images[i, 0].numpy(), rng), int(labels[i])


def cropped_images(n: int = 500, seed: int = 0, root: str | None = None, start: int = 0) -> Iterator[tuple[Image.Image, int]]:
    """``n`` pictures of MNIST test digits (from digit ``start`` on) cut down to the digit, with their labels
    (see the module's note)."""
    from scipy import ndimage

    images, labels = _mnist_test(root, start)
    rng = np.random.default_rng(seed)
    for i in range(min(n, len(images))):
        size = int(rng.integers(60, 301))  # the digit's 20 px box, scaled to about this
        side = int(size * 28 / 20)
        a = np.asarray(Image.fromarray((images[i, 0].numpy() * 255).astype(np.uint8)).resize((side, side), Image.Resampling.BICUBIC),
                       np.float32) / 255
        bold = int(size * rng.uniform(0.0, 0.3) * 2.5 / 20)  # up to three more strokes' width (MNIST's: ~2.5 of 20 px)
        if bold > 1:
            a = ndimage.grey_dilation(a, footprint=_disc(bold))
        a = np.clip((a - 0.2) / 0.6, 0, 1)  # a pen's solid strokes
        ys, xs = np.nonzero(a > 0.5)
        m = round(max(np.ptp(ys), np.ptp(xs)) * rng.uniform(0.0, 0.04))
        a = np.pad(a, m)[ys.min() : ys.max() + 1 + 2 * m, xs.min() : xs.max() + 1 + 2 * m]
        paper, pen = rng.uniform(0.85, 1.0), rng.uniform(0.0, 0.2)
        img = Image.fromarray(np.clip((paper + (pen - paper) * a) * 255, 0, 255).astype(np.uint8)).convert("RGB")
        if rng.uniform() < 0.5:
            img = _jpeg(img, rng)
        yield img, int(labels[i])


def number_images(n: int = 300, seed: int = 0, root: str | None = None,
                  digits: tuple[int, ...] = (2, 3, 4), gap: tuple[float, float] = (0.2, 0.8),
                  start: int = 0) -> Iterator[tuple[Image.Image, str]]:
    """``n`` pictures of numbers (``digits`` MNIST test digits each, side by side, ``gap`` times their
    height apart), with the number as a string; ``digits=(1,)`` lays out single digits the same way
    (none should be refused)."""
    images, labels = _mnist_test(root, start)
    rng = np.random.default_rng(seed)
    k = 0
    for _ in range(n):
        count = int(rng.choice(digits))
        height = int(rng.integers(50, 161))  # the digits' ink height, px
        inks, text = [], ""
        for _ in range(count):
            i, k = k % len(images), k + 1
            side = int(height * 28 / 20)
            a = np.asarray(Image.fromarray((images[i, 0].numpy() * 255).astype(np.uint8)).resize((side, side), Image.Resampling.BICUBIC),
                           np.float32) / 255
            ys, xs = np.nonzero(a > 0.3)
            inks.append(a[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1])
            text += str(int(labels[i]))
        gaps = [int(height * rng.uniform(*gap)) for _ in inks[1:]]
        margin = int(height * rng.uniform(0.3, 1.0))
        w = 2 * margin + sum(a.shape[1] for a in inks) + sum(gaps)
        h = 2 * margin + max(a.shape[0] for a in inks) + height // 5
        canvas = np.zeros((h, w), np.float32)
        x = margin
        for j, a in enumerate(inks):
            y = margin + int(rng.integers(0, height // 5 + 1))  # handwriting's baseline wanders
            canvas[y : y + a.shape[0], x : x + a.shape[1]] = np.maximum(canvas[y : y + a.shape[0], x : x + a.shape[1]], a)
            x += a.shape[1] + (gaps[j] if j < len(gaps) else 0)
        if rng.uniform() < 0.5:  # a sketch: the strokes in alpha
            img = Image.new("RGBA", (w, h), (20, 20, 20, 0))
            img.putalpha(Image.fromarray((np.clip(canvas * 1.5, 0, 1) * 255).astype(np.uint8)))
        else:  # a photo of paper: tone, a slight tilt, noise, JPEG
            paper, pen = rng.uniform(0.75, 0.95), rng.uniform(0.05, 0.25)
            grey = paper + (pen - paper) * canvas + rng.normal(0, 0.02, canvas.shape)
            img = Image.fromarray(np.clip(grey * 255, 0, 255).astype(np.uint8)).convert("RGB")
            img = _jpeg(img.rotate(float(rng.uniform(-5, 5)), resample=Image.Resampling.BICUBIC, fillcolor=(int(paper * 255),) * 3), rng)
        yield img, text


def numbers_named(images: Iterator[tuple[Image.Image, str]], input_size: tuple[int, int] = (56, 56),
                  digit_size: float = 32.0) -> dict:
    """How many of ``images`` :func:`prepare` refuses as several characters side by side (for a
    model whose canvas is ``input_size``), how many as one digit where the model reads two (``one
    digit``), how many for another reason, and how many of the others it notes as maybe two digits
    that touch (``touching``)."""
    total = named = lone = other = touching = 0
    for img, _ in images:
        total += 1
        try:
            touching += prepare(img, input_size, digit_size).touching
        except ImageError as exc:
            if "side by side" in str(exc):
                named += 1
            elif "seems to hold one digit" in str(exc):
                lone += 1
            else:
                other += 1
    return {"images": total, "named": named, "one digit": lone, "refused otherwise": other, "touching": touching}


_WORDS = ("the", "quick", "brown", "fox", "jumps", "over", "a", "lazy", "dog", "while", "seven", "wizards", "box", "and",
          "judge", "my", "vow", "of", "liquor", "jugs", "as", "we", "pack", "five", "dozen", "boxes")


def _no_digit(kind: str, rng: np.random.Generator) -> Image.Image:
    """One picture of ``kind`` (one of :data:`NO_DIGIT_KINDS`) that holds no digit."""
    if kind == "scene":  # blotches of colour and light, as a blurred photo of a room or a landscape
        w, h = (int(v) for v in rng.integers(300, 801, 2))
        field = rng.normal(size=(int(rng.integers(4, 20)), int(rng.integers(4, 20)), 3))
        field = ((field - field.min()) / np.ptp(field) * 255).astype(np.uint8)
        return _jpeg(Image.fromarray(field, "RGB").resize((w, h), Image.Resampling.BICUBIC), rng)
    if kind == "print":  # a page of print, photographed square on
        from PIL import ImageFont

        w, h = int(rng.integers(300, 901)), int(rng.integers(200, 701))
        img = Image.new("L", (w, h), int(rng.integers(225, 256)))
        size = int(rng.integers(10, 41))
        font, draw = ImageFont.load_default(size=size), ImageDraw.Draw(img)
        ink = int(rng.integers(0, 60))
        for i in range(int(rng.integers(1, 15))):  # lines of different words: their gaps do not line up
            words = _WORDS[int(rng.integers(0, len(_WORDS))) :] + _WORDS
            draw.text((20, 10 + int(1.7 * size) * i), " ".join(words[:12]), fill=ink, font=font)
        return img
    if kind == "shapes":  # a doodle of outlined circles and boxes
        img = Image.new("L", (300, 300), int(rng.integers(225, 256)))
        draw = ImageDraw.Draw(img)
        for _ in range(int(rng.integers(2, 8))):
            x, y = (int(v) for v in rng.integers(0, 250, 2))
            r = int(rng.integers(10, 60))
            shape = draw.ellipse if rng.uniform() < 0.5 else draw.rectangle
            shape([x, y, x + r, y + r], outline=int(rng.integers(0, 60)), width=int(rng.integers(2, 9)))
        return img
    raise ValueError(f"unknown kind {kind!r}; choose from {NO_DIGIT_KINDS}")


def no_digit_images(n: int = 150, seed: int = 0, kinds: tuple[str, ...] = NO_DIGIT_KINDS) -> Iterator[tuple[Image.Image, str]]:
    """``n`` pictures that hold no digit, with their kind; picture ``i`` is of ``kinds[i % len(kinds)]``."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        yield _no_digit(kinds[i % len(kinds)], rng), kinds[i % len(kinds)]


def guesses(model: STClassifier, images: Iterator[tuple[Image.Image, object]]) -> dict:
    """What ``model`` (with :func:`prepare`) answers for ``images``: how many it refuses, how many it
    shows as a guess (``unsure``: under :data:`stn.model.SURE`, or on weak evidence, ``weak`` of them
    for that reason alone) and how many it reads as sure."""
    cfg = model.config
    out = {"images": 0, "refused": 0, "unsure": 0, "weak": 0, "sure": 0}
    for img, _ in images:
        out["images"] += 1
        try:
            x = prepare(img, tuple(cfg.input_size), float(cfg.digit_size)).tensor
        except ImageError:
            out["refused"] += 1
            continue
        pred = model.predict(x)
        out["sure" if bool(pred.sure[0]) else "unsure"] += 1
        out["weak"] += bool(pred.weak[0]) and float(pred.probs.max()) >= SURE
    return out


def _disc(d: int) -> np.ndarray:
    r = (d - 1) / 2
    yy, xx = np.mgrid[0:d, 0:d]
    return np.hypot(yy - r, xx - r) <= r + 0.5


def upload_accuracy(model: STClassifier, images: Iterator[tuple[Image.Image, int]], batch: int = 64) -> dict:
    """Accuracy of ``model`` (with :func:`prepare`) on upload-style images; a refused image counts as wrong.
    ``unsure``: how many it shows as a guess (under :data:`stn.model.SURE`, or on weak evidence: ``weak``
    of them for that reason alone);
    ``touching``: how many carry the note that they may be two digits that touch."""
    cfg = model.config
    correct = total = refused = touching = 0
    xs: list[torch.Tensor] = []
    ys: list[int] = []

    unsure = weak = 0

    def flush() -> int:
        nonlocal unsure, weak
        if not xs:
            return 0
        pred = model.predict(torch.cat(xs))
        hits = int((pred.labels == torch.tensor(ys)).sum())
        unsure += int((~pred.sure).sum())
        weak += int((pred.weak & (pred.probs.amax(dim=1) >= SURE)).sum())
        xs.clear()
        ys.clear()
        return hits

    for img, label in images:
        total += 1
        try:
            prep = prepare(img, tuple(cfg.input_size), float(cfg.digit_size))
            xs.append(prep.tensor)
            ys.append(label)
            touching += prep.touching
        except ImageError:
            refused += 1
        if len(xs) >= batch:
            correct += flush()
    correct += flush()
    return {"accuracy": correct / max(1, total), "images": total, "refused": refused, "unsure": unsure, "weak": weak,
            "touching": touching}
