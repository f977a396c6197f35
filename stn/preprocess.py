"""From any image a person gives to the tensor a model reads.

A model reads float ``(1, 1, H, W)`` in [0, 1], light ink on a dark ground, at its canvas size,
with the digit's ink box about ``config.digit_size`` pixels long, as in its training data.
:func:`preprocess` gets there from a photo or scan (dark ink on light paper, or light on dark),
a transparent PNG, or a sketch whose strokes live only in the alpha channel, of any size:

1. open safely (:func:`open_image`): size cap, Pillow's decompression-bomb guard, first frame
   of an animation, EXIF orientation; odd modes (16-bit, float, CMYK, CIELAB, palette, LA) to
   float grey; a file that is not a picture (a PDF, an iPhone's HEIC, a video) named as such;
2. ink map: alpha where the strokes are in alpha; else the share of a local paper estimate's
   light that the ink takes away (a morphological closing, so shading, shadows and vignetting
   drop out), polarity from where the border (the paper) lies between the picture's darkest and
   brightest parts, or from the page when a light page lies on a dark desk;
3. keep the connected ink blobs that carry the mass, drop specks and other marks (a margin, a pen,
   a frame), and refuse an image with no digit on it (blank, uniform, transparent, noise) or with
   a number on it (several digits side by side, :func:`count_side_by_side`) with a clear message;
   flag a mark that looks like two digits touching (:func:`touching_digits`: read, with a note);
4. crop around the ink's centre of mass so that its box is ``digit_size`` long, resize with
   anti-aliasing, and stretch the ink to full contrast.

A grey image already at the model's canvas size is taken as it is (step 2 only): it is in
model space already, and the transformer should do the finding.
"""

from __future__ import annotations

import functools
import importlib
import io
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError
from scipy import ndimage

__all__ = ["ImageError", "Prepared", "open_image", "preprocess", "prepare", "ink_map", "count_side_by_side", "touching_digits",
           "MAX_FILE_BYTES", "MAX_PIXELS", "READ_FORMATS"]

MAX_FILE_BYTES = 20 * 1024 * 1024  # uploads above this are refused before decoding
MAX_PIXELS = 40_000_000  # larger images are refused (Pillow warns at 89 M and raises at 179 M)
MIN_SIDE = 8  # smaller images cannot hold a readable digit
# Images are reduced to this longer side before the ink analysis. 256 (was 320) reads the upload
# sets exactly as well (bench/README.md) and costs about a third less.
WORK_SIDE = 256
# An anti-aliased filter with a short support: the ink map is reduced again to the model's digit
# size (a box usually 2-6 times larger), so Lanczos's extra sharpness at this step does not survive.
WORK_RESAMPLE = Image.Resampling.BILINEAR

Image.MAX_IMAGE_PIXELS = 2 * MAX_PIXELS  # keep Pillow's bomb guard on, at our own limit


# Leading bytes of PNG, JPEG, GIF, BMP, TIFF and WebP (RIFF) files.
_IMAGE_SIGNATURES = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF87a", b"GIF89a", b"BM", b"II*\x00", b"MM\x00*", b"RIFF")

# The only decoders an upload reaches: what phones, browsers, scanners and paint programs save.
# Pillow would otherwise try its forty-odd plugins, among them EPS, which hands the file to
# Ghostscript (an interpreter, run as a subprocess), and rarely used parsers (PSD, FITS, DDS, ...).
# (JPEG's decoder also opens MPO, the JPEG some phones and cameras write with a preview or a
# second view.) AVIF only where this Pillow was built with it. Only these plugins are imported:
# Image.init() would load all of them (60 ms).
Image.preinit()  # BMP, GIF, JPEG, PPM, PNG
for _plugin in ("TiffImagePlugin", "WebPImagePlugin", "AvifImagePlugin"):
    try:
        importlib.import_module(f"PIL.{_plugin}")
    except ImportError:  # AVIF before Pillow 11.3, or a Pillow built without it
        pass
READ_FORMATS = tuple(f for f in ("PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF", "PPM", "AVIF") if f in Image.OPEN)


def formats_text() -> str:
    """The formats of :data:`READ_FORMATS` as a person reads them ("PNG, JPEG, WebP, ... or AVIF"): the refusal of
    another format and ``stn predict --help`` name the same ones."""
    shown = [{"WEBP": "WebP"}.get(f, f) for f in READ_FORMATS]
    return f"{', '.join(shown[:-1])} or {shown[-1]}" if len(shown) > 1 else shown[0]


# Formats refused above that a person may still send, with what they are (magic bytes → name).
_OTHER_FORMATS = (
    ((b"%!PS", b"\xc5\xd0\xd3\xc6"), "PostScript/EPS is a print format, not a picture"),
    ((b"8BPS",), "Photoshop (PSD) files are not read here"),
    ((b"\x00\x00\x00\x0cjP  \r\n\x87\n", b"\xffO\xffQ"), "JPEG 2000 is not read here"),
    ((b"\x00\x00\x01\x00",), "icons (ICO) are not read here"),
)


class ImageError(ValueError):
    """An image that cannot be read as a digit; the message says which file and what to do."""


def _name(source: object) -> str:
    if isinstance(source, (str, os.PathLike)):
        return Path(source).name or str(source)
    for attr in ("filename", "name"):  # a PIL image opened from a file; an open file
        value = getattr(source, attr, None)
        if isinstance(value, (str, os.PathLike)) and str(value):
            return Path(value).name
    return "the image"


def _from_array(source: object, label: str) -> Image.Image:
    """A numpy array or a torch tensor as a PIL image: grey ``(H, W)``, colour ``(H, W, 3|4)`` or
    ``(3|4, H, W)``, leading axes of size 1 dropped (a ``(1, 1, H, W)`` model input reads too).
    The layout and the size are checked on the shape, before any pixel is copied."""
    shape = tuple(int(n) for n in source.shape)  # type: ignore[attr-defined]
    dims = list(shape)
    while len(dims) > 2 and dims[0] == 1 and (len(dims) > 3 or dims[-1] not in (1, 3, 4)):
        dims.pop(0)
    first = len(dims) == 3 and dims[0] in (1, 3, 4) and dims[-1] not in (1, 3, 4)  # channels first
    if len(dims) not in (2, 3) or (len(dims) == 3 and (dims[0] if first else dims[-1]) not in (1, 3, 4)):
        raise ImageError(f"{label}: an array of shape {shape} is not a picture: send (H, W) grey, (H, W, 3) RGB or "
                         "(H, W, 4) RGBA.")
    h, w = (dims[1], dims[2]) if first else (dims[0], dims[1])
    if h * w > MAX_PIXELS:
        raise ImageError(f"{label}: {w}×{h} pixels is too large (limit {MAX_PIXELS // 1_000_000} megapixels). "
                         "Send a smaller image.")
    lead = (0,) * (len(shape) - len(dims))
    if isinstance(source, torch.Tensor):
        t = source.detach().cpu()[lead]
        t = t.movedim(0, -1) if first else t
        a = (t.float() if t.dtype in (torch.float16, torch.bfloat16) else t).numpy()
    else:
        a = np.asarray(source)[lead]
        a = np.moveaxis(a, 0, -1) if first else a
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.dtype == bool:
        a = a.astype(np.uint8) * 255
    if not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)):
        raise ImageError(f"{label}: an array of {a.dtype} is not a picture: send numbers (uint8 0-255, or floats).")
    if a.ndim == 2:  # grey: floats and wide integers keep their own range (as a 16-bit or float TIFF does)
        return Image.fromarray(a, "L") if a.dtype == np.uint8 else Image.fromarray(a.astype(np.float32), "F")
    if a.dtype != np.uint8:  # colour: floats in [0, 1] or 0-255; integers 0-255 or wider (one float32 copy)
        f = np.nan_to_num(a.astype(np.float32), copy=False, nan=0.0, posinf=0.0, neginf=0.0)
        top = float(f.max(initial=0.0))
        f *= 255.0 if top <= 1.0 else 255.0 / top if top > 255 else 1.0
        a = np.rint(np.clip(f, 0, 255, out=f)).astype(np.uint8)
    return Image.fromarray(np.ascontiguousarray(a), "RGB" if a.shape[-1] == 3 else "RGBA")


def open_image(source: str | os.PathLike | bytes | Image.Image, name: str | None = None) -> Image.Image:
    """Open a picture and return one upright frame, fully loaded.

    ``source``: a file path, the file's bytes (``bytes``, ``bytearray``, ``memoryview``), an open
    binary file, a PIL image, or an array (numpy or torch: ``(H, W)`` grey, ``(H, W, 3|4)`` or
    ``(3|4, H, W)`` colour; uint8 0-255 or floats).

    Raises:
        ImageError: unreadable, not an image, too large, too small, or a decompression bomb.
    """
    if isinstance(source, (bytearray, memoryview)):
        source = bytes(source)
    label = name or (_name(source) if not isinstance(source, bytes) else "the upload")
    if isinstance(source, (np.ndarray, torch.Tensor)):
        source = _from_array(source, label)
    elif hasattr(source, "read") and not isinstance(source, (str, os.PathLike, Image.Image)):
        data = source.read(MAX_FILE_BYTES + 1)  # type: ignore[union-attr]
        if not isinstance(data, bytes):
            raise ImageError(f"{label}: the file was opened as text; open it in binary mode ('rb').")
        source = data
    elif not isinstance(source, (str, os.PathLike, bytes, Image.Image)):
        raise ImageError(f"expected a picture (a file path, its bytes, an open file, a PIL image or an array), "
                         f"got {type(source).__name__}.")
    if isinstance(source, Image.Image):
        img = source
    else:
        if isinstance(source, (str, os.PathLike)):
            path = Path(source)
            if not str(source):
                raise ImageError("no file name given: pass the path of a picture of a digit.")
            if path.is_dir():
                raise ImageError(f"{label}: is a folder, not a picture file.")
            if not path.is_file():
                raise ImageError(f"{label}: no such file.")
            size = path.stat().st_size
            if size > MAX_FILE_BYTES:
                raise ImageError(f"{label}: the file is {size / 2**20:.1f} MB; the limit is {MAX_FILE_BYTES // 2**20} MB. Send a smaller image.")
            data = path.read_bytes()
        else:
            data = source
            if len(data) > MAX_FILE_BYTES:
                raise ImageError(f"{label}: the file is over {MAX_FILE_BYTES // 2**20} MB. Send a smaller image.")
        if not data:
            raise ImageError(f"{label}: the file is empty (0 bytes). Send a PNG or JPEG of a digit.")
        head = data[:512].lstrip().lower()
        if head.startswith(b"<svg") or (head.startswith(b"<?xml") and b"<svg" in data[:4096].lower()):
            raise ImageError(f"{label}: SVG is a vector drawing, not a picture. Export it as PNG and try again.")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                img = Image.open(io.BytesIO(data), formats=READ_FORMATS)
                if img.width * img.height > MAX_PIXELS:
                    raise ImageError(
                        f"{label}: {img.width}×{img.height} pixels is too large (limit {MAX_PIXELS // 1_000_000} megapixels). "
                        "Send a smaller image."
                    )
                img.seek(0)  # first frame of an animation (or of an MPO, before its draft)
                if img.format in ("JPEG", "MPO"):
                    _draft(img)
                img.load()
        except ImageError:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise ImageError(f"{label}: the image declares too many pixels to decode safely. Send a smaller image.") from None
        except UnidentifiedImageError:
            raise _not_a_picture(label, data) from None
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            raise ImageError(f"{label}: the image file is damaged or truncated ({type(exc).__name__}). Save it again and retry.") from None
    if img.width < MIN_SIDE or img.height < MIN_SIDE:
        raise ImageError(f"{label}: {img.width}×{img.height} pixels is too small to hold a digit (at least {MIN_SIDE}×{MIN_SIDE}).")
    img = _plain_mode(img, label)
    try:
        if img is source:  # the caller's image: turn a copy
            img = ImageOps.exif_transpose(img) or img
        else:  # ours: turn it in place rather than copy it when it is upright already
            ImageOps.exif_transpose(img, in_place=True)
    except Exception:  # a broken EXIF block must not lose the picture
        pass
    return img


# Modes the ink analysis reads directly; anything else (LAB, HSV, ...) is turned into one of them first.
_PLAIN_MODES = frozenset({"1", "L", "LA", "La", "P", "PA", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr",
                          "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})


def _plain_mode(img: Image.Image, label: str) -> Image.Image:
    """``img`` in a mode of ``_PLAIN_MODES``: CIELAB keeps its lightness, other modes go through RGB."""
    if img.mode in _PLAIN_MODES:
        return img
    try:
        if img.mode == "LAB":  # L* is the picture's lightness, 0-255
            return img.getchannel("L")
        return img.convert("RGBA" if "A" in img.getbands() else "RGB")
    except (ValueError, OSError):
        raise ImageError(f"{label}: its colour mode ({img.mode}) cannot be read. Save it as an RGB or greyscale PNG or JPEG.") from None


def _not_a_picture(label: str, data: bytes) -> ImageError:
    """The sentence for a file Pillow cannot identify, naming what it is where that is clear."""
    if data[4:8] == b"ftyp":  # ISO media: HEIF/HEIC (iPhones' photos), AVIF, or a video
        brand = data[8:12]
        if brand in (b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1"):
            return ImageError(f"{label}: HEIC/HEIF photos (an iPhone's default) cannot be read here. Send it as JPEG or PNG: "
                              "share or export it as JPEG, or take a screenshot of it.")
        if brand in (b"avif", b"avis"):
            return ImageError(f"{label}: this installation cannot read AVIF. Send the picture as PNG or JPEG.")
        return ImageError(f"{label}: this looks like a video, not a picture. Send a PNG or JPEG of a digit.")
    if data.startswith(b"%PDF-"):
        return ImageError(f"{label}: this is a PDF document, not a picture. Export the page as PNG or JPEG, or take a screenshot of it.")
    for signatures, what in _OTHER_FORMATS:
        if data.startswith(signatures):
            return ImageError(f"{label}: {what}. Export or save it as PNG or JPEG, or take a screenshot of it.")
    if data.startswith(_IMAGE_SIGNATURES):  # an image's header, then nothing Pillow can parse
        return ImageError(f"{label}: the image file is damaged or truncated. Save it again and retry.")
    return ImageError(f"{label}: this is not an image format we can read. Send a {formats_text()}.")


def _draft(img: Image.Image) -> None:
    """Have a JPEG decode at 1/2, 1/4 or 1/8 scale (DCT scaling) when it is still at least the
    working size: a 12-megapixel phone photo then decodes in a few milliseconds, not a hundred,
    and :func:`ink_map` would reduce it to ``WORK_SIDE`` anyway. Call before ``load()``."""
    w, h = img.size
    if max(w, h) < 2 * WORK_SIDE:
        return
    f = WORK_SIDE / max(w, h)
    # Pillow picks the largest reduction that keeps both sides at least the requested ones; a
    # narrow strip keeps its short side too (at least 64 px, or what it had).
    img.draft(None, (max(int(w * f), min(w, 64)), max(int(h * f), min(h, 64))))


def _to_float(img: Image.Image) -> tuple[np.ndarray, np.ndarray | None]:
    """Grey ``(H, W)`` in [0, 1] and alpha ``(H, W)`` in [0, 1] (or None), whatever the mode."""
    alpha = None
    mode = img.mode
    if mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
        mode = img.mode
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        alpha = np.asarray(img.getchannel("A"), dtype=np.float32) / 255.0
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(img, dtype=np.float32)
        finite = np.isfinite(arr)
        if not finite.all():  # a float picture's dead pixels (NaN, inf) are left out of its range, then dark
            arr = np.where(finite, arr, np.float32(arr[finite].min() if finite.any() else 0.0))
        lo, hi = float(arr.min()), float(arr.max())
        if mode.startswith("I;16") and hi <= 255:  # 8-bit values in a 16-bit file
            lo, hi = 0.0, 255.0
        # Otherwise the picture's own range: 10-, 12- and 14-bit sensors and scanners fill only part
        # of a 16-bit file, which on a 0-65535 scale would read as a blank page.
        grey = (arr - lo) / (hi - lo) if hi > lo else np.zeros_like(arr)
    else:
        grey = np.asarray(img.convert("L"), dtype=np.float32) / 255.0
    return np.clip(grey, 0, 1), alpha


def _closing(a: np.ndarray, k: int) -> np.ndarray:
    """Grey closing (max then min filter) with a k×k square, replicate padding: removes dark details thinner than k.

    The picture is padded by k // 2 before the filters, so that the max filter's spread past the
    edge is kept and the min filter takes it back: filtered in place, a speck of glare within
    k // 2 of the edge would stay as a bright streak up to it, and the paper estimate there be too
    bright (false ink). scipy's 1-D min/max filters are separable and O(1) per pixel in ``k`` (and in C).
    """
    r = k // 2
    padded = np.pad(a, r, mode="edge")
    closed = ndimage.minimum_filter(ndimage.maximum_filter(padded, k, mode="nearest"), k, mode="nearest")
    return closed[r : r + a.shape[0], r : r + a.shape[1]]


def _sketch_alpha(img: Image.Image) -> np.ndarray | None:
    """The alpha of a large RGBA/LA sketch whose strokes live in alpha, at the working size; else None.

    The same test as :func:`ink_map`'s (some transparency, the opaque pixels all of one colour),
    made on a nearest-neighbour sample of the colours: then only the alpha channel is resampled,
    not grey and alpha premultiplied, the dearest step for a large sketch.
    """
    small = img.getchannel("A")
    small.thumbnail((WORK_SIDE, WORK_SIDE), WORK_RESAMPLE)
    alpha = np.asarray(small, dtype=np.float32) / 255.0
    if alpha.min() >= 0.9:
        return None
    sample = np.asarray(img.resize(small.size, Image.Resampling.NEAREST).convert("LA"), dtype=np.float32) / 255.0
    opaque = sample[..., 1] > 0.5
    if not opaque.any() or sample[..., 0][opaque].std() >= 0.12:
        return None  # the general path decides (nothing opaque, or a coloured picture on a transparent ground)
    return alpha


def ink_map(img: Image.Image, local_paper: bool = True) -> np.ndarray:
    """Ink strength ``(H, W)`` in [0, 1] (1 = full ink), light-on-dark, for any input image.

    The image is first reduced to at most ``WORK_SIDE`` pixels on its longer side. With
    ``local_paper`` the paper's brightness is estimated around each pixel (uneven light in
    photos); without it, it is the border's median.
    """
    if max(img.size) > WORK_SIDE:
        # Reduce in grey (+ alpha): one or two channels to resample rather than three or four,
        # and a bilevel scan is averaged (its thin strokes survive) rather than decimated.
        if img.mode == "P":
            img = img.convert("RGBA" if "transparency" in img.info else "RGB")
        if img.mode in ("RGBA", "LA") and (sketch := _sketch_alpha(img)) is not None:
            return sketch
        if img.mode in ("1", "RGB", "CMYK", "YCbCr"):
            img = img.convert("L")
        elif img.mode == "RGBA":
            img = img.convert("LA")
        elif img.mode in ("L", "LA"):
            img = img.copy()  # thumbnail() works in place
        else:
            grey, alpha = _to_float(img)
            img = Image.fromarray((grey * 255).astype(np.uint8))
            if alpha is not None:
                img.putalpha(Image.fromarray((alpha * 255).astype(np.uint8)))
        img.thumbnail((WORK_SIDE, WORK_SIDE), WORK_RESAMPLE)
    grey, alpha = _to_float(img)
    if alpha is not None and alpha.min() < 0.9:
        opaque = alpha > 0.5
        if not opaque.any():
            return np.zeros_like(grey)
        # Strokes of one colour on a transparent ground (a sketch, a cut-out digit): the ink
        # is the alpha itself. Otherwise lay the picture on paper that contrasts with it.
        if grey[opaque].std() < 0.12:
            return alpha.astype(np.float32)
        paper = 1.0 if grey[opaque].mean() < 0.5 else 0.0
        grey = grey * alpha + paper * (1 - alpha)
    h, w = grey.shape
    border = np.concatenate([grey[: max(1, h // 20)].ravel(), grey[-max(1, h // 20) :].ravel(),
                             grey[:, : max(1, w // 20)].ravel(), grey[:, -max(1, w // 20) :].ravel()])
    # Dark ink when the paper (the border) lies nearer the picture's bright end than its dark one: an
    # underexposed photo's paper can be darker than mid-grey and is still paper. The border's upper
    # quartile stands for dark ink's paper and its lower one for light ink's ground, so a shadow over
    # up to three quarters of the border does not turn the page into ink; and the extremes are those
    # of the 2×2 block means, so that a speck of glare or dust does not decide. Light ink must win
    # by half as much again: in a near tie (a page lit in the middle, its edges at half the light)
    # dark ink on paper is what people photograph.
    smooth = _block_mean2(grey) if min(h, w) >= 2 else grey
    lo, hi = float(smooth.min()), float(smooth.max())
    n = len(border)
    quartiles = np.partition(border, (n // 4, n // 2, 3 * n // 4))  # one partial sort (np.percentile: ~5× the time)
    q25, q50, q75 = float(quartiles[n // 4]), float(quartiles[n // 2]), float(quartiles[3 * n // 4])
    dark_ink = q75 - lo >= (hi - q25) / 1.5
    page = None
    if not dark_ink and local_paper and (page := _page_box(smooth, q50, hi, 2 if smooth is not grey else 1)) is not None:
        dark_ink = True  # a light page on a dark desk: the border is the desk, not the paper
    light = grey if dark_ink else 1.0 - grey  # paper light, ink dark
    if not local_paper:
        return np.clip((q50 if dark_ink else 1.0 - q50) - light, 0, 1).astype(np.float32)
    k = _paper_window(h, w)
    if k >= 31:
        # The paper is smooth at this scale: close a 2×2 block-max reduction (a quarter of the
        # work; blocks keep the brightest paper, as the max filter would), then back to full size.
        # Not bit-identical to the full-size closing: about 0.01 apart in the model's input.
        # Smoothed there too (a 3×3 mean of blocks spans what a 5×5 one does at full size).
        paper = _smooth_paper(_closing(_block_max(light, 2), (k // 2) | 1), 3)
        paper = _upsample2_low(paper)[:h, :w]
    else:
        paper = _smooth_paper(_closing(light, k), 5)  # local paper brightness: strokes thinner than k are filled in
    # Ink as the share of the paper's light it takes away, not as a difference: light multiplies,
    # so a stroke in a shadow is as dark a mark as one in the sun. The floor keeps noise in a black
    # corner (a desk, a vignette) from being scaled up into ink.
    ink = np.maximum(paper - light, 0, dtype=np.float32) / np.maximum(paper, np.float32(0.25))
    # Strokes wider than the window read as paper in their middle: where over 15% of what is as dark
    # as ink (the darkest quarter of the picture's range) came out with under 30% of the ink it
    # would have on plain paper, the strokes are that bold (a marker, a digit cut out to its box):
    # the window then takes the whole picture.
    paper_level, ink_level = (q75, lo) if dark_ink else (1.0 - q25, 1.0 - hi)
    dark = light < np.float32(ink_level + 0.25 * (paper_level - ink_level))
    full = (paper_level - ink_level) / max(paper_level, 0.25)  # the ink such a pixel would have on plain paper
    n_dark = int(np.count_nonzero(dark))
    if n_dark and np.count_nonzero(dark & (ink < np.float32(0.3 * full))) > 0.15 * n_dark:
        paper = _smooth_paper(_closing(light, max(h, w) | 1), 5)
        ink = np.maximum(paper - light, 0, dtype=np.float32) / np.maximum(paper, np.float32(0.25))
    if page is not None:  # only what is written on the page (its edges and the desk are not ink)
        kept = np.zeros_like(ink)
        kept[page] = ink[page]
        ink = kept
    return ink


def _paper_window(h: int, w: int) -> int:
    """The side (odd) of the closing that estimates the paper of an ``(h, w)`` picture: strokes
    thinner than it read as ink. A quarter of the longer side: a digit cropped to its own box
    (its strokes up to a third of its width) is read whole, as is one on a wider page."""
    return max(5, (max(h, w) // 4) | 1)


def _upsample2_low(a: np.ndarray) -> np.ndarray:
    """``(H, W)`` → ``(2H, 2W)``: each pixel takes the lower of its block's value and that of the
    neighbouring block on its side. Where a hard shadow's edge cuts a block, the block holds the
    lit paper's value; repeating it would give the shaded half of the block lit paper, a line of
    false ink along the edge."""
    tall = np.empty((2 * a.shape[0], a.shape[1]), a.dtype)
    np.minimum(a, np.concatenate([a[:1], a[:-1]]), out=tall[0::2])  # a block's upper half: the block above
    np.minimum(a, np.concatenate([a[1:], a[-1:]]), out=tall[1::2])  # its lower half: the block below
    out = np.empty((tall.shape[0], 2 * a.shape[1]), a.dtype)
    np.minimum(tall, np.concatenate([tall[:, :1], tall[:, :-1]], axis=1), out=out[:, 0::2])
    np.minimum(tall, np.concatenate([tall[:, 1:], tall[:, -1:]], axis=1), out=out[:, 1::2])
    return out


def _smooth_paper(paper: np.ndarray, k: int) -> np.ndarray:
    """The closing's k×k mean, but never above the closing itself: across a hard shadow's edge the
    mean would lift the dark side's paper and draw a line of false ink along it."""
    return np.minimum(_box_mean(paper, k, "edge"), paper)


def _page_box(grey: np.ndarray, ground: float, bright: float, scale: int = 1) -> tuple[slice, slice] | None:
    """Where a light page with writing on it lies inside a darker surround (a note photographed on
    a desk), as the page's bounding box less a margin, in pixels of a picture ``scale`` times
    larger than ``grey``; None when there is no such page.

    ``grey`` is ``(H, W)`` in [0, 1] (the 2×2 block means: a quarter of the pixels to label, and
    less noise), ``ground`` the surround's level, ``bright`` the picture's.
    The page is the largest region lighter than halfway between them; it must fill at least three
    quarters of its box (a page, not a light digit's strokes), touch at most one side of the picture,
    cover at least 4% of it, and hold dark marks (holes in the region).
    """
    h, w = grey.shape
    labels, count = ndimage.label(grey > (ground + bright) / 2)
    if count == 0:
        return None
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    largest = int(sizes.argmax())
    region = labels == largest
    rows, cols = np.flatnonzero(region.any(axis=1)), np.flatnonzero(region.any(axis=0))
    top, bottom, left, right = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    box = (bottom - top) * (right - left)
    sides = int(top == 0) + int(bottom == h) + int(left == 0) + int(right == w)
    if box < 0.04 * h * w or sizes[largest] < 0.75 * box or sides > 1:
        return None
    inside = region[top:bottom, left:right]
    if (ndimage.binary_fill_holes(inside) & ~inside).sum() < 0.002 * box:
        return None  # a blank card: nothing written on it
    dy, dx = max(1, (bottom - top) // 30), max(1, (right - left) // 30)  # the page's edge and its shadow
    return slice(scale * (top + dy), scale * (bottom - dy)), slice(scale * (left + dx), scale * (right - dx))


def _block_max(a: np.ndarray, step: int) -> np.ndarray:
    """Maximum over ``step``×``step`` blocks (the last ones partial) of a non-negative array."""
    h, w = a.shape
    padded = np.zeros((-(-h // step) * step, -(-w // step) * step), a.dtype)  # 0 never wins a max of values >= 0
    padded[:h, :w] = a
    # Pairwise maxima of strided views: numpy's reduce over short inner axes is many times slower.
    rows = functools.reduce(np.maximum, (padded[i::step] for i in range(step)))
    return functools.reduce(np.maximum, (rows[:, j::step] for j in range(step)))


def _block_mean2(a: np.ndarray) -> np.ndarray:
    """Means of the whole 2×2 blocks of ``a`` (an odd last row or column left out): ``(H // 2, W // 2)``."""
    h, w = a.shape[0] // 2 * 2, a.shape[1] // 2 * 2
    return (a[0:h:2, 0:w:2] + a[1:h:2, 0:w:2] + a[0:h:2, 1:w:2] + a[1:h:2, 1:w:2]) * np.float32(0.25)


def _box_mean(a: np.ndarray, k: int, mode: str) -> np.ndarray:
    """Mean over a k×k window (k odd), padding ``"edge"`` (replicate) or ``"constant"`` (zeros).

    Sums of shifted views: for the small windows used here, faster than ``ndimage.uniform_filter``.
    """
    r = k // 2
    p = np.pad(a, r, mode=mode)
    h, w = a.shape
    rows = functools.reduce(np.add, (p[i : i + h] for i in range(k)))
    return functools.reduce(np.add, (rows[:, j : j + w] for j in range(k))) / np.float32(k * k)


def _grow_blocks(blocks: np.ndarray, step: int, shape: tuple[int, int]) -> np.ndarray:
    """A mask of ``step``×``step`` blocks scaled up to ``shape`` and grown by ``step`` px (a square).

    The same as growing the scaled-up mask, but done on the reduced grid: a pixel is within
    ``step`` px of a block exactly when its own block is that block or one of its 8 neighbours.
    """
    grown = ndimage.maximum_filter(blocks.view(np.uint8), 3, mode="constant").view(bool)
    h, w = shape
    return np.repeat(np.repeat(grown, step, axis=0), step, axis=1)[:h, :w] if step > 1 else grown


_EIGHT = np.ones((3, 3), dtype=bool)  # 8-connectivity for ndimage.label
GAP = 0.15  # count_side_by_side: the least gap between two digits, in digit heights
WIDE = 1.0  # count_side_by_side: marks closer than GAP, together wider than this (in heights), are two digits
HEIGHT = 0.5  # count_side_by_side: the least height of a digit, in the heaviest digit's heights
MASS = 0.15  # count_side_by_side: the least ink of a digit, in the heaviest digit's ink
LEVEL = 0.5  # _digit_blobs: a mark level with the digit shares this much of the shorter one's height with it
ROW_WIDE = 3.0  # _digit_blobs: the widest mark level with the digit that counts (digits that touch), in its sizes
HOLLOW = 1.6  # _inside_a_touching_frame: what lies inside a frame, filled, is at most this times its ink
LINE_RATIO = 3.0  # stacked_lines: a line of writing is at least this many times as wide as tall
LINES_HOLD = 0.75  # prepare: two lines or more holding this share of the ink are writing, not a digit
TOUCH_WIDE = 1.1  # touching_digits: a mark at least this many times as wide as tall may be two digits
TOUCH_NECK = 1.5  # touching_digits: the most ink across the neck between them, in stroke widths


def _digit_blobs(labels: np.ndarray, mass: np.ndarray, aspect: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Which connected blobs of ink (``labels`` from ``ndimage.label``, ``mass`` their ink, index 0
    the ground) make the digit, and which stand in a row with it (each near the digit or near
    another such blob, or of a digit's height and weight and level with it however far: a number's
    other digits): two ``(count + 1,)`` bool arrays.

    The blobs that carry the mass (4% of it or more), less the other marks a photo of a page holds:
    a line across most of the picture and 1.5 times as long as the rest (a notebook's margin, a pen
    lying on the page, a line of print), and blobs farther from the heaviest one than its own size
    (``aspect`` times that across a canvas ``aspect`` times wider than high, where two digits stand
    side by side): a scribble, a note. For one digit, a thin mark that comes in from the picture's
    edge (a pen half out of the frame; a thicker one, as long as the digit or apart from it by a
    quarter of its size, where it mostly lies beyond the other marks' span) is a line too, unless
    the digit itself touches the edge. A
    digit's strokes drawn apart stay. A frame drawn around the digit (a circle, a box on a form:
    :func:`_frames`) is left out too. Where nothing beside a line has a fifth of its ink or 15% of
    its length, the lines stay too (a tall "1" and a speck of dust).
    """
    heavy = mass >= 0.04 * mass.sum()
    ids = np.flatnonzero(heavy)
    if len(ids) <= 1:
        return heavy, heavy  # one blob: nothing to choose (most pictures)
    h, w = labels.shape
    boxes = ndimage.find_objects(labels)
    box = np.array([(boxes[i - 1][0].start, boxes[i - 1][0].stop, boxes[i - 1][1].start, boxes[i - 1][1].stop) for i in ids])
    tall, wide = box[:, 1] - box[:, 0], box[:, 3] - box[:, 2]
    long_side = np.maximum(tall, wide)
    # long and thin, across most of the picture, and 1.5 times as long as any other mark (not the "1" of
    # a tightly cropped "17")
    thin = long_side >= 6 * np.maximum(np.minimum(tall, wide), 1)
    line = (np.maximum(tall / h, wide / w) >= 0.5) & thin
    line &= long_side >= 1.5 * long_side[~line].max(initial=0)
    line |= _frames(labels, ids, box)
    if aspect <= 1:  # one digit: a thin mark coming in from the picture's edge (a pen half out of the frame)
        edge = (box[:, 0] == 0) | (box[:, 1] == h) | (box[:, 2] == 0) | (box[:, 3] == w)
        # A thick pen (4 times as long as wide) too, where most of its length lies beyond the span of
        # the other marks: a piece of a digit drawn apart (a "5"'s bar) lies along the rest of it.
        beyond = np.zeros(len(ids), bool)
        for i in np.flatnonzero(edge & ~thin & (long_side >= 4 * np.maximum(np.minimum(tall, wide), 1))):
            axis = 0 if tall[i] >= wide[i] else 2  # the mark's long axis: rows, else columns
            rest = np.arange(len(ids)) != i
            # shorter than the digit and close to it: may be a piece of it (a "5"'s bar drawn apart);
            # a pen lies apart from the digit by more than a quarter of its size
            apart = max(0, box[rest, 0].min() - box[i, 1], box[i, 0] - box[rest, 1].max(),
                        box[rest, 2].min() - box[i, 3], box[i, 2] - box[rest, 3].max())
            if long_side[i] < long_side[rest].max() and apart <= 0.25 * long_side[rest].max():
                continue
            lo, hi = box[rest, axis].min(), box[rest, axis + 1].max()
            beyond[i] = min(box[i, axis + 1], hi) - max(box[i, axis], lo) < 0.5 * long_side[i]
        stray = (thin | beyond) & edge
        line |= stray & ~(edge & ~stray).any()
    m = mass[ids]
    if line.any() and m[~line].max(initial=0) < 0.2 * m[line].max() and long_side[~line].max(initial=0) < 0.15 * long_side[line].max():
        return heavy, heavy  # nothing of a digit's weight or size beside the line: the line may be a tall "1"
    main = int(np.argmax(np.where(line, -1.0, m)))
    top, bottom, left, right = box[main]
    size = long_side[main]
    gap_y = np.maximum.reduce([box[:, 0] - bottom, top - box[:, 1], np.zeros(len(ids), int)])
    gap_x = np.maximum.reduce([box[:, 2] - right, left - box[:, 3], np.zeros(len(ids), int)])
    near = (gap_y <= size * max(1.0, 1 / aspect)) & (gap_x <= size * max(1.0, aspect))
    # An underline (a 6 or a 9 underlined to show which way is up): thin, level, wholly below the
    # digit and along at least half its width.
    along = np.minimum(box[:, 3], right) - np.maximum(box[:, 2], left)
    under = thin & (wide > tall) & (box[:, 0] >= bottom) & (along >= 0.5 * (right - left))
    keep = np.zeros_like(heavy)
    keep[ids[~line & near & ~under]] = True
    # The marks in a row with the digit: near it, or near one that is (a number's digits, each near the next).
    reach_y, reach_x = size * max(1.0, 1 / aspect), size * max(1.0, aspect)
    inline, todo = near & ~line & ~under, ~line & ~under & ~near
    # A number written wider apart than its digits' size: a mark of a digit's height and weight, level
    # with the digit, stands in its row however far along it (a scribble or a note lies above or below
    # the digit, or is smaller). It is counted, not read: the crop keeps the digit only.
    digit_tall = bottom - top
    level = np.minimum(box[:, 1], bottom) - np.maximum(box[:, 0], top) >= LEVEL * np.minimum(tall, digit_tall)
    digit_sized = (tall >= HEIGHT * digit_tall) & (tall * HEIGHT <= digit_tall) & (wide <= ROW_WIDE * size)
    inline |= todo & level & digit_sized & (m >= MASS * m[main])
    todo &= ~inline
    grown = True
    while grown and todo.any():
        members = box[inline]
        gy = np.maximum(np.maximum(box[:, None, 0] - members[None, :, 1], members[None, :, 0] - box[:, None, 1]), 0)
        gx = np.maximum(np.maximum(box[:, None, 2] - members[None, :, 3], members[None, :, 2] - box[:, None, 3]), 0)
        joins = todo & ((gy <= reach_y) & (gx <= reach_x)).any(axis=1)
        inline |= joins
        todo &= ~joins
        grown = bool(joins.any())
    row_keep = np.zeros_like(heavy)
    row_keep[ids[inline]] = True
    return keep, row_keep


def count_side_by_side(ink: np.ndarray, gap: float = GAP, wide: float = WIDE, height: float = HEIGHT, mass: float = MASS) -> int:
    """How many digit-sized groups of ink stand side by side in ``ink`` (``(H, W)`` float, the kept ink).

    Groups are runs of columns holding ink, apart by at least ``gap`` times the heaviest group's
    height, or by any gap where together they would be over ``wide`` times as wide as it is tall
    (two digits written close). A group counts when it is at least ``height`` times as tall as the
    heaviest group and holds ``mass`` times its ink: a full stop, a dash or a faint ruled line
    beside a digit does not; a "1" does. Blobs of one digit overlap in columns (a "5"'s bar over
    its body) or lie close (a "4"'s stem drawn apart), and stay one group; digits that touch are
    one group too (not told apart).
    """
    col_ink = ink.sum(axis=0)
    edges = np.flatnonzero(np.diff(np.concatenate(([0], (col_ink > 0).view(np.int8), [0]))))
    starts, stops = edges[::2], edges[1::2]
    if len(starts) <= 1:
        return len(starts)
    rows = [np.flatnonzero(ink[:, a:b].any(axis=1)) for a, b in zip(starts, stops)]
    groups: list[list[float]] = []  # [top, bottom, left, right, ink] of each group
    for a, b, r in zip(starts, stops, rows):
        groups.append([r[0], r[-1] + 1, a, b, float(col_ink[a:b].sum())])
    heaviest = max(groups, key=lambda g: g[4])
    tall = heaviest[1] - heaviest[0]
    joined = [groups[0]]  # pieces of one digit: closer than the gap, and no wider than a digit together
    for g in groups[1:]:
        last = joined[-1]
        if g[2] - last[3] < gap * tall and g[3] - last[2] <= wide * tall:
            joined[-1] = [min(last[0], g[0]), max(last[1], g[1]), last[2], g[3], last[4] + g[4]]
        else:
            joined.append(g)
    main = max(joined, key=lambda g: g[4])
    return sum(1 for g in joined if g[1] - g[0] >= height * (main[1] - main[0]) and g[4] >= mass * main[4])


def stacked_lines(ink: np.ndarray, ratio: float = LINE_RATIO) -> tuple[int, float]:
    """Lines of writing or print one above the other in ``ink`` (``(H, W)``, the kept ink): how
    many, and the share of the ink they hold.

    A line is a run of rows holding ink, apart from the next by an empty row, at least ``ratio``
    times as wide as it is tall. A digit's pieces drawn apart (a "5"'s bar over its body) hold
    at most one, beside the digit's tall body; a page of print or writing, cut to the block the
    digit would be, is two or more and nothing else.
    """
    row_ink = ink.sum(axis=1)
    edges = np.flatnonzero(np.diff(np.concatenate(([0], (row_ink > 0).view(np.int8), [0]))))
    lines, held = 0, 0.0
    for a, b in zip(edges[::2], edges[1::2]):
        cols = np.flatnonzero(ink[a:b].any(axis=0))
        if cols[-1] + 1 - cols[0] >= ratio * (b - a):
            lines += 1
            held += float(row_ink[a:b].sum())
    return lines, held / max(float(row_ink.sum()), 1e-12)


def touching_digits(mask: np.ndarray, wide: float = TOUCH_WIDE, neck: float = TOUCH_NECK) -> bool:
    """Whether ``mask`` (``(H, W)`` bool, the kept strong ink) looks like two digits that touch.

    Digits written close enough to touch are one mark, which :func:`count_side_by_side` cannot
    split. Such a mark is wider than most single digits (``wide`` times its height) and has a
    neck: a column in its middle three fifths holding at most ``neck`` stroke widths of ink, with
    a digit-like part on each side (60% of the mark's height, a fifth of its ink, and a fifth of
    its height wide), its strokes under a quarter of its height. A guess, not a count: an open "0" or "4" written wide looks the same, so a
    caller notes it rather than refusing (``bench/README.md``, sixteenth pass: 0.7% of single
    digits, half of touching pairs).
    """
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if len(rows) == 0:
        return False
    m = mask[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    h, w = m.shape
    if w < wide * h or w < 5:
        return False
    area = int(m.sum())
    edge = area - int(ndimage.minimum_filter(m.view(np.uint8), 3, mode="constant").sum())  # boundary pixels: twice the length
    stroke = 2 * area / max(edge, 1)
    if 4 * stroke > h:  # a bar, a dash, or strokes too bold for a neck between two digits to show
        return False
    col = m.sum(axis=0)
    has = col > 0
    top = np.where(has, m.argmax(axis=0), h)
    bottom = np.where(has, h - m[::-1].argmax(axis=0), 0)
    x = np.arange(max(1, int(0.2 * w)), min(w - 1, int(0.8 * w) + 1))  # the cut column; sides [0, x) and (x, w)
    if len(x) == 0:
        return False
    left_h = np.maximum.accumulate(bottom)[x - 1] - np.minimum.accumulate(top)[x - 1]
    right_h = np.maximum.accumulate(bottom[::-1])[::-1][x + 1] - np.minimum.accumulate(top[::-1])[::-1][x + 1]
    before = np.cumsum(col)
    left_ink, right_ink = before[x - 1], area - before[x]
    sides = ((np.minimum(left_h, right_h) >= 0.6 * h) & (np.minimum(left_ink, right_ink) >= 0.2 * area)
             & (np.minimum(x, w - 1 - x) >= 0.2 * h))
    return bool((sides & (col[x] <= neck * stroke)).any())


def _inside_a_touching_frame(ink: np.ndarray) -> np.ndarray:
    """``ink`` (``(H, W)``, the kept ink) less a frame drawn around the digit that touches it (a
    circle through a "7"'s top): then frame and digit are one blob, and :func:`_frames` cannot
    leave the frame out. Where the ink's outline, filled, holds well inside it (farther than 1.5
    strokes from its edge, a round region) marks at least 30% of its size about its middle, and
    those marks are not a loop themselves (the inner outline of a hollow font's digit), only they
    are kept; else
    ``ink`` as it is. A "0", "6", "8" or "9" holds nothing that far inside its loops. (A hollow "0"
    whose inner outline touches the outer one is cut to the inner one, an open ring: a smaller 0.)
    """
    mask = ink > 0.3
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if len(rows) == 0:
        return ink
    box = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))  # the work is done on the ink's box
    mask = mask[box]
    filled = _fill_holes(mask)
    area = int(mask.sum())
    if filled.sum() < 2 * area:  # a frame encloses mostly paper
        return ink
    edge = area - int(ndimage.minimum_filter(mask.view(np.uint8), 3, mode="constant").sum())  # boundary pixels: twice the length
    d = int(np.ceil(1.5 * 2 * area / max(edge, 1))) + 1  # 1.5 strokes, a stroke being the ink's area over its length
    core = ndimage.minimum_filter(filled.view(np.uint8), size=2 * d + 1, mode="constant").view(bool)
    inner = mask & core
    if not inner.any():
        return ink
    cy, cx = np.flatnonzero(core.any(axis=1)), np.flatnonzero(core.any(axis=0))
    if core.sum() < 0.5 * (cy[-1] - cy[0] + 1) * (cx[-1] - cx[0] + 1):
        return ink  # inside a circle or a box is one round region; inside a hollow font's "3", a winding one
    fh, fw = mask.shape
    iy, ix = np.nonzero(inner)
    ih, iw = iy.max() - iy.min() + 1, ix.max() - ix.min() + 1
    off_y = abs((iy.max() + iy.min() + 1) / 2 - fh / 2) / fh
    off_x = abs((ix.max() + ix.min() + 1) / 2 - fw / 2) / fw
    if max(ih, iw) < 0.3 * max(fh, fw) or max(off_y, off_x) > 0.15:
        return ink
    if _fill_holes(inner).sum() > HOLLOW * inner.sum():
        return ink  # what lies inside is a loop itself: the inner outline of a hollow (outline) font's digit
    out = np.zeros_like(ink)
    out[box] = np.where(core, ink[box], np.float32(0))
    return out


def _fill_holes(mask: np.ndarray) -> np.ndarray:
    """``mask`` with the ground it encloses filled: ``ndimage.binary_fill_holes``, by one labelling
    of the ground (4-connected, the complement of 8-connected ink) rather than repeated dilations."""
    ground, _ = ndimage.label(~mask)
    open_ground = np.unique(np.concatenate((ground[0], ground[-1], ground[:, 0], ground[:, -1])))
    hole = np.ones(int(ground.max()) + 1, bool)
    hole[open_ground] = False
    hole[0] = False
    return mask | hole[ground]


def _frames(labels: np.ndarray, ids: np.ndarray, box: np.ndarray) -> np.ndarray:
    """Which of the blobs ``ids`` (boxes ``box``: top, bottom, left, right) are a frame drawn around
    the digit (a circle, a box on a form): open (ink on under 35% of its box) and holding, well
    inside it and about its middle, marks at least 30% of its size. A "0" holds nothing, and the
    inner outline of a hollow font's 6, 8 or 9 sits off the middle. A digit touching its frame is
    one blob with it: :func:`_inside_a_touching_frame`."""
    tall, wide = box[:, 1] - box[:, 0], box[:, 3] - box[:, 2]
    fill = np.bincount(labels.ravel(), minlength=int(ids.max()) + 1)[ids] / np.maximum(tall * wide, 1)
    # inside[i, j]: blob i lies within blob j's box, clear of its edges
    inside = ((box[:, None, 0] > box[None, :, 0]) & (box[:, None, 1] < box[None, :, 1])
              & (box[:, None, 2] > box[None, :, 2]) & (box[:, None, 3] < box[None, :, 3]))
    frame = np.zeros(len(ids), bool)
    for j in np.flatnonzero((fill < 0.35) & inside.any(axis=0)):
        held = box[inside[:, j]]
        top, bottom, left, right = held[:, 0].min(), held[:, 1].max(), held[:, 2].min(), held[:, 3].max()
        side = max(tall[j], wide[j])
        off = max(abs(top + bottom - box[j, 0] - box[j, 1]), abs(left + right - box[j, 2] - box[j, 3])) / 2
        frame[j] = max(bottom - top, right - left) >= 0.3 * side and off <= 0.15 * side
    return frame


def _aspect(mask: np.ndarray) -> float:
    """Width over height of the box round ``mask``'s set pixels (0 when there are none)."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return (cols[-1] - cols[0] + 1) / (rows[-1] - rows[0] + 1) if len(rows) else 0.0


@dataclass
class Prepared:
    """The model's input and where it came from in the picture (for display)."""

    tensor: torch.Tensor  # (1, 1, H, W)
    box: tuple[float, float, float, float]  # ink box: left, top, right, bottom (px of the working-size picture)
    source_size: tuple[int, int]  # (width, height) of the working-size picture (at most WORK_SIDE)
    touching: bool = False  # the mark may be two digits that touch (touching_digits): read, with a note


def prepare(
    image: Image.Image | str | os.PathLike | bytes, input_size: tuple[int, int], digit_size: float, name: str | None = None
) -> Prepared:
    """:func:`preprocess` for a canvas ``input_size`` = (H, W) and an ink box ``digit_size`` px long.

    Raises:
        ImageError: no digit found, or the image cannot be read.
    """
    img = open_image(image, name)
    label = name or (_name(image) if not isinstance(image, bytes) else "the image")  # a PIL image: its file's name
    if (img.height, img.width) == tuple(input_size) and img.mode in ("L", "I;16", "I", "F", "1"):
        # Already a model-space canvas (the examples, a test image): keep its layout, so the
        # transformer, not the pre-processing, has to find the digit.
        return _as_canvas(ink_map(img, local_paper=False), label, img.size)
    ink = ink_map(img)
    h, w = ink.shape
    # The peak of the 3×3 mean (zeros beyond the edge), so that one hot pixel does not set the scale.
    peak = float(_box_mean(ink, 3, "constant").max()) if min(h, w) >= 3 else float(ink.max())
    if peak < 0.1:
        raise ImageError(f"{label}: no digit found: the image is blank or has too little contrast. Draw or photograph a digit.")
    # Scale to the peak, then drop paper grain and JPEG ringing (float32 scalars: no float64 copy).
    ink = np.clip((ink / np.float32(max(peak, 1e-6)) - np.float32(0.15)) / np.float32(0.85), 0, 1)
    mask = ink > 0.3
    # Components on a block-max reduced mask, not a strided one: a stride skips thin strokes
    # and small marks; the reduction also joins marks less than a block apart into one blob.
    step = max(1, int(np.ceil(max(h, w) / 96)))
    small = _block_max(mask, step) if step > 1 else mask
    # Ink over most of the picture is noise or texture when its edges are everywhere (mask changes
    # between a quarter or more of neighbouring pixels; a digit's strokes: at most an eighth, also
    # a bold digit cropped to its own box, which covers most of its picture).
    if small.mean() > 0.5 and (mask[:, 1:] != mask[:, :-1]).mean() + (mask[1:] != mask[:-1]).mean() > 0.25:
        raise ImageError(f"{label}: no digit found: ink covers most of the picture (noise or texture?). Use a digit on a plain background.")
    labels, count = ndimage.label(small, structure=_EIGHT)
    if count == 0:
        raise ImageError(f"{label}: no digit found: the image is blank. Draw or photograph a digit.")
    small_ink = _block_max(ink, step) if step > 1 else ink
    mass = np.bincount(labels.ravel(), weights=small_ink.ravel(), minlength=count + 1)
    mass[0] = 0
    aspect = input_size[1] / input_size[0]
    keep, in_row = _digit_blobs(labels, mass, aspect)
    keep_small = keep[labels]
    # A number or a word (digit-sized marks apart from each other) read as one digit is a guess at a mixture.
    # Counted at full resolution: the block reduction joins letters and words set close (print) into one mark.
    expected = max(1, round(aspect))  # digits side by side the model reads: 1, or 2 on a pair model's wide canvas
    # (Every strong pixel lies in a block of its own blob: the blocks scaled up, not grown, are enough.)
    if in_row[1:].all():  # every mark stands in the row (one blob: most pictures)
        row_mask = mask
    elif step == 1:
        row_mask = mask & in_row[labels]
    else:
        row_mask = mask & np.repeat(np.repeat(in_row[labels], step, axis=0), step, axis=1)[:h, :w]
    found = count_side_by_side(ink * row_mask)
    if found > expected:
        if expected == 1:
            raise ImageError(f"{label}: this picture holds several characters side by side (a number or a word?); "
                             "the model reads one digit at a time. Crop it to a single digit, or draw one.")
        raise ImageError(f"{label}: this picture holds more than {expected} characters side by side; "
                         f"the model reads {expected} digits at a time. Crop it to {expected} digits.")
    if found == 1 < expected and _aspect(mask & row_mask) < TOUCH_WIDE * (expected - 1):
        # One mark too narrow to be digits that touch (touching_digits' rule): one digit, which a pair model reads
        # as two with confidence (a 7 read "11", 95%), or digits drawn into each other, which it misreads.
        raise ImageError(f"{label}: this picture seems to hold one digit (or digits that run into each other); the "
                         f"model reads {expected} digits at a time, written apart. Write {expected} digits with a gap "
                         "between them, or choose a one-digit model.")
    ink = np.where(_grow_blocks(keep_small, step, (h, w)), ink, np.float32(0))  # a kept blob's faint edge spills over
    lines, held = stacked_lines(ink * (ink > 0.3))
    if lines >= 2 and held >= LINES_HOLD:
        raise ImageError(f"{label}: this picture holds lines of writing or print, not one digit. "
                         "Crop it to a single digit, or draw one.")
    ink = _inside_a_touching_frame(ink)
    strong = ink > 0.3
    rows, cols = np.flatnonzero(strong.any(axis=1)), np.flatnonzero(strong.any(axis=0))
    if len(rows) == 0:
        raise ImageError(f"{label}: no digit found: the image is blank. Draw or photograph a digit.")
    top, bottom, left, right = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    extent = max(bottom - top, right - left)
    if extent < 4:
        raise ImageError(f"{label}: the mark is too small or thin to be a digit ({extent} px). Write the digit larger.")
    total = ink.sum()
    cy = float((ink.sum(axis=1) * np.arange(h)).sum() / total)
    cx = float((ink.sum(axis=0) * np.arange(w)).sum() / total)
    # Source window: the canvas at a scale where the ink box is digit_size long.
    ch, cw = input_size
    scale = digit_size / extent  # canvas px per source px
    win_h, win_w = ch / scale, cw / scale
    y0, x0 = cy + 0.5 - win_h / 2, cx + 0.5 - win_w / 2
    # Cut the window at whole pixels (zeros outside the picture), then resample it exactly.
    iy0, ix0 = int(np.floor(y0)), int(np.floor(x0))
    fy, fx = y0 - iy0, x0 - ix0
    ph, pw = int(np.ceil(win_h + fy)) + 1, int(np.ceil(win_w + fx)) + 1
    window = np.zeros((ph, pw), np.float32)
    sy, sx = max(iy0, 0), max(ix0, 0)  # the part of the window inside the picture
    ey, ex = min(iy0 + ph, h), min(ix0 + pw, w)
    if ey > sy and ex > sx:
        window[sy - iy0 : ey - iy0, sx - ix0 : ex - ix0] = ink[sy:ey, sx:ex]
    crop = torch.from_numpy(window).view(1, 1, ph, pw)
    # Anti-aliased resize of the whole crop, then a sub-pixel shift by grid_sample.
    out_h, out_w = max(1, round(ph * scale)), max(1, round(pw * scale))
    resized = F.interpolate(crop, size=(out_h, out_w), mode="bilinear", antialias=scale < 1, align_corners=False)
    ys_ = (torch.arange(ch, dtype=torch.float32) + 0.5) / scale + fy  # source px inside crop
    xs_ = (torch.arange(cw, dtype=torch.float32) + 0.5) / scale + fx
    gy = ys_ / ph * 2 - 1
    gx = xs_ / pw * 2 - 1
    grid = torch.stack(torch.meshgrid(gy, gx, indexing="ij")[::-1], dim=-1).unsqueeze(0)
    canvas = F.grid_sample(resized, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    top_val = float(canvas.max())
    if top_val < 0.05:
        raise ImageError(f"{label}: the mark is too small or thin to be a digit. Write the digit larger.")
    canvas = (canvas / top_val).clamp(0, 1)
    touching = expected == 1 and touching_digits(strong)  # a pair model reads two digits that touch
    return Prepared(canvas.contiguous(), (float(left), float(top), float(right), float(bottom)), (w, h), touching)


def _as_canvas(ink: np.ndarray, label: str, size: tuple[int, int]) -> Prepared:
    peak = float(ink.max())
    if peak < 0.1:
        raise ImageError(f"{label}: no digit found: the image is blank or has too little contrast. Draw or photograph a digit.")
    ys, xs = np.nonzero(ink > 0.3 * peak)
    t = torch.from_numpy(np.clip(ink / peak, 0, 1)).view(1, 1, *ink.shape)
    return Prepared(t.contiguous(), (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)), size)


def preprocess(image: Image.Image | str | os.PathLike | bytes, model: object) -> torch.Tensor:
    """Turn any picture of a digit into ``model``'s input: float ``(1, 1, H, W)`` in [0, 1].

    ``image``: anything :func:`open_image` reads (a path, bytes, an open file, a PIL image, an
    array). ``model`` is an :class:`stn.STClassifier` (or anything with ``config.input_size`` and
    ``config.digit_size``), or the name of a model in the zoo.

    Raises:
        ImageError: with one sentence that names the image and the problem.
    """
    if isinstance(model, str):
        from stn.model import ModelConfig
        from stn.zoo import load_card

        cfg = ModelConfig.from_dict(load_card(model)["config"])
    elif hasattr(model, "config"):
        cfg = model.config  # type: ignore[attr-defined]
    else:
        raise TypeError(f"preprocess(image, model): model is a zoo model's name or an STClassifier, got {type(model).__name__}")
    return prepare(image, tuple(cfg.input_size), float(cfg.digit_size)).tensor
