"""The building blocks of :mod:`stn.preprocess` against plain references.

The pre-processing was made cheaper (scipy's C filters and labelling, reductions done on the
reduced grid, only alpha resampled for a sketch); these tests pin that each shortcut gives what
the direct computation gives. The behaviour on whole files is in ``test_bad_inputs.py``.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage

from stn.preprocess import (
    WORK_RESAMPLE,
    WORK_SIDE,
    ImageError,
    _block_max,
    _box_mean,
    _closing,
    _fill_holes,
    _grow_blocks,
    _paper_window,
    _sketch_alpha,
    count_side_by_side,
    ink_map,
    open_image,
    prepare,
    stacked_lines,
    touching_digits,
)

SHAPES = [(7, 5), (12, 12), (33, 20), (96, 101)]


class TestBlockMax:
    @pytest.mark.parametrize("shape", SHAPES)
    @pytest.mark.parametrize("step", [2, 3, 4])
    def test_matches_reshape_max(self, shape, step):
        a = np.random.default_rng(0).random(shape).astype(np.float32)
        h, w = shape
        hb, wb = -(-h // step), -(-w // step)
        ref = np.zeros((hb * step, wb * step), np.float32)
        ref[:h, :w] = a
        ref = ref.reshape(hb, step, wb, step).max(axis=(1, 3))
        np.testing.assert_array_equal(_block_max(a, step), ref)

    def test_bool_keeps_a_single_pixel(self):
        m = np.zeros((10, 10), bool)
        m[9, 9] = True  # in the last, partial block
        out = _block_max(m, 4)
        assert out.shape == (3, 3) and out.dtype == bool and out.sum() == 1 and out[2, 2]


class TestBoxMean:
    @pytest.mark.parametrize("shape", SHAPES)
    @pytest.mark.parametrize(("k", "mode", "scipy_mode"), [(3, "constant", "constant"), (5, "edge", "nearest")])
    def test_matches_uniform_filter(self, shape, k, mode, scipy_mode):
        a = np.random.default_rng(1).random(shape).astype(np.float32)
        out = _box_mean(a, k, mode)
        assert out.shape == a.shape and out.dtype == np.float32
        np.testing.assert_allclose(out, ndimage.uniform_filter(a.astype(np.float64), k, mode=scipy_mode), atol=1e-6)


class TestClosing:
    @pytest.mark.parametrize("k", [3, 5, 9])
    def test_matches_sliding_windows(self, k):
        a = np.random.default_rng(2).random((23, 17)).astype(np.float32)
        r = k // 2

        def running(x: np.ndarray, op) -> np.ndarray:  # k×k window, replicate padding
            return op(sliding_window_view(np.pad(x, r, mode="edge"), (k, k)), axis=(2, 3))

        # on the picture padded by r, then cut back
        want = running(running(np.pad(a, r, mode="edge"), np.max), np.min)[r : r + a.shape[0], r : r + a.shape[1]]
        np.testing.assert_array_equal(_closing(a, k), want)

    @pytest.mark.parametrize(("row", "col"), [(0, 10), (2, 10), (2, 2), (37, 20)])
    def test_glare_near_the_edge_stays_a_speck(self, row, col):
        # A closing only fills dark details: a bright speck on flat paper comes back as it was,
        # not as a bright streak to the edge (which would read as ink beside it).
        a = np.full((40, 40), 0.35, np.float32)
        a[row, col] = 1.0
        np.testing.assert_array_equal(_closing(a, 9), a)

    def test_fills_strokes_thinner_than_k(self):
        a = np.ones((40, 40), np.float32)
        a[10:30, 19:21] = 0.2  # a 2-px dark stroke
        np.testing.assert_array_equal(_closing(a, 5), np.ones_like(a))


class TestGrowBlocks:
    @pytest.mark.parametrize("shape", [(9, 9), (30, 17), (97, 64)])
    @pytest.mark.parametrize("step", [1, 2, 3, 4])
    def test_matches_growing_the_full_size_mask(self, shape, step):
        h, w = shape
        blocks = np.random.default_rng(3).random((-(-h // step), -(-w // step))) > 0.85
        full = np.repeat(np.repeat(blocks, step, axis=0), step, axis=1)[:h, :w]
        ref = ndimage.maximum_filter(full.astype(np.uint8), 2 * step + 1, mode="constant") > 0
        np.testing.assert_array_equal(_grow_blocks(blocks, step, shape), ref)


def _sketch(side: int = 600, colour: tuple[int, int, int] = (20, 20, 20), mode: str = "RGBA") -> Image.Image:
    """A browser-sketchpad image: one stroke colour everywhere, the strokes only in alpha."""
    alpha = Image.new("L", (side, side), 0)
    ImageDraw.Draw(alpha).line([(side // 3, side // 4), (2 * side // 3, side // 4), (side // 2, 3 * side // 4)], fill=255, width=18)
    img = Image.new("RGBA", (side, side), (*colour, 0))
    img.putalpha(alpha)
    return img if mode == "RGBA" else img.convert(mode)


def _general_alpha(img: Image.Image) -> np.ndarray:
    """The alpha the general path gets: grey and alpha resampled together (premultiplied)."""
    la = img.convert("LA")
    la.thumbnail((WORK_SIDE, WORK_SIDE), WORK_RESAMPLE)
    return np.asarray(la.getchannel("A"), np.float32) / 255.0


class TestSketchAlpha:
    @pytest.mark.parametrize("mode", ["RGBA", "LA"])
    def test_alpha_only_resample_matches_the_general_path(self, mode):
        img = _sketch(mode=mode)
        assert _sketch_alpha(img) is not None  # the shortcut is taken
        out = ink_map(img)
        assert max(out.shape) == WORK_SIDE
        np.testing.assert_array_equal(out, _general_alpha(img))

    def test_coloured_picture_on_transparent_ground_takes_the_general_path(self):
        img = _sketch()
        rgba = np.asarray(img).copy()
        rgba[: img.height // 2, ..., :3] = (240, 240, 240)  # two colours among the opaque pixels
        assert _sketch_alpha(Image.fromarray(rgba, "RGBA")) is None

    def test_opaque_image_takes_the_general_path(self):
        assert _sketch_alpha(Image.new("RGBA", (500, 400), (255, 255, 255, 255))) is None

    def test_a_transparent_canvas_has_no_digit(self):
        with pytest.raises(ImageError, match="no digit found"):
            prepare(Image.new("RGBA", (600, 600), (0, 0, 0, 0)), (56, 56), 32.0)

    def test_sketch_reads_as_its_strokes(self):
        out = prepare(_sketch(), (56, 56), 32.0).tensor
        assert out.shape == (1, 1, 56, 56) and float(out.max()) == pytest.approx(1.0)
        assert 0.02 < float((out > 0.5).float().mean()) < 0.3  # a stroke figure, not a filled square


def _page(dark_ink: bool = True, digit: bool = True) -> Image.Image:
    """A 500×400 photo of paper with uneven light, with a 2 drawn on it."""
    gy, gx = np.mgrid[0:400, 0:500].astype(np.float32)
    paper = 235 * (1 - 0.2 * gx / 500 - 0.1 * gy / 400)
    img = Image.fromarray(paper.astype(np.uint8)).convert("RGB")
    if digit:
        ImageDraw.Draw(img).line([(200, 120), (290, 120), (290, 200), (200, 280), (300, 280)], fill=(30, 30, 60), width=12)
    return img if dark_ink else Image.fromarray(255 - np.asarray(img))


class TestPaperEstimate:
    @pytest.mark.parametrize("dark_ink", [True, False])
    def test_reduced_closing_is_close_to_the_full_size_one(self, dark_ink):
        img = _page(dark_ink)
        grey = img.convert("L")
        grey.thumbnail((WORK_SIDE, WORK_SIDE), WORK_RESAMPLE)
        light = np.asarray(grey, np.float32) / 255.0
        light = light if dark_ink else 1 - light
        k = _paper_window(*light.shape)
        assert k >= 31, "this page must take the reduced path"
        closed = _closing(light, k)
        paper = np.minimum(_box_mean(closed, 5, "edge"), closed)
        ref = np.maximum(paper - light, 0) / np.maximum(paper, 0.25)
        out = ink_map(img)
        assert np.abs(out - ref).max() < 0.05
        assert out.max() > 0.5  # the stroke is there

    def test_strokes_wider_than_the_window_are_ink(self):
        """A marker's "1" cut out to its box: its stem (30 px) is wider than the paper window (a
        quarter of 100 px); its middle would read as paper. Then the window takes the picture."""
        a = np.full((100, 60), 0.93, np.float32)
        a[:, 20:50] = 0.08
        a[0:22, 2:20] = 0.08  # the flag
        ink = ink_map(Image.fromarray((a * 255).astype(np.uint8)))
        assert ink[50, 35] > 0.8 and ink[10, 10] > 0.8 and ink[80, 5] < 0.05

    def test_uneven_light_alone_is_no_digit(self):
        with pytest.raises(ImageError, match="no digit found"):
            prepare(_page(digit=False), (56, 56), 32.0)


class TestPolarity:
    """Which of ink and paper is the darker is read from the picture's own range, not from mid-grey."""

    @staticmethod
    def _stroke(paper: float, ink: float) -> Image.Image:
        a = np.full((120, 120), paper, np.float32)
        a[30:90, 56:64] = ink  # an 8-px stroke
        return Image.fromarray((a * 255 + 0.5).astype(np.uint8))

    @pytest.mark.parametrize(
        ("paper", "ink"),
        [(0.93, 0.08), (0.35, 0.05), (0.25, 0.02), (0.6, 0.3),  # dark ink: white paper, photos in a dim room
         (0.05, 0.95), (0.2, 0.8), (0.55, 0.9)],  # light ink: a screen, chalk on a board, a light pen on grey
    )
    def test_the_stroke_is_the_ink(self, paper, ink):
        out = ink_map(self._stroke(paper, ink))
        assert out[40:80, 58:62].min() > 0.5 * abs(paper - ink)
        assert out[:, :40].max() < 0.02 and out[:, 80:].max() < 0.02

    @pytest.mark.parametrize("index", [20, 38])
    def test_strong_vignetting(self, index):
        # Two photos of the upload-style set whose corners fall to about half the centre's light: the
        # border is darker than the lit middle, which is no page on a desk either, yet the paper is the
        # paper (a near tie between the two readings goes to dark ink, the common case).
        from stn.uploads import photo_images

        img, _ = list(photo_images(index + 1, seed=1, root="bundled", conditions=("vignetting",)))[index]
        out = ink_map(img)  # at the working size
        grey = np.asarray(img.convert("L").resize(out.shape[::-1]), np.float32)
        strokes, paper = grey <= np.quantile(grey, 0.01), grey >= np.quantile(grey, 0.5)
        assert out[strokes].mean() > 0.4 and out[paper].mean() < 0.05

    def test_a_page_on_a_dark_desk(self):
        # The border is the desk (dark), yet the ink is the dark stroke on the page, and neither the
        # desk nor the page's edge is ink.
        a = np.full((200, 250), 0.15, np.float32)  # within WORK_SIDE: no reduction
        a[50:150, 80:180] = 0.92
        a[70:130, 126:134] = 0.08
        out = ink_map(Image.fromarray((a * 255).astype(np.uint8)))
        assert out[80:120, 128:132].min() > 0.7
        out[70:130, 124:136] = 0
        assert out.max() < 0.05

    @pytest.mark.parametrize("shape", ["bar", "ring"])
    def test_light_strokes_on_a_dark_ground_are_no_page(self, shape):
        # A bold light "1" fills its box but holds no dark marks; a light "0" holds one but does not fill it.
        a = np.full((200, 250), 0.15, np.float32)  # within WORK_SIDE: no reduction
        if shape == "bar":
            a[40:160, 110:150] = 0.9
        else:
            a[40:160, 90:170] = 0.9
            a[60:140, 110:150] = 0.15
        out = ink_map(Image.fromarray((a * 255).astype(np.uint8)))
        assert out[100, 130 if shape == "bar" else 100] > 0.5  # the light stroke is the ink

    def test_a_12_bit_scan_is_read_on_its_own_range(self):
        a = np.full((120, 120), 3800, np.uint16)
        a[30:90, 56:64] = 300  # 12-bit values in a 16-bit file
        out = ink_map(Image.fromarray(a))
        assert out[40:80, 58:62].min() > 0.8


class TestOtherMarks:
    """A photo of a page holds more than the digit; the crop is around the digit only."""

    @staticmethod
    def _page(shape=(200, 250)) -> np.ndarray:
        a = np.full(shape, 0.93, np.float32)
        a[60:140, 105:145] = 0.93
        a[60:140, 105:113] = a[60:140, 137:145] = a[60:68, 105:145] = a[132:140, 105:145] = 0.08  # a "0", 80×40
        return a

    def _box(self, a: np.ndarray, input_size=(56, 56), digit_size=32.0) -> tuple[float, ...]:
        return prepare(Image.fromarray((a * 255).astype(np.uint8)), input_size, digit_size).box

    @pytest.mark.parametrize("mark", ["margin", "pen", "pen half out of the frame", "thick pen from the edge", "print", "scribble",
                                      "circled", "boxed", "underlined"])
    def test_the_crop_leaves_the_mark_out(self, mark):
        a = self._page()
        if mark == "margin":
            a[:, 20:23] = 0.5  # top to bottom
        elif mark == "pen":
            a[175:187, 10:230] = 0.15
        elif mark == "pen half out of the frame":  # no longer than the digit, close to it, from the edge
            a[150:160, 0:90] = 0.15
        elif mark == "thick pen from the edge":  # 6.5 times as long as wide, mostly beside the digit, 12 px below it
            a[152:172, 120:250] = 0.15
        elif mark == "underlined":  # as a 6 or a 9 is, to show which way is up
            a[150:155, 95:160] = 0.1
        elif mark in ("circled", "boxed"):  # a frame around the digit, clear of it
            img = Image.fromarray((a * 255).astype(np.uint8))
            draw = ImageDraw.Draw(img)
            if mark == "circled":
                draw.ellipse([60, 30, 190, 170], outline=20, width=5)
            else:
                draw.rectangle([80, 40, 170, 160], outline=20, width=4)
            a = np.asarray(img, np.float32) / 255
        elif mark == "print":
            for x in range(40, 230, 9):
                a[15:22, x : x + 5] = 0.15
        else:  # a scribble more than the digit's size (80 px) away
            for t in range(30):
                a[10 + t, 228 + t // 2 : 234 - t // 3] = 0.1
        left, top, right, bottom = self._box(a)
        assert 100 <= left <= 107 and 55 <= top <= 62 and 143 <= right <= 150 and 138 <= bottom <= 145, (mark, left, top, right, bottom)

    @pytest.mark.parametrize("frame", ["circle", "box"])
    def test_a_frame_that_touches_the_digit_is_left_out(self, frame):
        """Frame and digit are one blob: what lies well inside the frame is the digit."""
        img = Image.new("L", (250, 200), 235)
        draw = ImageDraw.Draw(img)
        draw.line([(105, 60), (145, 60), (117, 140)], fill=20, width=8)  # a "7", 80 px tall
        if frame == "circle":
            draw.ellipse([80, 52, 170, 150], outline=20, width=5)  # through the 7's top
        else:
            draw.rectangle([85, 57, 165, 150], outline=20, width=4)  # its top edge along the 7's bar
        left, top, right, bottom = self._box(np.asarray(img, np.float32) / 255)
        assert left >= 95 and right <= 155 and top >= 55 and bottom <= 148, (frame, left, top, right, bottom)
        assert bottom - top >= 60  # most of the 7 is kept

    @pytest.mark.parametrize("digit", ["0", "8", "hollow 8"])
    def test_loops_and_hollow_digits_stay_whole(self, digit):
        """A digit's own loops hold nothing well inside them; a hollow (outline) font's inner outline, where it
        touches the outer one, is a loop itself. (Apart from it, it is a separate mark: ``_frames``'s rule.)"""
        img = Image.new("L", (250, 200), 235)
        draw = ImageDraw.Draw(img)
        if digit == "0":
            draw.ellipse([95, 50, 155, 150], outline=20, width=5)
        elif digit == "8":
            draw.ellipse([100, 50, 150, 100], outline=20, width=5)
            draw.ellipse([95, 96, 155, 150], outline=20, width=5)
        else:  # a sketchy outline font: the upper hole's outline touches the outer one
            draw.rounded_rectangle([95, 50, 155, 150], radius=20, outline=20, width=2)
            draw.ellipse([96, 64, 137, 94], outline=20, width=2)
            draw.ellipse([111, 108, 139, 136], outline=20, width=2)
            draw.line([(125, 94), (125, 108)], fill=20, width=2)
        left, top, right, bottom = self._box(np.asarray(img, np.float32) / 255)
        assert left <= 96 and top <= 51 and right >= 154 and bottom >= 149, (digit, left, top, right, bottom)

    def test_a_second_digit_beside_the_first_stays_on_a_wide_canvas(self):
        a = np.full((128, 256), 0.93, np.float32)
        a[34:94, 70:76] = 0.08  # a "1", 60 px tall
        a[34:40, 136:176] = a[34:94, 170:176] = 0.08  # a "7", 60 px to its right: farther than the 1's size
        left, _, right, _ = self._box(a, (42, 84), 62.0)  # the two-digit model's canvas
        assert left <= 71 and right >= 175

    def test_a_thin_zero_with_a_dot_inside_is_one_digit(self):
        """Open and holding a mark, but the mark is small: a dotted zero, not a circled dot."""
        a = np.full((200, 250), 0.93, np.float32)
        a[60:140, 105:145] = 0.08
        a[63:137, 108:142] = 0.93  # a "0" drawn 3 px thin: ink on 22% of its box
        a[96:104, 121:129] = 0.08
        left, top, right, bottom = self._box(a)
        assert left <= 106 and top <= 61 and right >= 144 and bottom >= 139

    def test_a_tightly_cropped_digits_loose_stem_stays(self):
        """A "4" whose stem came apart below its bar, running into the picture's bottom edge: thick
        and beyond the rest's span, but shorter than the rest: a piece of the digit, kept."""
        a = np.full((120, 90), 0.93, np.float32)
        a[10:60, 20:28] = a[55:63, 20:80] = a[10:60, 60:70] = 0.08  # the upper part
        a[68:120, 60:70] = 0.08  # the stem's lower part
        left, top, right, bottom = self._box(a)
        assert bottom >= 119 and top <= 11 and left <= 21 and right >= 79

    def test_a_thick_pen_apart_from_a_longer_one_is_left_out(self):
        """A thick pen from the edge, shorter than the "1" beside it but apart from it by half the 1's height
        (a photo of 3,000 was refused as two characters side by side): not a piece of the digit."""
        a = np.full((240, 320), 0.95, np.float32)
        img = Image.fromarray((a * 255).astype(np.uint8))
        ImageDraw.Draw(img).line([(145, 80), (130, 155)], fill=20, width=7)  # a slanted "1", 75 px tall
        a = np.asarray(img, np.float32) / 255
        a[212:223, 0:68] = 0.15  # the pen: 68 × 11 px from the left edge, 57 px below the 1
        left, top, right, bottom = self._box(a)  # in the working picture's pixels: 256/320 of these
        assert left >= 0.8 * 120 and bottom <= 0.8 * 165, (left, top, right, bottom)  # the 1 alone, not the pen (0-68)

    def test_a_tall_one_with_a_speck_of_dust_is_the_one(self):
        a = np.full((240, 200), 0.93, np.float32)
        a[10:230, 96:106] = 0.08  # a "1" across the picture: long and thin, like a margin
        a[40:48, 20:28] = 0.1
        left, top, right, bottom = self._box(a)
        assert 94 <= left <= 97 and 104 <= right <= 108 and top <= 12 and bottom >= 228


def _write(text: list[str], shape=(160, 360), stroke: int = 7, pitch: int = 70) -> Image.Image:
    """Digits drawn as pen strokes on white paper: ``text`` is one key of ``_STROKES`` per digit, ``pitch`` px apart."""
    img = Image.new("L", (shape[1], shape[0]), 245)
    draw = ImageDraw.Draw(img)
    for i, key in enumerate(text):
        for line in _STROKES[key]:
            draw.line([(40 + pitch * i + x, 40 + y) for x, y in line], fill=20, width=stroke, joint="curve")
    return img


# Digits as polylines in an 40×80 box (x, y); "4 apart": a "4" whose stem was drawn apart from its bar.
_STROKES = {
    "1": [[(20, 0), (20, 80)]],
    "7": [[(0, 0), (40, 0), (12, 80)]],
    "4": [[(28, 0), (0, 55), (40, 55)], [(30, 20), (30, 80)]],
    "4 apart": [[(16, 0), (0, 55), (16, 55)], [(30, 10), (30, 80)]],  # 7 px of paper between them
    "0": [[(20, 0), (40, 20), (40, 60), (20, 80), (0, 60), (0, 20), (20, 0)]],
    "5": [[(4, 10), (0, 40), (30, 40), (40, 60), (30, 80), (0, 76)], [(8, 0), (40, 2)]],
    ".": [[(0, 76), (4, 80)]],
    "-": [[(0, 40), (30, 40)]],
}


class TestSeveralDigits:
    """A number or a word is not read as one digit: the answer would be a guess at a mixture."""

    @pytest.mark.parametrize("text", [["1", "7"], ["4", "0"], ["0", "4", "7"], ["5", "1", "0", "7"]])
    # 23 px of paper between the digits, or 7 (a number written close); 130 and 250 px: wider apart than the digits'
    # size (80 px tall), the far ones were left out as a scribble and the heaviest digit read alone
    @pytest.mark.parametrize("pitch", [70, 54, 170, 290])
    def test_digits_side_by_side_are_named_not_guessed(self, text, pitch):
        with pytest.raises(ImageError, match=r"note\.png: this picture holds several characters side by side \(a number or a "
                                             r"word\?\); the model reads one digit at a time\. Crop it to a single digit, or draw one\."):
            prepare(_write(text, shape=(160, 60 + max(70, pitch) * len(text)), pitch=pitch), (56, 56), 32.0, name="note.png")

    def test_one_digit_for_a_pair_model_is_named_not_read_as_two(self):
        """A pair model (two digits on a 42×84 canvas) read a lone digit as a number, sure of it ("11", 95% for a 7):
        one mark narrower than two digits that touch is refused; numbers with a gap are read as before."""
        from stn.uploads import number_images, sketch_images

        lone = 0
        for img, _ in sketch_images(60, seed=21, root="bundled"):
            try:
                prepare(img, (42, 84), 62.0, name="seven.png")
            except ImageError as exc:
                lone += "seems to hold one digit" in str(exc) and "reads 2 digits at a time" in str(exc)
        assert lone >= 48, lone  # 840 of 900 upload-style digits (bench/README.md, twenty-second pass)
        for img, _ in number_images(60, seed=21, root="bundled", digits=(2,)):
            prepare(img, (42, 84), 62.0)  # read
        with pytest.raises(ImageError, match=r"^seven\.png: this picture seems to hold one digit"):
            prepare(_write(["7"]), (42, 84), 62.0, name="seven.png")
        prepare(_write(["7"]), (56, 56), 32.0)  # one digit for a one-digit model: read

    def test_a_refusal_names_the_file_a_pil_image_came_from(self, tmp_path):
        path = tmp_path / "blank.png"
        Image.new("L", (64, 64), 240).save(path)
        with pytest.raises(ImageError, match=r"^blank\.png: no digit found"):
            prepare(Image.open(path), (56, 56), 32.0)
        with pytest.raises(ImageError, match=r"^the image: no digit found"):
            prepare(Image.new("L", (64, 64), 240), (56, 56), 32.0)

    @pytest.mark.parametrize("text", [["1"], ["7"], ["4"], ["4 apart"], ["0"], ["5"], ["7", "."], ["0", "-"]])
    def test_one_digit_in_pieces_or_with_a_stop_is_read(self, text):
        """A "5" whose bar was drawn apart, a "4" whose stem was, a full stop or a dash beside a digit."""
        prep = prepare(_write(text), (56, 56), 32.0)
        _, top, _, bottom = prep.box
        assert bottom - top > 0.9 * 80 * prep.source_size[1] / 160  # the whole digit (the box is in working-size px)

    @pytest.mark.parametrize("mark", [".", "-", "4 below"])
    def test_a_far_mark_not_of_a_digit_s_size_or_level_is_left_out(self, mark):
        """Far along the row from the digit (250 px of paper): a full stop or a dash level with it, or a digit-sized
        mark below its row (a note), is not a number's digit: the digit is read, cropped to itself."""
        if mark == "4 below":
            img = _write(["7"], shape=(260, 380))
            draw = ImageDraw.Draw(img)
            for line in _STROKES["4"]:  # rows 150-230: 30 px of paper below the 7's
                draw.line([(330 + x, 150 + y) for x, y in line], fill=20, width=7)
        else:
            img = _write(["7", mark], shape=(160, 380), pitch=290)
        prep = prepare(img, (56, 56), 32.0)
        left, _, right, _ = prep.box
        assert right - left < 0.6 * 80 * prep.source_size[0] / img.width, prep.box  # the 7 alone

    def test_a_faint_ruled_line_beside_the_digit_is_not_a_digit(self):
        """A piece of a notebook's margin (the photo's noise broke it up): as tall as the digit, but faint and thin."""
        a = np.asarray(_write(["7"], shape=(240, 200)), np.float32).copy()
        a[30:140, 120:122] = 150
        prepare(Image.fromarray(a.astype(np.uint8)), (56, 56), 32.0)

    def test_the_pair_model_reads_two_and_names_three(self):
        prepare(_write(["1", "7"]), (42, 84), 62.0)
        with pytest.raises(ImageError, match="holds more than 2 characters side by side; the model reads 2 digits at a time. Crop it to 2 digits"):
            prepare(_write(["1", "7", "4"]), (42, 84), 62.0)

    def test_touching_digits_are_one_mark(self):
        """Not told apart (a limit): digits written into each other are read as one mark."""
        img = Image.new("L", (200, 160), 245)
        draw = ImageDraw.Draw(img)
        draw.line([(60, 40), (60, 120)], fill=20, width=7)
        draw.line([(60, 40), (100, 40), (72, 120)], fill=20, width=7)  # a "7" sharing the "1"'s top
        prepare(img, (56, 56), 32.0)


def _rings(centres: list[int], shape=(160, 300), rx: int = 26, ry: int = 40, stroke: int = 7, joined: bool = False) -> Image.Image:
    """Pen-drawn "0"s on white paper, centred at x = ``centres`` (overlapping where closer than ``2 * rx``);
    ``joined``: the pen ran on from each into the next (a thin stroke across the gap at mid-height)."""
    img = Image.new("L", (shape[1], shape[0]), 245)
    draw = ImageDraw.Draw(img)
    for cx in centres:
        draw.ellipse([cx - rx, 80 - ry, cx + rx, 80 + ry], outline=20, width=stroke)
    if joined:
        for a, b in zip(centres, centres[1:]):
            draw.line([(a + rx - 2, 80), (b - rx + 2, 80)], fill=20, width=stroke - 2)
    return img


class TestTouchingDigits:
    """Digits written into each other are one mark; where it is wide with a neck, the reading carries a note."""

    def _mask(self, img: Image.Image) -> np.ndarray:
        return np.asarray(img, np.float32) < 128

    def test_two_rings_touching_at_a_point(self):
        assert touching_digits(self._mask(_rings([100, 164], joined=True)))
        assert touching_digits(self._mask(_rings([60, 124, 188], joined=True)))  # three digits

    def test_one_ring_wide_or_tall_is_one_digit(self):
        assert not touching_digits(self._mask(_rings([150], rx=60)))  # wider than tall: two strokes across the middle
        assert not touching_digits(self._mask(_rings([150])))  # a plain "0"

    def test_overlapping_rings_have_no_neck(self):
        assert not touching_digits(self._mask(_rings([100, 120])))  # each column crosses three or four strokes

    def test_a_bar_is_not_two_digits(self):
        mask = np.zeros((40, 200), bool)
        mask[18:24, 10:190] = True  # wide and thin everywhere, but no tall part on either side
        assert not touching_digits(mask) and not touching_digits(np.zeros((5, 5), bool))

    def test_neck_and_wide(self):
        mask = self._mask(_rings([100, 164], joined=True))
        assert not touching_digits(mask, neck=0.5) and not touching_digits(mask, wide=1.8)

    def test_prepare_reads_them_with_the_flag(self):
        assert prepare(_rings([100, 164], joined=True), (56, 56), 32.0).touching
        assert not prepare(_rings([150]), (56, 56), 32.0).touching
        assert not prepare(_write(["4"]), (56, 56), 32.0).touching

    def test_the_pair_model_reads_two_digits_that_touch_without_a_note(self):
        assert not prepare(_rings([100, 164], joined=True), (42, 84), 62.0).touching


_PROSE = ["seven", "wizards", "box", "and", "judge", "my", "vow", "while", "the", "quick", "brown", "fox", "jumps", "over", "a", "lazy", "dog"]


def _print(lines: int, size: int, shape=(480, 720)) -> Image.Image:
    """Lines of print on paper, each starting at another word (their gaps do not line up)."""
    img = Image.new("L", (shape[1], shape[0]), 245)
    draw, font = ImageDraw.Draw(img), ImageFont.load_default(size=size)
    for i in range(lines):
        draw.text((20, 10 + int(1.7 * size) * i), " ".join((_PROSE[3 * i % len(_PROSE) :] + _PROSE)[:10]), fill=20, font=font)
    return img


class TestWriting:
    """Print or writing is not read as one digit: neither a line of it nor a page."""

    @pytest.mark.parametrize("size", [12, 18, 30])
    def test_a_line_of_print_is_several_characters(self, size):
        """Letters and words set close join into one mark at the components' block size: they are counted at full size."""
        with pytest.raises(ImageError, match=r"^line\.png: this picture holds several characters side by side"):
            prepare(_print(1, size, shape=(120, 720)), (56, 56), 32.0, name="line.png")

    @pytest.mark.parametrize(("lines", "size"), [(12, 22), (6, 30), (2, 40)])
    def test_a_page_of_print_is_lines_of_writing(self, lines, size):
        with pytest.raises(ImageError, match=r"^page\.png: this picture holds (lines of writing or print, not one digit|several "
                                             r"characters side by side)"):
            prepare(_print(lines, size), (56, 56), 32.0, name="page.png")

    def test_lines_are_named_as_such(self):
        """Print cut to a block of words over each other (what the digit's blob would be): lines of writing."""
        img = Image.new("L", (200, 160), 245)
        draw, font = ImageDraw.Draw(img), ImageFont.load_default(size=20)
        for i, word in enumerate(["seven", "wizards", "boxed"]):
            draw.text((20, 20 + 40 * i), word, fill=20, font=font)
        with pytest.raises(ImageError, match=r"^words\.png: this picture holds lines of writing or print, not one digit\. "
                                             r"Crop it to a single digit, or draw one\.$"):
            prepare(img, (56, 56), 32.0, name="words.png")

    @pytest.mark.parametrize("text", [["5"], ["7"], ["4 apart"], ["0", "-"]])
    def test_a_digit_with_a_bar_is_not_writing(self, text):
        """A "5" whose bar was drawn apart, a "7", a digit and a dash: one line at most, beside a tall body."""
        prepare(_write(text), (56, 56), 32.0)

    def test_a_digit_between_two_ruled_lines_is_read(self):
        """Two lines of a ruled page close above and below the digit: two lines, but the digit holds most of the ink."""
        a = np.asarray(_write(["7"], shape=(200, 160)), np.float32).copy()
        a[30:32, 20:110] = a[126:128, 20:110] = 20
        prepare(Image.fromarray(a.astype(np.uint8)), (56, 56), 32.0)


class TestStackedLines:
    def test_lines_over_each_other(self):
        ink = np.zeros((30, 40), np.float32)
        ink[2:6, 2:38] = ink[10:14, 4:30] = ink[20:24, 2:20] = 1
        assert stacked_lines(ink) == (3, 1.0)

    def test_a_tall_body_is_not_a_line(self):
        ink = np.zeros((40, 40), np.float32)
        ink[2:5, 10:30] = 1  # a bar: 20 wide, 3 tall
        ink[8:38, 10:30] = 0.5  # a body under it, apart by empty rows
        lines, held = stacked_lines(ink)
        assert lines == 1 and held == pytest.approx(60 / (60 + 300))

    def test_ratio(self):
        ink = np.zeros((10, 30), np.float32)
        ink[2:6, 0:12] = 1  # three times as wide as tall
        assert stacked_lines(ink) == (1, 1.0) and stacked_lines(ink, ratio=3.5) == (0, 0.0)
        assert stacked_lines(np.zeros((5, 5), np.float32)) == (0, 0.0)


def test_fill_holes_is_scipys():
    rng = np.random.default_rng(0)
    for _ in range(100):
        mask = rng.random((int(rng.integers(1, 30)), int(rng.integers(1, 30)))) < rng.uniform(0.2, 0.7)
        assert (_fill_holes(mask) == ndimage.binary_fill_holes(mask)).all()


class TestCountSideBySide:
    def test_counts_groups_apart_by_the_gap(self):
        ink = np.zeros((20, 40), np.float32)
        ink[2:18, 2:6] = ink[2:18, 12:16] = ink[2:18, 30:34] = 1
        assert count_side_by_side(ink) == 3
        assert count_side_by_side(ink, gap=0.5) == 2  # 6 columns apart < half of 16 rows: the first two join

    def test_close_marks_as_wide_as_two_digits_are_two(self):
        ink = np.zeros((20, 60), np.float32)
        ink[2:18, 2:14] = ink[2:18, 15:27] = 1  # one column apart, 25 wide together: two digits written close
        assert count_side_by_side(ink) == 2
        ink[:] = 0
        ink[2:18, 2:10] = ink[2:18, 11:14] = 1  # a "4" and its stem drawn apart: 12 wide together
        assert count_side_by_side(ink) == 1

    def test_short_or_light_groups_do_not_count(self):
        ink = np.zeros((20, 40), np.float32)
        ink[2:18, 2:10] = 1
        ink[14:18, 20:24] = 1  # a stop: a quarter of the height
        ink[2:18, 30:31] = 0.1  # a faint line: 1/80 of the ink
        assert count_side_by_side(ink) == 1

    def test_empty_and_single(self):
        assert count_side_by_side(np.zeros((5, 5), np.float32)) == 0
        ink = np.zeros((5, 5), np.float32)
        ink[1:4, 2] = 1
        assert count_side_by_side(ink) == 1


class TestOpenImage:
    def _rotated_jpeg(self) -> bytes:
        img = Image.new("L", (60, 40), 255)
        exif = Image.Exif()
        exif[0x0112] = 6  # stored turned: to be shown rotated by 90°
        buf = io.BytesIO()
        img.save(buf, "JPEG", exif=exif.tobytes())
        return buf.getvalue()

    def test_exif_orientation_applied_to_a_decoded_file(self):
        assert open_image(self._rotated_jpeg()).size == (40, 60)

    def test_cielab_keeps_its_lightness(self):
        lab = Image.new("RGB", (40, 40), (200, 200, 200)).convert("LAB")
        img = open_image(lab)
        assert img.mode == "L" and np.asarray(img).mean() > 150

    @pytest.mark.parametrize(
        ("data", "phrase"),
        [(b"\x00\x00\x00\x18ftypheic" + bytes(64), "HEIC/HEIF"), (b"\x00\x00\x00\x18ftypavif" + bytes(64), "AVIF|damaged"),
         (b"\x00\x00\x00\x18ftypmp42" + bytes(64), "video"), (b"%PDF-1.4\n" + bytes(64), "PDF document"),
         (b"PK\x03\x04" + bytes(64), "not an image format")],
        ids=["heic", "avif", "mp4", "pdf", "zip"],
    )
    def test_what_a_file_is_when_it_is_not_a_picture(self, data, phrase):
        with pytest.raises(ImageError, match=f"^upload.bin: .*({phrase})"):
            open_image(data, "upload.bin")

    def test_the_callers_image_is_not_turned(self):
        mine = Image.open(io.BytesIO(self._rotated_jpeg()))
        mine.load()
        assert open_image(mine).size == (40, 60)
        assert mine.size == (60, 40) and mine.getexif().get(0x0112) == 6


class TestWhatAPictureMayBe:
    """``stn.preprocess`` takes a picture in the forms a library user has one: a path, bytes, an open
    file, a PIL image, a numpy array or a torch tensor; each gives the same model input as the PNG
    file, and anything else gets a sentence (an ``ImageError``), not numpy's or torch's own error."""

    @staticmethod
    def _digit() -> Image.Image:
        img = Image.new("L", (90, 90), 0)
        ImageDraw.Draw(img).line([(30, 20), (62, 20), (42, 72)], fill=255, width=8)  # a 7
        return img

    def test_every_form_gives_the_files_input(self, tmp_path):
        import torch

        img = self._digit()
        path = tmp_path / "seven.png"
        img.save(path)
        want = prepare(path, (56, 56), 38.0).tensor
        grey = np.array(img)
        with open(path, "rb") as opened:
            forms = {
                "str": str(path), "bytes": path.read_bytes(), "bytearray": bytearray(path.read_bytes()),
                "memoryview": memoryview(path.read_bytes()), "open file": opened, "BytesIO": io.BytesIO(path.read_bytes()),
                "uint8 (H, W)": grey, "float (H, W)": grey / 255.0, "uint8 (H, W, 3)": np.repeat(grey[..., None], 3, -1),
                "float (H, W, 4)": np.concatenate([np.repeat(grey[..., None], 3, -1) / 255.0, np.ones((90, 90, 1))], -1),
                "tensor (1, 1, H, W)": torch.from_numpy(grey).float()[None, None] / 255, "tensor (3, H, W) uint8":
                torch.from_numpy(np.repeat(grey[None], 3, 0)), "int32 (H, W)": grey.astype(np.int32) * 100,
            }
            for name, form in forms.items():
                got = prepare(form, (56, 56), 38.0).tensor
                torch.testing.assert_close(got, want, atol=2e-3, rtol=0, msg=lambda m, name=name: f"{name}: {m}")

    @pytest.mark.parametrize(("source", "phrase"), [
        (None, "expected a picture .* got NoneType"), (3.5, "got float"), ("", "no file name given"),
        (np.zeros((4, 5, 6, 7)), r"shape \(4, 5, 6, 7\) is not a picture"), (np.zeros((30, 30), complex), "complex128"),
        (np.zeros((30, 30, 2)), "is not a picture"),
    ], ids=["none", "float", "empty-name", "4-d", "complex", "2-channels"])
    def test_what_is_not_a_picture_is_named(self, source, phrase):
        with pytest.raises(ImageError, match=phrase):
            prepare(source, (56, 56), 38.0)

    def test_a_huge_array_is_refused_by_its_shape(self):
        """As a file of that size is: before a pixel is copied (a 7000×7000 float array took 5.5 s and 4 GB)."""
        import torch

        for huge in (np.broadcast_to(np.float32(0.5), (7000, 7000, 3)), torch.zeros(1, 3, 7000, 7000).expand(1, 3, 7000, 7000)):
            with pytest.raises(ImageError, match="7000×7000 pixels is too large"):
                prepare(huge, (56, 56), 38.0)

    def test_a_folder_and_a_text_file(self, tmp_path):
        with pytest.raises(ImageError, match="is a folder, not a picture file"):
            prepare(tmp_path, (56, 56), 38.0)
        (tmp_path / "notes.txt").write_text("seven")
        with open(tmp_path / "notes.txt") as text, pytest.raises(ImageError, match="notes.txt: .*binary mode"):
            prepare(text, (56, 56), 38.0)

    def test_dead_pixels_in_a_float_picture(self):
        """A float picture with a NaN or an infinite pixel reads as without it (it was "blank")."""
        f = np.asarray(self._digit(), dtype=np.float32) / 255
        want = prepare(Image.fromarray(f, "F"), (56, 56), 38.0).tensor
        f[5, 5], f[80, 3] = np.nan, np.inf
        np.testing.assert_allclose(prepare(Image.fromarray(f, "F"), (56, 56), 38.0).tensor.numpy(), want.numpy(), atol=1e-5)
        with pytest.raises(ImageError, match="no digit found"):
            prepare(Image.fromarray(np.full((40, 40), np.nan, np.float32), "F"), (56, 56), 38.0)

    def test_preprocess_takes_a_models_name(self):
        import stn
        from stn.zoo import list_models

        if "wild-affine" not in list_models():
            pytest.skip("the zoo has no wild-affine")
        assert stn.preprocess(self._digit(), "wild-affine").shape == (1, 1, 56, 56)
        with pytest.raises(TypeError, match="model is a zoo model's name or an STClassifier"):
            stn.preprocess(self._digit(), 56)


class TestJpegDraft:
    """A large JPEG (a phone photo) is decoded at a reduced scale, and reads as the full decode does."""

    @staticmethod
    def _photo(size: tuple[int, int]) -> bytes:
        w, h = size
        img = Image.new("RGB", size, (232, 228, 218))
        d = ImageDraw.Draw(img)
        s = min(w, h) / 3000
        d.line([(w / 2 - 300 * s, h / 2 - 700 * s), (w / 2 + 300 * s, h / 2 - 700 * s), (w / 2 - 100 * s, h / 2 + 700 * s)],
               fill=(25, 25, 45), width=max(2, int(60 * s)))
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=90)
        return buf.getvalue()

    def test_large_jpeg_decodes_reduced(self):
        img = open_image(self._photo((4000, 3000)))
        assert WORK_SIDE <= max(img.size) < 2 * WORK_SIDE
        assert img.size == (500, 375)  # 1/8: the largest DCT reduction that keeps 256 px

    def test_large_mpo_decodes_reduced(self):
        """Some phones and cameras write MPO (a JPEG with a second view): drafted as a JPEG."""
        views = [Image.open(io.BytesIO(self._photo((4000, 3000)))) for _ in range(2)]
        buf = io.BytesIO()
        views[0].save(buf, "MPO", save_all=True, append_images=views[1:])
        assert Image.open(io.BytesIO(buf.getvalue())).format == "MPO"
        assert open_image(buf.getvalue()).size == (500, 375)

    def test_small_jpeg_decodes_whole(self):
        assert open_image(self._photo((480, 360))).size == (480, 360)

    def test_same_model_input_as_the_full_decode(self):
        data = self._photo((3000, 4000))
        full = Image.open(io.BytesIO(data))
        full.load()  # decoded whole: no draft
        a = prepare(full, (56, 56), 32.0).tensor
        b = prepare(data, (56, 56), 32.0).tensor
        assert float((a - b).abs().max()) < 0.1
        assert float((a - b).abs().mean()) < 0.01
