"""A time limit is a budget the run plans for: the LR schedule anneals within it (resumes
included), --precision fp32 is what runs, and a run killed before its first epoch starts over."""

from __future__ import annotations

import json

import pytest
import torch

from digitseq.apps.cli import main
from digitseq.training.config import TrainConfig
from digitseq.training.loop import Budget, lr_factor, make_scheduler


def test_the_schedule_follows_the_larger_of_steps_done_and_budget_spent():
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    budget = Budget(minutes=10, spent=0.0)
    sched = make_scheduler(opt, total_steps=100 * 100, warmup=0.05, budget=budget)
    for _ in range(600):  # 6% of the steps: just past warm-up, LR near its peak
        opt.step()
        sched.step()
    assert sched.get_last_lr()[0] > 0.95
    budget.before = 5 * 60  # half the budget spent (e.g. restored from last.pth)
    opt.step()
    sched.step()
    assert sched.get_last_lr()[0] == pytest.approx(lr_factor(0.5, 0.05), abs=1e-3)
    budget.before = 10 * 60
    opt.step()
    sched.step()
    assert sched.get_last_lr()[0] == pytest.approx(0.01)  # annealed: 1% of the peak
    assert budget.spent_out()


def test_without_a_time_limit_the_schedule_follows_steps_only():
    budget = Budget(minutes=0)
    assert budget.fraction() == 0.0 and not budget.spent_out()
    assert lr_factor(0.0, 0.1) < 0.02 and lr_factor(0.1, 0.1) == pytest.approx(1.0)
    assert lr_factor(1.0, 0.1) == pytest.approx(0.01)


def test_a_run_cut_by_its_time_budget_ends_annealed_in_fp32(tmp_path):
    out = tmp_path / "run"
    argv = ["-q", "train", "--preset", "ctc-tiny", "--epochs", "1000", "--steps-per-epoch", "5",
            "--time-limit", "0.15", "--precision", "fp32", "--out", str(out)]  # fmt: skip
    assert main.main(argv) == 0
    hist = json.loads((out / "history.json").read_text())
    cfg = json.loads((out / "config.json").read_text())
    assert 1 < len(hist) < 1000  # stopped by time, not by epochs
    assert hist[-1]["lr"] <= 0.02 * cfg["train"]["lr"]  # ...with the LR annealed
    assert max(r["lr"] for r in hist) > 0.5 * cfg["train"]["lr"]
    assert cfg["bf16"] is False and cfg["train"]["precision"] == "fp32"
    state = torch.load(out / "last.pth", weights_only=True)
    assert 0.6 * 9 <= state["seconds"] <= 1.2 * 9  # the budget was used, and kept to


def test_a_run_killed_before_its_first_epoch_can_be_resumed_or_restarted(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    # what a kill during data building leaves: the config, no checkpoint, no history
    (out / "config.json").write_text(json.dumps({"train": TrainConfig().to_dict() | {
        "arch": "ctc", "hparams": {"channels": [8, 16, 32], "hidden": 64, "context": 1},
        "layout": "seed", "lengths": [1, 6], "epochs": 1, "steps_per_epoch": 5,
        "batch_size": 16, "val_size": 50, "workers": 0}}))  # fmt: skip
    assert main.main(["-q", "train", "--resume", "--out", str(out)]) == 0
    assert len(json.loads((out / "history.json").read_text())) == 1
    out2 = tmp_path / "run2"
    out2.mkdir()
    (out2 / "config.json").write_text((out / "config.json").read_text())
    argv = ["-q", "train", "--preset", "ctc-tiny", "--epochs", "1", "--steps-per-epoch", "3",
            "--out", str(out2)]  # fmt: skip
    assert main.main(argv) == 0


def test_an_unknown_precision_is_a_one_line_error(capsys):
    with pytest.raises(SystemExit):
        main.main(["train", "--precision", "fp8"])
    assert "invalid choice" in capsys.readouterr().err
