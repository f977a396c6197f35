"""Samplers: read the input at the grid's source points.

The fast path is ``F.grid_sample`` with ``align_corners=False`` (the convention of
:mod:`stn.transforms`). Beside it lives the paper's bilinear kernel written as the sum it is,

    V_i = Σ_n Σ_m U_nm · max(0, 1 - |x_i - m|) · max(0, 1 - |y_i - n|)

with ``(x_i, y_i)`` the source point in pixel units. It is slow (it touches every input pixel
for every output pixel) and exists to cross-check ``grid_sample`` in the tests and to explain
a single output pixel in the app (:func:`bilinear_taps`).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

__all__ = ["sample", "bilinear_reference", "bilinear_taps", "to_pixel", "to_normalized"]

Mode = Literal["bilinear", "nearest"]
Padding = Literal["zeros", "border"]


def to_pixel(coord: torch.Tensor, size: int) -> torch.Tensor:
    """Normalised coordinate → pixel index units (pixel ``j``'s centre is ``j``), align_corners=False."""
    return ((coord + 1) * size - 1) / 2


def to_normalized(pixel: torch.Tensor, size: int) -> torch.Tensor:
    """Inverse of :func:`to_pixel`."""
    return (2 * pixel + 1) / size - 1


def _check(input: torch.Tensor, grid: torch.Tensor) -> None:
    """Refuse what ``F.grid_sample`` would refuse with a kernel's name (or read wrongly), in a sentence."""
    if torch.jit.is_tracing():  # a trace is made for one shape (and its sizes are tensors: no Python tests on them)
        return
    if not (isinstance(input, torch.Tensor) and isinstance(grid, torch.Tensor)):
        name, value = ("grid", grid) if isinstance(input, torch.Tensor) else ("input", input)
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}: convert it with "
                        f"torch.as_tensor({name})")
    if input.ndim != 4:
        raise ValueError(f"expected input of shape (B, C, H, W), got {tuple(input.shape)}: "
                         "give a batch of images (x[None] makes one of a single (C, H, W) image)")
    if grid.ndim != 4 or grid.shape[-1] != 2 or grid.shape[0] != input.shape[0]:
        raise ValueError(
            f"expected grid of shape ({input.shape[0]}, H_out, W_out, 2), got {tuple(grid.shape)}: "
            "give one (H_out, W_out) plane of source points (x, y) per input image"
        )
    if not input.is_floating_point():  # grid_sample's CPU kernel names itself and the dtype, nothing more
        raise TypeError(f"input is {input.dtype}: the sampler interpolates real floating-point pixels, so convert "
                        "it to floats in [0, 1], e.g. x.float() / 255 for 8-bit images")
    if grid.is_complex():  # cast to the input's dtype below, it would lose its imaginary part with only a warning
        raise TypeError(f"grid is {grid.dtype}: source points are real coordinates, so give a real grid "
                        "(e.g. grid.real if the imaginary part is zero)")


def sample(
    input: torch.Tensor,
    grid: torch.Tensor,
    mode: Mode = "bilinear",
    padding: Padding = "zeros",
) -> torch.Tensor:
    """Sample ``input`` at the source points of ``grid``.

    Args:
        input: ``(B, C, H, W)`` image batch of floats (integer pixels are refused: ``x.float() / 255``).
        grid: ``(B, H_out, W_out, 2)`` source points ``(x, y)`` in normalised coordinates; a real
            dtype other than the input's is cast to it.
        mode: ``"bilinear"`` (the paper's kernel, differentiable in the grid) or ``"nearest"``.
        padding: value outside the input: ``"zeros"`` or ``"border"`` (edge pixels repeat).

    Returns:
        ``(B, C, H_out, W_out)``.

    >>> from stn.transforms import get
    >>> x = torch.rand(2, 1, 28, 28)
    >>> sample(x, get("affine").grid(get("affine").identity(2), (14, 14))).shape
    torch.Size([2, 1, 14, 14])
    """
    _check(input, grid)
    if mode not in ("bilinear", "nearest"):
        raise ValueError(f"mode must be 'bilinear' or 'nearest', got {mode!r}")
    if padding not in ("zeros", "border"):
        raise ValueError(f"padding must be 'zeros' or 'border', got {padding!r}")
    if grid.dtype != input.dtype:  # checked here, not by .to(): a traced graph then has no no-op cast
        grid = grid.to(input.dtype)
    return F.grid_sample(input, grid, mode=mode, padding_mode=padding, align_corners=False)


def bilinear_reference(input: torch.Tensor, grid: torch.Tensor, padding: Padding = "zeros") -> torch.Tensor:
    """The paper's bilinear sampling kernel as an explicit sum over all input pixels.

    Same contract as :func:`sample` with ``mode="bilinear"``. Memory grows as
    ``B · H_out · W_out · (H + W)``: for tests and single pixels, not for training.
    """
    _check(input, grid)
    if padding not in ("zeros", "border"):
        raise ValueError(f"padding must be 'zeros' or 'border', got {padding!r}")
    _, _, h, w = input.shape
    x = to_pixel(grid[..., 0], w)  # (B, Ho, Wo)
    y = to_pixel(grid[..., 1], h)
    if padding == "border":
        x = x.clamp(0, w - 1)
        y = y.clamp(0, h - 1)
    m = torch.arange(w, dtype=input.dtype, device=input.device)
    n = torch.arange(h, dtype=input.dtype, device=input.device)
    kx = torch.relu(1 - (x.unsqueeze(-1) - m).abs())  # (B, Ho, Wo, W)
    ky = torch.relu(1 - (y.unsqueeze(-1) - n).abs())  # (B, Ho, Wo, H)
    # The kernel is separable, so the double sum is two contractions.
    return torch.einsum("bcnm,bijn,bijm->bcij", input, ky, kx)


def bilinear_taps(point: tuple[float, float], in_size: tuple[int, int]) -> list[tuple[int, int, float]]:
    """The input pixels that feed one source point, with their bilinear weights.

    Args:
        point: source point ``(x, y)`` in normalised coordinates.
        in_size: input size ``(H, W)``.

    Returns:
        Up to 4 ``(row, col, weight)`` with weight > 0, for pixels inside the input; their
        weights sum to 1 inside the image and to less near an edge (zero padding).

    >>> bilinear_taps((0.0, 0.0), (4, 4))
    [(1, 1, 0.25), (1, 2, 0.25), (2, 1, 0.25), (2, 2, 0.25)]
    """
    h, w = in_size
    x = float(to_pixel(torch.tensor(float(point[0])), w))
    y = float(to_pixel(torch.tensor(float(point[1])), h))
    x0, y0 = int(torch.floor(torch.tensor(x))), int(torch.floor(torch.tensor(y)))
    taps = []
    for row in (y0, y0 + 1):
        for col in (x0, x0 + 1):
            weight = max(0.0, 1 - abs(x - col)) * max(0.0, 1 - abs(y - row))
            if weight > 0 and 0 <= row < h and 0 <= col < w:
                taps.append((row, col, round(weight, 6)))
    return taps
