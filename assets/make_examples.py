"""Make the demo's example images in ``assets/examples/`` (run from the repository root).

    python assets/make_examples.py            # from the bundled MNIST subset (assets/mnist-subset.npz)
    python assets/make_examples.py --data DIR # from full MNIST in torchvision's layout

Model-space examples are the fixed test images of each distorted-MNIST task
(:func:`stn.data.test_set`), saved as 8-bit grey PNGs at the task's canvas size: light ink on
dark, exactly what the models were tested on. Pre-processing takes a grey image of the
model's canvas size as it is, so the transformer, not the pre-processing, has to find the digit.

Two "real-world" examples go beside them: a photo-like dark digit on lit paper (JPEG) and a
sketch-like transparent PNG whose strokes live only in the alpha channel. Both go through
:func:`stn.preprocess.prepare` like any upload.

``examples.json`` lists each file with its task, the model family it shows best and a caption.
The output is deterministic: running the script again rewrites the same files.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageFilter

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from stn.data import load_mnist, test_set

OUT = ROOT / "assets" / "examples"

# (task, index into its fixed test set, caption[, model]): chosen by eye from the first 24 of each task,
# except the first two, from the first 300 Wild images: the plain CNN misreads them and the
# transformer does not (the page opens on the first one). A model, where given, is the one the
# example shows (the app falls back to the task's models when it is not in the zoo).
PICKS = [
    ("wild", 124, "turned, in clutter"),
    ("wild", 104, "small, faint"),
    ("wild", 0, "rotated"),
    ("wild", 5, "large"),
    ("wild", 12, "thick"),
    ("wild", 17, "small"),
    ("rts", 17, "rotated, scaled", "rts-affine-upright"),
    ("rts", 8, "rotated, moved"),
    ("r", 4, "on its side", "r-affine-upright"),
    ("r", 17, "rotated"),
    ("p", 1, "projective"),
    ("p", 7, "projective"),
    ("e", 3, "elastic"),
    ("e", 18, "elastic"),
    ("tc", 6, "in clutter"),
    ("tc", 15, "in clutter"),
    ("pair", 0, "pair"),
    ("pair", 3, "pair"),
    ("mnist", 0, "upright"),
]
N_FIRST = 24  # picks index the first 24 images of each fixed test set (the set depends on n) ...
N_WIDE = 300  # ... or, for an index of 24 or more, the first 300
# The model family that each task's example is meant to show (the app falls back to any
# transformer trained on the task).
PREFERRED = {"wild": "affine", "rts": "affine", "r": "affine", "p": "projective", "e": "tps", "tc": "attention", "pair": "affine",
             "mnist": None}


def _u8(x: torch.Tensor) -> np.ndarray:
    return (x.clamp(0, 1).numpy() * 255 + 0.5).astype(np.uint8)


def _big_digit(digit: torch.Tensor, size: int, angle: float = 0.0) -> np.ndarray:
    """A 28×28 MNIST digit drawn ``size`` px tall, smooth, rotated by ``angle``° (anticlockwise)."""
    a = math.radians(angle)
    theta = torch.tensor([[[math.cos(a), -math.sin(a), 0.0], [math.sin(a), math.cos(a), 0.0]]], dtype=torch.float32)
    up = F.interpolate(digit.view(1, 1, 28, 28), size=(size, size), mode="bicubic", align_corners=False).clamp(0, 1)
    grid = F.affine_grid(theta, [1, 1, size, size], align_corners=False)
    return F.grid_sample(up, grid, mode="bilinear", align_corners=False)[0, 0].numpy()


def photo_on_paper(digit: torch.Tensor, seed: int = 3) -> Image.Image:
    """Dark pen ink on unevenly lit paper, slightly tilted and blurred, as a phone would take it."""
    rng = np.random.default_rng(seed)
    h, w = 260, 320
    ink = _big_digit(digit, 190, angle=-12.0)
    ink = np.clip((ink - 0.15) / 0.6, 0, 1)
    canvas = np.zeros((h, w))
    y0, x0 = 40, 70
    canvas[y0 - 10 : y0 - 10 + 190, x0 : x0 + 190] = ink[: h - y0 + 10, :]
    yy, xx = np.mgrid[0:h, 0:w]
    light = 0.92 - 0.18 * ((xx / w - 0.8) ** 2 + (yy / h - 0.2) ** 2)  # vignette, brighter top-right
    paper = np.stack([light * 0.98, light * 0.95, light * 0.86], axis=-1)  # warm paper
    paper += rng.normal(0, 0.012, paper.shape)
    pen = np.array([0.12, 0.14, 0.30])  # blue-black ballpoint
    rgb = paper * (1 - canvas[..., None] * 0.92) + pen * canvas[..., None] * 0.92
    # faint ruled lines of a notebook page
    for y in range(18, h, 34):
        rgb[y, :, :] = rgb[y, :, :] * 0.93 + np.array([0.55, 0.65, 0.85]) * 0.07
    img = Image.fromarray((np.clip(rgb, 0, 1) * 255).astype(np.uint8), "RGB")
    return img.filter(ImageFilter.GaussianBlur(0.8))


def sketch_rgba(digit: torch.Tensor) -> Image.Image:
    """Black strokes on a transparent 400×400 canvas: the ink lives only in the alpha channel."""
    ink = _big_digit(digit, 300, angle=8.0)
    alpha = np.clip((ink - 0.35) / 0.25, 0, 1)  # crisp pen edge
    canvas = np.zeros((400, 400))
    canvas[60:360, 40:340] = alpha
    rgba = np.zeros((400, 400, 4), dtype=np.uint8)
    rgba[..., 3] = (canvas * 255 + 0.5).astype(np.uint8)
    return Image.fromarray(rgba, "RGBA")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="bundled", help='MNIST root, or "bundled" (default) for assets/mnist-subset.npz')
    args = parser.parse_args(argv)
    OUT.mkdir(parents=True, exist_ok=True)
    for old in OUT.glob("*.png"):
        old.unlink()
    entries = []
    sets: dict[tuple[str, int], tuple[torch.Tensor, torch.Tensor]] = {}
    for task, idx, caption, *model in PICKS:
        n = N_FIRST if idx < N_FIRST else N_WIDE
        if (task, n) not in sets:
            sets[task, n] = test_set(task, args.data, n=n)
        x, y = sets[task, n]
        label = "".join(str(int(v)) for v in y[idx].reshape(-1))
        name = f"{task}-{idx:02d}-{label}.png"
        Image.fromarray(_u8(x[idx, 0]), "L").save(OUT / name, optimize=True)
        entries.append({"file": name, "task": task, "transform": PREFERRED[task], "label": label, "caption": caption,
                        **({"model": model[0]} if model else {})})
    images, labels = load_mnist(args.data, train=False)
    for file, make, idx, caption in (
        ("photo-paper-3.jpg", photo_on_paper, 18, "photo"),
        ("sketch-alpha-6.png", sketch_rgba, 21, "sketch (alpha)"),
    ):
        img = make(images[idx, 0])
        path = OUT / file
        if file.endswith(".jpg"):
            img.save(path, quality=88)
        else:
            img.save(path, optimize=True)
        entries.append({"file": file, "task": "wild", "transform": "affine", "label": str(int(labels[idx])), "caption": caption})
    (OUT / "examples.json").write_text(json.dumps(entries, indent=1) + "\n")
    print(f"wrote {len(entries)} examples to {OUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
