"""Checkpoints: a plain state_dict (``weights.pth``, loaded with ``weights_only=True``) beside a
JSON sidecar (``config.json``) that names the architecture and its hyper-parameters.

A model path may be a run folder, a bundled-model folder, or a ``.pth`` file whose folder
holds ``config.json``.
"""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import torch
from torch import nn

from digitseq.core.constants import ALPHABETS
from digitseq.core.errors import DigitseqError, one_line
from digitseq.core.files import atomic_write_bytes, write_csv, write_json
from digitseq.core.paths import bundled_model_dir
from digitseq.models import registry
from digitseq.models.devices import uses_bf16

log = logging.getLogger("digitseq.training.fit")  # a training run's messages


def atomic_torch_save(obj, path: Path) -> None:
    """torch.save through the one atomic writer (temp file beside it, fsync, rename)."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    atomic_write_bytes(Path(path), buf.getvalue())


def model_config(arch: str, hparams: dict) -> dict:
    """The sidecar's model part: enough to rebuild the model with no flags."""
    return {
        "arch": arch,
        "kind": registry.kind(arch),
        "hparams": registry.model_hparams(arch, **hparams),
    }


def save_weights(model: nn.Module, path: Path, half: bool = False) -> None:
    """Atomically save a plain state_dict (fp16 tensors when ``half``, for a small bundle)."""
    state = {k: v.detach().cpu() for k, v in unwrap(model).state_dict().items()}
    if half:
        state = {k: v.half() if v.is_floating_point() else v for k, v in state.items()}
    atomic_torch_save(state, path)


def unwrap(model: nn.Module) -> nn.Module:
    """The plain model inside DDP / torch.compile / EMA / Calibrated wrappers."""
    model = getattr(model, "module", model)
    model = getattr(model, "_orig_mod", model)
    return model.model if isinstance(model, Calibrated) else model


def resolve(path: str | Path | None) -> tuple[Path, Path]:
    """(weights file, config.json) for a run folder, model folder or weights file."""
    p = Path(path) if path else bundled_model_dir()
    if not p.exists():
        if path is None:
            raise DigitseqError(f"the bundled model is missing at {p}")
        raise DigitseqError(f"model path {p} does not exist")
    if p.is_dir():
        for name in ("best.pth", "weights.pth"):
            if (p / name).is_file():
                weights = p / name
                break
        else:
            raise DigitseqError(f"{p} holds no best.pth or weights.pth")
        folder = p
    else:
        weights, folder = p, p.parent
    config = folder / "config.json"
    if not config.is_file():
        raise DigitseqError(f"{folder} has no config.json beside {weights.name}")
    return weights, config


def read_config(config: Path) -> dict:
    try:
        cfg = json.loads(Path(config).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise DigitseqError(f"{config} is not valid JSON") from None
    model = cfg.get("model") if isinstance(cfg, dict) else None
    if not isinstance(model, dict) or "arch" not in model:
        raise DigitseqError(f"{config} does not describe a model (no model.arch)")
    return cfg


def load_state_dict(weights: Path) -> dict:
    """torch.load with weights_only=True: a file that is not a plain state_dict is refused."""
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure is a bad file
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DigitseqError(f"{weights} is not a plain weights file ({first[:160]})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise DigitseqError(f"{weights} is not a plain state_dict of tensors")
    return state


def load_model(path: str | Path | None = None) -> tuple[nn.Module, dict]:
    """Rebuild a model from its folder or weights file; returns (model in eval mode, config)."""
    weights, config = resolve(path)
    cfg = read_config(config)
    arch, hparams = cfg["model"]["arch"], cfg["model"].get("hparams", {})
    if not isinstance(hparams, dict):
        raise DigitseqError(f"{config}: model.hparams must be an object")
    state = load_state_dict(weights)
    check_fits(arch, hparams, state, config, weights)  # before a single real allocation
    try:
        model = registry.build_model(arch, **hparams)
    except (ValueError, TypeError, RuntimeError) as e:
        raise DigitseqError(
            f"{config}: impossible model hyper-parameters ({one_line(e)})"
        ) from None
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    try:
        model.load_state_dict(state)
    except RuntimeError:
        raise DigitseqError(
            f"{weights} does not fit architecture {arch!r} from {config.name} "
            "(a checkpoint of another model?)"
        ) from None
    temperature = float(cfg.get("calibration", {}).get("temperature", 1.0))
    if temperature != 1.0:
        model = Calibrated(model, temperature)
    model.eval()
    cfg["weights_path"] = str(weights)
    return model, cfg


def build(arch: str, hparams: dict, init: str | Path | None = None, dev=None) -> nn.Module:
    """A new model for training (on ``dev``, channels last); with ``init``, the weights of
    another run or model folder of the same architecture (fine-tuning). A digit reader's weights
    start a reader of text: its outputs grow by the separators' classes (their rows start fresh,
    the digits' are kept)."""
    try:
        model = registry.build_model(arch, **hparams)
    except (ValueError, TypeError) as e:
        raise DigitseqError(str(e)) from None
    if init:
        state = {k: v.float() for k, v in load_state_dict(resolve(init)[0]).items()}
        own = model.state_dict()
        for k, v in state.items():  # the classifier of a digit reader, for a reader of text
            if not (k.startswith("classifier.") and k in own and v.ndim):
                continue
            grows, sizes = len(v) < len(own[k]), {len(v), len(own[k])}
            if grows and own[k].shape[1:] == v.shape[1:] and sizes <= set(ALPHABETS):
                state[k] = torch.cat([v, own[k][len(v) :]])  # the separators' rows start fresh
        try:
            model.load_state_dict(state)
        except RuntimeError:
            raise DigitseqError(f"--init {init} does not fit {arch} {hparams}") from None
    return model if dev is None else model.to(dev, memory_format=torch.channels_last)


def load_teacher(path: str | Path | None, head: registry.Head, text: bool, distill: float, dev):
    """The frozen teacher of a distillation run (weight ``distill``) for a student with the
    registry ``head`` that reads ``text`` (or digits alone), on ``dev`` (raw logits: its
    calibration is not applied); None without a ``path``. A reader of digits can teach a reader
    of text, not the other way round."""
    if not path:
        return None
    if head.distill is None or distill <= 0:  # known before any loading
        raise DigitseqError("--teacher distils CTC readers only, with --distill > 0")
    teacher, tcfg = load_model(path)
    teacher = unwrap(teacher).eval()
    if registry.head(tcfg["model"]["arch"]).distill is None:
        raise DigitseqError(f"--teacher {path} is not a CTC line reader")
    if registry.reads_text(tcfg["model"]["arch"], tcfg["model"].get("hparams", {})) and not text:
        raise DigitseqError(f"--teacher {path} reads text: it cannot teach a reader of digits")
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher.to(dev, memory_format=torch.channels_last)


def save_state(out: Path, model, opt, sched, ema, gen, epoch: int, best: float, seconds: float):
    """last.pth: everything ``restore_state`` needs to continue the run exactly."""
    state = {
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "scheduler": sched.state_dict(),
        "generator": gen.get_state(),
        "epoch": epoch,
        "best": best,
        "seconds": seconds,
    }
    if ema is not None:
        state["ema"] = ema.state_dict()
    atomic_torch_save(state, out / "last.pth")


def begin(out: Path, resume: bool, main: bool, state: tuple, dev) -> tuple[int, float, float, list]:
    """(first epoch, best val accuracy, seconds of the time budget spent, history) of a new run,
    or of a resumed one with its ``state`` (model, optimizer, schedule, EMA, generator) restored
    from last.pth. A new run refuses a folder that holds one."""
    resume = resumable(out, resume)
    if main and not resume and (out / "last.pth").is_file():
        raise DigitseqError(f"{out} already holds a run (use --resume, or another --out)")
    if not resume:
        return 0, -1.0, 0.0, []
    start, best, seconds = restore_state(out, *state, dev)
    return start, best, seconds, json.loads((out / "history.json").read_text())[:start]


def resumable(out: Path, resume: bool) -> bool:
    """Whether the run continues: ``resume`` asked and a checkpoint to continue from (a run
    killed before its first epoch saved none: it starts over)."""
    started = (out / "last.pth").is_file()
    if resume and not started and not (out / "config.json").is_file():
        raise DigitseqError(f"nothing to resume: {out / 'last.pth'} does not exist")
    if resume and not started:
        log.info("%s was stopped before its first epoch: starting it over", out)
    return resume and started


def start_run(out: Path, arch: str, hparams: dict, train: dict, model, dev, world: int):
    """The run folder with its config.json (model, training config ``train``, machine) -> the
    run's TensorBoard writer (None without the tensorboard package)."""
    out.mkdir(parents=True, exist_ok=True)
    info = {
        "model": model_config(arch, hparams),
        "train": train,
        "parameters": registry.count_parameters(model),
        "device": str(dev),
        "world_size": world,
        "torch": torch.__version__,
        "bf16": uses_bf16(dev, train["precision"]),
    }
    write_json(out / "config.json", info)
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(out / "tensorboard"))


def save_epoch(out: Path, judged, improved: bool, state: tuple, history: list, seconds: float,
               board=None):  # fmt: skip
    """After an epoch: its line in the log (and TensorBoard ``board``), the judged weights
    (best.pth too when they improved), last.pth with the run's ``state`` to resume from (and
    the ``seconds`` of its time budget spent), the history so far (json and csv)."""
    row, best = history[-1], max(r["val_seq_acc"] for r in history)
    log.info(
        "epoch %d: loss %.4f val whole-number %.4f digit %.4f (%.0fs)",
        row["epoch"], row["train_loss"], row["val_seq_acc"], row["val_digit_acc"], row["seconds"],
    )  # fmt: skip
    if board is not None:
        for key, value in row.items():
            if key != "epoch":
                board.add_scalar(key, value, row["epoch"])
        board.flush()
    if improved:
        save_weights(judged, out / "best.pth")
    save_weights(judged, out / "weights.pth")
    save_state(out, *state, row["epoch"] - 1, best, seconds)
    write_json(out / "history.json", history)
    write_csv(out / "history.csv", history)


def restore_state(out: Path, model, opt, sched, ema, gen, dev) -> tuple[int, float, float]:
    """Continue from last.pth: weights, optimizer, schedule, EMA, generator; returns (the next
    epoch, the best val accuracy so far, the seconds of the time budget spent)."""
    state = torch.load(out / "last.pth", map_location=dev, weights_only=True)
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    sched.load_state_dict(state["scheduler"])
    if ema is not None and "ema" in state:
        ema.load_state_dict(state["ema"])
    g = state["generator"]
    gen.set_state(g.to("cpu") if dev.type == "cpu" else g)
    return int(state["epoch"]) + 1, float(state["best"]), float(state.get("seconds", 0.0))


def check_fits(arch: str, hparams: dict, state: dict, config: Path, weights: Path) -> None:
    """Build the model on the meta device (shapes only, no memory) and compare every tensor
    shape with the weights, so that a config with impossible or huge hyper-parameters fails in
    one line instead of allocating gigabytes first."""
    try:
        with torch.device("meta"):
            shapes = {k: tuple(v.shape) for k, v in registry.build_model(arch, **hparams)
                      .state_dict().items()}  # fmt: skip
    except (ValueError, TypeError, RuntimeError, OverflowError) as e:
        raise DigitseqError(
            f"{config}: impossible model hyper-parameters ({one_line(e)})"
        ) from None
    got = {k: tuple(v.shape) for k, v in state.items()}
    if shapes != got:
        wrong = sorted(set(shapes) ^ set(got)) or [k for k in shapes if shapes[k] != got[k]]
        raise DigitseqError(
            f"{weights} does not fit architecture {arch!r} from {config.name} "
            f"(first mismatch: {wrong[0]}; a checkpoint of another model?)"
        )


class Calibrated(nn.Module):
    """Logits divided by a temperature fitted on val (``config.json`` -> calibration), so the
    softmax probabilities, and the sequence confidence built from them, are calibrated."""

    def __init__(self, model: nn.Module, temperature: float):
        super().__init__()
        self.model, self.temperature = model, temperature

    def forward(self, x):  # (N, 1, 28, 140) -> (N, 5, 10)
        return self.model(x) / self.temperature
