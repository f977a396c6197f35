"""The classifier's first convolution: a fast input gradient, the same numbers as nn.Conv2d."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from stn.conv import InputGradConv2d, conv_input_grad
from stn.model import ConvClassifier, ModelConfig, STClassifier


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("kernel", [(5, 5), (3, 4)])
def test_input_grad_is_the_transposed_convolution(memory_format, kernel) -> None:
    g = torch.Generator().manual_seed(0)
    grad_out = torch.randn(3, 6, 9, 7, generator=g, dtype=torch.float64).contiguous(memory_format=memory_format)
    weight = torch.randn(6, 1, *kernel, generator=g, dtype=torch.float64)
    got = conv_input_grad(grad_out, weight)
    assert got.shape == (3, 1, 9 + kernel[0] - 1, 7 + kernel[1] - 1)
    torch.testing.assert_close(got, F.conv_transpose2d(grad_out, weight))


def test_input_grad_over_several_column_blocks(monkeypatch) -> None:
    """The product runs in blocks of output positions; blocks that do not divide the positions
    evenly (and a last, short one) give the same gradient as one product."""
    import stn.conv

    g = torch.Generator().manual_seed(1)
    grad_out = torch.randn(3, 5, 8, 6, generator=g).contiguous(memory_format=torch.channels_last)  # 144 positions
    weight = torch.randn(5, 1, 5, 5, generator=g)
    want = F.conv_transpose2d(grad_out.contiguous(), weight)
    for block in (1, 7, 48, 144, 1000):
        monkeypatch.setattr(stn.conv, "_GEMM_BLOCK", block)
        torch.testing.assert_close(conv_input_grad(grad_out, weight), want)


def test_gradients_match_nn_conv2d() -> None:
    """Both gradients, input and weight, as nn.Conv2d's autograd gives them (gradcheck in float64)."""
    torch.manual_seed(0)
    fast = InputGradConv2d(1, 4, 5, bias=False).double()
    x = torch.rand(2, 1, 10, 11, dtype=torch.float64, requires_grad=True)
    assert fast._fast(x)
    assert torch.autograd.gradcheck(_apply, (x, fast.weight))
    plain = nn.Conv2d(1, 4, 5, bias=False).double()
    plain.load_state_dict(fast.state_dict())
    x2 = x.detach().clone().requires_grad_()
    seed = torch.randn(2, 4, 6, 7, dtype=torch.float64)
    (fast(x) * seed).sum().backward()
    (plain(x2) * seed).sum().backward()
    torch.testing.assert_close(x.grad, x2.grad)
    torch.testing.assert_close(fast.weight.grad, plain.weight.grad)


def test_second_derivatives_match_nn_conv2d() -> None:
    """With create_graph=True (a gradient penalty, a Hessian-vector product) the gradient is itself
    differentiable: gradgradcheck in float64, and an ST-CNN's input-gradient penalty backpropagates."""
    torch.manual_seed(0)
    fast = InputGradConv2d(1, 3, 3, bias=False).double()
    x = torch.rand(2, 1, 6, 7, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradgradcheck(_apply, (x, fast.weight))
    model = STClassifier(ModelConfig("r", (28, 28), transform="affine", localization="fc")).train()
    image = torch.rand(2, 1, 28, 28, requires_grad=True)
    (g,) = torch.autograd.grad(model(image).sum(), image, create_graph=True)
    g.pow(2).sum().backward()
    first = next(m for m in model.classifier.modules() if isinstance(m, InputGradConv2d))
    assert first.weight.grad is not None and first.weight.grad.abs().sum() > 0
    assert all(p.grad is not None for p in model.st.localization.parameters())


def test_unbatched_input_takes_the_plain_path() -> None:
    conv = InputGradConv2d(1, 4, 3, bias=False)
    x = torch.rand(1, 7, 7, requires_grad=True)  # (C, H, W), as nn.Conv2d accepts
    assert not conv._fast(x)
    conv(x).sum().backward()
    assert x.grad.shape == (1, 7, 7)


def _apply(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    from stn.conv import _Conv

    return _Conv.apply(x, w)


def test_plain_path_where_the_fast_one_does_not_apply() -> None:
    conv = InputGradConv2d(1, 4, 5, bias=False)
    assert not conv._fast(torch.rand(1, 1, 8, 8))  # data: no input gradient to compute
    with torch.no_grad():
        assert not conv._fast(torch.rand(1, 1, 8, 8, requires_grad=True))
    for other in (InputGradConv2d(2, 4, 5, bias=False), InputGradConv2d(1, 4, 5), InputGradConv2d(1, 4, 5, padding=2, bias=False)):
        assert not other._fast(torch.rand(1, other.in_channels, 8, 8, requires_grad=True))


def test_st_cnn_training_step_is_unchanged() -> None:
    """An ST-CNN's loss gradients, every parameter, with the fast first convolution and with nn.Conv2d."""
    torch.manual_seed(0)
    model = STClassifier(ModelConfig(dataset="r", input_size=(28, 28), transform="affine")).train()
    x, y = torch.rand(8, 1, 28, 28), torch.randint(0, 10, (8,))

    def grads() -> dict[str, torch.Tensor]:
        torch.manual_seed(1)  # the same dropout mask
        model.zero_grad()
        F.cross_entropy(model(x)[:, 0], y).backward()
        return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}

    fast = grads()
    first = model.classifier.features[0]
    assert isinstance(first, InputGradConv2d)
    plain = nn.Conv2d(1, first.out_channels, 5, bias=False)
    plain.weight = first.weight
    model.classifier.features[0] = plain
    slow = grads()
    assert fast.keys() == slow.keys() and any(k.startswith("st.") for k in fast)
    for k in fast:
        torch.testing.assert_close(fast[k], slow[k], rtol=1e-4, atol=1e-6, msg=k)


def test_state_dict_keys_unchanged() -> None:
    """Weights saved before this layer existed load as they are."""
    keys = set(ConvClassifier((1, 28, 28)).state_dict())
    assert "features.0.weight" in keys and not any("fast" in k for k in keys)


def _with_plain_first_conv(model: STClassifier) -> STClassifier:
    """A copy of ``model`` whose first convolution is ``nn.Conv2d`` (the same weight, copied)."""
    import copy

    plain = copy.deepcopy(model)
    first = plain.classifier.features[0]
    conv = nn.Conv2d(1, first.out_channels, first.kernel_size, bias=False).to(first.weight.dtype)
    conv.weight = first.weight
    plain.classifier.features[0] = conv
    return plain


def _step_grads(model: STClassifier, x: torch.Tensor, y: torch.Tensor, autocast: bool = False) -> dict[str, torch.Tensor]:
    """Every parameter's gradient of a cross-entropy step, the forward under CPU bfloat16 autocast if asked."""
    torch.manual_seed(1)  # the same dropout mask
    model.zero_grad()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        logits = model(x)
    F.cross_entropy(logits[:, 0].float(), y).backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("transform", ["affine", "projective", "tps", "attention"])
def test_st_cnn_trains_under_autocast(transform) -> None:
    """Mixed precision on the CPU (bfloat16 autocast): an ST-CNN's step runs, and every gradient is
    nn.Conv2d's to bfloat16 rounding (the fast backward computes in float32, nn.Conv2d's in bfloat16)."""
    torch.manual_seed(0)
    model = STClassifier(ModelConfig("r", (28, 28), transform=transform, localization="fc")).train()
    with torch.no_grad():  # off the identity start, whose zero head weight leaves the body without a gradient
        model.st.localization.head.weight.normal_(std=0.01)
    x, y = torch.rand(8, 1, 28, 28), torch.randint(0, 10, (8,))
    fast = _step_grads(model, x, y, autocast=True)
    slow = _step_grads(_with_plain_first_conv(model), x, y, autocast=True)
    assert fast.keys() == slow.keys() and any(k.startswith("st.") for k in fast)
    for k in fast:
        assert fast[k].dtype == torch.float32 and slow[k].abs().sum() > 0, k
        err = (fast[k] - slow[k]).norm() / slow[k].norm().clamp(min=1e-12)
        assert err < 0.05, f"{k}: relative error {float(err):.3g}"


def test_layer_under_autocast_is_nn_conv2d() -> None:
    """The layer alone under bfloat16 autocast: nn.Conv2d's output (same dtype, same values) and its
    gradients to bfloat16 rounding, for a float32 and a bfloat16 input; with create_graph too."""
    torch.manual_seed(0)
    fast = InputGradConv2d(1, 6, 5, bias=False)
    plain = nn.Conv2d(1, 6, 5, bias=False)
    plain.load_state_dict(fast.state_dict())
    seed = torch.randn(3, 6, 8, 9)
    for dtype in (torch.float32, torch.bfloat16):
        x = torch.rand(3, 1, 12, 13).to(dtype).requires_grad_()
        x2 = x.detach().clone().requires_grad_()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out, want = fast(x), plain(x2)
        assert out.dtype == want.dtype == torch.bfloat16
        torch.testing.assert_close(out, want, rtol=0, atol=0)
        fast.zero_grad(), plain.zero_grad()
        (out.float() * seed).sum().backward()
        (want.float() * seed).sum().backward()
        assert x.grad.dtype == dtype and fast.weight.grad.dtype == torch.float32
        torch.testing.assert_close(x.grad.float(), x2.grad.float(), rtol=2e-2, atol=2e-2)
        torch.testing.assert_close(fast.weight.grad, plain.weight.grad, rtol=2e-2, atol=5e-2)
    x = torch.rand(2, 1, 9, 9, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = fast(x)
    (g,) = torch.autograd.grad(out.float().pow(2).sum(), x, create_graph=True)
    fast.zero_grad()
    g.pow(2).sum().backward()
    assert fast.weight.grad is not None and torch.isfinite(fast.weight.grad).all()


def test_float64_st_cnn_step_matches_nn_conv2d() -> None:
    """A float64 ST-CNN's step: every gradient nn.Conv2d's to float64 rounding."""
    torch.manual_seed(0)
    model = STClassifier(ModelConfig("r", (28, 28), transform="affine", localization="fc")).double().train()
    x, y = torch.rand(4, 1, 28, 28, dtype=torch.float64), torch.randint(0, 10, (4,))
    fast = _step_grads(model, x, y)
    slow = _step_grads(_with_plain_first_conv(model), x, y)
    assert fast.keys() == slow.keys()
    for k in fast:
        assert fast[k].dtype == torch.float64
        torch.testing.assert_close(fast[k], slow[k], msg=k)


@pytest.mark.parametrize("autocast", [False, True], ids=["f32", "bf16-autocast"])
def test_eval_model_under_inference_mode(autocast) -> None:
    """An eval-mode ST-CNN under torch.inference_mode(), with and without autocast: nn.Conv2d's logits."""
    torch.manual_seed(0)
    model = STClassifier(ModelConfig("r", (28, 28), transform="affine")).eval()
    plain = _with_plain_first_conv(model)
    x = torch.rand(4, 1, 28, 28)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        got, want = model(x), plain(x)
    assert got.dtype == want.dtype and got.shape == (4, 1, 10)
    torch.testing.assert_close(got, want, rtol=0, atol=0)
