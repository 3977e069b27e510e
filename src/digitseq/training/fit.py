"""Training: ``fit(cfg, out)`` -> a run folder with weights.pth, best.pth, last.pth (resume
state), config.json, history.json and history.csv. Model selection on ``val`` only (MNIST
digits 50,000-59,999); the test split is never read here.

Runs on CPU (bf16 autocast + channels_last where the CPU has bf16), on CUDA (bf16 autocast,
optional torch.compile) and on several processes through ``torchrun`` (DDP: gloo/nccl).
``fit`` reads top to bottom: the model, its optimizer and schedule, the data, then the epochs;
each step is handed what it uses.
"""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import torch

from digitseq.data import sources
from digitseq.models import checkpoint, registry
from digitseq.models.devices import setup_distributed, wrap
from digitseq.models.ema import Ema
from digitseq.models.inference import validate
from digitseq.training import loop
from digitseq.training.config import TrainConfig


def fit(cfg: TrainConfig, out: Path, resume: bool = False, device: str = "auto",
        mnist_dir=None, progress: bool = True) -> Path:  # fmt: skip
    out = Path(out)
    rank, world, dev = setup_distributed(device)
    main = rank == 0
    torch.manual_seed(cfg.seed)
    torch.use_deterministic_algorithms(cfg.deterministic, warn_only=True)

    # the model: its head (loss, greedy readings) decided once, by its architecture; a teacher
    head, text = registry.head(cfg.arch), registry.reads_text(cfg.arch, cfg.hparams)
    model = checkpoint.build(cfg.arch, cfg.hparams, cfg.init, dev)
    teacher = checkpoint.load_teacher(cfg.teacher, head, text, cfg.distill, dev)
    net = wrap(model, dev, world, cfg.compile, head.lines)

    # optimizer, schedule (over steps, or over the time budget), EMA, augmentation generator
    opt = loop.adamw(model, cfg.lr, cfg.weight_decay)
    budget = loop.Budget(cfg.time_limit)
    sched = loop.make_scheduler(opt, cfg.epochs * cfg.steps_per_epoch, cfg.warmup, budget)
    ema = Ema(model, cfg.ema_decay) if cfg.ema else None
    judged = ema.module if ema is not None else model  # the weights validated and saved
    gen = torch.Generator(device=dev).manual_seed(cfg.seed * 1000 + rank)
    state = (model, opt, sched, ema, gen)  # what last.pth holds
    start, best, budget.before, history = checkpoint.begin(out, resume, main, state, dev)

    # the data: numbers composed on the fly (or a stored dataset) and a fixed val set
    spec = sources.DataSpec(
        lines=head.lines, layout=cfg.layout, lengths=cfg.lengths, pad_to=cfg.pad_to,
        data=cfg.data, p_drawn=cfg.p_drawn, p_font=cfg.p_font, p_pen=cfg.p_pen, text=text,
        p_format=cfg.p_format, batch_size=cfg.batch_size, steps=cfg.steps_per_epoch,
        val_size=cfg.val_size, seed=cfg.seed, workers=cfg.workers, pin=dev.type == "cuda",
    )  # fmt: skip
    batches, val, stream = sources.training_data(spec, rank, world, mnist_dir)
    batches.set_epochs(start, cfg.epochs)  # before the stream's first batch
    if main:
        board = checkpoint.start_run(out, cfg.arch, cfg.hparams, cfg.to_dict(), model, dev, world)

    # the epochs: train, validate the judged weights, keep the best, stop on budget or patience
    stale, total, why = 0, len(batches) * cfg.batch_size, None
    for epoch in range(start, cfg.epochs):
        t0 = time.perf_counter()
        with loop.epoch_bar(epoch, cfg.epochs, total, progress and main) as bar:
            row = loop.train_one_epoch(
                net, itertools.islice(stream, len(batches)), opt, sched, ema, gen, dev,
                head=head, augment_cfg=cfg.augment, precision=cfg.precision,
                label_smoothing=cfg.label_smoothing, teacher=teacher, distill=cfg.distill,
                bar=bar, budget=budget,
            )  # fmt: skip
        scores = validate(judged, val, head, dev, cfg.precision)
        row = loop.epoch_row(epoch, row, scores, sched.get_last_lr()[0], t0, budget)
        history.append(row)
        improved = row["val_seq_acc"] > best
        best, stale = (row["val_seq_acc"], 0) if improved else (best, stale + 1)
        why = loop.stop(cfg.patience, stale, budget, epoch)
        if main:
            checkpoint.save_epoch(out, judged, improved, state, history, budget.spent(), board)
        if why:
            break

    loop.finish(out, val, dev, main, world, why)
    return out
