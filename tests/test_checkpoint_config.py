"""A model folder whose config.json disagrees with its weights, or asks for an impossible model,
fails in one line, quickly, without allocating the model it describes."""

from __future__ import annotations

import json
import resource
import shutil
import time

import pytest
from helpers import assert_one_line_error

from digitseq.apps.cli import main


def bad_model(random_model_dir, tmp_path, **hparams):
    folder = tmp_path / "model"
    shutil.copytree(random_model_dir, folder)
    cfg = json.loads((folder / "config.json").read_text())
    cfg["model"]["hparams"].update(hparams)
    (folder / "config.json").write_text(json.dumps(cfg))
    return folder


@pytest.mark.parametrize(
    "hparams, words",
    [
        ({"hidden": -5}, "impossible model hyper-parameters"),
        ({"dropout": 3.0}, "impossible model hyper-parameters"),
        ({"channels": [100000, 100000, 64]}, "does not fit"),  # would be ~360 GB
        ({"channels": [4096, 32, 64]}, "does not fit"),
    ],
)
def test_impossible_or_mismatched_config_is_one_line(random_model_dir, tmp_path, capsys,
                                                     hparams, words):  # fmt: skip
    folder = bad_model(random_model_dir, tmp_path, **hparams)
    image = tmp_path / "a.png"
    image.write_bytes(b"not read")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.monotonic()
    code = main.main(["-q", "predict", "--model", str(folder), str(image)])
    err = capsys.readouterr().err
    assert_one_line_error(code, err, words)
    assert time.monotonic() - t0 < 3
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mb < 200
