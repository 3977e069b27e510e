"""``digitseq serve``: start the HTTP reading service (FastAPI on uvicorn)."""

from __future__ import annotations

import argparse
import logging
import os
from dataclasses import replace
from pathlib import Path

from digitseq.apps.cli.options import positive_int
from digitseq.apps.serve.app import ServeSettings, check_bindable, create_app

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
    import uvicorn

    from digitseq.reading.predictor import Predictor

    settings = ServeSettings.from_env()
    if args.model:
        settings = replace(settings, model=str(args.model))
    if not settings.torch_threads:
        # Half the cores per worker: the other half decodes uploads and serves HTTP. Torch on
        # every core collapses when anything else runs (ENVIRONMENT.md: 1.5 ms -> 160 ms).
        cores = os.cpu_count() or 1
        settings = replace(settings, torch_threads=max(1, cores // (2 * args.workers)))
    check_bindable(args.host, args.port)
    # a bad model path fails here, in one line, before uvicorn starts
    predictor = Predictor.load(settings.model, settings.backend, max(1, settings.torch_threads))
    name = predictor.info.get("name", "model")
    print(f"digitseq serve: {name} on http://{args.host}:{args.port} (docs at /docs)", flush=True)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("listening on %s: the service is reachable from the network", args.host)
    level = "warning" if getattr(args, "quiet", False) else "info"
    if args.workers == 1:
        uvicorn.run(
            create_app(settings, predictor),
            host=args.host,
            port=args.port,
            log_level=level,
            timeout_graceful_shutdown=5,
        )
        return 0
    del predictor
    os.environ.update(settings.to_env())  # the workers are new processes: pass settings down
    uvicorn.run(
        "digitseq.apps.serve.app:app_from_env",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level=level,
        timeout_graceful_shutdown=5,
    )
    return 0
