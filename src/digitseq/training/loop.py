"""The pieces of a training run: one epoch, validation, EMA weights, the LR schedule and the
history files. ``fit`` (fit.py) strings them together."""

from __future__ import annotations

import csv
import io
import math
import time
from pathlib import Path

import torch

from digitseq.core import files
from digitseq.models import checkpoint, ctc_decode, registry
from digitseq.models.devices import autocast, to_input
from digitseq.models.inference import batched_logits
from digitseq.training.augment import augment
from digitseq.training.config import TrainConfig

# --- what the model is asked to do: its head's loss and greedy readings (registry.Head) ---------


def true_strings(digits, lengths) -> list[str]:
    return [
        "".join(map(str, row[:n])) for row, n in zip(digits.tolist(), lengths.tolist(), strict=True)
    ]


def score(pred: list[str], true: list[str]) -> tuple[int, int, int]:
    """(whole numbers right, character errors (edit distance), true characters)."""
    right, errors, chars = ctc_decode.score(pred, true)
    return int(right.sum()), errors, chars


# --- one epoch, validation ----------------------------------------------------------------------


def train_one_epoch(
    model, loader, opt, sched, ema, cfg, dev, gen, bar=None, budget=None, teacher=None
):
    """One pass over ``loader`` (stopped early when the ``budget`` clock runs out); with a
    ``teacher`` (a CTC reader on the same frame grid) the loss adds ``cfg.distill`` times the KL
    from its frame posteriors on the same augmented lines."""
    head = registry.head(cfg.arch)
    model.train()
    tot_loss = right = errors = chars = n = 0
    t0 = time.perf_counter()
    for img, digits, lengths, widths in loader:
        x = augment(to_input(img, dev), cfg.augment, gen)
        digits, lengths = digits.to(dev, non_blocking=True), lengths.to(dev)
        on_dev = widths.to(dev)
        with autocast(dev, cfg.precision):
            logits = model(x)  # (B, 5, 10) or (B, T, 11)
        loss = head.loss(logits, digits, lengths, on_dev, cfg.label_smoothing)
        if teacher is not None:
            with torch.no_grad(), autocast(dev, cfg.precision):
                soft = teacher(x)
            loss = loss + cfg.distill * head.distill(logits, soft, lengths, on_dev)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if ema is not None:
            ema.update_parameters(model)
        with torch.no_grad():
            r, e, c = score(head.strings(logits, widths), true_strings(digits, lengths))
            b = len(img)
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


@torch.no_grad()
def validate(model, batches: list[tuple], head, dev, precision: str = "auto") -> dict:
    """Loss and accuracies on a fixed set of batches, in order, no augmentation. Digit accuracy
    is 1 - CER (edit distance per true digit): for equal-length readings, per-position accuracy."""
    tot_loss = right = errors = chars = n = 0
    for img, digits, lengths, widths in batches:
        logits = batched_logits(model, img, dev, batch_size=len(img), precision=precision)
        tot_loss += head.loss(logits, digits, lengths, widths).item() * len(img)
        r, e, c = score(head.strings(logits, widths), true_strings(digits, lengths))
        right, errors, chars, n = right + r, errors + e, chars + c, n + len(img)
    return {
        "val_loss": tot_loss / n,
        "val_digit_acc": max(0.0, 1 - errors / max(chars, 1)),
        "val_seq_acc": right / n,
    }


# --- fit -----------------------------------------------------------------------------------------


class Ema:
    """Exponential moving average of weights and BN buffers, with the usual warm-up
    (decay = min(d, (1 + t) / (10 + t))) so early steps don't pin it to the random init."""

    def __init__(self, model: torch.nn.Module, decay: float):
        import copy

        self.module = copy.deepcopy(model).eval()
        self.decay, self.updates = decay, 0
        for p in self.module.parameters():
            p.requires_grad_(False)

    @torch.no_grad()
    def update_parameters(self, model: torch.nn.Module) -> None:
        self.updates += 1
        d = min(self.decay, (1 + self.updates) / (10 + self.updates))
        src = checkpoint.unwrap(model).state_dict()
        for k, v in self.module.state_dict().items():
            if v.is_floating_point():
                v.lerp_(src[k].detach(), 1 - d)
            else:
                v.copy_(src[k])

    def state_dict(self) -> dict:
        return {"module": self.module.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        self.module.load_state_dict(state["module"])
        self.updates = int(state["updates"])


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


def make_scheduler(opt, cfg: TrainConfig, budget: Budget):
    """The LR follows the run's progress: the larger of the share of steps done and, with a time
    limit, the share of the time budget spent, so a run cut by time ends annealed."""
    total = cfg.epochs * cfg.steps_per_epoch

    def factor(step: int) -> float:
        return lr_factor(max((step + 1) / total, budget.fraction()), cfg.warmup)

    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


def tensorboard_writer(folder: Path):
    """A TensorBoard SummaryWriter when the tensorboard package is installed, else None."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(folder))


def write_history(out: Path, history: list[dict]) -> None:
    files.write_json(out / "history.json", history)
    buf = io.StringIO()
    if history:
        keys = list(dict.fromkeys(k for row in history for k in row))  # rows of older versions
        w = csv.DictWriter(buf, fieldnames=keys)
        w.writeheader()
        w.writerows(history)
    files.atomic_write_text(out / "history.csv", buf.getvalue())
