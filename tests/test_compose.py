"""The sequence generator: digits drawn, the seed stitch, the natural layout, mixing."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import ink_boxes, warp_and_place

from digitseq.data import compose, layouts, mnist, numbers, warp

IDENTITY = layouts.NaturalParams(
    scale=(1.0, 1.0),
    rotation_deg=0.0,
    shear=0.0,
    vertical_jitter=0.0,
    spacing_jitter=0.0,
    margin=0.0,
    p_thick=0.0,
    p_thin=0.0,
)


@pytest.fixture(scope="module")
def pool(mnist_data):
    """The MNIST test digits (images, labels), as the test split sees them."""
    images, labels, offset = mnist.split_pool(mnist_data, "test")
    assert offset == 0
    return images, labels


def hand_stitch(images: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """The original project's way: per sample, np.hstack of the five 28x28 digits."""
    return np.stack([np.hstack([images[j] for j in row]) for row in idx])


def test_seed_layout_is_a_byte_exact_stitch_of_the_drawn_digits(pool):
    images, labels = pool
    rng = np.random.default_rng(1)
    out, digits, idx, lay = compose.generate_fixed(images, labels, 300, rng, layout="seed")
    assert out.shape == (300, 28, 140) and out.dtype == np.uint8
    assert digits.shape == (300, 5) and digits.dtype == np.uint8
    assert (lay == layouts.LAYOUT_IDS["seed"]).all()
    np.testing.assert_array_equal(out, hand_stitch(images, idx))
    np.testing.assert_array_equal(labels[idx], digits)  # each digit image shows its label


def test_fast_stitch_equals_the_plain_one(pool):
    images, _ = pool
    idx = np.random.default_rng(2).integers(0, len(images), size=(257, 5))
    np.testing.assert_array_equal(warp.stitch_seed(images, idx), warp.compose_seed(images[idx]))


def test_numbers_are_uniform_and_leading_zero_is_an_option(pool):
    images, labels = pool
    digits, idx = numbers.sample_fixed(labels, 20_000, np.random.default_rng(3))
    np.testing.assert_array_equal(labels[idx], digits)
    for pos in range(5):  # each position: every digit about 10% (expected 2,000 each)
        counts = np.bincount(digits[:, pos], minlength=10)
        assert counts.min() > 1_750 and counts.max() < 2_250, (pos, counts)
    no_zero, _ = numbers.sample_fixed(labels, 20_000, np.random.default_rng(3), leading_zero=False)
    assert no_zero[:, 0].min() == 1 and no_zero[:, 0].max() == 9
    assert (no_zero[:, 1:] == 0).any()  # only the first digit is restricted


def test_digit_images_are_drawn_from_the_whole_class(pool):
    images, labels = pool
    _, idx = numbers.sample_fixed(labels, 20_000, np.random.default_rng(4))
    used = np.unique(idx)
    assert len(used) > 0.99 * len(labels) * (1 - np.exp(-10))  # 100,000 draws from 10,000


def test_mixed_is_about_half_and_half(pool):
    images, labels = pool
    _, _, _, lay = compose.generate_fixed(images, labels, 4000, np.random.default_rng(5))
    assert set(np.unique(lay)) == {0, 1}
    assert 0.46 < lay.mean() < 0.54


def test_natural_differs_from_seed_but_shows_the_same_number(pool):
    images, labels = pool
    rng = np.random.default_rng(6)
    out, digits, idx, lay = compose.generate_fixed(images, labels, 1000, rng, layout="natural")
    assert (lay == layouts.LAYOUT_IDS["natural"]).all()
    seed = warp.compose_seed(images[idx])
    assert (out != seed).any(axis=(1, 2)).mean() > 0.99
    np.testing.assert_array_equal(labels[idx], digits)
    ink = out.astype(np.float64).sum() / seed.astype(np.float64).sum()
    assert 0.75 < ink < 1.2  # scaled, thinned and thickened, but not lost or smeared


def test_natural_with_every_range_zero_is_the_seed_layout(pool):
    """Warp and paste are exact: no shift, blur or off-by-one when nothing is randomized."""
    images, labels = pool
    rng = np.random.default_rng(7)
    out, _, idx, _ = compose.generate_fixed(images, labels, 500, rng, "natural", params=IDENTITY)
    np.testing.assert_array_equal(out, hand_stitch(images, idx))


@pytest.mark.parametrize(
    "params",
    [layouts.NaturalParams(), layouts.NaturalParams(vertical_jitter=8.0, scale=(1.0, 1.2))],
    ids=["default", "strong-jitter"],
)
def test_natural_keeps_all_ink_inside_the_canvas(pool, params):
    images, labels = pool
    rng = np.random.default_rng(8)
    n = 2000
    _, idx = numbers.sample_fixed(labels, n, rng)
    draws = layouts.natural_draws(n, rng, params)
    patches, x0, y0, _ = warp_and_place("natural", images[idx], draws, params)
    top, bottom, left, right = ink_boxes(patches)
    has_ink = (patches > 0).any(axis=(2, 3))
    assert has_ink.all()
    assert (y0 + top >= 0).all() and (y0 + bottom <= 27).all()
    assert (x0 + left >= 0).all() and (x0 + right <= 139).all()
    assert (np.diff(x0, axis=1) > 0).all()  # digits stay in reading order
    # The paste loses nothing: every patch's ink is in the image (max-merged where they overlap).
    out = warp.paste(patches, x0, y0)
    ref = np.zeros((n, 28 + 60, 140 + 60), np.uint8)
    for j in range(0, n, 97):
        for k in range(5):
            win = ref[j, 30 + y0[j, k] : 58 + y0[j, k], 30 + x0[j, k] : 58 + x0[j, k]]
            np.maximum(win, patches[j, k], out=win)
        assert ref[j].sum() == ref[j, 30:58, 30:170].sum()
        np.testing.assert_array_equal(out[j], ref[j, 30:58, 30:170])


def test_natural_varies_what_it_promises(pool):
    images, labels = pool
    p = layouts.NaturalParams()
    rng = np.random.default_rng(9)
    n = 2000
    _, idx = numbers.sample_fixed(labels, n, rng)
    d = layouts.natural_draws(n, rng, p)
    assert d["scale"].min() >= p.scale[0] and d["scale"].max() <= p.scale[1]
    assert np.abs(np.rad2deg(d["angle"])).max() <= p.rotation_deg
    assert np.abs(d["dy"]).max() <= p.vertical_jitter
    assert d["margin"].max() <= p.margin
    patches, x0, y0, _ = warp_and_place("natural", images[idx], d, p)
    gaps = np.diff(x0, axis=1)  # 28 = edge to edge; less overlaps, more leaves a gap
    assert gaps.min() < 24 and gaps.max() > 32
    assert len(np.unique(y0)) >= 5  # vertical jitter
    # Stroke thickness: thickened digits carry more ink than thinned ones of similar size.
    ink = patches.astype(np.float64).sum(axis=(2, 3)) / d["scale"] ** 2
    thick = d["stroke"] < p.p_thick
    thin = (d["stroke"] >= p.p_thick) & (d["stroke"] < p.p_thick + p.p_thin)
    assert ink[thick].mean() > 1.2 * ink[thin].mean()


def test_same_seed_same_images_other_seed_other_images(pool):
    images, labels = pool

    def run(seed):
        return compose.generate_fixed(images, labels, 300, np.random.default_rng(seed))

    a, b, c = run(11), run(11), run(12)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[0], c[0])


def test_natural_params_round_trip_through_json():
    import json

    p = layouts.NaturalParams(scale=(0.7, 1.0), rotation_deg=5.0)
    assert layouts.NaturalParams.from_dict(json.loads(json.dumps(p.to_dict()))) == p
