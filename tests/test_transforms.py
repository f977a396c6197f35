"""Tests for :mod:`stn.transforms`, the grid generator.

Layout follows kornia's: one class per function or family, each with smoke / shapes /
exception-message / gradcheck / identity and round-trip properties. ``dtype`` and ``device``
fixtures are passed to every tensor they concern; tolerances come from ``TOL``.
"""

from __future__ import annotations

import math
import re

import pytest
import torch
import torch.nn.functional as F

import stn
from stn import transforms as T
from stn.sampling import bilinear_reference, sample

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")

# Absolute tolerance per dtype for results that are exact in real arithmetic.
TOL = {torch.float32: 1e-5, torch.float64: 1e-9}

SIZES = [(7, 7), (8, 8), (5, 9)]  # odd, even, non-square
FAMILIES = ["affine", "attention", "projective", "tps"]


def _assert_close(actual: torch.Tensor, expected: torch.Tensor, dtype: torch.dtype) -> None:
    torch.testing.assert_close(actual, expected, atol=TOL[dtype], rtol=0)


def _random_params(name: str, batch: int, generator: torch.Generator, scale: float = 0.15) -> torch.Tensor:
    """Identity plus a random perturbation, float64 on CPU: a generic, non-degenerate warp."""
    tf = T.get(name)
    noise = torch.randn(batch, tf.n_params, generator=generator, dtype=torch.float64) * scale
    if name == "projective":
        noise[:, 6:] *= 0.3  # keep the perspective terms small: no horizon inside the image
    return tf.identity(batch, dtype=torch.float64) + noise


def _affine_params(theta: list[list[float]], dtype=torch.float64, device="cpu") -> torch.Tensor:
    return torch.tensor(theta, dtype=dtype, device=device).reshape(1, 6)


def re_shape(shape: tuple[int, ...]) -> str:
    """``(2, 5)`` as a regular expression."""
    return "\\" + str(tuple(shape)).replace(")", "\\)")


class TestGet:
    def test_names(self):
        assert T.names() == ["affine", "attention", "projective", "tps"]

    @pytest.mark.parametrize(("name", "n_params"), [("affine", 6), ("attention", 3), ("projective", 8), ("tps", 32)])
    def test_n_params(self, name, n_params):
        tf = T.get(name)
        assert tf.name == name
        assert tf.n_params == n_params
        assert tf.identity(5).shape == (5, n_params)

    def test_options(self):
        assert T.get("tps", grid_size=3).n_params == 18
        assert T.get("attention", min_scale=0.25).min_scale == 0.25
        assert T.get("projective", eps=1e-2).eps == 1e-2

    def test_unknown_name(self):
        with pytest.raises(ValueError, match=r"Unknown transform 'afine'\. Known: affine, attention, projective, tps"):
            T.get("afine")

    def test_repr(self):
        assert repr(T.get("affine")) == "Affine(n_params=6)"
        assert repr(T.get("tps", grid_size=3)) == "ThinPlateSpline(grid_size=3, n_params=18)"


class TestBaseGrid:
    def test_smoke(self):
        assert T.base_grid((2, 3)).shape == (2, 3, 2)

    @pytest.mark.parametrize("size", SIZES)
    def test_pixel_centres(self, size, dtype, device):
        h, w = size
        grid = T.base_grid(size, device, dtype)
        assert grid.dtype == dtype and grid.device.type == device.type
        # align_corners=False: pixel j of W has its centre at (2j + 1) / W - 1; x varies along width
        xs = (torch.arange(w, dtype=torch.float64) * 2 + 1) / w - 1
        ys = (torch.arange(h, dtype=torch.float64) * 2 + 1) / h - 1
        _assert_close(grid[0, :, 0], xs.to(device, dtype), dtype)
        _assert_close(grid[:, 0, 1], ys.to(device, dtype), dtype)
        _assert_close(grid[..., 0], grid[:1, :, 0].expand(h, w), dtype)  # x constant down a column

    @pytest.mark.parametrize("size", SIZES)
    def test_matches_affine_grid_identity(self, size, dtype, device):
        eye = torch.tensor([[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]], dtype=dtype, device=device)
        expected = F.affine_grid(eye, [1, 1, *size], align_corners=False)[0]
        _assert_close(T.base_grid(size, device, dtype), expected, dtype)

    @pytest.mark.parametrize("size", [(0, 3), (3, 0), (3,), (1, 2, 3)])
    def test_bad_size(self, size):
        with pytest.raises(ValueError, match=r"expected out_size \(H, W\) with H, W >= 1, got"):
            T.base_grid(size)


@pytest.mark.parametrize("name", FAMILIES)
class TestIdentity:
    """Identity parameters give the base grid and reproduce the input through the sampler."""

    def test_identity_params(self, name, dtype, device):
        tf = T.get(name)
        p = tf.identity(3, device=device, dtype=dtype)
        assert p.shape == (3, tf.n_params) and p.dtype == dtype and p.device.type == device.type
        p[0, 0] = 42.0  # a fresh tensor per call, rows not aliased
        assert tf.identity(1)[0, 0] != 42.0
        assert p[1, 0] != 42.0

    @pytest.mark.parametrize("size", SIZES)
    def test_identity_grid_is_base_grid(self, name, size, dtype, device):
        tf = T.get(name)
        grid = tf.grid(tf.identity(2, device=device, dtype=dtype), size)
        assert grid.shape == (2, *size, 2) and grid.dtype == dtype  # may be a strided view (documented)
        _assert_close(grid, T.base_grid(size, device, dtype).expand(2, *size, 2), dtype)

    def test_a_strided_grid_samples_as_its_copy(self, name, dtype, device):
        """A family's grid, strided view or not, samples as its contiguous copy does, forward and
        backward."""
        tf = T.get(name)
        g = torch.Generator().manual_seed(0)
        p = (tf.identity(3, dtype=dtype) + 0.05 * torch.randn(3, tf.n_params, generator=g, dtype=dtype)).to(device)
        x = torch.rand(3, 2, 11, 13, generator=g, dtype=dtype).to(device)
        p1, p2 = p.clone().requires_grad_(), p.clone().requires_grad_()
        a = sample(x, tf.grid(p1, (9, 7)))
        b = sample(x, tf.grid(p2, (9, 7)).contiguous())
        _assert_close(a, b, dtype)
        w = torch.rand_like(a)
        (a * w).sum().backward()
        (b * w).sum().backward()
        _assert_close(p1.grad, p2.grad, dtype)

    @pytest.mark.parametrize("size", SIZES)
    def test_identity_reproduces_input(self, name, size, dtype, device):
        tf = T.get(name)
        x = torch.rand(2, 3, *size, dtype=dtype, device=device)
        out = stn.sample(x, tf.grid(tf.identity(2, device=device, dtype=dtype), size), mode="bilinear")
        torch.testing.assert_close(out, x, atol=1e-5, rtol=0)

    def test_bound_keeps_identity(self, name, dtype):
        tf = T.get(name)
        p = tf.identity(2, dtype=dtype)
        _assert_close(tf.bound(p), p, dtype)


@pytest.mark.parametrize("name", FAMILIES)
class TestMixedBatch:
    """Different parameters per item: each item equals a separate call with that item alone."""

    def test_grid(self, name, dtype, device):
        g = torch.Generator().manual_seed(1)
        tf = T.get(name)
        p = _random_params(name, 4, g).to(device, dtype)
        grid = tf.grid(p, (5, 9))
        for i in range(4):
            _assert_close(grid[i : i + 1], tf.grid(p[i : i + 1], (5, 9)), dtype)
        assert not torch.allclose(grid[0], grid[1])  # the items really differ

    def test_sample(self, name, dtype, device):
        g = torch.Generator().manual_seed(2)
        tf = T.get(name)
        p = _random_params(name, 3, g).to(device, dtype)
        x = torch.rand(3, 2, 7, 7, generator=g, dtype=torch.float64).to(device, dtype)
        out = stn.sample(x, tf.grid(p, (6, 8)))
        for i in range(3):
            single = stn.sample(x[i : i + 1], tf.grid(p[i : i + 1], (6, 8)))
            _assert_close(out[i : i + 1], single, dtype)


@pytest.mark.parametrize("name", FAMILIES)
class TestGradcheck:
    """Gradients reach the parameters through grid + sampler (the paper's kernel sum and grid_sample), in float64."""

    def test_gradcheck_reference(self, name):
        g = torch.Generator().manual_seed(3)
        tf = T.get(name)
        # Off the identity so no source point sits on a kink of the bilinear kernel.
        p = _random_params(name, 2, g).requires_grad_()
        x = torch.rand(2, 1, 5, 6, generator=g, dtype=torch.float64)  # d/dx: see tests/test_sampling.py
        assert torch.autograd.gradcheck(lambda p: bilinear_reference(x, tf.grid(p, (4, 5))), (p,))

    def test_gradcheck_grid_sample(self, name):
        g = torch.Generator().manual_seed(4)
        tf = T.get(name)
        p = _random_params(name, 2, g).requires_grad_()
        x = torch.rand(2, 1, 5, 6, generator=g, dtype=torch.float64)
        assert torch.autograd.gradcheck(lambda p: stn.sample(x, tf.grid(p, (4, 5))), (p,))

    def test_every_param_gets_gradient(self, name, dtype):
        g = torch.Generator().manual_seed(5)
        tf = T.get(name)
        p = _random_params(name, 2, g).to(dtype).requires_grad_()
        x = torch.rand(2, 1, 9, 9, generator=g, dtype=torch.float64).to(dtype)
        stn.sample(x, tf.grid(p, (8, 8))).square().sum().backward()
        assert p.grad is not None and torch.isfinite(p.grad).all()
        assert (p.grad.abs() > 0).all(), p.grad


class TestAffine:
    def test_smoke(self):
        tf = T.Affine()
        assert tf.grid(tf.identity(4), (28, 28)).shape == (4, 28, 28, 2)

    @pytest.mark.parametrize("shape", [(4,), (2, 5), (2, 2, 3)])
    def test_bad_params(self, shape):
        with pytest.raises(ValueError, match=rf"affine: expected params of shape \(B, 6\), got {re_shape(shape)}"):
            T.Affine().grid(torch.zeros(shape), (4, 4))

    def test_bad_size(self):
        with pytest.raises(ValueError, match=r"expected out_size \(H, W\) with H, W >= 1, got \(0, 4\)"):
            T.Affine().grid(T.Affine().identity(1), (0, 4))

    @pytest.mark.parametrize("size", SIZES)
    def test_matches_affine_grid(self, size, dtype, device):
        theta = torch.randn(3, 2, 3, dtype=dtype, device=device)
        expected = F.affine_grid(theta, [3, 1, *size], align_corners=False)
        _assert_close(T.Affine().grid(theta.reshape(3, 6), size), expected, dtype)

    @pytest.mark.parametrize(("degrees", "k"), [(90.0, 1), (-90.0, -1), (180.0, 2), (270.0, 3)])
    @pytest.mark.parametrize("size", SIZES)
    def test_rotation_is_rot90(self, degrees, k, size, dtype, device):
        """θ = compose_affine(+90°) = [[0, -1, 0], [1, 0, 0]] samples ``out[i, j] = in[j, W-1-i]``:
        that is ``torch.rot90(in, k=1, dims=(-2, -1))``, a counter-clockwise quarter turn as the
        image is displayed (row 0 at the top). -90° is ``k=-1`` (clockwise).

        Non-square inputs are rotated exactly too when the output size is the input's transposed,
        because normalised coordinates span [-1, 1] on both axes.
        """
        x = torch.rand(2, 3, *size, dtype=dtype, device=device)
        theta = T.compose_affine(degrees).to(device, dtype).reshape(1, 6).expand(2, 6)
        out_size = size if k % 2 == 0 else size[::-1]
        out = stn.sample(x, T.Affine().grid(theta, out_size))
        _assert_close(out, torch.rot90(x, k, dims=(-2, -1)), dtype)

    def test_rot90_theta_layout(self):
        assert T.compose_affine(90.0).round().tolist() == [[0.0, -1.0, 0.0], [1.0, 0.0, 0.0]]

    def test_translation_by_one_pixel(self, dtype, device):
        # tx = 2/W moves the source one pixel right: out[..., j] = in[..., j + 1], last column zero
        x = torch.rand(1, 1, 5, 8, dtype=dtype, device=device)
        out = stn.sample(x, T.Affine().grid(_affine_params([[1, 0, 2 / 8], [0, 1, 0]], dtype, device), (5, 8)))
        _assert_close(out[..., :-1], x[..., 1:], dtype)
        _assert_close(out[..., -1], torch.zeros_like(out[..., -1]), dtype)

    def test_matrix(self, dtype, device):
        theta = torch.randn(3, 6, dtype=dtype, device=device)
        m = T.Affine().matrix(theta)
        assert m.shape == (3, 3, 3)
        _assert_close(m[:, :2].reshape(3, 6), theta, dtype)
        _assert_close(m[:, 2], torch.tensor([0.0, 0.0, 1.0], dtype=dtype, device=device).expand(3, 3), dtype)

    @pytest.mark.parametrize("size", SIZES)
    def test_matrix_agrees_with_grid(self, size, dtype):
        theta = torch.randn(2, 6, dtype=dtype)
        m = T.Affine().matrix(theta)  # (B, 3, 3)
        pts = T.base_grid(size, dtype=dtype)
        homog = torch.cat([pts, torch.ones_like(pts[..., :1])], dim=-1)  # (H, W, 3)
        mapped = torch.einsum("bkl,hwl->bhwk", m, homog)
        _assert_close(mapped[..., 2], torch.ones_like(mapped[..., 2]), dtype)
        _assert_close(mapped[..., :2], T.Affine().grid(theta, size), dtype)

    def test_bound(self):
        raw = torch.tensor([[2.0, -0.5, 4.0, 0.3, 3.0, -5.0]])
        b = T.Affine().bound(raw)
        assert torch.equal(b[:, [0, 1, 3, 4]], raw[:, [0, 1, 3, 4]])  # linear part untouched
        assert (b[:, [2, 5]].abs() < 1).all()
        torch.testing.assert_close(b[:, [2, 5]], torch.tanh(raw[:, [2, 5]]))


class TestAttention:
    def test_smoke(self):
        tf = T.Attention()
        assert tf.grid(torch.tensor([[0.5, 0.1, -0.2]]), (6, 10)).shape == (1, 6, 10, 2)

    @pytest.mark.parametrize("shape", [(3,), (2, 6)])
    def test_bad_params(self, shape):
        with pytest.raises(ValueError, match=rf"attention: expected params of shape \(B, 3\), got {re_shape(shape)}"):
            T.Attention().grid(torch.zeros(shape), (4, 4))

    def test_to_affine(self, dtype):
        p = torch.tensor([[0.5, 0.1, -0.2], [2.0, 0.0, 0.3]], dtype=dtype)
        expected = torch.tensor([[0.5, 0, 0.1, 0, 0.5, -0.2], [2.0, 0, 0.0, 0, 2.0, 0.3]], dtype=dtype)
        _assert_close(T.Attention().to_affine(p), expected, dtype)

    def test_grid_and_matrix_equal_affine(self, dtype):
        p = torch.tensor([[0.5, 0.1, -0.2], [1.3, -0.4, 0.0]], dtype=dtype)
        theta = T.Attention().to_affine(p)
        _assert_close(T.Attention().grid(p, (5, 9)), T.Affine().grid(theta, (5, 9)), dtype)
        _assert_close(T.Attention().matrix(p), T.Affine().matrix(theta), dtype)

    def test_centre_crop(self, dtype, device):
        """s = 0.5 at the centre, 8×8 → 4×4: output pixel centres land exactly on input pixels 2..5."""
        x = torch.rand(2, 3, 8, 8, dtype=dtype, device=device)
        p = torch.tensor([[0.5, 0.0, 0.0]], dtype=dtype, device=device).expand(2, 3)
        out = stn.sample(x, T.Attention().grid(p, (4, 4)))
        _assert_close(out, x[..., 2:6, 2:6], dtype)

    def test_offset_crop(self, dtype, device):
        """s = 0.5, (tx, ty) = (0.25, -0.25) on 8×8: the 4×4 window moves one pixel right and up."""
        x = torch.rand(1, 1, 8, 8, dtype=dtype, device=device)
        p = torch.tensor([[0.5, 0.25, -0.25]], dtype=dtype, device=device)
        out = stn.sample(x, T.Attention().grid(p, (4, 4)))
        _assert_close(out, x[..., 1:5, 3:7], dtype)

    def test_zoom_is_bilinear_upsampling(self, dtype, device):
        """s = 0.5, 8×8 → 8×8 is the central 8×8 of ``F.interpolate(x, scale_factor=2)`` (16×16).

        Both use align_corners=False half-pixel centres, and the central window never needs the
        clamping ``interpolate`` applies at the image border, so the match is exact.
        """
        x = torch.rand(2, 1, 8, 8, dtype=dtype, device=device)
        p = torch.tensor([[0.5, 0.0, 0.0]], dtype=dtype, device=device).expand(2, 3)
        out = stn.sample(x, T.Attention().grid(p, (8, 8)))
        up = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        _assert_close(out, up[..., 4:12, 4:12], dtype)

    def test_bound(self):
        tf = T.Attention(min_scale=0.2)
        b = tf.bound(torch.tensor([[0.01, 5.0, -5.0], [-0.7, 0.1, 0.0], [3.0, 0.0, 0.0]]))
        assert (b[:, 0] >= 0.2).all()
        torch.testing.assert_close(b[:, 0], torch.tensor([0.2, 0.7, 3.0]))
        assert (b[:, 1:].abs() < 1).all()


class TestProjective:
    def test_smoke(self):
        tf = T.Projective()
        assert tf.grid(tf.identity(2), (5, 9)).shape == (2, 5, 9, 2)

    @pytest.mark.parametrize("shape", [(8,), (2, 9)])
    def test_bad_params(self, shape):
        with pytest.raises(ValueError, match=rf"projective: expected params of shape \(B, 8\), got {re_shape(shape)}"):
            T.Projective().grid(torch.zeros(shape), (4, 4))

    def test_matrix(self, dtype):
        p = torch.arange(1.0, 9.0, dtype=dtype).reshape(1, 8)
        m = T.Projective().matrix(p)
        _assert_close(m, torch.tensor([[[1.0, 2, 3], [4, 5, 6], [7, 8, 1]]], dtype=dtype), dtype)

    @pytest.mark.parametrize("size", SIZES)
    def test_affine_homography_equals_affine(self, size, dtype, device):
        theta = (torch.eye(2, 3, dtype=dtype) + 0.3 * torch.randn(3, 2, 3, dtype=dtype)).to(device).reshape(3, 6)
        h = torch.cat([theta, torch.zeros(3, 2, dtype=dtype, device=device)], dim=1)  # last row (0, 0, 1)
        _assert_close(T.Projective().grid(h, size), T.Affine().grid(theta, size), dtype)
        _assert_close(T.Projective().matrix(h), T.Affine().matrix(theta), dtype)

    def test_general_homography_pointwise(self, dtype):
        p = torch.tensor([[1.1, 0.2, 0.1, -0.1, 0.9, 0.05, 0.2, -0.3]], dtype=dtype)
        grid = T.Projective().grid(p, (5, 9))
        m = T.Projective().matrix(p)[0].tolist()
        for i, j in [(0, 0), (2, 4), (4, 8), (1, 7)]:
            x, y = (2 * j + 1) / 9 - 1, (2 * i + 1) / 5 - 1
            u, v, w = (m[r][0] * x + m[r][1] * y + m[r][2] for r in range(3))
            assert grid[0, i, j].tolist() == pytest.approx([u / w, v / w], abs=TOL[dtype])

    def test_degenerate_denominator_is_finite(self):
        # h31 = 2: w = 2x + 1 vanishes at x = -0.5, the left pixel centre of a 2-wide output
        p = torch.tensor([[1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 2.0, 0.0]], requires_grad=True)
        grid = T.Projective(eps=1e-3).grid(p, (4, 2))
        assert torch.isfinite(grid).all()
        grid.sum().backward()
        assert torch.isfinite(p.grad).all()
        # w = 0 is behind the camera: off the input
        assert (grid[0, :, 0] == T.Projective.BEHIND).all()
        # in front of it, u / w: x = 0.5 gives w = 2
        ys = (torch.arange(4) * 2 + 1) / 4 - 1
        torch.testing.assert_close(grid[0, :, 1], torch.stack([torch.full((4,), 0.5), ys], -1) / 2)

    def test_behind_the_camera_reads_the_padding(self, dtype):
        """h31 = -3: w = 1 - 3x <= 0 on the right third. The sign of w was kept, so 178 of those 252
        pixels read mirrored input (an all-ones input gave 0.714 there, not 0)."""
        p = torch.tensor([[1.0, 0.0, 0.0, 0.0, 1.0, 0.0, -3.0, 0.0]], dtype=dtype, requires_grad=True)
        grid = T.Projective().grid(p, (28, 28))
        x = T.base_grid((28, 28), dtype=dtype)[..., 0]
        behind = 1 - 3 * x <= 1e-3
        assert int(behind.sum()) == 252
        ones = torch.ones(1, 1, 28, 28, dtype=dtype)
        assert sample(ones, grid)[0, 0][behind].abs().max() == 0
        assert sample(ones, grid, padding="border")[0, 0][behind].tolist() == [1.0] * 252  # border: the edge pixel
        assert (grid[0][behind] == T.Projective.BEHIND).all() and torch.isfinite(grid).all()
        # no gradient from there, and none that is not finite anywhere
        (grad,) = torch.autograd.grad(sample(ones, grid)[0, 0][behind].sum(), p, retain_graph=True)
        assert (grad == 0).all()
        (grad,) = torch.autograd.grad(grid.sum(), p)
        assert torch.isfinite(grad).all()

    def test_far_off_parameters_stay_finite(self):
        p = torch.tensor([[1e37, 0.0, 0.0, 0.0, 1.0, 0.0, -3.0, 0.0]], requires_grad=True)
        grid = T.Projective().grid(p, (8, 8))
        grid.sum().backward()
        assert torch.isfinite(grid).all() and torch.isfinite(p.grad).all()

    def test_in_front_of_the_camera_is_u_over_w_bit_for_bit(self, dtype):
        """Every pixel with w > eps: exactly the division, as before the convention for w <= eps changed."""
        g = torch.Generator().manual_seed(0)
        p = (T.Projective().identity(64, dtype=torch.float64) + torch.randn(64, 8, generator=g, dtype=torch.float64)).to(dtype)
        grid = T.Projective().grid(p, (9, 7))
        xy1 = torch.cat([T.base_grid((9, 7), dtype=dtype), torch.ones(9, 7, 1, dtype=dtype)], -1).reshape(-1, 3)
        uvw = torch.matmul(T.Projective().matrix(p), xy1.T)  # (B, 3, HW), the product grid() makes
        front = (uvw[:, 2] > 1e-3).view(64, 9, 7)
        assert 0 < int(front.sum()) < front.numel()  # both kinds of pixel are tested
        expected = (uvw[:, :2] / uvw[:, 2:]).transpose(1, 2).reshape(64, 9, 7, 2)
        assert torch.equal(grid[front], expected[front])
        assert (grid[~front] == T.Projective.BEHIND).all()

    def test_bound(self):
        raw = torch.tensor([[1.5, 0.2, 4.0, -0.1, 0.7, -4.0, 3.0, -3.0]])
        b = T.Projective().bound(raw)
        assert torch.equal(b[:, [0, 1, 3, 4]], raw[:, [0, 1, 3, 4]])
        assert (b[:, [2, 5]].abs() < 1).all()
        assert b[0, 6:].tolist() == [0.5, -0.5]
        assert raw[0, 2] == 4.0  # the input is not modified in place


class TestThinPlateSpline:
    def test_smoke(self):
        tf = T.ThinPlateSpline()
        assert tf.n_params == 32
        assert tf.grid(tf.identity(2), (6, 10)).shape == (2, 6, 10, 2)

    def test_bad_grid_size(self):
        with pytest.raises(ValueError, match=r"tps: grid_size must be >= 2, got 1"):
            T.ThinPlateSpline(grid_size=1)

    def test_bad_params(self):
        with pytest.raises(ValueError, match=r"tps: expected params of shape \(B, 18\), got \(2, 32\)"):
            T.ThinPlateSpline(grid_size=3).grid(torch.zeros(2, 32), (4, 4))

    def test_control_points(self):
        cp = T.control_points(3)
        # row-major (x, y): rows of the grid top -> bottom, each left -> right
        assert cp.tolist() == [
            [-1.0, -1.0], [0.0, -1.0], [1.0, -1.0],
            [-1.0, 0.0], [0.0, 0.0], [1.0, 0.0],
            [-1.0, 1.0], [0.0, 1.0], [1.0, 1.0],
        ]  # fmt: skip
        assert torch.equal(T.ThinPlateSpline(grid_size=3).identity(1), cp.reshape(1, 18))

    @pytest.mark.parametrize("grid_size", [2, 3, 4, 6])
    @pytest.mark.parametrize("size", SIZES)
    def test_rest_is_identity(self, grid_size, size, dtype, device):
        tf = T.ThinPlateSpline(grid_size)
        grid = tf.grid(tf.identity(1, device=device, dtype=dtype), size)
        _assert_close(grid[0], T.base_grid(size, device, dtype), dtype)

    @pytest.mark.parametrize("grid_size", [2, 3, 4, 6])
    @pytest.mark.parametrize("size", SIZES)
    def test_affine_targets_reproduce_affine(self, grid_size, size, dtype, device):
        """TPS contains the affine maps exactly: targets A·p give A's grid."""
        theta = torch.eye(2, 3, dtype=torch.float64) + 0.3 * torch.randn(2, 2, 3, dtype=torch.float64)
        cp = T.control_points(grid_size, dtype=torch.float64)  # (n, 2)
        targets = cp @ theta[:, :, :2].transpose(1, 2) + theta[:, None, :, 2]  # (2, n, 2)
        tf = T.ThinPlateSpline(grid_size)
        grid = tf.grid(targets.reshape(2, -1).to(device, dtype), size)
        expected = T.Affine().grid(theta.reshape(2, 6).to(device, dtype), size)
        _assert_close(grid, expected, dtype)

    def test_interpolates_control_points(self, dtype):
        """With K = 3 the middle control point sits at (0, 0), the centre pixel of an odd output."""
        tf = T.ThinPlateSpline(grid_size=3)
        targets = tf.identity(1, dtype=dtype) + 0.2 * torch.randn(1, 18, dtype=dtype)
        grid = tf.grid(targets, (5, 7))
        _assert_close(grid[0, 2, 3], targets.view(9, 2)[4], dtype)

    @pytest.mark.parametrize("k", [3, 5])  # both code paths of ThinPlateSpline.grid (K <= 4, K > 4)
    def test_matches_direct_solve(self, k):
        """Against the textbook TPS, solved per coordinate: f(p) = a0 + a1 x + a2 y + Σ w_k U(|p - c_k|),
        U(r) = r² log r², with Σ w_k = Σ w_k c_k = 0 and f(c_k) = target_k."""
        g = torch.Generator().manual_seed(8)
        size = (5, 9)
        ctrl = T.control_points(k, dtype=torch.float64)  # (K², 2)
        targets = ctrl + 0.2 * torch.randn(k * k, 2, generator=g, dtype=torch.float64)

        def u(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            r2 = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)
            return torch.where(r2 > 0, r2 * torch.log(torch.where(r2 > 0, r2, torch.ones_like(r2))), 0.0)

        n = ctrl.shape[0]
        p = torch.cat([torch.ones(n, 1, dtype=torch.float64), ctrl], dim=1)
        lhs = torch.cat([torch.cat([u(ctrl, ctrl), p], 1), torch.cat([p.T, torch.zeros(3, 3, dtype=torch.float64)], 1)])
        rhs = torch.cat([targets, torch.zeros(3, 2, dtype=torch.float64)])
        coef = torch.linalg.solve(lhs, rhs)  # (n + 3, 2): w then a
        pts = T.base_grid(size, dtype=torch.float64).reshape(-1, 2)
        expected = u(pts, ctrl) @ coef[:n] + coef[n] + pts @ coef[n + 1 :]
        grid = T.ThinPlateSpline(k).grid(targets.reshape(1, -1), size)
        torch.testing.assert_close(grid.reshape(-1, 2), expected, atol=1e-10, rtol=0)

    def test_weight_cache_keyed_by_dtype(self):
        tf = T.ThinPlateSpline(grid_size=4)
        g32 = tf.grid(tf.identity(1, dtype=torch.float32), (5, 9))
        g64 = tf.grid(tf.identity(1, dtype=torch.float64), (5, 9))
        assert g32.dtype == torch.float32 and g64.dtype == torch.float64
        torch.testing.assert_close(g64, T.base_grid((5, 9), dtype=torch.float64)[None], atol=1e-12, rtol=0)

    @pytest.mark.parametrize("k", [3, 5])
    def test_non_contiguous_params(self, k):
        """The rows a multi-head localiser hands over are strided views."""
        tf = T.ThinPlateSpline(grid_size=k)
        raw = torch.randn(4, 2, 2 * k * k)
        view = raw[:, 1]
        assert not view.is_contiguous()
        torch.testing.assert_close(tf.grid(view, (5, 5)), tf.grid(view.contiguous(), (5, 5)))

    def test_bound(self):
        b = T.ThinPlateSpline(grid_size=2).bound(torch.tensor([[-3.0, 0.5, 2.0, -1.0, 0.0, 1.6, 1.4, -1.5]]))
        torch.testing.assert_close(b, torch.tensor([[-1.5, 0.5, 1.5, -1.0, 0.0, 1.5, 1.4, -1.5]]))


class TestDecomposeAffine:
    def test_identity(self):
        r = T.decompose_affine(torch.eye(2, 3))
        assert r == T.AffineReading(0.0, 1.0, 1.0, 0.0, 0.0, 0.0)

    def test_accepts_flat(self):
        theta = T.compose_affine(30.0, 1.2, 0.8, 0.1, 0.2, -0.3)
        assert T.decompose_affine(theta.reshape(6)) == T.decompose_affine(theta)

    @pytest.mark.parametrize(
        "reading",
        [
            (0.0, 1.0, 1.0, 0.0, 0.0, 0.0),
            (90.0, 1.0, 1.0, 0.0, 0.1, 0.2),
            (-135.0, 0.5, 2.0, 0.3, -0.4, 0.9),
            (17.0, 1.3, 0.7, -0.6, 0.0, 0.0),
            (179.0, 0.9, -1.1, 0.2, 0.5, -0.5),  # negative scale_y: a reflection
        ],
    )
    def test_round_trip_reading(self, reading):
        r = T.decompose_affine(T.compose_affine(*reading))
        assert (r.rotation_deg, r.scale_x, r.scale_y, r.shear, r.tx, r.ty) == pytest.approx(reading, abs=1e-5)

    def test_round_trip_theta(self):
        g = torch.Generator().manual_seed(6)
        for _ in range(20):
            theta = torch.randn(2, 3, generator=g)
            r = T.decompose_affine(theta)
            back = T.compose_affine(r.rotation_deg, r.scale_x, r.scale_y, r.shear, r.tx, r.ty)
            torch.testing.assert_close(back, theta, atol=1e-5, rtol=1e-5)

    def test_compose_matches_rotation_matrix(self):
        a = math.radians(30)
        expected = torch.tensor([[math.cos(a), -math.sin(a), 0.1], [math.sin(a), math.cos(a), 0.2]])
        torch.testing.assert_close(T.compose_affine(30.0, tx=0.1, ty=0.2), expected)

    def test_compose_order(self):
        """θ's linear part is R · diag(sx, sy) · [[1, shear], [0, 1]]."""
        lin = T.compose_affine(0.0, 2.0, 3.0, 0.5)[:, :2]
        assert lin.tolist() == [[2.0, 1.0], [0.0, 3.0]]


@CUDA
@pytest.mark.parametrize("name", FAMILIES)
def test_cuda_matches_cpu(name):
    g = torch.Generator().manual_seed(7)
    tf = T.get(name)
    p = _random_params(name, 3, g).float()
    x = torch.rand(3, 2, 7, 9, generator=g)
    cpu = stn.sample(x, tf.grid(p, (5, 9)))
    gpu = stn.sample(x.cuda(), tf.grid(p.cuda(), (5, 9)))
    assert gpu.is_cuda
    torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", FAMILIES)
def test_zoom_reads_the_centred_window(name: str) -> None:
    t = T.get(name)
    assert torch.equal(t.zoom(1.0, 3), t.identity(3))
    # every family is linear at the identity: zoom(s) scales every source point by s
    ident = t.grid(t.identity(2), (9, 11))
    torch.testing.assert_close(t.grid(t.zoom(0.5, 2), (9, 11)), 0.5 * ident, atol=1e-5, rtol=0)


def test_zoom_half_crops_the_centre() -> None:
    # a 4x4 input: zoom(0.5) onto a 2x2 output reads exactly the central 2x2 pixels
    x = torch.arange(16.0).view(1, 1, 4, 4)
    out = stn.sample(x, T.get("affine").grid(T.get("affine").zoom(0.5), (2, 2)))
    torch.testing.assert_close(out, x[:, :, 1:3, 1:3])


def test_zoom_rejects_non_positive_scale() -> None:
    with pytest.raises(ValueError, match="zoom scale"):
        T.get("attention").zoom(0.0)


def test_transformer_starts_at_the_zoom() -> None:
    st = stn.SpatialTransformer((1, 60, 60), "attention", out_size=(28, 28), start_scale=0.5)
    _, theta = st(torch.rand(2, 1, 60, 60))
    torch.testing.assert_close(theta, torch.tensor([[0.5, 0.0, 0.0]] * 2))


@pytest.mark.parametrize("name", ["affine", "projective", "tps"])
def test_affine_embedding_gives_the_same_grid(name: str) -> None:
    torch.manual_seed(0)
    theta = T.Affine().identity(5) + 0.3 * torch.randn(5, 6)  # rotated, sheared, moved
    family = T.get(name)
    m = T.affine_embedding(family)
    assert m.shape == (family.n_params, 6)
    want = T.Affine().grid(theta, (11, 13))
    got = family.grid(theta @ m.T, (11, 13))
    torch.testing.assert_close(got, want, atol=2e-5, rtol=0)


def test_affine_embedding_of_the_identity_is_the_identity() -> None:
    for name in ("projective", "tps"):
        family = T.get(name)
        torch.testing.assert_close(T.Affine().identity() @ T.affine_embedding(family).T, family.identity())


def test_attention_has_no_affine_embedding() -> None:
    with pytest.raises(ValueError, match="cannot represent every affine map"):
        T.affine_embedding(T.get("attention"))


def test_tps_affine_fit_splits_a_spline_into_affine_and_bending() -> None:
    torch.manual_seed(0)
    theta = T.Affine().identity(3) + 0.2 * torch.randn(3, 6)
    spline = theta @ T.affine_embedding(T.get("tps")).T
    fit, offset = T.tps_affine_fit(spline)
    torch.testing.assert_close(fit, theta, atol=1e-5, rtol=0)
    assert offset.shape == (3, 16, 2) and offset.abs().max() < 1e-5
    bent = spline.clone()
    bent[:, 2 * 5] += 0.3  # control point 5 moves right: not an affine change
    fit, offset = T.tps_affine_fit(bent)
    assert offset[:, 5, 0].min() > 0.2 and offset.norm(dim=-1).argmax(dim=1).tolist() == [5, 5, 5]
    with pytest.raises(ValueError, match="expected params of shape"):
        T.tps_affine_fit(torch.zeros(1, 18))


@pytest.mark.parametrize("family", ["affine", "attention", "projective", "tps"])
def test_grid_trains_after_inference_mode(family):
    """The cached base grids are made outside inference mode: evaluating a shape under
    ``torch.inference_mode()`` first must not break training on it afterwards."""
    t = T.get(family)
    size = (7, 11)  # a shape no other test uses: the cache is empty for it
    with torch.inference_mode():
        t.grid(t.identity(2), size)
    p = t.identity(2).requires_grad_()
    t.grid(p, size).square().sum().backward()
    assert p.grad is not None and torch.isfinite(p.grad).all()


# Each family's bound, entry by entry, written the plain way: (function of the entry, entries).
_BOUND_BY_ENTRY = {
    "affine": [(torch.tanh, [2, 5]), (lambda v: v, [0, 1, 3, 4])],
    "attention": [(lambda v: v.abs().clamp(min=0.1), [0]), (torch.tanh, [1, 2])],
    "projective": [(torch.tanh, [2, 5]), (lambda v: v.clamp(-0.5, 0.5), [6, 7]), (lambda v: v, [0, 1, 3, 4])],
    "tps": [(lambda v: v.clamp(-1.5, 1.5), list(range(32)))],
}


@pytest.mark.parametrize("name", T.names())
def test_bound_checks_params_like_grid(name):
    """Every family's bound refuses θ of another shape (a 1-D θ, a wrong width) in grid's words, and reads
    an integer θ as floats; the TPS clamped any shape without a word."""
    tf = T.get(name)
    for bad in (torch.zeros(tf.n_params), torch.zeros(2, tf.n_params + 1), torch.zeros(1, 2, tf.n_params)):
        with pytest.raises(ValueError, match=re.escape(f"{name}: expected params of shape (B, {tf.n_params}), got {tuple(bad.shape)}")):
            tf.bound(bad)
    assert tf.bound(tf.identity().round().long()).dtype == torch.get_default_dtype()


@pytest.mark.parametrize("name", sorted(_BOUND_BY_ENTRY))
def test_bound_values_and_gradients_entry_by_entry(name):
    """bound is one select on a constant mask; its values and its gradient are those of each entry's own
    function (no gradient leaks from the branch not taken)."""
    tf = T.get(name)
    raw = (torch.randn(16, tf.n_params, generator=torch.Generator().manual_seed(3), dtype=torch.float64) * 3)
    raw = raw.requires_grad_()
    seed = torch.randn(16, tf.n_params, dtype=torch.float64)
    (tf.bound(raw) * seed).sum().backward()
    ref = raw.detach().clone().requires_grad_()
    want = torch.zeros_like(ref)
    for fn, cols in _BOUND_BY_ENTRY[name]:
        want = want.index_add(1, torch.tensor(cols), fn(ref[:, cols]))
    torch.testing.assert_close(tf.bound(raw.detach()), want.detach())
    (want * seed).sum().backward()
    torch.testing.assert_close(raw.grad, ref.grad)
    with pytest.raises(ValueError, match=name):
        tf.bound(torch.zeros(2, tf.n_params + 1))


def test_constant_caches_keep_to_their_budget():
    """Grids at large output sizes are made, used and let go: each constant cache holds at most
    ``CACHE_BYTES`` besides its newest entry (it held every size it had seen, 64 of them, hundreds of MB
    at 2048×2048)."""
    from stn import transforms

    caches = (transforms._base_grid_cached, transforms._homogeneous_base_t, transforms._grid_matrix)
    affine = transforms.get("affine")
    small = affine.grid(affine.identity(2), (12, 9))
    for side in (700, 900, 1100):
        grid = affine.grid(affine.identity(1), (side, side))
        assert grid.shape == (1, side, side, 2)
        torch.testing.assert_close(grid[0, 0, 0], torch.tensor([-1 + 1 / side, -1 + 1 / side]))
    torch.testing.assert_close(affine.grid(affine.identity(2), (12, 9)), small)  # the newest now: the large ones go
    assert all(c.cache_bytes() <= transforms.CACHE_BYTES for c in caches)


def test_the_newest_constant_stays_however_large():
    """A constant over the budget is kept while it is the newest: calls at one large size (a TPS's weights at
    600×600 took a 0.35 s solve on every call when it was not cached) find it; the next one replaces it."""
    from stn.transforms import _constant_cache

    made = []

    @_constant_cache(maxsize=4, max_bytes=1000)
    def big(n: int) -> torch.Tensor:
        made.append(n)
        return torch.zeros(n)

    assert big(500) is big(500) and made == [500]  # 2,000 bytes: over the budget, kept as the newest
    big(10)
    big(500)
    assert made == [500, 10, 500] and big.cache_bytes() == 2000  # evicted by a newer one, then made again


# --------------------------------------------------------------------------- θ and sizes of the wrong kind

# Identity θ written as whole numbers (TPS: a 2×2 control grid, whose rest points are the corners ±1).
INT_IDENTITY = {
    "affine": ({}, [[1, 0, 0, 0, 1, 0]]),
    "attention": ({}, [[1, 0, 0]]),
    "projective": ({}, [[1, 0, 0, 0, 1, 0, 0, 0]]),
    "tps": ({"grid_size": 2}, [[-1, -1, 1, -1, -1, 1, 1, 1]]),
}


@pytest.mark.parametrize("name", FAMILIES)
@pytest.mark.parametrize("default", [torch.float32, torch.float64], ids=["default-f32", "default-f64"])
def test_integer_theta_is_read_as_floats(name, default):
    """An integer θ gave an int64 grid of zeros (the cached base grid and TPS weights were built in θ's dtype):
    now it is cast to the default float dtype, and the identity reproduces the input."""
    options, identity = INT_IDENTITY[name]
    tf = T.get(name, **options)
    before = torch.get_default_dtype()
    torch.set_default_dtype(default)
    try:
        for theta in (torch.tensor(identity), torch.tensor(identity, dtype=torch.int32)):
            grid = tf.grid(theta, (5, 7))
            assert grid.dtype == default
            _assert_close(grid, tf.grid(theta.to(default), (5, 7)), default)
            x = torch.rand(1, 1, 5, 7, dtype=default)
            _assert_close(sample(x, grid), x, default)
        if name != "tps":  # bool θ: True is 1 (the TPS identity has -1s)
            flags = torch.tensor(identity).bool()
            _assert_close(tf.grid(flags, (3, 3)), tf.grid(flags.to(default), (3, 3)), default)
    finally:
        torch.set_default_dtype(before)


@pytest.mark.parametrize("name", FAMILIES)
@pytest.mark.parametrize("size", [(5.5, 5), (5, 2.5), (float("nan"), 5), 5, "55"],
                         ids=["h", "w", "nan", "scalar", "str"])
def test_sizes_that_are_not_whole_numbers_are_refused(name, size):
    """``grid(θ, (5.5, 5))`` was truncated to (5, 5) without a word."""
    tf = T.get(name)
    with pytest.raises(ValueError, match=r"expected out_size \(H, W\) with H, W >= 1, got .*whole numbers of pixels"):
        tf.grid(tf.identity(1), size)
    assert tf.grid(tf.identity(1), (5.0, 5)).shape == (1, 5, 5, 2)  # a whole float is a size


@pytest.mark.parametrize("grid_size", [2.5, "4", None, float("inf")])
def test_tps_grid_size_must_be_whole(grid_size):
    """``get("tps", grid_size=2.5)`` made a 2×2 grid without a word."""
    with pytest.raises(ValueError, match=r"tps: grid_size must be a whole number of control points per side, got"):
        T.get("tps", grid_size=grid_size)
    assert T.get("tps", grid_size=3.0).grid_size == 3
