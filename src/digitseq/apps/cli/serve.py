"""``digitseq serve``: start the HTTP reading service (FastAPI on uvicorn)."""

from __future__ import annotations

import argparse
import logging
import os
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from digitseq.apps.cli.options import positive_int

if TYPE_CHECKING:
    from digitseq.apps.serve.app import ServeSettings

log = logging.getLogger(__name__)


def add_parser(sub) -> None:
    p = sub.add_parser("serve", help="start the HTTP reading service")
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="bind address (default 127.0.0.1; 0.0.0.0 exposes it to the network)",
    )
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--model", type=Path)
    p.add_argument("--workers", type=positive_int, default=1)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    import uvicorn  # the web stack is imported only when serving: `predict` starts fast

    from digitseq.apps.serve.app import (
        SUPERVISOR_ENV,
        ServeSettings,
        check_bindable,
        create_app,
    )
    from digitseq.apps.serve.guard import GuardedProtocol, Limits

    settings = ServeSettings.from_env()
    if args.model:
        settings = replace(settings, model=str(args.model))
    if not settings.torch_threads:
        # Half the cores per worker: the other half decodes uploads and serves HTTP. Torch on
        # every core collapses when anything else runs (ENVIRONMENT.md: 1.5 ms -> 160 ms).
        cores = os.cpu_count() or 1
        settings = replace(settings, torch_threads=max(1, cores // (2 * args.workers)))
    check_bindable(args.host, args.port)
    GuardedProtocol.limits = Limits.from_settings(settings)
    level = "warning" if getattr(args, "quiet", False) else "info"
    server_options = {  # uvicorn's own limits; the header limits live in GuardedProtocol
        "host": args.host,
        "port": args.port,
        "log_level": level,
        "http": GuardedProtocol,
        "timeout_keep_alive": settings.keep_alive_s,
        "timeout_graceful_shutdown": 5,
    }
    if args.workers == 1:
        from digitseq.reading.predictor import Predictor

        # a bad model path fails here, in one line, before uvicorn starts
        predictor = Predictor.load(settings.model, settings.backend, settings.torch_threads)
        announce(args, predictor.info.get("name", "model"))
        uvicorn.run(create_app(settings, predictor), **server_options)
        return 0
    # Several workers: each loads its own model. Validate it in a short-lived child process so
    # that this supervising parent never holds a model (~310 MB) it does not use.
    announce(args, validate_model_elsewhere(settings))
    os.environ.update(settings.to_env())  # the workers are new processes: pass settings down
    # uvicorn's supervisor stops its workers on SIGTERM; killed with SIGKILL it cannot, so each
    # worker watches that this process is still its parent (app_from_env).
    os.environ[SUPERVISOR_ENV] = str(os.getpid())
    uvicorn.run(
        "digitseq.apps.serve.app:app_from_env",
        factory=True,
        workers=args.workers,
        **server_options,
    )
    return 0


def announce(args: argparse.Namespace, name: str) -> None:
    print(f"digitseq serve: {name} on http://{args.host}:{args.port} (docs at /docs)", flush=True)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("listening on %s: the service is reachable from the network", args.host)


def load_model_name(model: str | None, backend: str) -> tuple[str | None, str | None]:
    """(model name, None) or (None, one-line error); runs in a child process."""
    from digitseq.core.errors import DigitseqError
    from digitseq.reading.predictor import Predictor

    try:
        return Predictor.load(model, backend, 1).info.get("name", "model"), None
    except DigitseqError as e:
        return None, str(e)


def validate_model_elsewhere(settings: ServeSettings) -> str:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from digitseq.core.errors import DigitseqError

    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
        name, error = pool.submit(load_model_name, settings.model, settings.backend).result()
    if error:
        raise DigitseqError(error)
    return name
