"""Training configuration: ``TrainConfig`` (with its ``AugmentConfig``) and the named presets.
No torch here, so the command line can build its options from these dataclasses cheaply."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace


@dataclass(frozen=True)
class AugmentConfig:
    rotation_deg: float = 4.0
    scale: float = 0.10  # zoom in [1 - s, 1 + s]
    shift_x: float = 3.0  # pixels
    shift_y: float = 2.0
    shear: float = 0.10
    elastic: float = 0.0  # std (pixels) of a smooth random displacement field (0: off)
    p_thick: float = 0.15  # dilate strokes (marker, mouse drawing)
    p_thin: float = 0.10  # erode strokes (fine pen)
    p_marker: float = 0.0  # uniform saturated strokes, sometimes thicker (marker, app canvas)
    p_blur: float = 0.15  # 3x3 blur (scans, JPEG)
    gamma: float = 0.3  # ink intensity curve x ** g, g in [1 - gamma, 1 + gamma]
    noise: float = 0.05  # Gaussian noise std up to this
    p_lowres: float = 0.0  # written small or scanned coarsely: down to lowres of the size, back up
    lowres: tuple[float, float] = (0.3, 0.6)
    enabled: bool = True

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class TrainConfig:
    arch: str = "ctc"  # the line reader; "multihead" and "seed-slices" are 5-digit baselines
    hparams: dict = field(default_factory=dict)
    layout: str = "mix3"  # of the on-the-fly training numbers (see data.layouts.LAYOUT_MIXES)
    lengths: tuple[int, int] = (1, 12)  # digits per training number, drawn uniformly (lines)
    pad_to: int = 32  # line widths rounded up to this (few shapes: oneDNN builds one per shape)
    data: str | None = None  # a stored dataset folder instead of on-the-fly numbers
    p_drawn: float = 0.0  # share of on-the-fly digits redrawn with one round pen (data.drawn)
    p_font: float = 0.0  # share drawn in the training handwriting fonts (data.fonts)
    p_pen: float = 0.0  # share drawn from synthetic pen trajectories (data.strokes)
    p_format: float = 0.0  # share of batches of formatted numbers (hparams alphabet "text")
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
    time_limit: float = 0.0  # minutes (0: none): a budget the LR schedule follows, resumes included
    precision: str = "auto"  # auto (bf16 where the hardware has it) | bf16 | fp32
    seed: int = 0
    init: str | None = None  # start from these weights (a run or model folder): fine-tuning
    teacher: str | None = None  # a ctc reader (or ensemble) whose frame posteriors the model learns
    distill: float = 1.0  # with a teacher: weight of the KL to its frame posteriors beside CTC
    deterministic: bool = False
    workers: int = 1
    compile: bool = False
    augment: AugmentConfig = field(default_factory=AugmentConfig)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        d = dict(d)
        aug = d.get("augment", {})
        d["augment"] = AugmentConfig(**{k: tuple(v) if isinstance(v, list) else v
                                        for k, v in aug.items()})  # fmt: skip
        if "lengths" in d:
            d["lengths"] = tuple(d["lengths"])
        return cls(**d)


# Lines are up to 12 digits wide: rotating or zooming about the batch centre would move the ink
# of a long line far more than that of a digit, so lines get gentler global warps.
LINE_AUGMENT = AugmentConfig(rotation_deg=2.0, scale=0.06, shift_x=3.0, shift_y=2.0, shear=0.12)
# the 5-digit baselines: five heads over 28x140 images of 5 digits
FIVE_DIGITS = TrainConfig(arch="multihead", layout="mixed", lengths=(5, 5))

PRESETS = {
    # seconds: for tests and smoke runs
    "tiny": replace(
        FIVE_DIGITS,
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
    # the CTC line reader in seconds: for tests and smoke runs
    "ctc-tiny": TrainConfig(
        arch="ctc",
        hparams={"channels": [8, 16, 32], "hidden": 64, "context": 1, "dropout": 0.0},
        layout="seed",
        lengths=(1, 6),
        epochs=2,
        steps_per_epoch=40,
        batch_size=32,
        lr=1e-2,
        val_size=300,
        ema=True,
        ema_decay=0.9,
        workers=0,
        augment=LINE_AUGMENT,
    ),
    # make demo: a CTC reader for 1-12 digits on 2 CPU cores (mix4: spaced numbers included;
    # the people mix with redrawn and pen digits read 1.3 points fewer 5-digit seed numbers in
    # the fp32 budget). 20 epochs take ~11 minutes with bf16; `make demo` gives it an 11.5-minute
    # budget that its schedule anneals within, so a CPU without bf16 ends annealed after fewer
    # numbers (fp32, bf16 off: 149k numbers, seed 97.99%)
    "demo": TrainConfig(
        arch="ctc",
        hparams={"channels": [16, 32, 64], "hidden": 128, "context": 2, "dropout": 0.05},
        layout="mix4",
        lengths=(1, 12),
        epochs=20,
        steps_per_epoch=300,
        batch_size=64,
        lr=3e-3,
        val_size=2000,
        augment=LINE_AUGMENT,
    ),
    # the bundled CTC reader: trained on a GPU (or ~90 minutes of CPU with --time-limit)
    "bundle": TrainConfig(
        arch="ctc",
        hparams={"channels": [32, 64, 128], "hidden": 256, "context": 3, "dropout": 0.1},
        layout="mix3",
        lengths=(1, 12),
        epochs=30,
        steps_per_epoch=800,
        batch_size=256,
        lr=2e-3,
        val_size=10_000,
        workers=8,
        augment=replace(LINE_AUGMENT, elastic=1.0),
    ),
    # the 5-digit baselines (multihead): a demo-sized run and the former bundle
    "multihead-demo": replace(FIVE_DIGITS, epochs=8, steps_per_epoch=440, batch_size=128, lr=3e-3),
    "multihead-bundle": replace(
        FIVE_DIGITS,
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
# fine-tuning the bundled reader on a CPU (with --init, ~70 minutes on 2 cores): a gentle LR
# with a long warm-up (AdamW starts without its moment estimates), marker-like strokes added
PRESETS["bundle-finetune"] = replace(
    PRESETS["bundle"],
    epochs=26,
    steps_per_epoch=300,
    batch_size=128,
    lr=2e-4,
    warmup=0.1,
    val_size=3000,
    workers=1,
    augment=replace(PRESETS["bundle"].augment, p_marker=0.15),
)
# a second fine-tune (from the first): a fifth of the digits drawn as the app's canvas draws them
PRESETS["bundle-finetune-drawn"] = replace(PRESETS["bundle-finetune"], epochs=20, p_drawn=0.2)
# a fine-tune of the bundle with numbers spaced by ink (a narrow 1 as close to its neighbours as
# people write it, which the other layouts never show) and a fifth of the digits canvas-drawn
PRESETS["bundle-finetune-spaced"] = replace(
    PRESETS["bundle-finetune"], layout="mix4", epochs=20, p_drawn=0.2
)
# a reader of formatted numbers in seconds (digits and separators): for tests and smoke runs
PRESETS["text-tiny"] = replace(
    PRESETS["ctc-tiny"],
    hparams={**PRESETS["ctc-tiny"].hparams, "alphabet": "text"},
    layout="people",
    p_format=0.5,
)
# the bundled reader, trained from scratch on a 2-core CPU inside one session (--time-limit is
# the budget its schedule anneals within; ~1.9M numbers in 140 min with bf16): numbers as people
# write them (most spaced by their ink), MNIST train digits beside pen-redrawn ones, training
# fonts and synthetic pen trajectories, some written small
PRESETS["bundle-cpu"] = replace(
    PRESETS["bundle"],
    hparams={"channels": [24, 48, 96], "hidden": 192, "context": 3, "dropout": 0.1},
    layout="people",
    p_drawn=0.12,
    p_font=0.12,
    p_pen=0.16,
    epochs=80,
    steps_per_epoch=400,
    batch_size=64,
    lr=2e-3,
    warmup=0.03,
    val_size=3000,
    workers=1,
    time_limit=140.0,
    augment=replace(PRESETS["bundle"].augment, p_marker=0.15, p_lowres=0.15),
)
# the separator-aware reader: the CPU recipe on the combined mix, a share of its lines formatted
# numbers with drawn separators (amounts, dates, times, phones, IDs); fine-tuned from the digit
# bundle with --init models/digitseq-ctc --hparams '{"alphabet": "text"}'
PRESETS["bundle-text"] = replace(
    PRESETS["bundle-cpu"],
    hparams={**PRESETS["bundle-cpu"].hparams, "alphabet": "text"},
    p_format=0.3,
)
