"""Tests of the any-length number generator (digitseq.data.compose).

The 5-digit output is compared byte for byte with the original 5-digit module, loaded from git
history (commit 5038236, before the any-length generator), and with a frozen hash recorded from it.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import ink_boxes

from digitseq.data import compose as lines

REPO = Path(__file__).resolve().parents[1]
ORIGINAL_COMMIT = "5038236"  # the package layout, with the 5-digit compose.py
ORIGINAL = "src/digitseq/data/compose.py"
LENGTHS = (1, 2, 7, 12)
LAYOUTS = ("seed", "natural", "touching", "spaced")


# --- reference module and data -------------------------------------------------------------------


def original_source() -> str | None:
    """The original 5-digit compose.py from git history, or None (no git, shallow clone)."""
    try:
        shown = subprocess.run(
            ["git", "-C", str(REPO), "show", f"{ORIGINAL_COMMIT}:{ORIGINAL}"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return shown.stdout if shown.returncode == 0 else None


@pytest.fixture(scope="session")
def original(tmp_path_factory):
    """The original module, loaded by file path with its digitseq import replaced by constants."""
    source = original_source()
    if source is None:
        pytest.skip(f"{ORIGINAL_COMMIT}:{ORIGINAL} is not in this checkout's git history")
    consts = "DIGIT_SIZE = 28\nN_DIGITS = 5\nIMG_H = 28\nIMG_W = 140\n"
    src = re.sub(r"^from digitseq\S* import .*$", consts, source, flags=re.M)
    path = tmp_path_factory.mktemp("original") / "original_compose.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location("original_compose", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


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


# --- the old 5-digit output, byte for byte -------------------------------------------------------

# SHA-256 of generate_fixed's four arrays for 64 numbers from the MNIST test digits, rng seed
# 2024, seed layout, recorded from the original 5-digit module (5038236). Pure numpy, so the
# same on every machine; natural and mixed (torch grid_sample) are compared with that module.
FROZEN_SEED_SHA256 = "78fbf06483c04cd6869a11c0448fb4b17f1476a86b2613e3c46bc1bee7259d5d"


def arrays_hash(arrays) -> str:
    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def test_five_digit_seed_numbers_match_the_frozen_hash(mnist_test):
    images, labels = mnist_test
    out = lines.generate_fixed(images, labels, 64, np.random.default_rng(2024), "seed", True)
    assert [a.shape for a in out] == [(64, 28, 140), (64, 5), (64, 5), (64,)]
    assert arrays_hash(out) == FROZEN_SEED_SHA256


@pytest.mark.parametrize("layout", ["seed", "natural", "mixed"])
def test_five_digit_numbers_hash_as_the_original_modules(original, mnist_test, layout):
    images, labels = mnist_test
    old = original.generate(images, labels, 64, np.random.default_rng(2024), layout, True)
    new = lines.generate_fixed(images, labels, 64, np.random.default_rng(2024), layout, True)
    assert arrays_hash(new) == arrays_hash(old)
    if layout == "seed":
        assert arrays_hash(old) == FROZEN_SEED_SHA256


@pytest.mark.parametrize("layout", ["seed", "natural", "mixed"])
@pytest.mark.parametrize("leading_zero", [True, False])
def test_five_digits_are_byte_identical_to_the_original(original, mnist_test, layout, leading_zero):
    images, labels = mnist_test
    index = lines.class_index(labels)
    old = original.generate(images, labels, 700, np.random.default_rng(21), layout, leading_zero)
    new = lines.generate(images, labels, 700, np.random.default_rng(21), layout, leading_zero,
                         None, index)  # fmt: skip
    fixed = lines.generate_fixed(images, labels, 700, np.random.default_rng(21), layout,
                                 leading_zero)  # fmt: skip
    for a, b in zip(old, fixed, strict=True):
        np.testing.assert_array_equal(a, b)
        assert a.dtype == b.dtype and a.shape == b.shape
    for a, b in zip(old, (new.images, new.digits, new.idx, new.layouts), strict=True):
        np.testing.assert_array_equal(a, b)
    assert new.images.shape == (700, 28, 140)
    assert (new.widths == 140).all() and (new.lengths == 5).all()


def test_old_building_blocks_agree(original, mnist_test):
    images, labels = mnist_test
    d_old, i_old = original.sample_numbers(labels, 300, np.random.default_rng(3))
    d_new, i_new = lines.sample_fixed(labels, 300, np.random.default_rng(3))
    np.testing.assert_array_equal(d_old, d_new)
    np.testing.assert_array_equal(i_old, i_new)
    lay = np.random.default_rng(4).integers(0, 2, 300).astype(np.uint8)
    a = original.compose(images, i_old, lay, np.random.default_rng(5))
    b = lines.compose(images, i_old, lay, np.random.default_rng(5))
    np.testing.assert_array_equal(a, b)
    strong = lines.NaturalParams(vertical_jitter=8.0, scale=(1.0, 1.2))
    a = original.compose_natural(images[i_old], np.random.default_rng(6), original.NaturalParams(
        **strong.to_dict()))  # fmt: skip
    b = lines.compose_natural(images[i_old], np.random.default_rng(6), strong)
    np.testing.assert_array_equal(a, b)


# --- every layout at every length ----------------------------------------------------------------


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("length", LENGTHS)
def test_every_layout_at_every_length(pool, layout, length):
    images, labels = pool
    n = 64
    out = lines.generate(images, labels, n, np.random.default_rng(length), layout,
                         lengths=length)  # fmt: skip
    assert out.images.dtype == np.uint8 and out.images.ndim == 3
    assert out.images.shape[:2] == (n, 28) and out.images.shape[2] == out.widths.max()
    assert out.widths.dtype == np.int32 and out.widths.shape == (n,)
    assert out.digits.shape == out.idx.shape == (n, length) and out.digits.dtype == np.uint8
    assert (out.lengths == length).all() and out.lengths.dtype == np.uint8
    assert (out.layouts == lines.LAYOUT_IDS[layout]).all()
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


def check_consistent(out: lines.Lines, images, labels):
    """Ink only inside each real width, black padding, labels and sources consistent."""
    cols = np.arange(out.images.shape[2])
    beyond = cols[None, None, :] >= out.widths[:, None, None]
    assert not (out.images * beyond).any()  # nothing at or beyond widths[i]
    assert (out.images.max(axis=(1, 2)) > 0).all()
    inked = (out.images > 0).any(axis=1)  # (n, W)
    if out.layouts.max() == lines.LAYOUT_IDS["touching"]:
        t = out.layouts == lines.LAYOUT_IDS["touching"]
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
    out = lines.generate(images, labels, 400, np.random.default_rng(8), layout,
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
    lay = lines.draw_layouts("mix3", 20_000, rng)
    frac = np.bincount(lay, minlength=3) / lay.size
    np.testing.assert_allclose(frac, [0.3, 0.4, 0.3], atol=0.015)
    lay = lines.draw_layouts("mix4", 20_000, rng)
    np.testing.assert_allclose(np.bincount(lay, minlength=4) / lay.size, [0.25, 0.3, 0.25, 0.2],
                               atol=0.015)  # fmt: skip
    lay = lines.draw_layouts("mixed", 20_000, rng)
    assert set(np.unique(lay)) == {0, 1} and 0.48 < lay.mean() < 0.52
    with pytest.raises(ValueError):
        lines.draw_layouts("cursive", 3, rng)


def test_lengths_are_uniform_and_leading_zero_is_an_option(pool):
    _, labels = pool
    digits, lens, idx = lines.sample_numbers(labels, 24_000, np.random.default_rng(3), (1, 12))
    counts = np.bincount(lens, minlength=13)[1:]
    assert counts.min() > 1_750 and counts.max() < 2_250
    valid = np.arange(12) < lens[:, None]
    for pos in range(12):
        c = np.bincount(digits[valid[:, pos], pos], minlength=10)
        assert c.min() > 0.85 * c.mean() and c.max() < 1.15 * c.mean()
    d2, l2, _ = lines.sample_numbers(labels, 24_000, np.random.default_rng(3), (1, 12),
                                     leading_zero=False)  # fmt: skip
    assert d2[l2 > 1, 0].min() == 1 and d2[:, 0].max() == 9
    assert (d2[l2 == 1, 0] == 0).any()  # "0" is a one-digit number, not a leading zero
    with pytest.raises(TypeError):
        lines.sample_numbers(labels, 3, np.random.default_rng(0), False)  # old positional call


def test_width_and_pad_to(pool):
    images, labels = pool
    rng = np.random.default_rng(10)
    out = lines.generate(images, labels, 50, rng, "touching", lengths=(3, 4), width=150)
    assert out.images.shape == (50, 28, 150)
    check_consistent(out, images, labels)
    with pytest.raises(ValueError):
        lines.generate(images, labels, 50, rng, "seed", lengths=6, width=100)
    out = lines.generate(images, labels, 50, rng, "natural", lengths=3, pad_to=16)
    assert out.images.shape == (50, 28, 96) and (out.images[:, :, 84:] == 0).all()
    empty = lines.generate(images, labels, 0, rng, "mix3", lengths=(1, 12))
    assert empty.images.shape == (0, 28, 0) and empty.digits.shape == (0, 12)


def test_natural_keeps_ink_inside_and_in_order_at_every_length(pool):
    images, labels = pool
    p = lines.NaturalParams(vertical_jitter=8.0, scale=(1.0, 1.2))
    for length in LENGTHS:
        rng = np.random.default_rng(length)
        digits, _, idx = lines.sample_numbers(labels, 300, rng, length)
        d = lines.natural_draws(300, rng, p, length)
        patches, x0, y0 = lines.natural_patches(images[idx], d, p)
        top, bottom, left, right = ink_boxes(patches)
        assert (y0 + top >= 0).all() and (y0 + bottom <= 27).all()
        assert (x0 + left >= 0).all() and (x0 + right <= 28 * length - 1).all()
        assert (np.diff(x0, axis=1) > 0).all()


# --- touching ------------------------------------------------------------------------------------


def touching_gaps(images, labels, n, seed, t=None):
    """Gaps (columns of blank) between consecutive digits' ink boxes, as composed."""
    p, t = lines.NaturalParams(), t or lines.TouchingParams()
    rng = np.random.default_rng(seed)
    _, _, idx = lines.sample_numbers(labels, n, rng, 6)
    d = lines.touching_draws(n, rng, p, t, 6)
    patches, x0, y0, widths = lines.touching_patches(images[idx], d, p, t)
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
    wide, _ = touching_gaps(images, labels, 500, 13, lines.TouchingParams(gap_min=6, gap_max=10))
    assert (wide > 0).mean() > 0.9


def test_spaced_digits_are_spaced_by_their_ink_so_a_one_sits_close(mnist_test):
    """Each digit's ink starts round(gap) columns after the previous digit's ink ends, gaps in
    [-2, 8] px: a narrow 1 sits as close to its neighbours as any digit, where the natural
    layout gives it a whole digit's slot."""
    images, labels = mnist_test
    p, t = lines.NaturalParams(), lines.TouchingParams()
    rng = np.random.default_rng(21)
    digits, _, idx = lines.sample_numbers(labels, 1000, rng, 6)
    d = lines.touching_draws(1000, rng, p, t, 6, spaced=True)
    assert d["gap"].min() >= -2 and d["gap"].max() <= 8 and d["gap"].std() > 2
    centres = lines.touching_centres(d["gap"], t.pitch)
    patches, _, top, ink = lines.warp_digits(images[idx], d, p, centres)
    x0, y0, widths = lines.place_spaced(top, ink, d["gap"], d["margin"])
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
    natural = lines.generate(images, labels, 1000, rng, "natural", lengths=6)
    spaced = lines.generate(images, labels, 1000, rng, "spaced", lengths=6)
    assert spaced.widths.mean() < 0.8 * natural.widths.mean()  # 1s and narrow digits close up


def test_touching_params_round_trip_through_json():
    t = lines.TouchingParams(gap_min=-6.0, gap_max=2.0, margin=(1, 5))
    assert lines.TouchingParams.from_dict(json.loads(json.dumps(t.to_dict()))) == t
    p = lines.NaturalParams(scale=(0.7, 1.0), rotation_deg=5.0)
    assert lines.NaturalParams.from_dict(json.loads(json.dumps(p.to_dict()))) == p


# --- determinism, labels, bucketing --------------------------------------------------------------


def test_same_seed_same_bytes_other_seed_other_bytes(pool):
    images, labels = pool

    def run(seed):
        out = lines.generate(images, labels, 200, np.random.default_rng(seed), "mix3",
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
        return lines.generate(images, labels, 300, np.random.default_rng(5), "mix3",
                              lengths=(1, 12)).images  # fmt: skip

    a = run()
    monkeypatch.setattr(lines, "BLOCK_DIGITS", 37)
    np.testing.assert_array_equal(a, run())


def test_strings_round_trip_with_leading_zeros():
    strings = ["0", "007", "123456789012", "10", "", "000000000000", "5"]
    digits, lengths = lines.strings_to_labels(strings)
    assert digits.shape == (7, 12) and digits.dtype == np.uint8
    np.testing.assert_array_equal(lengths, [1, 3, 12, 2, 0, 12, 1])
    np.testing.assert_array_equal(digits[1, :4], [0, 0, 7, 255])
    assert lines.labels_to_strings(digits, lengths) == strings
    d16, _ = lines.strings_to_labels(strings, max_len=16)
    assert d16.shape == (7, 16) and lines.labels_to_strings(d16, lengths) == strings
    with pytest.raises(ValueError):
        lines.strings_to_labels(["12a"])


def test_generated_labels_round_trip(pool):
    images, labels = pool
    out = lines.generate(images, labels, 300, np.random.default_rng(2), "seed", lengths=(1, 12))
    digits, lengths = lines.strings_to_labels(out.strings, max_len=12)
    np.testing.assert_array_equal(digits, out.digits)
    np.testing.assert_array_equal(lengths, out.lengths)
    assert any(s.startswith("0") and len(s) > 1 for s in out.strings)


@pytest.mark.parametrize("pad_to", [16, 32])
def test_bucket_batches_have_similar_widths(pool, pad_to):
    images, labels = pool
    batches = lines.bucket_batches(images, labels, 32, 40, np.random.default_rng(1),
                                   pad_to=pad_to)  # fmt: skip
    assert len(batches) == 40 and all(len(b) == 32 for b in batches)
    padded = sum(b.images.size for b in batches)
    real = sum(28 * b.widths.sum() for b in batches)
    assert 1 - real / padded < 0.15  # little padding
    for b in batches:
        assert b.images.shape[2] % pad_to == 0 and b.images.shape[2] - b.widths.max() < pad_to
    check_consistent(batches[0], images, labels)
    assert len({b.images.shape[2] for b in batches}) <= 336 // pad_to + 1
    all_idx = np.concatenate([b.idx for b in batches])
    assert all_idx.shape == (32 * 40, 12)


def test_length_batch(pool):
    images, labels = pool
    b = lines.length_batch(images, labels, 64, np.random.default_rng(4), pad_to=32)
    assert b.images.shape[2] % 32 == 0 and len(np.unique(b.lengths)) == 1
    assert b.digits.shape == (64, 12)
    check_consistent(b, images, labels)
