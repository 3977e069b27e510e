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
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from digitseq.core import files
from digitseq.core.constants import IMG_W, N_DIGITS
from digitseq.core.errors import DigitseqError
from digitseq.data import drawn, fonts, loaders, mnist, storage, strokes
from digitseq.models import checkpoint, registry
from digitseq.models.devices import setup_distributed, uses_bf16
from digitseq.training.calibration import calibrate_run
from digitseq.training.config import TrainConfig
from digitseq.training.loop import (
    Budget,
    Ema,
    make_scheduler,
    tensorboard_writer,
    train_one_epoch,
    validate,
    write_history,
)

log = logging.getLogger(__name__)


@dataclass
class Run:
    """Everything a training run holds between steps."""

    cfg: TrainConfig
    out: Path
    rank: int
    world: int
    dev: torch.device
    model: torch.nn.Module
    net: torch.nn.Module  # the model as trained: DDP- and/or compile-wrapped
    ema: Ema | None
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LRScheduler
    gen: torch.Generator
    budget: Budget
    history: list[dict] = field(default_factory=list)
    start_epoch: int = 0
    best: float = -1.0
    teacher: torch.nn.Module | None = None  # distillation: soft frame targets (eval, frozen)

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def judged(self) -> torch.nn.Module:  # the weights that are validated and saved
        return self.ema.module if self.ema is not None else self.model


def build_data(cfg: TrainConfig, rank: int, world: int, mnist_dir):
    """(training batches, val batches) from on-the-fly numbers or a stored 5-digit dataset."""
    extra = cfg.p_drawn + cfg.p_font + cfg.p_pen
    if min(cfg.p_drawn, cfg.p_font, cfg.p_pen) < 0 or extra >= 1 or (cfg.data and extra):
        raise DigitseqError(
            "p_drawn, p_font and p_pen must be >= 0 and sum to under 1, with on-the-fly numbers"
        )
    if cfg.data:
        train = storage.load_split(Path(cfg.data), "train")
        val = storage.load_split(Path(cfg.data), "val")
        lines = registry.head(cfg.arch).lines
        if not lines and (train.images.shape[-1] != IMG_W or (train.lengths != N_DIGITS).any()):
            raise DigitseqError(
                f"{cfg.arch} reads {N_DIGITS}-digit numbers only; {cfg.data} holds numbers of "
                f"{int(train.lengths.min())}-{int(train.lengths.max())} digits: train a line "
                "reader on it (--arch ctc, or --preset demo)"
            )
        pad = cfg.pad_to if lines else None
        batches = loaders.StoredBatches(
            train, cfg.batch_size, cfg.steps_per_epoch, cfg.seed, rank, world, pad
        )
        return batches, loaders.split_batches(val, cfg.val_size, pad_to=pad)
    m = mnist.load(mnist_dir)
    timg, tlab = training_pool(cfg, *mnist.split_pool(m, "train")[:2])
    vpool, vlabels, _ = mnist.split_pool(m, "val")
    if registry.head(cfg.arch).lines:
        batches = loaders.LineBatches(
            timg, tlab, cfg.batch_size, cfg.steps_per_epoch, cfg.seed, cfg.layout, rank,
            cfg.lengths, cfg.pad_to,
        )  # fmt: skip
        val = loaders.line_set(
            vpool, vlabels, cfg.val_size, cfg.seed, cfg.layout, cfg.lengths, cfg.pad_to
        )
        return batches, val
    batches = loaders.StreamBatches(
        timg, tlab, cfg.batch_size, cfg.steps_per_epoch, cfg.seed, cfg.layout, rank
    )
    vimg, vlab, _ = loaders.fixed_set(vpool, vlabels, cfg.val_size, cfg.seed, cfg.layout)
    return batches, [loaders.fixed_batch(vimg[i : i + 1024].numpy(), vlab[i : i + 1024].numpy())
                     for i in range(0, len(vimg), 1024)]  # fmt: skip


def training_pool(cfg: TrainConfig, images: np.ndarray, labels: np.ndarray):
    """MNIST train digits, plus the shares of the pool that ``p_drawn`` (train digits redrawn
    with a round pen), ``p_font`` (digits of the training fonts) and ``p_pen`` (synthetic pen
    trajectories) ask for. Val digits are never redrawn: val stays MNIST's."""
    base = 1 - cfg.p_drawn - cfg.p_font - cfg.p_pen

    def redrawn(n: int, rng: np.random.Generator):
        cells, idx = drawn.drawn_pool(images, n, rng)
        return cells, labels[idx]

    sources = [  # (share, rng stream, what it adds, maker (n, rng) -> (cells, labels))
        (cfg.p_drawn, 17, "redrawn with a round pen", redrawn),
        (cfg.p_font, 18, f"from {len(fonts.FAMILIES)} training fonts",
         lambda n, rng: fonts.font_cells(fonts.fetch(), n, rng)),
        (cfg.p_pen, 19, "drawn from pen trajectories", strokes.stroke_cells),
    ]  # fmt: skip
    parts, names = [(images, labels)], []
    for share, stream, what, make in sources:
        if share > 0:
            n = round(len(images) * share / base)
            parts.append(make(n, np.random.default_rng([cfg.seed, stream])))
            names.append(f"{n} {what}")
    if names:
        log.info("training pool: %d MNIST train digits + %s", len(images), ", ".join(names))
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def build(cfg: TrainConfig, out: Path, device: str) -> Run:
    """Model, EMA, DDP/compile wrappers, AdamW (no decay on biases/norms), schedule, generator."""
    rank, world, dev = setup_distributed(device)
    torch.manual_seed(cfg.seed)
    if cfg.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        model = registry.build_model(cfg.arch, **cfg.hparams)
    except (ValueError, TypeError) as e:
        raise DigitseqError(str(e)) from None
    if cfg.init:  # fine-tuning: the weights of another run or model folder, same architecture
        try:
            model.load_state_dict(
                {
                    k: v.float()
                    for k, v in checkpoint.load_state_dict(checkpoint.resolve(cfg.init)[0]).items()
                }
            )
        except RuntimeError:
            raise DigitseqError(
                f"--init {cfg.init} does not fit {cfg.arch} {cfg.hparams}"
            ) from None
    model = model.to(dev, memory_format=torch.channels_last)
    net = model
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[dev] if dev.type == "cuda" else None
        )
    if cfg.compile:
        net = torch.compile(net, dynamic=registry.head(cfg.arch).lines)  # widths vary
    params = list(model.parameters())
    opt = torch.optim.AdamW(
        [
            {"params": [p for p in params if p.ndim > 1], "weight_decay": cfg.weight_decay},
            {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0},
        ],
        lr=cfg.lr,
    )
    gen = torch.Generator(device=dev).manual_seed(cfg.seed * 1000 + rank)
    ema = Ema(model, cfg.ema_decay) if cfg.ema else None
    budget = Budget(cfg.time_limit)
    sched = make_scheduler(opt, cfg, budget)
    run = Run(cfg, out, rank, world, dev, model, net, ema, opt, sched, gen, budget)
    run.teacher = load_teacher(cfg, dev)
    return run


def load_teacher(cfg: TrainConfig, dev: torch.device) -> torch.nn.Module | None:
    """The frozen teacher of a distillation run (its raw logits: calibration is not applied)."""
    if not cfg.teacher:
        return None
    if registry.head(cfg.arch).distill is None or cfg.distill <= 0:
        raise DigitseqError("--teacher distils CTC readers only, with --distill > 0")
    teacher, tcfg = checkpoint.load_model(cfg.teacher)
    if registry.head(tcfg["model"]["arch"]).distill is None:
        raise DigitseqError(f"--teacher {cfg.teacher} is not a CTC line reader")
    teacher = checkpoint.unwrap(teacher).to(dev, memory_format=torch.channels_last).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


def restore(run: Run) -> None:
    """Continue from last.pth: weights, optimizer, schedule, EMA, generator, history."""
    state = torch.load(run.out / "last.pth", map_location=run.dev, weights_only=True)
    run.model.load_state_dict(state["model"])
    run.opt.load_state_dict(state["optimizer"])
    run.sched.load_state_dict(state["scheduler"])
    if run.ema is not None and "ema" in state:
        run.ema.load_state_dict(state["ema"])
    gen = state["generator"]
    run.gen.set_state(gen.to("cpu") if run.dev.type == "cpu" else gen)
    run.start_epoch, run.best = int(state["epoch"]) + 1, float(state["best"])
    run.budget.before = float(state.get("seconds", 0.0))
    run.history = json.loads((run.out / "history.json").read_text())[: run.start_epoch]


def write_config(run: Run) -> None:
    files.write_json(
        run.out / "config.json",
        {
            "model": checkpoint.model_config(run.cfg.arch, run.cfg.hparams),
            "train": run.cfg.to_dict(),
            "parameters": registry.count_parameters(run.model),
            "device": str(run.dev),
            "world_size": run.world,
            "torch": torch.__version__,
            "bf16": uses_bf16(run.dev, run.cfg.precision),
        },
    )


def save(run: Run, epoch: int, improved: bool) -> None:
    """weights.pth (latest judged weights), best.pth (best on val), last.pth (resume state)."""
    if improved:
        checkpoint.save_weights(run.judged, run.out / "best.pth")
    checkpoint.save_weights(run.judged, run.out / "weights.pth")
    state = {
        "model": run.model.state_dict(),
        "optimizer": run.opt.state_dict(),
        "scheduler": run.sched.state_dict(),
        "generator": run.gen.get_state(),
        "epoch": epoch,
        "best": run.best,
        "seconds": run.budget.spent(),
    }
    if run.ema is not None:
        state["ema"] = run.ema.state_dict()
    checkpoint.atomic_torch_save(state, run.out / "last.pth")
    write_history(run.out, run.history)


def log_epoch(run: Run, row: dict, board) -> None:
    log.info(
        "epoch %d: loss %.4f val whole-number %.4f digit %.4f (%.0fs)",
        row["epoch"], row["train_loss"], row["val_seq_acc"], row["val_digit_acc"], row["seconds"],
    )  # fmt: skip
    if board is not None:
        for key, value in row.items():
            if key != "epoch":
                board.add_scalar(key, value, row["epoch"])
        board.flush()


def run_epoch(run: Run, epoch: int, stream, steps: int, val, progress: bool) -> dict:
    """Train one epoch, validate the judged weights; returns the history row."""
    from digitseq.core.progress import progress_bar

    t0 = time.perf_counter()
    cfg = run.cfg
    with progress_bar(
        total=steps * cfg.batch_size, desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="num",
        disable=not (progress and run.main), leave=False,
    ) as bar:  # fmt: skip
        row = train_one_epoch(
            run.net, itertools.islice(stream, steps), run.opt, run.sched, run.ema, cfg, run.dev,
            run.gen, bar, run.budget, run.teacher,
        )  # fmt: skip
    numbers = row.pop("numbers")
    t1 = time.perf_counter()
    row.update(validate(run.judged, val, registry.head(cfg.arch), run.dev, cfg.precision))
    run.budget.reserve = 2 * (time.perf_counter() - t1)  # validation, and the checkpoint after
    return {
        "epoch": epoch + 1,
        **row,
        "lr": run.sched.get_last_lr()[0],
        "seconds": round(time.perf_counter() - t0, 2),
        "numbers": numbers,
    }


def fit(
    cfg: TrainConfig,
    out: Path,
    resume: bool = False,
    device: str = "auto",
    mnist_dir=None,
    progress: bool = True,
) -> Path:
    out = Path(out)
    started = (out / "last.pth").is_file()  # a run killed before its first epoch saved nothing
    if resume and not started and not (out / "config.json").is_file():
        raise DigitseqError(f"nothing to resume: {out / 'last.pth'} does not exist")
    if resume and not started:
        log.info("%s was stopped before its first epoch: starting it over", out)
        resume = False
    run = build(cfg, out, device)
    if run.main and not resume and started:
        raise DigitseqError(f"{out} already holds a run (use --resume, or another --out)")
    if run.main:
        out.mkdir(parents=True, exist_ok=True)
    if resume:
        restore(run)
    batches, val = build_data(cfg, run.rank, run.world, mnist_dir)
    if run.main:
        write_config(run)
    board = tensorboard_writer(out / "tensorboard") if run.main else None
    batches.set_epochs(run.start_epoch, cfg.epochs)
    stream = iter(loaders.loader(batches, cfg.workers, run.dev.type == "cuda"))
    stale = 0
    for epoch in range(run.start_epoch, cfg.epochs):
        row = run_epoch(run, epoch, stream, len(batches), val, progress)
        run.history.append(row)
        improved = row["val_seq_acc"] > run.best
        run.best, stale = (row["val_seq_acc"], 0) if improved else (run.best, stale + 1)
        if run.main:
            log_epoch(run, row, board)
            save(run, epoch, improved)
        if cfg.patience and stale >= cfg.patience:
            log.info("early stop: no val gain in %d epochs", cfg.patience)
            break
        if run.budget.spent_out():
            log.info("time budget spent after epoch %d (the schedule ends there)", epoch + 1)
            break
    if run.main and (out / "best.pth").is_file():
        cal = calibrate_run(out, val, run.dev)
        log.info("calibrated on val: temperature %.3f", cal["temperature"])
    if run.world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return out
