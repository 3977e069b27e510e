"""The model registry: name -> constructor, its default hyper-parameters and its kind.

'fixed' models map (N, 1, 28, 140) images in [0, 1] (white ink on black) to (N, 5, 10) logits;
'ctc' models map (N, 1, 28, W) lines to (N, W/4, 11) frame logits (blank + 10 digits)."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

MODELS: dict[str, Callable[..., nn.Module]] = {}
DEFAULTS: dict[str, dict] = {}
KINDS: dict[str, str] = {}


def register(name: str, kind: str, **defaults):
    def wrap(fn):
        MODELS[name] = fn
        KINDS[name] = kind
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


def kind(arch: str) -> str:
    """'fixed' (five 10-way heads over a 28x140 input) or 'ctc' (a line reader, any length)."""
    return KINDS[arch]


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _register_builtin() -> None:
    from digitseq.models.ctc import CTCReader
    from digitseq.models.ensemble import CTCEnsemble
    from digitseq.models.fixed import MultiHead, SeedSlices

    register(
        "multihead", "fixed", channels=(16, 32, 64), hidden=256, reduce=0, dropout=0.2, depth=None
    )(MultiHead)
    register("seed-slices", "fixed", c1=32, c2=64, hidden=128, dropout=0.25)(SeedSlices)
    register("ctc", "ctc", channels=(32, 64, 128), hidden=256, context=3, dropout=0.1)(CTCReader)
    member = {"channels": [8, 16, 32], "hidden": 32, "context": 1, "dropout": 0.0}
    register("ctc-ensemble", "ctc", members=(member, member))(CTCEnsemble)


_register_builtin()
