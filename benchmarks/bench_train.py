"""Training throughput of a preset's model on this machine, in numbers/s (augmentation, forward,
the head's loss, backward and the optimizer step, as ``train_one_epoch`` runs them), in fp32
(what a CPU without bf16 runs) against bf16 autocast in the same run. Line readers train on
lines of the preset's layout and lengths; the 5-digit baselines on 28x140 images.

    .venv/bin/python benchmarks/bench_train.py [--preset demo] [--arch multihead] [--steps 60]

Last stdout line: one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from digitseq.data import loaders, mnist
from digitseq.models import devices, registry
from digitseq.training.augment import augment
from digitseq.training.config import PRESETS, TrainConfig

CPU = torch.device("cpu")


def batches_of(cfg: TrainConfig, head, n_batches: int = 8) -> list[tuple]:
    """Pre-composed batches (this measures the model, not the generator): lines of every width
    the preset trains on, or 5-digit images."""
    pool, labels, _ = mnist.split_pool(mnist.load(), "train")
    n, bs = n_batches * cfg.batch_size, cfg.batch_size
    if head.lines:
        return loaders.line_set(pool, labels, n, 0, cfg.layout, cfg.lengths, cfg.pad_to, bs)
    img, digits, _ = loaders.fixed_set(pool, labels, n, 0, cfg.layout)
    ones = torch.ones(len(img), dtype=torch.long)
    return [
        (
            img[i : i + bs],
            digits[i : i + bs],
            5 * ones[i : i + bs],
            img.shape[-1] * ones[i : i + bs],
        )
        for i in range(0, n, bs)
    ]


def measure(cfg: TrainConfig, steps: int, precision: str) -> float:
    torch.manual_seed(0)
    head = registry.head(cfg.arch)
    model = registry.build_model(cfg.arch, **cfg.hparams).to(memory_format=torch.channels_last)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr)
    gen = torch.Generator().manual_seed(0)
    batches = batches_of(cfg, head)

    def step(img, digits, lengths, widths):
        x = augment(devices.to_input(img, CPU), cfg.augment, gen)
        with devices.autocast(CPU, precision):
            logits = model(x)
        loss = head.loss(logits, digits, lengths, widths, cfg.label_smoothing)
        opt.zero_grad()
        loss.backward()
        opt.step()
        return len(img)

    for i in range(4):  # warm-up
        step(*batches[i % len(batches)])
    t0, seen = time.perf_counter(), 0
    for i in range(steps):
        seen += step(*batches[i % len(batches)])
    return seen / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="demo")
    ap.add_argument("--arch")
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = PRESETS[args.preset]
    if args.arch:
        cfg = TrainConfig(**{**cfg.__dict__, "arch": args.arch, "hparams": {}})
    fp32 = measure(cfg, args.steps, "fp32")
    bf16 = measure(cfg, args.steps, "auto")  # bf16 where the CPU has it, else fp32 again
    res = {
        "arch": cfg.arch, "preset": args.preset, "batch_size": cfg.batch_size,
        "layout": cfg.layout, "threads": args.threads, "cpu_bf16": devices.cpu_has_bf16(),
        "fp32_numbers_per_s": round(fp32, 1), "auto_numbers_per_s": round(bf16, 1),
        "speedup": round(bf16 / fp32, 2),
    }  # fmt: skip
    print(f"{cfg.arch} ({args.preset}): fp32 {fp32:.0f} numbers/s, bf16 where the CPU has it "
          f"{bf16:.0f} ({bf16 / fp32:.2f}x) on {args.threads} threads")  # fmt: skip
    print(json.dumps(res))


if __name__ == "__main__":
    main()
