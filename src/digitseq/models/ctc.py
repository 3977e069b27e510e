"""The line reader: a conv trunk over a 28-px-tall line of any width, one frame per 4 columns,
a small 1-D conv context over neighbouring frames, and one output per class per frame: the CTC
blank and the reader's ``alphabet`` (``digits``: 10 classes; ``text``: digits and the separators
``. , - / : ( ) +`` and a space, 19). Segmentation-free: it never needs to know how many
characters the line holds.

Shapes: (N, 1, 28, W) float in [0, 1], white ink on black, W a multiple of 4 (callers pad with
black) -> (N, W / 4, C) logits. Class 0 is the blank, class i + 1 is alphabet[i]. Decoding and
the string probabilities live in ``models.ctc_decode`` (numpy only), so reading needs no torch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from digitseq.core.constants import ALPHABET_NAMES, ALPHABETS, DIGIT_SIZE, FRAME_STRIDE
from digitseq.models.ctc_decode import best_path
from digitseq.models.layers import Normalize, conv_bn

N_CLASSES = 11  # blank + 10 digits


class CTCReader(nn.Module):
    """Three conv stages (two 3x3 convs each; 2x2 pools after the first two, so frames are 4
    columns wide), the 7 remaining rows folded into channels, then ``context`` 1-D convs of
    kernel 3 (each widens the receptive field by 8 columns) and a 1x1 classifier."""

    def __init__(self, channels=(32, 64, 128), hidden=256, context=3, dropout=0.1,
                 alphabet="digits"):  # fmt: skip
        super().__init__()
        if len(channels) != 3 or min(channels) < 1 or hidden < 1 or context < 0:
            raise ValueError("ctc needs three positive channel counts, hidden >= 1, context >= 0")
        if alphabet not in ALPHABET_NAMES:
            raise ValueError(f"alphabet must be one of {', '.join(ALPHABET_NAMES)}")
        c1, c2, c3 = channels
        self.trunk = nn.Sequential(
            Normalize(),
            *conv_bn(1, c1),
            *conv_bn(c1, c1),
            nn.MaxPool2d(2),  # 14 x W/2
            *conv_bn(c1, c2),
            *conv_bn(c2, c2),
            nn.MaxPool2d(2),  # 7 x W/4
            *conv_bn(c2, c3),
            *conv_bn(c3, c3),
        )
        rows = DIGIT_SIZE // FRAME_STRIDE  # 7
        layers: list[nn.Module] = [
            nn.Conv1d(c3 * rows, hidden, 1, bias=False),
            nn.BatchNorm1d(hidden),
            nn.ReLU(True),
        ]
        for _ in range(context):
            layers += [
                nn.Dropout(dropout),
                nn.Conv1d(hidden, hidden, 3, padding=1, bias=False),
                nn.BatchNorm1d(hidden),
                nn.ReLU(True),
            ]
        self.context = nn.Sequential(*layers)
        self.classifier = nn.Conv1d(hidden, len(ALPHABET_NAMES[alphabet]) + 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, 1, 28, W) -> (N, W/4, 11)
        f = self.trunk(x)  # (N, C, 7, W/4)
        n, c, h, w = f.shape
        f = f.reshape(n, c * h, w)  # rows folded into channels: (N, 7C, T)
        return self.classifier(self.context(f)).transpose(1, 2)


def frame_counts(widths: torch.Tensor) -> torch.Tensor:
    """Frames that cover each line's real width (the rest is padding)."""
    return torch.div(widths + FRAME_STRIDE - 1, FRAME_STRIDE, rounding_mode="floor")


def ctc_loss(logits: torch.Tensor, targets: torch.Tensor, lengths: torch.Tensor, frames):
    """Mean CTC loss per number, computed in fp32 (ENVIRONMENT.md: CTC under bf16 is unsafe).

    logits (N, T, 11); targets (N, L) digits 0-9 padded with anything; lengths (N,); frames (N,).
    """
    logp = F.log_softmax(logits.float(), dim=-1).transpose(0, 1)  # (T, N, 11)
    mask = torch.arange(targets.shape[1], device=targets.device)[None, :] < lengths[:, None]
    flat = (targets.long() + 1)[mask]  # digit d -> class d + 1, concatenated
    if flat.numel() and not 1 <= int(flat.min()) <= int(flat.max()) < logits.shape[-1]:
        # torch's CPU kernel reads out of bounds on such a label (a crash, not an error)
        raise ValueError(f"CTC targets must be digits 0-{logits.shape[-1] - 2} within lengths")
    return F.ctc_loss(
        logp, flat, frames.long(), lengths.long(), blank=0, reduction="mean", zero_infinity=True
    )


def distill_loss(logits, teacher_logits, lengths, frames, keep=None) -> torch.Tensor:
    """Knowledge distillation on the frame grid: each number's KL(teacher || student) summed
    over its real frames, per true digit (the scale of ``ctc_loss``), averaged over the batch;
    with ``keep`` (N,) bools only the kept numbers count (the others add 0). Teacher and student
    share the frame grid (every ``ctc`` reader and ensemble does). A teacher of digits teaches a
    reader of text over the classes it knows: the student's blank and digits, renormalized, so
    the teacher says nothing of the separators (pulling their mass to 0 on every plain line
    taught a text reader to drop them: session 9's run)."""
    known = teacher_logits.shape[-1]
    if logits.shape[-1] < known:
        raise ValueError("a teacher of text cannot teach a reader of digits")
    t = F.log_softmax(teacher_logits.float(), dim=-1)
    s = F.log_softmax(logits[..., :known].float(), dim=-1)
    kl = (t.exp() * (t - s)).sum(-1)  # (N, T)
    real = torch.arange(kl.shape[1], device=kl.device)[None, :] < frames[:, None]
    per_number = (kl * real).sum(1) / lengths.clamp(min=1)
    if keep is not None:
        per_number = per_number * keep.to(per_number.dtype)
    return per_number.mean()


def greedy_strings(logits: torch.Tensor, frames: torch.Tensor | None = None) -> list[str]:
    """Best-path decoding of a batch: the argmax here, the collapse in ``ctc_decode.best_path``
    (the one greedy decoder, which readers use too)."""
    best = logits.argmax(-1).cpu().numpy()  # (N, T)
    counts = [best.shape[1]] * len(best) if frames is None else [int(f) for f in frames]
    alphabet = ALPHABETS[logits.shape[-1]]
    return [best_path(row[:n], alphabet)[0] for row, n in zip(best, counts, strict=True)]


# --- what training asks of a line reader (registry.Head): widths in, frames counted here -------


def line_loss(logits, digits, lengths, widths, label_smoothing: float = 0.0) -> torch.Tensor:
    """The CTC loss of each line over the frames of its real width (no label smoothing)."""
    return ctc_loss(logits, digits, lengths, frame_counts(widths))


def line_strings(logits, widths) -> list[str]:
    return greedy_strings(logits, frame_counts(widths))


def line_distill(logits, teacher_logits, lengths, widths, truth) -> torch.Tensor:
    """The KL to the teacher's frames on the lines the teacher reads right (``truth``: the
    true strings): where it is wrong its posteriors are not learned."""
    frames = frame_counts(widths)
    teacher_logits = teacher_logits.float()
    read = greedy_strings(teacher_logits, frames)
    keep = torch.tensor([r == t for r, t in zip(read, truth, strict=True)], device=logits.device)
    return distill_loss(logits, teacher_logits, lengths, frames, keep)
