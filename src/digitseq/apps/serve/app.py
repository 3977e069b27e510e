"""``digitseq serve``: an HTTP reading service (FastAPI on uvicorn).

POST /v1/read takes images (multipart field ``files``, or one raw ``image/*`` body) and answers
the same JSON objects as ``digitseq predict --format jsonl``. Uploads are decoded and
preprocessed on a thread pool; the model inputs of concurrent requests are batched by a
``MicroBatcher`` (one forward pass on a dedicated thread), so the event loop never runs torch.

Limits (413 / 415 / 422 / 503) are checked before any work is done; no answer is ever a 500
with a traceback. Settings come from ``DIGITSEQ_SERVE_*`` environment variables (see
``ServeSettings``), so every uvicorn worker process builds the same app.

This module holds the app and its routes; ``settings`` the settings, ``uploads`` the request's
images, ``errors`` the error answers, ``schema`` the documented shapes.
"""

from __future__ import annotations

import asyncio
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager

from fastapi import FastAPI, Query, Request
from fastapi.responses import JSONResponse, Response
from starlette.requests import ClientDisconnect

from digitseq import __version__
from digitseq.apps.serve import batching
from digitseq.apps.serve.errors import ApiError, install_error_handlers
from digitseq.apps.serve.schema import (
    DESCRIPTION,
    MIN_CONFIDENCE_DOC,
    READ_RESPONSES,
    Health,
    ModelInfo,
    model_answer,
    read_request_body,
)
from digitseq.apps.serve.settings import SUPERVISOR_ENV, ServeSettings
from digitseq.apps.serve.uploads import header_pixels, uploads_from_request
from digitseq.core.errors import DigitseqError
from digitseq.reading.predictor import parse_digits

log = logging.getLogger("digitseq.apps.serve.app")
SICK = 3  # forward passes failed in a row: /healthz answers 503
DIGITS_FORM = r"^([1-9]|[1-5][0-9]|6[0-4])(-([1-9]|[1-5][0-9]|6[0-4]))?$"  # N or A-B, 1..64


# --- the app --------------------------------------------------------------------------------


def create_app(settings: ServeSettings | None = None, predictor=None) -> FastAPI:
    """The ASGI app; the model loads in the lifespan (once per worker) unless one is given."""
    s = (settings or ServeSettings()).checked()
    app = FastAPI(
        title="digitseq",
        version=__version__,
        summary="Read handwritten numbers of any length.",
        description=DESCRIPTION,
        lifespan=lifespan(s, predictor),
        docs_url=None,  # served below from local assets: FastAPI's default loads a CDN
        redoc_url=None,
    )
    install_error_handlers(app)
    install_docs(app)
    add_read_route(app, s)
    add_status_routes(app, s)
    return app


def lifespan(s: ServeSettings, predictor=None):
    """Load the model (unless given), start the batcher and the decode pool; stop them after."""

    @asynccontextmanager
    async def run(app: FastAPI):
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

    return run


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


def add_read_route(app: FastAPI, s: ServeSettings) -> None:
    """POST /v1/read: the images' readings, or one error line."""

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
            description="read the most probable text this format accepts: amount, date "
            "(date-dmy, date-mdy, date-ymd: in that order), time, phone, digits, or a regular "
            "expression over digits and . , - / : ( ) + and space "
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


def add_status_routes(app: FastAPI, s: ServeSettings) -> None:
    """GET /v1/model (what reads) and GET /healthz (whether it reads)."""

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


def client_address(request: Request) -> str:
    return f"{request.client.host}:{request.client.port}" if request.client else "?"


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
