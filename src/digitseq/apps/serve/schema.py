"""The documented shapes of ``digitseq serve``'s API: response models, examples, request body.

FastAPI turns these into the OpenAPI schema at /docs; ``serve`` only points its routes at them.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from digitseq.models import decoders

DESCRIPTION = """Reads the handwritten number (any length) in each posted image with digitseq's
CTC line reader; `digits=N` or `digits=A-B` asks for the most probable number of that length.

Post images as multipart field `files` (one or several) or as one raw body with an `image/*`
content type. Every file gets one result, in order; a file that is not a readable image gets an
`error` and the others are still read. Errors are `{"detail": "..."}`: 413 for an upload over
the limits, 415 for an unsupported content type, 422 for a malformed request, 503 when the
service is busy or a request runs past its time limit."""

MIN_CONFIDENCE_DOC = (
    "Abstain (digits null, abstained true) when the number's confidence is below this; "
    "adds the `abstained` key to every result."
)

EXAMPLE_RESULT = {
    "file": "form-17.png",
    "digits": "40213",
    "text": "40213",
    "value": None,
    "confidence": 0.9871,
    "digit_confidences": [0.9991, 0.9962, 0.9987, 0.9945, 0.9983],
    "spans": [[212, 268], [291, 350], [377, 421], [452, 509], [538, 597]],
    "warning": None,
    "error": None,
}


class ReadResult(BaseModel):
    """One image's reading: the keys of `digitseq predict --format jsonl`."""

    file: str | None = Field(description="the upload's file name (null for a raw body)")
    digits: str | None = Field(
        pattern=r"^[0-9]*$", description="the number's digits, any length ('' when none is seen)"
    )
    text: str | None = Field(
        None,
        pattern=r"^[0-9.,\-/:()+ ]*$",
        description="what was read, separators included (a digit reader: the digits)",
    )
    value: str | None = Field(
        None,
        description="held to pattern date, time or amount: what it means, as an ISO date "
        "(2026-12-07), a time (14:30:00) or a decimal (1250.00); null otherwise",
    )
    confidence: float | None = Field(
        ge=0, le=1, description="calibrated probability of the whole reading"
    )
    digit_confidences: list[float] | None = Field(description="one per digit")
    spans: list[list[int]] | None = Field(
        None,
        description="each digit's [first, last] pixel column in the uploaded image (line readers)",
    )
    warning: str | None = Field(None, description="e.g. an unsure length-constrained reading")
    error: str | None = Field(description="why this file could not be read")
    abstained: bool | None = Field(None, description="only when min_confidence is given")
    model_config = ConfigDict(json_schema_extra={"examples": [EXAMPLE_RESULT]})


class ReadResponse(BaseModel):
    results: list[ReadResult]
    model_config = ConfigDict(json_schema_extra={"examples": [{"results": [EXAMPLE_RESULT]}]})


class ErrorResponse(BaseModel):
    detail: str = Field(description="one line saying what was wrong")
    model_config = ConfigDict(json_schema_extra={"examples": [{"detail": "3 files: at most 2"}]})


class ModelInfo(BaseModel):
    name: str
    arch: str
    hparams: dict
    backend: str = Field(examples=["torch"])
    input: dict = Field(description="what the model expects (after preprocessing)")
    metrics: dict | None = Field(description="figures from the model card, when known")
    serving: dict = Field(description="batching and limits of this service")
    model_config = ConfigDict(extra="allow")


class Health(BaseModel):
    status: str = Field(examples=["ok"])
    batching: dict | None


def error_doc(text: str) -> dict:
    return {"model": ErrorResponse, "description": text}


READ_RESPONSES = {
    200: {"model": ReadResponse, "description": "one result per file, in order"},
    413: error_doc("a file, the body or the number of files is over the limit"),
    415: error_doc("neither multipart/form-data nor an image/* body"),
    422: error_doc("malformed request: no files, bad multipart, bad min_confidence"),
    503: error_doc("busy, or the request ran past its time limit"),
}


def read_request_body(max_files: int) -> dict:
    binary = {"type": "string", "format": "binary"}
    files = {
        "type": "array",
        "items": binary,
        "minItems": 1,
        "maxItems": max_files,
        "description": f"one to {max_files} images (PNG, JPEG, ...)",
    }
    return {
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["files"],
                        "properties": {"files": files},
                    }
                },
                "image/png": {"schema": binary},
                "image/jpeg": {"schema": binary},
            },
        }
    }


def model_input(info: dict) -> dict:
    """What the model reads after preprocessing, as its decoder describes it: a whole line of
    any width (a line reader), or five 28x28 cells (the 5-digit baselines)."""
    return decoders.for_kind(info["kind"]).model_input(info.get("input_format"))


def model_answer(info: dict, s) -> dict:
    """predictor.info and the ``ServeSettings`` ``s`` -> the /v1/model answer (the server's
    file paths are not shown)."""
    out = {
        "name": str(info.get("name") or "model"),
        "arch": str(info.get("arch") or "unknown"),
        "hparams": dict(info.get("hparams") or {}),
        "backend": str(info.get("backend") or s.backend),
        "input": model_input(info),
        "metrics": info.get("metrics") or info.get("test_metrics"),
        "serving": {
            "max_batch": s.max_batch,
            "max_wait_ms": s.max_wait_ms,
            "max_files": s.max_files,
            "max_file_mb": s.max_file_mb,
            "max_body_mb": s.max_body_mb,
            "timeout_s": s.timeout_s,
        },
    }
    if isinstance(info.get("model_card"), dict):
        out["model_card"] = info["model_card"]
    return out
