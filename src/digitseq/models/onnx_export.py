"""``digitseq export --format onnx``: a single-file ONNX model with a dynamic batch axis, plus a
JSON sidecar (``model.onnx.json``) naming the architecture, the input format and the check
that onnxruntime reproduces the torch logits."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np

from digitseq.core import files
from digitseq.core.constants import IMG_H, IMG_W
from digitseq.core.errors import DigitseqError

log = logging.getLogger(__name__)

INPUT_NAME, OUTPUT_NAME = "x", "logits"
CHECK_TOLERANCE = 1e-4  # max |torch - onnxruntime| on the logits of a test batch
CHATTY = ("torch.onnx", "onnxscript", "onnx_ir")  # loggers that narrate every export


def onnx_program(model):
    """torch.onnx.export (dynamo) of an eval-mode model: batch axis dynamic, and the width axis
    too for line readers. The temperature (``Calibrated``) is kept, so onnxruntime gives the
    same calibrated confidences as torch."""
    import torch

    model = getattr(model, "module", model)  # DDP / EMA wrappers, never the calibration
    model = getattr(model, "_orig_mod", model).eval()
    line = is_line_reader(model)
    dims = {0: torch.export.Dim("batch")}
    if line:  # widths are multiples of 4 (one frame per 4 columns), 8 to 4096 columns
        dims[3] = 4 * torch.export.Dim("frames", min=2, max=1024)
    levels = {name: logging.getLogger(name).level for name in CHATTY}
    example = torch.rand(2, 1, IMG_H, IMG_W + 4 if line else IMG_W)
    try:
        for name in CHATTY:  # "torchvision is not installed", optimizer pass notices
            logging.getLogger(name).setLevel(logging.ERROR)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.onnx.export(
                model,
                (example,),
                input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME],
                dynamic_shapes={"x": dims},
                external_data=False,
                dynamo=True,
                verbose=False,
            )
    except ImportError as e:
        raise DigitseqError(
            f"ONNX export needs onnx and onnxscript: pip install 'digitseq[train]' ({e})"
        ) from None
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


def onnx_bytes(model) -> bytes:
    """The serialized ONNX model, for an in-memory onnxruntime session."""
    return onnx_program(model).model_proto.SerializeToString()


def is_line_reader(model) -> bool:
    from digitseq.models.checkpoint import unwrap
    from digitseq.models.ctc import CTCReader
    from digitseq.models.ensemble import CTCEnsemble

    return isinstance(unwrap(model), CTCReader | CTCEnsemble)


def check(model, data: bytes, n: int = 8, seed: int = 0) -> float:
    """Max |torch - onnxruntime| over the logits of n random inputs (batch > 2: dynamic axis;
    line readers at two widths: dynamic width)."""
    import onnxruntime as ort
    import torch

    rng = np.random.default_rng(seed)
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    diff = 0.0
    for width in (IMG_W, 28 * 12) if is_line_reader(model) else (IMG_W,):
        x = rng.random((n, 1, IMG_H, width), dtype=np.float32)
        got = session.run(None, {session.get_inputs()[0].name: x})[0]
        with torch.inference_mode():
            want = model(torch.from_numpy(x)).numpy()
        diff = max(diff, float(np.abs(got - want).max()))
    return diff


def export_onnx(model_path: Path | None, output: Path) -> dict:
    """Export a checkpoint to ``output`` (atomic) and write ``output.json``; returns the sidecar."""
    import torch

    from digitseq.models import checkpoint

    output = Path(output)
    model, cfg = checkpoint.load_model(model_path)
    data = onnx_bytes(model)
    diff = check(model, data)
    line = is_line_reader(model)
    if diff > CHECK_TOLERANCE:
        raise DigitseqError(
            f"the exported model disagrees with torch (max logit diff {diff:.2e}); not written"
        )
    sidecar = {
        "format": "digitseq-onnx",
        "model": cfg["model"],
        "source": cfg["weights_path"],
        "input": {
            "name": INPUT_NAME,
            "shape": ["batch", 1, IMG_H, "width" if line else IMG_W],
            "dtype": "float32",
            "range": [0.0, 1.0],
            "polarity": "white ink on black",
        },
        "output": {
            "name": OUTPUT_NAME,
            "shape": ["batch", "width / 4", 11] if line else ["batch", 5, 10],
            "kind": "CTC frame logits (class 0 = blank), calibrated" if line else "logits",
        },
        "check_max_abs_diff": diff,
        "torch_version": torch.__version__,
    }
    for key in ("metrics", "test_metrics", "model_card"):
        if key in cfg:
            sidecar[key] = cfg[key]
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        files.atomic_write_bytes(output, data)
    except OSError as e:
        raise DigitseqError(f"cannot write {output}: {e.strerror}") from None
    files.write_json(output.with_name(output.name + ".json"), sidecar)
    return sidecar
