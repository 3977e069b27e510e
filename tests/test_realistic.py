"""The realistic test set (``data/realistic.py``): MNIST *test* digits only, labels that match
them, photo-like images (larger, dark ink on light paper, JPEG or PNG), the same bytes for the
same seed, an atomic folder that is never silently replaced, and images the reader can read."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from digitseq.core.errors import DigitseqError
from digitseq.data import realistic
from digitseq.reading import preprocess
from digitseq.reading.predictor import Predictor

N = 12


@pytest.fixture(scope="module")
def realistic_set(tmp_path_factory, mnist_data):
    return realistic.write_realistic_set(
        tmp_path_factory.mktemp("realistic") / "set", N, seed=3, data=mnist_data
    )


def test_labels_are_the_mnist_test_digits_they_name(realistic_set, mnist_data):
    rows = realistic.read_labels(realistic_set)
    assert [name for name, _, _ in rows] == sorted(
        p.name for p in realistic_set.iterdir() if p.suffix in (".jpg", ".png")
    )
    assert len(rows) == N
    for name, label, sources in rows:
        assert name.endswith((".jpg", ".png")) and len(label) == 5 and len(sources) == 5
        assert all(0 <= i < len(mnist_data.test_labels) for i in sources)  # test split only
        assert label == "".join(str(int(mnist_data.test_labels[i])) for i in sources)
    assert {name[-4:] for name, _, _ in rows} == {".jpg", ".png"}  # both kinds of file


def test_images_look_like_ink_on_paper(realistic_set):
    for name, _, _ in realistic.read_labels(realistic_set):
        with Image.open(realistic_set / name) as im:
            assert im.mode in ("L", "RGB")
            gray = np.asarray(im.convert("L"), np.float32) / 255.0
        assert gray.shape[0] >= 3 * 20 and gray.shape[1] > gray.shape[0]  # larger than MNIST
        paper, ink = np.percentile(gray, 90), np.percentile(gray, 1)
        assert paper > 0.6 and paper - ink > 0.3  # dark ink on light paper
        assert preprocess.preprocess(realistic_set / name).shape == (28, 140)


def test_same_seed_same_bytes_other_seed_other_numbers(tmp_path, realistic_set, mnist_data):
    again = realistic.write_realistic_set(tmp_path / "again", N, seed=3, data=mnist_data)
    other = realistic.write_realistic_set(tmp_path / "other", N, seed=4, data=mnist_data)
    for name, _, _ in realistic.read_labels(realistic_set):
        assert (again / name).read_bytes() == (realistic_set / name).read_bytes()
    assert realistic.read_labels(other) != realistic.read_labels(realistic_set)


def test_an_existing_folder_is_replaced_only_when_asked(tmp_path, mnist_data):
    out = tmp_path / "set"
    out.mkdir()
    (out / "mine.txt").write_text("keep")
    with pytest.raises(DigitseqError, match="already exists"):
        realistic.write_realistic_set(out, 2, data=mnist_data)
    assert (out / "mine.txt").read_text() == "keep"
    realistic.write_realistic_set(out, 2, data=mnist_data, overwrite=True)
    assert sorted(p.name for p in out.iterdir())[-1] == "labels.csv"
    assert not (out / "mine.txt").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["set"]  # no temporary folder left


def test_render_number_follows_its_parameters(mnist_data):
    digits = mnist_data.test_images[:5]
    plain = realistic.RealisticParams(
        scale=(4.0, 4.0), p_color=0.0, noise=(0.0, 0.0), texture=(0.0, 0.0), blur=(0.0, 0.0)
    )
    im = realistic.render_number(digits, np.random.default_rng(0), plain)
    assert im.mode == "L" and im.height >= 4 * 20
    colour = realistic.RealisticParams(p_color=1.0)
    assert realistic.render_number(digits, np.random.default_rng(0), colour).mode == "RGB"


def test_the_bundled_reader_reads_them(realistic_set):
    reader = Predictor.load()
    rows = realistic.read_labels(realistic_set)
    readings = reader.predict([realistic_set / name for name, _, _ in rows])
    pairs = [(r.digits, label) for r, (_, label, _) in zip(readings, rows, strict=True)]
    assert sum(read == label for read, label in pairs) >= N - 3, pairs


def test_numbers_of_any_length_from_test_digits(tmp_path, mnist_data):
    out = realistic.write_realistic_set(tmp_path / "any", 24, seed=1, data=mnist_data,
                                        lengths=(1, 12))  # fmt: skip
    rows = realistic.read_labels(out)
    lengths = {len(label) for _, label, _ in rows}
    assert len(rows) == 24 and min(lengths) >= 1 and max(lengths) <= 12 and len(lengths) > 4
    for name, label, sources in rows:
        assert len(sources) == len(label)
        assert label == "".join(str(int(mnist_data.test_labels[i])) for i in sources)
        with Image.open(out / name) as im:
            assert im.width > im.height or len(label) <= 2


def test_a_lone_one_on_paper_is_read_not_refused(mnist_data):
    """A single "1" fills most of its own tight box: it was refused as "far too much ink"
    (12 of 300 MNIST test ones on paper); a bar far narrower than tall is now read."""
    ones = np.flatnonzero(mnist_data.test_labels == 1)[:120]
    rng, params = np.random.default_rng(0), realistic.RealisticParams()
    images = [
        np.asarray(realistic.render_number(mnist_data.test_images[[i]], rng, params).convert("L"))
        for i in ones
    ]
    readings = Predictor.load().predict(images)
    assert [r.error for r in readings if r.error] == []
    assert sum(r.digits == "1" for r in readings) >= 0.95 * len(ones)
    with pytest.raises(DigitseqError, match="far too much ink"):  # a square blob still is not
        preprocess.preprocess(np.pad(np.zeros((60, 60), np.uint8), 40, constant_values=255),
                              line=True)  # fmt: skip
