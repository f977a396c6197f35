"""stn.calibration: the floor of a model's top logit, from upload-style digits it reads right."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from stn.calibration import FIRST_DIGIT, calibrate, calibration_images, top_logits
from stn.data import load_mnist
from stn.uploads import cropped_images, photo_images, sketch_images
from stn.model import ModelConfig, STClassifier
from stn.zoo import DEFAULT_MODEL, list_models, load_model


def test_calibration_images_take_turns_and_number_for_two_heads() -> None:
    items = list(calibration_images(1, 7, root="bundled"))
    assert len(items) == 7 and all(isinstance(label, int) and 0 <= label <= 9 for _, label in items)
    assert [img.mode for img, _ in items[:3]] == ["RGBA", "RGB", items[2][0].mode]  # a sketch, a photo, a cropped digit
    pairs = list(calibration_images(2, 3, root="bundled"))
    assert len(pairs) == 3 and all(0 <= label <= 99 for _, label in pairs)


def test_calibration_digits_are_not_the_measured_ones() -> None:
    """The upload sets start at MNIST test digit 0; each calibration kind at a later digit of its own."""
    _, labels = load_mnist("bundled", train=False)
    n = len(labels)
    for make in (sketch_images, photo_images, cropped_images):
        assert [y for _, y in make(3, root="bundled", start=7)] == labels[7:10].tolist()
        assert [y for _, y in make(2, root="bundled", start=n - 1)] == [int(labels[-1]), int(labels[0])]  # wraps round
    items = list(calibration_images(1, 6, root="bundled"))  # sketch, photo, cropped, sketch, ...
    starts = [FIRST_DIGIT, FIRST_DIGIT + 2, FIRST_DIGIT + 4]  # a third of 6 each
    assert [y for _, y in items] == [int(labels[(s + k) % n]) for k in (0, 1) for s in starts]


def test_no_mnist_is_an_error_not_the_bundled_digits(tmp_path, monkeypatch) -> None:
    """Without MNIST the sets once fell back to the bundled 1,000 digits without a word: calibration then wrapped
    round onto the very digits ``stn uploads`` measures, and ``--write`` put that floor in the card."""
    monkeypatch.delenv("STN_DATA", raising=False)
    for make in (sketch_images, photo_images, cropped_images):
        with pytest.raises(FileNotFoundError, match=str(tmp_path)):
            next(make(1, root=str(tmp_path)))
    model = STClassifier(ModelConfig("r", (28, 28))).eval()
    with pytest.raises(FileNotFoundError):
        calibrate(model, n=30, root=str(tmp_path / "nowhere"))


@pytest.mark.skipif(DEFAULT_MODEL not in list_models(), reason="default model not shipped")
def test_calibration_says_which_digits_it_used() -> None:
    model = load_model(DEFAULT_MODEL, device="cpu")
    small = calibrate(model, n=30, root="bundled")  # 1,000 digits: from 5,000 on wraps round to the first ones
    assert small["overlaps_uploads"] and "wrapping round" in small["digits"]
    try:
        load_mnist(None, train=False)
    except FileNotFoundError:
        pytest.skip("MNIST not found (CI sets STN_DATA)")
    full = calibrate(model, n=30)
    assert not full["overlaps_uploads"] and full["digits"] == f"MNIST test digits {FIRST_DIGIT}-{FIRST_DIGIT + 29}"


@pytest.mark.skipif(DEFAULT_MODEL not in list_models(), reason="default model not shipped")
def test_a_floor_from_the_measured_digits_is_not_written(tmp_path, capsys) -> None:
    """``stn calibrate --write`` on the bundled digits (or a set it wraps round) measured the floor on the very
    pictures ``stn uploads`` tests it on: said, and the card left as it was."""
    import shutil

    from stn.cli import main
    from stn.zoo import models_dir

    for f in models_dir().glob(f"{DEFAULT_MODEL}.*"):
        if f.is_file():
            shutil.copy(f, tmp_path / f.name)
    card = (tmp_path / f"{DEFAULT_MODEL}.json").read_text()
    code = main(["calibrate", DEFAULT_MODEL, "--write", "--data", "bundled", "--images", "30", "--models-dir", str(tmp_path)])
    assert code == 1 and (tmp_path / f"{DEFAULT_MODEL}.json").read_text() == card
    assert "card not written" in capsys.readouterr().err


def test_top_logits_in_batches() -> None:
    model = STClassifier(ModelConfig("rts", (42, 42), transform="affine")).eval()
    x = torch.rand(5, 1, 42, 42)
    tops, labels = top_logits(model, x, batch=2)
    with torch.no_grad():
        logits = model(x)[:, 0]
    assert torch.allclose(tops, logits.amax(-1), atol=1e-5) and torch.equal(labels, logits.argmax(-1))


@pytest.mark.skipif(DEFAULT_MODEL not in list_models(), reason="default model not shipped")
def test_calibrate_is_the_quantile_of_the_right_readings(monkeypatch) -> None:
    model = load_model(DEFAULT_MODEL, device="cpu")
    cal = calibrate(model, n=90, quantile=0.1, root="bundled")
    assert cal["images"] == 90 and 60 <= cal["read_right"] <= 90 and cal["quantile"] == 0.1
    # the same pictures by hand: the 10% quantile of the right ones' top logits
    from stn.preprocess import prepare

    items = list(calibration_images(1, 90, root="bundled"))
    x = torch.cat([prepare(img, (56, 56), float(model.config.digit_size)).tensor for img, _ in items])
    tops, labels = top_logits(model, x)
    right = labels == torch.tensor([y for _, y in items])
    assert cal["sure_logit"] == pytest.approx(float(np.quantile(tops[right].double().numpy(), 0.1)), abs=1e-3)
    assert cal["under_floor"] == int((tops < cal["sure_logit"]).sum())
    with pytest.raises(ValueError, match="quantile must lie between 0 and 1"):
        calibrate(model, n=10, quantile=1.5, root="bundled")


def test_an_untrained_model_is_not_calibrated() -> None:
    model = STClassifier(ModelConfig("wild", (56, 56))).eval()
    with pytest.raises(ValueError, match="too few to calibrate"):
        calibrate(model, n=30, root="bundled")
