"""Training: ``fit(cfg, out)`` -> a run folder with weights.pth, best.pth, last.pth (resume
state), config.json, history.json and history.csv. Model selection on ``val`` only (MNIST
digits 50,000-59,999); the test split is never read here.

Runs on CPU (bf16 autocast + channels_last where the CPU has bf16), on CUDA (bf16 autocast,
optional torch.compile) and on several processes through ``torchrun`` (DDP: gloo/nccl).
"""

from __future__ import annotations

import itertools
import json
import logging
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from digitseq.core import files
from digitseq.core.errors import DigitseqError
from digitseq.data import loaders, mnist, storage
from digitseq.models import checkpoint, registry
from digitseq.models.devices import cpu_has_bf16, setup_distributed
from digitseq.training.calibration import calibrate_run
from digitseq.training.config import TrainConfig
from digitseq.training.loop import (
    Ema,
    evaluate,
    make_scheduler,
    tensorboard_writer,
    train_one_epoch,
    write_history,
)

log = logging.getLogger(__name__)


def build_data(cfg: TrainConfig, rank: int, world: int, mnist_dir):
    """(training batches, val images, val labels) from on-the-fly numbers or a stored dataset."""
    if cfg.data:
        train = storage.load_split(Path(cfg.data), "train")
        val = storage.load_split(Path(cfg.data), "val")
        n = min(cfg.val_size, len(val))
        batches = loaders.StoredBatches(
            train, cfg.batch_size, cfg.steps_per_epoch, cfg.seed, rank, world
        )
        vimg = torch.from_numpy(np.array(val.images[:n]))
        vlab = torch.from_numpy(val.labels[:n].astype(np.int64))
        return batches, vimg, vlab
    m = mnist.load(mnist_dir)
    timg, tlab, _ = mnist.split_pool(m, "train")
    vpool, vlabels, _ = mnist.split_pool(m, "val")
    batches = loaders.StreamBatches(
        timg, tlab, cfg.batch_size, cfg.steps_per_epoch, cfg.seed, cfg.layout, rank
    )
    vimg, vlab, _ = loaders.fixed_set(vpool, vlabels, cfg.val_size, cfg.seed, cfg.layout)
    return batches, vimg, vlab


def fit(
    cfg: TrainConfig,
    out: Path,
    resume: bool = False,
    device: str = "auto",
    mnist_dir=None,
    progress: bool = True,
) -> Path:
    from tqdm import tqdm

    rank, world, dev = setup_distributed(device)
    main = rank == 0
    out = Path(out)
    if resume and not (out / "last.pth").is_file():
        raise DigitseqError(f"nothing to resume: {out / 'last.pth'} does not exist")
    if main and not resume and (out / "config.json").exists():
        raise DigitseqError(f"{out} already holds a run (use --resume, or another --out)")
    if main:
        out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    if cfg.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        model = registry.build_model(cfg.arch, **cfg.hparams)
    except (ValueError, TypeError) as e:
        raise DigitseqError(str(e)) from None
    model = model.to(dev, memory_format=torch.channels_last)
    ema = Ema(model, cfg.ema_decay) if cfg.ema else None
    net = model
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[dev] if dev.type == "cuda" else None
        )
    if cfg.compile:
        net = torch.compile(net)
    decay = [p for n, p in model.named_parameters() if p.ndim > 1]
    no_decay = [p for n, p in model.named_parameters() if p.ndim <= 1]
    opt = torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": cfg.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=cfg.lr,
    )
    sched = make_scheduler(opt, cfg)
    gen = torch.Generator(device=dev).manual_seed(cfg.seed * 1000 + rank)

    history: list[dict] = []
    start_epoch, best = 0, -1.0
    if resume:
        state = torch.load(out / "last.pth", map_location=dev, weights_only=True)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        if ema is not None and "ema" in state:
            ema.load_state_dict(state["ema"])
        gen.set_state(state["generator"].to("cpu") if dev.type == "cpu" else state["generator"])
        start_epoch, best = int(state["epoch"]) + 1, float(state["best"])
        history = json.loads((out / "history.json").read_text())[:start_epoch]

    batches, vimg, vlab = build_data(cfg, rank, world, mnist_dir)
    if main:
        files.write_json(
            out / "config.json",
            {
                "model": checkpoint.model_config(cfg.arch, cfg.hparams),
                "train": cfg.to_dict(),
                "parameters": registry.count_parameters(model),
                "device": str(dev),
                "world_size": world,
                "torch": torch.__version__,
                "bf16": dev.type == "cuda" or cpu_has_bf16(),
            },
        )
    deadline = time.time() + cfg.time_limit * 60 if cfg.time_limit else None
    board = tensorboard_writer(out / "tensorboard") if main else None
    stale = 0
    batches.set_epochs(start_epoch, cfg.epochs)
    stream = iter(loaders.loader(batches, cfg.workers, dev.type == "cuda"))
    for epoch in range(start_epoch, cfg.epochs):
        t0 = time.perf_counter()
        total = len(batches) * cfg.batch_size
        with tqdm(
            total=total,
            desc=f"epoch {epoch + 1}/{cfg.epochs}",
            unit="seq",
            disable=not (progress and main),
            leave=False,
        ) as bar:
            row = train_one_epoch(
                net,
                itertools.islice(stream, len(batches)),
                opt,
                sched,
                ema,
                cfg,
                dev,
                gen,
                bar,
                deadline,
            )
        judged = ema.module if ema is not None else model
        row = {
            "epoch": epoch + 1,
            **row,
            **evaluate(judged, vimg, vlab, dev),
            "lr": sched.get_last_lr()[0],
            "seconds": round(time.perf_counter() - t0, 2),
        }
        history.append(row)
        improved = row["val_seq_acc"] > best
        if improved:
            best, stale = row["val_seq_acc"], 0
        else:
            stale += 1
        if main:
            log.info(
                "epoch %d: loss %.4f val seq %.4f digit %.4f (%.0fs)",
                epoch + 1,
                row["train_loss"],
                row["val_seq_acc"],
                row["val_digit_acc"],
                row["seconds"],
            )
            if improved:
                checkpoint.save_weights(judged, out / "best.pth")
            checkpoint.save_weights(judged, out / "weights.pth")
            state = {
                "model": model.state_dict(),
                "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(),
                "generator": gen.get_state(),
                "epoch": epoch,
                "best": best,
            }
            if ema is not None:
                state["ema"] = ema.state_dict()
            checkpoint.atomic_torch_save(state, out / "last.pth")
            write_history(out, history)
            if board is not None:
                for key, value in row.items():
                    if key != "epoch":
                        board.add_scalar(key, value, epoch + 1)
                board.flush()
        if cfg.patience and stale >= cfg.patience:
            log.info("early stop: no val gain in %d epochs", cfg.patience)
            break
        if deadline and time.time() > deadline:
            log.info("time limit reached after epoch %d", epoch + 1)
            break
    if main and (out / "best.pth").is_file():
        cal = calibrate_run(out, vimg, vlab, dev)
        log.info("calibrated on val: temperature %.3f", cal["temperature"])
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return out
