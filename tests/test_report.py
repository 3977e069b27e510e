"""``digitseq report``: the PNGs and a self-contained report.html; and the figures themselves
(architecture diagram from every registered model, training curves from history.json)."""

from __future__ import annotations

import base64
import json
import re
import shutil

import numpy as np
import pytest
from helpers import assert_one_line_error
from matplotlib.figure import Figure

from digitseq.apps.cli import main
from digitseq.evaluation import plots, report
from digitseq.models import registry

HISTORY = [  # exactly the keys the trainer writes per epoch
    {
        "epoch": e,
        "train_loss": 2.0 / e,
        "train_digit_acc": 0.5 + 0.1 * e,
        "train_seq_acc": 0.1 * e,
        "val_loss": 2.1 / e,
        "val_digit_acc": 0.5 + 0.09 * e,
        "val_seq_acc": 0.09 * e,
        "lr": 1e-3 / e,
        "seconds": 10.0 * e,
    }
    for e in (1, 2, 3)
]


@pytest.fixture
def run_with_history(tmp_path, random_model_dir):
    run = tmp_path / "run"
    shutil.copytree(random_model_dir, run)
    (run / "history.json").write_text(json.dumps(HISTORY))
    return run


def test_report_writes_a_self_contained_html(capsys, run_with_history, small_dataset):
    code = main.main(["-q", "report", str(run_with_history), "--data", str(small_dataset)])
    out, err = capsys.readouterr()
    assert code == 0, err
    folder = run_with_history / "report"
    assert f"report written to {folder / 'report.html'}" in out and "seq acc" in out
    html = (folder / "report.html").read_text()
    # the metrics tables
    assert html.count("<table>") >= 5
    for text in (
        "seq acc",
        "digit acc",
        "CER",
        "ECE",
        "acc @ 95% coverage",
        "natural",
        "seed",
        "Accuracy per true digit",
        "Most confident errors",
        "epochs in history",
    ):
        assert text in html, text
    assert "<td>epochs in history</td><td>3</td>" in html
    # every picture embedded, none linked from outside
    uris = re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", html)
    assert len(uris) == len(report.SECTIONS) - 1  # all but the per-length one (any length)
    assert all(base64.b64decode(u).startswith(b"\x89PNG") for u in uris)
    assert not re.search(r"src=['\"](?!data:)", html)
    pngs = sorted(p.name for p in folder.glob("*.png"))
    assert pngs == sorted(png for _, png in report.SECTIONS if png != "length_accuracy.png")
    assert json.loads((folder / "metrics.json").read_text())["n"] == 1000
    assert "![training curves](training_curves.png)" in (folder / "report.md").read_text()


def test_write_report_for_make_demo(tmp_path, random_model_dir, small_dataset):
    out = tmp_path / "somewhere"
    path = report.write_report(random_model_dir, small_dataset, out, limit=200)
    assert path == out / "report.html" and path.is_file()
    assert "<td>epochs in history</td><td>0</td>" in path.read_text()  # run without history
    assert not (random_model_dir / "report").exists()


def test_report_bad_input(capsys, tmp_path, run_with_history, small_dataset):
    code = main.main(["-q", "report", str(tmp_path / "missing"), "--data", str(small_dataset)])
    assert_one_line_error(code, capsys.readouterr().err, "does not exist")
    (run_with_history / "history.json").write_text("{not json")
    code = main.main(["-q", "report", str(run_with_history), "--data", str(small_dataset)])
    assert_one_line_error(code, capsys.readouterr().err, "history.json is not valid JSON")
    code = main.main(["-q", "report", str(run_with_history), "--data", str(tmp_path / "nodata")])
    assert_one_line_error(code, capsys.readouterr().err, "digitseq generate")


@pytest.mark.parametrize("arch", registry.list_models())
def test_architecture_comes_from_the_model(arch):
    model = registry.build_model(arch)
    rows = plots.layer_table(model)
    # five 10-way heads, or a CTC line reader's 11-class frames (one per 4 columns of 140)
    assert rows[-1]["shape"] == ([1, 35, 11] if registry.kind(arch) == "ctc" else [1, 5, 10])
    assert sum(r["params"] for r in rows) == registry.count_parameters(model)
    convs = [r for r in rows if r["layer"].startswith("Conv")]
    assert convs and "1→" in convs[0]["layer"]  # the first convolution reads the one channel
    assert model.training  # the diagram leaves the model's mode alone
    assert isinstance(plots.architecture_diagram(model), Figure)


def test_layer_shapes_of_multihead():
    rows = plots.layer_table(registry.build_model("multihead", channels=(8, 16), hidden=32))
    shapes = [r["shape"] for r in rows if r["layer"].startswith(("Conv", "MaxPool"))]
    assert shapes[0] == [1, 8, 28, 140] and shapes[2] == [1, 8, 14, 70]
    assert shapes[-1] == [1, 16, 7, 35]
    boxes = plots.boxes(rows, 1)
    assert any(b["layer"] == "Conv 3×3, 1→8 + BatchNorm + ReLU" for b in boxes)


def test_training_curves_and_other_figures():
    fig = plots.training_curves(HISTORY)
    assert len(fig.axes) == 4
    loss = fig.axes[0].get_lines()
    assert [ln.get_label() for ln in loss] == ["train", "val"]
    assert list(loss[0].get_ydata()) == pytest.approx([h["train_loss"] for h in HISTORY])
    assert list(fig.axes[1].get_lines()[1].get_ydata()) == pytest.approx(
        [100 * h["val_digit_acc"] for h in HISTORY]
    )
    assert isinstance(plots.training_curves([]), Figure)  # a run without history
    images = np.zeros((4, 28, 140), np.uint8)
    labels = np.zeros((4, 5), np.uint8)
    fig = plots.dataset_samples(images, labels, np.array([0, 1, 0, 1]), per_layout=2)
    assert len(fig.axes) == 4
    assert isinstance(plots.error_gallery(images, []), Figure)  # a perfect model
