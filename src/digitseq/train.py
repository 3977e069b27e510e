"""Training: ``fit(cfg, out)`` -> a run folder with weights.pth, best.pth, last.pth (resume
state), config.json, history.json and history.csv. Model selection on ``val`` only (MNIST
digits 50,000-59,999); the test split is never read here.

Runs on CPU (bf16 autocast + channels_last where the CPU has bf16), on CUDA (bf16 autocast,
optional torch.compile) and on several processes through ``torchrun`` (DDP: gloo/nccl).
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import logging
import math
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F

from digitseq import checkpoint, data, mnist, models, storage
from digitseq.augment import AugmentConfig, augment
from digitseq.calibration import calibrate_run
from digitseq.config import DigitseqError, runs_dir
from digitseq.devices import autocast, cpu_has_bf16, setup_distributed, to_input

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainConfig:
    arch: str = "multihead"
    hparams: dict = field(default_factory=dict)
    layout: str = "mixed"  # of the on-the-fly training numbers
    data: str | None = None  # a stored dataset folder instead of on-the-fly numbers
    epochs: int = 12
    steps_per_epoch: int = 500
    batch_size: int = 128
    lr: float = 3e-3
    weight_decay: float = 0.05
    warmup: float = 0.05  # fraction of all steps
    label_smoothing: float = 0.05
    ema: bool = True
    ema_decay: float = 0.998
    val_size: int = 5000
    patience: int = 0  # early stopping after this many epochs without val gain (0: off)
    time_limit: float = 0.0  # minutes (0: none)
    seed: int = 0
    deterministic: bool = False
    workers: int = 1
    compile: bool = False
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        d = dict(d)
        d["augment"] = AugmentConfig(**d.get("augment", {}))
        return cls(**d)


PRESETS = {
    # seconds: for tests and smoke runs
    "tiny": TrainConfig(
        hparams={"channels": [8, 16, 32], "hidden": 128, "dropout": 0.0},
        layout="seed",
        epochs=3,
        steps_per_epoch=60,
        batch_size=64,
        lr=1e-2,
        val_size=500,
        ema=False,
        workers=0,
        augment=AugmentConfig(enabled=False),
    ),
    # ~10 minutes on 2 CPU cores (make demo)
    "demo": TrainConfig(epochs=8, steps_per_epoch=440, batch_size=128, lr=3e-3),
    # the bundled model: wider, trained long on a GPU
    "bundle": TrainConfig(
        hparams={"channels": [32, 64, 128], "hidden": 384, "reduce": 48},
        epochs=20,
        steps_per_epoch=600,
        batch_size=512,
        lr=3e-3,
        val_size=10_000,
        workers=8,
    ),
}
PRESETS["default"] = PRESETS["demo"]


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


def build_data(cfg: TrainConfig, rank: int, world: int, mnist_dir):
    """(training batches, val images, val labels) from on-the-fly numbers or a stored dataset."""
    if cfg.data:
        train = storage.load_split(Path(cfg.data), "train")
        val = storage.load_split(Path(cfg.data), "val")
        n = min(cfg.val_size, len(val))
        batches = data.StoredBatches(
            train, cfg.batch_size, cfg.steps_per_epoch, cfg.seed, rank, world
        )
        vimg = torch.from_numpy(np.array(val.images[:n]))
        vlab = torch.from_numpy(val.labels[:n].astype(np.int64))
        return batches, vimg, vlab
    m = mnist.load(mnist_dir)
    timg, tlab, _ = mnist.split_pool(m, "train")
    vpool, vlabels, _ = mnist.split_pool(m, "val")
    batches = data.StreamBatches(
        timg, tlab, cfg.batch_size, cfg.steps_per_epoch, cfg.seed, cfg.layout, rank
    )
    vimg, vlab, _ = data.fixed_set(vpool, vlabels, cfg.val_size, cfg.seed, cfg.layout)
    return batches, vimg, vlab


def tensorboard_writer(folder: Path):
    """A TensorBoard SummaryWriter when the tensorboard package is installed, else None."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(folder))


def write_history(out: Path, history: list[dict]) -> None:
    checkpoint.write_json(out / "history.json", history)
    buf = io.StringIO()
    if history:
        w = csv.DictWriter(buf, fieldnames=list(history[0]))
        w.writeheader()
        w.writerows(history)
    checkpoint.atomic_write_text(out / "history.csv", buf.getvalue())


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
        model = models.build_model(cfg.arch, **cfg.hparams)
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
        checkpoint.write_json(
            out / "config.json",
            {
                "model": checkpoint.model_config(cfg.arch, cfg.hparams),
                "train": cfg.to_dict(),
                "parameters": models.count_parameters(model),
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
    stream = iter(data.loader(batches, cfg.workers, dev.type == "cuda"))
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


def config_from_args(args) -> TrainConfig:
    if args.preset not in PRESETS:
        raise DigitseqError(f"unknown preset {args.preset!r}; choose one of {', '.join(PRESETS)}")
    cfg = PRESETS[args.preset]
    overrides = {
        k: getattr(args, k)
        for k in (
            "arch",
            "layout",
            "epochs",
            "steps_per_epoch",
            "batch_size",
            "lr",
            "val_size",
            "time_limit",
            "patience",
            "ema",
            "seed",
            "workers",
        )
        if getattr(args, k, None) is not None
    }
    if args.arch and args.arch != cfg.arch:
        overrides["hparams"] = {}  # another architecture: its own defaults
    if args.data:
        overrides["data"] = str(args.data)
    cfg = replace(
        cfg,
        **overrides,
        deterministic=args.deterministic or cfg.deterministic,
        compile=args.compile or cfg.compile,
    )
    if cfg.arch not in models.MODELS:
        raise DigitseqError(
            f"unknown architecture {cfg.arch!r}; choose one of {', '.join(models.list_models())}"
        )
    return cfg


def cli_main(args) -> int:
    if args.list_models:
        for name in models.list_models():
            print(name, models.DEFAULTS[name])
        return 0
    if args.resume:
        if not args.out:
            raise DigitseqError("--resume needs --out RUN_FOLDER")
        cfg_path = args.out / "config.json"
        if not cfg_path.is_file():
            raise DigitseqError(f"nothing to resume: {cfg_path} does not exist")
        cfg = TrainConfig.from_dict(json.loads(cfg_path.read_text())["train"])
    else:
        cfg = config_from_args(args)
    out = args.out or runs_dir() / time.strftime("%Y%m%d-%H%M%S")
    torch.set_num_threads(max(1, torch.get_num_threads()))
    fit(
        cfg,
        out,
        resume=args.resume,
        device=args.device,
        mnist_dir=args.data_dir,
        progress=not args.quiet,
    )
    if int(os.environ.get("RANK", "0")) == 0:
        hist = json.loads((out / "history.json").read_text())
        best = max(hist, key=lambda r: r["val_seq_acc"])
        print(
            f"run written to {out} (best val: whole-number {best['val_seq_acc']:.4f}, "
            f"per digit {best['val_digit_acc']:.4f} at epoch {best['epoch']})"
        )
    return 0
