"""The spatial transformer module: localisation net → grid generator → sampler."""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from stn.localization import build_localizer, positive_int, positive_ints, positive_number
from stn.sampling import Mode, Padding, sample
from stn.transforms import Transform, get, names

__all__ = ["SpatialTransformer", "check_input"]


def _transform(transform: object) -> Transform:
    """A family name or a :class:`Transform` as a :class:`Transform`, or a sentence naming ``transform``."""
    if isinstance(transform, str):
        return get(transform)
    if not isinstance(transform, Transform):
        raise TypeError(f"transform must be a family name ({', '.join(names())}) or a stn.transforms.Transform, "
                        f"got {type(transform).__name__} {transform!r}: e.g. transform=\"affine\"")
    return transform


def check_input(
    x: torch.Tensor,
    in_shape: tuple[int, int, int],
    dtype: torch.dtype,
    what: str = "this SpatialTransformer",
    weights: str = "the transformer's weights",
    fix: str = "resize the input or build one with in_shape=(C, H, W) of your data",
) -> None:
    """Refuse an input ``x`` that a module made for ``(B, *in_shape)``, with weights of ``dtype``, cannot
    read: a sentence naming it (``what``, ``weights``) and saying ``fix``, not a matrix product's complaint
    deep inside. Shared by :class:`SpatialTransformer` and :class:`stn.STClassifier` (CNN baselines too)."""
    if not isinstance(x, torch.Tensor):
        numpy = type(x).__module__ == "numpy"
        raise TypeError(f"{what} reads a torch.Tensor (B, {', '.join(map(str, in_shape))}), got {type(x).__name__}"
                        + ("; torch.from_numpy(x) makes one" if numpy else ""))
    c, h, w = in_shape
    if x.ndim != 4 or x.shape[1] != c or x.shape[2] != h or x.shape[3] != w:
        raise ValueError(f"{what} was built for inputs (B, {c}, {h}, {w}) (in_shape={tuple(in_shape)}), "
                         f"got {tuple(x.shape)}; {fix}")
    if not x.is_floating_point():
        raise TypeError(f"the input is {x.dtype}: pixels must be floats, e.g. in [0, 1] (x.to({dtype}) / 255 "
                        "for 8-bit images)")
    if x.dtype != dtype and not torch.is_autocast_enabled(x.device.type):  # autocast mixes them by design
        raise TypeError(f"the input is {x.dtype} but {weights} are {dtype}: convert one to "
                        f"the other (x.to({dtype}) or module.to({x.dtype}))")


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
        heads = positive_int(heads, "heads", "the number of transformers in parallel, e.g. 1 (2 for the paper's 2×ST)")
        self.in_shape = positive_ints(in_shape, 3, "in_shape (C, H, W)", (1, 28, 28))
        self.out_size = (positive_ints(out_size, 2, "out_size (H_out, W_out)", (28, 28)) if out_size is not None
                         else self.in_shape[1:])
        if mode not in ("bilinear", "nearest"):
            raise ValueError(f"mode must be 'bilinear' or 'nearest', got {mode!r}")
        if padding not in ("zeros", "border"):
            raise ValueError(f"padding must be 'zeros' or 'border', got {padding!r}")
        if loc_options is not None and not isinstance(loc_options, Mapping):
            raise TypeError(f"loc_options must be a dict of the localisation net's options, got "
                            f"{type(loc_options).__name__} {loc_options!r}: e.g. {{'channels': 8}}, or None")
        start_scale = positive_number(start_scale, "start_scale", "the first window's side as a fraction of the "
                                      "input's, e.g. 1.0 (the whole input, the paper's start)")
        self.transform = _transform(transform)
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
        if not torch.jit.is_tracing():  # a traced graph is made for one shape and dtype
            self._check_input(x)
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

    def _check_input(self, x: torch.Tensor) -> None:
        # The localisation net is made for one input size: say so here, not in a matrix product deep inside it.
        check_input(x, self.in_shape, self.localization.head.weight.dtype)

    def extra_repr(self) -> str:
        return f"transform={self.transform!r}, out_size={self.out_size}, heads={self.heads}, bound={self.bound}"
