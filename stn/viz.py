"""Figures that make a spatial transformer visible (for the app; no UI library here).

Every figure is a plain plotly figure *dict* (``{"data": [...], "layout": {...}, "config": {...}}``):
building a ``plotly.graph_objects.Figure`` validates every attribute and costs tens of
milliseconds, which an app that redraws on every slider move cannot afford. Pass the dict to
``plotly.io.from_json(json.dumps(fig))`` or ``go.Figure(fig)`` to get a Figure object.

Images are shown in *input pixel* coordinates: pixel ``(col, row)`` has its centre at
``(col, row)``, so the canvas spans ``[-0.5, W - 0.5] × [-0.5, H - 0.5]`` with y pointing down,
as in :func:`stn.sampling.to_pixel`. Transform parameters follow :mod:`stn.transforms`:
normalised ``[-1, 1]`` coordinates, ``(x, y)`` order, ``align_corners=False``, and a grid that
maps *output → input* points.

Rotations are reported as a person sees them: **degrees anticlockwise on screen** of the
region the transformer reads, which is also how :func:`stn.data._place` rotates a digit. It
is ``-decompose_affine(θ).rotation_deg`` (that reading is clockwise-positive in y-down
coordinates).
"""

from __future__ import annotations

import base64
import functools
import html
import io
import math
from collections.abc import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from stn.model import SURE
from stn.sampling import bilinear_taps, to_pixel
from stn.transforms import (
    Attention,
    Projective,
    ThinPlateSpline,
    Transform,
    compose_affine,
    control_points,
    decompose_affine,
    get,
    tps_affine_fit,
)

__all__ = [
    "HEAD_COLORS",
    "PAPER_TABLE1",
    "accuracy_figure",
    "affine_reading",
    "crops_image",
    "grid_figure",
    "head_color",
    "kernel_figure",
    "kernel_formula",
    "kernel_gradient",
    "map_points",
    "nearest_tap",
    "param_names",
    "reading_html",
    "rotation_figure",
    "rotation_verdict",
    "sample_points",
    "shown_confidences",
    "table1_html",
    "theta_from_reading",
    "theta_html",
    "upscale",
]

# One colour per transformer head; readable on a black canvas, a white page and a dark theme.
HEAD_COLORS = ("#ff8c1a", "#22c3e6", "#e8499a", "#9bd13b")
# Text of the figures (tick labels, axis titles, legends): slate 600, 7.6:1 on a white page; the app lightens these
# texts on its dark page with CSS (app.CSS), as no one grey reads 4.5:1 on both.
FONT_COLOR = "#475569"
LINE_GREY = "#8b93a1"  # a neutral line (the "no turn" diagonal, the plain CNN's curve): seen on light and dark pages
GRID_COLOR = "rgba(139, 147, 161, 0.25)"
PLOT_CONFIG = {"displayModeBar": False, "responsive": True, "scrollZoom": False}


def head_color(k: int) -> str:
    """Colour of head ``k`` (0-based)."""
    return HEAD_COLORS[k % len(HEAD_COLORS)]


def _rgba(hex_color: str, alpha: float) -> str:
    h = hex_color.lstrip("#")
    r, g, b = (int(h[i : i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r}, {g}, {b}, {alpha})"


def _transform(transform: str | Transform, options: dict | None = None) -> Transform:
    return get(transform, **(options or {})) if isinstance(transform, str) else transform


# --------------------------------------------------------------------------- geometry


@functools.lru_cache(maxsize=8)
def _tps_solver(k: int) -> torch.Tensor:
    """``(K² + 3, K²)``: control-point targets → spline coefficients (w, a), float64."""
    ctrl = control_points(k, dtype=torch.float64)
    n = ctrl.shape[0]
    r2 = torch.cdist(ctrl, ctrl).pow(2)
    system = torch.zeros(n + 3, n + 3, dtype=torch.float64)
    system[:n, :n] = r2 * torch.log(r2.clamp(min=1e-12))
    p = torch.cat([torch.ones(n, 1, dtype=torch.float64), ctrl], dim=1)
    system[:n, n:] = p
    system[n:, :n] = p.T
    return torch.linalg.inv(system)[:, :n]


def map_points(transform: str | Transform, params: Sequence[float] | np.ndarray | torch.Tensor, points: np.ndarray) -> np.ndarray:
    """Map output points to the input points they read, for any family of :mod:`stn.transforms`.

    The same mapping as ``transform.grid(params, size)``, but at arbitrary points (grid lines
    drawn smoothly, the outer edge of the sampled region, control points).

    Args:
        transform: a family name or :class:`~stn.transforms.Transform`.
        params: one image's parameters, ``(n_params,)``.
        points: ``(N, 2)`` output points ``(x, y)``, normalised.

    Returns:
        ``(N, 2)`` input points ``(x, y)``, normalised, float64.

    >>> map_points("affine", [1, 0, 0.5, 0, 1, 0], np.array([[0.0, 0.0]])).tolist()
    [[0.5, 0.0]]
    """
    t = _transform(transform)
    p = torch.as_tensor(np.asarray(params, dtype=np.float64)).reshape(1, -1)
    pts = torch.as_tensor(np.asarray(points, dtype=np.float64)).reshape(-1, 2)
    if isinstance(t, ThinPlateSpline):  # numpy: faster than torch for a few hundred points
        k = t.grid_size
        pn = pts.numpy()
        ctrl = control_points(k, dtype=torch.float64).numpy()
        r2 = ((pn[:, None, :] - ctrl[None, :, :]) ** 2).sum(-1)
        with np.errstate(divide="ignore", invalid="ignore"):
            u = np.where(r2 > 1e-12, r2 * np.log(np.maximum(r2, 1e-12)), 0.0)
        phi = np.concatenate([u, np.ones((len(pn), 1)), pn], axis=1)
        return phi @ _tps_solver(k).numpy() @ p.view(-1, 2).numpy()
    m = t.matrix(p)[0]  # (3, 3)
    uvw = pts @ m[:, :2].T + m[:, 2]  # [x y 1] @ M^T
    if isinstance(t, Projective):  # the sampler's rule: a point behind the camera reads Projective.BEHIND
        den = uvw[:, 2:]
        return torch.where(den > t.eps, uvw[:, :2] / den.clamp(min=t.eps), t.BEHIND).numpy()
    return uvw[:, :2].numpy()


def sample_points(out_size: tuple[int, int]) -> np.ndarray:
    """Output pixel centres ``(H·W, 2)`` in normalised ``(x, y)``, row-major."""
    h, w = out_size
    xs = (np.arange(w) * 2 + 1) / w - 1
    ys = (np.arange(h) * 2 + 1) / h - 1
    yy, xx = np.meshgrid(ys, xs, indexing="ij")
    return np.stack([xx.ravel(), yy.ravel()], axis=1)


def _to_px(pts: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Normalised ``(x, y)`` → pixel ``(col, row)`` of an ``(H, W)`` image."""
    h, w = size
    return np.stack([((pts[:, 0] + 1) * w - 1) / 2, ((pts[:, 1] + 1) * h - 1) / 2], axis=1)


def affine_reading(transform: str, params: Sequence[float]) -> dict[str, float] | None:
    """Rotation (° anticlockwise on screen), scale x/y, shear and translation of θ.

    For ``affine`` and ``attention``; for ``projective`` the affine part of the homography is
    read (the perspective terms are reported separately); ``None`` for TPS and the CNN.
    """
    p = [float(v) for v in params]
    if transform == "attention":
        s, tx, ty = p
        return {"rotation": 0.0, "scale_x": s, "scale_y": s, "shear": 0.0, "tx": tx, "ty": ty}
    if transform == "affine":
        theta = p
    elif transform == "projective":
        theta = p[:6]
    else:
        return None
    r = decompose_affine(torch.tensor(theta))
    rot = -r.rotation_deg
    rot = 0.0 if abs(rot) < 5e-7 else rot
    return {"rotation": rot, "scale_x": r.scale_x, "scale_y": r.scale_y, "shear": r.shear, "tx": r.tx, "ty": r.ty}


def theta_from_reading(rotation: float, scale_x: float, scale_y: float, shear: float, tx: float, ty: float) -> list[float]:
    """Inverse of :func:`affine_reading` for an affine θ: the 6 parameters, row-major.

    >>> [round(v, 6) for v in theta_from_reading(0, 1, 1, 0, 0.25, 0)]
    [1.0, 0.0, 0.25, 0.0, 1.0, 0.0]
    """
    return compose_affine(-rotation, scale_x, scale_y, shear, tx, ty).reshape(-1).tolist()


# --------------------------------------------------------------------------- figures


def _layout(height: int, **extra: object) -> dict:
    layout = {
        "height": height,
        "margin": {"l": 6, "r": 6, "t": 6, "b": 6},
        "paper_bgcolor": "rgba(0,0,0,0)",
        "plot_bgcolor": "rgba(0,0,0,0)",
        "font": {"color": FONT_COLOR, "size": 12},
        "hoverlabel": {"font": {"size": 12}},
        "showlegend": False,
        "dragmode": False,
    }
    layout.update(extra)
    return layout


def _image_axes(size: tuple[int, int], lo: np.ndarray | None = None, hi: np.ndarray | None = None, show: bool = False) -> tuple[dict, dict]:
    h, w = size
    x0, y0 = -0.5, -0.5
    x1, y1 = w - 0.5, h - 0.5
    if lo is not None and hi is not None:  # let the drawing reach a little beyond the canvas
        x0, y0 = max(min(x0, lo[0] - 1), -0.5 - w / 2), max(min(y0, lo[1] - 1), -0.5 - h / 2)
        x1, y1 = min(max(x1, hi[0] + 1), w - 0.5 + w / 2), min(max(y1, hi[1] + 1), h - 0.5 + h / 2)
    axis = {"showgrid": False, "zeroline": False, "showticklabels": show, "ticks": "", "fixedrange": True, "showline": False}
    xaxis = {**axis, "range": [x0, x1], "constrain": "domain"}
    yaxis = {**axis, "range": [y1, y0], "scaleanchor": "x", "scaleratio": 1, "constrain": "domain"}
    return xaxis, yaxis


def _heatmap(image: np.ndarray, name: str = "input", xaxis: str = "x", yaxis: str = "y") -> dict:
    # Intensities as integers 0..255: JSON writes ints several times faster than floats, and a
    # 56×56 canvas would otherwise cost milliseconds per figure.
    return {
        "type": "heatmap",
        "z": _to_u8(image).tolist(),
        "colorscale": [[0, "#000000"], [1, "#ffffff"]],
        "zmin": 0,
        "zmax": 255,
        "showscale": False,
        "name": name,
        "xaxis": xaxis,
        "yaxis": yaxis,
        "hovertemplate": "pixel (col %{x}, row %{y})<br>intensity %{z}/255<extra>" + name + "</extra>",
    }


def _polyline(segments: list[np.ndarray], labels: list[np.ndarray]) -> tuple[list, list, list]:
    """Join segments with ``None`` breaks (one trace draws many lines)."""
    xs: list = []
    ys: list = []
    cd: list = []
    for seg, lab in zip(segments, labels):
        xs += np.round(seg[:, 0], 3).tolist() + [None]
        ys += np.round(seg[:, 1], 3).tolist() + [None]
        cd += np.round(lab, 2).tolist() + [[None, None]]
    return xs, ys, cd


_LINE_POINTS = 17  # points per grid line: enough for projective and TPS curves


@functools.lru_cache(maxsize=32)
def _unit_grid(lines: int, out_size: tuple[int, int]) -> tuple[np.ndarray, int, list, list]:
    """What every grid figure draws, in the output's normalised coordinates, built once per shape.

    Returns the points ``(2·lines·17 + 4·17, 2)`` (the grid lines, horizontal then vertical at each
    tick, then the output's outer edge from its top-left corner), the number of line points, and
    the hover labels (output pixels) of the lines (with ``None`` breaks) and of the edge.
    """
    dense = np.linspace(-1, 1, _LINE_POINTS)
    ticks = np.linspace(-1, 1, lines)
    line_pts = []
    for v in ticks:  # horizontal lines (fixed y) then vertical ones (fixed x)
        line_pts.append(np.stack([dense, np.full_like(dense, v)], 1))
        line_pts.append(np.stack([np.full_like(dense, v), dense], 1))
    edge = np.concatenate([
        np.stack([dense, -np.ones_like(dense)], 1), np.stack([np.ones_like(dense), dense], 1),
        np.stack([dense[::-1], np.ones_like(dense)], 1), np.stack([-np.ones_like(dense), dense[::-1]], 1),
    ])
    _, _, line_cd = _polyline(line_pts, [_to_px(pts, out_size) for pts in line_pts])
    edge_cd = np.round(_to_px(edge, out_size), 2).tolist()
    pts = np.concatenate(line_pts + [edge])
    return pts, len(line_pts) * _LINE_POINTS, line_cd, edge_cd


def _with_breaks(points: np.ndarray, n: int) -> tuple[list, list]:
    """``(k·n, 2)`` points of ``k`` lines → x and y lists with a ``None`` after each line."""
    seg = np.round(points.reshape(-1, n, 2), 3)
    pad = np.full((seg.shape[0], 1, 2), np.nan)
    flat = np.concatenate([seg, pad], axis=1).reshape(-1, 2)
    xs, ys = flat[:, 0].tolist(), flat[:, 1].tolist()
    return [None if v != v else v for v in xs], [None if v != v else v for v in ys]


def grid_figure(
    image: np.ndarray,
    transform: str | Transform | None = None,
    params: Sequence[Sequence[float]] = (),
    out_size: tuple[int, int] = (28, 28),
    *,
    lines: int = 7,
    height: int = 380,
    heads_shown: Sequence[int] | None = None,
    highlight_point: int | None = None,
) -> dict:
    """The input as the model sees it, with each head's sampling grid drawn over it.

    For each head: the warped grid lines (``lines`` per direction, drawn through the output's
    span and densely sampled so projective and TPS grids curve), the outline of the sampled
    region (the output's outer edge, filled faintly), a marker where the output's top-left
    corner reads (to show orientation), and for TPS the control points, for projective the
    corners. Hovering a line shows the output point and the input point it reads.

    Args:
        image: ``(H, W)`` in [0, 1], light ink on dark, the model's input.
        transform: family of the model's transformer; ``None`` for the plain CNN.
        params: one parameter vector per head.
        out_size: ``(h, w)`` of each head's output (the crop).
        lines: grid lines per direction.
        height: figure height in px (plotly's autosize can collapse to zero height).
        heads_shown: heads to draw (default all).
        highlight_point: TPS control point to ring (the playground's selection).

    >>> fig = grid_figure(np.zeros((28, 28)), "affine", [[1, 0, 0, 0, 1, 0]])
    >>> [t["name"] for t in fig["data"]][:3]
    ['input', 'head 1 grid', 'head 1 region']
    """
    img = np.asarray(image, dtype=np.float64)
    size = img.shape[-2:]
    data = [_heatmap(img)]
    allpts = [np.array([[0.0, 0.0], [size[1] - 1.0, size[0] - 1.0]])]
    annotations = []
    if transform is not None and len(params):
        t = _transform(transform)
        oh, ow = out_size
        unit, n_lines, line_cd, edge_cd = _unit_grid(lines, (oh, ow))  # shared: copied into each figure
        shown = range(len(params)) if heads_shown is None else heads_shown
        for k in shown:
            p = params[k]
            color = head_color(k)
            # every point this head draws, mapped in one call: grid lines, then the outer edge
            mapped = _to_px(map_points(t, p, unit), size)
            xs, ys = _with_breaks(mapped[:n_lines], _LINE_POINTS)
            data.append({
                "type": "scatter", "mode": "lines", "name": f"head {k + 1} grid", "x": xs, "y": ys, "customdata": [c[:] for c in line_cd],
                "line": {"color": _rgba(color, 0.75), "width": 1.2},
                "hovertemplate": "output (%{customdata[0]:.1f}, %{customdata[1]:.1f}) reads input (%{x:.1f}, %{y:.1f}) px"
                + f"<extra>head {k + 1}</extra>",
            })
            ring = mapped[n_lines:]
            allpts.append(ring)
            data.append({
                "type": "scatter", "mode": "lines", "name": f"head {k + 1} region",
                "x": np.round(ring[:, 0], 3).tolist(), "y": np.round(ring[:, 1], 3).tolist(),
                "customdata": [c[:] for c in edge_cd],
                "fill": "toself", "fillcolor": _rgba(color, 0.10), "line": {"color": color, "width": 3},
                "hovertemplate": "edge of output (%{customdata[0]:.1f}, %{customdata[1]:.1f}) reads input (%{x:.1f}, %{y:.1f}) px"
                + f"<extra>head {k + 1}</extra>",
            })
            corner = ring[0]  # the edge starts at the output's top-left corner
            data.append({
                "type": "scatter", "mode": "markers", "name": f"head {k + 1} top-left",
                "x": [round(float(corner[0]), 3)], "y": [round(float(corner[1]), 3)],
                "marker": {"color": color, "size": 9, "symbol": "square", "line": {"color": "#ffffff", "width": 1}},
                "hovertemplate": "top-left of the crop reads (%{x:.1f}, %{y:.1f}) px" + f"<extra>head {k + 1}</extra>",
            })
            if isinstance(t, ThinPlateSpline):
                rest = control_points(t.grid_size).double().numpy()
                tgt = _to_px(np.asarray(p, dtype=np.float64).reshape(-1, 2), size)
                idx = list(range(len(rest)))
                data.append({
                    "type": "scatter", "mode": "markers+text", "name": f"head {k + 1} control points",
                    "x": np.round(tgt[:, 0], 3).tolist(), "y": np.round(tgt[:, 1], 3).tolist(),
                    "text": [str(i + 1) for i in idx], "textposition": "top right",
                    "textfont": {"color": color, "size": 10},
                    "customdata": [[i + 1, *np.round(_to_px(rest[i : i + 1], (oh, ow))[0], 1).tolist()] for i in idx],
                    "marker": {
                        "color": ["#ffffff" if i == highlight_point else color for i in idx],
                        "size": [13 if i == highlight_point else 8 for i in idx],
                        "line": {"color": color, "width": 2},
                    },
                    "hovertemplate": "control point %{customdata[0]}: output (%{customdata[1]}, %{customdata[2]}) "
                    "reads input (%{x:.1f}, %{y:.1f}) px" + f"<extra>head {k + 1}</extra>",
                })
                allpts.append(tgt)
            elif isinstance(t, Projective):
                corners = _to_px(map_points(t, p, np.array([[-1.0, -1.0], [1, -1], [1, 1], [-1, 1]])), size)
                data.append({
                    "type": "scatter", "mode": "markers+text", "name": f"head {k + 1} corners",
                    "x": np.round(corners[:, 0], 3).tolist(), "y": np.round(corners[:, 1], 3).tolist(),
                    # each label inside its corner: above it, the top ones fell outside the plot's range
                    "text": ["TL", "TR", "BR", "BL"], "textposition": ["bottom right", "bottom left", "top left", "top right"],
                    "textfont": {"color": color, "size": 11},
                    "marker": {"color": color, "size": 8},
                    "hovertemplate": "%{text} corner reads (%{x:.1f}, %{y:.1f}) px" + f"<extra>head {k + 1}</extra>",
                })
    else:
        annotations.append({
            "text": "plain CNN: no transformer, it reads the whole canvas", "showarrow": False,
            "xref": "paper", "yref": "paper", "x": 0.5, "y": 0.02, "font": {"color": "#ffffff", "size": 12},
            "bgcolor": "rgba(0,0,0,0.55)",
        })
    stack = np.concatenate(allpts)
    xaxis, yaxis = _image_axes(size, stack.min(0), stack.max(0))
    layout = _layout(height, xaxis=xaxis, yaxis=yaxis, annotations=annotations, hovermode="closest",
                     margin={"l": 6, "r": 6, "t": 34, "b": 6})  # room for the UI's label above the canvas
    return {"data": data, "layout": layout, "config": PLOT_CONFIG}


def upscale(image: np.ndarray, factor: int) -> np.ndarray:
    """Nearest-neighbour upscaling so that each pixel becomes a ``factor``×``factor`` block."""
    return np.repeat(np.repeat(np.asarray(image), factor, axis=0), factor, axis=1)


def _to_u8(image: np.ndarray) -> np.ndarray:
    return (np.clip(np.asarray(image, dtype=np.float64), 0, 1) * 255 + 0.5).astype(np.uint8)


def crops_image(
    crops: Sequence[np.ndarray], target: int = 224, border: int = 4, gap: int = 16, colors: Sequence[str] | None = None,
    mark: tuple[int, int] | None = None,
) -> np.ndarray:
    """The rectified crops side by side, upscaled with nearest so pixels show, framed in their head's colour.

    Args:
        crops: one ``(h, w)`` array in [0, 1] per head.
        target: approximate longer side of each crop on screen, px (a whole upscale factor is used).
        border, gap: frame width and spacing in px.
        colors: frame colour per head (default :data:`HEAD_COLORS`).
        mark: ``(row, col)`` of an output pixel to outline (the kernel view), on the first crop.

    Returns:
        ``(H, W, 4)`` uint8 RGBA; the gaps are transparent, so it sits on any theme.

    >>> crops_image([np.zeros((28, 28))]).shape
    (232, 232, 4)
    """
    tiles = []
    for k, crop in enumerate(crops):
        crop = np.asarray(crop, dtype=np.float64)
        f = max(1, round(target / max(crop.shape)))
        grey = upscale(_to_u8(crop), f)
        h, w = grey.shape
        tile = np.zeros((h + 2 * border, w + 2 * border, 4), dtype=np.uint8)
        hx = (colors[k] if colors else head_color(k)).lstrip("#")
        tile[..., :3] = [int(hx[i : i + 2], 16) for i in (0, 2, 4)]
        tile[..., 3] = 255
        tile[border:-border, border:-border, :3] = grey[..., None]
        if mark is not None and k == 0:
            r, c = mark
            y0, x0 = border + r * f, border + c * f
            ring = [(y0 - 1, y0 + f + 1, x0 - 1, x0 + f + 1)]
            for a, b, c0, c1 in ring:
                a, c0 = max(a, 0), max(c0, 0)
                tile[a:b, c0 : c0 + 2, :3] = (255, 40, 40)
                tile[a:b, c1 - 2 : c1, :3] = (255, 40, 40)
                tile[a : a + 2, c0:c1, :3] = (255, 40, 40)
                tile[b - 2 : b, c0:c1, :3] = (255, 40, 40)
        tiles.append(tile)
    height = max(t.shape[0] for t in tiles)
    width = sum(t.shape[1] for t in tiles) + gap * (len(tiles) - 1)
    out = np.zeros((height, width, 4), dtype=np.uint8)
    x = 0
    for t in tiles:
        y = (height - t.shape[0]) // 2
        out[y : y + t.shape[0], x : x + t.shape[1]] = t
        x += t.shape[1] + gap
    return out


# --------------------------------------------------------------------------- the reading panel


def _whole_percent(p: float) -> int:
    """``p`` as the whole percent the page shows: the nearest (as Gradio's Label rounds), except that a
    reading under :data:`stn.model.SURE` never shows as SURE's percent, nor one short of certain as 100."""
    v = round(100 * float(p))
    sure = round(100 * SURE)
    if float(p) < SURE and v >= sure:
        v = sure - 1
    if v >= 100 and float(p) < 0.9995:
        v = 99
    return v


def percent(p: float) -> str:
    """A probability as a short percentage, ``"98%"``, or ``"<1%"`` where it rounds to 0
    (see :func:`_whole_percent`: nearest, but 59.7% stays "59%" and 99.9% "99%")."""
    v = _whole_percent(p)
    return f"{v}%" if v >= 1 else "<1%"


def shown_confidences(probs: Mapping[str, float]) -> dict[str, float]:
    """``label → probability`` for a ``gr.Label``, moved to the percent :func:`percent` shows, so that a
    reading reads the same in every tab (the Label rounds to the nearest percent by itself)."""
    return {k: (_whole_percent(v) / 100 if _whole_percent(v) >= 1 else float(v)) for k, v in probs.items()}


def png_data_uri(image: np.ndarray) -> str:
    """An ``(h, w)`` image in [0, 1] as a grey PNG ``data:`` URI, at its own size (a few hundred bytes
    for a 28×28 crop; the page scales it up with ``image-rendering: pixelated``)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(_to_u8(image), "L").save(buf, format="PNG", compress_level=1)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _bars(top: Mapping[str, float], css: str) -> str:
    rows = "".join(
        f'<div class="stn-bar-row"><span class="stn-bar-name">{html.escape(c)}</span>'
        f'<span class="stn-bar"><span style="width:{100 * min(max(p, 0.0), 1.0):.1f}%"></span></span>'
        f'<span class="stn-bar-pct">{percent(p)}</span></div>'
        for c, p in top.items()
    )
    return f'<div class="stn-bars {css}">{rows}</div>'


def reading_html(
    label: str,
    top: Mapping[str, float],
    crops: Sequence[np.ndarray],
    *,
    transformer: bool = True,
    head_labels: Sequence[str] = (),
    baseline: tuple[str, str, Mapping[str, float]] | None = None,
    touching: bool = False,
    weak: tuple[float, float] | None = None,
    baseline_weak: bool = False,
) -> str:
    """What the model read, as one HTML panel: the verdict, the crop(s), the class bars, and the plain CNN's.

    One fragment instead of a Markdown, an image and two label components: the page gets the same
    views from one output (each Gradio output costs a worker-thread round trip and a config render).
    The crops travel inline as tiny PNGs (no file in Gradio's cache, no second request).

    Args:
        label: the predicted class; ``top``: the most probable classes → probability, best first.
        crops: one ``(h, w)`` array in [0, 1] per head (for the plain CNN, its whole input).
        transformer: whether the model has a transformer (the wording and the crop's caption).
        head_labels: what each head reads on its own (shown for two heads or more).
        baseline: ``(model name, label, top classes)`` of the plain CNN trained on the same data.

    Under :data:`stn.model.SURE`, or where the evidence is ``weak`` (``(top logit, floor)``: the top
    logit under the model's calibrated floor, ``Reading.weak``), the verdict says the label is a guess
    (class ``stn-unsure``) and the note gives the two numbers; ``baseline_weak`` the same for the plain CNN.
    ``touching``: the mark may be two digits that touch (:func:`stn.preprocess.touching_digits`);
    a note says so under the verdict (class ``stn-touching``).

    Element ids for the page and its tests: ``stn-summary``, ``stn-crops``, ``stn-label``, ``stn-baseline``.
    """
    who = "The transformer" if transformer else "This plain CNN"
    best = max(top.values()) if top else 0.0
    if best >= SURE and not weak:
        verdict = f"<h2>{who} reads <b>{html.escape(label)}</b> ({percent(best)})</h2>"
    else:  # a guess is said to be one: a photo of a cat should not read as a confident "7"
        verdict = f"<h2>{who} is unsure: perhaps <b>{html.escape(label)}</b> ({percent(best)})</h2>"
        if best < SURE:
            verdict += (f'<p class="stn-unsure">Its best guess is under {percent(SURE)}: the picture may hold no digit it knows '
                        "(a letter, a drawing, a photo of something else), or a digit it finds hard to read.</p>")
        else:  # peaked probabilities on weak evidence: the softmax of small logits can still favour one class
            top_logit, floor = weak
            verdict += (f'<p class="stn-unsure">Its evidence for every digit is weak: its largest logit, {top_logit:.1f}, is under '
                        f"{floor:.1f}, which it reaches for 199 in 200 digits it reads right. A softmax favours whichever logit "
                        f"stands out, however small, so {percent(best)} is not to be trusted: the picture may hold no digit (a "
                        "photo, an icon, a drawing), or one it finds hard to read.</p>")
    if touching:  # a number written with its digits touching is one mark: say what was read, and why it may be wrong
        verdict += ('<p class="stn-touching">This mark is wider than a digit and narrow in the middle: if it is two digits '
                    "that touch, the model read them as one. Write them apart, or one digit at a time.</p>")
    if len(head_labels) > 1:
        verdict += "<p>" + ", ".join(f"head {k + 1} reads <b>{html.escape(h)}</b>" for k, h in enumerate(head_labels)) + "</p>"
    if baseline is not None:
        b_name, b_label, b_top = baseline
        agrees = "agrees" if b_label == label else "disagrees"
        b_best = max(b_top.values()) if b_top else 0.0
        verdict += (f"<p>The plain CNN <code>{html.escape(b_name)}</code>, trained on the same data, reads "
                    f"<b>{html.escape(b_label)}</b> ({percent(b_best)}{'' if b_best >= SURE and not baseline_weak else ', a guess'}): "
                    f"it {agrees}.</p>")
    caption = "What it reads: the crop" + ("s" if len(crops) > 1 else "") if transformer else "What it reads: the whole input (no transformer)"
    imgs = "".join(
        f'<img src="{png_data_uri(c)}" alt="{"crop of head " + str(k + 1) if transformer else "the model input"}" '
        f'style="border-color:{head_color(k) if transformer else "var(--border-color-primary)"};'
        f'aspect-ratio:{c.shape[-1]}/{c.shape[-2]};width:{100 / len(crops) - (4 if len(crops) > 1 else 0):.0f}%">'
        for k, c in enumerate(np.asarray(c, dtype=np.float64) for c in crops)
    )
    parts = [
        f'<div id="stn-summary">{verdict}</div>',
        f'<div class="stn-caption">{caption}</div><div id="stn-crops" class="stn-crops">{imgs}</div>',
        f'<div id="stn-label"><div class="stn-caption">Prediction (top {len(top)})</div>{_bars(top, "stn-bars-model")}</div>',
    ]
    if baseline is not None:
        b_name, _, b_top = baseline
        parts.append(f'<div id="stn-baseline"><div class="stn-caption">Plain CNN (<code>{html.escape(b_name)}</code>), same input'
                     f'</div>{_bars(b_top, "stn-bars-baseline")}</div>')
    return '<div class="stn-readout">' + "".join(parts) + "</div>"


# --------------------------------------------------------------------------- θ as text


def _fmt(v: float, digits: int = 3) -> str:
    if abs(v) < 0.5 * 10**-digits:
        v = 0.0  # no "-0.000"
    s = f"{v:+.{digits}f}"
    return "\u2212" + s[1:] if s.startswith("-") else s.removeprefix("+")


def _matrix(rows: list[list[float]]) -> str:
    cells = "".join("<tr>" + "".join(f"<td>{_fmt(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f'<table class="stn-matrix">{cells}</table>'


def _kv(items: list[tuple[str, str]]) -> str:
    rows = "".join(f"<tr><th>{html.escape(k)}</th><td>{v}</td></tr>" for k, v in items)
    return f'<table class="stn-reading">{rows}</table>'


def theta_html(transform: str | None, params: Sequence[Sequence[float]], in_size: tuple[int, int], options: dict | None = None) -> str:
    """θ of every head as a matrix and its reading, as an HTML fragment (theme-neutral classes).

    affine / attention: θ and rotation (° anticlockwise), scale x/y, shear, translation (in
    normalised units and input pixels); projective: the 3×3 homography and where the crop's
    corners read the input; TPS: each control point's displacement from rest, in input pixels,
    laid out as the K×K control grid, then the closest affine map and how far the spline bends off it.
    """
    if transform is None or not len(params):
        return ('<div class="stn-theta"><p>This is the plain CNN baseline: it has no transformer, so there is no θ. '
                "It must recognise the digit wherever and however it lies on the canvas.</p></div>")
    h, w = in_size
    parts = []
    t = _transform(transform, options)
    for k, p in enumerate(params):
        p = [float(v) for v in p]
        color = head_color(k)
        title = f'<div class="stn-head"><span class="stn-swatch" style="background:{color}"></span>head {k + 1}</div>' if len(params) > 1 else ""
        if transform in ("affine", "attention"):
            theta = Attention().to_affine(torch.tensor([p]))[0].tolist() if transform == "attention" else p
            r = affine_reading(transform, p)
            assert r is not None
            body = _matrix([theta[:3], theta[3:]])
            note = " (attention: isotropic scale, no rotation)" if transform == "attention" else ""
            body += _kv([
                ("rotation", f"{_fmt(r['rotation'], 1)}° anticlockwise{note}"),
                ("scale x / y", f"{_fmt(r['scale_x'])} / {_fmt(r['scale_y'])} (< 1 zooms in)"),
                ("shear", _fmt(r["shear"])),
                ("translation", f"({_fmt(r['tx'])}, {_fmt(r['ty'])}) = ({_fmt(r['tx'] * w / 2, 1)}, {_fmt(r['ty'] * h / 2, 1)}) px from the centre"),
            ])
        elif transform == "projective":
            m = p + [1.0]
            body = _matrix([m[0:3], m[3:6], m[6:9]])
            corners = _to_px(map_points(t, p, np.array([[-1.0, -1.0], [1, -1], [1, 1], [-1, 1]])), (h, w))
            names = ("top-left", "top-right", "bottom-right", "bottom-left")
            body += _kv([(f"{n} corner", f"({_fmt(c[0], 1)}, {_fmt(c[1], 1)}) px") for n, c in zip(names, corners)]
                        + [("perspective", f"({_fmt(p[6])}, {_fmt(p[7])})")])
        elif transform == "tps":
            k_side = round(math.sqrt(len(p) // 2))
            rest = control_points(k_side).double().numpy()
            tgt = np.asarray(p, dtype=np.float64).reshape(-1, 2)
            d = (tgt - rest) * np.array([w / 2, h / 2])
            cells = ""
            for i in range(k_side):
                cells += "<tr>" + "".join(
                    f'<td title="control point {i * k_side + j + 1}">{_arrow(d[i * k_side + j])} '
                    f"({_fmt(d[i * k_side + j, 0], 1)}, {_fmt(d[i * k_side + j, 1], 1)})</td>"
                    for j in range(k_side)
                ) + "</tr>"
            body = (f"<p>{k_side}×{k_side} control points: where each one reads the input, as a shift from its rest "
                    f'position in input pixels (x right, y down).</p><table class="stn-matrix stn-tps">{cells}</table>')
            # a spline = the closest affine map + bending: how much of the warp an affine θ could not do
            fit, offset = tps_affine_fit(torch.tensor([p], dtype=torch.float64), k_side)
            r = affine_reading("affine", fit[0].tolist())
            assert r is not None
            bend = np.hypot(offset[0, :, 0].numpy() * w / 2, offset[0, :, 1].numpy() * h / 2)
            body += _kv([
                ("closest affine map", (f"rotation {_fmt(r['rotation'], 1)}° anticlockwise, scale {_fmt(r['scale_x'])} / "
                                        f"{_fmt(r['scale_y'])}, shift ({_fmt(r['tx'] * w / 2, 1)}, {_fmt(r['ty'] * h / 2, 1)}) px")),
                ("bending", (f"the points lie {_fmt(float(bend.mean()), 1)} px (mean), {_fmt(float(bend.max()), 1)} px (max) "
                             "off that map")),
            ])
        else:
            body = _matrix([p])
        parts.append(title + body)
    # scrolled sideways where the screen is narrower than a matrix (a phone at 200% zoom: 195 px), not cut off
    return '<div class="stn-theta stn-scroll">' + "".join(parts) + "</div>"


def _arrow(d: np.ndarray) -> str:
    if np.hypot(*d) < 0.25:
        return "·"
    ang = math.degrees(math.atan2(-d[1], d[0]))  # screen y points down
    return "→↗↑↖←↙↓↘"[int(((ang + 22.5) % 360) // 45)]


# --------------------------------------------------------------------------- sampling kernel


WEIGHT_HALO = "0 0 2px #000, 0 0 3px #000, 0 0 4px #000"  # CSS text-shadow (Plotly ≥ 2.31)


def nearest_tap(point: tuple[float, float], in_size: tuple[int, int]) -> list[tuple[int, int, float]]:
    """The one input pixel that nearest sampling reads for a source point (none if outside)."""
    h, w = in_size
    x = float(to_pixel(torch.tensor(float(point[0])), w))
    y = float(to_pixel(torch.tensor(float(point[1])), h))
    col, row = int(np.rint(x)), int(np.rint(y))  # grid_sample rounds half to even, as rint does
    return [(row, col, 1.0)] if 0 <= row < h and 0 <= col < w else []


def kernel_figure(
    image: np.ndarray,
    point: tuple[float, float],
    mode: str = "bilinear",
    region: Sequence[np.ndarray] | None = None,
    height: int = 320,
    radius: int = 2,
) -> dict:
    """Where one output pixel reads the input: its source point and the pixels that feed it.

    Left: the whole input with the sampled region and the source point. Right: a zoom on the
    ``2·radius`` × ``2·radius`` pixels around it, each labelled with its value (bottom); the taps of
    the kernel (4 for bilinear, 1 for nearest) are outlined in red and labelled with their weights
    (top, red), with a line from the source point to each.

    Args:
        image: ``(H, W)`` input in [0, 1].
        point: source point ``(x, y)`` normalised (from the sampling grid).
        mode: ``"bilinear"`` or ``"nearest"``.
        region: optional outline ``(N, 2)`` of the sampled region in input pixels.
    """
    img = np.asarray(image, dtype=np.float64)
    h, w = img.shape
    sx = float(to_pixel(torch.tensor(float(point[0])), w))
    sy = float(to_pixel(torch.tensor(float(point[1])), h))
    taps = bilinear_taps(point, (h, w)) if mode == "bilinear" else nearest_tap(point, (h, w))
    cx, cy = int(np.clip(np.floor(sx), 0, w - 1)), int(np.clip(np.floor(sy), 0, h - 1))
    r0, r1 = max(0, cy - radius + 1), min(h, cy + radius + 1)
    c0, c1 = max(0, cx - radius + 1), min(w, cx + radius + 1)
    data = [_heatmap(img, "input", "x", "y")]
    if region is not None:
        for k, ring in enumerate(region):
            data.append({"type": "scatter", "mode": "lines", "x": np.round(ring[:, 0], 3).tolist(), "y": np.round(ring[:, 1], 3).tolist(),
                         "line": {"color": head_color(k), "width": 2}, "hoverinfo": "skip", "xaxis": "x", "yaxis": "y"})
    data.append({"type": "scatter", "mode": "lines", "xaxis": "x", "yaxis": "y", "hoverinfo": "skip",
                 "x": [c0 - 0.5, c1 - 0.5, c1 - 0.5, c0 - 0.5, c0 - 0.5], "y": [r0 - 0.5, r0 - 0.5, r1 - 0.5, r1 - 0.5, r0 - 0.5],
                 "line": {"color": "#ff2d2d", "width": 1.5, "dash": "dot"}})
    data.append({"type": "scatter", "mode": "markers", "xaxis": "x", "yaxis": "y", "x": [round(sx, 3)], "y": [round(sy, 3)],
                 "marker": {"color": "#ff2d2d", "size": 9, "symbol": "x"}, "name": "source point",
                 "hovertemplate": "source point (%{x:.2f}, %{y:.2f}) px<extra></extra>"})
    # zoom panel
    zoom = img[r0:r1, c0:c1]
    data.append({**_heatmap(zoom, "zoom", "x2", "y2"), "x": list(range(c0, c1)), "y": list(range(r0, r1))})
    # The source point lies within half a pixel of its heaviest tap, often on that tap's weight or value: the
    # numbers are drawn over the marker, with a dark halo, so that they stay legible.
    data.append({"type": "scatter", "mode": "markers", "xaxis": "x2", "yaxis": "y2", "x": [round(sx, 3)], "y": [round(sy, 3)],
                 "marker": {"color": "#ff2d2d", "size": 12, "symbol": "x"},
                 "hovertemplate": "source point (%{x:.2f}, %{y:.2f}) px<extra></extra>"})
    texts_x, texts_y, texts = [], [], []
    for rr in range(r0, r1):
        for cc in range(c0, c1):
            texts_x.append(cc)
            texts_y.append(rr + 0.28)
            texts.append(f"{img[rr, cc]:.2f}")
    data.append({"type": "scatter", "mode": "text", "xaxis": "x2", "yaxis": "y2", "x": texts_x, "y": texts_y, "text": texts,
                 "textfont": {"size": 10, "color": [("#000000" if img[round(y - 0.28), x] > 0.55 else "#d0d4da") for x, y in zip(texts_x, texts_y)],
                              "shadow": [("0 0 3px #fff" if img[round(y - 0.28), x] > 0.55 else WEIGHT_HALO) for x, y in zip(texts_x, texts_y)]},
                 "hoverinfo": "skip"})
    for row, col, wgt in taps:
        data.append({"type": "scatter", "mode": "lines", "xaxis": "x2", "yaxis": "y2", "hoverinfo": "skip",
                     "x": [col - 0.5, col + 0.5, col + 0.5, col - 0.5, col - 0.5], "y": [row - 0.5, row - 0.5, row + 0.5, row + 0.5, row - 0.5],
                     "line": {"color": "#ff2d2d", "width": 1 + 4 * wgt}})
        data.append({"type": "scatter", "mode": "lines", "xaxis": "x2", "yaxis": "y2", "hoverinfo": "skip",
                     "x": [round(sx, 3), col], "y": [round(sy, 3), row], "line": {"color": "#ff2d2d", "width": 1, "dash": "dot"}})
    for row, col, wgt in taps:
        data.append({"type": "scatter", "mode": "text", "xaxis": "x2", "yaxis": "y2", "x": [col], "y": [row - 0.2],
                     "text": [f"<b>{wgt:.2f}</b>"], "textfont": {"size": 11, "color": "#ff7070", "shadow": WEIGHT_HALO},
                     "name": "weight", "hovertemplate": f"U[{row},{col}] = {img[row, col]:.3f}, weight {wgt:.3f}<extra></extra>"})
    if region is not None and len(region):
        ring = np.concatenate([np.asarray(r) for r in region])
        xa, ya = _image_axes((h, w), ring.min(0), ring.max(0))
    else:
        xa, ya = _image_axes((h, w))
    # the zoom's columns and rows numbered, so that U_{n,m} of the formula can be found in it
    ticks = {"showticklabels": True, "tickfont": {"size": 10, "color": FONT_COLOR}, "ticks": ""}
    xa2 = {**xa, **ticks, "range": [c0 - 0.5, c1 - 0.5], "domain": [0.52, 1.0], "anchor": "y2", "side": "top",
           "tickvals": list(range(c0, c1)), "ticktext": [f"col {v}" if v == c0 else str(v) for v in range(c0, c1)]}
    ya2 = {**ya, **ticks, "range": [r1 - 0.5, r0 - 0.5], "scaleanchor": "x2", "anchor": "x2", "side": "right",
           "tickvals": list(range(r0, r1)), "ticktext": [f"row {v}" if v == r0 else str(v) for v in range(r0, r1)]}
    xa = {**xa, "domain": [0.0, 0.46]}
    layout = _layout(height, xaxis=xa, yaxis=ya, xaxis2=xa2, yaxis2=ya2, hovermode="closest",
                     margin={"l": 6, "r": 46, "t": 34, "b": 6})  # room for the zoom's row numbers
    return {"data": data, "layout": layout, "config": PLOT_CONFIG}


def param_names(transform: str | Transform) -> list[str]:
    """Short names of a family's parameters, in θ's order (LaTeX): θ's entries, or a TPS control point's x and y."""
    t = _transform(transform)
    if isinstance(t, Attention):
        return ["s", "t_x", "t_y"]
    if isinstance(t, Projective):
        return ["h_{11}", "h_{12}", "h_{13}", "h_{21}", "h_{22}", "h_{23}", "h_{31}", "h_{32}"]
    if isinstance(t, ThinPlateSpline):
        return [f"{axis}_{{{k + 1}}}" for k in range(t.grid_size**2) for axis in ("x", "y")]
    return ["\\theta_{11}", "\\theta_{12}", "\\theta_{13}", "\\theta_{21}", "\\theta_{22}", "\\theta_{23}"]


def kernel_gradient(
    image: np.ndarray, transform: str | Transform, params: Sequence[float] | np.ndarray | torch.Tensor,
    out_size: tuple[int, int], pixel: tuple[int, int], mode: str = "bilinear",
) -> dict[str, object]:
    """How one output pixel's value ``V`` moves with where it reads: the paper's eq. 6-7 and θ's share.

    Autograd through the library's own grid generator and ``grid_sample`` (float64), for the output
    pixel ``(row, col)`` of a crop of ``out_size`` made with ``params`` (one image's θ, ``(n_params,)``).

    Returns:
        ``value`` (V), ``dx`` and ``dy`` (∂V/∂x^s, ∂V/∂y^s per input pixel), ``dtheta`` (``(n_params,)``,
        ∂V/∂θ) and ``names`` (:func:`param_names`).
    """
    t = _transform(transform)
    img = torch.as_tensor(np.asarray(image, dtype=np.float64))
    h, w = img.shape
    theta = torch.as_tensor(np.asarray(params, dtype=np.float64)).reshape(1, -1).clone().requires_grad_(True)
    row, col = pixel
    grid = t.grid(theta, tuple(out_size))[:, row : row + 1, col : col + 1]  # (1, 1, 1, 2): this pixel's source point
    grid.retain_grad()
    v = F.grid_sample(img[None, None], grid, mode=mode, padding_mode="zeros", align_corners=False)
    v.sum().backward()
    v = v.detach()
    gx, gy = (float(g) for g in grid.grad.reshape(2))
    # normalised → pixel units: x_px = ((x + 1) W - 1) / 2, so ∂V/∂x_px = ∂V/∂x · 2 / W
    x, y = (float(to_pixel(c, n)) for c, n in zip(grid.detach().reshape(2), (w, h)))
    return {"value": v.item(), "dx": gx * 2 / w, "dy": gy * 2 / h, "dtheta": theta.grad.reshape(-1).numpy(),
            "names": param_names(t), "on_column": x == math.floor(x), "on_row": y == math.floor(y)}


def _kink_note(g: dict) -> str:
    """A sentence for a source point on a pixel centre's row or column, where the kernel has a kink."""
    axes = [a for a, k in (("x", "on_column"), ("y", "on_row")) if g.get(k)]
    if not axes:
        return ""
    where = {("x",): "a column of pixel centres", ("y",): "a row of pixel centres", ("x", "y"): "a pixel centre"}[tuple(axes)]
    return (f" The source point lies exactly on {where}, where the kernel has a kink and no derivative: PyTorch takes "
            "the one to the right (below, for $y$), so the next pixel, not listed because its weight is 0, enters "
            "the sum, and $\\mathrm{sign}(0)$ counts as $-1$.")


def _gradient_markdown(g: dict, mode: str) -> str:
    """The gradient section of :func:`kernel_formula`."""
    if mode != "bilinear":
        return ("\n\n**The gradient.** The integer kernel is a step: constant around each pixel centre, it jumps "
                "halfway between two. Moving the source point a little changes nothing, "
                "$\\partial V/\\partial x^s = \\partial V/\\partial y^s = 0$, so nothing reaches θ from this pixel. "
                "The bilinear kernel's gradient (eq. 6-7) is what lets the localisation net learn.")
    d = np.asarray(g["dtheta"], dtype=np.float64)
    names = list(g["names"])
    order = range(len(d)) if len(d) <= 8 else sorted(np.argsort(-np.abs(d))[:4])
    theta = ", ".join(f"${names[i]}$: {d[i]:+.3f}" for i in order)
    which = "" if len(d) <= 8 else f" (the 4 largest of {len(d)}: the control points' $x$ and $y$)"
    return (
        "\n\n**The gradient that trains it** (the paper's eq. 6 and 7). To the image: "
        "$\\partial V/\\partial U_{nm}$ is each tap's weight above, so this pixel's error reaches only the pixels it read. "
        "To the source point: $\\partial V/\\partial x^s = \\sum_n\\sum_m U_{nm}\\max(0, 1-|y^s-n|)\\,"
        "\\mathrm{sign}(m-x^s)$ over the taps"
        f" $= {g['dx']:+.3f}$ per pixel, and $\\partial V/\\partial y^s = {g['dy']:+.3f}$: moving the source point "
        "right or down changes V that much." + _kink_note(g) + " To θ, through the grid generator: "
        f"$\\partial V/\\partial\\theta$ = ({theta}){which}. Summed over every pixel of the crop and the loss, "
        "this is the localisation net's training signal."
    )


def kernel_formula(
    image: np.ndarray, point: tuple[float, float], mode: str, pixel: tuple[int, int], head: int = 0,
    gradient: dict | None = None,
) -> str:
    """The paper's sampling formula and its value for one output pixel, as Markdown with LaTeX.

    ``pixel`` is the output pixel ``(row, col)``; ``point`` its source point, normalised;
    ``gradient`` (:func:`kernel_gradient`) adds how V changes with the image, the point and θ.
    """
    img = np.asarray(image, dtype=np.float64)
    h, w = img.shape
    sx = float(to_pixel(torch.tensor(float(point[0])), w))
    sy = float(to_pixel(torch.tensor(float(point[1])), h))
    row, col = pixel
    # Each display formula is broken over lines (aligned) so that it fits a phone's 320 px.
    if mode == "bilinear":
        taps = bilinear_taps(point, (h, w))
        general = (r"$$\begin{aligned} V_i = \sum_{n}^{H}\sum_{m}^{W} U_{nm}\, & \max(0, 1-|x_i^s-m|) \\"
                   r" & \cdot\max(0, 1-|y_i^s-n|) \end{aligned}$$")
        name = "bilinear kernel (the paper's eq. 5)"
        note = ""
    else:
        taps = nearest_tap(point, (h, w))
        general = (r"$$\begin{aligned} V_i = \sum_{n}^{H}\sum_{m}^{W} U_{nm}\, & \delta(\operatorname{round}(x_i^s) - m) \\"
                   r" & \cdot\delta(\operatorname{round}(y_i^s) - n) \end{aligned}$$")
        name = "integer (nearest) kernel (the paper's eq. 4)"
        note = (r"(The paper writes $\lfloor x^s + 0.5\rfloor$; PyTorch's `grid_sample` rounds a tie, $x^s$ = 10.5, to the "
                "even pixel, and so does this page.)\n\n")
    value = sum(wt * img[r, c] for r, c, wt in taps)
    products = [rf"{wt:.3f}\cdot {img[r, c]:.3f}" for r, c, wt in taps] or ["0"]
    # the printed factors, summed, may miss the value in the last digit: then say "≈"
    printed = sum(round(wt, 3) * round(float(img[r, c]), 3) for r, c, wt in taps)
    equals = "=" if round(printed, 3) == round(value, 3) else r"\approx"
    lines = [" + ".join(products[k : k + 2]) for k in range(0, len(products), 2)]  # two products a line
    terms = r" \\ & + ".join(lines)
    outside = "" if taps else " The source point lies outside the input, so it reads zero padding."
    short = (sum(wt for _, _, wt in taps) < 0.999 and taps)
    edge = " Part of the kernel falls outside the input and reads zeros." if short else ""
    return (
        f"**Output pixel** (row {row}, col {col}) of head {head + 1} reads the input at "
        f"$(x^s, y^s) = ({sx:.2f}, {sy:.2f})$ px, with the {name}:\n\n{general}\n\n{note}"
        f"$$\\begin{{aligned}} V & = {terms} \\\\ & {equals} {value:.3f} \\end{{aligned}}$$\n\n"
        + "".join(f"- $U_{{{r},{c}}} = {img[r, c]:.3f}$ (row {r}, column {c}), weight ${wt:.3f}$\n" for r, c, wt in taps)
        + outside + edge + (_gradient_markdown(gradient, mode) if gradient is not None else "")
    )


# --------------------------------------------------------------------------- invariance charts


def _chart_layout(height: int, xtitle: str, ytitle: str, **extra: object) -> dict:
    axis = {"gridcolor": GRID_COLOR, "zerolinecolor": GRID_COLOR, "linecolor": GRID_COLOR, "fixedrange": True}
    return _layout(
        height,
        margin={"l": 56, "r": 12, "t": 20, "b": 56},
        showlegend=True,
        # above the plot: below it, the x axis's title and its tick labels (turned on a phone) ran into it
        legend={"orientation": "h", "x": 0, "y": 1.02, "yanchor": "bottom", "font": {"size": 11}},
        xaxis={**axis, "title": {"text": xtitle}},
        yaxis={**axis, "title": {"text": ytitle}},
        hovermode="x unified",
        **extra,
    )


def rotation_figure(
    angles: Sequence[float],
    recovered: Sequence[float] | None,
    *,
    test_median: Sequence[float] | None = None,
    test_band: tuple[Sequence[float], Sequence[float]] | None = None,
    trained: tuple[float, float] | None = None,
    current: float | None = None,
    height: int = 380,
) -> dict:
    """Recovered rotation (what the transformer turns back) against the input's rotation.

    A perfect rotation-invariant transformer lies on the diagonal. ``recovered`` is this
    input's curve; ``test_median`` and ``test_band`` (quartiles) summarise test digits;
    ``trained`` shades the rotation range seen in training; ``current`` marks the slider.
    """
    a = [float(v) for v in angles]
    data = [{"type": "scatter", "mode": "lines", "name": "perfect", "x": [a[0], a[-1]], "y": [a[0], a[-1]],
             "line": {"color": LINE_GREY, "dash": "dash", "width": 1}, "hoverinfo": "skip"}]
    if test_band is not None:
        lo, hi = test_band
        data.append({"type": "scatter", "mode": "lines", "x": a + a[::-1], "y": [float(v) for v in hi] + [float(v) for v in lo][::-1],
                     "fill": "toself", "fillcolor": _rgba(HEAD_COLORS[1], 0.18), "line": {"width": 0}, "name": "test digits (quartiles)",
                     "hoverinfo": "skip"})
    if test_median is not None:
        data.append({"type": "scatter", "mode": "lines", "name": "test digits (median)", "x": a, "y": [round(float(v), 2) for v in test_median],
                     "line": {"color": HEAD_COLORS[1], "width": 2}, "hovertemplate": "%{y:.1f}°"})
    if recovered is not None:
        data.append({"type": "scatter", "mode": "lines+markers", "name": "this input", "x": a, "y": [round(float(v), 2) for v in recovered],
                     "line": {"color": HEAD_COLORS[0], "width": 3}, "marker": {"size": 5}, "hovertemplate": "%{y:.1f}°"})
    shapes = []
    if trained is not None:
        shapes.append({"type": "rect", "xref": "x", "yref": "paper", "x0": trained[0], "x1": trained[1], "y0": 0, "y1": 1,
                       "fillcolor": "rgba(139,147,161,0.12)", "line": {"width": 0}, "layer": "below"})
    if current is not None:
        shapes.append({"type": "line", "xref": "x", "yref": "paper", "x0": current, "x1": current, "y0": 0, "y1": 1,
                       "line": {"color": HEAD_COLORS[0], "width": 1, "dash": "dot"}})
    layout = _chart_layout(height, "input rotation (° anticlockwise)", "recovered rotation (°)", shapes=shapes)
    layout["xaxis"]["dtick"] = 45
    layout["yaxis"]["dtick"] = 45
    return {"data": data, "layout": layout, "config": PLOT_CONFIG}


def rotation_verdict(model: str, followed: float | None, within: float, upright_model: str | None = None, *,
                     on: str = "this picture", picture: float | None = None, trained_on_turns: bool = True,
                     can_turn: bool = True) -> str:
    """What a model's transformer does with a turned input, in one to three sentences (Markdown).

    ``followed`` is :func:`stn.inference.rotation_followed` over ``±within``°, measured ``on`` some
    inputs (``"this picture"``, or test digits); ``picture`` adds the share measured on this picture
    when ``followed`` comes from test digits. ``upright_model`` names a model whose transformer does
    turn digits upright, suggested when this one does not. ``trained_on_turns``: whether its task
    turns the digits (R, RTS, Wild, Pair); ``can_turn``: whether its family can turn a grid at all
    (the attention family only moves and scales it).
    """
    if followed is None:
        return f"`{model}` has no transformer: nothing turns the digit back; the classifier reads it as it is."

    def share(v: float) -> str:  # a grid that turns against the input says so
        return f"{max(v, 0.0):.0%} of the turn" if v >= -0.005 else f"{-v:.0%} of the turn the other way"

    measured = f"{share(followed)}, on {on} turned up to ±{within:.0f}°"
    if not can_turn:
        text = (f"**`{model}`'s transformer cannot turn its grid**: its family (attention) only moves and scales it, so a "
                f"turned digit reaches the classifier turned ({measured}).")
    elif not trained_on_turns:
        text = (f"**`{model}` was trained on digits that are not turned**, so neither its transformer nor its classifier "
                f"learnt what to do with a turn: its grid barely turns ({measured}), and the accuracy chart below falls "
                "as the turn grows.")
    elif followed >= 0.7:
        text = (f"**`{model}` turns digits upright**: on {on}, turned up to ±{within:.0f}°, its grid turns with the digit "
                f"by {share(followed)}, so the crop stays upright while the input turns (the chart's line "
                "follows the diagonal).")
    elif followed >= 0.3:
        text = (f"**`{model}` turns digits part of the way**: on {on}, turned up to ±{within:.0f}°, its grid follows "
                f"{share(followed)}; its classifier reads the rest.")
    else:
        how = "barely turns its grid" if abs(followed) < 0.1 else "turns its grid a little"
        line = " (the chart's line stays near flat)" if abs(followed) < 0.1 else ""
        text = (f"**`{model}` {how}** ({measured}): its transformer learnt where the digit is and how big it is, and "
                f"its classifier learnt to read turned digits by itself{line}. Trained end to end on turned digits, most "
                "transformers of the zoo do this.")
    if picture is not None:
        text += f" On this picture: {share(picture).removesuffix(' of the turn')}."
    if followed < 0.7 and upright_model and upright_model != model:
        text += (f" `{upright_model}` was trained with a classifier that had only ever seen upright digits, so turning "
                 "them upright was its transformer's job.")
    return text


def accuracy_figure(
    angles: Sequence[float],
    curves: dict[str, Sequence[float]],
    *,
    trained: tuple[float, float] | None = None,
    n: int | None = None,
    height: int = 380,
) -> dict:
    """Accuracy (%) of each named model over a rotation sweep of test digits (one line per model)."""
    a = [float(v) for v in angles]
    colors = [HEAD_COLORS[0], LINE_GREY, HEAD_COLORS[1], HEAD_COLORS[2]]
    data = []
    for i, (name, acc) in enumerate(curves.items()):
        data.append({"type": "scatter", "mode": "lines+markers", "name": name, "x": a, "y": [round(100 * float(v), 1) for v in acc],
                     "line": {"color": colors[i % len(colors)], "width": 3 if i == 0 else 2, "dash": "solid" if i == 0 else "dash"},
                     "marker": {"size": 5}, "hovertemplate": "%{y:.1f}%"})
    shapes = []
    if trained is not None:
        shapes.append({"type": "rect", "xref": "x", "yref": "paper", "x0": trained[0], "x1": trained[1], "y0": 0, "y1": 1,
                       "fillcolor": "rgba(139,147,161,0.12)", "line": {"width": 0}, "layer": "below"})
    ytitle = f"accuracy on {n} test digits (%)" if n else "accuracy (%)"
    layout = _chart_layout(height, "input rotation (° anticlockwise)", ytitle, shapes=shapes)
    layout["xaxis"]["dtick"] = 45
    layout["yaxis"]["range"] = [0, 101]
    return {"data": data, "layout": layout, "config": PLOT_CONFIG}


# --------------------------------------------------------------------------- Table 1

# Jaderberg et al. 2015, Table 1 (left): test error (%) on distorted MNIST; TC from §4.1's text.
PAPER_TABLE1: dict[str, dict[str, float]] = {
    "FCN": {"r": 2.1, "rts": 5.2, "p": 3.1, "e": 3.2, "tc": 13.2},
    "CNN": {"r": 1.2, "rts": 0.8, "p": 1.5, "e": 1.4, "tc": 3.5},
    "ST-FCN Aff": {"r": 1.2, "rts": 0.8, "p": 1.5, "e": 2.7},
    "ST-FCN Proj": {"r": 1.3, "rts": 0.9, "p": 1.4, "e": 2.6},
    "ST-FCN TPS": {"r": 1.1, "rts": 0.8, "p": 1.4, "e": 2.4},
    "ST-CNN Aff": {"r": 0.7, "rts": 0.5, "p": 0.8, "e": 1.2, "tc": 1.7},
    "ST-CNN Proj": {"r": 0.8, "rts": 0.6, "p": 0.8, "e": 1.3},
    "ST-CNN TPS": {"r": 0.7, "rts": 0.5, "p": 0.8, "e": 1.1},
}
_ROW_OF_TRANSFORM = {None: "CNN", "affine": "ST-CNN Aff", "projective": "ST-CNN Proj", "tps": "ST-CNN TPS", "attention": "ST-CNN Att"}


def table1_html(cards: Sequence[dict]) -> str:
    """The paper's Table 1 with our test errors beside it: "paper / ours" per cell.

    ``cards`` are model cards (:func:`stn.zoo.load_card`). Our cell is the card's test error on
    the same dataset with the same transform (a CNN card fills the CNN row); where several models
    share a cell, the one named ``DATASET-TRANSFORM`` (``r-affine``, ``r-cnn``) fills it, as in
    the README's table, not a variant (``r-affine-crop20``). Columns are the paper's R, RTS, P, E
    and TC, then any other dataset we trained on (ours only).
    """
    ours: dict[tuple[str, str], tuple[float, str]] = {}
    extra_cols: list[str] = []
    for c in cards:
        ds = c.get("dataset", {}).get("name")
        tr = c.get("config", {}).get("transform")
        row = _ROW_OF_TRANSFORM.get(tr, f"ST-CNN {tr}")
        err = c.get("metrics", {}).get("test_error")
        if ds is None or err is None:
            continue
        name = c.get("name", "")
        if (row, ds) not in ours or name == f"{ds}-{tr or 'cnn'}":
            ours[(row, ds)] = (100 * float(err), name)
        if ds not in ("r", "rts", "p", "e", "tc") and ds not in extra_cols:
            extra_cols.append(ds)
    cols = ["r", "rts", "p", "e", "tc", *extra_cols]
    rows = list(PAPER_TABLE1) + [r for r in dict.fromkeys(r for r, _ in ours) if r not in PAPER_TABLE1]
    head = "<tr><th>model</th>" + "".join(f"<th>{c.upper()}</th>" for c in cols) + "</tr>"
    body = ""
    for r in rows:
        cells = ""
        for c in cols:
            paper = PAPER_TABLE1.get(r, {}).get(c)
            mine = ours.get((r, c))
            p_txt = f"{paper:.1f}" if paper is not None else "–"
            if mine is not None:
                better = paper is not None and mine[0] <= paper
                # at or below the paper's: green and a ✓ (not by colour alone); the model's name in sight, under it
                m_txt = f"<b>{mine[0]:.2f}{' ✓' if better else ''}</b>"
                cls = ' class="stn-ours-good"' if better else ""
                cells += f'<td{cls}>{p_txt} / {m_txt}<br><small class="stn-t1-model">{html.escape(mine[1])}</small></td>'
            else:
                cells += f"<td>{p_txt}</td>" if paper is not None else "<td>–</td>"
        body += f"<tr><th>{html.escape(r)}</th>{cells}</tr>"
    return f'<table class="stn-table1">{head}{body}</table>'
