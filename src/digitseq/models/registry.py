"""The model registry: name -> constructor, its default hyper-parameters and its head (what its
outputs mean to training). Reading decodes the same outputs with ``decoders.for_kind(kind)``.

'fixed' models map (N, 1, 28, 140) images in [0, 1] (white ink on black) to (N, 5, 10) logits;
'ctc' models map (N, 1, 28, W) lines to (N, W/4, 11) frame logits (blank + 10 digits)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn


@dataclass(frozen=True)
class Head:
    """What an architecture's outputs mean to training, validation and calibration; callers use
    these and never ask which kind they hold. Each function takes the batch as loaders give it
    (digits (N, L), lengths (N,), widths (N,) in input columns)."""

    kind: str  # 'ctc' or 'fixed': the decoder that reads it (models.decoders)
    lines: bool  # trained on lines of any width (else 28x140 images of 5 digits)
    loss: Callable  # (logits, digits, lengths, widths, label_smoothing=0.0) -> mean loss, fp32
    strings: Callable  # (logits, widths) -> the greedy readings, digit strings
    distill: Callable | None  # (logits, teacher_logits, lengths, widths, truth) -> KL; None: cannot


MODELS: dict[str, Callable[..., nn.Module]] = {}
DEFAULTS: dict[str, dict] = {}
HEADS: dict[str, Head] = {}


def register(name: str, head: Head, **defaults):
    def wrap(fn):
        MODELS[name] = fn
        HEADS[name] = head
        DEFAULTS[name] = defaults
        return fn

    return wrap


def list_models() -> list[str]:
    return sorted(MODELS)


def build_model(arch: str, **hparams) -> nn.Module:
    """Build a registered model; unknown names or hyper-parameters give a clear error."""
    if arch not in MODELS:
        raise ValueError(f"unknown architecture {arch!r}; choose one of {', '.join(list_models())}")
    unknown = set(hparams) - set(DEFAULTS[arch])
    if unknown:
        raise ValueError(f"unknown hyper-parameters for {arch}: {', '.join(sorted(unknown))}")
    return MODELS[arch](**{**DEFAULTS[arch], **hparams})


def model_hparams(arch: str, **hparams) -> dict:
    """The full hyper-parameter dict (defaults filled in), as saved beside the weights."""
    return {**DEFAULTS[arch], **hparams}


def reads_text(arch: str, hparams: dict) -> bool:
    """Whether a reader of ``arch`` with ``hparams`` reads text (digits and separators)."""
    return model_hparams(arch, **hparams).get("alphabet") == "text"


def head(arch: str) -> Head:
    """The head of a registered architecture (its loss, greedy readings, distillation)."""
    if arch not in HEADS:
        raise ValueError(f"unknown architecture {arch!r}; choose one of {', '.join(list_models())}")
    return HEADS[arch]


def kind(arch: str) -> str:
    """'fixed' (five 10-way heads over a 28x140 input) or 'ctc' (a line reader, any length)."""
    return head(arch).kind


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _register_builtin() -> None:
    from digitseq.models import ctc, fixed
    from digitseq.models.ensemble import CTCEnsemble

    line = Head("ctc", True, ctc.line_loss, ctc.line_strings, ctc.line_distill)
    cells = Head("fixed", False, fixed.cells_loss, fixed.cells_strings, None)
    register(
        "multihead", cells, channels=(16, 32, 64), hidden=256, reduce=0, dropout=0.2, depth=None
    )(fixed.MultiHead)
    register("seed-slices", cells, c1=32, c2=64, hidden=128, dropout=0.25)(fixed.SeedSlices)
    register(
        "ctc", line, channels=(32, 64, 128), hidden=256, context=3, dropout=0.1, alphabet="digits"
    )(ctc.CTCReader)
    member = {"channels": [8, 16, 32], "hidden": 32, "context": 1, "dropout": 0.0}
    register("ctc-ensemble", line, members=(member, member))(CTCEnsemble)


_register_builtin()
