"""Where training runs: bf16 detection, the torchrun/DDP process group, autocast, and the
uint8 -> float model input on the device. Shared by training and calibration."""

from __future__ import annotations

import os

import torch
import torch.distributed as dist

from digitseq.core.errors import DigitseqError


def cpu_has_bf16() -> bool:
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def setup_distributed(device: str) -> tuple[int, int, torch.device]:
    """(rank, world, device). torchrun sets WORLD_SIZE/RANK/LOCAL_RANK; else one process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise DigitseqError("--device cuda was asked for but no CUDA GPU is available")
    if use_cuda:
        dev = torch.device(device if ":" in device else f"cuda:{local}")
        torch.cuda.set_device(dev)
    else:
        dev = torch.device("cpu")
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
    return rank, world, dev


def wrap(model: torch.nn.Module, dev: torch.device, world: int, compile: bool, lines: bool):
    """What training steps call: the model under DDP on several processes, compiled if asked
    (``lines``: inputs of any width)."""
    net = model
    if world > 1:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[dev] if dev.type == "cuda" else None
        )
    return torch.compile(net, dynamic=lines) if compile else net


PRECISIONS = ("auto", "bf16", "fp32")


def uses_bf16(dev: torch.device, precision: str = "auto") -> bool:
    """Whether ``precision`` runs bf16 on ``dev``: ``auto`` takes bf16 on CUDA and on CPUs with
    native bf16 (AVX-512 BF16 / AMX), ``fp32`` never, ``bf16`` always (slow without hardware)."""
    if precision not in PRECISIONS:
        raise DigitseqError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    if precision == "auto":
        return dev.type == "cuda" or (dev.type == "cpu" and cpu_has_bf16())
    return precision == "bf16"


def autocast(dev: torch.device, precision: str = "auto"):
    if uses_bf16(dev, precision):
        return torch.autocast(dev.type, dtype=torch.bfloat16)
    return torch.autocast(dev.type, enabled=False)


def to_input(img: torch.Tensor, dev: torch.device) -> torch.Tensor:
    """uint8 (B, 28, 140) -> float (B, 1, 28, 140) in [0, 1], channels_last on the device."""
    x = img.to(dev, non_blocking=True).unsqueeze(1).float().div_(255)
    return x.contiguous(memory_format=torch.channels_last)
