"""The spatial transformer module: localisation net → grid generator → sampler."""

from __future__ import annotations

import torch
from torch import nn

from stn.localization import build_localizer
from stn.sampling import Mode, Padding, sample
from stn.transforms import Transform, get

__all__ = ["SpatialTransformer"]


class SpatialTransformer(nn.Module):
    """A differentiable module that learns where to look (Jaderberg et al., 2015).

    For each of ``heads`` parallel transformers (the paper's 2×ST / 4×ST) the localisation net
    regresses parameters θ, the transform turns θ into a sampling grid of ``out_size``, and
    the sampler reads the input there. All heads share the localisation body; its last layer
    outputs ``heads × n_params`` numbers and starts at the identity (zero weights, identity
    bias), so training begins from "look at the whole image".

    Args:
        in_shape: ``(C, H, W)`` of the input.
        transform: a family name (``affine``, ``attention``, ``projective``, ``tps``) or a
            :class:`~stn.transforms.Transform`.
        out_size: ``(H_out, W_out)`` of each warped output; defaults to the input size.
        heads: number of parallel transformers.
        localization: ``"cnn"`` (the paper's) or ``"fc"``; ``loc_options`` go to its constructor.
        mode, padding: sampler settings, see :func:`stn.sample`.
        bound: squash θ into a safe range (tanh on translation, floor on scale) against the
            failure where θ runs away and the output goes blank.
        start_scale: the localisation net starts at ``transform.zoom(start_scale)`` instead of
            the identity (1.0, the paper's start): the centred window of that size.

    Example:
        >>> st = SpatialTransformer((1, 42, 42), "affine", out_size=(28, 28))
        >>> y, theta = st(torch.rand(8, 1, 42, 42))
        >>> tuple(y.shape), tuple(theta.shape)
        ((8, 1, 28, 28), (8, 6))
    """

    def __init__(
        self,
        in_shape: tuple[int, int, int],
        transform: str | Transform = "affine",
        out_size: tuple[int, int] | None = None,
        heads: int = 1,
        localization: str = "cnn",
        loc_options: dict | None = None,
        mode: Mode = "bilinear",
        padding: Padding = "zeros",
        bound: bool = False,
        start_scale: float = 1.0,
    ) -> None:
        super().__init__()
        if heads < 1:
            raise ValueError(f"heads must be >= 1, got {heads}")
        self.transform = get(transform) if isinstance(transform, str) else transform
        self.in_shape = tuple(in_shape)
        self.out_size = tuple(out_size) if out_size is not None else (in_shape[1], in_shape[2])
        self.heads = heads
        self.mode: Mode = mode
        self.padding: Padding = padding
        self.bound = bound
        n = self.transform.n_params
        self.localization = build_localizer(localization, self.in_shape, heads * n, **(loc_options or {}))
        head = self.localization.head
        nn.init.zeros_(head.weight)
        with torch.no_grad():
            head.bias.copy_(self.transform.zoom(start_scale, heads).reshape(-1))

    def regress(self, x: torch.Tensor) -> list[torch.Tensor]:
        """θ for each head: a list of ``heads`` tensors ``(B, n_params)``."""
        raw = self.localization(x)  # (B, heads · n_params)
        if self.heads == 1:  # no view and slice: at batch 1 every operation counts
            params = [raw]
        else:
            raw = raw.view(x.shape[0], self.heads, self.transform.n_params)
            params = [raw[:, k] for k in range(self.heads)]
        return [self.transform.bound(p) for p in params] if self.bound else params

    def warp(self, x: torch.Tensor, params: torch.Tensor, mode: Mode | None = None) -> torch.Tensor:
        """Sample ``x`` ``(B, C, H, W)`` with given θ ``(B, n_params)`` → ``(B, C, H_out, W_out)``."""
        grid = self.transform.grid(params, self.out_size)
        return sample(x, grid, mode=mode or self.mode, padding=self.padding)

    def forward_heads(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Warped outputs and θ, one entry per head, whatever the number of heads."""
        params = self.regress(x)
        return [self.warp(x, p) for p in params], params

    def forward(self, x: torch.Tensor):
        """``(B, C, H, W)`` → (warped, θ).

        With one head: ``(B, C, H_out, W_out)`` and ``(B, n_params)``; with several: tuples
        of those, one per head.
        """
        outs, params = self.forward_heads(x)
        if self.heads == 1:
            return outs[0], params[0]
        return tuple(outs), tuple(params)

    def extra_repr(self) -> str:
        return f"transform={self.transform!r}, out_size={self.out_size}, heads={self.heads}, bound={self.bound}"
