"""Localisation networks: regress the transform parameters θ from the input.

Both nets end in a plain ``nn.Linear`` named ``head`` that :class:`stn.SpatialTransformer`
initialises to the identity (zero weights, identity bias), the paper's starting point.
Layer sizes are derived from the input shape, never hard-coded.
"""

from __future__ import annotations

import functools
import inspect
import math
import numbers
from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["LIGHT_SIDE", "BlockMaxPool", "CNNLocalizer", "FCLocalizer", "build_localizer", "light_options"]

# The light net max-pools any canvas down to about this side before its first conv.
LIGHT_SIDE = 14


def positive_int(value: object, what: str, hint: str) -> int:
    """``value`` as an int >= 1, or a TypeError / ValueError naming ``what`` and saying to give ``hint``.

    Not a bool (``True`` is no count) nor a float, even a whole one: a size or a count given as
    ``1.5``, ``2.0`` or ``"2"`` is a mistake upstream, which ``int()`` would hide.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{what} must be an int, got {type(value).__name__} {value!r}: give {hint}")
    if value < 1:
        raise ValueError(f"{what} must be >= 1, got {value}: give {hint}")
    return int(value)


def positive_number(value: object, what: str, hint: str) -> float:
    """``value`` as a finite float > 0, or a TypeError / ValueError naming ``what`` and saying to give ``hint``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{what} must be a number, got {type(value).__name__} {value!r}: give {hint}")
    if not 0 < value < math.inf:
        raise ValueError(f"{what} must be a finite number > 0, got {value!r}: give {hint}")
    return float(value)


def positive_ints(values: Iterable[float], n: int, what: str, example: tuple[int, ...] | None = None) -> tuple[int, ...]:
    """``values`` as ``n`` positive ints (whole floats too), or a ValueError that names ``what`` and shows ``example``."""
    try:
        out = tuple(int(v) for v in values)
        exact = not isinstance(values, str) and all(int(v) == v for v in values)
    except (TypeError, ValueError, OverflowError):
        out, exact = (), False
    if len(out) != n or not exact or min(out) < 1:
        raise ValueError(f"{what} must be {n} positive whole numbers, got {values!r}"
                         + (f": e.g. {example}" if example else ""))
    return out


class BlockMaxPool(nn.MaxPool2d):
    """``nn.MaxPool2d(k)`` (stride ``k``, the remainder rows and columns dropped) where no gradient flows.

    The localisation net pools the transformer's input, which is data when the transformer comes
    first, and in inference nothing carries a gradient at all. Then the pool is taken as pairwise
    maxima of ``k`` strided views per axis, about 10x faster on the CPU than ATen's kernel for a
    one-channel batch (0.11 ms instead of 1.1 ms on 256 28×28 images; ``bench/README.md``); same
    values, NaN included. With a gradient to carry, or a small input (batch-1 inference, where it
    saves nothing), it is ``nn.MaxPool2d``.

    >>> x = torch.rand(2, 1, 9, 8)
    >>> torch.equal(BlockMaxPool(2)(x), nn.MaxPool2d(2)(x))
    True
    """

    def __init__(self, k: int) -> None:
        super().__init__(k)
        self.k = int(k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` → ``(B, C, H // k, W // k)``."""
        # A graph made by TorchScript, a trace or an export has one pooling operation, whatever the batch.
        if (torch.jit.is_scripting() or torch.jit.is_tracing() or torch.compiler.is_compiling()
                or (x.requires_grad and torch.is_grad_enabled()) or x.numel() < 65536):
            return F.max_pool2d(x, self.k)
        return self._strided_max(x)

    @torch.jit.unused
    def _strided_max(self, x: torch.Tensor) -> torch.Tensor:
        k = self.k
        h, w = x.shape[-2] // k * k, x.shape[-1] // k * k
        rows = functools.reduce(torch.maximum, (x[..., i:h:k, :w] for i in range(k)))
        return functools.reduce(torch.maximum, (rows[..., j::k] for j in range(k)))


def _flat_size(body: nn.Module, in_shape: tuple[int, int, int]) -> int:
    with torch.no_grad():
        return int(body(torch.zeros(1, *in_shape)).numel())


class CNNLocalizer(nn.Module):
    """The paper's MNIST localisation CNN.

    maxpool ``pool`` → conv ``channels``@k×k → ReLU → maxpool 2 → conv ``channels``@k×k → ReLU →
    FC ``hidden`` → ReLU → FC ``n_out``.

    Args:
        in_shape: ``(C, H, W)`` of the input.
        n_out: number of regressed numbers.
        channels: filters per conv layer (paper: 20).
        kernel: conv kernel size (paper: 5).
        hidden: width of the hidden FC layer (paper: 50).
        pool: the first max-pool's size and stride (paper: 2); :func:`light_options` pools
            further so that the net costs a few percent of the classifier.

    >>> CNNLocalizer((1, 42, 42), 6)(torch.zeros(3, 1, 42, 42)).shape
    torch.Size([3, 6])
    """

    def __init__(
        self,
        in_shape: tuple[int, int, int],
        n_out: int,
        channels: int = 20,
        kernel: int = 5,
        hidden: int = 50,
        pool: int = 2,
    ) -> None:
        super().__init__()
        c, h, w = positive_ints(in_shape, 3, "CNNLocalizer: in_shape (C, H, W)", (1, 28, 28))
        channels = positive_int(channels, "CNNLocalizer: channels", "the filters per conv layer, e.g. 20 (the paper's)")
        kernel = positive_int(kernel, "CNNLocalizer: kernel", "the conv kernel's side, e.g. 5 (the paper's)")
        hidden = positive_int(hidden, "CNNLocalizer: hidden", "the hidden layer's width, e.g. 50 (the paper's)")
        pool = positive_int(pool, "CNNLocalizer: pool", "the first max-pool's size, e.g. 2 (the paper's; 1: none)")
        if min(h, w) // pool < 4:
            raise ValueError(f"CNNLocalizer: input {h}x{w} too small for a first max-pool of {pool}")
        pad = kernel // 2
        self.body = nn.Sequential(
            BlockMaxPool(pool) if pool > 1 else nn.Identity(),
            nn.Conv2d(c, channels, kernel, padding=pad),
            nn.ReLU(inplace=True),
            BlockMaxPool(2),  # nn.MaxPool2d(2) in training; in inference 6-11% off the ST's forward (bench/README.md)
            nn.Conv2d(channels, channels, kernel, padding=pad),
            nn.ReLU(inplace=True),
            nn.Flatten(),
        )
        self.fc = nn.Sequential(nn.Linear(_flat_size(self.body, in_shape), hidden), nn.ReLU(inplace=True))
        self.head = nn.Linear(hidden, n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` → ``(B, n_out)``."""
        return self.head(self.fc(self.body(x)))


class FCLocalizer(nn.Module):
    """A fully connected localisation net: flatten → (FC → ReLU) × len(hidden) → FC ``n_out``.

    The default is the paper's ST-FCN net (two 32-unit layers): 25 K multiply-adds on 28×28, three
    matrix products, so the transformer costs 3–6% of an ST-CNN's forward at batch 256 on the CPU,
    where the localisation CNN costs 21–40% (``bench/README.md``, ``stn train --localization fc``).

    >>> FCLocalizer((1, 28, 28), 3, hidden=(32,))(torch.zeros(2, 1, 28, 28)).shape
    torch.Size([2, 3])
    """

    def __init__(self, in_shape: tuple[int, int, int], n_out: int, hidden: Iterable[int] = (32, 32)) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        width = math.prod(positive_ints(in_shape, 3, "FCLocalizer: in_shape (C, H, W)", (1, 28, 28)))
        for h in _widths(hidden):
            layers += [nn.Linear(width, h), nn.ReLU(inplace=True)]
            width = h
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(width, n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C, H, W)`` → ``(B, n_out)``."""
        return self.head(self.body(x))


def _widths(hidden: object) -> tuple[int, ...]:
    """FCLocalizer's ``hidden`` (any iterable: a JSON config gives a list) as a tuple of layer widths."""
    hint = "a sequence of layer widths, e.g. (32, 32) (the paper's), (32,) for one layer or () for none"
    if isinstance(hidden, (str, bytes)) or not isinstance(hidden, Iterable):
        raise TypeError(f"FCLocalizer: hidden must be {hint}, got {type(hidden).__name__} {hidden!r}")
    return tuple(positive_int(h, "FCLocalizer: each hidden width", hint) for h in hidden)


def light_options(in_shape: tuple[int, int, int]) -> dict:
    """``loc_options`` of the light localisation CNN for an input ``(C, H, W)``.

    8 channels, a 32-wide hidden layer, and a first max-pool that brings the canvas to about
    :data:`LIGHT_SIDE` pixels (28×28 → 14, 42×42 → 14, 56×56 → 14): 0.13 M multiply-adds,
    against about 4 M for the classifier on a 28×28 crop and 0.6–2.5 M for the paper's net.

    >>> light_options((1, 42, 42))
    {'channels': 8, 'hidden': 32, 'pool': 3}
    """
    side = min(in_shape[1], in_shape[2])
    return {"channels": 8, "hidden": 32, "pool": max(1, round(side / LIGHT_SIDE))}


_NETS: dict[str, type[nn.Module]] = {"cnn": CNNLocalizer, "fc": FCLocalizer}


def build_localizer(kind: str, in_shape: tuple[int, int, int], n_out: int, **options: object) -> nn.Module:
    """``"cnn"`` → :class:`CNNLocalizer`, ``"fc"`` → :class:`FCLocalizer`; ``options`` go to its constructor."""
    net = _NETS.get(kind) if isinstance(kind, str) else None
    if net is None:
        raise ValueError(f"Unknown localisation net {kind!r}. Known: cnn, fc.")
    known = list(inspect.signature(net).parameters)[2:]  # after in_shape and n_out
    unknown = [k for k in options if k not in known]
    if unknown:
        raise ValueError(f"unknown loc_options {', '.join(map(repr, unknown))} for the {kind} localisation net: "
                         f"its options are {', '.join(known)}")
    return net(in_shape, n_out, **options)
