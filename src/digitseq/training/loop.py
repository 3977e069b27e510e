"""The pieces of a training run: one epoch, validation, EMA weights, the LR schedule and the
history files. ``fit`` (fit.py) strings them together."""

from __future__ import annotations

import csv
import io
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from digitseq.core import files
from digitseq.models import checkpoint
from digitseq.models.devices import autocast, to_input
from digitseq.training.augment import augment
from digitseq.training.config import TrainConfig

# --- one epoch, evaluation ----------------------------------------------------------------------


def train_one_epoch(model, loader, opt, sched, ema, cfg, dev, gen, bar=None, deadline=None):
    model.train()
    tot_loss = tot_digit = tot_seq = n = 0
    t0 = time.perf_counter()
    for img, y in loader:
        x = augment(to_input(img, dev), cfg.augment, gen)
        y = y.to(dev, non_blocking=True)
        with autocast(dev):
            logits = model(x)  # (B, 5, 10)
        loss = F.cross_entropy(
            logits.float().reshape(-1, 10), y.reshape(-1), label_smoothing=cfg.label_smoothing
        )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if ema is not None:
            ema.update_parameters(model)
        with torch.no_grad():
            hit = logits.argmax(-1) == y
            b = y.shape[0]
            tot_loss += loss.item() * b
            tot_digit += hit.float().mean(1).sum().item()
            tot_seq += hit.all(1).sum().item()
            n += b
        if bar is not None:
            bar.update(b)
            bar.set_postfix(
                loss=f"{tot_loss / n:.3f}",
                seq=f"{tot_seq / n:.3f}",
                rate=f"{n / (time.perf_counter() - t0):.0f}/s",
            )
        if deadline and time.time() > deadline:
            break
    n = max(n, 1)
    return {
        "train_loss": tot_loss / n,
        "train_digit_acc": tot_digit / n,
        "train_seq_acc": tot_seq / n,
    }


@torch.no_grad()
def evaluate(model, images: torch.Tensor, labels: torch.Tensor, dev, batch_size: int = 1024):
    """Loss and accuracies of a model on a fixed uint8 set, in order (no augmentation)."""
    model.eval()
    tot_loss = tot_digit = tot_seq = 0.0
    for i in range(0, len(images), batch_size):
        x = to_input(images[i : i + batch_size], dev)
        y = labels[i : i + batch_size].to(dev)
        with autocast(dev):
            logits = model(x).float()
        tot_loss += (
            F.cross_entropy(logits.reshape(-1, 10), y.reshape(-1), reduction="sum").item() / 5
        )
        hit = logits.argmax(-1) == y
        tot_digit += hit.float().mean(1).sum().item()
        tot_seq += hit.all(1).sum().item()
    n = len(images)
    return {"val_loss": tot_loss / n, "val_digit_acc": tot_digit / n, "val_seq_acc": tot_seq / n}


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


def make_scheduler(opt, cfg: TrainConfig):
    total = cfg.epochs * cfg.steps_per_epoch
    warm = max(1, int(cfg.warmup * total))

    def factor(step: int) -> float:  # linear warm-up, then cosine to 1% of the peak
        if step < warm:
            return (step + 1) / warm
        t = min(1.0, (step - warm) / max(1, total - warm))
        return 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * t))

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
        w = csv.DictWriter(buf, fieldnames=list(history[0]))
        w.writeheader()
        w.writerows(history)
    files.atomic_write_text(out / "history.csv", buf.getvalue())
