"""Training throughput of a model on this machine, in sequences/s (forward + backward + step,
augmentation included), bf16 autocast + channels_last against plain fp32 in the same run.

    .venv/bin/python benchmarks/bench_train.py [--arch multihead] [--preset demo] [--steps 60]

Last stdout line: one JSON object with the figures.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
import torch.nn.functional as F

from digitseq.data import compose, mnist
from digitseq.models import devices, registry
from digitseq.training import fit
from digitseq.training.augment import augment


def measure(cfg: fit.TrainConfig, steps: int, bf16: bool, channels_last: bool) -> float:
    torch.manual_seed(0)
    model = registry.build_model(cfg.arch, **cfg.hparams)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt).train()
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr)
    m = mnist.load()
    pool, labels, _ = mnist.split_pool(m, "train")
    rng = np.random.default_rng(0)
    gen = torch.Generator().manual_seed(0)
    batches = []
    for _ in range(8):  # pre-generated: this measures the model, not the generator
        img, digits, _, _ = compose.generate_fixed(pool, labels, cfg.batch_size, rng, cfg.layout)
        batches.append((torch.from_numpy(img), torch.from_numpy(digits.astype(np.int64))))

    def step(img, y):
        x = augment(
            img.unsqueeze(1).float().div(255).contiguous(memory_format=fmt), cfg.augment, gen
        )
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            logits = model(x)
        loss = F.cross_entropy(logits.float().reshape(-1, 10), y.reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()

    for i in range(5):  # warm-up
        step(*batches[i % 8])
    t0 = time.perf_counter()
    for i in range(steps):
        step(*batches[i % 8])
    return steps * cfg.batch_size / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="demo")
    ap.add_argument("--arch")
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = fit.PRESETS[args.preset]
    if args.arch:
        cfg = fit.TrainConfig(**{**cfg.__dict__, "arch": args.arch, "hparams": {}})
    fp32 = measure(cfg, args.steps, bf16=False, channels_last=False)
    bf16 = measure(cfg, args.steps, bf16=devices.cpu_has_bf16(), channels_last=True)
    res = {
        "arch": cfg.arch, "preset": args.preset, "batch_size": cfg.batch_size,
        "threads": args.threads, "cpu_bf16": devices.cpu_has_bf16(),
        "fp32_seq_per_s": round(fp32, 1), "bf16_channels_last_seq_per_s": round(bf16, 1),
        "speedup": round(bf16 / fp32, 2),
    }  # fmt: skip
    print(f"{cfg.arch} ({args.preset}): fp32 {fp32:.0f} seq/s, bf16+channels_last {bf16:.0f} "
          f"seq/s ({bf16 / fp32:.2f}x) on {args.threads} threads")  # fmt: skip
    print(json.dumps(res))


if __name__ == "__main__":
    main()
