"""The classifier's first convolution, with a fast input gradient on the CPU.

In an ST-CNN the classifier reads the transformer's crop, and the crop depends on θ: training
back-propagates through the classifier's first convolution *into its input*, a gradient the
plain CNN (whose input is data) never computes. For a one-channel input that gradient is a
transposed convolution to a single output channel, for which oneDNN's CPU kernel is slow: on a
batch of 256 28×28 crops, 40–53 ms against 4.7 ms for the forward, most of the ST-CNN's
training overhead over its CNN (bench/README.md).

:class:`InputGradConv2d` computes it as a matrix product (in blocks of output positions) and k×k
shifted additions instead (9–17 ms, depending on the day's machine), and is an ordinary ``nn.Conv2d``
otherwise (same parameters, same forward, same results to float rounding).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["InputGradConv2d", "conv_input_grad"]

_GEMM_BLOCK = 4096  # columns (output positions) per product in conv_input_grad


def conv_input_grad(grad_out: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """The gradient of ``F.conv2d(x, weight)`` (stride 1, no padding) with respect to a
    one-channel ``x``: ``F.conv_transpose2d(grad_out, weight)``, computed as a GEMM over blocks of
    output positions and k×k shifted additions.

    Args:
        grad_out: ``(B, C, H, W)``, any memory format (channels-last needs no copy).
        weight: ``(C, 1, kh, kw)``.

    Returns:
        ``(B, 1, H + kh - 1, W + kw - 1)``.
    """
    b, c, h, w = grad_out.shape
    kh, kw = weight.shape[-2:]
    g = grad_out.permute(0, 2, 3, 1).reshape(-1, c)  # (B·H·W, C): a view when channels-last
    wt = weight.reshape(c, kh * kw).t()
    taps = g.new_empty(kh * kw, g.shape[0])  # one (B, H, W) plane per tap
    # In blocks of columns: the GEMM reads g transposed, and a block of it stays in cache while
    # it is packed (on 256 24×24 maps 25% faster than one product over all columns, bench/README.md).
    for start in range(0, g.shape[0], _GEMM_BLOCK):
        stop = min(start + _GEMM_BLOCK, g.shape[0])
        torch.mm(wt, g[start:stop].t(), out=taps[:, start:stop])
    taps = taps.view(kh * kw, b, h, w)
    out = grad_out.new_zeros(b, h + kh - 1, w + kw - 1)
    for k in range(kh * kw):
        i, j = divmod(k, kw)
        out[:, i : i + h, j : j + w] += taps[k]
    return out.unsqueeze(1)


def _in_weight_dtype(grad_out: torch.Tensor, x: torch.Tensor, weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``grad_out`` ``(B, C, H, W)`` and ``x`` ``(B, 1, H + kh - 1, W + kw - 1)`` cast to ``weight``'s dtype.

    Under autocast the forward's ``F.conv2d`` ran in bfloat16 or float16, so ``grad_out`` (and ``x``, if an
    earlier layer made it so) is in that precision while the weight stays float32: the products of the
    backward need one dtype. The weight's is the one: the gradients are cast back to each input's dtype
    by autograd, and on the CPU the float32 product is also the fast one (bfloat16 took ~10x longer
    than float32 for 256 24×24 maps on a CPU without bfloat16 instructions, as did oneDNN's bfloat16
    transposed convolution).
    """
    return grad_out.to(weight.dtype), x.to(weight.dtype)


class _Conv(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(x, weight)
        return F.conv2d(x, weight)

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:  # type: ignore[override]
        x, weight = ctx.saved_tensors
        if grad_out.dtype != weight.dtype or x.dtype != weight.dtype:
            grad_out, x = _in_weight_dtype(grad_out, x, weight)
        if torch.is_grad_enabled():  # create_graph=True: a second derivative needs differentiable operations
            return (torch.nn.grad.conv2d_input(x.shape, weight, grad_out) if ctx.needs_input_grad[0] else None,
                    torch.nn.grad.conv2d_weight(x, weight.shape, grad_out) if ctx.needs_input_grad[1] else None)
        grad_x = conv_input_grad(grad_out, weight) if ctx.needs_input_grad[0] else None
        grad_w = None
        if ctx.needs_input_grad[1]:
            grad_w = torch.ops.aten.convolution_backward(
                grad_out, x, weight, None, (1, 1), (0, 0), (1, 1), False, (0, 0), 1, (False, True, False)
            )[1]
        return grad_x, grad_w


class InputGradConv2d(nn.Conv2d):
    """``nn.Conv2d`` whose gradient into a one-channel CPU input takes :func:`conv_input_grad`.

    The fast path applies only where it is exact and needed: training on the CPU with a batched
    input that requires grad, one input channel, stride 1, no padding, dilation 1, no bias. Everywhere
    else (inference, tracing, the GPU, the CNN baseline whose input is data) it is ``nn.Conv2d``.
    Under autocast the forward runs in autocast's precision, as ``nn.Conv2d``'s does, and the
    backward in the weight's (:func:`_in_weight_dtype`).

    >>> conv = InputGradConv2d(1, 8, 5, bias=False)
    >>> x = torch.rand(2, 1, 12, 12, requires_grad=True)
    >>> conv(x).sum().backward()
    >>> tuple(x.grad.shape)
    (2, 1, 12, 12)
    """

    def _fast(self, x: torch.Tensor) -> bool:
        return (
            x.requires_grad
            and x.ndim == 4
            and torch.is_grad_enabled()
            and x.device.type == "cpu"
            and self.in_channels == 1
            and self.groups == 1
            and self.bias is None
            and self.stride == (1, 1)
            and self.padding == (0, 0)
            and self.dilation == (1, 1)
            and not torch.jit.is_scripting()
            and not torch.jit.is_tracing()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C_in, H, W)`` → ``(B, C_out, H', W')``, as ``nn.Conv2d``."""
        if self._fast(x):
            return _Conv.apply(x, self.weight)
        return super().forward(x)
