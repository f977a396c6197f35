"""The paper's Table 1 beside ours, rebuilt from the model cards (``python -m stn table``)."""

from __future__ import annotations

import json
import re
from pathlib import Path

from stn.viz import PAPER_TABLE1
from stn.zoo import list_models, load_card

__all__ = ["PAPER", "zoo_rows", "left_out", "markdown_table", "chart_figure", "update_readme"]

# The paper's ST-CNN rows of Table 1 (one source: stn.viz.PAPER_TABLE1, which the app's About tab shows too),
# keyed by (dataset, transform or "cnn").
_COLUMN_OF_ROW = {"CNN": "cnn", "ST-CNN Aff": "affine", "ST-CNN Proj": "projective", "ST-CNN TPS": "tps"}
PAPER: dict[tuple[str, str], float] = {
    (ds, col): err for row, col in _COLUMN_OF_ROW.items() for ds, err in PAPER_TABLE1[row].items()
}

DATASET_ORDER = ["r", "rts", "p", "e", "tc", "pair", "wild"]
COLUMNS = ["cnn", "affine", "attention", "projective", "tps"]
COLUMN_TITLES = {"cnn": "CNN", "affine": "ST-CNN Aff", "attention": "ST-CNN Att", "projective": "ST-CNN Proj", "tps": "ST-CNN TPS"}


def _cell(card: dict) -> tuple[str, str] | None:
    """The card's cell of Table 1, ``(dataset, transform or 'cnn')``, or None when it lacks a dataset, a config or
    a test error (a card written by hand, or by ``save_model`` with no metrics)."""
    try:
        float(card["metrics"]["test_error"])
        return str(card["dataset"]["name"]), card["config"]["transform"] or "cnn"
    except (KeyError, TypeError, ValueError):
        return None


def left_out(directory: Path | None = None) -> list[str]:
    """The models whose cards the table leaves out (:func:`_cell`)."""
    return [name for name in list_models(directory) if _cell(load_card(name, directory)) is None]


def zoo_rows(directory: Path | None = None) -> dict[tuple[str, str], dict]:
    """``(dataset, transform or 'cnn') -> card`` for every shipped model (default seed names) whose card holds its
    dataset, config and test error (:func:`left_out` names the others)."""
    cells: dict[tuple[str, str], dict] = {}
    for name in list_models(directory):
        card = load_card(name, directory)
        key = _cell(card)
        if key is not None and (key not in cells or name == f"{key[0]}-{key[1]}"):
            cells[key] = card
    return cells


def markdown_table(directory: Path | None = None) -> str:
    """Ours beside the paper's, error in % on our 10,000-image test sets; then the uploads table."""
    cells = zoo_rows(directory)
    used = [c for c in COLUMNS if any(k[1] == c for k in cells) or any(k[1] == c for k in PAPER)]
    lines = [
        "Test error (%), ours **bold** with the paper's in brackets; — : not trained / not in the paper.",
        "",
        "| data | " + " | ".join(COLUMN_TITLES[c] for c in used) + " |",
        "|---|" + "---:|" * len(used),
    ]
    for ds in DATASET_ORDER:
        row = []
        for col in used:
            ours = cells.get((ds, col))
            paper = PAPER.get((ds, col))
            text = f"**{100 * ours['metrics']['test_error']:.2f}**" if ours else "—"
            if paper is not None:
                text += f" ({paper})"
            row.append(text)
        if any(cell != "—" for cell in row):
            lines.append(f"| {ds.upper() if ds in ('r', 'rts', 'p', 'e', 'tc') else ds.capitalize()} | " + " | ".join(row) + " |")
    uploads = [(n, c) for n, c in ((c["name"], c) for c in cells.values()) if "uploads" in c.get("metrics", {})]
    if uploads:
        lines += ["", "Upload-style test sets (accuracy %, see `stn/uploads.py`):", "",
                  "| model | sketches (MNIST test digits as drawn) | handwriting fonts (held out) | photos (16 conditions) | cropped to the digit |",
                  "|---|---:|---:|---:|---:|"]
        for name, c in sorted(uploads):
            u = c["metrics"]["uploads"]
            photo, cropped = (f"{100 * u[k]['accuracy']:.1f}" if k in u else "—" for k in ("photo", "cropped"))
            lines.append(f"| {name} | {100 * u['sketch']['accuracy']:.1f} | {100 * u['font']['accuracy']:.1f} | {photo} | {cropped} |")
    needed = {"epochs", "train_seconds", "hardware"}  # a card with no record of its run has no row here
    timing = [(c["name"], c["training"]) for c in cells.values() if isinstance(c.get("training"), dict) and needed <= set(c["training"])]
    if timing:
        # a fine-tuned model's card records its own run's time, not its starting model's (that is in the starting
        # model's card, when it ships): the column says so rather than add up times it does not have
        lines += ["", "| model | epochs (start + this run) | train time (this run) | hardware |", "|---|---:|---:|---|"]
        transforms = {c["name"]: c.get("config", {}).get("transform") or "none" for c in cells.values()}
        for name, t in sorted(timing):
            # a fine-tuned model (train --init): the starting model's epochs + this run's; the time is this run's
            epochs = f"{t['epochs']}"
            if "init" in t:
                family = t["init"].get("transform")
                start = f" {family}" if family and family != transforms.get(name) else ""  # a warm start from another family
                epochs = f"{t['init']['epochs']}{start} + {t['epochs']}"
            lines.append(f"| {name} | {epochs} | {t['train_seconds'] / 60:.1f} min | {t['hardware']} |")
    return "\n".join(lines)


def chart_figure(directory: Path | None = None) -> dict:
    """A plotly figure (as a dict) of ours against the paper per Table 1 cell."""
    cells = zoo_rows(directory)
    keys = [(ds, col) for ds in DATASET_ORDER for col in COLUMNS if (ds, col) in cells]
    labels = [f"{ds.upper()} {COLUMN_TITLES[col]}" for ds, col in keys]
    ours = [round(100 * cells[k]["metrics"]["test_error"], 3) for k in keys]
    paper = [PAPER.get(k) for k in keys]
    return {
        "data": [
            {"type": "bar", "name": "ours", "x": labels, "y": ours, "marker": {"color": "#4c78a8"}},
            {"type": "bar", "name": "paper", "x": labels, "y": paper, "marker": {"color": "#f58518"}},
        ],
        "layout": {
            "title": {"text": "Test error on distorted MNIST (%): ours vs. Jaderberg et al. 2015"},
            "barmode": "group",
            "height": 420,
            "yaxis": {"title": {"text": "error (%)"}, "rangemode": "tozero"},
            "margin": {"l": 50, "r": 10, "t": 50, "b": 110},
            "legend": {"orientation": "h", "y": 1.08},
        },
    }


def update_readme(readme: Path, table: str) -> bool:
    """Replace the text between ``<!-- zoo-table:start -->`` and ``<!-- zoo-table:end -->``."""
    text = readme.read_text()
    pattern = re.compile(r"(<!-- zoo-table:start -->\n).*?(\n<!-- zoo-table:end -->)", re.DOTALL)
    if not pattern.search(text):
        return False
    readme.write_text(pattern.sub(lambda m: m.group(1) + table + m.group(2), text))
    return True


def write_chart(path: Path, directory: Path | None = None) -> Path:
    path.write_text(json.dumps(chart_figure(directory)) + "\n")
    return path
