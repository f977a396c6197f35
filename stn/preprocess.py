"""From any image a person gives to the tensor a model reads.

A model reads float ``(1, 1, H, W)`` in [0, 1], light ink on a dark ground, at its canvas size,
with the digit's ink box about ``config.digit_size`` pixels long, as in its training data.
:func:`preprocess` gets there from a photo or scan (dark ink on light paper, or light on dark),
a transparent PNG, or a sketch whose strokes live only in the alpha channel, of any size:

1. open safely (:func:`open_image`): size cap, Pillow's decompression-bomb guard, first frame
   of an animation, EXIF orientation; odd modes (16-bit, float, CMYK, palette, LA) to float grey;
2. ink map: alpha where the strokes are in alpha; else grey minus a local paper estimate
   (a morphological closing, so shading and vignetting drop out), polarity from the border;
3. keep the connected ink blobs that carry the mass, drop specks, and refuse an image with
   no digit on it (blank, uniform, transparent, noise) with a clear message;
4. crop around the ink's centre of mass so that its box is ``digit_size`` long, resize with
   anti-aliasing, and stretch the ink to full contrast.

A grey image already at the model's canvas size is taken as it is (step 2 only): it is in
model space already, and the transformer should do the finding.
"""

from __future__ import annotations

import io
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps, UnidentifiedImageError

__all__ = ["ImageError", "Prepared", "open_image", "preprocess", "prepare", "ink_map", "MAX_FILE_BYTES", "MAX_PIXELS"]

MAX_FILE_BYTES = 20 * 1024 * 1024  # uploads above this are refused before decoding
MAX_PIXELS = 40_000_000  # larger images are refused (Pillow warns at 89 M and raises at 179 M)
MIN_SIDE = 8  # smaller images cannot hold a readable digit
WORK_SIDE = 320  # images are reduced to this longer side before the ink analysis

Image.MAX_IMAGE_PIXELS = 2 * MAX_PIXELS  # keep Pillow's bomb guard on, at our own limit


# Leading bytes of PNG, JPEG, GIF, BMP, TIFF and WebP (RIFF) files.
_IMAGE_SIGNATURES = (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF87a", b"GIF89a", b"BM", b"II*\x00", b"MM\x00*", b"RIFF")


class ImageError(ValueError):
    """An image that cannot be read as a digit; the message says which file and what to do."""


def _name(source: object) -> str:
    if isinstance(source, (str, os.PathLike)):
        return Path(source).name
    return getattr(source, "filename", None) and Path(source.filename).name or "the image"  # type: ignore[union-attr]


def open_image(source: str | os.PathLike | bytes | Image.Image, name: str | None = None) -> Image.Image:
    """Open a file path, bytes or PIL image and return one upright frame, fully loaded.

    Raises:
        ImageError: unreadable, not an image, too large, too small, or a decompression bomb.
    """
    label = name or (_name(source) if not isinstance(source, bytes) else "the upload")
    if isinstance(source, Image.Image):
        img = source
    else:
        if isinstance(source, (str, os.PathLike)):
            path = Path(source)
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
                img = Image.open(io.BytesIO(data))
                if img.width * img.height > MAX_PIXELS:
                    raise ImageError(
                        f"{label}: {img.width}×{img.height} pixels is too large (limit {MAX_PIXELS // 1_000_000} megapixels). "
                        "Send a smaller image."
                    )
                img.seek(0)  # first frame of an animation
                img.load()
        except ImageError:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise ImageError(f"{label}: the image declares too many pixels to decode safely. Send a smaller image.") from None
        except UnidentifiedImageError:
            if data.startswith(_IMAGE_SIGNATURES):  # an image's header, then nothing Pillow can parse
                raise ImageError(f"{label}: the image file is damaged or truncated. Save it again and retry.") from None
            raise ImageError(f"{label}: this is not an image format we can read. Send a PNG, JPEG, WebP, GIF, BMP or TIFF.") from None
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            raise ImageError(f"{label}: the image file is damaged or truncated ({type(exc).__name__}). Save it again and retry.") from None
    if img.width < MIN_SIDE or img.height < MIN_SIDE:
        raise ImageError(f"{label}: {img.width}×{img.height} pixels is too small to hold a digit (at least {MIN_SIDE}×{MIN_SIDE}).")
    try:
        img = ImageOps.exif_transpose(img) or img
    except Exception:  # a broken EXIF block must not lose the picture
        pass
    return img


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
        lo, hi = float(arr.min()), float(arr.max())
        if mode.startswith("I;16") and hi <= 65535:
            lo, hi = 0.0, 65535.0 if hi > 255 else 255.0
        grey = (arr - lo) / (hi - lo) if hi > lo else np.zeros_like(arr)
    else:
        grey = np.asarray(img.convert("L"), dtype=np.float32) / 255.0
    return np.clip(grey, 0, 1), alpha


def _max_filter_1d(a: np.ndarray, k: int, axis: int) -> np.ndarray:
    """Running maximum over a window of odd length ``k`` along ``axis``, replicate padding.

    van Herk / Gil-Werman: blocks of ``k``, a forward and a backward cumulative maximum in each,
    and one maximum of the two per output, so the cost does not grow with ``k``.
    """
    a = np.moveaxis(a, axis, -1)
    n, pad = a.shape[-1], k // 2
    padded = np.concatenate([np.repeat(a[..., :1], pad, -1), a, np.repeat(a[..., -1:], pad, -1)], axis=-1)
    blocks = -(-padded.shape[-1] // k)
    padded = np.concatenate(
        [padded, np.full((*a.shape[:-1], blocks * k - padded.shape[-1]), -np.inf, a.dtype)], axis=-1
    ).reshape(*a.shape[:-1], blocks, k)
    fwd = np.maximum.accumulate(padded, axis=-1).reshape(*a.shape[:-1], -1)
    bwd = np.maximum.accumulate(padded[..., ::-1], axis=-1)[..., ::-1].reshape(*a.shape[:-1], -1)
    out = np.maximum(bwd[..., :n], fwd[..., k - 1 : k - 1 + n])  # window [i, i + k - 1] of padded
    return np.moveaxis(out, -1, axis)


def _closing(x: torch.Tensor, k: int) -> torch.Tensor:
    """Grey closing (max then min filter) with a k×k square: removes dark details thinner than k."""
    a = x.numpy()

    def max_filter(t: np.ndarray) -> np.ndarray:  # separable, and O(1) per pixel in k
        return _max_filter_1d(_max_filter_1d(t, k, -1), k, -2)

    return torch.from_numpy(np.ascontiguousarray(-max_filter(-max_filter(a))))


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
        img.thumbnail((WORK_SIDE, WORK_SIDE), Image.Resampling.LANCZOS)
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
    dark_ink = np.median(border) >= 0.5
    t = torch.from_numpy(grey if dark_ink else 1.0 - grey).view(1, 1, h, w)
    if not local_paper:
        return np.clip(float(np.median(border if dark_ink else 1.0 - border)) - t[0, 0].numpy(), 0, 1).astype(np.float32)
    k = max(5, (min(h, w) // 5) | 1)
    paper = _closing(t, k)  # local paper brightness: strokes thinner than k are filled in
    paper = F.avg_pool2d(F.avg_pool2d(F.pad(paper, (2, 2, 2, 2), mode="replicate"), (1, 5), 1), (5, 1), 1)  # 5×5, separable
    ink = (paper - t).clamp(min=0)[0, 0].numpy()
    return ink.astype(np.float32)


def _components(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """Label 8-connected components of a boolean mask (0 = background), by label propagation.

    Each pixel's label is the (1-based) index of a pixel of its component; every round takes the
    largest label among the neighbours, then jumps to the label of the pixel that label points
    to (pointer jumping), so a long stroke converges in a few rounds rather than one per pixel.
    """
    h, w = mask.shape
    m = torch.from_numpy(mask).view(1, 1, h, w).float()
    labels = torch.arange(1, h * w + 1, dtype=torch.float32).view(1, 1, h, w) * m
    for _ in range(h * w):
        grown = F.max_pool2d(labels, 3, 1, 1) * m
        jumped = labels.view(-1)[(grown.view(-1).long() - 1).clamp(min=0)].view_as(grown) * m
        grown = torch.maximum(grown, jumped)
        if torch.equal(grown, labels):
            break
        labels = grown
    lab = labels[0, 0].numpy().astype(np.int64)
    uniq, inv = np.unique(lab, return_inverse=True)
    return inv.reshape(h, w), len(uniq) - (1 if uniq[0] == 0 else 0)


@dataclass
class Prepared:
    """The model's input and where it came from in the picture (for display)."""

    tensor: torch.Tensor  # (1, 1, H, W)
    box: tuple[float, float, float, float]  # ink box in the source picture: left, top, right, bottom (px)
    source_size: tuple[int, int]  # (width, height) of the picture


def prepare(
    image: Image.Image | str | os.PathLike | bytes, input_size: tuple[int, int], digit_size: float, name: str | None = None
) -> Prepared:
    """:func:`preprocess` for a canvas ``input_size`` = (H, W) and an ink box ``digit_size`` px long.

    Raises:
        ImageError: no digit found, or the image cannot be read.
    """
    img = open_image(image, name)
    label = name or _name(image) if not isinstance(image, (bytes, Image.Image)) else (name or "the image")
    if (img.height, img.width) == tuple(input_size) and img.mode in ("L", "I;16", "I", "F", "1"):
        # Already a model-space canvas (the examples, a test image): keep its layout, so the
        # transformer, not the pre-processing, has to find the digit.
        return _as_canvas(ink_map(img, local_paper=False), label, img.size)
    ink = ink_map(img)
    h, w = ink.shape
    peak = float(F.avg_pool2d(torch.from_numpy(ink).view(1, 1, h, w), 3, 1, 1).max()) if min(h, w) >= 3 else float(ink.max())
    if peak < 0.1:
        raise ImageError(f"{label}: no digit found: the image is blank or has too little contrast. Draw or photograph a digit.")
    ink = np.clip(ink / max(peak, 1e-6), 0, 1)
    ink = np.clip((ink - 0.15) / 0.85, 0, 1)  # drop paper grain and JPEG ringing
    mask = ink > 0.3
    # Components on a reduced mask keep the propagation short. Reduce by block maxima, not by
    # striding: a stride skips thin strokes and small marks altogether.
    step = max(1, int(np.ceil(max(h, w) / 96)))

    def _reduce(a: np.ndarray) -> np.ndarray:
        t = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)).view(1, 1, h, w)
        return F.max_pool2d(t, step, step, ceil_mode=True)[0, 0].numpy()

    small = _reduce(mask) > 0 if step > 1 else mask
    if small.mean() > 0.5:
        raise ImageError(f"{label}: no digit found: ink covers most of the picture (noise or texture?). Use a digit on a plain background.")
    labels, count = _components(small)
    if count == 0:
        raise ImageError(f"{label}: no digit found: the image is blank. Draw or photograph a digit.")
    small_ink = _reduce(ink) if step > 1 else ink
    mass = np.bincount(labels.ravel(), weights=small_ink.ravel())
    mass[0] = 0
    keep = np.flatnonzero(mass >= 0.04 * mass.sum())
    keep_small = np.isin(labels, keep)
    keep_full = np.kron(keep_small, np.ones((step, step), dtype=bool))[:h, :w] if step > 1 else keep_small
    keep_t = torch.from_numpy(keep_full.astype(np.float32)).view(1, 1, h, w)  # grown by step px, separably
    keep_t = F.max_pool2d(F.max_pool2d(keep_t, (1, 2 * step + 1), 1, (0, step)), (2 * step + 1, 1), 1, (step, 0))
    keep_full = keep_t[0, 0].numpy() > 0
    ink = ink * keep_full
    ys, xs = np.nonzero(ink > 0.3)
    if len(ys) == 0:
        raise ImageError(f"{label}: no digit found: the image is blank. Draw or photograph a digit.")
    top, bottom, left, right = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
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
    # Cut the window with zero padding at whole pixels, then resample it exactly.
    pad = int(np.ceil(max(win_h, win_w))) + 2
    padded = np.pad(ink, pad)
    t = torch.from_numpy(padded).view(1, 1, *padded.shape)
    iy0, ix0 = int(np.floor(y0)) + pad, int(np.floor(x0)) + pad
    fy, fx = y0 + pad - iy0, x0 + pad - ix0
    crop = t[:, :, iy0 : iy0 + int(np.ceil(win_h + fy)) + 1, ix0 : ix0 + int(np.ceil(win_w + fx)) + 1]
    ph, pw = crop.shape[-2:]
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
    return Prepared(canvas.contiguous(), (float(left), float(top), float(right), float(bottom)), (w, h))


def _as_canvas(ink: np.ndarray, label: str, size: tuple[int, int]) -> Prepared:
    peak = float(ink.max())
    if peak < 0.1:
        raise ImageError(f"{label}: no digit found: the image is blank or has too little contrast. Draw or photograph a digit.")
    ys, xs = np.nonzero(ink > 0.3 * peak)
    t = torch.from_numpy(np.clip(ink / peak, 0, 1)).view(1, 1, *ink.shape)
    return Prepared(t.contiguous(), (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)), size)


def preprocess(image: Image.Image | str | os.PathLike | bytes, model: object) -> torch.Tensor:
    """Turn any picture of a digit into ``model``'s input: float ``(1, 1, H, W)`` in [0, 1].

    ``model`` is an :class:`stn.STClassifier` (or anything with ``config.input_size`` and
    ``config.digit_size``).

    Raises:
        ImageError: with one sentence that names the image and the problem.
    """
    cfg = model.config  # type: ignore[attr-defined]
    return prepare(image, tuple(cfg.input_size), float(cfg.digit_size)).tensor
