"""Bad and odd image files through every door: ``stn.preprocess``, ``python -m stn predict`` and the app.

The corpus is made here, in a temporary folder, from MNIST test digits (the bundled subset) and
PIL/numpy: nothing binary is committed. Every case says what a person would want back:

- ``digit=d``: a readable digit in an odd container (16-bit, 12-bit in 16, CMYK, CIELAB, palette,
  LA, EXIF-rotated, animated, multi-page, MPO, WebP, AVIF, BMP, PPM, float TIFF, a wrong extension, a photo
  taken in a dim room, under a hard shadow, of a note on a dark desk, a bold digit cropped to its
  own box, a circled digit, ...) is read, and with the real default model present it is read as ``d``;
- ``error=PHRASE``: a picture with nothing on it, too small, a number (several digits: a one-digit
  model's answer would be a guess at a mixture), a line or a page of print, not an image, or too large gets a
  sentence with that phrase, naming the file; never a traceback, a hang or a dead server.
"""

from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import stn
from stn.preprocess import MAX_FILE_BYTES, MAX_PIXELS, READ_FORMATS, ImageError, prepare

REPO = Path(__file__).resolve().parent.parent

# --------------------------------------------------------------------------- drawing


def _digits() -> tuple[np.ndarray, np.ndarray]:
    from stn.data import load_mnist

    x, y = load_mnist("bundled", train=False)
    return x[:, 0].numpy(), y.numpy()


def ink(index: int, size: int = 224, margin: float = 0.35) -> np.ndarray:
    """MNIST test digit ``index`` as ink strength in [0, 1], upscaled, ``size``×``size`` with a margin."""
    x, _ = _digits()
    inner = round(size / (1 + 2 * margin))
    d = Image.fromarray((x[index] * 255).astype(np.uint8)).resize((inner, inner), Image.Resampling.BICUBIC)
    canvas = np.zeros((size, size), np.float32)
    o = (size - inner) // 2
    canvas[o : o + inner, o : o + inner] = np.asarray(d, np.float32) / 255
    return canvas


def label_of(index: int) -> int:
    return int(_digits()[1][index])


def on_paper(a: np.ndarray, paper: float = 0.93, pen: float = 0.08) -> np.ndarray:
    """Dark ink on light paper, grey float in [0, 1]."""
    return paper - a * (paper - pen)


def u8(a: np.ndarray) -> np.ndarray:
    return (np.clip(a, 0, 1) * 255 + 0.5).astype(np.uint8)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def uniform_png(width: int, height: int, bit_depth: int = 1, byte: int = 0xFF) -> bytes:
    """A valid grey PNG of any size, streamed (a decompression bomb costs a few MB to make)."""
    row = b"\x00" + bytes([byte]) * ((width * bit_depth + 7) // 8)
    comp = zlib.compressobj(9)
    chunks = []
    block = row * max(1, 2_000_000 // len(row))
    rows_per_block = len(block) // len(row)
    left = height
    while left > 0:
        n = min(left, rows_per_block)
        chunks.append(comp.compress(block if n == rows_per_block else row * n))
        left -= n
    chunks.append(comp.flush())
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", b"".join(chunks)) + _png_chunk(b"IEND", b"")


def _save(img: Image.Image, path: Path, fmt: str | None = None, **kw) -> None:
    img.save(path, format=fmt, **kw)


# --------------------------------------------------------------------------- the corpus


@dataclass(frozen=True)
class Case:
    name: str  # file name, extension included (the extension may lie on purpose)
    make: Callable[[Path], None]
    index: int | None = None  # MNIST test digit drawn (its label is the expected answer)
    error: str | None = None  # phrase expected in the error sentence (lower case)

    @property
    def readable(self) -> bool:
        return self.error is None


def _grey_png(i):
    return lambda p: _save(Image.fromarray(u8(on_paper(ink(i)))), p)


def _png16(i):
    return lambda p: _save(Image.fromarray((on_paper(ink(i)) * 65535).astype(np.uint16)), p)


def _float_tiff(i):
    return lambda p: _save(Image.fromarray(on_paper(ink(i)).astype(np.float32), mode="F"), p, "TIFF")


def _rgb(i, pen=(20, 40, 160), paper=(245, 240, 225)):
    def make(p: Path) -> None:
        a = ink(i)[..., None]
        rgb = np.array(paper, np.float32) * (1 - a) + np.array(pen, np.float32) * a
        _save(Image.fromarray(rgb.round().astype(np.uint8)), p)

    return make


def _cmyk_jpeg(i):
    return lambda p: _save(Image.fromarray(u8(on_paper(ink(i)))).convert("CMYK"), p, "JPEG", quality=92)


def _palette_transparent(i):
    def make(p: Path) -> None:
        a = ink(i) > 0.4  # index 1 = black ink, index 0 = transparent ground
        img = Image.fromarray(a.astype(np.uint8), mode="P")
        img.putpalette([255, 255, 255, 0, 0, 0] + [0] * (256 - 2) * 3)
        img.save(p, transparency=0)

    return make


def _la(i):
    def make(p: Path) -> None:
        a = ink(i)
        grey = Image.fromarray(np.full(a.shape, 30, np.uint8))
        grey.putalpha(Image.fromarray(u8(a)))  # LA: dark strokes, alpha carries the drawing
        grey.save(p)

    return make


def _rgba_sketch(i):
    def make(p: Path) -> None:
        a = ink(i)
        rgba = np.zeros((*a.shape, 4), np.uint8)
        rgba[..., 3] = u8(a)  # black strokes on a transparent canvas, as a sketchpad exports
        Image.fromarray(rgba, "RGBA").save(p)

    return make


def _exif_rotated(i):
    def make(p: Path) -> None:
        img = Image.fromarray(u8(on_paper(ink(i)))).convert("RGB")
        # Store the pixels turned 90° clockwise and tag them "rotate 90° CW to show" (orientation 8
        # undoes a 90° CW turn: the camera was held sideways).
        stored = img.transpose(Image.Transpose.ROTATE_270)
        exif = Image.Exif()
        exif[0x0112] = 8
        stored.save(p, "JPEG", quality=92, exif=exif.tobytes())

    return make


def _animated_gif(i, other):
    def make(p: Path) -> None:
        first = Image.fromarray(u8(on_paper(ink(i)))).convert("P")
        second = Image.fromarray(u8(on_paper(ink(other)))).convert("P")
        first.save(p, "GIF", save_all=True, append_images=[second, second], duration=200, loop=0)

    return make


def _fmt(i, fmt, **kw):
    return lambda p: _save(Image.fromarray(u8(on_paper(ink(i)))).convert("RGB"), p, fmt, **kw)


def _white_on_black(i):
    return lambda p: _save(Image.fromarray(u8(ink(i) * 0.9 + 0.05)).convert("RGB"), p, "PNG")


def _bilevel(i):
    return lambda p: _save(Image.fromarray(ink(i) < 0.5).convert("1"), p, "PNG")


def _photo(i):
    def make(p: Path) -> None:
        a = ink(i, size=480, margin=0.8)
        yy, xx = np.mgrid[0:480, 0:640][0], np.mgrid[0:480, 0:640][1]
        light = 0.55 + 0.4 * (xx / 640) * (1 - 0.3 * yy / 480)  # uneven light across the page
        page = np.zeros((480, 640), np.float32)
        page[:, 80:560] = a
        grey = light * (1 - 0.85 * page) + np.random.default_rng(0).normal(0, 0.02, page.shape)
        _save(Image.fromarray(u8(grey)).convert("RGB"), p, "JPEG", quality=80)

    return make


def _tiny_in_huge(i):
    def make(p: Path) -> None:
        big = np.full((3000, 3000), 0.95, np.float32)
        a = ink(i, size=160, margin=0.1)
        big[1700:1860, 900:1060] = on_paper(a, paper=0.95)
        _save(Image.fromarray(u8(big)), p, "PNG")

    return make


def _dim_photo(i):
    """Dark ink on paper photographed in a dim room: the paper darker than mid-grey, one speck of glare."""
    def make(p: Path) -> None:
        grey = on_paper(ink(i), paper=0.35, pen=0.05) + np.random.default_rng(2).normal(0, 0.01, (224, 224))
        grey[20, 30] = 1.0
        _save(Image.fromarray(u8(grey)).convert("RGB"), p, "JPEG", quality=85)

    return make


def _note_on_desk(i):
    """A small page photographed on a dark desk: the picture's border is the desk, not the paper."""
    def make(p: Path) -> None:
        desk = np.full((480, 640), 0.18, np.float32) + np.random.default_rng(3).normal(0, 0.02, (480, 640))
        desk[110:370, 200:460] = np.asarray(Image.fromarray(u8(on_paper(ink(i)))).resize((260, 260)), np.float32) / 255
        _save(Image.fromarray(u8(desk)).convert("RGB"), p, "JPEG", quality=85)

    return make


def _hard_shadow(i):
    """A hard shadow over the left half of the page, the digit under its edge."""
    def make(p: Path) -> None:
        page = np.zeros((480, 640), np.float32)
        page[128:352, 208:432] = ink(i)
        light = np.where(np.arange(640) < 330, 0.45, 0.95)[None, :]
        _save(Image.fromarray(u8(light * (1 - 0.88 * page))).convert("RGB"), p, "JPEG", quality=85)

    return make


def _twelve_bit(i):
    """A 12-bit scan (values 0-4095) in a 16-bit PNG: a 0-65535 scale would see a blank page."""
    return lambda p: _save(Image.fromarray((on_paper(ink(i)) * 4095).astype(np.uint16)), p)


def _lab_tiff(i):
    return lambda p: _save(Image.fromarray(u8(on_paper(ink(i)))).convert("RGB").convert("LAB"), p, "TIFF")


def _multipage_tiff(i, other):
    def make(p: Path) -> None:
        pages = [Image.fromarray(u8(on_paper(ink(j)))).convert("RGB") for j in (i, other)]
        pages[0].save(p, "TIFF", save_all=True, append_images=pages[1:])

    return make


def _cropped_to_the_digit(i):
    """A bold digit cut out to its own box (strokes a quarter of its width, running into the edges)."""
    def make(p: Path) -> None:
        from scipy import ndimage

        a = ndimage.grey_dilation(ink(i), size=(9, 9))
        ys, xs = np.nonzero(a > 0.5)
        _save(Image.fromarray(u8(on_paper(a[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1]))), p, "PNG")

    return make


def _framed(i, shape):
    """A digit circled, or written in a box on a form, the frame clear of it."""
    def make(p: Path) -> None:
        from PIL import ImageDraw

        a = ink(i, size=300, margin=0.6)
        img = Image.fromarray(u8(on_paper(a))).convert("RGB")
        draw = ImageDraw.Draw(img)
        if shape == "circle":
            draw.ellipse([40, 30, 260, 270], outline=(25, 25, 60), width=6)
        elif shape == "touching circle":  # drawn close: it runs through the digit's ends
            ys, xs = np.nonzero(a > 0.3)
            cy, cx, r = (ys.min() + ys.max()) / 2, (xs.min() + xs.max()) / 2, 0.72 * max(np.ptp(ys), np.ptp(xs))
            draw.ellipse([cx - 0.8 * r, cy - r, cx + 0.8 * r, cy + r], outline=(25, 25, 60), width=6)
        else:
            draw.rectangle([45, 45, 255, 255], outline=(20, 20, 20), width=4)
        _save(img, p, "JPEG" if p.suffix == ".jpg" else "PNG")

    return make


def _number(*indices, pitch: int = 120):
    """A number written on a page and photographed: digits side by side, ``pitch`` px from one to the next
    (120: a third of their width apart)."""
    def make(p: Path) -> None:
        digits = [ink(i, size=160, margin=0.15) for i in indices]
        a = np.zeros((240, 100 + pitch * len(digits)), np.float32)
        for k, d in enumerate(digits):
            a[40:200, 30 + pitch * k : 190 + pitch * k] = np.maximum(a[40:200, 30 + pitch * k : 190 + pitch * k], d)
        _save(Image.fromarray(u8(on_paper(a))).convert("RGB"), p, "JPEG", quality=85)

    return make


def _print(lines: int, size: int):
    """A page (or a line) of print photographed square on: no digit to read, however many letters."""
    from PIL import ImageDraw, ImageFont

    words = ["seven", "wizards", "box", "and", "judge", "my", "vow", "while", "the", "quick", "brown", "fox", "jumps", "over", "a", "lazy", "dog"]

    def make(p: Path) -> None:
        img = Image.new("RGB", (720, 40 + int(1.7 * size) * lines), (240, 238, 230))
        draw, font = ImageDraw.Draw(img), ImageFont.load_default(size=size)
        for i in range(lines):  # each line from another word: the gaps between words do not line up
            draw.text((20, 20 + int(1.7 * size) * i), " ".join((words[3 * i % len(words) :] + words)[:10]), fill=(30, 30, 40), font=font)
        _save(img, p, "JPEG", quality=85)

    return make


def _mpo(i):
    """A phone's or camera's JPEG with a second view (MPO): the first one is read."""
    def make(p: Path) -> None:
        first, second = (Image.fromarray(u8(on_paper(ink(j)))).convert("RGB") for j in (i, i + 1))
        first.save(p, "MPO", save_all=True, append_images=[second])

    return make


def _eps(p: Path) -> None:
    """A real EPS (Pillow writes one without Ghostscript); decoding it would run Ghostscript."""
    Image.fromarray(u8(on_paper(ink(0)))).save(p, "EPS")


# Photoshop's header ("8BPS", version 1, 3 channels, 64×64, 8 bits, RGB), then nothing: only named, never parsed.
_PSD = b"8BPS\x00\x01" + bytes(6) + b"\x00\x03" + (64).to_bytes(4, "big") * 2 + b"\x00\x08\x00\x03" + bytes(2000)


# ISO media headers (``ftyp`` box): an iPhone's HEIC photo, and an MP4 video; Pillow reads neither.
_HEIC = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(4000)
_MP4 = b"\x00\x00\x00\x20ftypisom\x00\x00\x02\x00isomiso2avc1mp41" + bytes(4000)
_PDF = b"%PDF-1.7\n1 0 obj << /Type /Catalog /Pages 2 0 R >> endobj\n" + b"%" * 2000 + b"\n%%EOF\n"


def _const(value, size=(200, 200), mode="L"):
    return lambda p: Image.new(mode, size, value).save(p)


def _noise(p: Path) -> None:
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (256, 256), dtype=np.uint8)).save(p)


def _transparent_empty(p: Path) -> None:
    Image.new("RGBA", (300, 300), (255, 255, 255, 0)).save(p)


def _speck(p: Path) -> None:
    a = np.full((300, 300), 0.95, np.float32)
    a[150:152, 150:152] = 0.05  # a 2×2 dot: too small to be a digit
    Image.fromarray(u8(a)).save(p)


def _truncated(i, fmt):
    def make(p: Path) -> None:
        buf = io.BytesIO()
        Image.fromarray(u8(on_paper(ink(i)))).save(buf, fmt)
        p.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])

    return make


def _bytes(data: bytes):
    return lambda p: p.write_bytes(data)


def _oversize(p: Path) -> None:
    with open(p, "wb") as f:  # a PNG signature, then junk past the upload limit
        f.write(b"\x89PNG\r\n\x1a\n")
        f.write(os.urandom(MAX_FILE_BYTES + 1024 - 8))


_SVG = b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="100" height="100"><text x="30" y="70" font-size="60">7</text></svg>\n'

NO_DIGIT = "no digit found"
TOO_SMALL = "too small"
TOO_BIG = "too large|too many pixels"

CASES: list[Case] = [
    # readable digits in odd containers
    Case("plain.png", _grey_png(0), index=0),
    Case("grey16.png", _png16(1), index=1),
    Case("float.tiff", _float_tiff(3), index=3),
    Case("blue-pen.png", _rgb(4), index=4),
    Case("cmyk.jpg", _cmyk_jpeg(18), index=18),
    Case("palette-transparent.png", _palette_transparent(7), index=7),
    Case("grey-alpha-LA.png", _la(2), index=2),
    Case("sketch-alpha.png", _rgba_sketch(11), index=11),
    Case("exif-rotated.jpg", _exif_rotated(15), index=15),
    Case("animated.gif", _animated_gif(0, 3), index=0),
    Case("digit.webp", _fmt(1, "WEBP", quality=90), index=1),
    Case("digit.bmp", _fmt(4, "BMP"), index=4),
    Case("really-a-png.jpg", _fmt(7, "PNG"), index=7),
    Case("white-on-black.png", _white_on_black(2), index=2),
    Case("bilevel-1bit.png", _bilevel(3), index=3),
    Case("grey.jpg", _fmt(18, "JPEG", quality=40), index=18),
    Case("photo-uneven-light.jpg", _photo(11), index=11),
    Case("tiny-digit-huge-canvas.png", _tiny_in_huge(0), index=0),
    Case("dim-room-photo.jpg", _dim_photo(21), index=21),
    Case("scan-12bit.png", _twelve_bit(8), index=8),
    Case("note-on-desk.jpg", _note_on_desk(104), index=104),
    Case("shadow-over-half.jpg", _hard_shadow(102), index=102),
    Case("cielab.tiff", _lab_tiff(5), index=5),
    Case("two-pages.tiff", _multipage_tiff(9, 3), index=9),
    Case("digit.ppm", _fmt(12, "PPM"), index=12),
    Case("progressive.jpg", _fmt(13, "JPEG", quality=85, progressive=True), index=13),
    Case("two-views.jpg", _mpo(16), index=16),
    Case("cropped-one.png", _cropped_to_the_digit(29), index=29),
    Case("cropped-three.png", _cropped_to_the_digit(30), index=30),
    Case("circled.jpg", _framed(4, "circle"), index=4),
    Case("in-a-box.png", _framed(8, "box"), index=8),
    Case("circled-touching.jpg", _framed(0, "touching circle"), index=0),
    # nothing to read
    Case("all-white.png", _const(255), error=NO_DIGIT),
    Case("all-black.png", _const(0), error=NO_DIGIT),
    Case("uniform-grey.jpg", _const(128, mode="RGB"), error=NO_DIGIT),
    Case("noise.png", _noise, error=NO_DIGIT),
    Case("transparent-empty.png", _transparent_empty, error=NO_DIGIT),
    Case("one-pixel.png", _const(0, size=(1, 1)), error=TOO_SMALL),
    Case("five-by-five.png", _const(0, size=(5, 5)), error=TOO_SMALL),
    Case("speck.png", _speck, error=TOO_SMALL),
    Case("a-number.jpg", _number(0, 1), error="several characters side by side"),
    Case("a-year.jpg", _number(2, 3, 4, 5), error="several characters side by side"),
    # farther apart than the digits are tall: the far one was left out as a stray mark, the other read alone
    Case("a-number-written-wide.jpg", _number(0, 1, pitch=330), error="several characters side by side"),
    Case("a-line-of-print.jpg", _print(1, 24), error="several characters side by side"),
    Case("a-page-of-print.jpg", _print(10, 22), error="lines of writing or print|several characters side by side"),
    # not a readable image, or too large
    Case("empty.png", _bytes(b""), error="empty"),
    Case("truncated.png", _truncated(0, "PNG"), error="damaged or truncated"),
    Case("truncated.jpg", _truncated(0, "JPEG"), error="damaged or truncated"),
    Case("notes.png", _bytes(b"shopping list: milk, eggs, 7 apples\n" * 20), error="not an image format"),
    Case("page.html.jpg", _bytes(b"<!doctype html><html><body>7</body></html>\n"), error="not an image format"),
    Case("drawing.svg", _bytes(_SVG), error="svg"),
    Case("IMG_0042.HEIC", _bytes(_HEIC), error="heic/heif .*send it as jpeg"),
    Case("clip.mp4", _bytes(_MP4), error="video"),
    Case("homework.pdf", _bytes(_PDF), error="pdf document"),
    Case("poster.eps", _eps, error="postscript/eps"),
    Case("layers.psd", _bytes(_PSD), error="photoshop"),
    Case("scan.jp2", _fmt(6, "JPEG2000"), error="jpeg 2000"),
    Case("favicon.ico", _fmt(6, "ICO"), error="icons"),
    Case("digit.tga", _fmt(6, "TGA"), error="not an image format we can read"),
    Case("huge-10000x10000.png", lambda p: p.write_bytes(uniform_png(10000, 10000)), error=TOO_BIG),
    Case("large-7000x7000.png", lambda p: p.write_bytes(uniform_png(7000, 7000)), error=TOO_BIG),
    Case("bomb.png", lambda p: p.write_bytes(uniform_png(40000, 40000)), error=TOO_BIG),
    Case("oversize-21MB.png", _oversize, error="limit is"),
]
if "AVIF" in READ_FORMATS:  # Pillow 11.3+ reads AVIF
    CASES.append(Case("photo.avif", _fmt(19, "AVIF", quality=80), index=19))

IDS = [c.name for c in CASES]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("bad_inputs")
    paths = {}
    for case in CASES:
        path = d / case.name
        case.make(path)
        paths[case.name] = path
    return paths


def test_corpus_size():
    assert len(CASES) >= 25
    assert len(set(IDS)) == len(IDS)


# --------------------------------------------------------------------------- models


def _default_model_name() -> str | None:
    names = stn.list_models()
    if not names:
        return None
    return stn.DEFAULT_MODEL if stn.DEFAULT_MODEL in names else names[0]


@pytest.fixture(scope="module")
def model():
    name = _default_model_name()
    if name is None:
        pytest.skip(f"no models in {stn.zoo.models_dir()} yet (train one: python -m stn train ...)")
    return stn.load_model(name, device="cpu")


def _need_real_default() -> None:
    if stn.DEFAULT_MODEL not in stn.list_models():
        pytest.skip(f"labels are checked with the default model {stn.DEFAULT_MODEL!r}, not installed in {stn.zoo.models_dir()}")


def _check_error(case: Case, message: str) -> None:
    import re

    assert re.search(case.error, message.lower()), f"{case.name}: expected /{case.error}/ in {message!r}"
    assert "Traceback" not in message
    stem = Path(case.name).stem
    assert stem in message, f"{case.name}: the message should name the file: {message!r}"


# --------------------------------------------------------------------------- Python API


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_preprocess(case: Case, corpus, model):
    path = corpus[case.name]
    if case.readable:
        x = stn.preprocess(path, model)
        assert tuple(x.shape) == (1, 1, *model.input_size)
        assert float(x.max()) > 0.5 and bool(x.isfinite().all())
    else:
        with pytest.raises(ImageError) as info:
            stn.preprocess(path, model)
        _check_error(case, str(info.value))


READABLE = [c for c in CASES if c.readable]


@pytest.mark.parametrize("case", READABLE, ids=[c.name for c in READABLE])
def test_preprocess_sees_the_same_ink(case: Case, corpus):
    """Model-free: every container gives (nearly) the model input of the plain grey rendering."""
    import torch

    from stn.data import get_spec

    spec = get_spec("wild")
    got = prepare(corpus[case.name], spec.canvas, spec.digit_size).tensor.flatten()
    plain = Image.fromarray(u8(on_paper(ink(case.index))))
    want = prepare(plain, spec.canvas, spec.digit_size).tensor.flatten()
    r = float(torch.corrcoef(torch.stack([got, want]))[0, 1])
    assert r > 0.8, f"{case.name}: correlation with the plain rendering {r:.3f}"


@pytest.mark.parametrize("case", READABLE, ids=[c.name for c in READABLE])
def test_preprocess_reads_digit(case: Case, corpus, model):
    _need_real_default()
    pred = model.predict(stn.preprocess(corpus[case.name], model))
    assert pred.class_names()[0] == str(label_of(case.index)), f"{case.name}: probs {pred.probs[0].tolist()}"


def test_bytes_and_pil_sources(corpus, model):
    """The same answers from bytes and from an open PIL image."""
    raw = corpus["plain.png"].read_bytes()
    a = stn.preprocess(raw, model)
    b = stn.preprocess(Image.open(io.BytesIO(raw)), model)
    assert a.shape == b.shape
    with pytest.raises(ImageError, match="empty"):
        stn.preprocess(b"", model)
    with pytest.raises(ImageError, match="not an image format"):
        stn.preprocess(b"hello" * 100, model)


def test_bomb_guard_stays_on():
    assert Image.MAX_IMAGE_PIXELS is not None
    assert Image.MAX_IMAGE_PIXELS <= 2 * MAX_PIXELS


def test_exif_orientation_applied(corpus):
    """The EXIF-rotated file comes out upright: the same ink as the plain rendering."""
    from stn.data import get_spec

    spec = get_spec("wild")
    a = prepare(corpus["exif-rotated.jpg"], spec.canvas, spec.digit_size).tensor
    upright = Image.fromarray(u8(on_paper(ink(15)))).convert("RGB")
    b = prepare(upright, spec.canvas, spec.digit_size).tensor
    sideways = prepare(upright.transpose(Image.Transpose.ROTATE_270), spec.canvas, spec.digit_size).tensor
    assert float((a - b).abs().mean()) < 0.5 * float((sideways - b).abs().mean())


# --------------------------------------------------------------------------- CLI


@pytest.fixture(scope="module")
def cli_results(corpus, model) -> tuple[int, dict[str, dict], str]:
    """One ``python -m stn predict --json`` over the whole corpus (the readable files batched)."""
    files = [str(corpus[c.name]) for c in CASES]
    proc = subprocess.run(
        [sys.executable, "-m", "stn", "predict", "--json", "--model", model.name, *files],
        capture_output=True, text=True, timeout=300, cwd=REPO, check=False,
    )
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    return proc.returncode, {Path(r["file"]).name: r for r in lines}, proc.stderr


def test_cli_whole_corpus(cli_results):
    rc, rows, err = cli_results
    assert "Traceback" not in err, err
    assert rc == 1  # some files failed
    assert set(rows) == set(IDS), "one JSON line per file"


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_cli(case: Case, cli_results, model):
    _, rows, _ = cli_results
    row = rows[case.name]
    if case.readable:
        assert "error" not in row, row
        assert row["model"] == model.name
        assert len(row["probs"]) == model.n_outputs
        assert abs(sum(row["probs"]) - 1) < 1e-3
        assert len(row["theta"]) == (0 if model.st is None else model.heads)
        if stn.DEFAULT_MODEL == model.name:
            assert row["label"] == str(label_of(case.index)), row
    else:
        assert set(row) == {"file", "error"}
        _check_error(case, row["error"])


def test_cli_one_broken_among_good(corpus, model):
    files = [corpus["plain.png"], corpus["truncated.png"], corpus["grey16.png"]]
    proc = subprocess.run(
        [sys.executable, "-m", "stn", "predict", "--json", "--model", model.name, *map(str, files)],
        capture_output=True, text=True, timeout=120, cwd=REPO, check=False,
    )
    assert proc.returncode == 1, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [Path(r["file"]).name for r in rows] == ["plain.png", "truncated.png", "grey16.png"]
    assert "label" in rows[0] and "label" in rows[2]
    assert "damaged or truncated" in rows[1]["error"]


# --------------------------------------------------------------------------- the app


_READER_PIDS: list[int] = []  # the app_client's reader process, as started


@pytest.fixture(scope="module")
def app_client(app_module, model):
    app = app_module
    from gradio_client import Client

    from stn.serving import ReaderPool

    # as `python app.py` serves on a multi-core CPU: every file read in a reader process, read ahead
    # as it is uploaded (a bad file must not take the reader down for the next ones)
    reader = ReaderPool(app.ENGINE.directory, workers=1, timeout=60)
    reader.start(wait=True)
    app.READER = reader
    _READER_PIDS[:] = [w.process.pid for w in reader._all]
    demo = app.demo
    _, url, _ = demo.launch(prevent_thread_lock=True, quiet=True, **app.launch_kwargs())
    client = Client(url, verbose=False)
    try:
        yield client, url, model.name
    finally:
        client.close() if hasattr(client, "close") else None
        demo.close()
        app.READER = None
        reader.close()


def _app_json(result) -> dict:
    """The JSON output (label/probs/theta) among the endpoint's outputs."""
    outs = result if isinstance(result, (list, tuple)) else [result]
    for out in outs:
        if isinstance(out, str):
            try:
                out = json.loads(out)
            except ValueError:
                continue
        if isinstance(out, dict) and "label" in out and "probs" in out:
            return out
    raise AssertionError(f"no JSON with label/probs among the outputs: {result!r:.500}")


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_app_predict(case: Case, corpus, app_client):
    from gradio_client import handle_file

    client, _, name = app_client
    path = corpus[case.name]
    if case.readable:
        out = _app_json(client.predict(handle_file(str(path)), name, api_name="/predict"))
        if name == stn.DEFAULT_MODEL:
            assert str(out["label"]) == str(label_of(case.index)), out
    else:
        with pytest.raises(Exception) as info:
            client.predict(handle_file(str(path)), name, api_name="/predict")
        message = str(info.value)
        assert "Traceback" not in message
        import re

        if case.name.startswith("oversize"):  # refused at upload (size cap) or by the handler
            assert re.search(r"limit|too large|maximum|size", message.lower()), message
        else:
            assert re.search(case.error, message.lower()), f"{case.name}: expected /{case.error}/ in {message!r}"
            assert case.name in message, f"{case.name}: the message should name the file: {message!r}"
    # the server is alive and still answers after every bad file
    out = _app_json(client.predict(handle_file(str(corpus["plain.png"])), name, api_name="/predict"))
    assert "label" in out


@pytest.mark.slow
def test_app_read_the_corpus_in_its_reader(corpus, app_client):
    """After the whole corpus (run above, or now): the reader process took the uploads it read
    ahead, and is still the one it started with (no bad file killed or hung it)."""
    from gradio_client import handle_file

    client, _, name = app_client
    reader = sys.modules["app"].READER
    for case in CASES[:3]:
        _app_json(client.predict(handle_file(str(corpus[case.name])), name, api_name="/predict"))
    assert reader.ahead_stats["used"] >= 3, reader.ahead_stats
    assert [w.process.pid for w in reader._all] == _READER_PIDS
    assert all(w.process.poll() is None for w in reader._all)


@pytest.mark.slow
def test_app_under_mixed_traffic(corpus, app_client, bench_script):
    """Eight visitors at once over plain REST, as browsers and ``curl`` send: each uploads the same
    digit at the same moment (Gradio caches uploads by content), then the whole corpus in its own
    order, bombs and broken files among the digits. Every readable file is read (as its digit by
    the default model), every bad one gets its sentence naming it, and the server and its reader
    process live on: a hostile upload costs nobody else their answer."""
    import random
    import re
    import threading
    from urllib.parse import urlparse

    load = bench_script("load")
    _, url, name = app_client
    port = urlparse(url).port
    status, info = load.Client(port, [], name)._request("GET", "/gradio_api/info")
    assert status == 200
    params = json.loads(info)["named_endpoints"]["/predict"]["parameters"]
    payloads = {case.name: corpus[case.name].read_bytes() for case in CASES}
    visitors = 8
    together = threading.Barrier(visitors)
    answers: list[tuple[int, str, bool, str]] = []
    lock = threading.Lock()

    def visitor(v: int) -> None:
        client = load.Client(port, params, name)
        order = [CASES[0]] + random.Random(v).sample(CASES, len(CASES))
        for k, case in enumerate(order):
            if k == 0:
                together.wait(timeout=120)
            try:
                ok, text = client.predict(corpus[case.name], payloads[case.name], limit=None)
            except Exception as exc:  # noqa: BLE001 - recorded, and the assertions below name it
                ok, text = False, f"request failed: {type(exc).__name__}: {exc}"
            with lock:
                answers.append((v, case.name, ok, text))

    threads = [threading.Thread(target=visitor, args=(v,), daemon=True) for v in range(visitors)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    assert not any(t.is_alive() for t in threads), "a request hung"
    assert len(answers) == visitors * (len(CASES) + 1)
    by_name = {case.name: case for case in CASES}
    labels = stn.DEFAULT_MODEL == name
    wrong = []
    for v, fname, ok, text in answers:
        case = by_name[fname]
        if case.readable:
            if not ok:
                wrong.append(f"visitor {v}, {fname}: not read: {text[:300]}")
                continue
            out = _app_json(json.loads(text))
            if labels and str(out["label"]) != str(label_of(case.index)):
                wrong.append(f"visitor {v}, {fname}: read as {out['label']}, drawn {label_of(case.index)}")
        elif ok:
            wrong.append(f"visitor {v}, {fname}: answered instead of refused: {text[:200]}")
        elif "Traceback" in text:
            wrong.append(f"visitor {v}, {fname}: a traceback reached the visitor: {text[:300]}")
        elif case.name.startswith("oversize"):
            if not text.startswith("upload 413"):
                wrong.append(f"visitor {v}, {fname}: the upload was not refused for its size: {text[:200]}")
        else:
            message = text.lower()
            if not re.search(case.error, message) or Path(fname).stem.lower() not in message:
                wrong.append(f"visitor {v}, {fname}: expected /{case.error}/ and the file's name, got {text[:300]}")
    assert not wrong, "\n".join(wrong)
    reader = sys.modules["app"].READER
    assert [w.process.pid for w in reader._all] == _READER_PIDS, "a reader process died or was replaced"
    ok, text = load.Client(port, params, name).predict(corpus["plain.png"], payloads["plain.png"], limit=None)
    assert ok and "label" in _app_json(json.loads(text))
