"""Transform families: the grid generator of a spatial transformer.

Convention (used everywhere in ``stn``):

- Coordinates are normalised to [-1, 1] with ``align_corners=False``: -1 and +1 are the
  *outer edges* of the first and last pixel, so pixel ``j`` of a row of width ``W`` has its
  centre at ``x = (2 j + 1) / W - 1``.
- Points are written ``(x, y)``: x runs left → right along the width, y top → bottom.
- A grid maps **output → input** (backward mapping): ``grid[b, i, j]`` is the source point
  in the input that output pixel ``(i, j)`` reads. This is what ``F.grid_sample`` expects.

Families and their parameter layouts (one row of ``params`` per image):

====================  ========  ===================================================
name                  n_params  layout
====================  ========  ===================================================
``affine``            6         θ row-major: θ11 θ12 θ13 θ21 θ22 θ23 (``F.affine_grid``)
``attention``         3         (s, tx, ty): isotropic scale and translation
``projective``        8         first 8 entries of the row-major 3×3 homography (h33 = 1)
``tps``               2·K²      control-point targets (x, y), point after point, rows of
                                the K×K control grid top → bottom, each left → right
====================  ========  ===================================================
"""

from __future__ import annotations

import functools
import inspect
import math
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

__all__ = [
    "Transform",
    "Affine",
    "Attention",
    "Projective",
    "ThinPlateSpline",
    "get",
    "names",
    "base_grid",
    "decompose_affine",
    "compose_affine",
    "AffineReading",
    "control_points",
    "affine_embedding",
    "tps_affine_fit",
]

Size = tuple[int, int]


def _check_params(params: torch.Tensor, n: int, name: str) -> torch.Tensor:
    """``params`` ``(B, n)``, integer or bool θ as floats of ``torch.get_default_dtype()``.

    Why cast: the cached base grids and TPS weights are made in θ's dtype, so an integer θ gave
    an integer grid (all zeros) with no error; ``[[1, 0, 0, 0, 1, 0]]`` means the identity.
    """
    if torch.jit.is_tracing():  # a trace is made for one shape (and its sizes are tensors: no Python tests on them)
        return params
    if params.ndim != 2 or params.shape[1] != n:
        raise ValueError(f"{name}: expected params of shape (B, {n}), got {tuple(params.shape)}")
    if not (params.is_floating_point() or params.is_complex()):
        return params.to(torch.get_default_dtype())
    return params


def _check_size(out_size: Size) -> tuple[int, int]:
    try:
        h, w = out_size
        ok = int(h) == h and int(w) == w and min(h, w) >= 1
    except (TypeError, ValueError, OverflowError):  # not a pair of numbers (inf, NaN, a string)
        ok = False
    if not ok:
        shown = tuple(out_size) if isinstance(out_size, (tuple, list, torch.Size)) else out_size
        raise ValueError(f"expected out_size (H, W) with H, W >= 1, got {shown}: sizes are whole numbers of pixels")
    return int(h), int(w)


CACHE_BYTES = 32 * 2**20  # each constant cache's budget (a 2048×2048 grid would otherwise stay for good; 60×60: 0.2 MB)


def _constant_cache(maxsize: int, max_bytes: int = CACHE_BYTES) -> Callable:
    """A least-recently-used cache for constant tensors (base grids, TPS weights), made outside
    inference mode: a tensor first built under ``torch.inference_mode()`` (an evaluation) could never
    be saved for a later backward (training the same shapes afterwards). It holds at most ``maxsize``
    tensors and ``max_bytes`` bytes, and always the newest one, however large: calls at one large
    size (a TPS's weights at 600×600 take a solve of 0.35 s) keep finding it."""

    def wrap(fn: Callable) -> Callable:
        entries: OrderedDict[tuple, torch.Tensor] = OrderedDict()
        sizes: dict[tuple, int] = {}
        lock = threading.Lock()
        held = [0]

        @functools.wraps(fn)
        def cached(*args: Any) -> torch.Tensor:
            value = entries.get(args)  # a hit takes no lock (each OrderedDict call is atomic)
            if value is not None:
                try:
                    entries.move_to_end(args)
                except KeyError:  # evicted by another thread meanwhile: the value is still good
                    pass
                return value
            # Made outside any trace: a constant first built inside torch.jit.trace would be recorded as
            # the operations that build it, and a second trace (the check trace runs) would differ.
            tracing = torch._C._get_tracing_state() if hasattr(torch._C, "_get_tracing_state") else None
            if tracing is not None:
                torch._C._set_tracing_state(None)
            try:
                with torch.inference_mode(False), torch.no_grad():
                    value = fn(*args)
                size = value.numel() * value.element_size()
            finally:
                if tracing is not None:
                    torch._C._set_tracing_state(tracing)
            if type(value) is not torch.Tensor:  # a fake one, made by torch.export
                return value
            with lock:
                if args not in entries:
                    entries[args] = value
                    held[0] += size
                    sizes[args] = size
                    while len(entries) > 1 and (len(entries) > maxsize or held[0] > max_bytes):
                        key, _ = entries.popitem(last=False)
                        held[0] -= sizes.pop(key)
                return entries[args]

        def cache_clear() -> None:
            with lock:
                entries.clear()
                sizes.clear()
                held[0] = 0

        cached.cache_clear = cache_clear  # type: ignore[attr-defined]
        cached.cache_bytes = lambda: held[0]  # type: ignore[attr-defined]
        return cached

    return wrap


@_constant_cache(maxsize=64)
def _base_grid_cached(h: int, w: int, device: str, dtype: torch.dtype) -> torch.Tensor:
    xs = (torch.arange(w, dtype=torch.float64) * 2 + 1) / w - 1
    ys = (torch.arange(h, dtype=torch.float64) * 2 + 1) / h - 1
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([xx, yy], dim=-1).to(device=device, dtype=dtype)


@_constant_cache(maxsize=64)
def _homogeneous_base_t(h: int, w: int, device: str, dtype: torch.dtype) -> torch.Tensor:
    """``(3, H·W)``: the rows ``x``, ``y`` and ones of :func:`base_grid`, for one GEMM per grid."""
    xy = _base_grid_cached(h, w, device, dtype).reshape(h * w, 2)
    return torch.cat([xy, torch.ones_like(xy[:, :1])], dim=1).T.contiguous()


@_constant_cache(maxsize=64)
def _grid_matrix(rows: int, h: int, w: int, device: str, dtype: torch.dtype) -> torch.Tensor:
    """``(H·W·rows, 3·rows)``: row ``(p, r)`` holds pixel ``p``'s ``[x y 1]`` in columns ``3r .. 3r+2``.

    ``F.linear(M, this)`` on ``rows``×3 matrices ``M`` flattened to ``(B, 3·rows)`` gives
    ``M @ [x y 1]^T`` for every pixel, already laid out as ``(B, H, W, rows)``: one product for
    the batch, 2 operations of a traced graph instead of 4 (``bench/README.md``).
    """
    xy1 = _homogeneous_base_t(h, w, device, dtype).T  # (HW, 3)
    out = torch.zeros(h * w, rows, rows, 3, device=device, dtype=dtype)
    for r in range(rows):
        out[:, r, r] = xy1
    return out.reshape(h * w * rows, rows * 3)


@_constant_cache(maxsize=32)
def _entry_mask(n: int, entries: tuple[int, ...], device: str) -> torch.Tensor:
    """``(n,)`` bool, True at ``entries``: which parameters a family's ``bound`` treats one way.

    ``bound`` is one ``torch.where`` on such a constant instead of slicing and concatenating
    columns: 2-4 operations instead of 6-8, which at batch 1 is most of its cost."""
    # one literal: a trace records it as a constant, where building it in place would be replayed per call
    return torch.tensor([i in entries for i in range(n)], dtype=torch.bool, device=device)


def base_grid(out_size: Size, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Pixel centres of an ``(H, W)`` output in normalised coordinates.

    Returns:
        ``(H, W, 2)`` tensor of ``(x, y)``; cached, treat as read-only.

    >>> base_grid((2, 3)).shape
    torch.Size([2, 3, 2])
    """
    h, w = _check_size(out_size)
    return _base_grid_cached(h, w, str(torch.device(device)), dtype)


class Transform:
    """A family of backward mappings ``output point -> input point`` with ``n_params`` numbers."""

    name: str = ""
    n_params: int = 0

    def identity(self, batch_size: int = 1, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Parameters of the identity mapping, ``(B, n_params)``."""
        return self._identity_row().to(device=device, dtype=dtype).expand(batch_size, -1).clone()

    def zoom(
        self, scale: float, batch_size: int = 1, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32
    ) -> torch.Tensor:
        """Parameters ``(B, n_params)`` of the map that reads the centred window ``scale`` times the
        input's size: ``zoom(1.0)`` is the identity, ``zoom(0.5)`` the central half, enlarged.

        A training start for inputs where the object is much smaller than the canvas (TC): the
        crop begins at the object's resolution instead of a downsampled whole canvas.
        """
        if not scale > 0:
            raise ValueError(f"{self.name}: zoom scale must be > 0, got {scale}")
        return self._zoom_row(float(scale)).to(device=device, dtype=dtype).expand(batch_size, -1).clone()

    def _identity_row(self) -> torch.Tensor:
        raise NotImplementedError

    def _zoom_row(self, scale: float) -> torch.Tensor:
        # every family here maps the output box to the input linearly at the identity, so scaling
        # the identity's linear entries (or the TPS targets) by ``scale`` reads the central window
        row = self._identity_row().clone()
        row[:, list(self._linear_entries(row.shape[1]))] *= scale
        return row

    def _linear_entries(self, n: int) -> tuple[int, ...]:
        return tuple(range(n))

    def grid(self, params: torch.Tensor, out_size: Size) -> torch.Tensor:
        """Sampling grid ``(B, H, W, 2)`` of source points ``(x, y)`` for each output pixel.

        ``params`` ``(B, n_params)``; ``out_size`` ``(H, W)``, whole numbers. The grid has θ's dtype,
        except that an integer or bool θ is read as floats of ``torch.get_default_dtype()`` (where
        ``F.affine_grid`` refuses one): ``[[1, 0, 0, 0, 1, 0]]`` is the affine identity.

        It may be a strided view (projective: the transposed output of one GEMM, which the sampler
        reads as it is); flatten it with ``reshape``, not ``view``.
        """
        raise NotImplementedError

    def bound(self, params: torch.Tensor) -> torch.Tensor:
        """Keep raw regressed parameters in a safe range (identity maps to itself).

        Used by :class:`stn.SpatialTransformer` with ``bound=True`` against the failure where θ
        drifts until the sampled window leaves the image and the output goes blank.
        """
        return params

    def __repr__(self) -> str:
        return f"{type(self).__name__}(n_params={self.n_params})"


class _MatrixTransform(Transform):
    """Families that are a 3×3 matrix acting on homogeneous ``(x, y, 1)``."""

    def matrix(self, params: torch.Tensor) -> torch.Tensor:
        """The ``(B, 3, 3)`` matrix that maps output points to input points."""
        raise NotImplementedError


class Affine(_MatrixTransform):
    """Affine backward mapping ``[x_s, y_s]^T = θ [x_t, y_t, 1]^T`` with θ of shape 2×3.

    >>> Affine().grid(Affine().identity(4), (28, 28)).shape
    torch.Size([4, 28, 28, 2])
    """

    name = "affine"
    n_params = 6

    def _identity_row(self) -> torch.Tensor:
        return torch.tensor([[1.0, 0.0, 0.0, 0.0, 1.0, 0.0]])

    def _linear_entries(self, n: int) -> tuple[int, ...]:
        return (0, 1, 3, 4)

    def grid(self, params: torch.Tensor, out_size: Size) -> torch.Tensor:
        # F.affine_grid's grid (align_corners=False) to float rounding, as one GEMM on a cached
        # constant: ATen builds its base grid on every call and multiplies B small (HW, 3) @ (3, 2)
        # products, so on the CPU its grid cost more than the sampler (bench/README.md).
        params = _check_params(params, 6, self.name)
        h, w = _check_size(out_size)
        return F.linear(params, _grid_matrix(2, h, w, str(params.device), params.dtype)).view(-1, h, w, 2)

    def matrix(self, params: torch.Tensor) -> torch.Tensor:
        params = _check_params(params, 6, self.name)
        last = params.new_tensor([0.0, 0.0, 1.0]).expand(params.shape[0], 1, 3)
        return torch.cat([params.view(-1, 2, 3), last], dim=1)

    def bound(self, params: torch.Tensor) -> torch.Tensor:
        # tanh keeps the window centre inside the image; the linear part stays free so
        # rotations of any angle remain reachable.
        params = _check_params(params, 6, self.name)
        return torch.where(_entry_mask(6, (2, 5), str(params.device)), torch.tanh(params), params)


class Attention(_MatrixTransform):
    """Attention: isotropic scale ``s`` and translation ``(tx, ty)``, θ = [[s, 0, tx], [0, s, ty]].

    With ``s < 1`` the output is a zoomed crop of the input centred at ``(tx, ty)``.

    Args:
        min_scale: floor on ``|s|`` applied by :meth:`bound`.
    """

    name = "attention"
    n_params = 3

    def __init__(self, min_scale: float = 0.1) -> None:
        self.min_scale = float(min_scale)

    def _identity_row(self) -> torch.Tensor:
        return torch.tensor([[1.0, 0.0, 0.0]])

    def _linear_entries(self, n: int) -> tuple[int, ...]:
        return (0,)

    def to_affine(self, params: torch.Tensor) -> torch.Tensor:
        """``(B, 3)`` attention parameters → ``(B, 6)`` affine θ."""
        params = _check_params(params, 3, self.name)
        s, tx, ty = params.unbind(dim=1)
        zero = torch.zeros_like(s)
        return torch.stack([s, zero, tx, zero, s, ty], dim=1)

    def grid(self, params: torch.Tensor, out_size: Size) -> torch.Tensor:
        # Same grid as Affine().grid(self.to_affine(params)), written as t + s · base: one fused
        # broadcast op instead of building θ and a (B, HW, 3) @ (B, 3, 2) product; about 2x faster
        # forward + backward on CPU (bench/bench_transforms.py).
        params = _check_params(params, 3, self.name)
        h, w = _check_size(out_size)
        base = base_grid((h, w), params.device, params.dtype)  # (H, W, 2)
        s = params[:, 0:1].reshape(-1, 1, 1, 1)  # (B, 1, 1, 1)
        t = params[:, 1:3].reshape(-1, 1, 1, 2)  # (B, 1, 1, 2)
        return torch.addcmul(t, s, base)  # (B, H, W, 2)

    def matrix(self, params: torch.Tensor) -> torch.Tensor:
        return Affine().matrix(self.to_affine(params))

    def bound(self, params: torch.Tensor) -> torch.Tensor:
        params = _check_params(params, 3, self.name)
        scale = _entry_mask(3, (0,), str(params.device))
        return torch.where(scale, params.abs().clamp(min=self.min_scale), torch.tanh(params))


class Projective(_MatrixTransform):
    """Projective backward mapping by a homography ``H`` (h33 = 1), applied to ``(x, y, 1)``.

    Source point = ``(u / w, v / w)`` with ``(u, v, w) = H (x, y, 1)``, for the output pixels
    with ``w > eps``: the input plane is in front of the camera there.

    Behind the camera (``w <= eps``) no input point is seen: those pixels get the source point
    :attr:`BEHIND` = ``(2, 2)``, half the input's size beyond its bottom-right edge, where no
    bilinear or nearest tap reaches it. The sampler reads its padding there (0 with
    ``padding="zeros"``, the default; the bottom-right pixel with ``"border"``), not the
    mirrored content that ``u / w`` with ``w < 0`` points at. Those pixels have no gradient;
    the grid stays finite in both passes, and every pixel with ``w > eps`` is ``u / w`` exactly.
    """

    name = "projective"
    n_params = 8
    BEHIND = 2.0  # source coordinate (x and y) of a pixel behind the camera: off the input

    def __init__(self, eps: float = 1e-3) -> None:
        self.eps = float(eps)

    def _identity_row(self) -> torch.Tensor:
        return torch.tensor([[1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0]])

    def _linear_entries(self, n: int) -> tuple[int, ...]:
        return (0, 1, 3, 4)

    def matrix(self, params: torch.Tensor) -> torch.Tensor:
        params = _check_params(params, 8, self.name)
        return torch.cat([params, torch.ones_like(params[:, :1])], dim=1).view(-1, 3, 3)

    def grid(self, params: torch.Tensor, out_size: Size) -> torch.Tensor:
        h, w = _check_size(out_size)
        m = self.matrix(params)  # (B, 3, 3)
        # (B, 3, HW) = M @ [x y 1]^T: one GEMM for the batch. Planes, not Affine.grid's (B, H, W, 3)
        # layout: the division below on rows of 3 ran 22% slower at batch 256 (bench/README.md).
        uvw = torch.matmul(m, _homogeneous_base_t(h, w, str(m.device), m.dtype))  # m: θ cast to floats
        den = uvw[:, 2:]  # (B, 1, HW): w, proportional to depth
        # The clamp only keeps the discarded branch finite (and its gradient, zero, not NaN);
        # where w > eps it is w itself, so those pixels are u / w bit for bit.
        src = torch.where(den > self.eps, uvw[:, :2] / den.clamp(min=self.eps), self.BEHIND)
        return src.transpose(1, 2).unflatten(1, (h, w))  # a strided view

    def bound(self, params: torch.Tensor) -> torch.Tensor:
        params = _check_params(params, 8, self.name)
        dev = str(params.device)
        # perspective terms clamped: keep the horizon off-image
        p = torch.where(_entry_mask(8, (6, 7), dev), params.clamp(-0.5, 0.5), params)
        return torch.where(_entry_mask(8, (2, 5), dev), torch.tanh(params), p)


def _tps_kernel(r2: torch.Tensor) -> torch.Tensor:
    """Radial basis U(r) = r² log r², with U(0) = 0."""
    return r2 * torch.log(r2.clamp(min=1e-12))


@_constant_cache(maxsize=32)
def _tps_weights(k: int, h: int, w: int, device: str, dtype: torch.dtype) -> torch.Tensor:
    """``(H·W, K²)`` matrix mapping control-point targets to every output pixel's source point.

    Solved once per (K, H, W, device, dtype), in float64, then cached: the TPS interpolant is
    linear in the targets, so a grid is one matrix product per call.
    """
    ctrl = control_points(k, dtype=torch.float64)  # (n, 2)
    n = ctrl.shape[0]
    kmat = _tps_kernel(torch.cdist(ctrl, ctrl).pow(2))  # (n, n)
    p = torch.cat([torch.ones(n, 1, dtype=torch.float64), ctrl], dim=1)  # (n, 3)
    system = torch.zeros(n + 3, n + 3, dtype=torch.float64)
    system[:n, :n] = kmat
    system[:n, n:] = p
    system[n:, :n] = p.T
    inv = torch.linalg.inv(system)[:, :n]  # (n+3, n): targets -> (w, a)
    pts = base_grid((h, w), "cpu", torch.float64).reshape(-1, 2)  # (HW, 2)
    phi = torch.cat(
        [_tps_kernel(torch.cdist(pts, ctrl).pow(2)), torch.ones(h * w, 1, dtype=torch.float64), pts], dim=1
    )  # (HW, n+3)
    return (phi @ inv).to(device=device, dtype=dtype)  # (HW, n)


def control_points(k: int, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Rest positions of a K×K TPS control grid spanning [-1, 1]², ``(K², 2)`` as ``(x, y)``, row-major."""
    lin = torch.linspace(-1.0, 1.0, k, dtype=torch.float64)
    yy, xx = torch.meshgrid(lin, lin, indexing="ij")
    return torch.stack([xx.reshape(-1), yy.reshape(-1)], dim=1).to(device=device, dtype=dtype)


class ThinPlateSpline(Transform):
    """Thin-plate spline on a K×K control grid; parameters are where each control point samples.

    The output's control points sit at their rest positions (:func:`control_points`); the
    spline that sends them to the regressed targets is evaluated at every output pixel.

    Args:
        grid_size: K, control points per side (the paper's 4 → 16 points).
    """

    name = "tps"

    def __init__(self, grid_size: int = 4) -> None:
        try:
            whole = int(grid_size) == grid_size
        except (TypeError, ValueError, OverflowError):  # None, a string, inf, NaN
            whole = False
        if not whole:  # 2.5 was truncated to 2 control points per side without a word
            raise ValueError(f"tps: grid_size must be a whole number of control points per side, got {grid_size!r}")
        if grid_size < 2:
            raise ValueError(f"tps: grid_size must be >= 2, got {grid_size}")
        self.grid_size = int(grid_size)
        self.n_params = 2 * self.grid_size**2

    def _identity_row(self) -> torch.Tensor:
        # float64 so identity(dtype=torch.float64) is exact (linspace rounds 1/3 etc. in float32)
        return control_points(self.grid_size, dtype=torch.float64).reshape(1, -1)

    def grid(self, params: torch.Tensor, out_size: Size) -> torch.Tensor:
        params = _check_params(params, self.n_params, self.name)
        h, w = _check_size(out_size)
        weights = _tps_weights(self.grid_size, h, w, str(params.device), params.dtype)  # (HW, n)
        targets = params.view(-1, self.grid_size**2, 2)  # (B, n, 2)
        # One (B, n) @ (n, HW) GEMM per coordinate, then x and y interleaved: forward + backward on
        # the CPU ~4x faster than B small (HW, n) @ (n, 2) products at 16 points, ~25x at 256
        # (bench/README.md).
        weights_t = weights.T  # (n, HW), a view
        grid = torch.stack([targets[..., 0] @ weights_t, targets[..., 1] @ weights_t], dim=-1)  # (B, HW, 2)
        return grid.view(-1, h, w, 2)

    def bound(self, params: torch.Tensor) -> torch.Tensor:
        return _check_params(params, self.n_params, self.name).clamp(-1.5, 1.5)

    def __repr__(self) -> str:
        return f"ThinPlateSpline(grid_size={self.grid_size}, n_params={self.n_params})"


_FAMILIES: dict[str, type[Transform]] = {
    "affine": Affine,
    "attention": Attention,
    "projective": Projective,
    "tps": ThinPlateSpline,
}


def affine_embedding(transform: Transform) -> torch.Tensor:
    """The matrix ``M`` ``(n_params, 6)`` with ``transform``'s parameters ``M @ θ`` for the same
    mapping as the affine θ (row-major 2×3): a family that contains every affine map can start
    where an affine model ended.

    Affine → identity; projective → θ in its first six entries, no perspective; TPS → each
    control point's target ``θ (x_i, y_i, 1)``, since a thin-plate spline through affinely
    moved points is that affine map. Attention holds no rotation or shear: refused.

    >>> t = get("tps", grid_size=2)
    >>> torch.allclose(affine_embedding(t) @ Affine().identity()[0], t.identity()[0].float())
    True
    """
    if isinstance(transform, (Affine, Projective)):
        return torch.eye(transform.n_params, 6)
    if isinstance(transform, ThinPlateSpline):
        pts = control_points(transform.grid_size, dtype=torch.float64)  # (n, 2)
        xy1 = torch.cat([pts, torch.ones(len(pts), 1, dtype=torch.float64)], dim=1)  # (n, 3)
        m = torch.zeros(len(pts), 2, 6, dtype=torch.float64)
        m[:, 0, 0:3] = xy1  # target x = θ11 x + θ12 y + θ13
        m[:, 1, 3:6] = xy1  # target y = θ21 x + θ22 y + θ23
        return m.reshape(-1, 6).float()
    raise ValueError(f"{transform.name}: cannot represent every affine map; start it from scratch.")


def tps_affine_fit(params: torch.Tensor, grid_size: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """Split TPS parameters ``(B, 2·K²)`` into the closest affine map and the bending on top of it.

    Returns θ ``(B, 6)``, the affine map that best moves the rest control points onto their
    targets (least squares), and each point's offset from it ``(B, K², 2)`` in normalised units:
    zero offsets mean the spline *is* that affine map (:func:`affine_embedding` inverted).

    >>> t = get("tps")
    >>> theta, offset = tps_affine_fit(t.identity())
    >>> [round(v, 6) + 0.0 for v in theta[0].tolist()], float(offset.abs().max()) < 1e-6
    ([1.0, 0.0, 0.0, 0.0, 1.0, 0.0], True)
    """
    m = affine_embedding(ThinPlateSpline(grid_size)).double()  # (2K², 6)
    if params.ndim != 2 or params.shape[1] != m.shape[0]:
        raise ValueError(f"tps: expected params of shape (B, {m.shape[0]}) for a {grid_size}×{grid_size} grid, got {tuple(params.shape)}")
    p = params.double()
    theta = p @ torch.linalg.pinv(m).T  # (B, 6)
    offset = (p - theta @ m.T).view(p.shape[0], -1, 2)
    return theta.to(params.dtype), offset.to(params.dtype)


def names() -> list[str]:
    """Names accepted by :func:`get`."""
    return list(_FAMILIES)


def get(name: str, **options: object) -> Transform:
    """Build a transform family by name: ``affine``, ``attention``, ``projective`` or ``tps``.

    >>> get("tps", grid_size=4).n_params
    32
    """
    cls = _FAMILIES.get(name) if isinstance(name, str) else None
    if cls is None:
        raise ValueError(f"Unknown transform {name!r}. Known: {', '.join(_FAMILIES)}.")
    _check_options(cls, options)
    return cls(**options)  # type: ignore[arg-type]


@functools.cache
def _options_of(cls: type[Transform]) -> tuple[str, ...]:
    """The keyword options ``cls``'s constructor takes (cached: a signature costs tens of µs)."""
    return tuple(inspect.signature(cls).parameters)


def _check_options(cls: type[Transform], options: dict[str, object]) -> None:
    """Refuse options that ``cls`` does not take, naming them and those it does (a TypeError from its
    constructor named only the class)."""
    known = _options_of(cls)
    unknown = [k for k in options if k not in known]
    if unknown:
        takes = f"its options are {', '.join(known)}" if known else "it takes none"
        raise ValueError(f"unknown transform options {', '.join(map(repr, unknown))} for {cls.name}: {takes}")


@dataclass(frozen=True)
class AffineReading:
    """A 2×3 θ read as the operations a person would name (for display).

    θ's linear part is written ``R(rotation) · diag(scale_x, scale_y) · [[1, shear], [0, 1]]``; the
    translation is where the centre of the output samples in the input.
    """

    rotation_deg: float
    scale_x: float
    scale_y: float
    shear: float
    tx: float
    ty: float


def decompose_affine(theta: torch.Tensor) -> AffineReading:
    """Read one θ (``(2, 3)`` or ``(6,)``) as rotation (degrees), scale x/y, shear and translation.

    >>> r = decompose_affine(torch.tensor([[0.0, -1.0, 0.1], [1.0, 0.0, 0.2]]))
    >>> round(r.rotation_deg), round(r.scale_x, 3), round(r.tx, 3)
    (90, 1.0, 0.1)
    """
    t = torch.as_tensor(theta, dtype=torch.float64).reshape(2, 3)
    a, b, tx = t[0].tolist()
    c, d, ty = t[1].tolist()
    # QR-style split: first column gives rotation and x scale, the rest shear and y scale.
    sx = math.hypot(a, c)
    rot = math.atan2(c, a)
    cos, sin = math.cos(rot), math.sin(rot)
    shear_sy = cos * b + sin * d  # = scale_x' * shear, in the rotated frame
    sy = -sin * b + cos * d
    shear = shear_sy / sx if sx > 1e-12 else 0.0
    return AffineReading(math.degrees(rot), sx, sy, shear, tx, ty)


def compose_affine(
    rotation_deg: float = 0.0,
    scale_x: float = 1.0,
    scale_y: float = 1.0,
    shear: float = 0.0,
    tx: float = 0.0,
    ty: float = 0.0,
) -> torch.Tensor:
    """Inverse of :func:`decompose_affine`: the ``(2, 3)`` θ of a reading.

    >>> compose_affine(90.0).round().tolist()
    [[0.0, -1.0, 0.0], [1.0, 0.0, 0.0]]
    """
    r = math.radians(rotation_deg)
    rot = torch.tensor([[math.cos(r), -math.sin(r)], [math.sin(r), math.cos(r)]], dtype=torch.float64)
    upper = torch.tensor([[scale_x, scale_x * shear], [0.0, scale_y]], dtype=torch.float64)
    lin = rot @ upper
    return torch.cat([lin, torch.tensor([[tx], [ty]], dtype=torch.float64)], dim=1).float()
