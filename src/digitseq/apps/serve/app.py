"""``digitseq serve``: an HTTP reading service (FastAPI on uvicorn).

POST /v1/read takes images (multipart field ``files``, or one raw ``image/*`` body) and answers
the same JSON objects as ``digitseq predict --format jsonl``. Uploads are decoded and
preprocessed on a thread pool; the model inputs of concurrent requests are batched by a
``MicroBatcher`` (one forward pass on a dedicated thread), so the event loop never runs torch.

Limits (413 / 415 / 422 / 503) are checked before any work is done; no answer is ever a 500
with a traceback. Settings come from ``DIGITSEQ_SERVE_*`` environment variables (see
``ServeSettings``), so every uvicorn worker process builds the same app.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, fields

from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.formparsers import MultiPartException
from starlette.requests import ClientDisconnect

from digitseq import __version__
from digitseq.apps.serve import batching
from digitseq.apps.serve.schema import (
    DESCRIPTION,
    MIN_CONFIDENCE_DOC,
    READ_RESPONSES,
    Health,
    ModelInfo,
    model_answer,
    read_request_body,
)
from digitseq.core.errors import DigitseqError
from digitseq.reading.predictor import parse_digits

log = logging.getLogger("digitseq.apps.serve.app")
MB = 1024 * 1024
RAW_TYPES = ("image/", "application/octet-stream")
SICK = 3  # forward passes failed in a row: /healthz answers 503
DIGITS_FORM = r"^([1-9]|[1-5][0-9]|6[0-4])(-([1-9]|[1-5][0-9]|6[0-4]))?$"  # N or A-B, 1..64
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


class ApiError(Exception):
    """An answer other than 200: status code and one line for the caller."""

    def __init__(self, status: int, detail: str):
        super().__init__(detail)
        self.status, self.detail = status, detail


# --- reading images -------------------------------------------------------------------------


def prepare(data: bytes, line: bool = True):
    """Bytes of one upload -> a Reading holding the model input or the file's error.
    ``preprocess`` checks the pixel count from the header before decoding (bombs)."""
    from digitseq.reading import predictor as reader

    try:
        return reader.prepare(data, line=line)
    except Exception as e:  # noqa: BLE001 - a decoder failure is that file's error, not a 500
        log.info("preprocessing failed: %s: %s", type(e).__name__, e)
        return reader.Reading(error="could not decode the image")


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it passes ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise ApiError(413, f"request body over the limit of {limit / MB:g} MB")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, f"request body over the limit of {limit / MB:g} MB")
        chunks.append(chunk)
    return b"".join(chunks)


async def uploads_from_request(
    request: Request, s: ServeSettings
) -> list[tuple[str | None, bytes]]:
    """[(file name, bytes)] from a multipart form (field ``files``) or a raw image body."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    max_file = int(s.max_file_mb * MB)
    if media.startswith(RAW_TYPES):
        body = await read_body(request, min(max_file, int(s.max_body_mb * MB)))
        return [(None, body)]
    if media != "multipart/form-data":
        raise ApiError(
            415,
            "send images as multipart/form-data (field 'files') or one raw body with an "
            f"image/* content type, not {media or 'no content type'!r}",
        )
    body = await read_body(request, int(s.max_body_mb * MB))

    async def replay():
        return {"type": "http.request", "body": body, "more_body": False}

    # Without "app" in the scope starlette raises its parser errors instead of a bare 400.
    scope = {k: v for k, v in request.scope.items() if k != "app"}
    form_request = Request(scope, replay)
    try:
        form = await form_request.form(
            max_files=s.max_files, max_fields=s.max_files + 16, max_part_size=max_file
        )
    except MultiPartException as e:
        if "Too many" in e.message or "exceeded" in e.message:
            raise ApiError(413, f"too many files or fields: at most {s.max_files} files") from None
        raise ApiError(422, f"malformed multipart body: {e.message}") from None
    try:
        parts = form.getlist("files")
        if not parts:
            raise ApiError(422, "no images: send them as multipart field 'files'")
        if len(parts) > s.max_files:
            raise ApiError(413, f"{len(parts)} files: at most {s.max_files} per request")
        uploads = []
        for part in parts:
            if isinstance(part, str):  # a text field (a part without a filename) is no image
                raise ApiError(422, "field 'files' must hold file uploads, not text")
            data = await part.read(max_file + 1)
            if len(data) > max_file:
                raise ApiError(413, f"{part.filename!r} is over the limit of {s.max_file_mb:g} MB")
            uploads.append((part.filename, data))
        return uploads
    finally:
        await form.close()


# --- the app --------------------------------------------------------------------------------


def create_app(settings: ServeSettings | None = None, predictor=None) -> FastAPI:
    """The ASGI app; the model loads in the lifespan (once per worker) unless one is given."""
    s = (settings or ServeSettings()).checked()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        from digitseq.reading import predictor as reader

        release_freed_memory_eagerly()
        if s.torch_threads:
            import torch

            torch.set_num_threads(s.torch_threads)
        p = predictor or reader.Predictor.load(s.model, s.backend, max(1, s.torch_threads))
        batcher = batching.MicroBatcher(  # model inputs -> per-input outputs (p.fill reads them)
            p.outputs,
            max_batch=s.max_batch,
            max_wait_ms=s.max_wait_ms,
            max_queue=s.max_queue,
        )
        pool = ThreadPoolExecutor(max_workers=s.threads, thread_name_prefix="digitseq-decode")
        await batcher.start()
        app.state.predictor, app.state.batcher, app.state.pool = p, batcher, pool
        try:
            yield
        finally:
            await batcher.stop()
            pool.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(
        title="digitseq",
        version=__version__,
        summary="Read handwritten numbers of any length.",
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,  # served below from local assets: FastAPI's default loads a CDN
        redoc_url=None,
    )
    install_error_handlers(app)
    install_docs(app)

    @app.post(
        "/v1/read",
        summary="Read the number (any length) in one or several images",
        response_model=None,
        responses=READ_RESPONSES,
        openapi_extra=read_request_body(s.max_files),
    )
    async def read(
        request: Request,
        min_confidence: float | None = Query(None, ge=0.0, le=1.0, description=MIN_CONFIDENCE_DOC),
        digits: str | None = Query(
            None,
            description="the number has N (or A-B, 1 <= A <= B <= 64) digits: read the most "
            "probable such number (as `digitseq predict --digits`)",
            json_schema_extra={"pattern": DIGITS_FORM},  # documented; checked by parse_digits
        ),
        pattern: str | None = Query(
            None,
            max_length=200,
            description="read the most probable text this format accepts: amount, date, time, "
            "phone, digits, or a regular expression over digits and . , - / : ( ) + and space "
            "(as `digitseq predict --pattern`); an unlikely fit is flagged in `warning`",
        ),
    ) -> JSONResponse:
        try:
            bounds = parse_digits(digits) if digits is not None else None  # the CLI's parser
            request.app.state.predictor.check_digits(bounds, pattern)
        except DigitseqError as e:
            raise ApiError(422, str(e)) from None
        try:
            async with asyncio.timeout(s.timeout_s):
                results = await read_images(request, s, min_confidence, bounds, pattern)
        except TimeoutError:
            raise ApiError(503, f"the request took longer than {s.timeout_s:g} s") from None
        except batching.BatcherBusy as e:
            raise ApiError(503, f"the service is busy: {e}") from None
        except (ClientDisconnect, ClientGone) as e:
            # Normal life for a service (a closed tab, a killed curl): one info line, and
            # nobody is left to answer.
            where = "during its upload" if isinstance(e, ClientDisconnect) else "before its answer"
            log.info("client %s went away %s", client_address(request), where)
            return Response(status_code=499)
        return JSONResponse({"results": results})

    @app.get("/v1/model", summary="The model behind the service", response_model=ModelInfo)
    async def get_model(request: Request) -> dict:
        return model_answer(request.app.state.predictor.info, s)

    @app.get(
        "/healthz",
        summary="Liveness for load balancers",
        response_model=Health,
        responses={503: {"model": Health, "description": "the model is not running, or fails"}},
    )
    async def healthz(request: Request):
        batcher = getattr(request.app.state, "batcher", None)
        # a model that fails batch after batch is not healthy, even with its thread running
        ok = batcher is not None and batcher.running and batcher.stats.failed_in_a_row < SICK
        body = {
            "status": "ok" if ok else "unavailable",
            "batching": batcher.stats.to_dict() if batcher is not None else None,
        }
        return JSONResponse(body, status_code=200 if ok else 503)

    return app


async def read_images(request: Request, s: ServeSettings, min_confidence, digits=None,
                      pattern=None):  # fmt: skip
    """Uploads -> preprocess (thread pool) -> batched model -> one jsonl-style dict per file."""

    uploads = await uploads_from_request(request, s)
    loop = asyncio.get_running_loop()
    pool, batcher = request.app.state.pool, request.app.state.batcher
    p = request.app.state.predictor
    line = p.line
    share = asyncio.Semaphore(s.request_threads)  # this request's share of the decode pool

    async def decode(data: bytes):
        async with share:
            return await loop.run_in_executor(pool, prepare, data, line)

    async def work():
        pixels = await loop.run_in_executor(pool, header_pixels, [d for _, d in uploads])
        if pixels > s.max_request_mp * 1e6:
            raise ApiError(
                413,
                f"the images hold {pixels / 1e6:.0f} megapixels in all: at most "
                f"{s.max_request_mp:g} per request",
            )
        return await asyncio.gather(*(decode(data) for _, data in uploads))

    # Decoding stops (images not yet started are never decoded) when the client goes away.
    readings = await until_disconnected(request, work())
    ok = [r for r in readings if r.error is None]
    outputs = await batcher.submit([r.input for r in ok])
    for r, out in zip(ok, outputs, strict=True):
        p.fill(r, out, min_confidence, digits, pattern)
    for r, (name, _) in zip(readings, uploads, strict=True):
        r.file = name
    return [r.to_json(include_abstained=min_confidence is not None) for r in readings]


def install_docs(app: FastAPI) -> None:
    """/docs: Swagger UI from the pinned ``swagger-ui-bundle`` package, so the page works with
    no internet access and loads no third-party script."""
    from fastapi.openapi.docs import get_swagger_ui_html
    from fastapi.staticfiles import StaticFiles
    from swagger_ui_bundle import swagger_ui_path

    app.mount("/docs/assets", StaticFiles(directory=str(swagger_ui_path)), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def docs():
        return get_swagger_ui_html(
            openapi_url=app.openapi_url,
            title="digitseq - API docs",
            swagger_js_url="/docs/assets/swagger-ui-bundle.js",
            swagger_css_url="/docs/assets/swagger-ui.css",
            swagger_favicon_url="/docs/assets/favicon-32x32.png",
        )


def release_freed_memory_eagerly() -> None:
    """Serve big allocations (decoded images) from mmap and give them back when freed.

    glibc raises its mmap threshold after the first big free, so later decoded images come from
    the heap, whose freed space stays in the process: RSS climbed from 345 MB to a ~1 GB plateau
    after a few big uploads. A fixed 1 MiB threshold returns each image's memory to the system
    as soon as it is freed. No-op off glibc."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(-3, 1 << 20)  # M_MMAP_THRESHOLD
    except (OSError, AttributeError):
        pass


class ClientGone(Exception):
    """The client disconnected while its images were being read."""


async def until_disconnected(request: Request, coro):
    """Run ``coro`` (after the body was read) unless the client disconnects first: then cancel
    it and raise ClientGone."""
    work = asyncio.ensure_future(coro)

    async def watch() -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    watcher = asyncio.ensure_future(watch())
    try:
        await asyncio.wait({work, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        if not work.done():
            work.cancel()
        watcher.cancel()
    if not work.done() or work.cancelled():
        raise ClientGone
    return work.result()


def header_pixels(datas: list[bytes]) -> int:
    """Pixels the images claim in their headers (no decoding); unreadable ones count 0 and get
    their own error later."""
    import io

    from PIL import Image

    total = 0
    for data in datas:
        try:
            with Image.open(io.BytesIO(data)) as im:
                total += im.width * im.height
        except Exception:  # noqa: BLE001, S112 - an unreadable header is that file's error
            continue
    return total


def client_address(request: Request) -> str:
    return f"{request.client.host}:{request.client.port}" if request.client else "?"


def install_error_handlers(app: FastAPI) -> None:
    """Every error is ``{"detail": one line}``: no tracebacks, no 500 with internals."""

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError):
        headers = {"Retry-After": "1"} if exc.status == 503 else None
        return JSONResponse({"detail": exc.detail}, status_code=exc.status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        msgs = []
        for err in exc.errors()[:3]:
            where = ".".join(str(x) for x in err.get("loc", ())[1:]) or "request"
            msgs.append(f"{where}: {err.get('msg', 'invalid')}")
        return JSONResponse({"detail": "; ".join(msgs) or "invalid request"}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        return JSONResponse(
            {"detail": str(exc.detail)},
            status_code=exc.status_code,
            headers=getattr(exc, "headers", None),
        )

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception):
        log.error("unexpected %s on %s: %s", type(exc).__name__, request.url.path, exc)
        return JSONResponse({"detail": "internal error; see the server log"}, status_code=500)


# --- command line ---------------------------------------------------------------------------


def app_from_env() -> FastAPI:
    """uvicorn factory for ``--workers N``: each worker process builds its app from the env,
    and stops (SIGTERM: uvicorn's graceful stop) when the supervisor that started it dies."""
    from digitseq.core.lifeline import exit_with_parent

    supervisor = os.environ.get(SUPERVISOR_ENV, "")
    if supervisor.isdigit():
        exit_with_parent(int(supervisor))
    return create_app(ServeSettings.from_env())


def check_bindable(host: str, port: int) -> None:
    """Fail in one line (not uvicorn's log and exit 3) when the address cannot be used."""
    import socket

    if not 0 <= port <= 65535:
        raise DigitseqError(f"--port must be in 0..65535, got {port}")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        with socket.socket(infos[0][0], socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(infos[0][4])
    except OSError as e:
        raise DigitseqError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
