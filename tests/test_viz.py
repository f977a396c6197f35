"""stn.viz: the app's figures. Geometry against the library's own grids, conventions (pixel
coordinates, anticlockwise rotations), and the figure dicts' structure (cheap, JSON-able, sized)."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from stn import viz
from stn.sampling import bilinear_taps, sample
from stn.transforms import compose_affine, control_points, decompose_affine, get

FAMILIES = [("affine", {}), ("attention", {}), ("projective", {}), ("tps", {"grid_size": 4}), ("tps", {"grid_size": 3})]


def _params(name: str, options: dict, seed: int = 0) -> torch.Tensor:
    t = get(name, **options)
    g = torch.Generator().manual_seed(seed)
    p = t.identity(1, dtype=torch.float64) + 0.15 * torch.randn(1, t.n_params, generator=g, dtype=torch.float64)
    if name == "projective":
        p[:, 6:] *= 0.3
    return p


class TestMapPoints:
    @pytest.mark.parametrize("name,options", FAMILIES, ids=[f"{n}{o.get('grid_size', '')}" for n, o in FAMILIES])
    def test_matches_transform_grid(self, name, options):
        t = get(name, **options)
        p = _params(name, options)
        grid = t.grid(p, (9, 13)).reshape(-1, 2).numpy()
        mapped = viz.map_points(t, p[0].numpy(), viz.sample_points((9, 13)))
        np.testing.assert_allclose(mapped, grid, atol=1e-6)

    def test_behind_the_camera_as_the_sampler_reads_it(self):
        """Pixels whose w <= eps read Projective.BEHIND in the sampler; the drawing mirrored them into the input."""
        t = get("projective")
        p = torch.tensor([[1.0, 0.0, 0.0, 0.0, 1.0, 0.0, -3.0, 0.0]], dtype=torch.float64)  # w = 1 - 3x
        grid = t.grid(p, (9, 13)).reshape(-1, 2).numpy()
        mapped = viz.map_points(t, p[0].numpy(), viz.sample_points((9, 13)))
        behind = viz.sample_points((9, 13))[:, 0] >= 1 / 3
        assert behind.any() and (mapped[behind] == t.BEHIND).all()
        np.testing.assert_allclose(mapped, grid, atol=1e-6)

    def test_accepts_a_family_name(self):
        out = viz.map_points("affine", [1, 0, 0.5, 0, 1, 0], np.array([[0.0, 0.0], [1.0, -1.0]]))
        np.testing.assert_allclose(out, [[0.5, 0.0], [1.5, -1.0]])

    def test_tps_control_points_land_on_their_targets(self):
        p = _params("tps", {"grid_size": 4})
        out = viz.map_points(get("tps", grid_size=4), p[0].numpy(), control_points(4, dtype=torch.float64).numpy())
        np.testing.assert_allclose(out, p.view(-1, 2).numpy(), atol=1e-9)

    def test_sample_points_are_pixel_centres(self):
        pts = viz.sample_points((2, 4))
        assert pts.shape == (8, 2)
        np.testing.assert_allclose(pts[:4, 0], [-0.75, -0.25, 0.25, 0.75])
        np.testing.assert_allclose(pts[::4, 1], [-0.5, 0.5])


class TestReading:
    @pytest.mark.parametrize("rot,sx,sy,shear,tx,ty", [(0, 1, 1, 0, 0, 0), (30, 0.8, 0.6, 0.1, 0.2, -0.3), (-120, 1.2, -0.7, -0.3, 0.5, 0.1)])
    def test_round_trip(self, rot, sx, sy, shear, tx, ty):
        theta = viz.theta_from_reading(rot, sx, sy, shear, tx, ty)
        r = viz.affine_reading("affine", theta)
        assert r == pytest.approx({"rotation": rot, "scale_x": sx, "scale_y": sy, "shear": shear, "tx": tx, "ty": ty}, abs=1e-5)

    def test_rotation_is_anticlockwise_on_screen(self):
        """A digit drawn 30° anticlockwise (stn.data._place) is read upright by a grid turned +30°."""
        from stn.data import _place

        digit = torch.zeros(1, 1, 28, 28)
        digit[0, 0, 4:24, 13:15] = 1.0  # a vertical bar
        digit[0, 0, 4:6, 13:20] = 1.0  # with a flag to the right at the top
        turned = _place(digit, (28, 28), torch.tensor([30.0]), torch.ones(1), torch.zeros(1, 2))
        theta = torch.tensor([viz.theta_from_reading(30, 1, 1, 0, 0, 0)])
        back = sample(turned, get("affine").grid(theta, (28, 28)))
        wrong = sample(turned, get("affine").grid(torch.tensor([viz.theta_from_reading(-30, 1, 1, 0, 0, 0)]), (28, 28)))
        assert F.mse_loss(back, digit) < 0.25 * F.mse_loss(wrong, digit)

    def test_library_convention_is_the_opposite_sign(self):
        assert viz.affine_reading("affine", compose_affine(25.0).reshape(-1).tolist())["rotation"] == pytest.approx(-25.0)
        assert decompose_affine(torch.tensor(viz.theta_from_reading(25, 1, 1, 0, 0, 0))).rotation_deg == pytest.approx(-25.0, abs=1e-4)

    def test_attention_projective_tps(self):
        assert viz.affine_reading("attention", [0.5, 0.1, -0.2]) == {
            "rotation": 0.0, "scale_x": 0.5, "scale_y": 0.5, "shear": 0.0, "tx": 0.1, "ty": -0.2}
        r = viz.affine_reading("projective", viz.theta_from_reading(10, 1, 1, 0, 0, 0) + [0.1, 0.0])
        assert r["rotation"] == pytest.approx(10)
        assert viz.affine_reading("tps", [0.0] * 32) is None


class TestGridFigure:
    @pytest.mark.parametrize("name,options", FAMILIES[:4], ids=[n for n, _ in FAMILIES[:4]])
    def test_structure(self, name, options):
        p = _params(name, options)[0].numpy()
        fig = viz.grid_figure(np.random.rand(42, 42), get(name, **options), [p], (28, 28), height=333)
        json.dumps(fig)  # plain data, no numpy
        names = [t["name"] for t in fig["data"] if "name" in t]
        assert names[:3] == ["input", "head 1 grid", "head 1 region"]
        assert fig["layout"]["height"] == 333
        assert fig["layout"]["yaxis"]["scaleanchor"] == "x"  # square pixels
        assert fig["layout"]["yaxis"]["range"][0] > fig["layout"]["yaxis"]["range"][1]  # y points down
        grid = next(t for t in fig["data"] if t["name"] == "head 1 grid")
        assert "reads input" in grid["hovertemplate"]
        assert len(grid["x"]) == len(grid["customdata"])
        if name == "tps":
            assert any(t["name"] == "head 1 control points" for t in fig["data"])
        if name == "projective":
            assert any(t["name"] == "head 1 corners" for t in fig["data"])

    def test_region_outline_is_in_pixels(self):
        """The identity's sampled region is the canvas outline, ``[-0.5, W-0.5]``."""
        fig = viz.grid_figure(np.zeros((20, 40)), "affine", [[1, 0, 0, 0, 1, 0]], (10, 10))
        ring = next(t for t in fig["data"] if t["name"] == "head 1 region")
        assert min(ring["x"]) == pytest.approx(-0.5) and max(ring["x"]) == pytest.approx(39.5)
        assert min(ring["y"]) == pytest.approx(-0.5) and max(ring["y"]) == pytest.approx(19.5)
        corner = next(t for t in fig["data"] if t["name"] == "head 1 top-left")
        assert (corner["x"][0], corner["y"][0]) == pytest.approx((-0.5, -0.5))

    def test_one_colour_per_head(self):
        fig = viz.grid_figure(np.zeros((42, 84)), "affine", [[0.5, 0, -0.5, 0, 1, 0], [0.5, 0, 0.5, 0, 1, 0]], (28, 28))
        regions = [t for t in fig["data"] if t["name"].endswith("region")]
        assert [r["line"]["color"] for r in regions] == [viz.head_color(0), viz.head_color(1)]

    def test_cnn_has_no_grid(self):
        fig = viz.grid_figure(np.zeros((28, 28)), None, [])
        assert [t["name"] for t in fig["data"]] == ["input"]
        assert "no transformer" in fig["layout"]["annotations"][0]["text"]

    def test_grid_lines_break_between_lines(self):
        """One trace draws every grid line: ``lines`` per direction, ``None`` between them."""
        fig = viz.grid_figure(np.zeros((28, 28)), "affine", [[1, 0, 0, 0, 1, 0]], (28, 28), lines=5)
        grid = next(t for t in fig["data"] if t["name"] == "head 1 grid")
        assert grid["x"].count(None) == grid["y"].count(None) == 10
        assert grid["customdata"].count([None, None]) == 10
        first = grid["x"][: grid["x"].index(None)]
        assert first[0] == pytest.approx(-0.5) and first[-1] == pytest.approx(27.5)  # a line spans the output

    def test_figures_do_not_share_mutable_parts(self):
        """The grid's constant parts are built once and shared; a figure changed by its user does not
        change the next one."""
        a = viz.grid_figure(np.zeros((28, 28)), "affine", [[1, 0, 0, 0, 1, 0]], (28, 28))
        for trace in a["data"][1:3]:  # the grid and the region: their hover labels come from the shared parts
            trace["customdata"][0][0] = "changed"
            trace["customdata"].clear()
        b = viz.grid_figure(np.zeros((28, 28)), "affine", [[1, 0, 0, 0, 1, 0]], (28, 28))
        for trace in b["data"][1:3]:
            assert trace["customdata"] and trace["customdata"][0][0] != "changed"


class TestCrops:
    def test_upscale_keeps_pixels(self):
        up = viz.upscale(np.array([[0, 1], [2, 3]]), 3)
        assert up.shape == (6, 6) and (up[:3, :3] == 0).all() and (up[3:, 3:] == 3).all()

    def test_crops_image(self):
        a = np.zeros((28, 28))
        b = np.ones((28, 28))
        img = viz.crops_image([a, b], target=224, border=4, gap=16)
        assert img.shape == (232, 232 * 2 + 16, 4) and img.dtype == np.uint8
        assert (img[:, 232:248, 3] == 0).all()  # the gap is transparent
        assert tuple(img[0, 0, :3]) == tuple(int(viz.HEAD_COLORS[0][i : i + 2], 16) for i in (1, 3, 5))
        assert (img[4:228, 4:228, :3] == 0).all() and (img[4:228, 252:476, :3] == 255).all()

    def test_mark(self):
        img = viz.crops_image([np.zeros((28, 28))], mark=(0, 0))
        assert tuple(img[4, 4, :3]) == (255, 40, 40)


class TestReadingHtml:
    def _crop_sizes(self, html: str) -> list[tuple[int, int]]:
        import base64
        import io

        from PIL import Image

        uris = re.findall(r'src="data:image/png;base64,([^"]+)"', html)
        return [Image.open(io.BytesIO(base64.b64decode(u))).size for u in uris]

    def test_verdict_crops_and_bars(self):
        top = {"7": 0.9, "1": 0.05, "2": 0.004}
        html = viz.reading_html("7", top, [np.zeros((28, 28))], baseline=("rts-cnn", "1", {"1": 0.6, "7": 0.4}))
        assert "reads <b>7</b> (90%)" in html and "it disagrees" in html
        assert self._crop_sizes(html) == [(28, 28)]  # sent at its own size; the page scales it, pixelated
        assert html.count('class="stn-bar-row"') == 5
        assert 'width:90.0%' in html and "<1%" in html
        assert 'id="stn-baseline"' in html and "rts-cnn" in html

    def test_two_heads_and_no_baseline(self):
        html = viz.reading_html("37", {"37": 0.8}, [np.zeros((28, 28)), np.ones((28, 28))], head_labels=["3", "7"])
        assert "head 1 reads <b>3</b>" in html and "head 2 reads <b>7</b>" in html
        assert self._crop_sizes(html) == [(28, 28), (28, 28)]
        assert viz.head_color(0) in html and viz.head_color(1) in html  # each crop framed in its head's colour
        assert 'id="stn-baseline"' not in html

    def test_a_guess_is_said_to_be_one(self):
        """Under SURE (60%) the verdict says the model is unsure, and why that may be; from SURE up it reads."""
        from stn.model import SURE

        low = viz.reading_html("7", {"7": 0.597, "1": 0.4}, [np.zeros((28, 28))],
                               baseline=("wild-cnn", "2", {"2": 0.48, "7": 0.3}))
        assert "The transformer is unsure: perhaps <b>7</b> (59%)" in low  # rounded down: not "60%" under 60%
        assert 'class="stn-unsure"' in low and "no digit it knows" in low and f"under {round(100 * SURE)}%" in low
        assert "reads <b>2</b> (48%, a guess): it disagrees" in low
        sure = viz.reading_html("7", {"7": SURE, "1": 0.4}, [np.zeros((28, 28))], baseline=("wild-cnn", "7", {"7": 0.9}))
        assert "The transformer reads <b>7</b> (60%)" in sure and "stn-unsure" not in sure and "a guess" not in sure
        cnn = viz.reading_html("4", {"4": 0.3}, [np.zeros((28, 28))], transformer=False)
        assert "This plain CNN is unsure: perhaps <b>4</b> (30%)" in cnn

    def test_weak_evidence_is_a_guess_however_peaked(self):
        """Over SURE but under the model's logit floor: a guess, with the reason that fits; the plain CNN's too."""
        html = viz.reading_html("4", {"4": 0.83}, [np.zeros((28, 28))], weak=(2.43, 5.229),
                                baseline=("wild-cnn", "4", {"4": 0.9}), baseline_weak=True)
        assert "The transformer is unsure: perhaps <b>4</b> (83%)" in html and 'class="stn-unsure"' in html
        assert "evidence for every digit is weak: its largest logit, 2.4, is under 5.2, which it reaches" in html
        assert "83% is not to be trusted" in html and "under 60%" not in html
        assert "reads <b>4</b> (90%, a guess): it agrees" in html
        low = viz.reading_html("4", {"4": 0.3}, [np.zeros((28, 28))], weak=(2.0, 5.0))
        assert "under 60%" in low and "weak" not in low  # the probability is the plainer reason

    def test_touching_digits_get_a_note(self):
        """A mark that may be two digits that touch: the reading stands, with a note under the verdict."""
        html = viz.reading_html("4", {"4": 0.9}, [np.zeros((28, 28))], touching=True)
        assert "The transformer reads <b>4</b> (90%)" in html and 'class="stn-touching"' in html
        assert "if it is two digits that touch, the model read them as one" in html
        assert "stn-touching" not in viz.reading_html("4", {"4": 0.9}, [np.zeros((28, 28))])

    def test_percent_rounds_to_the_nearest_but_not_across_sure(self):
        import torch

        assert [viz.percent(p) for p in (0.0, 0.004, 0.009, 0.01, 0.29, 0.296, 0.597, 0.6, 0.994, 0.9994, 0.9996, 1.0)] == [
            "<1%", "<1%", "1%", "1%", "29%", "30%", "59%", "60%", "99%", "99%", "100%", "100%"]
        assert viz.percent(float(torch.tensor(0.03))) == "3%"  # 0.0299999993 in float32: was "2%"
        # the Label of the other tabs rounds by itself: it is given the values the panel shows
        shown = viz.shown_confidences({"1": 0.0300, "4": 0.0175, "7": 0.597, "0": 0.003})
        assert [round(100 * v) for v in shown.values()][:3] == [3, 2, 59] and shown["0"] == 0.003

    def test_plain_cnn_and_escaping(self):
        html = viz.reading_html("<b>", {"<b>": 1.0}, [np.zeros((42, 42))], transformer=False)
        assert "This plain CNN reads" in html and "the whole input" in html
        assert "<b>&lt;b&gt;</b>" in html and self._crop_sizes(html) == [(42, 42)]


class TestThetaHtml:
    def test_affine(self):
        html = viz.theta_html("affine", [viz.theta_from_reading(30, 0.5, 0.5, 0, 0.25, 0)], (56, 56))
        assert "stn-matrix" in html and "30.0° anticlockwise" in html and "7.0" in html  # 0.25 · 56/2 px

    def test_each_family(self):
        assert "isotropic" in viz.theta_html("attention", [[0.5, 0.1, 0.2]], (60, 60))
        assert "top-left corner" in viz.theta_html("projective", [[1, 0, 0, 0, 1, 0, 0, 0]], (28, 28))
        tps = viz.theta_html("tps", [control_points(4).reshape(-1).tolist()], (28, 28), {"grid_size": 4})
        assert "4×4 control points" in tps and tps.count('<td title="control point') == 16
        assert "plain CNN" in viz.theta_html(None, [], (28, 28))

    def test_scrolls_sideways_on_a_narrow_screen(self):
        """A phone at 200% zoom (195 px) cut the matrix and the reading off (nowrap cells): the panel scrolls."""
        html = viz.theta_html("affine", [viz.theta_from_reading(30, 0.5, 0.5, 0, 0.25, 0)], (56, 56))
        assert html.startswith('<div class="stn-theta stn-scroll">')

    def test_tps_panel_reads_the_affine_part_and_the_bending(self):
        from stn.transforms import affine_embedding

        theta = torch.tensor([viz.theta_from_reading(30, 0.8, 0.8, 0, 0.25, 0)])
        spline = theta @ affine_embedding(get("tps", grid_size=4)).T  # a spline that is an affine map
        html = viz.theta_html("tps", spline.tolist(), (56, 56), {"grid_size": 4})
        assert "30.0° anticlockwise" in html and "shift (7.0, 0.0) px" in html
        assert "0.0 px (mean), 0.0 px (max) off that map" in html
        spline[0, 0] += 0.5  # the top-left point alone moves 14 px to the right: that is bending
        bent = viz.theta_html("tps", spline.tolist(), (56, 56), {"grid_size": 4})
        worst = float(re.search(r"([\d.]+) px \(max\) off that map", bent).group(1))
        assert 5 < worst < 14  # the fit takes up part of the move

    def test_two_heads_are_labelled(self):
        html = viz.theta_html("affine", [[1, 0, 0, 0, 1, 0]] * 2, (42, 84))
        assert "head 1" in html and "head 2" in html

    def test_no_negative_zero(self):
        assert "−0.000" not in viz.theta_html("affine", [[1, -1e-7, 0, 0, 1, -1e-9]], (28, 28))


class TestKernel:
    def _setup(self):
        g = torch.Generator().manual_seed(1)
        img = torch.rand(1, 1, 12, 16, generator=g)
        theta = torch.tensor([viz.theta_from_reading(20, 0.6, 0.7, 0.1, 0.1, -0.2)])
        grid = get("affine").grid(theta, (8, 8))
        return img, grid

    @pytest.mark.parametrize("mode", ["bilinear", "nearest"])
    def test_formula_value_is_grid_sample(self, mode):
        img, grid = self._setup()
        out = sample(img, grid, mode=mode)
        for r, c in [(0, 0), (3, 5), (7, 7)]:
            pt = tuple(grid[0, r, c].tolist())
            taps = viz.nearest_tap(pt, (12, 16)) if mode == "nearest" else bilinear_taps(pt, (12, 16))
            recon = sum(w * float(img[0, 0, rr, cc]) for rr, cc, w in taps)
            assert recon == pytest.approx(float(out[0, 0, r, c]), abs=1e-5)
            text = viz.kernel_formula(img[0, 0].numpy(), pt, mode, (r, c))
            value = float(re.search(r"(?:=|\\approx) (-?[0-9.]+) \\end\{aligned\}\$\$", text).group(1))
            assert value == pytest.approx(float(out[0, 0, r, c]), abs=2e-3)
            assert f"row {r}, col {c}" in text

    def test_kernel_figure(self):
        img, grid = self._setup()
        fig = viz.kernel_figure(img[0, 0].numpy(), tuple(grid[0, 3, 3].tolist()), "bilinear")
        json.dumps(fig)
        weights = [t["text"][0] for t in fig["data"] if t.get("name") == "weight"]
        assert len(weights) == 4
        assert sum(float(w[3:-4]) for w in weights) == pytest.approx(1.0, abs=0.02)
        assert "xaxis2" in fig["layout"]
        nearest = viz.kernel_figure(img[0, 0].numpy(), tuple(grid[0, 3, 3].tolist()), "nearest")
        assert sum(1 for t in nearest["data"] if t.get("name") == "weight") == 1
        # the source point sits within half a pixel of its heaviest tap's weight: the weights are drawn over it, haloed
        marker = max(i for i, t in enumerate(fig["data"]) if t.get("mode") == "markers" and t.get("xaxis") == "x2")
        numbers = [i for i, t in enumerate(fig["data"]) if t.get("mode") == "text" and t.get("xaxis") == "x2"]
        assert len(numbers) == 5 and all(i > marker and fig["data"][i]["textfont"].get("shadow") for i in numbers)

    def test_kernel_formula_fits_a_phone(self):
        """Each display line of the formula holds at most two products (four did not fit 326 px)."""
        img, grid = self._setup()
        text = viz.kernel_formula(img[0, 0].numpy(), tuple(grid[0, 3, 3].tolist()), "bilinear", (3, 3))
        displays = re.findall(r"\$\$(.*?)\$\$", text, flags=re.DOTALL)
        assert len(displays) == 2 and all("aligned" in d for d in displays)
        for line in re.split(r"\\\\", displays[1]):
            assert line.count("\\cdot") <= 2, line

    def test_nearest_kernel_rounds_a_tie_to_even_as_grid_sample_does(self):
        img = np.arange(20 * 30, dtype=np.float64).reshape(20, 30) / 600
        w, h = 30, 20
        point = ((2 * 10.5 + 1) / w - 1, (2 * 12.0 + 1) / h - 1)  # x^s = 10.5 px: a tie
        out = F.grid_sample(torch.tensor(img)[None, None], torch.tensor([[[point]]], dtype=torch.float64).view(1, 1, 1, 2), mode="nearest", align_corners=False)
        text = viz.kernel_formula(img, point, "nearest", (0, 0))
        assert "U_{12,10}" in text and float(out) == pytest.approx(img[12, 10])  # 10, the even one, not ⌊10.5 + 0.5⌋
        assert "even pixel" in text and "\\operatorname{round}" in text
        assert "is a step" in viz.kernel_formula(img, point, "nearest", (0, 0), gradient={})

    def test_a_source_point_on_a_pixel_centre_says_which_derivative_is_shown(self):
        """On a pixel centre the bilinear kernel has a kink: one tap is listed, and the derivative is PyTorch's one-sided
        one, which reads the next pixel (weight 0): the text says so, and the number is that difference."""
        rng = np.random.default_rng(3)
        img = rng.random((20, 30))
        g = viz.kernel_gradient(img, "affine", [1, 0, 0, 0, 1, 0], (20, 30), (12, 10))  # identity: x^s = 10, y^s = 12
        assert g["on_column"] and g["on_row"]
        assert g["dx"] == pytest.approx(img[12, 11] - img[12, 10]) and g["dy"] == pytest.approx(img[13, 10] - img[12, 10])
        point = ((2 * 10 + 1) / 30 - 1, (2 * 12 + 1) / 20 - 1)
        text = viz.kernel_formula(img, point, "bilinear", (12, 10), gradient=g)
        assert text.count("weight $") == 1 and "on a pixel centre" in text and "counts as $-1$" in text
        off = viz.kernel_gradient(img, "affine", [0.9, 0, 0.01, 0, 0.9, 0.02], (20, 30), (12, 10))
        assert "kink" not in viz.kernel_formula(img, point, "bilinear", (12, 10), gradient=off)

    @pytest.mark.parametrize("family", ["affine", "attention", "projective", "tps"])
    def test_gradient_is_the_papers_eq_7_and_moves_v_as_theta_moves(self, family):
        """∂V/∂x^s and ∂V/∂y^s are eq. 7 over the four taps; ∂V/∂θ is what a small change of θ does to V
        (central differences through the grid generator and grid_sample); the nearest kernel has none."""
        from stn.transforms import get

        t = get(family)
        rng = np.random.default_rng(1)
        img = rng.random((24, 20))
        theta = t.identity(1)[0].double().numpy() * 0.8 + rng.normal(0, 0.05, t.n_params)
        out, pixel = (10, 9), (4, 6)
        g = viz.kernel_gradient(img, t, theta, out, pixel)
        r, c = pixel
        pt = viz.map_points(t, theta, np.array([[(2 * c + 1) / out[1] - 1, (2 * r + 1) / out[0] - 1]]))[0]
        x, y = ((pt[0] + 1) * 20 - 1) / 2, ((pt[1] + 1) * 24 - 1) / 2
        m0, n0 = int(np.floor(x)), int(np.floor(y))
        fx, fy = x - m0, y - n0
        u = lambda n, m: img[n, m] if 0 <= n < 24 and 0 <= m < 20 else 0.0  # zero padding
        dx = (1 - fy) * (u(n0, m0 + 1) - u(n0, m0)) + fy * (u(n0 + 1, m0 + 1) - u(n0 + 1, m0))
        dy = (1 - fx) * (u(n0 + 1, m0) - u(n0, m0)) + fx * (u(n0 + 1, m0 + 1) - u(n0, m0 + 1))
        assert g["dx"] == pytest.approx(dx, abs=1e-9) and g["dy"] == pytest.approx(dy, abs=1e-9)

        def v(th):
            return viz.kernel_gradient(img, t, th, out, pixel)["value"]

        for i in range(t.n_params):
            e = np.zeros(t.n_params)
            e[i] = 1e-6
            assert g["dtheta"][i] == pytest.approx((v(theta + e) - v(theta - e)) / 2e-6, abs=1e-5)
        assert len(g["names"]) == t.n_params
        text = viz.kernel_formula(img, tuple(pt), "bilinear", pixel, 0, g)
        assert "The gradient that trains it" in text and f"{g['dx']:+.3f}" in text
        nearest = viz.kernel_gradient(img, t, theta, out, pixel, "nearest")
        assert nearest["dx"] == nearest["dy"] == 0 and not np.any(nearest["dtheta"])
        assert "constant around each pixel centre" in viz.kernel_formula(img, tuple(pt), "nearest", pixel, 0, nearest)

    def test_outside_reads_padding(self):
        assert viz.nearest_tap((5.0, 5.0), (10, 10)) == []
        assert "outside the input" in viz.kernel_formula(np.zeros((10, 10)), (5.0, 5.0), "bilinear", (0, 0))


class TestCharts:
    def test_rotation_figure(self):
        a = list(range(-180, 181, 20))
        fig = viz.rotation_figure(a, a, test_median=a, test_band=(a, a), trained=(-45, 45), current=30)
        json.dumps(fig)
        assert [t["name"] for t in fig["data"]] == ["perfect", "test digits (quartiles)", "test digits (median)", "this input"]
        assert len(fig["layout"]["shapes"]) == 2 and fig["layout"]["height"] > 0

    def test_rotation_verdict_reads_how_much_of_the_turn_is_undone(self):
        from stn.inference import rotation_followed

        a = list(range(-180, 181, 20))
        upright = rotation_followed(a, [0.9 * v for v in a], 45)
        assert upright == pytest.approx(0.9)
        assert rotation_followed(a, [0.9 * v if abs(v) <= 45 else 0 for v in a], 45) == pytest.approx(0.9)  # only ±45° counts
        assert rotation_followed(a, None) is None and rotation_followed([0], [0.0]) is None
        text = viz.rotation_verdict("r-up", upright, 90, "r-up", on="96 test digits", picture=0.25)
        assert "turns digits upright**: on 96 test digits, turned up to ±90°" in text and "by 90% of the turn" in text
        assert "On this picture: 25%." in text and "was trained with" not in text
        text = viz.rotation_verdict("r-half", 0.5, 90, "r-up")
        assert "part of the way**: on this picture" in text and "50%" in text and "`r-up` was trained with" in text
        text = viz.rotation_verdict("wild", -0.04, 90, None)
        assert "barely turns its grid** (4% of the turn the other way, on this picture turned up to ±90°)" in text
        assert "was trained with" not in text and "On this picture" not in text and "near flat" in text
        text = viz.rotation_verdict("r", 0.21, 90, "r-up", on="96 test digits", picture=-0.3)
        assert "turns its grid a little** (21% of the turn, on 96 test digits" in text and "near flat" not in text
        assert "On this picture: 30% of the turn the other way." in text
        text = viz.rotation_verdict("r", -0.004, 45, None, picture=-0.003)  # a hair the other way is 0%, not "-0%"
        assert "(0% of the turn, on" in text and "On this picture: 0%." in text and "-0%" not in text
        assert "no transformer" in viz.rotation_verdict("wild-cnn", None, 90, "r-up")
        # a task without turns, and a family that cannot turn: not "its classifier learnt to read turned digits"
        text = viz.rotation_verdict("p", -0.1, 45, None, on="96 test digits", trained_on_turns=False)
        assert "trained on digits that are not turned" in text and "learnt to read turned digits" not in text
        text = viz.rotation_verdict("tc-attention", 0.0, 45, None, can_turn=False, trained_on_turns=False)
        assert "cannot turn its grid" in text and "only moves and scales it" in text

    def test_accuracy_figure(self):
        fig = viz.accuracy_figure([-90, 0, 90], {"st": [0.5, 1.0, 0.5], "cnn": [0.2, 0.9, 0.2]}, n=100)
        assert [t["y"] for t in fig["data"]] == [[50.0, 100.0, 50.0], [20.0, 90.0, 20.0]]
        assert "100 test digits" in fig["layout"]["yaxis"]["title"]["text"]


def test_table1_cell_is_the_default_named_model_not_a_variant():
    cards = [
        {"name": name, "dataset": {"name": "r"}, "config": {"transform": "affine"}, "metrics": {"test_error": err}}
        for name, err in (("r-affine-crop20", 0.0058), ("r-affine", 0.0054), ("r-affine-upright", 0.0071))
    ]
    html = viz.table1_html(cards)
    # the model's name in sight under its number (not in a hover title a keyboard or a phone cannot show)
    assert '<b>0.54 ✓</b><br><small class="stn-t1-model">r-affine</small>' in html and "0.71" not in html and "0.58" not in html
    assert '<b>0.71</b><br><small class="stn-t1-model">r-affine-upright</small>' in viz.table1_html([cards[2]])  # a variant alone
    assert "title=" not in html


def test_table1_puts_ours_beside_the_paper():
    cards = [
        {"name": "rts-affine", "dataset": {"name": "rts"}, "config": {"transform": "affine"}, "metrics": {"test_error": 0.0083}},
        {"name": "rts-cnn", "dataset": {"name": "rts"}, "config": {"transform": None}, "metrics": {"test_error": 0.0176}},
        {"name": "wild-affine", "dataset": {"name": "wild"}, "config": {"transform": "affine"}, "metrics": {"test_error": 0.02}},
    ]
    html = viz.table1_html(cards)
    assert "0.5 / <b" in html and "0.83</b>" in html and "0.8 / <b" in html and "1.76</b>" in html
    # at or below the paper's: green and a ✓, not the colour alone (1.76 is over the paper's 0.8)
    assert "1.76</b>" in html and "1.76 ✓" not in html
    good = viz.table1_html([{**cards[0], "metrics": {"test_error": 0.004}}])
    assert '<td class="stn-ours-good">0.5 / <b>0.40 ✓</b><br><small class="stn-t1-model">rts-affine</small>' in good
    assert "<th>WILD</th>" in html
    assert math.isclose(viz.PAPER_TABLE1["ST-CNN TPS"]["e"], 1.1)
    from stn.table import PAPER  # the README's table reads the same numbers as the About tab's

    assert PAPER[("r", "tps")] == viz.PAPER_TABLE1["ST-CNN TPS"]["r"] == 0.7
    assert PAPER[("tc", "affine")] == 1.7 and ("tc", "attention") not in PAPER
    assert all(PAPER[(ds, "cnn")] == err for ds, err in viz.PAPER_TABLE1["CNN"].items())


def test_markdown_table_shows_how_a_fine_tuned_model_started(tmp_path):
    from stn.table import markdown_table

    def card(name, transform, training):
        base = {"seed": 0, "epochs": 20.0, "train_seconds": 600.0, "hardware": "CPU"}
        return {"name": name, "dataset": {"name": "rts"}, "config": {"transform": transform},
                "metrics": {"test_error": 0.005}, "training": {**base, **training}}

    cards = [
        card("rts-affine", "affine", {"init": {"model": "x", "transform": "affine", "epochs": 60.0}}),
        card("rts-tps", "tps", {"init": {"model": "rts-affine", "transform": "affine", "epochs": 80.0}}),
        card("rts-cnn", None, {}),
    ]
    for c in cards:
        (tmp_path / f"{c['name']}.json").write_text(json.dumps(c))
        (tmp_path / f"{c['name']}.safetensors").write_bytes(b"")
    rows = {line.split(" | ")[0]: line for line in markdown_table(tmp_path).splitlines() if "min |" in line}
    assert "| 60.0 + 20.0 |" in rows["| rts-affine"]  # the same family: epochs only
    assert "| 80.0 affine + 20.0 |" in rows["| rts-tps"]  # a warm start from another family says which
    assert "| 20.0 |" in rows["| rts-cnn"]


def test_the_table_leaves_out_a_card_it_cannot_place(tmp_path, capsys):
    """A card written by hand (no dataset, config or test error) stopped ``stn table`` with a KeyError traceback;
    one with no record of its run stopped the timing table. The first is left out and named, the second has no
    timing row."""
    from stn.cli import main
    from stn.table import left_out, markdown_table

    cards = [{"name": "mine", "description": "by hand"},
             {"name": "rts-affine", "dataset": {"name": "rts"}, "config": {"transform": "affine"}, "metrics": {"test_error": 0.005}}]
    for c in cards:
        (tmp_path / f"{c['name']}.json").write_text(json.dumps(c))
        (tmp_path / f"{c['name']}.safetensors").write_bytes(b"")
    assert left_out(tmp_path) == ["mine"]
    table = markdown_table(tmp_path)
    assert "**0.50** (0.5)" in table and "min |" not in table
    assert main(["table", "--models-dir", str(tmp_path)]) == 0
    assert "left out (no dataset, config or test error in the card): mine" in capsys.readouterr().err


def _contrast(fg: str, bg: str) -> float:
    """WCAG 2 contrast ratio of two ``#rrggbb`` colours."""
    def lum(c: str) -> float:
        rgb = [int(c.lstrip("#")[i : i + 2], 16) / 255 for i in (0, 2, 4)]
        r, g, b = (v / 12.92 if v <= 0.03928 else ((v + 0.055) / 1.055) ** 2.4 for v in rgb)
        return 0.2126 * r + 0.7152 * g + 0.0722 * b

    hi, lo = sorted((lum(fg), lum(bg)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def test_figure_text_reads_on_a_white_page():
    """The figures' tick labels, axis titles and legends (FONT_COLOR, #8b93a1 before: 3.1:1) read at 4.5:1 on white
    (WCAG 1.4.3); the app lightens them on its dark page (app.CSS)."""
    assert _contrast(viz.FONT_COLOR, "#ffffff") >= 4.5
    fig = viz.rotation_figure(np.linspace(-90, 90, 7), np.linspace(-90, 90, 7))
    assert fig["layout"]["font"]["color"] == viz.FONT_COLOR
    assert fig["data"][0]["line"]["color"] == viz.LINE_GREY  # a line, not text: its grey is for both pages


def test_the_verdict_is_the_reading_s_heading():
    """The reading's verdict is its tab's first heading: an h2 under the page's h1 (an h3 skipped a level)."""
    html = viz.reading_html("7", {"7": 0.95}, [np.zeros((28, 28))])
    assert html.count("<h2>") == 1 and "<h3>" not in html and "reads <b>7</b>" in html
