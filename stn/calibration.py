"""How sure a model may be of a reading: the floor of its top logit, calibrated on upload-style digits.

A softmax is peaked wherever one logit stands out, however small all of them are: a photo of a
lion or an icon, nothing like a digit, reads "4 (83%)". The largest logit itself is small there
(the MaxLogit score of out-of-distribution detection): for ``wild-affine`` it is 2-4 on most such
pictures, against 15 on a typical digit. A model's floor (``sure_logit`` in its card's
``calibration``) is a low ``quantile`` (0.5%) of its top logit over upload-style digits that it
reads right: sketches, photos and digits cut to their box (:mod:`stn.uploads`, made from other
MNIST test digits than the sets ``stn uploads`` measures, with a seed of their own), or
two-digit numbers for a two-head model. Below the floor a reading is shown as a guess (:attr:`stn.model.Prediction.weak`), so
about 0.5% of right readings of such digits are; ``bench/README.md``, sixteenth pass, measures
what it does to pictures with no digit.

    python -m stn calibrate wild-affine rts-affine --write
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from itertools import islice

import numpy as np
import torch
from PIL import Image

from stn.data import load_mnist
from stn.model import STClassifier
from stn.preprocess import ImageError, prepare
from stn.uploads import cropped_images, number_images, photo_images, sketch_images

__all__ = ["CALIBRATION_SEED", "QUANTILE", "calibrate", "calibration_images", "top_logits"]

CALIBRATION_SEED = 907  # none of the seeds stn uploads and the tests measure with
FIRST_DIGIT = 5000  # calibration pictures are made from MNIST test digits 5,000 on (stn uploads: the first 1,000)
QUANTILE = 0.005


def top_logits(model: STClassifier, x: torch.Tensor, batch: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """``x`` ``(B, 1, H, W)`` → ``(B,)`` top logits (each head's largest, the least over heads) and ``(B,)`` labels."""
    tops, labels = [], []
    with torch.no_grad():
        for i in range(0, len(x), batch):
            pred = model.predict(x[i : i + batch])
            tops.append(pred.top_logits)
            labels.append(pred.labels)
    return torch.cat(tops), torch.cat(labels)


def calibration_images(heads: int, n: int, seed: int = CALIBRATION_SEED,
                       root: str | None = None) -> Iterator[tuple[Image.Image, int]]:
    """``n`` upload-style pictures the app would hand a model with ``heads`` heads, with their class
    index: sketches, photos and cropped digits in turn for one head; numbers of ``heads`` digits else."""
    if heads > 1:
        for img, text in number_images(n, seed=seed, root=root, digits=(heads,), start=FIRST_DIGIT):
            yield img, int(text)
        return
    third = -(-n // 3)
    # each kind from digits of its own, none of them in the sets stn uploads measures (the first 1,000)
    sources = (sketch_images(third, seed=seed, root=root, start=FIRST_DIGIT),
               photo_images(third, seed=seed, root=root, start=FIRST_DIGIT + third),
               cropped_images(third, seed=seed, root=root, start=FIRST_DIGIT + 2 * third))
    made = 0
    for items in zip(*sources):
        for item in items:
            if made == n:
                return
            made += 1
            yield item


@functools.lru_cache(maxsize=2)  # models of one canvas share the pictures (stn calibrate all: 6 canvases, 31 models)
def _prepared(input_size: tuple[int, int], digit_size: float, heads: int, n: int, seed: int,
              root: str | None) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = [], []
    for img, label in islice(calibration_images(heads, n, seed, root), n):
        try:
            xs.append(prepare(img, input_size, digit_size).tensor)
        except ImageError:
            continue
        ys.append(label)
    if not xs:
        raise ValueError("no calibration picture could be prepared")
    return torch.cat(xs), torch.tensor(ys)


def calibrate(model: STClassifier, n: int = 3000, quantile: float = QUANTILE, seed: int = CALIBRATION_SEED,
              root: str | None = None, name: str | None = None) -> dict:
    """The model's ``sure_logit``: the ``quantile`` of its top logit over the ``n`` pictures of
    :func:`calibration_images` it reads right, with what it was measured on (a model card's ``calibration``)."""
    if not 0 < quantile < 1:
        raise ValueError(f"quantile must lie between 0 and 1, got {quantile}")
    cfg = model.config
    x, y = _prepared(tuple(cfg.input_size), float(cfg.digit_size), model.heads, n, seed, root)
    held = len(load_mnist(root, train=False)[1])
    last = FIRST_DIGIT + (n * model.heads if model.heads > 1 else 3 * -(-n // 3))  # one past the last digit drawn
    tops, labels = top_logits(model, x)
    right = labels == y
    if int(right.sum()) < 20:
        raise ValueError(f"the model reads only {int(right.sum())} of {len(y)} calibration pictures right: too few to calibrate")
    floor = float(np.quantile(tops[right].double().numpy(), quantile))
    return {
        "sure_logit": round(floor, 4),
        "quantile": quantile,
        "images": len(y),
        "read_right": int(right.sum()),
        "under_floor": int((tops < floor).sum()),  # all pictures, the misread ones too
        "kinds": "two-digit numbers" if model.heads > 1 else "sketches, photos, digits cut to their box",
        # a set with fewer digits wraps round onto the first ones, which stn uploads measures: not for a card
        "digits": f"MNIST test digits {FIRST_DIGIT}-{last - 1}" if last <= held
        else f"all {held} test digits, wrapping round (the first ones are those stn uploads measures)",
        "overlaps_uploads": last > held,
        "how": f"python -m stn calibrate {name or getattr(model, 'name', 'NAME')} --write (stn/calibration.py, seed {seed})",
    }
