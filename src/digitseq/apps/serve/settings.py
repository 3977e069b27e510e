"""``digitseq serve``'s settings, read from ``DIGITSEQ_SERVE_*`` environment variables so every
uvicorn worker process builds the same app, and checked once at startup."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, fields

from digitseq.core.errors import DigitseqError

SUPERVISOR_ENV = "DIGITSEQ_SUPERVISOR_PID"  # set by `digitseq serve --workers N` for its workers


@dataclass(frozen=True)
class ServeSettings:
    """Service settings; each field ``name`` is read from ``DIGITSEQ_SERVE_<NAME>``."""

    model: str | None = None  # run folder / weights; None = the bundled model
    backend: str = "onnx"  # onnxruntime, or "torch"
    max_batch: int = 64  # images per forward pass; 1 turns batching off
    max_wait_ms: float = 5.0  # how long the batcher waits for more images
    max_files: int = 32  # files per request
    max_file_mb: float = 10.0  # bytes per file
    max_body_mb: float = 64.0  # bytes per request
    max_request_mp: float = 200.0  # decoded megapixels per request (from the image headers)
    timeout_s: float = 15.0  # a request that takes longer gets 503
    max_queue: int = 4096  # images waiting for the model before new requests get 503
    threads: int = 2  # decode/preprocess threads
    request_threads: int = 1  # of those, how many one request may use at once
    torch_threads: int = 0  # torch threads; 0: left alone (the CLI picks half the cores)
    max_header_kb: float = 64.0  # request line + headers (431 above)
    max_headers: int = 100  # header lines (431 above)
    header_timeout_s: float = 10.0  # to receive a request's headers (408 and close after)
    keep_alive_s: float = 5.0  # an idle keep-alive connection is closed after this
    max_connections: int = 1000  # open connections; over it the slowest waiting one is closed

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> ServeSettings:
        env = os.environ if environ is None else environ
        values = {}
        for f in fields(cls):
            text = env.get(f"DIGITSEQ_SERVE_{f.name.upper()}")
            if text is None or text == "":
                continue
            kind = str if f.default is None else type(f.default)  # int, float or str
            try:
                values[f.name] = kind(text)
            except ValueError:
                raise DigitseqError(
                    f"DIGITSEQ_SERVE_{f.name.upper()}={text!r} is not a valid {kind.__name__}"
                ) from None
        return cls(**values).checked()

    def checked(self) -> ServeSettings:
        """Every setting finite and in its range, else one line naming it (at startup)."""
        if self.backend not in ("torch", "onnx"):
            raise DigitseqError(
                f"serve setting backend must be torch or onnx, not {self.backend!r}"
            )
        for name, (low, high) in RANGES.items():
            value = getattr(self, name)
            if not (
                isinstance(value, int | float) and math.isfinite(value) and low <= value <= high
            ):
                raise DigitseqError(
                    f"DIGITSEQ_SERVE_{name.upper()}={value!r}: serve setting {name} must be "
                    f"a finite number from {low:g} to {high:g}"
                )
        if self.request_threads > self.threads:
            raise DigitseqError(
                f"DIGITSEQ_SERVE_REQUEST_THREADS={self.request_threads} is more than "
                f"DIGITSEQ_SERVE_THREADS={self.threads}"
            )
        return self

    def to_env(self) -> dict[str, str]:
        return {
            f"DIGITSEQ_SERVE_{f.name.upper()}": str(getattr(self, f.name))
            for f in fields(self)
            if getattr(self, f.name) is not None
        }


RANGES = {  # setting -> (lowest, highest) allowed value
    "max_batch": (1, 4096),
    "max_wait_ms": (0, 10_000),
    "max_files": (1, 1024),
    "max_file_mb": (0.001, 1024),
    "max_body_mb": (0.001, 4096),
    "max_request_mp": (0.001, 100_000),
    "timeout_s": (0.001, 3600),
    "max_queue": (1, 1_000_000),
    "threads": (1, 256),
    "request_threads": (1, 256),
    "torch_threads": (0, 1024),
    "max_header_kb": (1, 1024),
    "max_headers": (1, 10_000),
    "header_timeout_s": (0.001, 3600),
    "keep_alive_s": (0.001, 3600),
    "max_connections": (1, 1_000_000),
}
