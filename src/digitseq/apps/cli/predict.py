"""``digitseq predict``: read the numbers in image files, folders and lists of paths, on every
core of this machine (``--jobs``) or on a Ray cluster (``--engine ray``)."""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import threading
from pathlib import Path

from digitseq.apps.batch.inputs import iter_items, read_list
from digitseq.apps.batch.output import JsonlOutput, json_line, name_key, text_line
from digitseq.apps.cli.options import digit_range, positive_int, probability
from digitseq.core.errors import DigitseqError
from digitseq.core.lifeline import stop_raises
from digitseq.core.progress import is_terminal, progress_bar


def default_jobs() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def add_parser(sub) -> None:
    p = sub.add_parser("predict", help="read the number in image files")
    p.add_argument("inputs", nargs="*", metavar="IMAGE_OR_FOLDER")
    p.add_argument("--model", type=Path, help="run folder or weights (default: bundled model)")
    p.add_argument(
        "--format",
        choices=["text", "jsonl", "parquet"],
        help="text (default on stdout), jsonl (default with --output), parquet (--engine ray)",
    )
    p.add_argument(
        "--min-confidence",
        type=probability,
        help="abstain below this confidence; for the bundled reader 0.954 keeps the readings that "
        "are 99.5%% right on val numbers (89%% of them), 0.997 those 99.9%% right (55%%)",
    )
    p.add_argument(
        "--backend",
        choices=["torch", "onnx"],
        default="onnx",
        help="onnxruntime (default: no torch needed) or torch; same digits and confidences",
    )
    p.add_argument(
        "--digits",
        type=digit_range,
        metavar="N|A-B",
        help="the number has N (or A to B) digits: read the most probable such number",
    )
    p.add_argument(
        "--pattern",
        metavar="FORMAT|REGEX",
        help="read the most probable text this format accepts: amount, date (date-dmy, date-mdy, "
        "date-ymd: in that order), time, phone, digits, or a regular expression over digits "
        "and . , - / : ( ) + and space (e.g. "
        r"'\d{2}/\d{2}/\d{4}'); an unlikely fit is flagged in warning, never forced",
    )
    p.add_argument(
        "--batch-size",
        type=positive_int,
        default=64,
        help="images per model batch, and per worker chunk (more: more memory, 256 ~ +0.5 GB)",
    )
    add_batch_arguments(p.add_argument_group("many files"))
    p.set_defaults(handler=run)


def add_batch_arguments(batch) -> None:
    """The options for reading many files: processes, inputs, resumable output, engine."""
    batch.add_argument(
        "--jobs", "-j", type=positive_int,
        help="processes that decode and preprocess (default: every core; with --engine ray, "
        "the CPUs of the local cluster it starts)",
    )  # fmt: skip
    batch.add_argument("--recursive", "-r", action="store_true", help="read sub-folders too")
    batch.add_argument(
        "--from-list", metavar="FILE", help="a text file of paths, one per line ('-': stdin)"
    )
    batch.add_argument(
        "--output",
        "-o",
        help="write JSONL here, fsynced chunk by chunk (resumable); '-': standard output",
    )
    batch.add_argument(
        "--resume", action="store_true", help="skip the files already in --output, append the rest"
    )
    batch.add_argument(
        "--engine", choices=["local", "ray"], default="local",
        help="local processes, or Ray Data (a local cluster, or RAY_ADDRESS's)",
    )  # fmt: skip


def check(args: argparse.Namespace) -> str:
    """Validate option combinations; the output format."""
    if not args.inputs and args.from_list is None:
        raise DigitseqError("nothing to read: name images or folders, or pass --from-list FILE")
    fmt = args.format or ("jsonl" if args.output else "text")
    if args.output == "-":  # standard output, as the format says (jsonl unless told)
        if args.resume or fmt == "parquet":
            raise DigitseqError("--output - is standard output: no --resume, no parquet")
        args.output = None
    if args.resume and args.output is None:
        raise DigitseqError("--resume continues an --output file: pass --output FILE.jsonl")
    if args.output is not None and fmt == "text":
        raise DigitseqError("--output writes jsonl (or parquet with --engine ray), not text")
    if fmt == "parquet" and (args.engine != "ray" or args.output is None):
        raise DigitseqError("--format parquet needs --engine ray and --output")
    if fmt == "parquet" and "://" not in args.output and has_files(Path(args.output)):
        raise DigitseqError(  # a second run would add a second set of readings beside the first
            f"{args.output} already holds files: remove it or choose another folder"
        )
    if args.resume and args.engine == "ray":
        raise DigitseqError("--resume works with --engine local only")
    if args.jobs is not None and args.engine == "ray" and os.environ.get("RAY_ADDRESS"):
        raise DigitseqError("--jobs sizes a local Ray cluster: RAY_ADDRESS's cluster has its own")
    return fmt


def has_files(folder: Path) -> bool:
    if not folder.exists():
        return False
    if not folder.is_dir():
        raise DigitseqError(f"{folder} is not a folder: --format parquet writes a folder")
    return any(folder.iterdir())


def sources(args: argparse.Namespace):
    """The raw arguments, then the list's lines: a stream (stdin is never read ahead)."""
    if args.from_list is None:
        return iter(args.inputs)
    return itertools.chain(args.inputs, read_list(args.from_list))


def run(args: argparse.Namespace) -> int:
    with stop_raises():  # SIGTERM unwinds like Ctrl-C: workers stopped, --output whole
        return read_and_write(args)


def read_and_write(args: argparse.Namespace) -> int:
    fmt = check(args)
    quiet = getattr(args, "quiet", False)
    if hasattr(sys.stdout, "reconfigure"):  # a name the encoding cannot show must not stop us
        sys.stdout.reconfigure(errors="backslashreplace")
    include_abstained = args.min_confidence is not None
    done: set[int] = set()  # keys of the files already in --output (filled below, before use)
    readings = None
    if args.engine == "ray":
        from digitseq.apps.batch import ray_engine

        records = ray_engine.read(
            sources(args), args.model, args.backend, args.recursive, args.min_confidence,
            include_abstained, args.batch_size, args.output if fmt == "parquet" else None,
            args.digits, args.jobs, args.pattern,
        )  # fmt: skip
    else:
        from digitseq.apps.batch.local import read_all
        from digitseq.apps.batch.work import ReaderSpec, loaded

        model = str(args.model) if args.model is not None else None
        spec = ReaderSpec(model, args.backend, args.digits, args.min_confidence, args.pattern)
        jobs = args.jobs or default_jobs()
        if jobs == 1:
            loaded(spec)  # a bad model or --digits: one line before anything is read
        items = skip_done(iter_items(sources(args), args.recursive), done)
        readings = read_all(items, spec, jobs, args.batch_size)
        records = (r.to_json(include_abstained) for r in readings)
    out = None
    if args.output is not None and fmt == "jsonl":
        out, found = JsonlOutput.open(args.output, args.resume)
        done.update(found)
    bar = None
    if not quiet and is_terminal(sys.stderr):
        bar = progress_bar(desc="predict", unit="img", smoothing=0.1)
        if args.from_list != "-":
            count_in_background(args, done, bar)
    try:
        total, failed = write(records, fmt, out, bar, args.batch_size)
    finally:
        for stream in (records, readings):  # stops the workers now when writing stopped early
            if stream is not None:
                stream.close()
        if out is not None:
            out.close()
        if bar is not None:
            bar.close()
    if failed and not quiet:
        print(f"digitseq: {failed} of {total} inputs could not be read", file=sys.stderr)
    return 1 if failed else 0


def skip_done(items, done: set[int]):
    if not done:
        yield from items
        return
    for item in items:
        if name_key(str(getattr(item, "file", item))) not in done:
            yield item


def write(records, fmt: str, out: JsonlOutput | None, bar, chunk: int) -> tuple[int, int]:
    """Print or append every record; returns (records, records with an error)."""
    total = failed = 0
    pending: list[dict] = []
    for rec in records:
        total += 1
        failed += rec.get("error") is not None
        if out is not None:
            pending.append(rec)
            if len(pending) >= chunk:
                out.write(pending)
                pending = []
        elif fmt == "jsonl":
            sys.stdout.write(json_line(rec) + "\n")  # one call: a stop never splits a line
        elif fmt == "text":
            sys.stdout.write(text_line(rec) + "\n")
        if bar is not None:
            bar.update(1)
        if out is None and total % chunk == 0:
            sys.stdout.flush()
    if out is not None and pending:
        out.write(pending)
    sys.stdout.flush()
    return total, failed


def count_in_background(args: argparse.Namespace, done: set[int], bar) -> None:
    """Walk the inputs a second time, in a thread, to give the bar its total (and an ETA)
    without holding the file list."""

    def count() -> None:
        try:
            n = sum(1 for _ in skip_done(iter_items(sources(args), args.recursive), done))
        except Exception:  # noqa: BLE001 - the count is a nicety; the reading reports errors
            return
        bar.total = n
        bar.refresh()

    threading.Thread(target=count, daemon=True, name="count-inputs").start()
