"""Which optional extra installs a third-party module, and the one-line error when it is missing.

``pip install digitseq`` reads images (onnxruntime, numpy, Pillow, tqdm). Training, evaluation,
reports, ONNX export and the torch backend need the ``train`` extra; the web app ``app``, the
HTTP service ``serve``, ``--engine ray`` ``cluster``.
"""

from __future__ import annotations

from digitseq.core.errors import DigitseqError

EXTRA_OF = {
    "torch": "train",
    "matplotlib": "train",
    "onnx": "train",
    "onnxscript": "train",
    "streamlit": "app",
    "streamlit_drawable_canvas": "app",
    "fastapi": "serve",
    "starlette": "serve",
    "uvicorn": "serve",
    "multipart": "serve",
    "python_multipart": "serve",
    "swagger_ui_bundle": "serve",
    "ray": "cluster",
}


def missing_extra(exc: ModuleNotFoundError, what: str) -> DigitseqError | None:
    """The one-line error for ``what`` when ``exc`` is a module of an extra; None otherwise."""
    module = (exc.name or "").partition(".")[0]
    extra = EXTRA_OF.get(module)
    if extra is None:
        return None
    return DigitseqError(
        f"{what} needs {module}, which is not installed: pip install 'digitseq[{extra}]'"
    )
