"""Distorted MNIST, made on the fly with batched tensor ops (on the GPU when there is one).

MNIST is read from torchvision's layout, ``ROOT/MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte``
(``.gz`` accepted); ROOT comes from ``--data`` or the ``STN_DATA`` environment variable. Nothing
is downloaded.

Every distortion places a 28×28 MNIST digit on a canvas by a backward mapping
(:func:`stn.transforms` convention) and samples it bilinearly. The choices where the paper's
appendix is vague are written in each ``_make_*`` docstring. Training batches are drawn
afresh each epoch; test sets are fixed by a seed, so every run measures the same images.
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from stn.transforms import Projective, ThinPlateSpline, control_points

__all__ = [
    "DATASETS",
    "DatasetSpec",
    "DataNotFoundError",
    "DataFileError",
    "data_root",
    "load_mnist",
    "make_batch",
    "train_batches",
    "BatchStream",
    "StreamState",
    "training_digits",
    "test_set",
    "val_set",
]

TEST_SEED = 20150605  # the paper's arXiv date; fixes every test set
VAL_SEED = 19981101  # MNIST's paper (Proc. IEEE, Nov. 1998); fixes every validation set


class DataNotFoundError(FileNotFoundError):
    """MNIST is not where we were told to look."""


class DataFileError(ValueError):
    """An MNIST file is there but cannot be read: truncated, corrupt, or not an IDX file."""


def data_root(root: str | os.PathLike | None = None) -> Path:
    """Resolve the MNIST root: the argument, else ``$STN_DATA``, else ``./data``."""
    return Path(root or os.environ.get("STN_DATA") or "data").expanduser()


MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
               "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
_FETCH = "torchvision.datasets.MNIST(ROOT, download=True) fetches all four into ROOT/MNIST/raw"


def _find_raw(root: Path) -> Path:
    """The folder under ``root`` that holds MNIST's files (any of them: :func:`_mnist_file` names a missing one)."""
    for cand in (root / "MNIST" / "raw", root / "raw", root):
        if any((cand / f"{stem}{ext}").exists() for stem in MNIST_FILES for ext in ("", ".gz")):
            return cand
    raise DataNotFoundError(
        f"MNIST not found under {root}: expected {root}/MNIST/raw/train-images-idx3-ubyte "
        "(torchvision's layout). Pass --data DIR or set STN_DATA=DIR."
    )


def _mnist_file(raw: Path, stem: str) -> Path:
    """``raw/stem``, or ``raw/stem.gz``, or a :class:`DataNotFoundError` that names the missing file."""
    for path in (raw / stem, raw / f"{stem}.gz"):
        if path.exists():
            return path
    have = [p.name for p in sorted(raw.iterdir()) if p.name.split(".")[0] in MNIST_FILES] if raw.is_dir() else []
    held = ", ".join(have) or "no MNIST file"
    raise DataNotFoundError(f"{raw / stem}: no such file (nor {stem}.gz); {raw} holds {held}: "
                            f"put all four MNIST files there ({', '.join(MNIST_FILES)}; .gz accepted): {_FETCH}.")


def _read_idx(path: Path) -> np.ndarray:
    """An IDX file of unsigned bytes (MNIST's format) as an array of its shape, or a :class:`DataFileError`
    naming the file: a truncated download reads as a short buffer, not as an error of its own."""
    again = f"download it again ({_FETCH})"
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as exc:  # a .gz cut short, or not gzip at all
        raise DataFileError(f"{path}: could not be read ({exc}): {again}.") from None
    if len(data) < 4 or data[:3] != b"\x00\x00\x08" or not 1 <= data[3] <= 3:
        raise DataFileError(f"{path}: not an MNIST IDX file (it starts with {data[:4].hex() or 'nothing'}, "
                            f"not 00000801 or 00000803): {again}.")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataFileError(f"{path}: truncated ({len(data)} bytes, not even a whole header): {again}.")
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    want = int(np.prod(shape))
    if len(data) - header != want:
        what = "truncated" if len(data) - header < want else "longer than its header says"
        raise DataFileError(f"{path}: {what}: {len(data) - header:,} bytes of data where its header says "
                            f"{'×'.join(map(str, shape))} = {want:,}: {again}.")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


_CACHE: dict[tuple[str, bool], tuple[torch.Tensor, torch.Tensor]] = {}


BUNDLED = "bundled"
BUNDLED_PATH = Path(__file__).resolve().parent.parent / "assets" / "mnist-subset.npz"


def load_bundled(train: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """The small MNIST subset shipped in ``assets/`` (4,000 training and the first 1,000 test
    digits), for the app's live training and views where the full set is absent."""
    with np.load(BUNDLED_PATH) as z:
        split = "train" if train else "test"
        images = torch.from_numpy(z[f"{split}_images"]).float().div_(255).unsqueeze(1)
        labels = torch.from_numpy(z[f"{split}_labels"].astype(np.int64))
    return images, labels


def load_mnist(root: str | os.PathLike | None = None, train: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """MNIST images ``(N, 1, 28, 28)`` float in [0, 1] and labels ``(N,)`` int64 (cached in memory).

    ``root="bundled"`` reads the small subset in ``assets/`` (:func:`load_bundled`).
    """
    if root is not None and str(root) == BUNDLED:
        key = (BUNDLED, train)
        if key not in _CACHE:
            _CACHE[key] = load_bundled(train)
        return _CACHE[key]
    raw = _find_raw(data_root(root))
    key = (str(raw.resolve()), train)
    if key not in _CACHE:
        prefix = "train" if train else "t10k"
        images_path = _mnist_file(raw, f"{prefix}-images-idx3-ubyte")
        labels_path = _mnist_file(raw, f"{prefix}-labels-idx1-ubyte")
        images, labels = _read_idx(images_path), _read_idx(labels_path)
        if images.shape[1:] != (28, 28) or labels.ndim != 1 or len(images) != len(labels):
            raise DataFileError(f"{images_path} holds {'×'.join(map(str, images.shape))} and {labels_path.name} "
                                f"{'×'.join(map(str, labels.shape))}: expected N 28×28 images and N labels; "
                                f"download them again ({_FETCH}).")
        _CACHE[key] = (
            torch.from_numpy(images.copy()).float().div_(255).unsqueeze(1),
            torch.from_numpy(labels.astype(np.int64)),
        )
    return _CACHE[key]


# --------------------------------------------------------------------------- placement


def _uniform(g: torch.Generator, n: int, lo: float, hi: float, device: torch.device) -> torch.Tensor:
    return torch.rand(n, generator=g, device=device) * (hi - lo) + lo


def _place(
    digits: torch.Tensor,
    canvas: tuple[int, int],
    angle_deg: torch.Tensor,
    scale: torch.Tensor,
    shift: torch.Tensor,
) -> torch.Tensor:
    """Draw each digit rotated by ``angle`` (counter-clockwise on screen), scaled about its
    centre and moved so its centre lands ``shift`` pixels ``(x, y)`` from the canvas centre.

    digits ``(B, 1, h, w)`` → ``(B, 1, H, W)``.
    """
    b, _, h, w = digits.shape
    ch, cw = canvas
    a = torch.deg2rad(angle_deg)
    cos, sin = torch.cos(a), torch.sin(a)
    # backward map in pixels: u = R(-a) (v - t) / s, with y pointing down (so -a on screen)
    r = torch.stack([torch.stack([cos, -sin], 1), torch.stack([sin, cos], 1)], 1)  # (B, 2, 2) = R(a)^T on y-down
    pix_in = torch.diag(torch.tensor([cw / 2, ch / 2], device=digits.device))  # normalised → px
    pix_out = torch.diag(torch.tensor([2 / w, 2 / h], device=digits.device))  # px → normalised
    lin = pix_out @ r / scale.view(b, 1, 1) @ pix_in
    trans = -(pix_out @ r / scale.view(b, 1, 1) @ shift.unsqueeze(-1))
    theta = torch.cat([lin, trans], dim=2)
    grid = F.affine_grid(theta, [b, 1, ch, cw], align_corners=False)
    return F.grid_sample(digits, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _paste_clutter(
    canvas: torch.Tensor, pool: torch.Tensor, pieces: int, size: int, g: torch.Generator, keep: torch.Tensor | None = None
) -> torch.Tensor:
    """Max-composite ``pieces`` random ``size``×``size`` crops of random pool digits onto each canvas."""
    b, _, ch, cw = canvas.shape
    dev = canvas.device
    out = canvas.reshape(b, -1).clone()
    ar = torch.arange(size, device=dev)
    for _ in range(pieces):
        src = pool[torch.randint(len(pool), (b,), generator=g, device=dev)][:, 0]  # (B, 28, 28)
        # crops from the central part of a digit, where the ink is
        sy = torch.randint(4, 24 - size + 1, (b,), generator=g, device=dev)
        sx = torch.randint(4, 24 - size + 1, (b,), generator=g, device=dev)
        rows = (sy.view(b, 1, 1) + ar.view(1, size, 1)).expand(b, size, size)
        cols = (sx.view(b, 1, 1) + ar.view(1, 1, size)).expand(b, size, size)
        patch = src[torch.arange(b, device=dev).view(b, 1, 1), rows, cols]  # (B, s, s)
        if keep is not None:
            patch = patch * keep.view(b, 1, 1)
        dy = torch.randint(0, ch - size + 1, (b,), generator=g, device=dev)
        dx = torch.randint(0, cw - size + 1, (b,), generator=g, device=dev)
        idx = (dy.view(b, 1, 1) + ar.view(1, size, 1)) * cw + dx.view(b, 1, 1) + ar.view(1, 1, size)
        out.scatter_reduce_(1, idx.reshape(b, -1), patch.reshape(b, -1), reduce="amax")
    return out.view(b, 1, ch, cw)


def _homography_from_points(src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
    """Batched DLT: the ``(B, 8)`` homography (h33 = 1) that maps 4 ``src`` points onto ``dst``."""
    b = src.shape[0]
    x, y = src[..., 0], src[..., 1]
    u, v = dst[..., 0], dst[..., 1]
    zeros, ones = torch.zeros_like(x), torch.ones_like(x)
    rows_u = torch.stack([x, y, ones, zeros, zeros, zeros, -u * x, -u * y], dim=-1)
    rows_v = torch.stack([zeros, zeros, zeros, x, y, ones, -v * x, -v * y], dim=-1)
    a = torch.cat([rows_u, rows_v], dim=1)  # (B, 8, 8)
    rhs = torch.cat([u, v], dim=1).unsqueeze(-1)  # (B, 8, 1)
    return torch.linalg.solve(a.double(), rhs.double()).squeeze(-1).to(src.dtype).view(b, 8)


def _gaussian_blur(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Per-image Gaussian blur; ``sigma`` ``(B,)`` in pixels (0 = unchanged)."""
    b = x.shape[0]
    r = 3
    t = torch.arange(-r, r + 1, device=x.device, dtype=x.dtype)
    k = torch.exp(-(t.view(1, -1) ** 2) / (2 * sigma.clamp(min=1e-3).view(-1, 1) ** 2))
    k = k / k.sum(dim=1, keepdim=True)  # (B, 7)
    xb = x.transpose(0, 1)  # (1, B, H, W): grouped conv, one kernel per image
    xb = F.conv2d(F.pad(xb, (r, r, 0, 0), mode="replicate"), k.view(b, 1, 1, -1), groups=b)
    xb = F.conv2d(F.pad(xb, (0, 0, r, r), mode="replicate"), k.view(b, 1, -1, 1), groups=b)
    return xb.transpose(0, 1)


def _vary_stroke(digits: torch.Tensor, amount: torch.Tensor) -> torch.Tensor:
    """Thicker (``amount`` > 0) or thinner (< 0) strokes, by blending with a 3×3 dilation/erosion."""
    dil = F.max_pool2d(digits, 3, 1, 1)
    ero = -F.max_pool2d(-digits, 3, 1, 1)
    a = amount.view(-1, 1, 1, 1)
    return torch.where(a >= 0, digits + a * (dil - digits), digits + (-a) * (ero - digits))


# --------------------------------------------------------------------------- datasets

Maker = Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Generator], tuple[torch.Tensor, torch.Tensor]]


def _make_mnist(d: torch.Tensor, y: torch.Tensor, pool: torch.Tensor, g: torch.Generator):
    """MNIST as it is: upright, centred, 28×28. Trains classifiers that have never seen a turned
    digit, so that an ST-CNN built on one must turn its input upright (``stn train --classifier-from``)."""
    return d, y


def _make_r(d: torch.Tensor, y: torch.Tensor, pool: torch.Tensor, g: torch.Generator):
    """R: rotation U(-90°, 90°) about the centre, 28×28."""
    b, dev = d.shape[0], d.device
    angle = _uniform(g, b, -90, 90, dev)
    return _place(d, (28, 28), angle, torch.ones(b, device=dev), torch.zeros(b, 2, device=dev)), y


def _make_rts(d: torch.Tensor, y: torch.Tensor, pool: torch.Tensor, g: torch.Generator):
    """RTS: rotation U(-45°, 45°), scale U(0.7, 1.2), then a random position on 42×42.

    The position is uniform over the shifts that keep the scaled 28×28 box on the canvas
    (``|shift| <= (42 - 28 s) / 2`` per axis).
    """
    b, dev = d.shape[0], d.device
    angle = _uniform(g, b, -45, 45, dev)
    scale = _uniform(g, b, 0.7, 1.2, dev)
    room = ((42 - 28 * scale) / 2).clamp(min=0).unsqueeze(1)
    shift = (torch.rand(b, 2, generator=g, device=dev) * 2 - 1) * room
    return _place(d, (42, 42), angle, scale, shift), y


def _convex(quad: torch.Tensor) -> torch.Tensor:
    """Whether each quadrilateral ``(B, 4, 2)`` (corners in order) is strictly convex, not folded."""
    edge = quad.roll(-1, dims=1) - quad
    turn = edge[..., 0] * edge.roll(-1, dims=1)[..., 1] - edge[..., 1] * edge.roll(-1, dims=1)[..., 0]
    return (turn > 0).all(dim=1) | (turn < 0).all(dim=1)


# P redraws a view whose far side would be more than this many times farther from the camera
# than its near side (see _make_p).
MAX_DEPTH_RATIO = 4.0


def _depth_ratio(quad: torch.Tensor) -> torch.Tensor:
    """``(B,)``: for the view that puts the corners of the 28×28 box at ``quad`` ``(B, 4, 2)``,
    the depth of the box's farthest corner over its nearest's, as a pinhole camera would see it:
    the homography's w (∝ depth) at the corners, max over min. 1 for any affine view; ``inf``
    for a quad that is not a convex view (folded, or three corners in a line)."""
    box = torch.tensor([[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]], device=quad.device).expand_as(quad)
    ok = _convex(quad)
    # a degenerate quad has no homography: solve for the box instead, then report inf
    f = _homography_from_points(box, torch.where(ok.view(-1, 1, 1), quad, box))  # box point → canvas point
    w = f[:, 6:7] * box[..., 0] + f[:, 7:8] * box[..., 1] + 1
    ratio = w.amax(dim=1) / w.amin(dim=1)
    return torch.where(ok & (w.amin(dim=1) > 0), ratio, torch.full_like(ratio, float("inf")))


def _perspective_corners(b: int, g: torch.Generator, device: torch.device | str) -> torch.Tensor:
    """Where P puts the corners of each digit's 28×28 box: ``(B, 4, 2)`` normalised canvas
    coordinates (top-left, top-right, bottom-right, bottom-left), inside [-1, 1], convex, and
    seen with a depth ratio of at most :data:`MAX_DEPTH_RATIO`. See :func:`_make_p`."""
    scale = _uniform(g, b, 0.75, 1.0, device).view(b, 1, 1)
    corners = torch.tensor([[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]], device=device).expand(b, 4, 2)
    moved = corners * scale
    todo = torch.ones(b, dtype=torch.bool, device=device)
    for _ in range(8):
        trial = (corners * scale + torch.randn(b, 4, 2, generator=g, device=device) * (5 / 14)).clamp(-1, 1)
        take = todo & (_depth_ratio(trial) <= MAX_DEPTH_RATIO)  # inf unless convex
        moved = torch.where(take.view(b, 1, 1), trial, moved)
        todo &= ~take
        if not bool(todo.any()):
            break
    return moved


def _make_p(d: torch.Tensor, y: torch.Tensor, pool: torch.Tensor, g: torch.Generator):
    """P: scale U(0.75, 1.0) about the centre, then the four image corners moved by N(0, 5 px), 28×28.

    Three choices keep it a *perspective view of the whole digit*, as a camera would give:
    a corner pushed off the canvas stops at its edge; a corner set that folds the
    quadrilateral (non-convex: part of the plane would pass through infinity) is drawn again;
    so is a grazing view whose far side is over :data:`MAX_DEPTH_RATIO` times farther from the
    camera than its near side; up to 8 draws, then the digit is left undistorted. A homography
    maps a convex quad's inside to the inside, so no ink leaves the canvas. (Without the first
    two, about 5% of the digits lost over a tenth of their ink off the canvas and 1.5% were
    folded, and even the CNN erred 6.1%. Without the third, 2.5% of the views had a depth ratio
    over 6, which squeezes the digit into a dot or a line: a third of the test set's errors.)
    The homography sends the moved corners back to the scaled ones (a backward mapping).
    """
    moved = _perspective_corners(d.shape[0], g, d.device)
    corners = torch.tensor([[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]], device=d.device).expand_as(moved)
    h = _homography_from_points(moved, corners)  # canvas point → digit point
    grid = Projective().grid(h, (28, 28))
    return F.grid_sample(d, grid, mode="bilinear", padding_mode="zeros", align_corners=False), y


def _make_e(d: torch.Tensor, y: torch.Tensor, pool: torch.Tensor, g: torch.Generator):
    """E: elastic, a thin-plate-spline warp whose 16 (4×4) control points move by N(0, 1.5 px), 28×28."""
    b, dev = d.shape[0], d.device
    rest = control_points(4, device=dev).reshape(1, -1).expand(b, -1)
    targets = rest + torch.randn(b, 32, generator=g, device=dev) * (1.5 / 14)
    grid = ThinPlateSpline(4).grid(targets, (28, 28))
    return F.grid_sample(d, grid, mode="bilinear", padding_mode="zeros", align_corners=False), y


def _make_tc(d: torch.Tensor, y: torch.Tensor, pool: torch.Tensor, g: torch.Generator):
    """TC: the 28×28 digit at a random whole-pixel position on 60×60, plus 6 clutter pieces
    (6×6 crops of random other training digits, max-composited at random positions)."""
    b, dev = d.shape[0], d.device
    shift = torch.randint(-16, 17, (b, 2), generator=g, device=dev).float()  # keeps the 28 box inside
    canvas = _place(d, (60, 60), torch.zeros(b, device=dev), torch.ones(b, device=dev), shift)
    return _paste_clutter(canvas, pool, 6, 6, g), y


def _make_pair(d: torch.Tensor, y: torch.Tensor, pool: torch.Tensor, g: torch.Generator):
    """Pair: two RTS digits side by side on a 42×84 canvas (left half, right half).

    The second digit is a random other digit of the same split; the targets are
    ``(left, right)``, read by head 0 and head 1 of a two-transformer model.
    """
    b, dev = d.shape[0], d.device
    idx = torch.randint(len(pool), (b,), generator=g, device=dev)
    left, _ = _make_rts(d, y, pool, g)
    right, _ = _make_rts(pool[idx], y, pool, g)
    return torch.cat([left, right], dim=3), torch.stack([y, _POOL_LABELS[id(pool)][idx]], dim=1)


_FONT_POOL: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}


def _font_pool(device: torch.device) -> tuple[torch.Tensor, torch.Tensor] | None:
    key = str(device)
    if key not in _FONT_POOL:
        from stn.font_digits import load_bundle

        bundle = load_bundle()
        if bundle is None:
            return None
        images, labels = bundle
        _FONT_POOL[key] = (
            torch.from_numpy(images).float().div(255).unsqueeze(1).to(device),
            torch.from_numpy(labels).to(device),
        )
    return _FONT_POOL[key]


def _mix_fonts(d: torch.Tensor, y: torch.Tensor, g: torch.Generator, rate: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Swap a ``rate`` share of the digits for font-rendered ones (``assets/font-digits.npz``)."""
    pool = _font_pool(d.device)
    if pool is None:
        return d, y
    images, labels = pool
    swap = torch.rand(len(d), generator=g, device=d.device) < rate
    idx = torch.randint(len(images), (len(d),), generator=g, device=d.device)
    d = torch.where(swap.view(-1, 1, 1, 1), images[idx], d)
    y = torch.where(swap.view(-1, *([1] * (y.ndim - 1))), labels[idx].view(-1, *y.shape[1:]), y)
    return d, y


def _make_wild(d: torch.Tensor, y: torch.Tensor, pool: torch.Tensor, g: torch.Generator):
    """Wild, 56×56: what people upload or draw, after :func:`stn.preprocess`.

    - digits: 25% are printed/script digits rendered from the *train* fonts of
      :mod:`stn.font_digits` (never the handwriting fonts of the upload test set);
    - stroke: thinner to thicker (3×3 erosion/dilation blend, U(-0.7, 1));
    - rotation: half the images U(-90°, 90°), half N(0, 15°) (most uploads are near upright);
    - size: the 20 px ink box of MNIST scaled to U(1/3, 1) of the canvas, less where a turned
      digit would not fit;
    - position: uniform over what keeps the digit on the canvas;
    - clutter: up to 3 small 6×6 crops of other digits on 30% of the images;
    - blur N(0..1.2 px), contrast: ink U(0.6, 1), background U(0, 0.15), noise σ U(0, 0.06).
    """
    b, dev = d.shape[0], d.device
    d, y = _mix_fonts(d, y, g, 0.25)
    d = _vary_stroke(d, _uniform(g, b, -0.7, 1.0, dev))
    wide = torch.rand(b, generator=g, device=dev) < 0.5
    angle = torch.where(
        wide, _uniform(g, b, -90, 90, dev), (torch.randn(b, generator=g, device=dev) * 15).clamp(-90, 90)
    )
    size = _uniform(g, b, 56 / 3, 56, dev)  # ink box side in pixels
    rad = torch.deg2rad(angle)
    spread = (rad.cos().abs() + rad.sin().abs()) * 0.85  # a turned box needs more room
    size = torch.minimum(size, 56 / spread)  # never cut the digit off
    scale = size / 20
    room = ((56 - size * spread) / 2).clamp(min=0).unsqueeze(1)
    shift = (torch.rand(b, 2, generator=g, device=dev) * 2 - 1) * room
    x = _place(d, (56, 56), angle, scale, shift)
    keep = (torch.rand(b, generator=g, device=dev) < 0.3).float()
    x = _paste_clutter(x, pool, 3, 6, g, keep=keep)
    x = _gaussian_blur(x, _uniform(g, b, 0.0, 1.2, dev))
    ink = _uniform(g, b, 0.6, 1.0, dev).view(b, 1, 1, 1)
    bg = _uniform(g, b, 0.0, 0.15, dev).view(b, 1, 1, 1)
    noise = torch.randn(x.shape, generator=g, device=dev) * _uniform(g, b, 0.0, 0.06, dev).view(b, 1, 1, 1)
    return (bg + x * (ink - bg) + noise).clamp(0, 1), y


@dataclass(frozen=True)
class DatasetSpec:
    """A distorted-MNIST task."""

    name: str
    canvas: tuple[int, int]
    digits: int  # digits to read per image
    digit_size: float  # typical longer side (px) of all the ink's box on the canvas: pre-processing aims for it
    description: str
    make: Maker


DATASETS: dict[str, DatasetSpec] = {
    s.name: s
    for s in (
        DatasetSpec("r", (28, 28), 1, 20.0, "rotated ±90°, 28×28", _make_r),
        DatasetSpec("rts", (42, 42), 1, 19.0, "rotated ±45°, scaled 0.7–1.2, placed on 42×42", _make_rts),
        DatasetSpec("p", (28, 28), 1, 18.0,
                    "projective: scaled, corners moved by 5 px (kept on the canvas, never folded, no grazing view)", _make_p),
        DatasetSpec("e", (28, 28), 1, 20.0, "elastic: 16 TPS control points moved by 1.5 px", _make_e),
        DatasetSpec("tc", (60, 60), 1, 20.0, "translated on 60×60 with clutter", _make_tc),
        DatasetSpec("pair", (42, 84), 2, 62.0, "two RTS digits side by side", _make_pair),
        DatasetSpec("wild", (56, 56), 1, 32.0, "uploads and sketches: any size, rotation, stroke, clutter", _make_wild),
        DatasetSpec("mnist", (28, 28), 1, 20.0, "MNIST as it is: upright, centred, 28×28", _make_mnist),
    )
}

# The Pair maker needs the labels of the pool it draws its second digit from.
_POOL_LABELS: dict[int, torch.Tensor] = {}


def get_spec(name: str) -> DatasetSpec:
    try:
        return DATASETS[name]
    except KeyError:
        raise ValueError(f"Unknown dataset {name!r}. Known: {', '.join(DATASETS)}.") from None


def make_batch(
    name: str, digits: torch.Tensor, labels: torch.Tensor, pool: torch.Tensor, pool_labels: torch.Tensor, g: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Distort a batch of MNIST digits ``(B, 1, 28, 28)`` → images ``(B, 1, H, W)`` and targets.

    Targets are ``(B,)``, or ``(B, digits)`` for multi-digit tasks. ``pool``/``pool_labels``
    supply other digits (clutter, the Pair's second digit); keep them on the same split.
    """
    spec = get_spec(name)
    _POOL_LABELS[id(pool)] = pool_labels
    x, y = spec.make(digits, labels, pool, g)
    return x.contiguous(), y


def training_digits(
    root: str | os.PathLike | None = None, holdout: int = 0, limit: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The MNIST training digits a run learns from: ``(N, 1, 28, 28)`` images and ``(N,)`` labels.

    ``holdout`` leaves out the *last* ``holdout`` digits of the training file (the validation
    split, :func:`val_set`); ``limit`` then keeps the first ``limit`` of the rest. Holding out
    the last digits, whatever the limit, keeps one validation split for runs of any size.
    """
    images, labels = load_mnist(root, train=True)
    n = len(images)
    if not 0 <= holdout < n:
        raise ValueError(f"a holdout of {holdout:,} digits leaves none of the {n:,} training digits to train on: "
                         f"hold out between 0 and {n - 1:,}")
    if holdout and limit is not None and limit > n - holdout:  # a silent cap would misreport "the first N"
        raise ValueError(f"a limit of {limit:,} training digits reaches into the {holdout:,} held out (the last of the "
                         f"{n:,}): use a limit of at most {n - holdout:,}, or hold out fewer")
    keep = n - holdout if limit is None else min(limit, n - holdout)
    return images[:keep], labels[:keep]


def train_batches(
    name: str,
    batch_size: int,
    root: str | os.PathLike | None = None,
    seed: int = 0,
    device: torch.device | str = "cpu",
    limit: int | None = None,
    holdout: int = 0,
    resume: StreamState | None = None,
) -> BatchStream:
    """An endless sequence of epochs; each epoch yields freshly distorted training batches
    ``(B, 1, H, W)`` with targets ``(B,)`` or ``(B, digits)``.

    ``limit`` keeps only the first ``limit`` training digits (the app's small subset);
    ``holdout`` leaves out the last ``holdout`` (see :func:`training_digits`): they are never
    drawn, neither as a batch's digits nor as clutter or a Pair's second digit. Every
    batch is whole (the last few digits of an epoch wait for the next), so a ``batch_size``
    larger than the digits is refused here, not met by an epoch with no batch in it.

    ``resume``: where an earlier stream of the same arguments was (:meth:`BatchStream.state`);
    this one then draws the very batches that one would have drawn next.
    """
    images, labels = training_digits(root, holdout, limit)
    if batch_size < 1:
        raise ValueError(f"batch size must be at least 1, got {batch_size}")
    if batch_size > len(images):
        more = ", or a larger limit" if limit is not None and limit < batch_size else ""
        raise ValueError(f"batch size {batch_size} is more than the {len(images)} training digits: "
                         f"use a batch size of at most {len(images)}{more}")
    return BatchStream(name, batch_size, images.to(device), labels.to(device), seed, device, resume)


@dataclass
class StreamState:
    """Where a :class:`BatchStream` is: enough to draw the same batches again, in another process."""

    generator: torch.Tensor  # (K,) uint8: the state of the stream's torch.Generator (K depends on its device)
    order: torch.Tensor | None  # (N,) int64: the current epoch's order of the N digits; None: not drawn yet
    position: int  # batches of the current epoch drawn so far


class BatchStream:
    """The epochs of :func:`train_batches`: iterate it for epochs, iterate an epoch for batches (one
    epoch at a time: they share the stream's position).

    One seeded ``torch.Generator`` draws each epoch's order of the digits (when its first batch is
    asked for) and then every distortion, so the stream is a function of the seed alone; its
    :meth:`state` between two batches, given back as ``resume``, continues it exactly.
    """

    def __init__(
        self,
        name: str,
        batch_size: int,
        images: torch.Tensor,
        labels: torch.Tensor,
        seed: int,
        device: torch.device | str,
        resume: StreamState | None = None,
    ) -> None:
        self.name, self.batch_size, self.images, self.labels, self.device = name, batch_size, images, labels, device
        self._g = torch.Generator(device=device).manual_seed(seed)
        self._order: torch.Tensor | None = None
        self._position = 0
        self._continue = False  # the next epoch carries on with the resumed one's order
        if resume is not None:
            n_batches = len(images) // batch_size
            if resume.order is not None and (len(resume.order) != len(images) or not 0 <= resume.position <= n_batches):
                raise ValueError(f"cannot resume at batch {resume.position} of an epoch of {len(resume.order)} digits: "
                                 f"this stream's epochs are {n_batches} batches of its {len(images)} digits")
            self._g.set_state(resume.generator.cpu())
            if resume.order is not None:
                self._order, self._position, self._continue = resume.order.to(device), resume.position, True

    def state(self) -> StreamState:
        """The position now (call it between batches): the generator's state and the current epoch's order."""
        order = None if self._order is None else self._order.cpu().clone()
        return StreamState(self._g.get_state(), order, self._position)

    def __iter__(self) -> BatchStream:
        return self

    def __next__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        return self._epoch()

    def _epoch(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n, b = len(self.images), self.batch_size
        if self._continue:
            self._continue = False
        else:
            self._order = torch.randperm(n, generator=self._g, device=self.device)
            self._position = 0
        while (start := self._position * b) + b <= n:
            idx = self._order[start : start + b]
            self._position += 1
            yield make_batch(self.name, self.images[idx], self.labels[idx], self.images, self.labels, self._g)


def test_set(
    name: str, root: str | os.PathLike | None = None, n: int = 10_000, seed: int = TEST_SEED
) -> tuple[torch.Tensor, torch.Tensor]:
    """The fixed test set of a task: the first ``n`` MNIST test digits, distorted on the CPU
    with a seeded generator, so every run and every machine measures the same images
    ``(n, 1, H, W)``, with targets ``(n,)`` or ``(n, digits)``."""
    images, labels = load_mnist(root, train=False)
    return _distort_once(name, images[:n], labels[:n], seed)


def val_set(
    name: str, holdout: int, root: str | os.PathLike | None = None, seed: int = VAL_SEED
) -> tuple[torch.Tensor, torch.Tensor]:
    """The validation set of a run trained with ``holdout``: the last ``holdout`` MNIST
    training digits, which :func:`train_batches` never draws, distorted once like
    :func:`test_set` (on the CPU, seeded; clutter and second digits from these digits only).

    Returns images ``(holdout, 1, H, W)`` and targets ``(holdout,)`` or ``(holdout, digits)``.
    """
    images, labels = load_mnist(root, train=True)
    n = len(images)
    if not 0 < holdout < n:
        raise ValueError(f"a validation set of {holdout:,} held-out digits: hold out between 1 and {n - 1:,} "
                         f"of the {n:,} training digits")
    return _distort_once(name, images[n - holdout :], labels[n - holdout :], seed)


def _distort_once(
    name: str, images: torch.Tensor, labels: torch.Tensor, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """A fixed set: ``images`` ``(N, 1, 28, 28)`` distorted by 1,000s with one seeded CPU generator,
    the same on every machine; the digits themselves are the pool of clutter and second digits."""
    g = torch.Generator().manual_seed(seed + sum(map(ord, name)))
    xs, ys = [], []
    for start in range(0, len(images), 1000):
        x, y = make_batch(name, images[start : start + 1000], labels[start : start + 1000], images, labels, g)
        xs.append(x)
        ys.append(y)
    return torch.cat(xs), torch.cat(ys)


def synthetic_digits(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Tiny stand-in "digits" (bars and boxes, 28×28) for tests that must run without MNIST."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 10, (n,), generator=g)
    x = torch.zeros(n, 1, 28, 28)
    for i, lab in enumerate(labels.tolist()):
        w = 2 + lab % 3
        x[i, 0, 4:24, 14 - w : 14 + w] = 1.0
        if lab >= 5:
            x[i, 0, 4 : 4 + w, 6:22] = 1.0
        if lab % 2:
            x[i, 0, 20 : 20 + w, 6:22] = 1.0
    return x, labels


def angle_of(theta: torch.Tensor) -> torch.Tensor:
    """Rotation (degrees) of each affine θ ``(B, 6)``, as :func:`stn.transforms.decompose_affine` reads it."""
    return torch.rad2deg(torch.atan2(theta[:, 3], theta[:, 0]))


