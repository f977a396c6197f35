"""stn.training_viz: sampling-grid geometry, the probe / crops / curve pictures, and replays that render."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import torch

from stn.replay import load_replay
from stn.training_viz import ProbeView, crops_mosaic, curve_figure, lattice_points, with_step_marker
from stn.transforms import Affine, Transform, get
from stn.zoo import list_models, load_card, load_model, models_dir

go = pytest.importorskip("plotly.graph_objects")

FAMILIES = ["affine", "attention", "projective", "tps"]


def _random_params(name: str, b: int = 3, seed: int = 0) -> torch.Tensor:
    t = get(name)
    g = torch.Generator().manual_seed(seed)
    return t.identity(b) + 0.1 * torch.randn(b, t.n_params, generator=g)


class TestLatticePoints:
    @pytest.mark.parametrize("name", FAMILIES)
    def test_identity_is_the_crop_lattice(self, name: str) -> None:
        t = get(name)
        pts = lattice_points(t, t.identity(2), lines=4)
        lin = torch.linspace(-1, 1, pts.shape[1])
        assert pts.shape[0] == 2 and pts.shape[1] == pts.shape[2] and pts.shape[3] == 2
        assert torch.allclose(pts[0, 0, :, 0], lin, atol=1e-5)  # top row: x runs left → right
        assert torch.allclose(pts[0, :, 0, 1], lin, atol=1e-5)  # left column: y runs top → bottom

    def test_affine_matches_theta(self) -> None:
        theta = torch.tensor([[0.5, -0.2, 0.3, 0.1, 0.6, -0.4]])
        pts = lattice_points(Affine(), theta, lines=2)  # lattice at -1, 0, 1
        m = theta.view(2, 3)
        for u in (-1.0, 0.0, 1.0):
            for v in (-1.0, 0.0, 1.0):
                want = m @ torch.tensor([u, v, 1.0])
                got = pts[0, int(v + 1), int(u + 1)]
                assert torch.allclose(got, want, atol=1e-6)

    def test_projective_divides_by_w(self) -> None:
        h = torch.tensor([[1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.2, 0.0]])
        pts = lattice_points(get("projective"), h, lines=2)
        assert torch.allclose(pts[0, 1, 2], torch.tensor([1 / 1.2, 0.0]), atol=1e-6)  # (1, 0) → w = 1.2

    def test_projective_behind_the_camera_is_drawn_where_the_sampler_reads(self) -> None:
        t = get("projective")
        h = torch.tensor([[1.0, 0.0, 0.0, 0.0, 1.0, 0.0, -3.0, 0.0]])  # w = 1 - 3x: x = 1 is behind
        pts = lattice_points(t, h, lines=2)
        assert torch.equal(pts[0, 1, 2], torch.full((2,), t.BEHIND))  # (1, 0) → w = -2: not mirrored to (-0.5, 0)

    def test_tps_interpolates_its_control_points(self) -> None:
        params = _random_params("tps")
        pts = lattice_points(get("tps"), params, lines=3, per_cell=1)  # lattice = the 4×4 control grid
        assert torch.allclose(pts.reshape(3, -1), params, atol=1e-4)

    @pytest.mark.parametrize("name", FAMILIES)
    def test_agrees_with_the_sampling_grid(self, name: str) -> None:
        """The drawn grid is the one the sampler uses: with 16 lattice steps per side, every other
        lattice point is a pixel centre of an 8×8 output (align_corners=False)."""
        params = _random_params(name)
        t = get(name)
        pts = lattice_points(t, params, lines=4, per_cell=4)  # 17 × 17, spacing 1/8
        grid = t.grid(params, (8, 8))  # pixel centres at ±1/8, ±3/8, ...
        assert torch.allclose(pts[:, 1::2, 1::2], grid, atol=1e-5)

    def test_other_families_fall_back_on_their_grid(self) -> None:
        class Plain(Transform):  # an affine map without .matrix: the generic path
            name, n_params = "plain", 6

            def _identity_row(self) -> torch.Tensor:
                return Affine()._identity_row()

            def grid(self, params, out_size):
                return Affine().grid(params, out_size)

        params = _random_params("affine")
        want = lattice_points(Affine(), params, lines=4, per_cell=2)
        got = lattice_points(Plain(), params, lines=4, per_cell=2)
        assert torch.allclose(got, want, atol=1e-5)

    def test_bad_shape_says_what_it_expected(self) -> None:
        with pytest.raises(ValueError, match=r"expected params of shape \(B, 6\), got \(2, 5\)"):
            lattice_points(Affine(), torch.zeros(2, 5))


class TestProbeView:
    def test_identity_outline_is_each_tile(self) -> None:
        probe = torch.rand(16, 1, 42, 42)
        view = ProbeView(probe, torch.arange(16) % 10)
        fig = view.figure(Affine(), [Affine().identity(16)], labels=torch.arange(16) % 10)
        go.Figure(fig)  # a valid plotly figure
        _inner, border, centre, text = fig["data"]
        xs = [x for x in border["x"] if x is not None]
        ys = [y for y in border["y"] if y is not None]
        assert min(xs) == 0 and min(ys) == 0
        assert max(xs) == view.width_px and max(ys) == view.height_px
        assert centre["x"][0] == 21 and centre["y"][0] == 21  # the first tile's centre
        # each reading marked right (✓) or wrong (✗) in its text, not by its colour alone
        assert text["text"][:3] == ["0✓", "1✓", "2✓"] and set(text["textfont"]["color"]) == {"#3ddc84"}
        wrong = view.figure(Affine(), [Affine().identity(16)], labels=(torch.arange(16) + 1) % 10)["data"][-1]
        assert wrong["text"][:2] == ["1✗", "2✗"] and set(wrong["textfont"]["color"]) == {"#ff5a5a"}
        assert ProbeView(probe).figure(Affine(), [Affine().identity(16)], labels=torch.arange(16) % 10)["data"][-1]["text"][0] == "0"
        assert fig["layout"]["height"] == 380
        assert fig["layout"]["images"][0]["source"].startswith("data:image/png;base64,")

    @pytest.mark.parametrize("name", FAMILIES)
    def test_every_family_and_two_heads(self, name: str) -> None:
        view = ProbeView(torch.rand(16, 1, 42, 84), torch.randint(0, 10, (16, 2)))
        params = [_random_params(name, 16, seed=k) for k in range(2)]
        fig = view.figure(get(name), params, labels=torch.randint(0, 100, (16,)), title="t")
        go.Figure(fig)
        assert len(fig["data"]) == 2 * 3 + 1
        json.dumps(fig)  # plain lists and numbers only

    def test_no_transformer_shows_only_the_images(self) -> None:
        fig = ProbeView(torch.rand(4, 1, 28, 28)).figure(None, [])
        assert fig["data"] == [] and len(fig["layout"]["images"]) == 1

    def test_wrong_probe_shape(self) -> None:
        with pytest.raises(ValueError, match=r"expected probe images of shape \(P, 1, H, W\), got \(16, 42, 42\)"):
            ProbeView(torch.rand(16, 42, 42))

    def test_an_update_is_cheap(self) -> None:
        view = ProbeView(torch.rand(16, 1, 42, 42), torch.zeros(16, dtype=torch.long))
        params = [_random_params("tps", 16)]
        crops = [torch.rand(16, 1, 28, 28)]
        base = curve_figure(list(range(600)), [1.0] * 600, [0.5] * 600, total_steps=600)
        view.figure(get("tps"), params, torch.zeros(16, dtype=torch.long))  # warm the TPS weights cache
        best = float("inf")
        for _ in range(3):  # CPU time of this thread: the machine may be shared with other work
            t0 = time.thread_time()
            fig = view.figure(get("tps"), params, torch.zeros(16, dtype=torch.long))
            crops_mosaic(crops)
            with_step_marker(base, 300)
            best = min(best, time.thread_time() - t0)
        assert best < 0.05, f"one update took {1e3 * best:.0f} ms of CPU"
        assert len(json.dumps(fig)) < 120_000


class TestCropsAndCurve:
    def test_crops_mosaic(self) -> None:
        one = crops_mosaic([torch.rand(16, 1, 28, 28)], scale=1)
        assert one.shape == (4 * 30 + 3 * 2, 4 * 30 + 3 * 2, 3) and one.dtype == np.uint8
        two = crops_mosaic([torch.rand(16, 1, 28, 28)] * 2, scale=3)
        assert two.shape == (3 * 126, 3 * (4 * 60 + 3 * 2), 3)
        assert tuple(one[0, 0]) == (0, 213, 255)  # head 0's frame colour

    def test_crops_mosaic_bad_input(self) -> None:
        with pytest.raises(ValueError, match="got none"):
            crops_mosaic([])
        with pytest.raises(ValueError, match=r"expected crops of shape \(P, 1, h, w\), got \(16, 28, 28\)"):
            crops_mosaic([torch.rand(16, 28, 28)])

    def test_curve_and_marker_share_the_data(self) -> None:
        base = curve_figure([10, 20, 30], [2.0, 1.0, 0.5], [0.1, 0.5, 0.9], total_steps=40)
        go.Figure(base)
        fig = with_step_marker(base, 21)
        go.Figure(fig)
        assert fig["data"][0] is base["data"][0]  # not copied
        assert fig["data"][2]["x"] == [20] and fig["data"][3]["y"] == [0.5]
        assert fig["layout"]["shapes"][0]["x0"] == 21 and base["layout"]["shapes"] == []
        assert fig["layout"]["xaxis"]["range"] == [0, 40.0]

    def test_curve_text_reads_on_a_white_page(self) -> None:
        """The axis titles were drawn in their lines' colours (coral 2.5:1, blue 3.0:1 on white): the text is in a dark
        grey now (7.6:1; the app lightens it on its dark page), each line's colour in a swatch before its name."""
        fig = curve_figure([10, 20, 30], [2.0, 1.0, 0.5], [0.1, 0.5, 0.9], total_steps=40)
        assert fig["layout"]["font"]["color"] == "#475569"
        for axis, colour, name in (("yaxis", "#ff7f50", "loss"), ("yaxis2", "#1f9cf0", "accuracy")):
            title = fig["layout"][axis]["title"]
            assert "font" not in title and title["text"] == f'<span style="color:{colour}">\u25a0</span> {name}'
        go.Figure(fig)

    def test_empty_curve(self) -> None:
        fig = curve_figure([], [], [], current=0)
        go.Figure(fig)
        assert len(fig["data"]) == 2


# --------------------------------------------------------------------------- replays


@pytest.fixture(scope="module")
def tiny_zoo(tmp_path_factory) -> object:
    """Three throwaway models trained by the real CLI for a few steps on the bundled subset."""
    from stn.cli import main

    d = tmp_path_factory.mktemp("zoo")
    for args in (
        ["--dataset", "rts", "--steps", "6", "--name", "t-affine"],
        ["--dataset", "e", "--transform", "tps", "--steps", "4", "--name", "t-tps"],
        ["--dataset", "pair", "--steps", "4", "--name", "t-pair"],
        ["--dataset", "rts", "--transform", "none", "--steps", "3", "--name", "t-cnn"],
    ):
        assert main(["train", *args, "--batch-size", "16", "--data", "bundled", "--models-dir", str(d), "--quiet"]) == 0
    return d


def _render_replay(name: str, directory) -> None:
    card = load_card(name, directory)
    rep = load_replay(directory / card["replay"])
    model = load_model(name, device="cpu", directory=directory)
    s = len(rep.steps)
    assert s >= 2 and rep.steps[0] == 0 and (rep.steps.diff() > 0).all()
    assert rep.curve_step.shape == rep.curve_loss.shape == rep.curve_acc.shape
    view = ProbeView(rep.probe, rep.probe_labels)
    has_st = model.st is not None and rep.params.numel() > 0
    for i in (0, s - 1):
        params = [rep.params[i, k] for k in range(rep.params.shape[1])] if has_st else []
        fig = view.figure(model.st.transform if has_st else None, params, rep.labels[i])
        go.Figure(fig)
        crops = rep.crops(model, i)
        assert len(crops) == model.heads
        assert crops_mosaic(crops).ndim == 3
    if has_st:  # the replay starts where training started: the identity, or the zoomed window of --start-scale
        start = model.st.transform.zoom(model.config.start_scale, rep.params.shape[2])
        assert torch.allclose(rep.params[0, 0], start, atol=2e-3)
    go.Figure(with_step_marker(curve_figure(rep.curve_step, rep.curve_loss, rep.curve_acc), int(rep.steps[-1])))


@pytest.mark.parametrize("name", ["t-affine", "t-tps", "t-pair", "t-cnn"])
def test_replay_file_loads_and_renders(tiny_zoo, name: str) -> None:
    assert (tiny_zoo / f"{name}.replay.safetensors").stat().st_size < 3_000_000
    _render_replay(name, tiny_zoo)


_ZOO_REPLAYS = [n for n in list_models() if load_card(n).get("replay")]


@pytest.mark.parametrize(
    "name", _ZOO_REPLAYS or [pytest.param(None, marks=pytest.mark.skip(reason="no zoo replays yet"))]
)
def test_zoo_replay_loads_and_renders(name: str) -> None:
    d = models_dir()
    path = d / load_card(name, d)["replay"]
    assert path.exists(), f"{name}'s card lists {path.name}, which is missing"
    assert path.stat().st_size < 5_000_000, f"{path.name} is {path.stat().st_size / 1e6:.1f} MB"
    _render_replay(name, d)


def test_curve_marks_where_each_run_began() -> None:
    fig = curve_figure([1, 2, 3, 4], [2.0, 1.0, 1.5, 0.8], [0.2, 0.6, 0.5, 0.8], total_steps=4, run_starts=[2])
    runs = [sh for sh in fig["layout"]["shapes"] if sh.get("name") == "run-start"]
    assert [sh["x0"] for sh in runs] == [2] and fig["layout"]["annotations"][0]["text"] == "run 2"
    marked = with_step_marker(with_step_marker(fig, 3), 4)  # moving the marker keeps the run lines, adds no marker
    assert len(marked["layout"]["shapes"]) == 2 and marked["layout"]["shapes"][0]["x0"] == 4
    assert curve_figure([1], [1.0], [0.5])["layout"]["shapes"] == []
