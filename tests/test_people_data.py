"""Training data like people's writing: pen-trajectory digits, the training fonts (npm, pinned
hashes), low-resolution augmentation, the 'people' layout mix and the training pool's shares."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from digitseq.data import fonts, layouts, sources, strokes
from digitseq.training.augment import augment
from digitseq.training.config import AugmentConfig


def ink_box(cell: np.ndarray) -> tuple[int, int]:
    rows, cols = np.flatnonzero(cell.max(1) > 60), np.flatnonzero(cell.max(0) > 60)
    return rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1


@pytest.mark.parametrize("digit", range(10))
def test_every_pen_shape_of_every_digit_draws_an_mnist_style_cell(digit):
    rng = np.random.default_rng(digit)
    for shape in range(len(strokes.SHAPES[digit])):
        paths = [strokes.catmull_rom(np.asarray(s, float)) for s in strokes.SHAPES[digit][shape]]
        img = strokes.draw(paths, 80, 10)
        assert img.max() == 1.0 and img.shape[0] == 80 + 2 * (10 + 2)
    cells, labels = strokes.stroke_cells(40, rng)
    assert cells.shape == (40, 28, 28) and cells.dtype == np.uint8
    for cell in cells:
        h, w = ink_box(cell)
        assert max(h, w) in range(15, 24)  # MNIST: the ink fits a 20x20 box in the 28x28 cell
        ys, xs = np.indices(cell.shape)
        cy, cx = (ys * cell).sum() / cell.sum(), (xs * cell).sum() / cell.sum()
        assert abs(cy - 14) < 2 and abs(cx - 14) < 2  # centred by mass, as MNIST


def test_pen_digits_vary_in_shape_and_cover_every_class():
    cells, labels = strokes.stroke_cells(300, np.random.default_rng(0))
    assert set(labels.tolist()) == set(range(10))
    ones = cells[labels == 1].astype(np.float32)
    assert ones.std(axis=0).mean() > 15  # not one template drawn again and again


def test_training_fonts_are_fetched_verified_and_draw_ten_digits(tmp_path):
    families = ["caveat", "reenie-beanie"]
    paths = fonts.fetch(tmp_path, families)
    assert [p.name for p in paths] == [f"{f}-latin-400-normal.woff2" for f in families]
    assert fonts.fetch(tmp_path, families) == paths  # cached: npm is not asked again
    cells, labels = fonts.font_cells(paths, 200, np.random.default_rng(0))
    assert cells.shape == (200, 28, 28) and set(labels.tolist()) == set(range(10))
    h, w = zip(*(ink_box(c) for c in cells), strict=True)
    assert 17 <= np.median(h) <= 21
    means = [cells[labels == d].astype(np.float32).mean(0) for d in range(10)]
    assert min(np.abs(means[a] - means[b]).mean() for a in range(10) for b in range(a)) > 5


def test_a_font_whose_hash_differs_is_refused(tmp_path, monkeypatch):
    from digitseq.core.errors import DigitseqError

    monkeypatch.setitem(fonts.FAMILIES, "caveat", "0" * 64)
    with pytest.raises(DigitseqError, match="SHA-256"):
        fonts.fetch(tmp_path, ["caveat"])
    assert not list(tmp_path.iterdir())


def test_low_resolution_augmentation_blurs_lines_as_small_writing_does():
    x = torch.zeros(8, 1, 28, 140)
    x[:, :, 4:24, 10:12] = 1.0  # a sharp vertical stroke
    cfg = AugmentConfig(rotation_deg=0, scale=0, shift_x=0, shift_y=0, shear=0, p_thick=0,
                        p_thin=0, p_blur=0, gamma=0, noise=0, p_lowres=1.0)  # fmt: skip
    y = augment(x, cfg, torch.Generator().manual_seed(0))
    assert y.shape == x.shape
    edge = (y[:, 0, 14, 8:15] > 0.05).sum(1)  # the stroke smeared over more columns
    assert (edge > 2).all()
    off = augment(x, AugmentConfig(**{**cfg.to_dict(), "p_lowres": 0.0}), torch.Generator())
    assert torch.allclose(off, x, atol=1e-4)


def test_people_mix_spaces_most_numbers_by_their_ink():
    ids = layouts.draw_layouts("people", 20_000, np.random.default_rng(0))
    share = np.bincount(ids, minlength=4) / len(ids)
    assert abs(share[layouts.LAYOUT_IDS["spaced"]] - 0.45) < 0.02
    assert abs(share[layouts.LAYOUT_IDS["seed"]] - 0.15) < 0.02


def test_the_training_pool_holds_the_shares_asked_for(mnist_data, monkeypatch):
    images, labels = mnist_data.train_images[:1000], mnist_data.train_labels[:1000]
    monkeypatch.setattr(fonts, "FAMILIES", {"caveat": fonts.FAMILIES["caveat"]})
    spec = sources.DataSpec(lines=True, p_drawn=0.1, p_font=0.1, p_pen=0.2)
    pool, pool_labels = sources.digit_pool(images, labels, spec)
    assert len(pool) == 1000 + 167 + 167 + 333  # shares of 0.6 MNIST: 1/6, 1/6, 1/3
    assert np.array_equal(pool[:1000], images)  # MNIST digits first, untouched
    assert pool.dtype == np.uint8 and len(pool_labels) == len(pool)
