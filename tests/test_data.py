"""Distorted-MNIST generation: shapes, determinism, the distortions' promises."""

from __future__ import annotations

import os
import re

import pytest
import torch

from stn import data
from stn.data import DATASETS, DataNotFoundError, get_spec, load_mnist, make_batch, synthetic_digits

HAVE_MNIST = any(
    (data.data_root() / sub / "train-images-idx3-ubyte").exists() for sub in ("MNIST/raw", "raw", ".")
)
needs_mnist = pytest.mark.skipif(not HAVE_MNIST, reason="MNIST not found: set STN_DATA (CI sets it)")


def _batch(name: str, n: int = 8, seed: int = 0):
    digits, labels = synthetic_digits(n, seed)
    g = torch.Generator().manual_seed(seed)
    return make_batch(name, digits, labels, digits, labels, g)


@pytest.mark.parametrize("name", list(DATASETS))
def test_shapes_range_and_targets(name: str) -> None:
    spec = get_spec(name)
    x, y = _batch(name)
    assert x.shape == (8, 1, *spec.canvas)
    assert x.min() >= 0 and x.max() <= 1
    assert torch.isfinite(x).all()
    assert y.shape == ((8,) if spec.digits == 1 else (8, spec.digits))
    assert x.flatten(1).sum(1).gt(1).all(), "every image holds some ink"


@pytest.mark.parametrize("name", list(DATASETS))
def test_same_seed_same_images(name: str) -> None:
    a, _ = _batch(name, seed=3)
    b, _ = _batch(name, seed=3)
    c, _ = _batch(name, seed=4)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_unknown_dataset_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match="Known: r, rts"):
        get_spec("rst")


def test_missing_data_says_how_to_fix(tmp_path) -> None:
    with pytest.raises(DataNotFoundError, match="STN_DATA"):
        load_mnist(tmp_path)


def test_tc_keeps_the_digit_whole_on_the_canvas() -> None:
    digits, labels = synthetic_digits(16)
    g = torch.Generator().manual_seed(0)
    x, _ = make_batch("tc", digits, labels, torch.zeros(4, 1, 28, 28), labels[:4], g)  # no clutter ink
    assert torch.allclose(x.flatten(1).sum(1), digits.flatten(1).sum(1), rtol=1e-4)


def test_rts_shift_keeps_the_box_inside() -> None:
    digits = torch.zeros(64, 1, 28, 28)
    digits[:, :, 4:24, 4:24] = 1  # the 20 px ink box
    g = torch.Generator().manual_seed(1)
    x, _ = make_batch("rts", digits, torch.zeros(64, dtype=torch.long), digits, torch.zeros(64, dtype=torch.long), g)
    border = torch.cat([x[..., 0, :], x[..., -1, :], x[..., :, 0], x[..., :, -1]], dim=-1)
    assert border.max() < 0.5


def test_pair_targets_are_left_then_right() -> None:
    digits, labels = synthetic_digits(6)
    g = torch.Generator().manual_seed(0)
    x, y = make_batch("pair", digits, labels, digits, labels, g)
    assert torch.equal(y[:, 0], labels)
    assert x.shape[-1] == 2 * x.shape[-2]


def test_bundled_subset_loads() -> None:
    x, y = load_mnist("bundled", train=True)
    assert x.shape[1:] == (1, 28, 28) and len(x) == len(y) >= 1000
    assert set(y.unique().tolist()) == set(range(10))


@needs_mnist
def test_real_mnist_and_fixed_test_sets() -> None:
    x, y = load_mnist(train=False)
    assert x.shape == (10_000, 1, 28, 28) and y.shape == (10_000,)
    a, ya = data.test_set("rts", n=200)
    b, yb = data.test_set("rts", n=200)
    assert torch.equal(a, b) and torch.equal(ya, yb) and torch.equal(ya, y[:200])


@needs_mnist
def test_training_epochs_differ() -> None:
    epochs = data.train_batches("r", 32, seed=0, limit=64)
    first = next(next(epochs))[0]
    second = next(next(epochs))[0]
    assert not torch.equal(first, second)


def test_ci_has_mnist() -> None:
    if os.environ.get("CI"):
        assert HAVE_MNIST, "CI must point STN_DATA at MNIST (../shared/data)"


def test_p_keeps_the_digit_box_on_the_canvas_and_unfolded() -> None:
    """P moves the box's corners by N(0, 5 px), but never off the canvas and never into a fold:
    a homography maps the inside of a convex quad to its inside, so no ink is lost."""
    g = torch.Generator().manual_seed(2)
    quads = data._perspective_corners(4096, g, "cpu")
    assert quads.shape == (4096, 4, 2)
    assert quads.abs().max() <= 1
    assert data._convex(quads).all()
    # and they did move: the top edge is tilted by about |N(0, 5 px) - N(0, 5 px)| ≈ 5.6 px
    tilt_px = (quads[:, 0, 1] - quads[:, 1, 1]).abs() * 14
    assert 3 < float(tilt_px.mean()) < 7
    assert float((tilt_px > 1).float().mean()) > 0.7


def test_p_views_are_not_grazing() -> None:
    """No P view puts the digit's far side over MAX_DEPTH_RATIO times farther than its near
    side: those squeeze the digit into a dot or a line that no reader could label."""
    g = torch.Generator().manual_seed(3)
    ratios = data._depth_ratio(data._perspective_corners(4096, g, "cpu"))
    assert float(ratios.max()) <= data.MAX_DEPTH_RATIO
    assert float(ratios.median()) > 1.2  # still clearly perspective, not merely affine


def test_depth_ratio() -> None:
    square = torch.tensor([[[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]]])
    sheared = torch.tensor([[[-0.5, -1.0], [1.0, -1.0], [0.5, 1.0], [-1.0, 1.0]]])  # affine: a parallelogram
    # a trapezoid whose top edge is a third of its bottom: the top is 3 times farther away
    trapezoid = torch.tensor([[[-1 / 3, -1.0], [1 / 3, -1.0], [1.0, 1.0], [-1.0, 1.0]]])
    bowtie = torch.tensor([[[-1.0, -1.0], [1.0, 1.0], [1.0, -1.0], [-1.0, 1.0]]])
    three_in_a_line = torch.tensor([[[1.0, -1.0], [1.0, 0.0], [1.0, 1.0], [-1.0, 1.0]]])  # as clamping can make
    r = data._depth_ratio(torch.cat([square, sheared, trapezoid, bowtie, three_in_a_line]))
    assert r[:3].tolist() == pytest.approx([1.0, 1.0, 3.0], abs=1e-4)
    assert r[3:].isinf().all()


@needs_mnist
def test_p_test_set_keeps_the_digits_readable() -> None:
    """Every P test image keeps a fair share of its digit's ink: none squeezed to a dot or a line."""
    x, _ = data.test_set("p", n=2000)
    digits, _ = load_mnist(train=False)
    digits = digits[:2000].float()
    digits = digits / digits.amax()
    ink = x.flatten(1).sum(1) / digits.flatten(1).sum(1)
    assert float(ink.min()) > 0.1
    assert float((ink < 0.2).float().mean()) < 0.005


def test_p_convexity_check() -> None:
    square = torch.tensor([[[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]]])
    bowtie = torch.tensor([[[-1.0, -1.0], [1.0, 1.0], [1.0, -1.0], [-1.0, 1.0]]])
    dart = torch.tensor([[[-1.0, -1.0], [1.0, -1.0], [0.0, -0.5], [-1.0, 1.0]]])  # one corner pushed inside
    assert data._convex(torch.cat([square, bowtie, dart])).tolist() == [True, False, False]


def _idx(path, shape: tuple[int, ...], cut: int = 0) -> None:
    """An IDX file of unsigned bytes of ``shape`` (MNIST's format), its last ``cut`` bytes missing."""
    head = bytes([0, 0, 8, len(shape)]) + b"".join(n.to_bytes(4, "big") for n in shape)
    body = bytes(int(torch.tensor(shape).prod()))
    path.write_bytes((head + body)[: len(head) + len(body) - cut])


def _raw(tmp_path, stems: tuple[str, ...]):
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for stem in stems:
        _idx(raw / stem, (5, 28, 28) if "images" in stem else (5,))
    return raw


def test_a_missing_mnist_file_is_named(tmp_path) -> None:
    """Only the training images there: the test images were a FileNotFoundError traceback for t10k-...gz."""
    raw = _raw(tmp_path, ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"))
    assert load_mnist(tmp_path, train=True)[0].shape == (5, 1, 28, 28)
    missing = re.escape(f"{raw / 't10k-images-idx3-ubyte'}: no such file (nor t10k-images-idx3-ubyte.gz); ")
    with pytest.raises(DataNotFoundError, match=missing
                       + r".*holds train-images-idx3-ubyte, train-labels-idx1-ubyte: put all four"):
        load_mnist(tmp_path, train=False)
    (raw / "train-labels-idx1-ubyte").unlink()
    data._CACHE.clear()
    with pytest.raises(DataNotFoundError, match="train-labels-idx1-ubyte: no such file"):
        load_mnist(tmp_path, train=True)


@pytest.mark.parametrize("damage,match", [
    (lambda p: _idx(p, (5, 28, 28), cut=16),
     r"t10k-images-idx3-ubyte: truncated: 3,904 bytes of data where its header says 5×28×28 = 3,920"),
    (lambda p: p.write_bytes(b"\x00\x00"), r"t10k-images-idx3-ubyte: not an MNIST IDX file"),
    (lambda p: p.write_bytes(b"<html>404</html>"), r"not an MNIST IDX file \(it starts with 3c68746d"),
    (lambda p: p.write_bytes(p.read_bytes() + b"\x00"), r"longer than its header says"),
    (lambda p: _idx(p, (4, 28, 28)), r"holds 4×28×28 and t10k-labels-idx1-ubyte 5: expected N 28×28 images and N"),
], ids=["truncated", "stub", "html", "too-long", "count"])
def test_a_damaged_mnist_file_is_named(tmp_path, damage, match) -> None:
    """A truncated file was "cannot reshape array of size 984 into shape (10000,28,28)"."""
    raw = _raw(tmp_path, data.MNIST_FILES)
    damage(raw / "t10k-images-idx3-ubyte")
    with pytest.raises(data.DataFileError, match=match + ".*download (it|them) again"):
        load_mnist(tmp_path, train=False)


def test_a_cut_gzip_file_is_named(tmp_path) -> None:
    import gzip

    raw = _raw(tmp_path, data.MNIST_FILES[:2])
    packed = gzip.compress((raw / "train-images-idx3-ubyte").read_bytes())
    (raw / "train-images-idx3-ubyte").unlink()
    (raw / "train-images-idx3-ubyte.gz").write_bytes(packed[:-20])
    with pytest.raises(data.DataFileError, match=r"train-images-idx3-ubyte\.gz: could not be read"):
        load_mnist(tmp_path, train=True)


def test_a_batch_larger_than_the_digits_is_refused() -> None:
    """``train --limit 64 --batch-size 128`` ended in a bare StopIteration: no epoch held a whole batch."""
    with pytest.raises(ValueError, match="batch size 128 is more than the 64 training digits: "
                                         "use a batch size of at most 64, or a larger limit"):
        data.train_batches("r", 128, root="bundled", limit=64)
    x, _ = next(next(data.train_batches("r", 64, root="bundled", limit=64)))
    assert x.shape == (64, 1, 28, 28)


def _spy_on_make_batch(monkeypatch) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Every ``(digits, pool)`` that :func:`stn.data.make_batch` is given from now on: the pool is
    where clutter and a Pair's second digit come from."""
    seen: list[tuple[torch.Tensor, torch.Tensor]] = []
    real = data.make_batch

    def spy(name, digits, labels, pool, pool_labels, g):
        seen.append((digits.clone(), pool))
        return real(name, digits, labels, pool, pool_labels, g)

    monkeypatch.setattr(data, "make_batch", spy)
    return seen


def _rows(images: torch.Tensor) -> set[bytes]:
    return {row.numpy().tobytes() for row in images.flatten(1)}


def test_held_out_digits_are_never_drawn_for_training(monkeypatch) -> None:
    """``holdout``: the last digits reach no training batch, as its digits, as clutter or as a Pair's second digit."""
    images, _ = load_mnist("bundled")
    n = len(images)
    held = images[n - 1000 :]
    seen = _spy_on_make_batch(monkeypatch)
    for name in ("mnist", "tc", "pair"):
        epochs = data.train_batches(name, 100, "bundled", seed=0, holdout=1000)
        for _ in range(2):
            for _batch in next(epochs):
                pass
    assert len(seen) == 3 * 2 * (n - 1000) // 100  # every training digit, twice per task
    for _digits, pool in seen:
        assert torch.equal(pool, images[: n - 1000])  # by index: the pool is the training part
    drawn = torch.cat([d for d, _ in seen])
    assert _rows(drawn) == _rows(images[: n - 1000]) and not _rows(drawn) & _rows(held)  # by content
    # --limit takes the first digits of what is left, and cannot reach into the held-out ones
    assert len(data.training_digits("bundled", holdout=1000, limit=500)[0]) == 500
    with pytest.raises(ValueError, match=f"a limit of {n - 999:,} training digits reaches into the 1,000 held out"):
        data.training_digits("bundled", holdout=1000, limit=n - 999)
    with pytest.raises(ValueError, match=f"a holdout of {n:,} digits leaves none of the {n:,} training digits"):
        data.train_batches("r", 16, "bundled", holdout=n)


def test_val_set_is_the_held_out_digits_distorted_once(monkeypatch) -> None:
    images, labels = load_mnist("bundled")
    x, y = data.val_set("mnist", 500, "bundled")  # undistorted: the digits themselves
    assert torch.equal(x, images[-500:]) and torch.equal(y, labels[-500:])
    a, ya = data.val_set("pair", 300, "bundled")
    b, yb = data.val_set("pair", 300, "bundled")
    assert a.shape == (300, 1, 42, 84) and ya.shape == (300, 2)
    assert torch.equal(a, b) and torch.equal(ya, yb)  # seeded: every run measures the same images
    assert not torch.equal(a, data.val_set("pair", 300, "bundled", seed=1)[0])
    seen = _spy_on_make_batch(monkeypatch)
    data.val_set("tc", 300, "bundled")
    assert seen and all(torch.equal(pool, images[-300:]) for _, pool in seen)  # clutter from held-out digits only
    with pytest.raises(ValueError, match=f"hold out between 1 and {len(images) - 1:,}"):
        data.val_set("r", 0, "bundled")


def test_without_a_holdout_the_batches_are_as_before() -> None:
    """No holdout: the batches the shipped cards' commands were trained on, drawn as before holdouts existed."""
    import hashlib

    x, y = next(next(data.train_batches("mnist", 16, "bundled", seed=5)))
    # digest of this batch drawn by the code before holdouts (torch 2.x's seeded randperm)
    assert hashlib.sha256(x.numpy().tobytes() + y.numpy().tobytes()).hexdigest()[:16] == "28a394766ec26076"
    images, labels = load_mnist("bundled")
    for name in ("tc", "pair"):  # digits by a seeded permutation; clutter and second digits from all of them
        x, y = next(next(data.train_batches(name, 16, "bundled", seed=5)))
        g = torch.Generator().manual_seed(5)
        idx = torch.randperm(len(images), generator=g)[:16]
        ex, ey = make_batch(name, images[idx], labels[idx], images, labels, g)
        assert torch.equal(x, ex) and torch.equal(y, ey)
        x0, _ = next(next(data.train_batches(name, 16, "bundled", seed=5, holdout=0)))
        assert torch.equal(x0, x)
