"""The HTTP reading service: the micro-batcher, the app through FastAPI's test client (limits,
errors, batching), and one real server on 127.0.0.1 over HTTP."""

from __future__ import annotations

import asyncio
import io
import socket
import subprocess
import sys
import threading
import time

import httpx
import numpy as np
import pytest
from conftest import SEED_SAMPLES
from fastapi.testclient import TestClient
from helpers import assert_one_line_error
from PIL import Image

from digitseq.apps.cli import main
from digitseq.apps.serve import batching
from digitseq.apps.serve.app import ServeSettings, create_app
from digitseq.reading import predictor

KEYS = {
    "file", "digits", "text", "value", "confidence", "digit_confidences", "spans", "warning",
    "error",
}  # fmt: skip

# --- the micro-batcher ----------------------------------------------------------------------


def run(coro):
    return asyncio.run(coro)


def test_batcher_groups_concurrent_callers_and_keeps_order():
    calls = []

    def double(items):
        calls.append(len(items))
        return [x * 2 for x in items]

    async def main():
        b = batching.MicroBatcher(double, max_batch=8, max_wait_ms=50)
        await b.start()
        try:
            outs = await asyncio.gather(*(b.submit([i, i + 100]) for i in range(10)))
        finally:
            await b.stop()
        return outs, b.stats

    outs, stats = run(main())
    assert outs == [[2 * i, 2 * (i + 100)] for i in range(10)]
    assert sum(calls) == 20 and max(calls) == 8  # 20 items in full batches of 8, 8, 4
    assert len(calls) == 3 and stats.batches == 3 and stats.largest == 8


def test_batcher_max_batch_one_runs_items_alone():
    calls = []

    def ident(items):
        calls.append(len(items))
        return items

    async def main():
        b = batching.MicroBatcher(ident, max_batch=1, max_wait_ms=50)
        await b.start()
        try:
            return await asyncio.gather(*(b.submit([i]) for i in range(5)))
        finally:
            await b.stop()

    assert run(main()) == [[i] for i in range(5)]
    assert calls == [1] * 5


def test_batcher_runs_off_the_event_loop_and_passes_errors_to_callers():
    loop_thread = []

    def fn(items):
        loop_thread.append(threading.current_thread().name)
        if "bad" in items:
            raise ValueError("bad batch")
        return items

    async def main():
        b = batching.MicroBatcher(fn, max_batch=4, max_wait_ms=1)
        await b.start()
        try:
            with pytest.raises(ValueError, match="bad batch"):
                await b.submit(["bad"])
            return await b.submit(["good"])  # the worker survives a failed batch
        finally:
            await b.stop()

    assert run(main()) == ["good"]
    assert all(name.startswith("digitseq-model") for name in loop_thread)


def test_batcher_skips_cancelled_callers_and_refuses_when_full():
    seen = []

    def fn(items):
        seen.extend(items)
        return items

    async def main():
        b = batching.MicroBatcher(fn, max_batch=64, max_wait_ms=200, max_queue=3)
        await b.start()
        try:
            with pytest.raises(batching.BatcherBusy):
                await b.submit([1, 2, 3, 4])
            task = asyncio.create_task(b.submit(["abandoned"]))
            await asyncio.sleep(0.01)
            task.cancel()  # e.g. the request timed out while its image waited
            out = await b.submit(["kept"])
        finally:
            await b.stop()
        return out

    assert run(main()) == ["kept"]
    assert seen == ["kept"]


def test_batcher_not_started_is_busy():
    b = batching.MicroBatcher(lambda xs: xs)
    with pytest.raises(batching.BatcherBusy):
        run(b.submit([1]))


# --- the app through the test client -------------------------------------------------------

LIMITS = dict(max_files=4, max_file_mb=0.25, max_body_mb=1.0)


def png(name: str) -> bytes:
    return (SEED_SAMPLES / name).read_bytes()


def png_of(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def files(*items):
    return [("files", (name, data, "image/png")) for name, data in items]


@pytest.fixture(scope="module")
def client(random_model_dir):
    app = create_app(ServeSettings(model=str(random_model_dir), **LIMITS))
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def assert_error(r, status: int, words: str) -> None:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"detail"} and isinstance(body["detail"], str)
    assert words in body["detail"] and "Traceback" not in r.text and "\n" not in body["detail"]


def test_read_several_files_answers_like_predict_jsonl(client, random_model_dir):
    names = ["101.png", "102.png", "105.png"]
    r = client.post("/v1/read", files=files(*((n, png(n)) for n in names)))
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert [x["file"] for x in results] == names
    # exactly what `digitseq predict --format jsonl` prints for the same images
    expected = predictor.Predictor.load(random_model_dir).predict([png(n) for n in names])
    for got, want in zip(results, expected, strict=True):
        assert set(got) == KEYS
        assert got["digits"] == want.digits and len(got["digits"]) == 5
        assert got["confidence"] == pytest.approx(want.confidence, rel=1e-4)
        assert got["confidence"] == pytest.approx(np.prod(got["digit_confidences"]), rel=1e-6)
        assert got["error"] is None


def test_raw_image_body_and_min_confidence(client):
    r = client.post("/v1/read", content=png("101.png"), headers={"content-type": "image/png"})
    assert r.status_code == 200
    (result,) = r.json()["results"]
    assert set(result) == KEYS and result["file"] is None and result["digits"].isdigit()

    r = client.post(
        "/v1/read", params={"min_confidence": 1.0}, files=files(("a.png", png("101.png")))
    )
    (result,) = r.json()["results"]
    assert set(result) == KEYS | {"abstained"}
    assert result["abstained"] is True and result["digits"] is None  # nothing is that sure
    r = client.post(
        "/v1/read", params={"min_confidence": 0.0}, files=files(("a.png", png("101.png")))
    )
    assert r.json()["results"][0]["abstained"] is False


def test_bad_files_get_their_own_error_and_the_others_are_read(client):
    blank = png_of(np.zeros((40, 200), np.uint8))
    truncated = png("101.png")[:60]
    r = client.post(
        "/v1/read",
        files=files(
            ("good.png", png("101.png")),
            ("notes.txt", b"not an image"),
            ("cut.png", truncated),
            ("blank.png", blank),
        ),
    )
    assert r.status_code == 200
    good, text, cut, empty = r.json()["results"]
    assert good["error"] is None and good["digits"] is not None
    assert "not an image" in text["error"] and text["digits"] is None
    assert cut["error"] and "blank" in empty["error"]
    assert all(set(x) == KEYS for x in (good, text, cut, empty))


def test_limits_answer_413(client):
    five = files(*((f"{i}.png", png("101.png")) for i in range(5)))
    assert_error(client.post("/v1/read", files=five), 413, "at most 4")
    big = b"\x89PNG" + bytes(300_000)  # over the 0.25 MB per-file limit
    assert_error(client.post("/v1/read", files=files(("big.png", big))), 413, "big.png")
    raw = client.post("/v1/read", content=big, headers={"content-type": "image/png"})
    assert_error(raw, 413, "limit")
    huge = [("files", (f"{i}.png", bytes(200_000), "image/png")) for i in range(6)]
    assert_error(client.post("/v1/read", files=huge), 413, "limit of 1 MB")


def test_malformed_requests_answer_415_or_422(client):
    assert_error(client.post("/v1/read", json={"files": []}), 415, "multipart/form-data")
    assert_error(client.post("/v1/read", content=b"x"), 415, "no content type")
    other_field = [("image", ("a.png", png("101.png"), "image/png"))]
    assert_error(client.post("/v1/read", files=other_field), 422, "field 'files'")
    no_boundary = {"content-type": "multipart/form-data"}
    assert_error(client.post("/v1/read", content=b"xx", headers=no_boundary), 422, "multipart")
    garbage = {"content-type": "multipart/form-data; boundary=abc"}
    assert_error(client.post("/v1/read", content=b"--x\r\n", headers=garbage), 422, "multipart")
    for bad in ("2", "-0.1", "abc", "nan"):
        r = client.post(
            "/v1/read", params={"min_confidence": bad}, files=files(("a.png", png("101.png")))
        )
        assert_error(r, 422, "min_confidence")
    assert_error(client.get("/v1/read"), 405, "Method Not Allowed")
    assert_error(client.get("/v2/nothing"), 404, "Not Found")


def test_model_health_and_openapi(client):
    info = client.get("/v1/model").json()
    assert info["name"] == "random" and info["arch"] == "multihead"
    assert "white ink on black" in info["input"]["format"] and info["input"]["shape"] == [
        1,
        28,
        140,
    ]
    assert info["serving"]["max_files"] == 4 and "source" not in info  # no server paths
    health = client.get("/healthz")
    assert health.status_code == 200 and health.json()["status"] == "ok"

    schema = client.get("/openapi.json").json()
    op = schema["paths"]["/v1/read"]["post"]
    assert {"multipart/form-data", "image/png", "image/jpeg"} <= set(op["requestBody"]["content"])
    assert {"200", "413", "415", "422", "503"} <= set(op["responses"])
    assert schema["components"]["schemas"]["ReadResponse"]["examples"]
    assert client.get("/docs").status_code == 200


def test_slow_request_is_cut_off_with_503(random_model_dir):
    # The batcher waits 2 s for company; the request may take 0.3 s.
    s = ServeSettings(model=str(random_model_dir), max_wait_ms=2000, timeout_s=0.3)
    with TestClient(create_app(s), raise_server_exceptions=False) as c:
        r = c.post("/v1/read", files=files(("a.png", png("101.png"))))  # how fast: bench_deadlines
        assert_error(r, 503, "longer than 0.3 s")
        assert r.headers["retry-after"] == "1"


def test_concurrent_requests_share_forward_passes(random_model_dir):
    """16 requests in flight at once are answered by a few batched forward passes, and each
    gets its own image's reading."""
    app = create_app(ServeSettings(model=str(random_model_dir), max_wait_ms=50, max_batch=64))
    names = sorted(p.name for p in SEED_SAMPLES.glob("*.png"))[:16]
    expected = {
        r.file: r.digits
        for r in predictor.Predictor.load(random_model_dir).predict(
            [SEED_SAMPLES / n for n in names]
        )
    }

    async def main():
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
                rs = await asyncio.gather(
                    *(http.post("/v1/read", files=files((n, png(n)))) for n in names)
                )
                health = (await http.get("/healthz")).json()
        return [r.json()["results"][0] for r in rs], health

    results, health = asyncio.run(main())
    assert {r["file"]: r["digits"] for r in results} == {
        n: expected[str(SEED_SAMPLES / n)] for n in names
    }
    stats = health["batching"]
    assert stats["items"] == 16 and stats["batches"] <= 4 and stats["largest_batch"] >= 4


def test_settings_from_env():
    s = ServeSettings.from_env({"DIGITSEQ_SERVE_MAX_BATCH": "1", "DIGITSEQ_SERVE_TIMEOUT_S": "2.5"})
    assert s.max_batch == 1 and s.timeout_s == 2.5 and s.model is None
    assert ServeSettings.from_env(s.to_env()) == s
    with pytest.raises(main.DigitseqError, match="DIGITSEQ_SERVE_MAX_BATCH"):
        ServeSettings.from_env({"DIGITSEQ_SERVE_MAX_BATCH": "lots"})
    with pytest.raises(main.DigitseqError, match="max_batch"):
        ServeSettings.from_env({"DIGITSEQ_SERVE_MAX_BATCH": "0"})


# --- the command and a real server ---------------------------------------------------------


def test_serve_with_a_missing_model_fails_in_one_line(tmp_path, capsys):
    code = main.main(["serve", "--model", str(tmp_path / "nope")])
    assert_one_line_error(code, capsys.readouterr().err, "does not exist")


def test_serve_on_a_busy_port_fails_in_one_line(random_model_dir, capsys):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code = main.main(["serve", "--port", str(port), "--model", str(random_model_dir)])
    assert code == 2
    assert f"cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_real_server_over_http(random_model_dir, tmp_path):
    port = free_port()
    log = open(tmp_path / "server.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "digitseq",
            "serve",
            "--port",
            str(port),
            "--model",
            str(random_model_dir),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, (tmp_path / "server.log").read_text()
            try:
                if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "server did not start"
            time.sleep(0.2)
        r = httpx.post(
            url + "/v1/read",
            files=files(("a.png", png("101.png")), ("b.png", png("102.png"))),
            timeout=30,
        )
        assert r.status_code == 200
        assert [x["file"] for x in r.json()["results"]] == ["a.png", "b.png"]
        assert httpx.get(url + "/openapi.json").json()["info"]["title"] == "digitseq"
    finally:
        proc.terminate()
        proc.wait(15)
        log.close()
    text = (tmp_path / "server.log").read_text()
    assert f"http://127.0.0.1:{port}" in text and "Traceback" not in text


def test_bundled_model_reads_a_known_number(bundled_model_dir, mnist_data):
    """The real model, through the service, on numbers composed from MNIST test digits."""
    from digitseq.data import compose, mnist

    images, labels, _ = mnist.split_pool(mnist_data, "test")
    imgs, digits, _, _ = compose.generate_fixed(images, labels, 8, np.random.default_rng(5), "seed")
    app = create_app(ServeSettings(model=str(bundled_model_dir)))
    with TestClient(app) as c:
        r = c.post(
            "/v1/read", files=files(*((f"{i}.png", png_of(im)) for i, im in enumerate(imgs)))
        )
    got = [x["digits"] for x in r.json()["results"]]
    want = ["".join(map(str, d)) for d in digits]
    assert sum(g == w for g, w in zip(got, want, strict=True)) >= 7, (got, want)


def test_a_format_constrains_the_reading_and_a_poor_fit_is_flagged(bundled_model_dir):
    """?pattern= as predict --pattern: the bundled (digit) reader held to five digits reads the
    seed sample's number; a date (separators it cannot read) is flagged, never forced; a
    pattern that does not parse, or one given with digits, is a 422."""
    app = create_app(ServeSettings(model=str(bundled_model_dir)))
    upload = files(("101.png", png("101.png")))
    with TestClient(app) as c:
        free = c.post("/v1/read", files=upload).json()["results"][0]
        held = c.post("/v1/read", params={"pattern": r"\d{5}"}, files=upload).json()["results"][0]
        date = c.post("/v1/read", params={"pattern": "date"}, files=upload).json()["results"][0]
        bad = c.post("/v1/read", params={"pattern": "(["}, files=upload)
        both = c.post("/v1/read", params={"pattern": "digits", "digits": "5"}, files=upload)
    assert held["digits"] == held["text"] == free["digits"] and len(held["digits"]) == 5
    assert date["warning"].startswith("unsure") and date["digits"] == ""
    assert_error(bad, 422, "not a valid pattern")
    assert_error(both, 422, "--pattern")
