"""Tests of the any-length number generator (digitseq.data: numbers, layouts, warp, compose).

Outputs are pinned byte for byte by ``fixtures/compose_golden.npz``, recorded from the generator
before it was split into modules, whose 5-digit output was then compared with the original 5-digit
module of commit 5038236 (before the any-length generator); the seed layout also has a frozen hash
recorded from that module.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from helpers import ink_boxes, warp_and_place

from digitseq.data import compose, layouts, numbers, warp

GOLDEN = Path(__file__).resolve().parent / "fixtures" / "compose_golden.npz"
LENGTHS = (1, 2, 7, 12)
LAYOUTS = ("seed", "natural", "touching", "spaced")


# --- data ----------------------------------------------------------------------------------------


def synthetic_pool(n=500, seed=0, full=False):
    """Random 28x28 uint8 blobs with labels 0-9 (every class present).

    Ink sits in the central 20x20 box (cols/rows 4..23) like MNIST's; ``full`` fills that box
    entirely (20-px-wide blobs) for measuring gaps.
    """
    rng = np.random.default_rng(seed)
    images = np.zeros((n, 28, 28), np.uint8)
    if full:
        images[:, 4:24, 4:24] = rng.integers(100, 256, size=(n, 20, 20))
    else:
        blob = rng.random((n, 20, 20)) < 0.35
        images[:, 4:24, 4:24] = np.where(blob, rng.integers(1, 256, size=(n, 20, 20)), 0)
        images[:, 13, 13] = 255  # never empty
    labels = np.arange(n) % 10
    return images, labels.astype(np.uint8)


@pytest.fixture(scope="session")
def mnist_test(mnist_data):
    """The MNIST test digits."""
    return mnist_data.test_images, mnist_data.test_labels


@pytest.fixture(scope="session")
def pool():
    return synthetic_pool()


# --- the outputs, byte for byte ------------------------------------------------------------------

# SHA-256 of generate_fixed's four arrays for 64 numbers from the MNIST test digits, rng seed
# 2024, seed layout, recorded from the original 5-digit module (5038236). Pure numpy, so the
# same on every machine; the warped layouts (torch grid_sample) are pinned by GOLDEN.
FROZEN_SEED_SHA256 = "78fbf06483c04cd6869a11c0448fb4b17f1476a86b2613e3c46bc1bee7259d5d"
STRONG = layouts.NaturalParams(vertical_jitter=8.0, scale=(1.0, 1.2))
WIDE = layouts.TouchingParams(gap_min=6.0, gap_max=10.0, margin=(2, 5), ink_gap=(0.0, 3.0))


def arrays_hash(arrays) -> str:
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def line_arrays(out: compose.Lines) -> tuple[np.ndarray, ...]:
    return out.images, out.widths, out.digits, out.lengths, out.idx, out.layouts


def golden_outputs(images, labels) -> dict[str, np.ndarray]:
    """The pinned outputs from these digits: name -> the arrays of one small case, or the
    SHA-256 of a larger case's arrays (5-digit layouts and leading zeros, every layout and mix at
    lengths 1-12, non-default params, a training batch)."""
    rng = np.random.default_rng
    out = {}
    for layout in ("seed", "natural", "mixed"):
        for zero in (True, False):
            got = compose.generate_fixed(images, labels, 700, rng(21), layout, zero)
            out[f"fixed5_{layout}_{'zero' if zero else 'nozero'}"] = arrays_hash(got)
    for layout in ("natural", "mixed"):  # as recorded from the original 5-digit module
        got = compose.generate_fixed(images, labels, 64, rng(2024), layout, True)
        out[f"fixed5_64_{layout}"] = arrays_hash(got)
    got = compose.generate_fixed(images, labels, 300, rng(6), "natural", params=STRONG)
    out["fixed5_natural_strong"] = arrays_hash(got)
    for layout in ("seed", "natural", "touching", "spaced", "mix3", "mix4", "people"):
        got = compose.generate(images, labels, 200, rng(11), layout, lengths=(1, 12), pad_to=32)
        out[f"any_{layout}"] = arrays_hash(line_arrays(got))
    got = compose.generate(images, labels, 200, rng(13), "mix4", False, STRONG, lengths=(2, 9),
                         touching=WIDE, width=400)  # fmt: skip
    out["any_mix4_params"] = arrays_hash(line_arrays(got))
    got = compose.length_batch(images, labels, 64, rng(4), "people", pad_to=32)
    out["length_batch_people"] = arrays_hash(line_arrays(got))
    small = compose.generate(images, labels, 6, rng(7), "mix4", lengths=(1, 7))
    keys = ("images", "widths", "digits", "lengths", "idx", "layouts")
    out.update({f"small_{k}": a for k, a in zip(keys, line_arrays(small), strict=True)})
    return {k: np.asarray(v) for k, v in out.items()}


def test_five_digit_seed_numbers_match_the_frozen_hash(mnist_test):
    images, labels = mnist_test
    out = compose.generate_fixed(images, labels, 64, np.random.default_rng(2024), "seed", True)
    assert [a.shape for a in out] == [(64, 28, 140), (64, 5), (64, 5), (64,)]
    assert arrays_hash(out) == FROZEN_SEED_SHA256


def test_outputs_are_byte_identical_to_the_recorded_ones(mnist_test):
    with np.load(GOLDEN, allow_pickle=False) as stored:
        want = {k: stored[k] for k in stored.files}
    got = golden_outputs(*mnist_test)
    assert sorted(got) == sorted(want)
    for k in [k for k in want if k.startswith("small_")]:  # one small case, pixel by pixel
        np.testing.assert_array_equal(got[k], want[k], err_msg=k)
        assert got[k].dtype == want[k].dtype, k
    assert [k for k in want if not np.array_equal(got[k], want[k])] == []


@pytest.mark.parametrize("layout", ["seed", "natural", "mixed"])
@pytest.mark.parametrize("leading_zero", [True, False])
def test_generate_at_five_digits_is_generate_fixed(mnist_test, layout, leading_zero):
    images, labels = mnist_test
    index = numbers.class_index(labels)
    new = compose.generate(images, labels, 300, np.random.default_rng(21), layout, leading_zero,
                         None, index)  # fmt: skip
    fixed = compose.generate_fixed(images, labels, 300, np.random.default_rng(21), layout,
                                 leading_zero)  # fmt: skip
    for a, b in zip(fixed, (new.images, new.digits, new.idx, new.layouts), strict=True):
        np.testing.assert_array_equal(a, b)
        assert a.dtype == b.dtype
    assert new.images.shape == (300, 28, 140)
    assert (new.widths == 140).all() and (new.lengths == 5).all()


def test_sample_fixed_is_sample_numbers_at_five_digits(pool):
    _, labels = pool
    d5, i5 = numbers.sample_fixed(labels, 300, np.random.default_rng(3), leading_zero=False)
    d, lens, i = numbers.sample_numbers(labels, 300, np.random.default_rng(3), 5, False)
    np.testing.assert_array_equal(d5, d)
    np.testing.assert_array_equal(i5, i)
    assert (lens == 5).all()


# --- every layout at every length ----------------------------------------------------------------


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("length", LENGTHS)
def test_every_layout_at_every_length(pool, layout, length):
    images, labels = pool
    n = 64
    out = compose.generate(images, labels, n, np.random.default_rng(length), layout,
                         lengths=length)  # fmt: skip
    assert out.images.dtype == np.uint8 and out.images.ndim == 3
    assert out.images.shape[:2] == (n, 28) and out.images.shape[2] == out.widths.max()
    assert out.widths.dtype == np.int32 and out.widths.shape == (n,)
    assert out.digits.shape == out.idx.shape == (n, length) and out.digits.dtype == np.uint8
    assert (out.lengths == length).all() and out.lengths.dtype == np.uint8
    assert (out.layouts == layouts.LAYOUT_IDS[layout]).all()
    if layout == "touching":
        assert (out.widths < 28 * length + 16).all() and (out.widths >= 12).all()
        if length > 1:
            assert out.widths.min() < out.widths.max()  # widths differ per number
            assert out.widths.mean() < 22 * length + 8  # tighter than 28 px per digit
    elif layout == "spaced":
        assert (out.widths <= 36 * length + 16).all() and (out.widths >= 2).all()
    else:
        assert (out.widths == 28 * length).all()
    check_consistent(out, images, labels)


def check_consistent(out: compose.Lines, images, labels):
    """Ink only inside each real width, black padding, labels and sources consistent."""
    cols = np.arange(out.images.shape[2])
    beyond = cols[None, None, :] >= out.widths[:, None, None]
    assert not (out.images * beyond).any()  # nothing at or beyond widths[i]
    assert (out.images.max(axis=(1, 2)) > 0).all()
    inked = (out.images > 0).any(axis=1)  # (n, W)
    if out.layouts.max() == layouts.LAYOUT_IDS["touching"]:
        t = out.layouts == layouts.LAYOUT_IDS["touching"]
        last = out.images.shape[2] - 1 - inked[:, ::-1].argmax(axis=1)
        blank_right = out.widths - 1 - last
        assert (blank_right[t] >= 0).all() and (blank_right[t] <= 8).all()
        assert (inked[t].argmax(axis=1) <= 8).all()  # left margin <= 8
    lmax = out.digits.shape[1]
    valid = np.arange(lmax)[None] < out.lengths[:, None].astype(np.int64)
    assert ((out.digits < 10) == valid).all() and (out.digits[~valid] == 255).all()
    assert ((out.idx >= 0) == valid).all() and (out.idx[~valid] == -1).all()
    np.testing.assert_array_equal(labels[out.idx[valid]], out.digits[valid])  # right class
    strings = out.strings
    assert len(strings) == len(out)
    assert [len(s) for s in strings] == out.lengths.tolist()


@pytest.mark.parametrize("layout", ["mix3", "mixed", {"touching": 1, "seed": 1}])
def test_mixed_lengths_and_layouts_in_one_batch(pool, layout):
    images, labels = pool
    out = compose.generate(images, labels, 400, np.random.default_rng(8), layout,
                         lengths=(1, 12), pad_to=32)  # fmt: skip
    assert out.digits.shape == (400, 12)
    assert set(np.unique(out.lengths)) == set(range(1, 13))
    assert out.images.shape[2] % 32 == 0 and out.images.shape[2] - out.widths.max() < 32
    check_consistent(out, images, labels)
    # seed rows are exact stitches of their digits, whatever else is in the batch
    for i in np.flatnonzero(out.layouts == 0)[:20]:
        k = int(out.lengths[i])
        np.testing.assert_array_equal(
            out.images[i, :, : 28 * k], np.hstack(list(images[out.idx[i, :k]]))
        )


def test_mix3_and_mix4_fractions_and_mixed_keeps_half_and_half(pool):
    images, labels = pool
    rng = np.random.default_rng(9)
    lay = layouts.draw_layouts("mix3", 20_000, rng)
    frac = np.bincount(lay, minlength=3) / lay.size
    np.testing.assert_allclose(frac, [0.3, 0.4, 0.3], atol=0.015)
    lay = layouts.draw_layouts("mix4", 20_000, rng)
    np.testing.assert_allclose(np.bincount(lay, minlength=4) / lay.size, [0.25, 0.3, 0.25, 0.2],
                               atol=0.015)  # fmt: skip
    lay = layouts.draw_layouts("mixed", 20_000, rng)
    assert set(np.unique(lay)) == {0, 1} and 0.48 < lay.mean() < 0.52
    with pytest.raises(ValueError):
        layouts.draw_layouts("cursive", 3, rng)


def test_lengths_are_uniform_and_leading_zero_is_an_option(pool):
    _, labels = pool
    digits, lens, idx = numbers.sample_numbers(labels, 24_000, np.random.default_rng(3), (1, 12))
    counts = np.bincount(lens, minlength=13)[1:]
    assert counts.min() > 1_750 and counts.max() < 2_250
    valid = np.arange(12) < lens[:, None]
    for pos in range(12):
        c = np.bincount(digits[valid[:, pos], pos], minlength=10)
        assert c.min() > 0.85 * c.mean() and c.max() < 1.15 * c.mean()
    d2, l2, _ = numbers.sample_numbers(labels, 24_000, np.random.default_rng(3), (1, 12),
                                     leading_zero=False)  # fmt: skip
    assert d2[l2 > 1, 0].min() == 1 and d2[:, 0].max() == 9
    assert (d2[l2 == 1, 0] == 0).any()  # "0" is a one-digit number, not a leading zero
    with pytest.raises(TypeError):
        numbers.sample_numbers(labels, 3, np.random.default_rng(0), False)  # old positional call


def test_width_and_pad_to(pool):
    images, labels = pool
    rng = np.random.default_rng(10)
    out = compose.generate(images, labels, 50, rng, "touching", lengths=(3, 4), width=150)
    assert out.images.shape == (50, 28, 150)
    check_consistent(out, images, labels)
    with pytest.raises(ValueError):
        compose.generate(images, labels, 50, rng, "seed", lengths=6, width=100)
    out = compose.generate(images, labels, 50, rng, "natural", lengths=3, pad_to=16)
    assert out.images.shape == (50, 28, 96) and (out.images[:, :, 84:] == 0).all()
    empty = compose.generate(images, labels, 0, rng, "mix3", lengths=(1, 12))
    assert empty.images.shape == (0, 28, 0) and empty.digits.shape == (0, 12)


def test_natural_keeps_ink_inside_and_in_order_at_every_length(pool):
    images, labels = pool
    p = layouts.NaturalParams(vertical_jitter=8.0, scale=(1.0, 1.2))
    for length in LENGTHS:
        rng = np.random.default_rng(length)
        digits, _, idx = numbers.sample_numbers(labels, 300, rng, length)
        d = layouts.natural_draws(300, rng, p, length)
        patches, x0, y0, _ = warp_and_place("natural", images[idx], d, p)
        top, bottom, left, right = ink_boxes(patches)
        assert (y0 + top >= 0).all() and (y0 + bottom <= 27).all()
        assert (x0 + left >= 0).all() and (x0 + right <= 28 * length - 1).all()
        assert (np.diff(x0, axis=1) > 0).all()


# --- touching ------------------------------------------------------------------------------------


def touching_gaps(images, labels, n, seed, t=None):
    """Gaps (columns of blank) between consecutive digits' ink boxes, as composed."""
    p, t = layouts.NaturalParams(), t or layouts.TouchingParams()
    rng = np.random.default_rng(seed)
    _, _, idx = numbers.sample_numbers(labels, n, rng, 6)
    d = layouts.touching_draws(n, rng, p, t, 6)
    patches, x0, y0, widths = warp_and_place("touching", images[idx], d, p, t)
    top, bottom, left, right = ink_boxes(patches)
    assert (x0 + left >= d["margin"][:, :1]).all()
    assert ((x0 + left).min(1) == d["margin"][:, 0]).all()  # ink starts after the left margin
    assert ((x0 + right).max(1) == widths - 1 - d["margin"][:, 1]).all()
    assert (y0 + top >= 0).all() and (y0 + bottom <= 27).all()
    return (x0 + left)[:, 1:] - (x0 + right)[:, :-1] - 1, d


def test_touching_digits_really_touch():
    images, labels = synthetic_pool(300, full=True)
    gaps, d = touching_gaps(images, labels, 2000, 12)
    assert d["gap"].min() >= -8 and d["gap"].max() <= 0
    assert (gaps <= 0).mean() > 0.9  # touching (0) or overlapping (< 0)
    assert (gaps < 0).mean() > 0.5
    assert gaps.max() <= 4  # never a clear space between 20-px-wide digits
    # and a wider gap range does leave room between them
    wide, _ = touching_gaps(images, labels, 500, 13, layouts.TouchingParams(gap_min=6, gap_max=10))
    assert (wide > 0).mean() > 0.9


def test_spaced_digits_are_spaced_by_their_ink_so_a_one_sits_close(mnist_test):
    """Each digit's ink starts round(gap) columns after the previous digit's ink ends, gaps in
    [-2, 8] px: a narrow 1 sits as close to its neighbours as any digit, where the natural
    layout gives it a whole digit's slot."""
    images, labels = mnist_test
    p, t = layouts.NaturalParams(), layouts.TouchingParams()
    rng = np.random.default_rng(21)
    digits, _, idx = numbers.sample_numbers(labels, 1000, rng, 6)
    d = layouts.touching_draws(1000, rng, p, t, 6, spaced=True)
    assert d["gap"].min() >= -2 and d["gap"].max() <= 8 and d["gap"].std() > 2
    centres = layouts.touching_centres(d["gap"], t.pitch)
    patches, _, top, ink = warp.warp_digits(images[idx], d, p, centres)
    x0, y0, widths = layouts.place_spaced(top, ink, d["gap"], d["margin"])
    first, last, lo, hi = ink_boxes(patches)
    gaps = (x0 + lo)[:, 1:] - (x0 + hi)[:, :-1] - 1
    np.testing.assert_array_equal(gaps, np.round(d["gap"]))
    assert ((x0 + lo).min(1) == d["margin"][:, 0]).all()  # ink starts after the left margin
    assert ((x0 + hi).max(1) == widths - 1 - d["margin"][:, 1]).all()
    assert (y0 + first >= 0).all() and (y0 + last <= 27).all()
    # centre-to-centre distance between two 1s: spaced like ink, not like 28-px slots
    centre = x0 + (lo + hi) / 2
    ones = (digits[:, :-1] == 1) & (digits[:, 1:] == 1)
    assert ones.sum() > 30 and np.diff(centre, axis=1)[ones].mean() < 14
    natural = compose.generate(images, labels, 1000, rng, "natural", lengths=6)
    spaced = compose.generate(images, labels, 1000, rng, "spaced", lengths=6)
    assert spaced.widths.mean() < 0.8 * natural.widths.mean()  # 1s and narrow digits close up


def test_touching_params_round_trip_through_json():
    t = layouts.TouchingParams(gap_min=-6.0, gap_max=2.0, margin=(1, 5))
    assert layouts.TouchingParams.from_dict(json.loads(json.dumps(t.to_dict()))) == t
    p = layouts.NaturalParams(scale=(0.7, 1.0), rotation_deg=5.0)
    assert layouts.NaturalParams.from_dict(json.loads(json.dumps(p.to_dict()))) == p


# --- determinism, labels, batches ----------------------------------------------------------------


def test_same_seed_same_bytes_other_seed_other_bytes(pool):
    images, labels = pool

    def run(seed):
        out = compose.generate(images, labels, 200, np.random.default_rng(seed), "mix3",
                             lengths=(1, 12))  # fmt: skip
        return out.images, out.widths, out.digits, out.lengths, out.idx, out.layouts

    a, b, c = run(11), run(11), run(12)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    assert a[0].shape != c[0].shape or not np.array_equal(a[0], c[0])
    assert not np.array_equal(a[2], c[2])


def test_block_size_does_not_change_the_output(pool, monkeypatch):
    images, labels = pool

    def run():
        return compose.generate(images, labels, 300, np.random.default_rng(5), "mix3",
                              lengths=(1, 12)).images  # fmt: skip

    a = run()
    monkeypatch.setattr(warp, "BLOCK_DIGITS", 37)
    np.testing.assert_array_equal(a, run())


def test_strings_round_trip_with_leading_zeros():
    strings = ["0", "007", "123456789012", "10", "", "000000000000", "5"]
    digits, lengths = numbers.strings_to_labels(strings)
    assert digits.shape == (7, 12) and digits.dtype == np.uint8
    np.testing.assert_array_equal(lengths, [1, 3, 12, 2, 0, 12, 1])
    np.testing.assert_array_equal(digits[1, :4], [0, 0, 7, 255])
    assert numbers.labels_to_strings(digits, lengths) == strings
    d16, _ = numbers.strings_to_labels(strings, max_len=16)
    assert d16.shape == (7, 16) and numbers.labels_to_strings(d16, lengths) == strings
    with pytest.raises(ValueError):
        numbers.strings_to_labels(["12a"])


def test_generated_labels_round_trip(pool):
    images, labels = pool
    out = compose.generate(images, labels, 300, np.random.default_rng(2), "seed", lengths=(1, 12))
    digits, lengths = numbers.strings_to_labels(out.strings, max_len=12)
    np.testing.assert_array_equal(digits, out.digits)
    np.testing.assert_array_equal(lengths, out.lengths)
    assert any(s.startswith("0") and len(s) > 1 for s in out.strings)


@pytest.mark.parametrize("pad_to", [16, 32])
def test_length_batches_are_one_length_padded_to_a_multiple(pool, pad_to):
    images, labels = pool
    rng = np.random.default_rng(1)
    batches = [compose.length_batch(images, labels, 32, rng, pad_to=pad_to) for _ in range(40)]
    assert all(len(b) == 32 and b.digits.shape == b.idx.shape == (32, 12) for b in batches)
    for b in batches:
        assert len(np.unique(b.lengths)) == 1
        assert b.images.shape[2] % pad_to == 0 and b.images.shape[2] - b.widths.max() < pad_to
        check_consistent(b, images, labels)
    assert len({int(b.lengths[0]) for b in batches}) > 6  # lengths drawn across 1-12
    assert len({b.images.shape[2] for b in batches}) <= 36 * 12 // pad_to + 1


if __name__ == "__main__":  # re-record GOLDEN: only when a change of the outputs is intended
    from digitseq.data import mnist

    m = mnist.load()
    np.savez_compressed(GOLDEN, **golden_outputs(m.test_images, m.test_labels))
