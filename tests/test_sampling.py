"""Tests for :mod:`stn.sampling`: ``sample`` (grid_sample), the paper's kernel sum and its taps."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import stn
from stn import transforms as T
from stn.sampling import bilinear_reference, bilinear_taps, sample, to_normalized, to_pixel

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")

TOL = {torch.float32: 1e-5, torch.float64: 1e-10}
SIZES = [(7, 7), (8, 8), (5, 9)]


def _assert_close(actual: torch.Tensor, expected: torch.Tensor, dtype: torch.dtype) -> None:
    torch.testing.assert_close(actual, expected, atol=TOL[dtype], rtol=0)


def _border_grid(size: tuple[int, int], dtype, device) -> torch.Tensor:
    """Source points on the hard cases: pixel edges ±1, the outermost pixel centres, half a pixel
    outside, far outside, and points between the last centre and the edge. ``(1, N, N, 2)``."""
    h, w = size
    xs = torch.tensor(
        [-2.0, -1.0 - 1 / w, -1.0, -1 + 0.5 / w, -1 + 1 / w, 0.0, 1 - 1 / w, 1 - 0.5 / w, 1.0, 1 + 1 / w, 2.0]
    )
    ys = torch.tensor(
        [-2.0, -1.0 - 1 / h, -1.0, -1 + 0.5 / h, -1 + 1 / h, 0.0, 1 - 1 / h, 1 - 0.5 / h, 1.0, 1 + 1 / h, 2.0]
    )
    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([xx, yy], dim=-1)[None].to(device, dtype)


class TestCoordinates:
    def test_pixel_centres_and_edges(self):
        # align_corners=False: -1 is the left edge of pixel 0 (pixel units -0.5), +1 the right edge of the last
        assert to_pixel(torch.tensor([-1.0, 1.0]), 4).tolist() == [-0.5, 3.5]
        assert to_pixel(torch.tensor([-0.75, 0.75]), 4).tolist() == [0.0, 3.0]

    @pytest.mark.parametrize("size", [1, 4, 7])
    def test_round_trip(self, size, dtype):
        c = torch.linspace(-1.5, 1.5, 13, dtype=dtype)
        _assert_close(to_normalized(to_pixel(c, size), size), c, dtype)


class TestSample:
    def test_smoke(self):
        x = torch.rand(2, 1, 28, 28)
        assert sample(x, T.Affine().grid(T.Affine().identity(2), (14, 14))).shape == (2, 1, 14, 14)
        assert stn.sample is sample

    @pytest.mark.parametrize("mode", ["bilinear", "nearest"])
    @pytest.mark.parametrize("padding", ["zeros", "border"])
    def test_shapes(self, mode, padding, dtype, device):
        x = torch.rand(3, 4, 7, 9, dtype=dtype, device=device)
        grid = torch.rand(3, 5, 6, 2, dtype=dtype, device=device) * 2 - 1
        out = sample(x, grid, mode=mode, padding=padding)
        assert out.shape == (3, 4, 5, 6) and out.dtype == dtype and out.device.type == device.type

    def test_grid_dtype_follows_input(self):
        x = torch.rand(1, 1, 5, 5)
        grid = T.base_grid((5, 5), dtype=torch.float64)[None]
        out = sample(x, grid)
        assert out.dtype == torch.float32
        torch.testing.assert_close(out, x, atol=1e-6, rtol=0)

    @pytest.mark.parametrize(
        ("x_shape", "grid_shape", "message"),
        [
            ((1, 5, 5), (1, 5, 5, 2), r"expected input of shape \(B, C, H, W\), got \(1, 5, 5\)"),
            ((2, 1, 5, 5), (2, 5, 5, 3), r"expected grid of shape \(2, H_out, W_out, 2\), got \(2, 5, 5, 3\)"),
            ((2, 1, 5, 5), (3, 5, 5, 2), r"expected grid of shape \(2, H_out, W_out, 2\), got \(3, 5, 5, 2\)"),
            ((2, 1, 5, 5), (2, 25, 2), r"expected grid of shape \(2, H_out, W_out, 2\), got \(2, 25, 2\)"),
        ],
    )
    @pytest.mark.parametrize("fn", [sample, bilinear_reference], ids=["sample", "reference"])
    def test_bad_shapes(self, fn, x_shape, grid_shape, message):
        with pytest.raises(ValueError, match=message):
            fn(torch.zeros(x_shape), torch.zeros(grid_shape))

    @pytest.mark.parametrize("dtype", [torch.uint8, torch.int64, torch.bool, torch.complex64], ids=str)
    @pytest.mark.parametrize("fn", [sample, bilinear_reference], ids=["sample", "reference"])
    def test_non_float_input_is_refused_in_a_sentence(self, fn, dtype):
        """Not grid_sample's 'not implemented for Byte': what the input is and how to convert it."""
        with pytest.raises(TypeError, match=rf"input is {dtype}: .*convert it to floats in \[0, 1\], e\.g\. x\.float\(\) / 255"):
            fn(torch.zeros(2, 1, 5, 5, dtype=dtype), torch.zeros(2, 3, 3, 2))

    @pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.int64], ids=str)
    def test_real_grid_of_another_dtype_is_cast(self, dtype):
        """A real grid of another dtype than the input's is read in the input's (no error)."""
        x = torch.rand(1, 1, 5, 5)
        out = sample(x, torch.zeros(1, 3, 3, 2, dtype=dtype))
        assert out.dtype == torch.float32
        torch.testing.assert_close(out, x[:, :, 2:3, 2:3].expand(1, 1, 3, 3))

    def test_complex_grid_is_refused(self):
        """Cast to the input's dtype it would lose its imaginary part with only a warning."""
        with pytest.raises(TypeError, match=r"grid is torch\.complex64: source points are real coordinates"):
            sample(torch.zeros(1, 1, 5, 5), torch.zeros(1, 3, 3, 2, dtype=torch.complex64))

    @pytest.mark.parametrize("which", ["input", "grid"])
    def test_non_tensor_is_refused(self, which):
        args = {"input": torch.zeros(1, 1, 5, 5), "grid": torch.zeros(1, 3, 3, 2)}
        args[which] = args[which].tolist()
        with pytest.raises(TypeError, match=rf"{which} must be a torch\.Tensor, got list: convert it with torch\.as_tensor"):
            sample(args["input"], args["grid"])

    def test_bad_mode(self):
        with pytest.raises(ValueError, match=r"mode must be 'bilinear' or 'nearest', got 'bicubic'"):
            sample(torch.zeros(1, 1, 4, 4), torch.zeros(1, 4, 4, 2), mode="bicubic")

    @pytest.mark.parametrize("fn", [sample, bilinear_reference], ids=["sample", "reference"])
    def test_bad_padding(self, fn):
        with pytest.raises(ValueError, match=r"padding must be 'zeros' or 'border', got 'reflection'"):
            fn(torch.zeros(1, 1, 4, 4), torch.zeros(1, 4, 4, 2), padding="reflection")

    @pytest.mark.parametrize("padding", ["zeros", "border"])
    def test_nearest_returns_input_values(self, padding, dtype, device):
        g = torch.Generator().manual_seed(0)
        x = torch.rand(2, 3, 7, 9, generator=g, dtype=torch.float64).to(device, dtype)
        grid = (torch.rand(2, 11, 13, 2, generator=g, dtype=torch.float64) * 2.4 - 1.2).to(device, dtype)
        out = sample(x, grid, mode="nearest", padding=padding)
        allowed = x.reshape(2, 3, -1, 1, 1)
        hit = (out.unsqueeze(2) == allowed).any(dim=2)  # every output value is exactly one of its input's
        if padding == "zeros":
            hit |= out == 0
        assert hit.all()
        # and it is the pixel whose cell contains the point
        inside = (grid.abs() < 1 - 1e-3).all(-1)  # (B, Ho, Wo)
        col = to_pixel(grid[..., 0], 9).round().long().clamp(0, 8)
        row = to_pixel(grid[..., 1], 7).round().long().clamp(0, 6)
        b = torch.arange(2, device=device)[:, None, None].expand_as(row)
        expected = x[b, :, row, col].permute(0, 3, 1, 2)  # (B, C, Ho, Wo)
        mask = inside.unsqueeze(1).expand_as(out)
        assert torch.equal(out[mask], expected[mask])

    def test_bilinear_midpoint(self, dtype, device):
        # halfway between pixel centres 0 and 1 of a row: the mean of the two
        x = torch.tensor([[[[2.0, 6.0, 10.0, 14.0]]]], dtype=dtype, device=device)
        grid = torch.tensor([[[[to_normalized(torch.tensor(0.5), 4).item(), 0.0]]]], dtype=dtype, device=device)
        _assert_close(sample(x, grid), torch.tensor([[[[4.0]]]], dtype=dtype, device=device), dtype)

    def test_gradcheck(self):
        g = torch.Generator().manual_seed(1)
        x = torch.rand(2, 2, 5, 6, generator=g, dtype=torch.float64, requires_grad=True)
        grid = (torch.rand(2, 3, 4, 2, generator=g, dtype=torch.float64) * 2.2 - 1.1).requires_grad_()
        for padding in ("zeros", "border"):
            assert torch.autograd.gradcheck(
                lambda x, grid, padding=padding: sample(x, grid, padding=padding), (x, grid)
            )


class TestBilinearReference:
    """The paper's kernel sum must be grid_sample(align_corners=False) exactly."""

    @pytest.mark.parametrize("padding", ["zeros", "border"])
    @pytest.mark.parametrize("size", SIZES)
    def test_matches_grid_sample_random(self, size, padding, dtype, device):
        g = torch.Generator().manual_seed(2)
        x = torch.rand(2, 3, *size, generator=g, dtype=torch.float64).to(device, dtype)
        # 1.5 × the image: a third of the points fall outside, many within a pixel of an edge
        grid = (torch.rand(2, 6, 11, 2, generator=g, dtype=torch.float64) * 3 - 1.5).to(device, dtype)
        expected = F.grid_sample(x, grid, mode="bilinear", padding_mode=padding, align_corners=False)
        torch.testing.assert_close(bilinear_reference(x, grid, padding), expected, atol=1e-5, rtol=0)

    @pytest.mark.parametrize("padding", ["zeros", "border"])
    @pytest.mark.parametrize("size", SIZES)
    def test_matches_grid_sample_borders(self, size, padding, dtype, device):
        x = torch.rand(1, 2, *size, dtype=dtype, device=device) + 0.5  # no zeros: a dropped tap shows
        grid = _border_grid(size, dtype, device)
        expected = F.grid_sample(x, grid, mode="bilinear", padding_mode=padding, align_corners=False)
        out = bilinear_reference(x, grid, padding)
        torch.testing.assert_close(out, expected, atol=1e-5, rtol=0)
        if padding == "zeros":
            assert (out[..., 0, :] == 0).all() and (out[..., -1, :] == 0).all()  # |y| = 2: far outside
        else:
            assert (out > 0).all()

    def test_default_padding_is_zeros(self):
        x = torch.rand(1, 1, 4, 4) + 1
        grid = torch.full((1, 1, 1, 2), 3.0)
        assert bilinear_reference(x, grid).item() == 0.0

    @pytest.mark.parametrize("size", SIZES)
    def test_identity(self, size, dtype, device):
        x = torch.rand(2, 1, *size, dtype=dtype, device=device)
        grid = T.base_grid(size, device, dtype).expand(2, *size, 2)
        _assert_close(bilinear_reference(x, grid), x, dtype)

    @pytest.mark.parametrize("padding", ["zeros", "border"])
    def test_gradients_match_grid_sample(self, padding):
        g = torch.Generator().manual_seed(3)
        x = torch.rand(2, 2, 5, 7, generator=g, dtype=torch.float64)
        grid = torch.rand(2, 4, 3, 2, generator=g, dtype=torch.float64) * 2.4 - 1.2
        w = torch.rand(2, 2, 4, 3, generator=g, dtype=torch.float64)
        grads = []
        for fn in (lambda x, g: bilinear_reference(x, g, padding), lambda x, g: sample(x, g, padding=padding)):
            xi, gi = x.clone().requires_grad_(), grid.clone().requires_grad_()
            (fn(xi, gi) * w).sum().backward()
            grads.append((xi.grad, gi.grad))
        torch.testing.assert_close(grads[0][0], grads[1][0], atol=1e-10, rtol=0)
        torch.testing.assert_close(grads[0][1], grads[1][1], atol=1e-10, rtol=0)

    def test_gradcheck(self):
        g = torch.Generator().manual_seed(4)
        x = torch.rand(1, 2, 4, 5, generator=g, dtype=torch.float64, requires_grad=True)
        grid = (torch.rand(1, 3, 3, 2, generator=g, dtype=torch.float64) * 2.4 - 1.2).requires_grad_()
        for padding in ("zeros", "border"):
            assert torch.autograd.gradcheck(
                lambda x, grid, padding=padding: bilinear_reference(x, grid, padding), (x, grid)
            )


class TestBilinearTaps:
    def test_smoke(self):
        assert bilinear_taps((0.0, 0.0), (4, 4)) == [(1, 1, 0.25), (1, 2, 0.25), (2, 1, 0.25), (2, 2, 0.25)]

    def test_on_pixel_centre(self):
        # pixel (row 2, col 5) of a 5×9 image: a single tap of weight 1
        x, y = (2 * 5 + 1) / 9 - 1, (2 * 2 + 1) / 5 - 1
        assert bilinear_taps((x, y), (5, 9)) == [(2, 5, 1.0)]

    @pytest.mark.parametrize("size", SIZES)
    def test_weights_sum_to_one_inside(self, size):
        g = torch.Generator().manual_seed(5)
        h, w = size
        for _ in range(50):
            # inside the hull of the pixel centres: every tap lands in the image
            px = torch.rand(2, generator=g, dtype=torch.float64) * torch.tensor([w - 1, h - 1])
            point = (to_normalized(px[0], w).item(), to_normalized(px[1], h).item())
            taps = bilinear_taps(point, size)
            assert 1 <= len(taps) <= 4
            assert sum(t[2] for t in taps) == pytest.approx(1.0, abs=4e-6)
            assert all(0 <= r < h and 0 <= c < w and wt > 0 for r, c, wt in taps)

    def test_near_edge_and_outside(self):
        # a quarter pixel left of the first centre: the left neighbour is off-image
        x = to_normalized(torch.tensor(-0.25), 8).item()
        taps = bilinear_taps((x, 0.0), (8, 8))
        assert [(r, c) for r, c, _ in taps] == [(3, 0), (4, 0)]
        assert sum(t[2] for t in taps) == pytest.approx(0.75)
        assert bilinear_taps((1.5, 0.0), (8, 8)) == []
        assert bilinear_taps((0.0, -1.0 - 1 / 8), (8, 8)) == []

    @pytest.mark.parametrize("size", SIZES)
    def test_matches_reference(self, size):
        g = torch.Generator().manual_seed(6)
        x = torch.rand(1, 1, *size, generator=g)
        for _ in range(30):
            point = (torch.rand(2, generator=g) * 2.4 - 1.2).tolist()  # some near or past the edge
            grid = torch.tensor(point).view(1, 1, 1, 2)
            expected = bilinear_reference(x, grid, "zeros").item()
            got = sum(wt * x[0, 0, r, c].item() for r, c, wt in bilinear_taps(tuple(point), size))
            assert got == pytest.approx(expected, abs=1e-5)


@CUDA
@pytest.mark.parametrize("padding", ["zeros", "border"])
def test_cuda_reference_matches_cpu(padding):
    g = torch.Generator().manual_seed(7)
    x = torch.rand(2, 3, 5, 9, generator=g)
    grid = torch.rand(2, 4, 6, 2, generator=g) * 3 - 1.5
    cpu = bilinear_reference(x, grid, padding)
    torch.testing.assert_close(bilinear_reference(x.cuda(), grid.cuda(), padding).cpu(), cpu, atol=1e-5, rtol=0)
    torch.testing.assert_close(sample(x.cuda(), grid.cuda(), padding=padding).cpu(), cpu, atol=1e-5, rtol=0)
