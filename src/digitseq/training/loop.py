"""The pieces of a training run: one epoch, the optimizer, the LR schedule and its
time budget, the run's log. ``fit`` (fit.py) strings them together."""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import torch
import torch.distributed as dist

from digitseq.core.progress import progress_bar
from digitseq.models import ctc_decode
from digitseq.models.devices import autocast, to_input
from digitseq.models.inference import true_strings
from digitseq.training.augment import augment
from digitseq.training.calibration import calibrate_run

log = logging.getLogger("digitseq.training.fit")  # one logger for the run's messages

# --- one epoch ------------------------------------------------------------------------------


def train_one_epoch(
    model, loader, opt, sched, ema, gen, dev, *, head, augment_cfg, precision="auto",
    label_smoothing=0.0, teacher=None, distill=0.0, bar=None, budget=None,
):  # fmt: skip
    """One pass over ``loader`` (stopped early when the ``budget`` clock runs out) with the
    ``head``'s loss; with a ``teacher`` (a CTC reader on the same frame grid) the loss adds
    ``distill`` times the KL from its frame posteriors on the augmented lines it reads right."""
    model.train()
    tot_loss = right = errors = chars = n = 0
    t0 = time.perf_counter()
    for img, digits, lengths, widths in loader:
        x = augment(to_input(img, dev), augment_cfg, gen)
        digits, lengths = digits.to(dev, non_blocking=True), lengths.to(dev)
        on_dev = widths.to(dev)
        with autocast(dev, precision):
            logits = model(x)  # (B, 5, 10) or (B, T, 11)
        loss = head.loss(logits, digits, lengths, on_dev, label_smoothing)
        truth = true_strings(digits, lengths)
        if teacher is not None:
            with torch.no_grad(), autocast(dev, precision):
                soft = teacher(x)
            loss = loss + distill * head.distill(logits, soft, lengths, on_dev, truth)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if ema is not None:
            ema.update()
        with torch.no_grad():
            hits, e, c = ctc_decode.score(head.strings(logits, widths), truth)
            r, b = int(hits.sum()), len(img)
            tot_loss += loss.item() * b
            right, errors, chars, n = right + r, errors + e, chars + c, n + b
        if bar is not None:
            bar.update(b)
            bar.set_postfix(
                loss=f"{tot_loss / n:.3f}",
                seq=f"{right / n:.3f}",
                rate=f"{n / (time.perf_counter() - t0):.0f}/s",
                refresh=False,  # tqdm redraws at its own interval (rarely off a terminal)
            )
        if budget is not None and budget.spent_out():
            break
    seen, n = n, max(n, 1)
    return {
        "numbers": seen,  # fewer than an epoch's when the time budget ran out
        "train_loss": tot_loss / n,
        "train_digit_acc": max(0.0, 1 - errors / max(chars, 1)),
        "train_seq_acc": right / n,
    }


# --- weights, schedule ----------------------------------------------------------------------------


class Budget:
    """The wall-clock budget of a time-limited run (``minutes`` 0: none), counted across
    resumes: ``spent`` seconds so far (restored from last.pth) plus this process's time.
    Training plans for the budget less ``reserve`` (the last validation and checkpoint took
    that long), so the final epoch's validation fits inside it."""

    def __init__(self, minutes: float, spent: float = 0.0):
        self.seconds, self.before, self.t0 = minutes * 60, spent, time.perf_counter()
        self.reserve = 0.0

    def spent(self) -> float:
        return self.before + time.perf_counter() - self.t0

    def fraction(self) -> float:
        if not self.seconds:
            return 0.0
        return min(1.0, self.spent() / max(1e-9, self.seconds - self.reserve))

    def spent_out(self) -> bool:
        return bool(self.seconds) and self.fraction() >= 1.0


def lr_factor(progress: float, warmup: float) -> float:
    """Linear warm-up over the first ``warmup`` of the run, then cosine to 1% of the peak."""
    if progress < warmup:
        return max(progress, 1e-3) / warmup
    t = min(1.0, (progress - warmup) / max(1e-9, 1 - warmup))
    return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * t))


def make_scheduler(opt, total_steps: int, warmup: float, budget: Budget):
    """The LR follows the run's progress: the larger of the share of steps done and, with a time
    limit, the share of the time budget spent, so a run cut by time ends annealed."""

    def factor(step: int) -> float:
        return lr_factor(max((step + 1) / total_steps, budget.fraction()), warmup)

    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


def adamw(model: torch.nn.Module, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW with no weight decay on biases and norms."""
    params = list(model.parameters())
    return torch.optim.AdamW(
        [
            {"params": [p for p in params if p.ndim > 1], "weight_decay": weight_decay},
            {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0},
        ],
        lr=lr,
    )


def stop(patience: int, stale: int, budget: Budget, epoch: int) -> str | None:
    """Why training ends after this epoch (no val gain in ``patience`` epochs, or the time budget
    spent), or None when it goes on."""
    if patience and stale >= patience:
        return f"early stop: no val gain in {patience} epochs"
    if budget.spent_out():
        return f"time budget spent after epoch {epoch + 1} (the schedule ends there)"
    return None


# --- the run's log --------------------------------------------------------------------------------


def finish(out: Path, val: list, dev: torch.device, main: bool, world: int, why=None) -> None:
    """The end of a run: ``why`` it stopped before its last epoch (if it did) in the log, its
    temperature calibrated on val for its best weights (main process), the processes parted."""
    if why:
        log.info(why)
    if main and (out / "best.pth").is_file():
        log.info("calibrated on val: temperature %.3f", calibrate_run(out, val, dev)["temperature"])
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()


def epoch_bar(epoch: int, epochs: int, total: int, show: bool):
    """The progress bar of one epoch (numbers seen, loss, accuracy, rate); off when not shown."""
    return progress_bar(total=total, desc=f"epoch {epoch + 1}/{epochs}", unit="num",
                        disable=not show, leave=False)  # fmt: skip


def epoch_row(
    epoch: int, trained: dict, scores: dict, lr: float, t0: float, budget: Budget
) -> dict:
    """One row of the run's history: the epoch, its training and val figures, the LR, the
    seconds since ``t0`` and the numbers seen. The ``budget`` keeps twice the validation's time
    in reserve (for the last validation and the checkpoint after it)."""
    budget.reserve = 2 * scores.pop("seconds")
    seen = trained.pop("numbers")  # last: after the figures, as the history has always listed
    return {"epoch": epoch + 1, **trained, **scores, "lr": lr,
            "seconds": round(time.perf_counter() - t0, 2), "numbers": seen}  # fmt: skip
