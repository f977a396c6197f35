"""Tests for :class:`stn.SpatialTransformer` and the localisation nets it builds."""

from __future__ import annotations

import re

import pytest
import torch
from torch import nn

import stn
from stn import transforms as T
from stn.localization import CNNLocalizer, FCLocalizer, build_localizer, light_options
from stn.model import ConvClassifier
from stn.transformer import SpatialTransformer

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")

FAMILIES = ["affine", "attention", "projective", "tps"]
LOCALIZERS = [("cnn", {"channels": 4, "hidden": 8}), ("fc", {"hidden": (16,)})]


# Constructor arguments a user could get wrong: (arguments, error, its sentence).
_BAD_ST_ARGS = [
    ({"transform": 3}, TypeError, (r"^transform must be a family name \(affine, attention, projective, tps\) or a "
                                   r"stn\.transforms\.Transform, got int 3")),
    ({"transform": None}, TypeError, r"^transform must be a family name"),
    ({"in_shape": "123"}, ValueError, r"^in_shape \(C, H, W\) must be 3 positive whole numbers, got '123': e\.g\."),
    ({"in_shape": (28, 28)}, ValueError, r"^in_shape \(C, H, W\) must be 3 positive whole numbers"),
    ({"loc_options": [("channels", 4)]}, TypeError, r"^loc_options must be a dict"),
    ({"loc_options": {"chanels": 4}}, ValueError,
     r"^unknown loc_options 'chanels' for the cnn localisation net: its options are channels, kernel, hidden, pool"),
    ({"localization": "fc", "loc_options": {"pool": 2}}, ValueError,
     r"^unknown loc_options 'pool' for the fc localisation net: its options are hidden"),
    ({"loc_options": {"channels": 0}}, ValueError, r"^CNNLocalizer: channels must be >= 1, got 0: give"),
    ({"loc_options": {"kernel": 2.5}}, TypeError, r"^CNNLocalizer: kernel must be an int, got float 2\.5"),
    ({"loc_options": {"hidden": 0}}, ValueError, r"^CNNLocalizer: hidden must be >= 1, got 0"),
    ({"loc_options": {"pool": 1.5}}, TypeError, r"^CNNLocalizer: pool must be an int, got float 1\.5"),
    ({"localization": "fc", "loc_options": {"hidden": 32}}, TypeError,
     r"^FCLocalizer: hidden must be a sequence of layer widths, e\.g\. \(32, 32\).*got int 32"),
    ({"localization": "fc", "loc_options": {"hidden": (16, 0)}}, ValueError,
     r"^FCLocalizer: each hidden width must be >= 1, got 0"),
    ({"start_scale": "1"}, TypeError, r"^start_scale must be a number, got str '1'"),
    ({"start_scale": 0}, ValueError, r"^start_scale must be a finite number > 0, got 0: give"),
    ({"start_scale": float("nan")}, ValueError, r"^start_scale must be a finite number > 0, got nan"),
]


def _perturb_head(st: SpatialTransformer, std: float = 0.05, seed: int = 0) -> None:
    """Move the localiser's last layer off its zero initialisation (as training would)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        head = st.localization.head
        head.weight.copy_(torch.randn(head.weight.shape, generator=g) * std)


def _set_head_bias(st: SpatialTransformer, bias: list[float]) -> None:
    with torch.no_grad():
        st.localization.head.bias.copy_(torch.tensor(bias))


class TestSpatialTransformer:
    def test_smoke(self):
        st = SpatialTransformer((1, 42, 42), "affine", out_size=(28, 28))
        y, theta = st(torch.rand(8, 1, 42, 42))
        assert y.shape == (8, 1, 28, 28) and theta.shape == (8, 6)
        assert stn.SpatialTransformer is SpatialTransformer
        assert "transform=Affine(n_params=6), out_size=(28, 28), heads=1, bound=False" in repr(st)

    @pytest.mark.parametrize("name", FAMILIES)
    @pytest.mark.parametrize(("loc", "loc_options"), LOCALIZERS)
    @pytest.mark.parametrize("in_shape", [(1, 16, 16), (3, 15, 15), (2, 16, 20)])
    def test_starts_at_identity(self, name, loc, loc_options, in_shape, dtype, device):
        """Zero head weights + identity bias: θ is the identity for any input, output == input."""
        st = SpatialTransformer(in_shape, name, localization=loc, loc_options=loc_options).to(device, dtype)
        assert st.out_size == in_shape[1:]
        x = torch.rand(3, *in_shape, dtype=dtype, device=device)
        y, theta = st(x)
        tf = st.transform
        torch.testing.assert_close(theta, tf.identity(3, device=device, dtype=dtype), atol=1e-6, rtol=0)
        torch.testing.assert_close(y, x, atol=1e-5, rtol=0)

    @pytest.mark.parametrize("name", FAMILIES)
    @pytest.mark.parametrize("out_size", [(8, 8), (7, 9)])
    def test_shapes_one_head(self, name, out_size):
        st = SpatialTransformer((2, 16, 16), name, out_size=out_size, localization="fc", loc_options={"hidden": (8,)})
        y, theta = st(torch.rand(5, 2, 16, 16))
        assert isinstance(y, torch.Tensor) and y.shape == (5, 2, *out_size)
        assert theta.shape == (5, st.transform.n_params)

    @pytest.mark.parametrize("name", FAMILIES)
    def test_shapes_two_heads(self, name):
        st = SpatialTransformer(
            (1, 16, 16), name, out_size=(8, 10), heads=2, localization="fc", loc_options={"hidden": (8,)}
        )
        assert st.localization.head.out_features == 2 * st.transform.n_params
        ys, thetas = st(torch.rand(4, 1, 16, 16))
        assert isinstance(ys, tuple) and isinstance(thetas, tuple)
        assert [y.shape for y in ys] == [torch.Size([4, 1, 8, 10])] * 2
        assert [t.shape for t in thetas] == [torch.Size([4, st.transform.n_params])] * 2
        outs, params = st.forward_heads(torch.rand(4, 1, 16, 16))
        assert len(outs) == len(params) == 2

    @pytest.mark.parametrize("name", FAMILIES)
    def test_heads_are_independent(self, name):
        """Each head reads its own slice of the localiser output and warps with it."""
        st = SpatialTransformer((1, 16, 16), name, heads=2, localization="fc", loc_options={"hidden": (8,)})
        _perturb_head(st, seed=1)
        x = torch.rand(3, 1, 16, 16)
        ys, thetas = st(x)
        raw = st.localization(x).view(3, 2, -1)
        for k in range(2):
            torch.testing.assert_close(thetas[k], raw[:, k])
            torch.testing.assert_close(ys[k], st.warp(x, raw[:, k].contiguous()))
        assert not torch.allclose(thetas[0], thetas[1])

    def test_transform_object(self):
        st = SpatialTransformer((1, 16, 16), T.ThinPlateSpline(grid_size=3), localization="fc")
        assert st.transform.n_params == 18
        y, theta = st(torch.rand(2, 1, 16, 16))
        assert theta.shape == (2, 18) and y.shape == (2, 1, 16, 16)

    def test_warp_mode_override(self):
        st = SpatialTransformer((1, 8, 8), "attention", out_size=(4, 4), localization="fc")
        x = torch.rand(2, 1, 8, 8)
        # s = 0.5: the central 4×4 pixels, exactly, with either sampler
        p = torch.tensor([[0.5, 0.0, 0.0]]).expand(2, 3)
        torch.testing.assert_close(st.warp(x, p), x[..., 2:6, 2:6])
        torch.testing.assert_close(st.warp(x, p, mode="nearest"), x[..., 2:6, 2:6])

    @pytest.mark.parametrize(("name", "raw", "check"), [
        ("affine", [1.0, 0.0, 5.0, 0.0, 1.0, -5.0], lambda p: (p[:, [2, 5]].abs() < 1).all()),
        ("attention", [0.001, 5.0, -5.0], lambda p: (p[:, 0] >= 0.1).all() and (p[:, 1:].abs() < 1).all()),
        ("attention", [-0.001, 0.0, 0.0], lambda p: (p[:, 0] >= 0.1).all()),
        ("projective", [1, 0, 5, 0, 1, -5, 3, -3], lambda p: (p[:, [2, 5]].abs() < 1).all() and (p[:, 6:].abs() <= 0.5).all()),
    ])  # fmt: skip
    def test_bound(self, name, raw, check):
        """bound=True: translation stays in (-1, 1), attention's scale >= min_scale (0.1).

        (tanh saturates to exactly 1.0 in float32 for |t| > ~9; the raw values here stay below.)
        """
        st = SpatialTransformer((1, 16, 16), name, localization="fc", bound=True)
        _set_head_bias(st, raw)
        _, theta = st(torch.rand(4, 1, 16, 16))
        assert check(theta), theta
        unbounded = SpatialTransformer((1, 16, 16), name, localization="fc", bound=False)
        _set_head_bias(unbounded, raw)
        _, theta = unbounded(torch.rand(4, 1, 16, 16))
        assert not check(theta)

    @pytest.mark.parametrize("name", FAMILIES)
    def test_bound_starts_at_identity(self, name):
        st = SpatialTransformer((1, 16, 16), name, localization="fc", bound=True)
        x = torch.rand(2, 1, 16, 16)
        y, _ = st(x)
        torch.testing.assert_close(y, x, atol=1e-5, rtol=0)

    def test_bound_attention_min_scale_option(self):
        st = SpatialTransformer((1, 16, 16), T.Attention(min_scale=0.3), localization="fc", bound=True)
        _set_head_bias(st, [0.05, 0.0, 0.0])
        _, theta = st(torch.rand(2, 1, 16, 16))
        torch.testing.assert_close(theta[:, 0], torch.full((2,), 0.3))

    @pytest.mark.parametrize("name", FAMILIES)
    @pytest.mark.parametrize(("loc", "loc_options"), LOCALIZERS)
    @pytest.mark.parametrize("bound", [False, True])
    def test_gradients_reach_localisation(self, name, loc, loc_options, bound):
        # Seeded: with this tiny localiser (8 hidden units) about 1 random init in 75 leaves every
        # hidden ReLU dead on the 4 inputs, and then no gradient reaches the body (test order decided it).
        torch.manual_seed(0)
        st = SpatialTransformer(
            (1, 16, 16), name, out_size=(12, 12), localization=loc, loc_options=loc_options, bound=bound
        )
        x = torch.rand(4, 1, 16, 16)
        target = torch.rand(4, 1, 12, 12)
        # At initialisation the head's weights are zero, so only the head gets a gradient.
        y, _ = st(x)
        (y - target).square().mean().backward()
        assert st.localization.head.weight.grad.abs().sum() > 0
        assert st.localization.head.bias.grad.abs().sum() > 0
        # Once the head has moved, the gradient flows through it into every layer of the body.
        st.zero_grad()
        _perturb_head(st)
        y, _ = st(x)
        (y - target).square().mean().backward()
        for pname, param in st.named_parameters():
            assert param.grad is not None and param.grad.abs().sum() > 0, pname

    def test_gradcheck(self):
        """float64 end to end: input → localiser → θ → grid → sampler."""
        torch.manual_seed(0)
        st = SpatialTransformer((1, 6, 6), "affine", out_size=(4, 5), localization="fc", loc_options={"hidden": (4,)})
        _perturb_head(st, std=0.1)
        st = st.double()
        x = torch.rand(2, 1, 6, 6, dtype=torch.float64, requires_grad=True)
        assert torch.autograd.gradcheck(lambda x: st(x)[0], (x,))

    def test_bad_heads(self):
        with pytest.raises(ValueError, match=r"heads must be >= 1, got 0"):
            SpatialTransformer((1, 16, 16), heads=0)

    def test_unknown_transform(self):
        with pytest.raises(ValueError, match=r"Unknown transform 'tsp'\. Known: affine, attention, projective, tps"):
            SpatialTransformer((1, 16, 16), "tsp")

    def test_unknown_localizer(self):
        with pytest.raises(ValueError, match=r"Unknown localisation net 'rnn'\. Known: cnn, fc\."):
            SpatialTransformer((1, 16, 16), localization="rnn")

    @pytest.mark.parametrize("shape", [(2, 1, 12, 12), (1, 16, 16), (2, 3, 16, 16), (1, 2, 1, 16, 16)],
                             ids=["size", "unbatched", "channels", "5-d"])
    def test_wrong_input_shape_is_named(self, shape):
        st = SpatialTransformer((1, 16, 16), localization="fc")
        with pytest.raises(ValueError, match=r"built for inputs \(B, 1, 16, 16\).*got " + re.escape(str(shape))):
            st(torch.rand(*shape))

    def test_wrong_dtype_is_named(self):
        st = SpatialTransformer((1, 16, 16), localization="fc")
        with pytest.raises(TypeError, match="float64 but the transformer's weights are torch.float32"):
            st(torch.rand(2, 1, 16, 16, dtype=torch.float64))
        with pytest.raises(TypeError, match="uint8: pixels must be floats"):
            st(torch.zeros(2, 1, 16, 16, dtype=torch.uint8))
        y, theta = st.double()(torch.rand(2, 1, 16, 16, dtype=torch.float64))  # converted: it runs
        assert y.dtype == theta.dtype == torch.float64

    @pytest.mark.parametrize("kwargs,match", [
        ({"out_size": (0, 5)}, "out_size"), ({"out_size": (-1, 5)}, "out_size"), ({"out_size": (5.5, 5)}, "out_size"),
        ({"out_size": (5, 5, 5)}, "out_size"), ({"mode": "bicubic"}, "mode"), ({"padding": "reflect"}, "padding"),
        ({"out_size": (float("inf"), 5)}, "out_size"),
    ])
    def test_bad_settings_refused_when_built(self, kwargs, match):
        with pytest.raises(ValueError, match=match):
            SpatialTransformer((1, 16, 16), **kwargs)

    @pytest.mark.parametrize(("heads", "error"), [(1.5, TypeError), ("2", TypeError), (True, TypeError),
                                                  (2.0, TypeError), (None, TypeError), (-1, ValueError)])
    def test_heads_must_be_a_positive_int(self, heads, error):
        """Not empty()'s 'argument size…' for 1.5 nor '<' not supported for "2": one sentence naming heads."""
        with pytest.raises(error, match=r"^heads must be (an int|>= 1), got .*: give the number of transformers"):
            SpatialTransformer((1, 16, 16), heads=heads)

    def test_heads_any_int_type(self):
        """A numpy int is an int (a count read from an array), stored as a Python int."""
        import numpy as np

        assert SpatialTransformer((1, 16, 16), localization="fc", heads=np.int64(2)).heads == 2

    @pytest.mark.parametrize(("kwargs", "error", "match"), _BAD_ST_ARGS, ids=[repr(c[0]) for c in _BAD_ST_ARGS])
    def test_bad_constructor_arguments_are_named(self, kwargs, error, match):
        """Each in a sentence naming the argument and what it takes, not a layer's complaint (or nothing:
        a 0-wide hidden layer, a pool of 1.5 were built)."""
        kwargs = {"in_shape": (1, 16, 16), **kwargs}
        with pytest.raises(error, match=match):
            SpatialTransformer(**kwargs)

    @pytest.mark.parametrize("name", FAMILIES)
    def test_traces_on_the_first_call(self, name):
        """torch.jit.trace's own check (it traces twice and compares) passes even when the trace is the first
        call, which builds the cached grids: they are made outside the trace, as constants."""
        import warnings

        for cached in (T._entry_mask, T._homogeneous_base_t, T._base_grid_cached, T._grid_matrix, T._tps_weights):
            cached.cache_clear()
        st = SpatialTransformer((1, 20, 20), name, loc_options={"channels": 4, "hidden": 8}).eval()
        with warnings.catch_warnings():
            warnings.simplefilter("error", torch.jit.TracerWarning)
            traced = torch.jit.trace(st, torch.rand(3, 1, 20, 20))
        x = torch.rand(3, 1, 20, 20)
        for got, want in zip(traced(x), st(x)):
            torch.testing.assert_close(got, want)

    def test_runs_under_autocast(self):
        """Under autocast a bfloat16 input meets float32 weights by design: no dtype complaint then."""
        st = SpatialTransformer((1, 16, 16), localization="fc")
        with torch.autocast("cpu", torch.bfloat16):
            y, theta = st(torch.rand(2, 1, 16, 16).bfloat16())
        assert y.shape == (2, 1, 16, 16) and theta.shape == (2, 6)

    def test_exports_with_a_dynamic_batch(self):
        """torch.export with the batch dimension left free: one pooling operation in the graph, whatever the batch."""
        from torch.export import Dim

        st = SpatialTransformer((1, 28, 28), "affine", loc_options={"channels": 4, "hidden": 8}).eval()
        program = torch.export.export(st, (torch.rand(4, 1, 28, 28),), dynamic_shapes=({0: Dim("batch")},))
        x = torch.rand(300, 1, 28, 28)  # large enough for the eager strided pooling
        for got, want in zip(program.module()(x), st(x)):
            torch.testing.assert_close(got, want)

    @CUDA
    @pytest.mark.parametrize("name", FAMILIES)
    def test_cuda_matches_cpu(self, name):
        st = SpatialTransformer((1, 16, 16), name, localization="cnn", loc_options={"channels": 4, "hidden": 8})
        _perturb_head(st)
        x = torch.rand(2, 1, 16, 16)
        y_cpu, t_cpu = st(x)
        st.cuda()
        y_gpu, t_gpu = st(x.cuda())
        assert y_gpu.is_cuda
        torch.testing.assert_close(t_gpu.cpu(), t_cpu, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(y_gpu.cpu(), y_cpu, atol=1e-4, rtol=1e-4)


class TestLocalizers:
    @pytest.mark.parametrize("in_shape", [(1, 28, 28), (3, 42, 60), (1, 14, 14)])
    def test_cnn_shapes(self, in_shape):
        net = CNNLocalizer(in_shape, 6)
        assert net(torch.zeros(3, *in_shape)).shape == (3, 6)
        assert isinstance(net.head, nn.Linear) and net.head.out_features == 6

    def test_cnn_paper_sizes(self):
        net = CNNLocalizer((1, 28, 28), 6)
        convs = [m for m in net.body if isinstance(m, nn.Conv2d)]
        assert [(c.out_channels, c.kernel_size) for c in convs] == [(20, (5, 5)), (20, (5, 5))]
        assert net.head.in_features == 50

    def test_cnn_too_small(self):
        with pytest.raises(ValueError, match=r"CNNLocalizer: input 7x7 too small for a first max-pool of 2"):
            CNNLocalizer((1, 7, 7), 6)
        with pytest.raises(ValueError, match=r"CNNLocalizer: pool must be >= 1, got 0"):
            CNNLocalizer((1, 28, 28), 6, pool=0)

    @pytest.mark.parametrize(("side", "pool"), [(28, 2), (42, 3), (56, 4), (60, 4), (84, 6)])
    def test_light_pools_to_about_14(self, side, pool):
        opts = light_options((1, side, side))
        assert opts == {"channels": 8, "hidden": 32, "pool": pool}
        net = CNNLocalizer((1, side, side), 6, **opts)
        assert net(torch.zeros(2, 1, side, side)).shape == (2, 6)
        pooled = net.body[0](torch.zeros(1, 1, side, side)).shape[-1]
        assert 13 <= pooled <= 15

    @pytest.mark.parametrize("side", [28, 42, 56])
    def test_light_costs_a_few_percent_of_the_classifier(self, side):
        """Multiply-adds of the light net's convs and FCs, against the classifier on a 28×28 crop."""

        def macs(module: nn.Module, x: torch.Tensor) -> int:
            counts: list[int] = []

            def hook(mod: nn.Module, inp: tuple, out: torch.Tensor) -> None:
                per_output = mod.weight[0].numel() if isinstance(mod, nn.Conv2d) else mod.in_features
                counts.append(out[0].numel() * per_output)

            handles = [m.register_forward_hook(hook) for m in module.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
            with torch.no_grad():
                module(x)
            for h in handles:
                h.remove()
            return sum(counts)

        light = CNNLocalizer((1, side, side), 6, **light_options((1, side, side)))
        paper = CNNLocalizer((1, side, side), 6)
        cls = ConvClassifier((1, 28, 28))
        c_light = macs(light, torch.zeros(1, 1, side, side))
        c_paper = macs(paper, torch.zeros(1, 1, side, side))
        c_cls = macs(cls, torch.zeros(1, 1, 28, 28))
        assert c_light < 0.05 * c_cls
        assert c_light < c_paper / 4

    def test_fc_shapes(self):
        net = FCLocalizer((2, 9, 7), 3, hidden=(10, 5))
        assert net(torch.zeros(4, 2, 9, 7)).shape == (4, 3)
        assert net.head.in_features == 5
        assert FCLocalizer((1, 9, 7), 3, hidden=()).head.in_features == 63

    @pytest.mark.parametrize("net", [CNNLocalizer, FCLocalizer])
    def test_in_shape_is_named(self, net):
        with pytest.raises(ValueError, match=rf"^{net.__name__}: in_shape \(C, H, W\) must be 3 positive whole numbers"):
            net((28, 28), 6)

    def test_build(self):
        assert isinstance(build_localizer("cnn", (1, 28, 28), 6), CNNLocalizer)
        fc = build_localizer("fc", (1, 28, 28), 6, hidden=[12])  # a list from a JSON config
        assert isinstance(fc, FCLocalizer) and fc.head.in_features == 12
        with pytest.raises(ValueError, match=r"Unknown localisation net 'mlp'\. Known: cnn, fc\."):
            build_localizer("mlp", (1, 28, 28), 6)


@pytest.mark.parametrize("transform", ["projective", "tps"])
def test_change_transform_keeps_the_model(transform: str) -> None:
    """An affine ST-CNN rewritten for a richer family reads the same crops and gives the same logits."""
    from stn.model import ModelConfig, STClassifier, change_transform

    torch.manual_seed(0)
    # bounded projective: both squash the same entries; TPS clips instead, so unbounded for exactness
    cfg = ModelConfig("pair", (42, 84), heads=2, bound=transform == "projective")
    model = STClassifier(cfg).eval()
    with torch.no_grad():  # a trained-looking head: θ depends on the input
        model.st.localization.head.weight.normal_(0, 0.05)
    new_cfg, state = change_transform(cfg, model.state_dict(), transform)
    assert new_cfg.transform == transform and new_cfg.heads == 2
    new = STClassifier(new_cfg)
    new.load_state_dict(state)
    new.eval()
    x = torch.rand(3, 1, 42, 84)
    a, b = model.forward_all(x), new.forward_all(x)
    for ca, cb in zip(a[1], b[1]):
        torch.testing.assert_close(cb, ca, atol=1e-4, rtol=0)
    torch.testing.assert_close(b[0], a[0], atol=1e-4, rtol=1e-4)


def test_change_transform_refuses_what_it_cannot_keep() -> None:
    from stn.model import ModelConfig, STClassifier, change_transform

    cnn = ModelConfig("rts", (42, 42), transform=None)
    with pytest.raises(ValueError, match="cannot start from a CNN baseline"):
        change_transform(cnn, STClassifier(cnn).state_dict(), "tps")
    aff = ModelConfig("rts", (42, 42))
    with pytest.raises(ValueError, match="a CNN baseline cannot start"):
        change_transform(aff, STClassifier(aff).state_dict(), None)


class TestOneCheckForEveryModel:
    """The transformer's sentences for an input it cannot read are the classifier's too, CNN baselines included."""

    @pytest.mark.parametrize("transform", ["affine", None], ids=["st-cnn", "cnn"])
    def test_same_sentences(self, transform):
        from stn.model import ModelConfig, STClassifier

        model = STClassifier(ModelConfig("r", (16, 16), transform=transform, localization="fc"))
        st = SpatialTransformer((1, 16, 16), localization="fc")
        for bad in (torch.rand(1, 16, 16), torch.rand(2, 1, 12, 12), torch.rand(2, 3, 16, 16)):
            for module, who in ((st, "this SpatialTransformer"), (model, "this model")):
                said = rf"^{who} was built for inputs \(B, 1, 16, 16\).*got " + re.escape(str(tuple(bad.shape)))
                with pytest.raises(ValueError, match=said):
                    module(bad)
        with pytest.raises(TypeError, match="float64 but the model's weights are torch.float32"):
            model(torch.rand(2, 1, 16, 16, dtype=torch.float64))
        with pytest.raises(TypeError, match="uint8: pixels must be floats"):
            model(torch.zeros(2, 1, 16, 16, dtype=torch.uint8))
        assert model.double()(torch.rand(2, 1, 16, 16, dtype=torch.float64)).shape == (2, 1, 10)


# ModelConfig fields a user could get wrong: (fields, error, its sentence).
_BAD_CONFIGS = [
    ({"input_size": (28,)}, ValueError, r"^input_size \(H, W\) must be 2 positive whole numbers, got \(28,\): e\.g\."),
    ({"input_size": (0, 28)}, ValueError, r"^input_size \(H, W\)"),
    ({"crop_size": (0, 5)}, ValueError, r"^crop_size \(H, W\)"),
    ({"channels": (32,)}, ValueError, r"^channels \(conv1, conv2\) must be 2 positive whole numbers"),
    ({"channels": (0, 64)}, ValueError, r"^channels \(conv1, conv2\)"),
    ({"heads": 1.5}, TypeError, r"^heads must be an int, got float 1\.5"),
    ({"heads": 0}, ValueError, r"^heads must be >= 1, got 0"),
    ({"hidden": 0}, ValueError, r"^hidden must be >= 1, got 0"),
    ({"n_classes": 2.5}, TypeError, r"^n_classes must be an int, got float 2\.5"),
    ({"digit_size": 0}, ValueError, r"^digit_size must be a finite number > 0, got 0"),
    ({"transform": "afine"}, ValueError,
     r"^Unknown transform 'afine'\. Known: affine, attention, projective, tps, or None for the CNN baseline\."),
    ({"transform_options": [4]}, TypeError, r"^transform_options must be a dict"),
]


class TestModelConfigChecks:
    """A ModelConfig that cannot make a model is refused when made, in a sentence naming the field."""

    @pytest.mark.parametrize(("kwargs", "error", "match"), _BAD_CONFIGS, ids=[repr(c[0]) for c in _BAD_CONFIGS])
    def test_bad_fields(self, kwargs, error, match):
        from stn.model import ModelConfig

        with pytest.raises(error, match=match):
            ModelConfig(**{"dataset": "r", "input_size": (28, 28), **kwargs})

    @pytest.mark.parametrize("transform", ["affine", None])
    def test_whole_float_sizes_build_a_model(self, transform):
        """(28.0, 28.0), as a JSON card may hold them, were accepted and then failed inside torch (the CNN's layers)."""
        from stn.model import ModelConfig, STClassifier

        config = ModelConfig("r", (28.0, 28.0), crop_size=(28.0, 28.0), channels=(8.0, 16.0), transform=transform)
        assert config.input_size == (28, 28) and all(isinstance(v, int) for v in (*config.input_size, *config.channels))
        assert STClassifier(config)(torch.rand(2, 1, 28, 28)).shape[-1] == 10

    @pytest.mark.parametrize(("transform", "options", "match"), [
        ("affine", {"grid_size": 3}, r"^unknown transform options 'grid_size' for affine: it takes none"),
        ("tps", {"grid_sz": 3}, r"^unknown transform options 'grid_sz' for tps: its options are grid_size"),
    ], ids=["affine", "tps"])
    def test_unknown_transform_options(self, transform, options, match):
        """Named by stn.transforms.get, where the family's constructor said only 'unexpected keyword argument'."""
        from stn.model import ModelConfig, STClassifier

        with pytest.raises(ValueError, match=match):
            T.get(transform, **options)
        with pytest.raises(ValueError, match=match):
            STClassifier(ModelConfig("r", (28, 28), transform=transform, transform_options=options, localization="fc"))

    def test_every_zoo_card_still_loads(self):
        """The checks refuse nothing the shipped model cards hold."""
        import json
        from pathlib import Path

        from stn.model import ModelConfig

        cards = sorted((Path(__file__).resolve().parent.parent / "models").glob("*.json"))
        configs = [json.loads(p.read_text())["config"] for p in cards]
        for card, config in zip(cards, configs):
            assert ModelConfig.from_dict(config).to_dict()["input_size"] == tuple(config["input_size"]), card.name


class TestClassNames:
    """Prediction.class_names: each image's label as what each head read, in the heads' own number of classes."""

    @staticmethod
    def _prediction(labels: list[int], heads: int, n_classes: int) -> stn.Prediction:
        b = len(labels)
        return stn.Prediction(labels=torch.tensor(labels), probs=torch.zeros(b, n_classes**heads), params=[],
                              crops=[], head_probs=torch.zeros(b, heads, n_classes))

    @pytest.mark.parametrize(("labels", "heads", "n_classes", "names"), [
        ([3, 9], 1, 10, ["3", "9"]),
        ([7, 42], 2, 10, ["07", "42"]),  # a Pair model: the number the digits spell
        ([5, 8], 2, 3, ["12", "22"]),  # 5 = 1·3 + 2: head 0 read 1, head 1 read 2 (was "05")
        ([11], 1, 12, ["11"]),
        ([13], 2, 12, ["1-1"]),  # classes of two characters are told apart
    ])
    def test_names(self, labels, heads, n_classes, names):
        assert self._prediction(labels, heads, n_classes).class_names() == names

    def test_names_follow_predict(self):
        """The joint label predict returns, read back: each head's own argmax, first head first."""
        from stn.model import ModelConfig, STClassifier

        torch.manual_seed(0)
        model = STClassifier(ModelConfig("pair", (16, 32), heads=2, n_classes=3, localization="fc"))
        pred = model.predict(torch.rand(4, 1, 16, 32) * 0.5)
        heads_read = pred.head_probs.argmax(dim=-1)  # (B, heads)
        assert pred.class_names() == ["".join(str(int(c)) for c in row) for row in heads_read]

    def test_no_ignored_argument(self):
        """class_names took n_classes=10 and ignored it: the number of classes is the prediction's own."""
        import inspect

        assert list(inspect.signature(stn.Prediction.class_names).parameters) == ["self"]
