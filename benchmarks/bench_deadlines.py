"""How fast the promised refusals and time-outs happen: the wall-clock side of behaviour that
the tests check only functionally (wall-clock asserts fail on a busy machine, not on a bug).

Each row: the median seconds over --repeats tries, the budget, and whether it was met.
- preprocess refuses a PNG whose header claims 20000x20000 before decoding it (budget 2 s);
- preprocess of a seed-format PNG, per image (budget 5 ms: it is used as is);
- MNIST fetch gives up on an unreachable mirror (budget 5 s);
- MNIST fetch gives up on a mirror that accepts and never answers, timeout 0.3 s (budget 4 s);
- the service answers 503 to a request over its 0.3 s time limit (budget 1.5 s).
Last stdout line: one JSON object.

    .venv/bin/python benchmarks/bench_deadlines.py
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import struct
import sys
import tempfile
import time
import zlib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "examples" / "seed-samples" / "101.png"


def png_header_only(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width x height (1-bit gray) and almost no data."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64))


def median_s(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def expect_error(fn, error=Exception):
    def run():
        try:
            fn()
        except error:
            return
        raise AssertionError(f"{fn} did not fail")

    return run


def preprocess_rows(repeats: int) -> list[tuple[str, float, float]]:
    from digitseq.reading import preprocess as pp

    bomb = png_header_only(20000, 20000)
    data = SAMPLE.read_bytes()
    pp.preprocess(data)  # warm-up
    per_image = median_s(lambda: [pp.preprocess(data) for _ in range(50)], repeats) / 50
    return [
        ("preprocess refuses a 20000x20000 header", 2.0, median_s(
            expect_error(lambda: pp.preprocess(bomb), pp.ImageError), repeats)),
        ("preprocess a seed-format PNG", 0.005, per_image),
    ]  # fmt: skip


def mnist_rows(repeats: int, tmp: Path) -> list[tuple[str, float, float]]:
    from digitseq.core.errors import DigitseqError
    from digitseq.data import mnist

    def no_hub():
        return None

    def unreachable():
        mnist.fetch(tmp / "a", mirrors=["http://127.0.0.1:1/"], progress=False, hub_path=no_hub)

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/"

        def silent():
            mnist.fetch(tmp / "b", mirrors=[url], timeout=0.3, progress=False, hub_path=no_hub)

        silent_s = median_s(expect_error(silent, DigitseqError), repeats)
    return [
        ("MNIST fetch gives up on an unreachable mirror", 5.0,
         median_s(expect_error(unreachable, DigitseqError), repeats)),
        ("MNIST fetch gives up on a silent mirror (timeout 0.3 s)", 4.0, silent_s),
    ]  # fmt: skip


def serve_rows(repeats: int) -> list[tuple[str, float, float]]:
    from fastapi.testclient import TestClient

    from digitseq.apps.serve.app import ServeSettings, create_app

    # The batcher waits 2 s for company; the request may take 0.3 s.
    s = ServeSettings(max_wait_ms=2000, timeout_s=0.3)
    upload = [("files", ("a.png", SAMPLE.read_bytes(), "image/png"))]
    with TestClient(create_app(s), raise_server_exceptions=False) as client:

        def slow():
            r = client.post("/v1/read", files=upload)
            assert r.status_code == 503, r.text

        return [("service answers 503 past its 0.3 s limit", 1.5, median_s(slow, repeats))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    with tempfile.TemporaryDirectory(prefix="bench-deadlines-") as tmp:
        rows = preprocess_rows(args.repeats) + mnist_rows(args.repeats, Path(tmp))
        rows += serve_rows(args.repeats)
    result = {"benchmark": "deadlines", "repeats": args.repeats, "rows": []}
    for name, budget, seconds in rows:
        ok = seconds <= budget
        print(f"{'ok  ' if ok else 'SLOW'} {seconds:9.4f} s  (budget {budget:g} s)  {name}")
        result["rows"].append(
            {"what": name, "seconds": round(seconds, 6), "budget_s": budget, "ok": ok}
        )
    result["all_ok"] = all(r["ok"] for r in result["rows"])
    print(json.dumps(result))
    sys.exit(0 if result["all_ok"] else 1)


if __name__ == "__main__":
    main()
