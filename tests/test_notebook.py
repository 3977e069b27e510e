"""notebooks/Visualization.ipynb runs end to end on a small run and dataset, and is committed
without outputs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "Visualization.ipynb"


def test_notebook_is_committed_without_outputs():
    nb = json.loads(NOTEBOOK.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert code and all(c["outputs"] == [] and c["execution_count"] is None for c in code)
    assert "DIGITSEQ_NOTEBOOK_RUN" in "".join(code[0]["source"])


@pytest.mark.slow
def test_notebook_executes(tmp_path, monkeypatch, random_model_dir, small_dataset):
    import nbformat
    from nbclient import NotebookClient

    run = tmp_path / "run"
    shutil.copytree(random_model_dir, run)
    history = [
        {
            "epoch": e,
            "train_loss": 1.0 / e,
            "train_digit_acc": 0.9,
            "train_seq_acc": 0.6,
            "val_loss": 1.1 / e,
            "val_digit_acc": 0.9,
            "val_seq_acc": 0.6,
            "lr": 1e-3,
            "seconds": 5.0,
        }
        for e in (1, 2)
    ]
    (run / "history.json").write_text(json.dumps(history))
    monkeypatch.setenv("DIGITSEQ_NOTEBOOK_RUN", str(run))
    monkeypatch.setenv("DIGITSEQ_NOTEBOOK_DATA", str(small_dataset))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    pngs = [o for o in outputs if "image/png" in o.get("data", {})]
    figure_cells = [c for c in nb.cells if c.cell_type == "code" and c.source.startswith("plots.")]
    assert len(figure_cells) >= 10 and len(pngs) == len(figure_cells)  # one picture each
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "seq acc" in text and "natural" in text and "1,000 sequences" in text
    assert not (run / "eval").exists() and not (run / "report").exists()  # only looks
