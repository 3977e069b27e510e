"""``digitseq app``: start the Streamlit web app."""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from pathlib import Path


def add_parser(sub) -> None:
    p = sub.add_parser("app", help="start the Streamlit web app")
    p.add_argument("--port", type=int, default=8501)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--runs-dir", type=Path, help="where to look for run folders")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from digitseq.apps.webapp.view import streamlit_command

    if importlib.util.find_spec("streamlit") is None:  # the app runs in a child process
        raise ModuleNotFoundError("No module named 'streamlit'", name="streamlit")
    env = dict(os.environ)
    # Decoded uploads are large, short-lived buffers: served from mmap, glibc gives them back
    # when freed instead of keeping ~330 MB of heap per past session (scripts/app_memory.py).
    env.setdefault("MALLOC_MMAP_THRESHOLD_", "131072")
    if args.runs_dir:
        env["DIGITSEQ_RUNS_DIR"] = str(args.runs_dir)
    print(f"digitseq app on http://{args.host}:{args.port}", flush=True)
    # Headless: Streamlit then never asks its first-run "Email:" question (which blocks forever
    # without a terminal) nor tries to open a browser; the URL is printed above.
    command = streamlit_command(args.port, args.host, headless=True)
    # Streamlit replaces this process (same pid): a process manager's SIGTERM reaches the server
    # itself. A child started with subprocess.call kept serving when only its parent was killed.
    sys.stderr.flush()
    os.execvpe(command[0], command, env)
