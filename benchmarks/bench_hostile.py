"""Hostile clients against ``digitseq serve`` on loopback: how long does a normal request wait?

Starts the service (bundled model) in a subprocess on 127.0.0.1 and, one attack at a time,
measures the latency of normal requests (one small PNG, a fresh connection each) while:

- ``huge_header``: one client streams a ``--header-mb`` header as fast as it can;
- ``slow_clients``: ``--slow-clients`` connections send their headers one byte per second;
- ``heavy_request``: one client posts 32 PNGs of 7000x7000 RGBA pixels; then the same request
  again, abandoned after 1 s (the server's CPU seconds after the client left are reported).

Also the peak RSS of ``digitseq predict`` on one 7000x7000 RGBA PNG and the server's RSS before
and after the attacks. The last stdout line is one JSON object.

    .venv/bin/python benchmarks/bench_hostile.py            # ~2 minutes
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from procs import Server, cpu_seconds, rss_mb

NORMAL_TIMEOUT = 60.0


def small_png() -> bytes:
    from PIL import Image

    img = np.zeros((28, 140), np.uint8)
    img[6:22, 10:14] = 255
    img[6:22, 40:44] = 255
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


def big_png(side: int = 7000) -> bytes:
    """A side x side RGBA PNG: dark strokes of a number on white paper (compresses well)."""
    from PIL import Image, ImageDraw

    im = Image.new("RGBA", (side, side), (255, 255, 255, 255))
    draw = ImageDraw.Draw(im)
    for i in range(5):
        x = side // 8 + i * side // 6
        draw.line([(x, side // 3), (x + side // 20, 2 * side // 3)], fill=(0, 0, 0, 255), width=60)
    buf = io.BytesIO()
    im.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def normal_request(url: str, png: bytes) -> tuple[float, int | str]:
    """Seconds one fresh client waits for a one-image answer, and its status (or error)."""
    import httpx

    t0 = time.perf_counter()
    try:
        with httpx.Client(timeout=NORMAL_TIMEOUT) as c:
            r = c.post(url + "/v1/read", files={"files": ("n.png", png, "image/png")})
        return time.perf_counter() - t0, r.status_code
    except httpx.HTTPError as e:
        return time.perf_counter() - t0, type(e).__name__


def probe_during(url: str, png: bytes, running: threading.Event, every: float = 0.25) -> dict:
    """Normal requests one after another while the attack runs: worst and median wait."""
    waits, outcomes = [], {}
    while running.is_set():
        wait, status = normal_request(url, png)
        waits.append(wait)
        outcomes[str(status)] = outcomes.get(str(status), 0) + 1
        time.sleep(every)
    if not waits:
        wait, status = normal_request(url, png)
        waits, outcomes = [wait], {str(status): 1}
    return {
        "normal_requests": len(waits),
        "normal_wait_max_s": round(max(waits), 3),
        "normal_wait_median_s": round(statistics.median(waits), 3),
        "normal_outcomes": outcomes,
    }


def huge_header(server: Server, png: bytes, mb: int) -> dict:
    running, sent, how = threading.Event(), [0], ["completed"]
    running.set()

    def attack():
        try:
            with socket.create_connection(("127.0.0.1", server.port), timeout=120) as s:
                s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ")
                block = b"a" * (1 << 20)
                for _ in range(mb):
                    s.sendall(block)
                    sent[0] += 1
                s.sendall(b"\r\n\r\n")
                first = s.recv(64)
                how[0] = first.split(b"\r\n")[0].decode() or "closed"
        except OSError as e:
            how[0] = f"connection {type(e).__name__}"
        finally:
            running.clear()

    t0 = time.perf_counter()
    th = threading.Thread(target=attack, daemon=True)
    th.start()
    time.sleep(0.2)
    out = probe_during(server.url, png, running)
    th.join(120)
    return {
        **out,
        "attack_seconds": round(time.perf_counter() - t0, 2),
        "attack_mb_sent": sent[0],
        "attacker_got": how[0],
        "server_rss_mb": round(rss_mb(server.proc.pid)),
    }


def slow_clients(server: Server, png: bytes, n: int, seconds: float) -> dict:
    socks = []
    for _ in range(n):
        try:
            s = socket.create_connection(("127.0.0.1", server.port), timeout=5)
            s.setblocking(False)
            socks.append(s)
        except OSError:
            break
    request = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 10_000
    running = threading.Event()
    running.set()
    alive = [len(socks)]

    def drip():
        i = 0
        while running.is_set():
            keep = []
            for s in socks:
                try:
                    s.send(request[i % len(request) : i % len(request) + 1])
                    keep.append(s)
                except OSError:
                    s.close()
            socks[:] = keep
            alive[0] = len(keep)
            i += 1
            time.sleep(1.0)

    th = threading.Thread(target=drip, daemon=True)
    th.start()
    stop = threading.Timer(seconds, running.clear)
    stop.start()
    time.sleep(1.0)
    out = probe_during(server.url, png, running)
    th.join(5)
    for s in socks:
        s.close()
    return {**out, "slow_opened": n, "slow_still_open_at_end": alive[0]}


def heavy_request(server: Server, png: bytes, big: bytes, files: int) -> dict:
    import httpx

    running, result = threading.Event(), {}
    running.set()
    form = [("files", (f"big{i}.png", big, "image/png")) for i in range(files)]
    rss0 = rss_mb(server.proc.pid)

    def attack():
        t0 = time.perf_counter()
        try:
            r = httpx.post(server.url + "/v1/read", files=form, timeout=120)
            result["heavy_status"] = r.status_code
        except httpx.HTTPError as e:
            result["heavy_status"] = type(e).__name__
        result["heavy_seconds"] = round(time.perf_counter() - t0, 2)
        running.clear()

    th = threading.Thread(target=attack, daemon=True)
    th.start()
    time.sleep(0.3)
    out = probe_during(server.url, png, running)
    th.join(130)
    rss1 = rss_mb(server.proc.pid)

    # The same request, abandoned by its client after 1 s: how much CPU does the server spend?
    try:
        httpx.post(server.url + "/v1/read", files=form, timeout=1.0)
    except httpx.HTTPError:
        pass
    cpu0 = cpu_seconds(server.proc.pid)
    time.sleep(8)
    cpu_after_gone = cpu_seconds(server.proc.pid) - cpu0
    return {
        **out,
        **result,
        "server_rss_before_mb": round(rss0),
        "server_rss_after_mb": round(rss1),
        "server_cpu_s_in_8s_after_client_left": round(cpu_after_gone, 2),
    }


def cli_peak_rss(big: bytes, folder: Path) -> dict:
    path = folder / "big.png"
    path.write_bytes(big)
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "digitseq", "-q", "predict", str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    _, status, usage = os.wait4(proc.pid, 0)
    out = proc.stdout.read().decode(errors="replace").strip().splitlines()
    return {
        "cli_peak_rss_mb": round(usage.ru_maxrss / 1024),
        "cli_seconds": round(time.perf_counter() - t0, 2),
        "cli_exit": os.waitstatus_to_exitcode(status),
        "cli_output": out[-1][:120] if out else "",
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--header-mb", type=int, default=100)
    ap.add_argument("--slow-clients", type=int, default=3000)
    ap.add_argument("--slow-seconds", type=float, default=20.0)
    ap.add_argument("--heavy-files", type=int, default=32)
    args = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(
        resource.RLIMIT_NOFILE, (min(hard, max(soft, args.slow_clients + 200)), hard)
    )

    png, big = small_png(), big_png()
    report: dict = {"python": platform.python_version(), "cores": os.cpu_count()}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        report["cli"] = cli_peak_rss(big, folder)
        print("cli:", report["cli"], flush=True)
        server = Server(folder / "server.log")
        try:
            report["server_rss_start_mb"] = round(rss_mb(server.proc.pid))
            waits = [normal_request(server.url, png)[0] for _ in range(5)]
            report["baseline_wait_median_s"] = round(statistics.median(waits), 3)
            for name, fn in (
                ("huge_header", lambda: huge_header(server, png, args.header_mb)),
                (
                    "slow_clients",
                    lambda: slow_clients(server, png, args.slow_clients, args.slow_seconds),
                ),
                ("heavy_request", lambda: heavy_request(server, png, big, args.heavy_files)),
            ):
                report[name] = fn()
                print(f"{name}:", report[name], flush=True)
            report["server_rss_end_mb"] = round(rss_mb(server.proc.pid))
        finally:
            server.stop()
        log = (folder / "server.log").read_text(errors="replace")
        report["server_log_tracebacks"] = log.count("Traceback")
    print(json.dumps(report))


if __name__ == "__main__":
    main()
