"""Hostile and careless clients against the real server (uvicorn on 127.0.0.1, a free port):
huge or many headers, slow and idle connections, too many connections, uploads abandoned
midway, too many megapixels; plus the settings check, local /docs assets and --workers."""

from __future__ import annotations

import asyncio
import io
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from PIL import Image

from digitseq.apps.cli import main
from digitseq.apps.serve import app as serve_app
from digitseq.apps.serve.app import ServeSettings
from digitseq.core.errors import DigitseqError

LIMITS = {
    "DIGITSEQ_SERVE_HEADER_TIMEOUT_S": "1",
    "DIGITSEQ_SERVE_MAX_CONNECTIONS": "20",
    "DIGITSEQ_SERVE_MAX_HEADER_KB": "16",
    "DIGITSEQ_SERVE_MAX_HEADERS": "30",
    "DIGITSEQ_SERVE_MAX_REQUEST_MP": "1",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def png(w: int = 140, h: int = 28) -> bytes:
    im = Image.new("L", (w, h), 0)
    im.paste(255, (w // 10, h // 4, w // 10 + max(2, w // 30), 3 * h // 4))
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


class Server:
    def __init__(self, model: Path, log: Path, env: dict, workers: int = 1):
        self.port, self.log_path = free_port(), log
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(log, "wb")  # noqa: SIM115 - closed in stop()
        cmd = [sys.executable, "-m", "digitseq", "serve", "--port", str(self.port)]
        cmd += ["--model", str(model), "--workers", str(workers)]
        self.proc = subprocess.Popen(
            cmd, env={**os.environ, **env}, stdout=self.log, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + 90
        while True:
            assert self.proc.poll() is None, log.read_text()
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.2)

    def normal(self) -> int:
        r = httpx.post(self.url + "/v1/read", files={"files": ("a.png", png())}, timeout=10)
        return r.status_code

    def text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


@pytest.fixture(scope="module")
def server(random_model_dir, tmp_path_factory):
    s = Server(random_model_dir, tmp_path_factory.mktemp("serve") / "server.log", LIMITS)
    yield s
    s.stop()


def connect(server: Server) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=5)


def answer(sock: socket.socket) -> bytes:
    """The status line the server sent before closing, or b'' if it just closed."""
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except (ConnectionResetError, TimeoutError):
        pass
    return data.split(b"\r\n")[0]


def test_huge_header_gets_431_while_others_are_served(server):
    got = {}

    def attack():
        with connect(server) as s:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ")
            t0 = time.monotonic()
            try:
                for _ in range(1000):  # up to 100 MB; the server must stop it long before
                    s.sendall(b"a" * 100_000)
            except OSError:
                pass
            got["seconds"] = time.monotonic() - t0
            got["status"] = answer(s)

    th = threading.Thread(target=attack)
    th.start()
    assert server.normal() == 200
    th.join(20)
    assert got["status"].startswith(b"HTTP/1.1 431") or got["status"] == b""
    assert got["seconds"] < 5


def test_too_many_headers_get_431(server):
    with connect(server) as s:
        lines = b"".join(b"X-%d: 1\r\n" % i for i in range(40))
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + lines + b"\r\n")
        assert answer(s).startswith(b"HTTP/1.1 431")


def test_slow_and_idle_connections_are_closed_after_the_header_timeout(server):
    slow, idle = connect(server), connect(server)
    t0 = time.monotonic()
    slow.sendall(b"GET /healthz HTTP/1.1\r\n")  # and never the rest
    assert answer(slow).startswith(b"HTTP/1.1 408")
    assert answer(idle) == b""  # sent nothing: closed without a word
    assert time.monotonic() - t0 < 4
    slow.close()
    idle.close()
    assert server.normal() == 200


def test_too_many_connections_close_the_waiting_ones_not_the_new_clients(server):
    waiting = [connect(server) for _ in range(40)]  # cap is 20
    for s in waiting:
        s.sendall(b"GET /healthz HTTP/1.1\r\n")
    try:
        assert all(server.normal() == 200 for _ in range(3))
    finally:
        for s in waiting:
            s.close()


def test_client_gone_mid_upload_is_one_info_line(server):
    for _ in range(3):
        with connect(server) as s:
            s.sendall(
                b"POST /v1/read HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
                b"Content-Length: 1000000\r\n\r\n" + b"x" * 5000
            )
            time.sleep(0.1)
    time.sleep(0.5)
    assert server.normal() == 200
    text = server.text()
    assert "Traceback" not in text and "unexpected" not in text
    assert text.count("went away during its upload") == 3


def test_megapixels_per_request_are_capped(server):
    r = httpx.post(
        server.url + "/v1/read", files=[("files", ("a.png", png(1200, 1000)))], timeout=10
    )
    assert r.status_code == 413 and "megapixels" in r.json()["detail"]


def test_docs_page_uses_local_assets(server):
    html = httpx.get(server.url + "/docs").text
    assert "/docs/assets/swagger-ui-bundle.js" in html and "cdn" not in html.lower()
    js = httpx.get(server.url + "/docs/assets/swagger-ui-bundle.js")
    assert js.status_code == 200 and len(js.content) > 100_000


# --- without a server -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, value",
    [
        ("MAX_FILE_MB", "inf"),
        ("MAX_BODY_MB", "nan"),
        ("TIMEOUT_S", "-1"),
        ("MAX_BATCH", "0"),
        ("MAX_HEADER_KB", "1e9"),
        ("HEADER_TIMEOUT_S", "inf"),
        ("REQUEST_THREADS", "9"),
        ("BACKEND", "tensorflow"),
        ("THREADS", "two"),
    ],
)
def test_every_setting_is_checked_at_startup(name, value, random_model_dir, capsys):
    env = {f"DIGITSEQ_SERVE_{name}": value}
    with pytest.raises(DigitseqError, match=f"DIGITSEQ_SERVE_{name}|backend"):
        ServeSettings.from_env(env)
    os.environ[f"DIGITSEQ_SERVE_{name}"] = value
    try:
        code = main.main(["serve", "--port", str(free_port()), "--model", str(random_model_dir)])
    finally:
        del os.environ[f"DIGITSEQ_SERVE_{name}"]
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("digitseq: error:") and err.count("\n") == 1


def test_one_request_uses_its_share_of_the_decode_pool(random_model_dir, monkeypatch):
    from fastapi.testclient import TestClient

    active, peak = [0], [0]
    lock = threading.Lock()
    real = serve_app.prepare

    def counting(data, line=True):
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        time.sleep(0.05)
        with lock:
            active[0] -= 1
        return real(data, line)

    monkeypatch.setattr(serve_app, "prepare", counting)
    app = serve_app.create_app(ServeSettings(model=str(random_model_dir), threads=2))
    with TestClient(app) as c:
        r = c.post("/v1/read", files=[("files", (f"{i}.png", png())) for i in range(6)])
    assert r.status_code == 200 and peak[0] == 1


def test_work_stops_when_the_client_disconnects():
    class Gone:
        async def receive(self):
            await asyncio.sleep(0.1)
            return {"type": "http.disconnect"}

    finished = []

    async def work():
        await asyncio.sleep(5)
        finished.append(True)

    async def go():
        t0 = time.monotonic()
        with pytest.raises(serve_app.ClientGone):
            await serve_app.until_disconnected(Gone(), work())
        return time.monotonic() - t0

    assert asyncio.run(go()) < 1 and not finished


@pytest.mark.slow
def test_workers_parent_holds_no_model(random_model_dir, tmp_path):
    s = Server(random_model_dir, tmp_path / "server.log", {}, workers=2)
    try:
        maps = Path(f"/proc/{s.proc.pid}/maps").read_text()
        assert "libtorch" not in maps
        rss = next(x for x in Path(f"/proc/{s.proc.pid}/status").read_text().splitlines()
                   if x.startswith("VmRSS:"))  # fmt: skip
        assert int(rss.split()[1]) < 150_000  # kB
    finally:
        s.stop()


def test_workers_with_a_bad_model_fail_in_one_line(tmp_path, capsys):
    code = main.main(
        ["serve", "--port", str(free_port()), "--workers", "2", "--model", str(tmp_path / "none")]
    )
    assert code == 2 and "does not exist" in capsys.readouterr().err
