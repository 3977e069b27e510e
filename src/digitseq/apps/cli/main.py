"""The ``digitseq`` command line: one module per subcommand in this package, each with
``add_parser(subparsers)`` and ``run(args) -> int``. Heavy imports (torch, streamlit) happen
inside ``run``, so ``digitseq --help`` and reading-only commands start fast."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys

from digitseq import __version__
from digitseq.apps.cli import app, evaluate, export, fetch, generate, predict, report, serve, train
from digitseq.core.errors import DigitseqError
from digitseq.core.extras import missing_extra

COMMANDS = (fetch, generate, train, evaluate, predict, export, report, app, serve)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="digitseq", description="Read handwritten numbers with a CNN trained on MNIST."
    )
    parser.add_argument("--version", action="version", version=f"digitseq {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    parser.add_argument("-q", "--quiet", action="store_true", help="errors only, no progress bars")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.ERROR if args.quiet else (logging.DEBUG if args.verbose else logging.INFO)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    try:
        return args.handler(args) or 0
    except DigitseqError as e:
        print(f"digitseq: error: {e}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as e:  # an optional extra that is not installed: one line
        error = missing_extra(e, f"digitseq {args.command}")
        if error is None:
            raise
        print(f"digitseq: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:  # Ctrl-C, or SIGTERM where a command turns it into Stopped
        print("digitseq: interrupted", file=sys.stderr)
        return 128 + getattr(e, "signum", signal.SIGINT)
    except (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError) as e:
        print(f"digitseq: error: {e.strerror}: {e.filename}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `digitseq predict folder | head -2`: the reader left, so do we
        silence_stdout()
        return 128 + signal.SIGPIPE
    except OSError as e:  # e.g. a full disk (ENOSPC) under standard output
        where = f": {e.filename}" if e.filename else ""
        print(f"digitseq: error: cannot write: {e.strerror or e}{where}", file=sys.stderr)
        silence_stdout()
        return 2


def silence_stdout() -> None:
    """Point standard output at /dev/null, so that the interpreter's flush at exit does not
    fail a second time (and print its own traceback)."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, ValueError, OSError):  # captured (tests): nothing to silence
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)


if __name__ == "__main__":
    sys.exit(main())
