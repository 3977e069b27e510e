"""Read numbers of any length from images: ``Predictor.load(path).predict(images)`` and
``digitseq predict``.

Two backends run the same preprocessed (N, 1, 28, W) lines: onnxruntime (the default: an
exported ``.onnx`` file, or the model exported in memory on load) and torch (the checkpoint).
The model's decoder (``models.decoders``, chosen once from its output shape) turns its outputs
into digits, the calibrated whole-number and per-digit confidences and each digit's span.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from digitseq.core.constants import IMG_H, IMG_W, N_DIGITS
from digitseq.core.errors import DigitseqError, one_line
from digitseq.core.extras import missing_extra
from digitseq.core.paths import bundled_model_dir
from digitseq.models import decoders
from digitseq.reading import preprocess, values

log = logging.getLogger(__name__)

FORMATS = decoders.FORMATS  # the named formats of ``pattern=`` (or a regular expression)
INPUT_FORMAT = f"{IMG_H}xW float32 in [0, 1], white ink on black (W = {IMG_W} for 5-digit models)"
JSON_KEYS = (
    "file", "digits", "text", "value", "confidence", "digit_confidences", "spans", "warning",
    "error",
)  # fmt: skip


@dataclass
class Reading:
    """The reading of one image; ``error`` is set (and ``digits`` None) when it was unreadable."""

    file: str | None = None
    digits: str | None = None  # the digits read, alone
    text: str | None = None  # what was read, separators included (a digit reader: the digits)
    value: str | None = None  # held to a date, time or amount: its ISO date, time or decimal
    confidence: float | None = None
    digit_confidences: list[float] | None = None
    probabilities: list[list[float]] | None = None  # (L, 10) per-position probabilities
    spans: list[list[int]] | None = None  # each digit's [first, last] column in the image
    input_spans: list[list[int]] | None = None  # the same in the model input's columns
    warning: str | None = None  # e.g. longer than the reader was trained on; an unsure reading
    error: str | None = None
    abstained: bool = False
    input: np.ndarray | None = field(default=None, repr=False)  # (28, W) model input
    placement: np.ndarray | None = field(default=None, repr=False)  # 3x3: input -> image

    def to_json(self, include_abstained: bool = False) -> dict:
        out = {k: getattr(self, k) for k in JSON_KEYS}
        if include_abstained:
            out["abstained"] = self.abstained
        return out


# --- backends: (N, 1, 28, W) float32 -> (N, T, 11) (or (N, 5, 10)) float32 logits --------------


class OnnxBackend:
    name = "onnx"

    def __init__(self, model: bytes | str, threads: int = 1):
        try:
            import onnxruntime as ort
        except ImportError:
            raise DigitseqError(
                "the onnx backend needs onnxruntime: pip install digitseq"
            ) from None
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
        except Exception as e:  # noqa: BLE001 - onnxruntime raises its own exception types
            raise DigitseqError(f"cannot load the ONNX model: {one_line(e)}") from None
        self.input_name = self.session.get_inputs()[0].name

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: x})[0]


# --- the predictor ------------------------------------------------------------------------------


class Predictor:
    """A loaded model plus preprocessing: images in, readings out."""

    def __init__(self, backend, config: dict, name: str, source: str):
        self.backend = backend
        self.config = config
        self.name = name
        self.source = source
        self.digits: tuple[int, int] | None = None  # default length constraint of predict()
        self.pattern: str | None = None  # default format of predict() (ctc_pattern.FORMATS)

    @classmethod
    def load(cls, path: str | Path | None = None, backend: str = "onnx", threads: int = 1):
        """A run folder, model folder, ``.pth`` or (onnx backend) ``.onnx`` file; None = bundled."""
        if backend not in ("torch", "onnx"):
            raise DigitseqError(f"unknown backend {backend!r} (choose torch or onnx)")
        p = Path(path) if path is not None else bundled_model_dir()
        if p.suffix == ".onnx" or (
            p.is_dir() and (p / "model.onnx").is_file() and backend == "onnx"
        ):
            onnx_file = p if p.suffix == ".onnx" else p / "model.onnx"
            if backend != "onnx":
                raise DigitseqError(f"{p} is an ONNX model: use --backend onnx")
            return cls.from_onnx(onnx_file, threads)
        try:  # torch from here on: the checkpoint (and the torch backend, or an export to ONNX)
            from digitseq.models import checkpoint
        except ModuleNotFoundError as e:
            what = "--backend torch" if backend == "torch" else f"reading {p} (no model.onnx)"
            raise missing_extra(e, what) or e from None

        model, cfg = checkpoint.load_model(path)
        name = Path(cfg["weights_path"]).parent.name
        if backend == "onnx":
            impl = OnnxBackend(cached_onnx(model, cfg), threads)
        else:
            from digitseq.models.inference import TorchBackend

            impl = TorchBackend(model)
        predictor = cls(impl, cfg, name, cfg["weights_path"])
        if probe(impl, str(p)) != predictor.kind:
            raise DigitseqError(f"{p}: its outputs do not match its config.json's model.kind")
        return predictor

    @classmethod
    def from_onnx(cls, path: Path, threads: int = 1) -> Predictor:
        if not path.is_file():
            raise DigitseqError(f"model path {path} does not exist")
        sidecar = path.with_name(path.name + ".json")
        cfg = {}
        if sidecar.is_file():
            try:
                cfg = json.loads(sidecar.read_text())
            except (json.JSONDecodeError, UnicodeDecodeError):
                raise DigitseqError(f"{sidecar} is not valid JSON") from None
            if not isinstance(cfg, dict):
                raise DigitseqError(f"{sidecar} is not a model description (a JSON object)")
        name = path.parent.name if path.name == "model.onnx" else path.stem  # models/<name>/
        backend = OnnxBackend(str(path), threads)
        # The kind follows from the model itself: a copy without its sidecar stays a line
        # reader (it was decoded as five digit heads: 00070000008... for 67574)
        kind = probe(backend, str(path))
        model = cfg.get("model") if isinstance(cfg.get("model"), dict) else {}
        claimed = cls(backend, cfg, name, str(path)).kind if model else None
        if claimed is not None and claimed != kind:
            raise DigitseqError(
                f"{sidecar.name} describes a {decoders.describe(claimed)} but {path.name} is a "
                f"{decoders.describe(kind)}: a sidecar of another model?"
            )
        cfg = {**cfg, "model": {**model, "kind": kind}}
        return cls(backend, cfg, name, str(path))

    @property
    def info(self) -> dict:
        model = self.config.get("model", {})
        out = {
            "name": self.name,
            "arch": model.get("arch"),
            "kind": self.kind,
            "hparams": model.get("hparams"),
            "backend": self.backend.name,
            "source": self.source,
            "input_format": INPUT_FORMAT,
        }
        for key in ("metrics", "test_metrics", "model_card"):
            if key in self.config:
                out[key] = self.config[key]
        return out

    @property
    def kind(self) -> str:
        """'ctc' (a line reader, any length) or 'fixed' (five digit heads)."""
        return decoders.config_kind(self.config.get("model", {}))

    @property
    def decoder(self):
        """What the model's outputs mean (``models.decoders``): the one place that knows."""
        return decoders.for_config(self.config.get("model", {}))

    @property
    def line(self) -> bool:
        """Whether preprocessing keeps the whole line (else it cuts five digit cells)."""
        return self.decoder.line

    @property
    def trained_lengths(self) -> tuple[int, int]:
        lo, hi = self.config.get("train", {}).get("lengths", (5, 5))
        return self.decoder.trained_lengths(lo, hi)

    def logits(self, inputs: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """(N, 28, 140) float32 model inputs -> (N, 5, 10) logits (fixed-length models)."""
        return decoders.cell_logits(self.run, inputs, batch_size)

    def run(self, x: np.ndarray) -> np.ndarray:
        """The backend over one batch of model inputs (padded to a few batch sizes)."""
        return padded_call(self.backend, x)

    def outputs(self, inputs: list[np.ndarray], batch_size: int = 256) -> list[np.ndarray]:
        """Model inputs (28, W) -> what the decoder reads, per input: (T, 11) frame
        log-probabilities over its real width (a line reader) or (5, 10) probabilities."""
        return self.decoder.outputs(self.run, inputs, batch_size)

    def fill(self, r: Reading, output: np.ndarray, min_confidence=None, digits=None,
             pattern=None) -> None:  # fmt: skip
        """Digits, confidences and spans of one reading from its model output."""
        decoded = self.decoder.decode(output, digits, pattern)
        if r.warning and "warning" in decoded:  # the image's own warning stays, first
            decoded["warning"] = f"{r.warning}; {decoded['warning']}"
        for key, value in decoded.items():
            setattr(r, key, value)
        if r.input_spans is not None:
            r.spans = image_spans(r.input_spans, r.placement)
        if "warning" not in decoded and len(r.digits) > self.trained_lengths[1]:
            longer = (
                f"{len(r.digits)} digits: longer than the {self.trained_lengths[1]} this reader "
                "was trained on"
            )
            r.warning = f"{r.warning}; {longer}" if r.warning else longer
        if pattern in values.VALUED and r.text:
            r.value, problem = values.value_of(r.text, pattern)
            if problem:
                r.warning = f"{r.warning}; {problem}" if r.warning else problem
        if min_confidence is not None and r.confidence < min_confidence:
            r.digits, r.text, r.value, r.abstained = None, None, None, True

    def check_digits(self, digits, pattern=None) -> None:
        """A length constraint (or a format) this model can honour, or a one-line error."""
        if digits and pattern:
            raise DigitseqError("--digits and --pattern: give one (a pattern says the length)")
        self.decoder.check_digits(digits)
        self.decoder.check_pattern(pattern)

    def predict_prepared(self, readings, min_confidence=None, batch_size: int = 64, digits=None,
                         pattern=None):  # fmt: skip
        """Run the model over readings prepared by ``prepare`` (errors pass through)."""
        if not (digits or pattern):
            digits, pattern = self.digits, self.pattern
        self.check_digits(digits, pattern)
        for r in readings:
            if r.error is None and (bad := self.decoder.bad_input(r.input)):
                r.error, r.input = bad, None
        ok = [r for r in readings if r.error is None]
        for r, out in zip(ok, self.outputs([r.input for r in ok], batch_size), strict=True):
            self.fill(r, out, min_confidence, digits, pattern)
        return readings

    def predict(self, images, min_confidence=None, batch_size: int = 64, digits=None,
                pattern=None):  # fmt: skip
        """Read each image (path, bytes, PIL image or array); never raises for a bad image.
        ``digits``: (lo, hi) to read the most probable number with lo..hi digits; ``pattern``:
        the most probable reading a format accepts (``amount``, ``date``, ``time``, ``phone``,
        ``digits``, or a regular expression over digits and ``. , - / : ( ) +`` and space)."""
        self.check_digits(digits, pattern)
        readings = [prepare(item, line=self.line) for item in as_list(images)]
        return self.predict_prepared(readings, min_confidence, batch_size, digits, pattern)

    def read(self, image, min_confidence=None, digits=None, pattern=None) -> Reading:
        """One image -> its Reading."""
        return self.predict([image], min_confidence, digits=digits, pattern=pattern)[0]


def probe(backend, source: str) -> str:
    """One forward pass on a blank 28x140 input: the model's kind from its output shape, or a
    one-line error for a model that gives anything else, or NaN (it would read nothing, and a
    service would answer 500 to every request while saying it is healthy)."""
    try:
        out = np.asarray(backend(np.zeros((1, 1, IMG_H, IMG_W), np.float32)))
    except Exception as e:  # noqa: BLE001 - onnxruntime / torch raise their own types
        raise DigitseqError(
            f"{source} does not run on a 1x1x{IMG_H}x{IMG_W} input: {one_line(e)}"
        ) from None
    kind = decoders.kind_of(out)
    if kind is None:
        raise DigitseqError(
            f"{source} outputs shape {out.shape}: not a digitseq reader (expected "
            f"(N, T, 11) or (N, {N_DIGITS}, 10))"
        )
    if not np.isfinite(out).all():
        raise DigitseqError(f"{source} outputs NaN or infinity on a blank input: unusable")
    return kind


MAX_DIGITS = 64


def parse_digits(text: str) -> tuple[int, int]:
    """``"N"`` or ``"A-B"`` digits (1 <= A <= B <= 64) -> (A, B); else a one-line error. The
    CLI's ``--digits`` and the service's ``?digits=`` both parse with this: the same forms."""
    form = re.fullmatch(r"([1-9][0-9]*)(?:-([1-9][0-9]*))?", str(text), re.ASCII)
    if form is None:
        raise DigitseqError(f"digits: expected N or A-B (e.g. 5 or 8-12), got {text!r}")
    a, b = int(form[1]), int(form[2] or form[1])
    if not 1 <= a <= b <= MAX_DIGITS:
        raise DigitseqError(f"digits: expected 1 <= A <= B <= {MAX_DIGITS}, got {text!r}")
    return a, b


def as_list(images) -> list:
    from PIL import Image

    if isinstance(images, str | Path | bytes | bytearray | Image.Image):
        return [images]
    if isinstance(images, np.ndarray):
        if images.ndim == 2 or (images.ndim == 3 and images.shape[2] in (1, 2, 3, 4)):
            return [images]
        return list(images)  # a batch: (N, H, W) or (N, H, W, C)
    return list(images)


def prepare(item, line: bool = True) -> Reading:
    """Preprocess one input into a Reading holding its model input, or its error. ``line``: the
    whole line for the CTC reader (the default reader); else five digit cells."""
    file = str(item) if isinstance(item, str | Path) else getattr(item, "filename", None) or None
    try:
        x, placement, warning = preprocess.preprocess_placed(item, line=line)
        if line and warning is None:
            warning = too_small(x, placement)
        return Reading(file=file, input=x, placement=placement, warning=warning)
    except DigitseqError as e:
        return Reading(file=file, error=str(e))
    except Exception as e:  # noqa: BLE001 - a decoder's own failure must not stop the others
        return Reading(file=file, error=f"cannot read image ({one_line(e)})")


MIN_INK_PX = 8  # rows of ink in the image below which no digit's shape is resolved


def too_small(x: np.ndarray, placement: np.ndarray) -> str | None:
    """A warning when the number is less than MIN_INK_PX tall in the image itself: scaled up
    to the model's 20-px digits it still reads, with a confidence that knows nothing of the
    rows that were never there (a 5-px tall number read 0.2-0.4; MNIST digits are 20 px)."""
    rows = int((x > 0.3).any(axis=1).sum())
    height = rows * float(np.hypot(*placement[:2, 1]))  # input rows -> image pixels
    if height >= MIN_INK_PX:
        return None
    return f"too small to read reliably: the number is {height:.0f} px tall in the image"


def image_spans(spans: list[list[int]], placement: np.ndarray | None) -> list[list[int]]:
    """Model-input column spans -> the image's own columns, along the line's middle row (the
    map undoes the crop, deskew and scaling); unchanged without a map."""
    if placement is None:
        return spans
    out = []
    for c0, c1 in spans:
        x0, x1 = (placement @ np.array([[c0 - 0.5, c1 + 0.5], [IMG_H / 2] * 2, [1.0, 1.0]]))[0]
        lo, hi = sorted((x0, x1))
        out.append([max(0, int(np.floor(lo + 0.5))), max(0, int(np.ceil(hi - 0.5)))])
    return out


def padded_call(backend, x: np.ndarray) -> np.ndarray:
    """Run a batch padded with blank images to the next power of two. Kernel and allocator
    caches are kept per input shape: with every batch size from 1 to 64 (the service's
    micro-batches), a server's memory grew by ~230 MB; with 7 shapes it stays flat."""
    n = len(x)
    size = 1 << (n - 1).bit_length()
    if size != n:
        x = np.concatenate([x, np.zeros((size - n, *x.shape[1:]), x.dtype)])
    return backend(x)[:n]


def cached_onnx(model, cfg: dict) -> str:
    """The ONNX export of a checkpoint, cached under DIGITSEQ_HOME/cache/onnx by the hash of its
    weights and config (exporting takes seconds; loading the cached file, milliseconds)."""
    import hashlib

    from digitseq.core.files import atomic_write_bytes
    from digitseq.core.paths import home
    from digitseq.models import onnx_export

    h = hashlib.sha256(Path(cfg["weights_path"]).read_bytes())
    h.update(json.dumps({k: cfg.get(k) for k in ("model", "calibration")}, sort_keys=True).encode())
    path = home() / "cache" / "onnx" / f"{h.hexdigest()[:32]}.onnx"
    if not path.is_file():
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(path, onnx_export.onnx_bytes(model))
        except OSError:  # read-only home: export in memory every time
            return onnx_export.onnx_bytes(model)
    return str(path)
