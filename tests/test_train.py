"""Training: the run folder, resume after a kill, DDP on 2 CPU processes, the registry."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import assert_one_line_error

from digitseq.apps.cli import main
from digitseq.models import checkpoint, decoders, registry

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


@pytest.mark.parametrize("arch", registry.list_models())
def test_every_model_gives_logits_of_its_kind_and_trains(arch):
    model = registry.build_model(arch)
    x = torch.rand(3, 1, 28, 140)
    logits = model(x)
    if registry.kind(arch) == "ctc":  # one frame per 4 columns, blank + 10 digits
        assert logits.shape == (3, 35, 11)
        assert model(torch.rand(2, 1, 28, 336)).shape == (2, 84, 11)  # any width
    else:
        assert logits.shape == (3, 5, 10)
    digits = torch.tensor([[1, 2, 3, 4, 5], [0, 0, 7, 0, 0], [9, 9, 9, 9, 9]])
    lengths, widths = torch.tensor([5, 3, 1]), torch.full((3,), 140)
    head = registry.head(arch)
    # the registry's head and the reader's decoder agree on what the outputs are
    assert decoders.kind_of(logits[:1].detach().numpy()) == head.kind
    assert len(head.strings(logits, widths)) == 3
    loss = head.loss(logits, digits, lengths, widths)
    assert torch.isfinite(loss)
    loss.backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_unknown_architecture_lists_the_valid_ones():
    with pytest.raises(ValueError, match="multihead"):
        registry.build_model("resnet9000")


def test_tiny_run_folder_has_everything_and_reloads(tiny_run):
    names = {p.name for p in tiny_run.iterdir()}
    assert {
        "weights.pth",
        "best.pth",
        "last.pth",
        "config.json",
        "history.json",
        "history.csv",
    } <= names
    cfg = json.loads((tiny_run / "config.json").read_text())
    assert cfg["model"]["arch"] == "multihead"
    assert cfg["train"]["epochs"] == len(json.loads((tiny_run / "history.json").read_text()))
    assert 0.2 < cfg["calibration"]["temperature"] < 5
    # plain state_dict: loads with weights_only=True and rebuilds with no flags
    state = torch.load(tiny_run / "best.pth", weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in state.values())
    model, _ = checkpoint.load_model(tiny_run)
    assert model(torch.rand(2, 1, 28, 140)).shape == (2, 5, 10)
    rows = (tiny_run / "history.csv").read_text().splitlines()
    assert rows[0].startswith("epoch,train_loss,train_digit_acc,train_seq_acc,val_loss")
    assert len(rows) == 1 + cfg["train"]["epochs"]


def test_tiny_run_learned_something(tiny_run):
    hist = json.loads((tiny_run / "history.json").read_text())
    assert hist[-1]["val_digit_acc"] > 0.3  # chance is 0.1
    assert hist[-1]["train_loss"] < hist[0]["train_loss"]


def test_killed_run_resumes_to_the_same_length(tmp_path):
    out = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "digitseq",
        "-q",
        "train",
        "--preset",
        "tiny",
        "--epochs",
        "4",
        "--steps-per-epoch",
        "20",
        "--out",
        str(out),
    ]
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while time.time() < deadline:  # kill it as soon as the first epoch is checkpointed
        hist = out / "history.json"
        if hist.is_file() and len(json.loads(hist.read_text() or "[]")) >= 1:
            break
        assert proc.poll() is None, proc.stderr.read().decode()
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = len(json.loads((out / "history.json").read_text()))
    assert 1 <= done < 4, "the run should have been killed midway"
    assert main.main(["-q", "train", "--resume", "--out", str(out)]) == 0
    hist = json.loads((out / "history.json").read_text())
    assert [r["epoch"] for r in hist] == [1, 2, 3, 4]
    model, _ = checkpoint.load_model(out)
    assert model(torch.rand(1, 1, 28, 140)).shape == (1, 5, 10)


def test_ddp_on_two_cpu_processes(tmp_path):
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    assert torchrun, "torchrun ships with torch"
    out = tmp_path / "ddp"
    cmd = [
        torchrun,
        "--standalone",
        "--nproc-per-node",
        "2",
        "-m",
        "digitseq",
        "-q",
        "train",
        "--preset",
        "tiny",
        "--epochs",
        "2",
        "--steps-per-epoch",
        "8",
        "--out",
        str(out),
    ]
    res = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["world_size"] == 2
    assert len(json.loads((out / "history.json").read_text())) == 2
    checkpoint.load_model(out)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "--arch", "nope"], "unknown architecture"),
        (["train", "--preset", "huge"], "unknown preset"),
        (["train", "--resume"], "--resume needs --out"),
    ],
)
def test_bad_train_options_are_one_line_errors(argv, message, capsys):
    assert_one_line_error(main.main(argv), capsys.readouterr().err, message)


def test_resume_without_checkpoint_and_existing_run(tmp_path, tiny_run, capsys):
    assert main.main(["train", "--resume", "--out", str(tmp_path / "none")]) == 2
    assert "nothing to resume" in capsys.readouterr().err
    assert main.main(["-q", "train", "--preset", "tiny", "--out", str(tiny_run)]) == 2
    assert "already holds a run" in capsys.readouterr().err


def test_train_on_a_stored_dataset(tmp_path, small_dataset):
    out = tmp_path / "stored"
    argv = [
        "-q",
        "train",
        "--preset",
        "tiny",
        "--data",
        str(small_dataset),
        "--epochs",
        "1",
        "--out",
        str(out),
    ]
    assert main.main(argv) == 0
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["train"]["data"] == str(small_dataset)


def test_multihead_stages_are_configurable():
    for hp in ({"channels": (8, 16), "hidden": 32}, {"depth": (1, 2, 2)}):
        model = registry.build_model("multihead", **hp)
        assert model(torch.rand(2, 1, 28, 140)).shape == (2, 5, 10)
    with pytest.raises(ValueError):
        registry.build_model("multihead", channels=(8, 16), depth=(1, 1, 1))


def test_ctc_loss_refuses_labels_that_are_not_digits():
    """A padding value (255) inside a number's length would make torch read out of bounds (a
    'double free' crash in training): a clear error instead, and fine labels still work."""
    from digitseq.models.ctc import ctc_loss

    logits = torch.randn(2, 20, 11)
    frames, lengths = torch.tensor([20, 20]), torch.tensor([3, 12])
    good = torch.tensor([[1, 2, 3] + [0] * 9, list(range(10)) + [4, 5]])
    assert torch.isfinite(ctc_loss(logits, good, lengths, frames))
    bad = good.clone()
    bad[1, 11] = 255
    with pytest.raises(ValueError, match="digits 0-9"):
        ctc_loss(logits, bad, lengths, frames)


@pytest.mark.parametrize("preset, layout", [("tiny", "touching"), ("ctc-tiny", "mix3")])
def test_every_layout_can_be_trained_from_the_command_line(tmp_path, preset, layout):
    out = tmp_path / "run"
    argv = ["-q", "train", "--preset", preset, "--layout", layout, "--epochs", "1",
            "--steps-per-epoch", "3", "--val-size", "64", "--out", str(out)]  # fmt: skip
    assert main.main(argv) == 0
    assert json.loads((out / "config.json").read_text())["train"]["layout"] == layout


def test_distill_loss_is_the_kl_to_the_teacher_over_real_frames():
    from digitseq.models.ctc import distill_loss

    gen = torch.Generator().manual_seed(0)
    teacher = torch.randn(3, 10, 11, generator=gen)
    lengths, frames = torch.tensor([2, 3, 1]), torch.tensor([10, 6, 4])
    assert float(distill_loss(teacher.clone(), teacher, lengths, frames)) == pytest.approx(
        0, abs=1e-6
    )
    student = torch.randn(3, 10, 11, generator=gen, requires_grad=True)
    loss = distill_loss(student, teacher, lengths, frames)
    assert float(loss) > 0.1
    padded = student.detach().clone()
    padded[1, 6:], padded[2, 4:] = 50.0, -50.0  # frames past a line's real width do not count
    assert float(distill_loss(padded, teacher, lengths, frames)) == pytest.approx(float(loss))
    loss.backward()  # a step down the gradient brings the student's frames toward the teacher's
    moved = (student - 0.5 * student.grad).detach()
    assert float(distill_loss(moved, teacher, lengths, frames)) < float(loss)


def test_a_teacher_teaches_only_the_lines_it_reads_right():
    """The KL counts only the kept numbers (the teacher's errors are not learned), and a teacher
    of digits teaches a reader of text over the classes it knows (blank and digits)."""
    from digitseq.models.ctc import distill_loss, line_distill

    gen = torch.Generator().manual_seed(1)
    teacher, student = torch.randn(2, 8, 11, generator=gen), torch.randn(2, 8, 11, generator=gen)
    lengths, frames = torch.tensor([2, 2]), torch.tensor([8, 8])
    both = distill_loss(student, teacher, lengths, frames)
    first = distill_loss(student, teacher, lengths, frames, torch.tensor([True, False]))
    second = distill_loss(student, teacher, lengths, frames, torch.tensor([False, True]))
    assert float(first) > 0 and float(second) > 0
    assert float(first) + float(second) == pytest.approx(float(both))

    # a reader of text (20 classes) is taught over the teacher's blank and digits: one that
    # copies the teacher there is at KL 0 whatever mass it gives the separators (the CTC loss
    # on the labels decides those); one that differs on the digits is not
    text = torch.cat([teacher, torch.full((2, 8, 9), -1e4)], -1)
    assert float(distill_loss(text, teacher, lengths, frames)) == pytest.approx(0, abs=1e-5)
    text[..., 11:] = teacher.max(-1, keepdim=True).values
    assert float(distill_loss(text, teacher, lengths, frames)) == pytest.approx(0, abs=1e-5)
    text[..., :11] = student.detach()
    assert float(distill_loss(text, teacher, lengths, frames)) == pytest.approx(float(both))
    with pytest.raises(ValueError, match="cannot teach a reader of digits"):
        distill_loss(teacher, text, lengths, frames)

    # line_distill keeps a line when the teacher's greedy reading is its label: teacher frames
    # that spell "12" (blank 1 blank 2 blank ...), truth "12" for the first line, "13" for the
    # second
    spell = torch.full((2, 8, 11), -9.0)
    spell[:, :, 0] = 9.0
    spell[:, 1, 0], spell[:, 1, 2] = -9.0, 9.0
    spell[:, 3, 0], spell[:, 3, 3] = -9.0, 9.0
    widths = torch.tensor([32, 32])  # 8 frames each
    kept = line_distill(student, spell, lengths, widths, ["12", "13"])
    only_first = distill_loss(student, spell, lengths, frames, torch.tensor([True, False]))
    assert float(kept) == pytest.approx(float(only_first))


def test_a_reader_distilled_from_a_teacher_moves_toward_it(tmp_path, bundled_model_dir):
    """The same tiny run with and without the bundled reader as teacher: the distilled one's
    frame posteriors on val numbers are closer to the teacher's, and its config names it."""
    from digitseq.data import compose, loaders, mnist
    from digitseq.models.ctc import distill_loss, frame_counts
    from digitseq.models.devices import to_input

    common = ["-q", "train", "--preset", "ctc-tiny", "--epochs", "1", "--steps-per-epoch", "15",
              "--val-size", "64"]  # fmt: skip
    assert main.main([*common, "--out", str(tmp_path / "plain")]) == 0
    argv = [*common, "--teacher", str(bundled_model_dir), "--distill", "3", "--out"]
    assert main.main([*argv, str(tmp_path / "taught")]) == 0
    cfg = json.loads((tmp_path / "taught" / "config.json").read_text())
    assert cfg["train"]["teacher"] == str(bundled_model_dir) and cfg["train"]["distill"] == 3

    m = mnist.load()
    pool, labels, _ = mnist.split_pool(m, "val")
    lines = compose.generate(pool, labels, 64, np.random.default_rng(5), "seed", lengths=(1, 6),
                             pad_to=32)  # fmt: skip
    img, _, lengths, widths = loaders.line_batch(lines)
    x, frames = to_input(img, torch.device("cpu")), frame_counts(widths)
    teacher = checkpoint.unwrap(checkpoint.load_model(bundled_model_dir)[0])
    with torch.no_grad():
        soft = teacher(x)
        kl = {
            name: float(
                distill_loss(checkpoint.load_model(tmp_path / name)[0](x), soft, lengths, frames)
            )
            for name in ("plain", "taught")
        }
    assert kl["taught"] < 0.8 * kl["plain"], kl


def test_a_reader_of_text_learns_from_a_digit_teacher(tmp_path, bundled_model_dir, capsys):
    common = ["-q", "train", "--preset", "text-tiny", "--epochs", "1", "--steps-per-epoch", "4",
              "--val-size", "32"]  # fmt: skip
    taught = tmp_path / "taught"
    argv = [*common, "--teacher", str(bundled_model_dir), "--out", str(taught)]
    assert main.main(argv) == 0
    cfg = json.loads((taught / "config.json").read_text())
    assert cfg["model"]["hparams"]["alphabet"] == "text"
    argv = ["train", "--preset", "ctc-tiny", "--teacher", str(taught), "--out",
            str(tmp_path / "digits")]  # fmt: skip
    capsys.readouterr()  # the first run's output
    code = main.main(argv)
    assert_one_line_error(code, capsys.readouterr().err, "cannot teach a reader of digits")


def test_a_teacher_must_be_a_ctc_reader(tmp_path, bundled_model_dir, capsys):
    multihead = bundled_model_dir.parent / "digitseq-multihead"
    argv = ["train", "--preset", "ctc-tiny", "--teacher", str(multihead), "--out",
            str(tmp_path / "r")]  # fmt: skip
    assert_one_line_error(main.main(argv), capsys.readouterr().err, "not a CTC line reader")


@pytest.mark.parametrize("preset, arch", [("ctc-tiny", "ctc"), ("tiny", "multihead")])
def test_the_training_benchmark_runs_both_kinds_of_reader(preset, arch, mnist_data):
    """`make bench` times training with benchmarks/bench_train.py: it runs a line reader on
    lines and a 5-digit baseline on 28x140 images, fp32 beside bf16, and says so in its JSON."""
    bench = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_train.py"
    argv = [sys.executable, str(bench), "--preset", preset, "--steps", "2", "--threads", "1"]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=True).stdout
    res = json.loads(out.strip().splitlines()[-1])
    assert (res["arch"], res["preset"]) == (arch, preset)
    assert res["fp32_numbers_per_s"] > 0 and res["auto_numbers_per_s"] > 0
