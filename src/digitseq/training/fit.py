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
import json
import logging
import time
from pathlib import Path

import torch
import torch.distributed as dist

from digitseq.core import files
from digitseq.core.errors import DigitseqError
from digitseq.core.progress import progress_bar
from digitseq.data import loaders, sources
from digitseq.models import checkpoint, registry
from digitseq.models.devices import setup_distributed, uses_bf16
from digitseq.models.ema import Ema
from digitseq.training import loop
from digitseq.training.calibration import calibrate_run
from digitseq.training.config import TrainConfig

log = logging.getLogger(__name__)


def fit(
    cfg: TrainConfig,
    out: Path,
    resume: bool = False,
    device: str = "auto",
    mnist_dir=None,
    progress: bool = True,
) -> Path:
    out = Path(out)
    resume = resumable(out, resume)
    rank, world, dev = setup_distributed(device)
    main = rank == 0
    torch.manual_seed(cfg.seed)
    if cfg.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)

    # the model: its head (loss, greedy readings) decided once, by its architecture
    model = checkpoint.build(cfg.arch, cfg.hparams, cfg.init)
    head = registry.head(cfg.arch)
    if cfg.p_format and registry.model_hparams(cfg.arch, **cfg.hparams).get("alphabet") != "text":
        raise DigitseqError('--p-format needs a reader of text (hparams alphabet "text")')
    model = model.to(dev, memory_format=torch.channels_last)
    net = model
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[dev] if dev.type == "cuda" else None
        )
    if cfg.compile:
        net = torch.compile(net, dynamic=head.lines)  # line widths vary
    teacher = None
    if cfg.teacher:
        if cfg.distill <= 0:
            raise DigitseqError("--teacher distils CTC readers only, with --distill > 0")
        teacher = checkpoint.load_teacher(cfg.teacher, cfg.arch, cfg.hparams)
        teacher = teacher.to(dev, memory_format=torch.channels_last)

    # optimizer, schedule (over steps, or over the time budget), EMA, augmentation generator
    opt = loop.adamw(model, cfg.lr, cfg.weight_decay)
    budget = loop.Budget(cfg.time_limit)
    sched = loop.make_scheduler(opt, cfg.epochs * cfg.steps_per_epoch, cfg.warmup, budget)
    ema = Ema(model, cfg.ema_decay) if cfg.ema else None
    judged = ema.module if ema is not None else model  # the weights validated and saved
    gen = torch.Generator(device=dev).manual_seed(cfg.seed * 1000 + rank)
    start, best, history = 0, -1.0, []
    if main and not resume and (out / "last.pth").is_file():
        raise DigitseqError(f"{out} already holds a run (use --resume, or another --out)")
    if resume:
        start, best, budget.before = checkpoint.restore_state(out, model, opt, sched, ema, gen, dev)
        history = json.loads((out / "history.json").read_text())[:start]

    # the data: numbers composed on the fly (or a stored dataset) and a fixed val set
    spec = sources.DataSpec(
        lines=head.lines, layout=cfg.layout, lengths=cfg.lengths, pad_to=cfg.pad_to,
        data=cfg.data, p_drawn=cfg.p_drawn, p_font=cfg.p_font, p_pen=cfg.p_pen,
        p_format=cfg.p_format,
        batch_size=cfg.batch_size, steps=cfg.steps_per_epoch, val_size=cfg.val_size,
        seed=cfg.seed,
    )  # fmt: skip
    batches, val = sources.training_data(spec, rank, world, mnist_dir)
    batches.set_epochs(start, cfg.epochs)
    stream = iter(loaders.loader(batches, cfg.workers, dev.type == "cuda"))
    board = None
    if main:
        out.mkdir(parents=True, exist_ok=True)
        info = {
            "model": checkpoint.model_config(cfg.arch, cfg.hparams),
            "train": cfg.to_dict(),
            "parameters": registry.count_parameters(model),
            "device": str(dev),
            "world_size": world,
            "torch": torch.__version__,
            "bf16": uses_bf16(dev, cfg.precision),
        }
        files.write_json(out / "config.json", info)
        board = loop.tensorboard_writer(out / "tensorboard")

    # the epochs: train, validate the judged weights, keep the best, stop on budget or patience
    stale = 0
    for epoch in range(start, cfg.epochs):
        t0 = time.perf_counter()
        with progress_bar(
            total=len(batches) * cfg.batch_size, desc=f"epoch {epoch + 1}/{cfg.epochs}",
            unit="num", disable=not (progress and main), leave=False,
        ) as bar:  # fmt: skip
            row = loop.train_one_epoch(
                net, itertools.islice(stream, len(batches)), opt, sched, ema, gen, dev,
                head=head, augment_cfg=cfg.augment, precision=cfg.precision,
                label_smoothing=cfg.label_smoothing, teacher=teacher, distill=cfg.distill,
                bar=bar, budget=budget,
            )  # fmt: skip
        numbers = row.pop("numbers")
        t1 = time.perf_counter()
        row.update(loop.validate(judged, val, head, dev, cfg.precision))
        budget.reserve = 2 * (time.perf_counter() - t1)  # validation, and the checkpoint after
        row = {"epoch": epoch + 1, **row, "lr": sched.get_last_lr()[0],
               "seconds": round(time.perf_counter() - t0, 2), "numbers": numbers}  # fmt: skip
        history.append(row)
        improved = row["val_seq_acc"] > best
        best, stale = (row["val_seq_acc"], 0) if improved else (best, stale + 1)
        if main:
            loop.log_epoch(row, board)
            if improved:
                checkpoint.save_weights(judged, out / "best.pth")
            checkpoint.save_weights(judged, out / "weights.pth")
            checkpoint.save_state(out, model, opt, sched, ema, gen, epoch, best, budget.spent())
            files.write_json(out / "history.json", history)
            files.write_csv(out / "history.csv", history)
        if cfg.patience and stale >= cfg.patience:
            log.info("early stop: no val gain in %d epochs", cfg.patience)
            break
        if budget.spent_out():
            log.info("time budget spent after epoch %d (the schedule ends there)", epoch + 1)
            break

    if main and (out / "best.pth").is_file():
        cal = calibrate_run(out, val, dev)
        log.info("calibrated on val: temperature %.3f", cal["temperature"])
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return out


def resumable(out: Path, resume: bool) -> bool:
    """Whether the run continues: ``resume`` asked and a checkpoint to continue from (a run
    killed before its first epoch saved none: it starts over)."""
    started = (out / "last.pth").is_file()
    if resume and not started and not (out / "config.json").is_file():
        raise DigitseqError(f"nothing to resume: {out / 'last.pth'} does not exist")
    if resume and not started:
        log.info("%s was stopped before its first epoch: starting it over", out)
    return resume and started
