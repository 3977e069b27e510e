"""Digits redrawn with one round pen (the app's canvas, a marker): what the trainer adds to its
pool must look like what preprocessing hands the reader when a person draws the same digit."""

from __future__ import annotations

import io
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from digitseq.core.errors import DigitseqError
from digitseq.data import drawn, mnist, sources
from digitseq.data.mnist_style import stroke_width
from digitseq.reading.preprocess import preprocess


def canvas_png(digit: np.ndarray, height: int, pen_px: int) -> bytes:
    """The digit drawn as the app's canvas exports it: opaque black on transparent RGBA."""
    ink = drawn.draw_digit(digit, height, pen_px)
    rgba = np.zeros((ink.shape[0] + 40, ink.shape[1] + 40, 4), np.uint8)
    rgba[20:-20, 20:-20, 3] = np.where(ink, 255, 0)
    buf = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buf, "PNG")
    return buf.getvalue()


def test_a_pen_draws_the_digit_at_its_height_with_strokes_of_its_width(mnist_data):
    digit = mnist.split_pool(mnist_data, "train")[0][0]
    widths = []
    for pen_px in (6, 12):
        ink = drawn.draw_digit(digit, 90, pen_px)
        rows = np.flatnonzero(ink.any(axis=1))
        assert 80 <= rows[-1] - rows[0] + 1 <= 92  # about as tall as asked (thinning shortens)
        widths.append(stroke_width(ink))
    assert 1.6 < widths[1] / widths[0] < 2.4  # twice the pen, about twice the stroke


def test_drawn_cells_are_what_preprocessing_makes_of_a_drawing(mnist_data):
    pool = mnist.split_pool(mnist_data, "train")[0]
    for i, ratio in ((0, 0.1), (1, 0.2), (2, 0.3), (3, 0.35)):
        cell = drawn.drawn_cell(pool[i], ratio, height=80).astype(np.float32) / 255
        seen = preprocess(canvas_png(pool[i], 80, round(ratio * 80)), line=True)
        assert cell.shape == (28, 28) and seen.shape[0] == 28
        rows = np.flatnonzero(cell.max(1) > 0.3)
        assert 16 <= rows[-1] - rows[0] + 1 <= 21  # MNIST's 20-px box
        # the strokes have the width the reader sees when the same digit is drawn on the canvas
        assert abs(stroke_width(cell > 0.5) - stroke_width(seen > 0.5)) < 0.6
        assert 1.6 <= stroke_width(cell > 0.5) <= 3.6  # ~MNIST's range (loops a pen closed: wider)


def test_drawn_pool_is_reproducible_and_draws_each_digit_once(mnist_data):
    pool = mnist.split_pool(mnist_data, "train")[0][:300]
    a, ia = drawn.drawn_pool(pool, 40, np.random.default_rng(3))
    b, ib = drawn.drawn_pool(pool, 40, np.random.default_rng(3))
    assert a.shape == (40, 28, 28) and a.dtype == np.uint8
    assert np.array_equal(a, b) and np.array_equal(ia, ib)
    assert len(set(ia.tolist())) == 40
    more, im = drawn.drawn_pool(pool[:30], 45, np.random.default_rng(3))  # p_drawn > 0.5
    assert more.shape == (45, 28, 28) and len(set(im.tolist())) == 30


def test_p_drawn_adds_redrawn_train_digits_with_their_labels(mnist_data):
    spec = sources.DataSpec(lines=True, lengths=(1, 6), batch_size=32, steps=40, p_drawn=0.02,
                            val_size=50)  # fmt: skip
    batches, _, _ = sources.training_data(spec)
    train, labels, _ = mnist.split_pool(mnist_data, "train")
    n = round(len(train) * 0.02 / 0.98)
    assert len(batches.images) == len(train) + n
    assert np.array_equal(batches.images[: len(train)], train)  # val and test digits never
    cells, idx = drawn.drawn_pool(train, n, np.random.default_rng([spec.seed, 17]))
    assert np.array_equal(batches.images[len(train) :], cells)
    assert np.array_equal(batches.labels[len(train) :], labels[idx])  # each keeps its label
    line = batches.batch(0, 0)
    assert line[0].shape[0] == spec.batch_size  # batches are drawn from the grown pool
    for bad in (1.0, -0.1):
        with pytest.raises(DigitseqError, match="p_drawn"):
            sources.training_data(replace(spec, p_drawn=bad))
