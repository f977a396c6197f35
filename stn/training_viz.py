"""Pictures of a spatial transformer while it learns: sampling grids on the probe images, the
crops it reads, and the loss/accuracy curve, for replays and live training.

Figures are plain plotly *dicts* (``{"data": [...], "layout": {...}}``), built from lists without
importing plotly: ``go.Figure(...)`` validates every property and costs tens of milliseconds,
too much for an update several times a second. The app hands the dict to ``gr.Plot`` as JSON;
``plotly.graph_objects.Figure(fig)`` accepts it too.

Convention: θ maps crop (output) points to probe (input) points in normalised ``[-1, 1]``
coordinates, ``(x, y)``, ``align_corners=False`` (:mod:`stn.transforms`). A crop's outline is the
image of the crop's border, ``x, y = ±1``; on an input of width W, ``x`` lies at pixel-edge
coordinate ``(x + 1) / 2 · W`` (0 = left edge of the first pixel).
"""

from __future__ import annotations

import base64
import functools
import io
import math
from collections.abc import Sequence

import numpy as np
import torch

from stn.transforms import Projective, Transform, control_points

# Plotly's toolbar (zoom, lasso, camera) covered the legend and the plot's label on a phone, and the figures are
# not for exploring: no toolbar, as in stn.viz.
PLOT_CONFIG = {"displayModeBar": False, "responsive": True, "scrollZoom": False}

__all__ = [
    "HEAD_COLORS",
    "ProbeView",
    "crops_mosaic",
    "curve_figure",
    "lattice_points",
    "png_data_uri",
    "with_step_marker",
]

HEAD_COLORS = ("#00d5ff", "#ffb000", "#ff4fd8", "#7dff5a")  # one per head, bright on black digits
_OK, _WRONG = "#3ddc84", "#ff5a5a"
OK_MARK, WRONG_MARK = "\u2713", "\u2717"  # ✓ ✗ after a probe's reading: right and wrong not by colour alone
TEXT_COLOR = "#475569"  # the curve's axis text: 7.6:1 on a white page, as stn.viz.FONT_COLOR (the app lightens it on a dark one)


# --------------------------------------------------------------------------- geometry


@functools.lru_cache(maxsize=16)
def _lattice_uv(lines: int, per_cell: int) -> torch.Tensor:
    """Points of a ``lines``-cell lattice on the crop, ``(M, M, 2)`` as ``(x, y)`` in [-1, 1], M = lines·per_cell + 1."""
    m = lines * per_cell + 1
    t = torch.linspace(-1.0, 1.0, m, dtype=torch.float64)
    yy, xx = torch.meshgrid(t, t, indexing="ij")
    return torch.stack([xx, yy], dim=-1)


@functools.lru_cache(maxsize=16)
def _tps_point_weights(k: int, lines: int, per_cell: int) -> torch.Tensor:
    """``(M·M, K²)``: the TPS interpolant at the lattice points as a linear map of the control targets."""
    from stn.transforms import _tps_kernel  # the same radial basis the grid generator uses

    ctrl = control_points(k, dtype=torch.float64)
    n = ctrl.shape[0]
    system = torch.zeros(n + 3, n + 3, dtype=torch.float64)
    p = torch.cat([torch.ones(n, 1, dtype=torch.float64), ctrl], dim=1)
    system[:n, :n] = _tps_kernel(torch.cdist(ctrl, ctrl).pow(2))
    system[:n, n:] = p
    system[n:, :n] = p.T
    inv = torch.linalg.inv(system)[:, :n]
    pts = _lattice_uv(lines, per_cell).reshape(-1, 2)
    phi = torch.cat([_tps_kernel(torch.cdist(pts, ctrl).pow(2)), torch.ones(len(pts), 1, dtype=torch.float64), pts], 1)
    return (phi @ inv).float()


def lattice_points(
    transform: Transform, params: torch.Tensor, lines: int = 4, per_cell: int | None = None
) -> torch.Tensor:
    """Where the crop's lattice lines sample the input: ``(B, M, M, 2)`` normalised ``(x, y)``.

    The lattice has ``lines`` cells per side (``lines + 1`` lines each way, the outer ones being
    the crop's border), each line sampled at ``per_cell`` points per cell (default: 1 for the
    matrix families, whose lines stay straight, 4 for TPS), so ``M = lines · per_cell + 1``.

    Args:
        transform: the family that reads ``params``.
        params: θ ``(B, n_params)``.

    >>> from stn.transforms import get
    >>> pts = lattice_points(get("affine"), get("affine").identity(2))
    >>> tuple(pts.shape), pts[0, 0, 0].tolist(), pts[0, -1, -1].tolist()
    ((2, 5, 5, 2), [-1.0, -1.0], [1.0, 1.0])
    """
    params = params.detach().float().cpu()
    if params.ndim != 2 or params.shape[1] != transform.n_params:
        raise ValueError(f"expected params of shape (B, {transform.n_params}), got {tuple(params.shape)}")
    is_matrix = hasattr(transform, "matrix")
    per_cell = per_cell or (1 if is_matrix else 4)
    uv = _lattice_uv(lines, per_cell).float()  # (M, M, 2)
    m = uv.shape[0]
    b = params.shape[0]
    if is_matrix:
        mat = transform.matrix(params)  # (B, 3, 3)
        flat = uv.reshape(1, -1, 2)
        uvw = flat @ mat[:, :, :2].transpose(1, 2) + mat[:, :, 2].unsqueeze(1)  # (B, MM, 3)
        if isinstance(transform, Projective):  # the sampler's rule: a point behind the camera reads BEHIND
            den = uvw[..., 2:]
            src = torch.where(den > transform.eps, uvw[..., :2] / den.clamp(min=transform.eps), transform.BEHIND)
        else:
            src = uvw[..., :2] / uvw[..., 2:]  # w = 1 for an affine map
        return src.view(b, m, m, 2)
    grid_size = getattr(transform, "grid_size", None)
    if grid_size is not None:  # thin-plate spline: exact at any point
        w = _tps_point_weights(int(grid_size), lines, per_cell)  # (MM, K²)
        return torch.matmul(w, params.view(b, -1, 2)).view(b, m, m, 2)
    # Any other family: its grid at M×M pixel centres, stretched by half a pixel to the edges
    # (exact for affine maps, close for smooth ones).
    g = transform.grid(params, (m, m)).float()
    return g * (m / (m - 1)) - g.mean(dim=(1, 2), keepdim=True) * (1 / (m - 1))


# --------------------------------------------------------------------------- images


def png_data_uri(image: np.ndarray) -> str:
    """A ``data:image/png;base64,...`` URI of a uint8 ``(H, W)`` or ``(H, W, 3)`` array."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG", compress_level=3)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _to_uint8(x: torch.Tensor) -> np.ndarray:
    return (x.detach().float().cpu().clamp(0, 1) * 255).round().to(torch.uint8).numpy()


def _tile(images: np.ndarray, cols: int, gap: int, fill: int | Sequence[int]) -> np.ndarray:
    """``(P, h, w[, 3])`` → one mosaic with ``cols`` columns and ``gap`` pixels between tiles."""
    p, h, w = images.shape[:3]
    rows = -(-p // cols)
    shape = (rows * h + (rows - 1) * gap, cols * w + (cols - 1) * gap) + images.shape[3:]
    out = np.empty(shape, np.uint8)
    out[...] = fill
    for i in range(p):
        r, c = divmod(i, cols)
        out[r * (h + gap) : r * (h + gap) + h, c * (w + gap) : c * (w + gap) + w] = images[i]
    return out


def crops_mosaic(crops: Sequence[torch.Tensor], cols: int = 4, scale: int = 4, frame: bool = True) -> np.ndarray:
    """The crops of every head as one RGB image: probe ``i`` is tile ``i`` (row-major), its heads side by side.

    Each crop gets a 1-pixel frame in its head's colour (:data:`HEAD_COLORS`), matching the
    grid outlines of :class:`ProbeView`; the mosaic is upscaled ``scale``× with nearest neighbour.

    Args:
        crops: one ``(P, 1, h, w)`` tensor in [0, 1] per head.

    Returns:
        uint8 ``(H, W, 3)``.

    >>> crops_mosaic([torch.rand(16, 1, 28, 28)], scale=2).shape
    (252, 252, 3)
    """
    if not crops:
        raise ValueError("expected at least one (P, 1, h, w) tensor of crops, got none")
    heads = []
    for k, c in enumerate(crops):
        if c.ndim != 4 or c.shape[1] != 1:
            raise ValueError(f"expected crops of shape (P, 1, h, w), got {tuple(c.shape)}")
        g = _to_uint8(c[:, 0])  # (P, h, w)
        rgb = np.repeat(g[..., None], 3, axis=-1)
        if frame:
            rgb = np.pad(rgb, ((0, 0), (1, 1), (1, 1), (0, 0)))
            colour = np.array(_hex_rgb(HEAD_COLORS[k % len(HEAD_COLORS)]), np.uint8)
            rgb[:, 0, :] = rgb[:, -1, :] = colour
            rgb[:, :, 0] = rgb[:, :, -1] = colour
        heads.append(rgb)
    per_probe = np.concatenate(heads, axis=2)  # (P, h, heads·w, 3)
    mosaic = _tile(per_probe, cols, gap=2, fill=40)
    return mosaic.repeat(scale, axis=0).repeat(scale, axis=1) if scale > 1 else mosaic


def _hex_rgb(colour: str) -> tuple[int, int, int]:
    c = colour.lstrip("#")
    return int(c[0:2], 16), int(c[2:4], 16), int(c[4:6], 16)


# --------------------------------------------------------------------------- figures


def _round(values: np.ndarray, digits: int = 2) -> list:
    """A flat list with NaN → None (plotly's line break), rounded to keep the JSON small."""
    out = np.round(values.astype(np.float64), digits).tolist()
    return [None if math.isnan(v) else v for v in out]


class ProbeView:
    """The probe images as one plotly figure, with each head's sampling grid drawn over them.

    The picture of the probe images is encoded once (they do not change during training);
    :meth:`figure` only adds the grid lines, so an update costs a few milliseconds.

    Args:
        probe: ``(P, 1, H, W)`` in [0, 1].
        truth: ``(P,)`` or ``(P, heads)`` true labels, or None.
        cols: tiles per row.
        height: figure height in pixels.

    >>> from stn.transforms import get
    >>> view = ProbeView(torch.rand(16, 1, 42, 42))
    >>> fig = view.figure(get("affine"), [get("affine").identity(16)])
    >>> len(fig["data"]), fig["layout"]["height"]  # per head: inner lines, outline, centre
    (3, 380)
    """

    def __init__(
        self, probe: torch.Tensor, truth: torch.Tensor | None = None, cols: int = 4, height: int = 380, scale: int = 4
    ) -> None:
        if probe.ndim != 4 or probe.shape[1] != 1:
            raise ValueError(f"expected probe images of shape (P, 1, H, W), got {tuple(probe.shape)}")
        self.n, _, self.h, self.w = probe.shape
        self.cols = min(cols, self.n)
        self.rows = -(-self.n // self.cols)
        self.gap = max(4, round(0.15 * min(self.h, self.w)))  # room for grids that spill over a tile
        mosaic = _tile(_to_uint8(probe[:, 0]), self.cols, self.gap, fill=24)
        self.width_px, self.height_px = mosaic.shape[1], mosaic.shape[0]
        self.source = png_data_uri(mosaic.repeat(scale, axis=0).repeat(scale, axis=1))
        self.truth = None if truth is None else _as_numbers(truth)
        self.height = int(height)
        ox = np.array([(i % self.cols) * (self.w + self.gap) for i in range(self.n)], np.float64)
        oy = np.array([(i // self.cols) * (self.h + self.gap) for i in range(self.n)], np.float64)
        self._origin = np.stack([ox, oy], axis=1)  # (P, 2) top-left corner of each tile
        pad = self.gap / 2
        self._layout = {
            "height": self.height,
            "margin": {"l": 4, "r": 4, "t": 4, "b": 4},
            "paper_bgcolor": "rgba(0,0,0,0)",
            "plot_bgcolor": "rgba(0,0,0,0)",
            "showlegend": False,
            "dragmode": False,
            "hovermode": "closest",
            "xaxis": {"range": [-pad, self.width_px + pad], "visible": False, "fixedrange": True},
            "yaxis": {
                "range": [self.height_px + pad, -pad],
                "visible": False,
                "fixedrange": True,
                "scaleanchor": "x",
                "scaleratio": 1,
            },
            "images": [
                {
                    "source": self.source,
                    "xref": "x",
                    "yref": "y",
                    "x": 0,
                    "y": 0,
                    "sizex": self.width_px,
                    "sizey": self.height_px,
                    "xanchor": "left",
                    "yanchor": "top",
                    "sizing": "stretch",
                    "layer": "below",
                }
            ],
        }

    def _pixels(self, pts: torch.Tensor) -> np.ndarray:
        """Normalised input points ``(P, ..., 2)`` → mosaic pixel coordinates."""
        a = pts.numpy().astype(np.float64)
        px = (a[..., 0] + 1) / 2 * self.w
        py = (a[..., 1] + 1) / 2 * self.h
        shape = (self.n,) + (1,) * (a.ndim - 2)
        return np.stack([px + self._origin[:, 0].reshape(shape), py + self._origin[:, 1].reshape(shape)], axis=-1)

    def figure(
        self,
        transform: Transform | None,
        params: Sequence[torch.Tensor],
        labels: torch.Tensor | None = None,
        lines: int = 4,
        title: str | None = None,
    ) -> dict:
        """The probe images with the sampling grid of each head and, given ``labels``, the predictions.

        Args:
            transform: the model's transform family (None, or empty ``params``: no grid, e.g. the CNN baseline).
            params: one θ ``(P, n_params)`` per head.
            labels: ``(P,)`` predicted classes (for several heads: the number the digits spell).
            lines: grid cells per side.
        """
        data: list[dict] = []
        pred = None if labels is None else _as_numbers(labels)
        for k, theta in enumerate(params if transform is not None else []):
            pts = self._pixels(lattice_points(transform, theta, lines))  # (P, M, M, 2)
            m = pts.shape[1]
            step = (m - 1) // lines
            colour = HEAD_COLORS[k % len(HEAD_COLORS)]
            rows = pts[:, ::step]  # (P, lines+1, M, 2): lines of constant crop-y
            cols = pts[:, :, ::step].transpose(0, 2, 1, 3)  # lines of constant crop-x
            inner = np.concatenate([rows[:, 1:-1], cols[:, 1:-1]], axis=1)  # (P, L, M, 2)
            border = np.concatenate([pts[:, 0], pts[:, 1:, -1], pts[:, -1, -2::-1], pts[:, -2::-1, 0]], axis=1)
            centre = pts[:, m // 2, m // 2]  # (P, 2): where the crop's centre reads
            data.append(_polylines(inner, colour, 1.0, 0.55))
            data.append(_polylines(border[:, None], colour, 2.2, 1.0))
            data.append(
                {
                    "type": "scatter",
                    "mode": "markers",
                    "x": _round(centre[:, 0], 1),
                    "y": _round(centre[:, 1], 1),
                    "marker": {
                        "color": colour,
                        "size": 6,
                        "symbol": "cross-thin",
                        "line": {"color": colour, "width": 2},
                    },
                    "text": self._hover(k, theta, pred),
                    "hoverinfo": "text",
                }
            )
        if pred is not None:
            data.append(self._label_trace(pred))
        layout = dict(self._layout)
        if title:
            layout["title"] = {"text": title, "font": {"size": 13}, "x": 0.01, "y": 0.99}
            layout["margin"] = {**layout["margin"], "t": 24}
        return {"data": data, "layout": layout, "config": PLOT_CONFIG}

    def _hover(self, head: int, theta: torch.Tensor, pred: np.ndarray | None) -> list[str]:
        out = []
        for i in range(self.n):
            t = ", ".join(f"{v:.2f}" for v in theta[i, :6].tolist()) + ("…" if theta.shape[1] > 6 else "")
            parts = [f"probe {i + 1}, head {head + 1}", f"θ = [{t}]"]
            if pred is not None:
                parts.append(f"reads {int(pred[i])}")
            if self.truth is not None:
                parts.append(f"true {int(self.truth[i])}")
            out.append("<br>".join(parts))
        return out

    def _label_trace(self, pred: np.ndarray) -> dict:
        digits = 1 if self.truth is None else max(1, len(str(int(self.truth.max()))))
        xs = (self._origin[:, 0] + 1.5).tolist()
        ys = (self._origin[:, 1] + 1.5).tolist()
        ok = [
            self.truth is None or int(p) == int(t) for p, t in zip(pred, self.truth if self.truth is not None else pred)
        ]
        return {
            "type": "scatter",
            "mode": "text",
            "x": xs,
            "y": ys,
            "text": [str(int(p)).zfill(digits) + ("" if self.truth is None else OK_MARK if o else WRONG_MARK)
                     for p, o in zip(pred, ok)],
            "textposition": "bottom right",
            "textfont": {"size": 13, "color": [_OK if o else _WRONG for o in ok], "family": "monospace"},
            "hoverinfo": "skip",
        }


def _as_numbers(labels: torch.Tensor) -> np.ndarray:
    """``(P,)`` classes, or ``(P, heads)`` digits → the number they spell."""
    lab = labels.detach().cpu().long()
    if lab.ndim == 1:
        return lab.numpy()
    n = torch.zeros(lab.shape[0], dtype=torch.long)
    for k in range(lab.shape[1]):
        n = n * 10 + lab[:, k]
    return n.numpy()


def _polylines(lines: np.ndarray, colour: str, width: float, opacity: float) -> dict:
    """One scatter trace for ``(P, L, M, 2)`` polylines, separated by None."""
    p, nl, m, _ = lines.shape
    buf = np.full((p, nl, m + 1, 2), np.nan)
    buf[:, :, :m] = lines
    trace = {
        "type": "scatter",
        "mode": "lines",
        "x": _round(buf[..., 0].reshape(-1), 1),
        "y": _round(buf[..., 1].reshape(-1), 1),
        "line": {"color": colour, "width": width},
        "opacity": opacity,
        "hoverinfo": "skip",
    }
    return trace


def curve_figure(
    steps: Sequence[float],
    loss: Sequence[float],
    acc: Sequence[float],
    current: int | None = None,
    total_steps: int | None = None,
    height: int = 260,
    title: str | None = None,
    run_starts: Sequence[int] = (),
) -> dict:
    """Training loss (left axis) and accuracy (right axis) against the step, with a marker at ``current``.

    ``run_starts``: steps where a new run began from the previous one's weights (a fine-tuned
    model's replay, :func:`stn.replay.chain_replays`), drawn as labelled lines: the learning rate
    starts a new schedule there, and the loss may jump.

    >>> fig = curve_figure([1, 2, 3], [2.3, 1.9, 1.2], [0.1, 0.3, 0.6], current=2)
    >>> [t.get("name") for t in fig["data"]], fig["layout"]["shapes"][0]["x0"]
    (['loss', 'accuracy', None, None], 2)
    """
    s = np.asarray(steps, np.float64)
    x_max = float(total_steps if total_steps else (s.max() if len(s) else 1))
    loss_max = max(1.0, float(np.nanmax(loss)) * 1.05) if len(loss) else 2.5
    fig = {
        "data": [
            {
                "type": "scatter",
                "mode": "lines",
                "name": "loss",
                "x": _round(s, 0),
                "y": _round(np.asarray(loss), 4),
                "line": {"color": "#ff7f50", "width": 2},
                "hovertemplate": "step %{x}<br>loss %{y:.3f}<extra></extra>",
            },
            {
                "type": "scatter",
                "mode": "lines",
                "name": "accuracy",
                "x": _round(s, 0),
                "y": _round(np.asarray(acc), 4),
                "yaxis": "y2",
                "line": {"color": "#1f9cf0", "width": 2},
                "hovertemplate": "step %{x}<br>accuracy %{y:.1%}<extra></extra>",
            },
        ],
        "layout": {
            "height": int(height),
            "margin": {"l": 48, "r": 48, "t": 28 if title else 10, "b": 36},
            "paper_bgcolor": "rgba(0,0,0,0)",
            "plot_bgcolor": "rgba(127,127,127,0.07)",
            "font": {"color": TEXT_COLOR},
            "legend": {"orientation": "h", "x": 0.5, "xanchor": "center", "y": 1.02, "yanchor": "bottom"},
            "xaxis": {"title": {"text": "training step"}, "range": [0, x_max], "fixedrange": True},
            "yaxis": {
                # the axis's name in the text colour (coral was 2.5:1 on white), its line's colour in a swatch
                "title": {"text": '<span style="color:#ff7f50">\u25a0</span> loss'},
                "range": [0, loss_max],
                "fixedrange": True,
            },
            "yaxis2": {
                "title": {"text": '<span style="color:#1f9cf0">\u25a0</span> accuracy'},
                "range": [0, 1],
                "tickformat": ".0%",
                "overlaying": "y",
                "side": "right",
                "showgrid": False,
                "fixedrange": True,
            },
            "shapes": [
                {"type": "line", "name": "run-start", "xref": "x", "yref": "paper", "x0": int(x), "x1": int(x), "y0": 0, "y1": 1,
                 "line": {"color": "rgba(127,127,127,0.55)", "width": 1}}
                for x in run_starts
            ],
            "annotations": [
                {"x": int(x), "xref": "x", "y": 1, "yref": "paper", "text": f"run {k + 2}", "showarrow": False,
                 "xanchor": "left", "yanchor": "top", "font": {"size": 10, "color": "rgba(127,127,127,0.9)"}}
                for k, x in enumerate(run_starts)
            ],
        },
    }
    fig["config"] = PLOT_CONFIG
    if title:
        fig["layout"]["title"] = {"text": title, "font": {"size": 13}, "x": 0.01}
    return with_step_marker(fig, current) if current is not None else fig


def with_step_marker(fig: dict, step: int) -> dict:
    """A shallow copy of a :func:`curve_figure` with the current-step line and dots at ``step``.

    The curve data are shared, not copied: reuse one base figure and move only the marker.
    """
    loss_t, acc_t = fig["data"][0], fig["data"][1]
    xs = loss_t["x"]
    dots = []
    if xs:
        i = int(np.argmin(np.abs(np.asarray(xs, np.float64) - step)))
        for t, axis in ((loss_t, "y"), (acc_t, "y2")):
            if t["y"][i] is not None:
                dots.append(
                    {
                        "type": "scatter",
                        "mode": "markers",
                        "x": [xs[i]],
                        "y": [t["y"][i]],
                        "yaxis": axis,
                        "marker": {"color": t["line"]["color"], "size": 9, "line": {"color": "white", "width": 1}},
                        "showlegend": False,
                        "hoverinfo": "skip",
                    }
                )
    shape = {
        "type": "line",
        "xref": "x",
        "yref": "paper",
        "x0": step,
        "x1": step,
        "y0": 0,
        "y1": 1,
        "line": {"color": "rgba(127,127,127,0.8)", "width": 1.5, "dash": "dot"},
    }
    runs = [sh for sh in fig["layout"].get("shapes", []) if sh.get("name") == "run-start"]
    layout = {**fig["layout"], "shapes": [shape, *runs]}
    return {"data": [loss_t, acc_t, *dots], "layout": layout, "config": PLOT_CONFIG}
