"""What an adversarial probe of batch reading, model loading and the service found (issue 23,
item 4), one test each: resume that destroyed files that were not predict's, duplicated
readings, unbounded reads, tracebacks, a copied model decoded as the wrong kind, EXIF
orientation, and smaller ones."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO, SEED_SAMPLES
from helpers import assert_one_line_error, run_cli

from digitseq.apps.batch import output
from digitseq.apps.batch.output import JsonlOutput

SAMPLES = sorted(SEED_SAMPLES.glob("*.png"))


def copies(folder: Path, n: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        (folder / f"{i:03d}.png").write_bytes(SAMPLES[i % len(SAMPLES)].read_bytes())
    return folder


def rows_of(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def cli(*argv, **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO / "src")}
    command = [sys.executable, "-m", "digitseq", *map(str, argv)]
    kwargs = {"stdout": subprocess.PIPE, **kwargs}
    return subprocess.run(command, env=env, stderr=subprocess.PIPE, timeout=120, **kwargs)


# --- a) resume only into predict's own output --------------------------------------------------


@pytest.mark.parametrize(
    "content",
    [b'{"notes": "keep me"}', b'{"file": "a.png", "label": "12345"}\n', b"hello\n"],
    ids=["json-without-newline", "labels-jsonl", "text"],
)
def test_resume_refuses_a_file_that_is_not_predicts_output(capsys, tmp_path, content):
    """Before: the one-line notes.json (no newline) was truncated and filled with readings;
    a labels file with ``file`` keys was appended to."""
    target = tmp_path / "notes.json"
    target.write_bytes(content)
    code, _, err = run_cli(capsys, "predict", "--resume", "--output", target, SAMPLES[0])
    assert_one_line_error(code, err, "not an output of predict")
    assert target.read_bytes() == content


def test_resume_still_drops_a_torn_last_line_and_accepts_an_empty_file(capsys, tmp_path):
    out = tmp_path / "out.jsonl"
    assert run_cli(capsys, "-q", "predict", "--output", out, SAMPLES[0])[0] == 0
    with open(out, "ab") as f:
        f.write(b'{"file": "torn')
    assert run_cli(capsys, "-q", "predict", "--resume", "--output", out, *SAMPLES[:2])[0] == 0
    assert [r["file"] for r in rows_of(out)] == [str(p) for p in SAMPLES[:2]]
    empty = tmp_path / "empty.jsonl"
    empty.touch()
    assert run_cli(capsys, "-q", "predict", "--resume", "--output", empty, SAMPLES[0])[0] == 0
    assert len(rows_of(empty)) == 1


# --- e) duplicated readings ----------------------------------------------------------------


def test_resume_matches_files_whatever_the_spelling(capsys, tmp_path, monkeypatch):
    """Before: ``small`` then ``$PWD/small`` read every file again."""
    copies(tmp_path / "small", 3)
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out.jsonl"
    assert run_cli(capsys, "-q", "predict", "--output", out, "small")[0] == 0
    for spelling in (tmp_path / "small", "./small/../small"):
        assert run_cli(capsys, "-q", "predict", "--resume", "--output", out, spelling)[0] == 0
    assert len(rows_of(out)) == 3


def test_a_second_predict_on_the_same_output_is_refused(capsys, tmp_path):
    out = tmp_path / "out.jsonl"
    first, _ = JsonlOutput.open(out, resume=False)  # another predict, writing
    try:
        code, _, err = run_cli(capsys, "predict", "--resume", "--output", out, SAMPLES[0])
        assert_one_line_error(code, err, "another digitseq predict")
    finally:
        first.close()
    assert out.read_bytes() == b""


def test_a_second_run_into_a_parquet_folder_is_refused(capsys, tmp_path):
    folder = tmp_path / "parquet"
    folder.mkdir()
    (folder / "part-0.parquet").write_bytes(b"PAR1")
    code, _, err = run_cli(
        capsys, "predict", "--engine", "ray", "--format", "parquet", "--output", folder, SAMPLES[0]
    )
    assert_one_line_error(code, err, "already holds files")


# --- f) unbounded reads ------------------------------------------------------------------------


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full")
def test_resume_on_a_device_is_refused(capsys):
    """Before: --resume on /dev/full read zeros until the OOM killer came (23 GB)."""
    code, _, err = run_cli(capsys, "predict", "--resume", "--output", "/dev/full", SAMPLES[0])
    assert_one_line_error(code, err, "not a regular file")


def test_resume_on_a_fifo_is_refused_without_waiting(capsys, tmp_path):
    fifo = tmp_path / "out.fifo"
    os.mkfifo(fifo)
    done = cli("predict", "--resume", "--output", fifo, SAMPLES[0])
    assert done.returncode == 2 and b"not a regular file" in done.stderr, done.stderr


def test_from_list_of_a_device_or_an_endless_line_is_refused(capsys, tmp_path):
    code, _, err = run_cli(capsys, "predict", "--from-list", "/dev/zero")
    assert_one_line_error(code, err, "not a file")
    endless = tmp_path / "list.txt"
    endless.write_bytes(b"x" * 10_000)
    code, _, err = run_cli(capsys, "predict", "--from-list", endless)
    assert_one_line_error(code, err, "over 4096 bytes")


# --- g) no tracebacks ----------------------------------------------------------------------


def test_a_nul_byte_in_a_list_line_is_that_entrys_error(capsys, tmp_path):
    """Before: ValueError (embedded null byte) and nothing written at all."""
    listing = tmp_path / "list.txt"
    listing.write_bytes(f"{SAMPLES[0]}\nbad\0name.png\n{SAMPLES[1]}\n".encode())
    code, out, err = run_cli(capsys, "predict", "--from-list", listing)
    lines = out.splitlines()
    assert code == 1 and "Traceback" not in err
    assert len(lines) == 3 and "NUL byte" in lines[1]
    assert lines[0].split("\t")[1] != "-" and lines[2].split("\t")[1] != "-"


def test_a_closed_pipe_ends_quietly(tmp_path):
    """``digitseq predict folder | head -2``: before, a BrokenPipeError traceback."""
    folder = copies(tmp_path / "many", 200)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO / "src")}
    done = subprocess.run(
        f"{sys.executable} -m digitseq predict --jobs 1 --batch-size 8 {folder} | head -2",
        shell=True, env=env, capture_output=True, timeout=120,
    )  # fmt: skip
    assert len(done.stdout.splitlines()) == 2
    assert done.stderr == b"", done.stderr.decode()


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full")
def test_a_full_disk_under_stdout_is_one_line():
    with open("/dev/full", "wb") as full:
        done = cli("predict", *SAMPLES[:3], stdout=full)
    err = done.stderr.decode()
    assert done.returncode == 2 and "Traceback" not in err, err
    assert err.strip().splitlines() == ["digitseq: error: cannot write: No space left on device"]


def test_a_full_disk_under_output_is_one_line(capsys, tmp_path, monkeypatch):
    def full(fd, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(output.os, "write", full)
    code, _, err = run_cli(capsys, "predict", "--output", tmp_path / "o.jsonl", SAMPLES[0])
    assert_one_line_error(code, err, "No space left on device", "o.jsonl")


# --- h) smaller ----------------------------------------------------------------------------


def test_output_dash_is_standard_output(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, _ = run_cli(capsys, "predict", "--output", "-", SAMPLES[0])
    assert code == 0 and not (tmp_path / "-").exists()
    assert json.loads(out)["file"] == str(SAMPLES[0])


# --- b) a model's kind follows from the model --------------------------------------------------


def test_a_copied_onnx_model_without_its_sidecar_is_still_a_line_reader(capsys, tmp_path):
    """Before: ``cp model.onnx reader.onnx`` was decoded as five digit heads
    (``00070000008000000600000080000005500``) and ``--digits`` was ignored."""
    from digitseq.core.paths import bundled_model_dir
    from digitseq.reading.predictor import Predictor

    original = bundled_model_dir() / "model.onnx"
    if not original.is_file():
        pytest.skip("the bundled model has no model.onnx")
    reader = tmp_path / "reader.onnx"
    reader.write_bytes(original.read_bytes())
    assert Predictor.load(reader).kind == "ctc"
    want = Predictor.load(original).read(SAMPLES[0]).digits
    code, out, _ = run_cli(capsys, "predict", "--model", reader, SAMPLES[0])
    assert code == 0 and out.split("\t")[1] == want
    code, out, _ = run_cli(capsys, "predict", "--model", reader, "--digits", "3", SAMPLES[0])
    assert code == 0 and len(out.split("\t")[1]) in (1, 3)  # 3 digits, or '-' if unsure

    (tmp_path / "reader.onnx.json").write_text(json.dumps({"model": {"kind": "fixed"}}))
    code, _, err = run_cli(capsys, "predict", "--model", reader, SAMPLES[0])
    assert_one_line_error(code, err, "5-digit model", "line reader")


def tiny_onnx(path: Path, nan: bool = False, classes: int = 11) -> Path:
    """An ONNX model (N, 1, 28, W) -> (N, W, classes): the right shape for a line reader
    with ``classes`` 11 (NaN everywhere with ``nan``), a wrong one otherwise."""
    from onnx import TensorProto, helper, save

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 1, 28, "width"])
    y = helper.make_tensor_value_info("logits", TensorProto.FLOAT, None)
    nodes = [
        helper.make_node("ReduceMean", ["x"], ["m"], axes=[1], keepdims=0),  # (N, 28, W)
        helper.make_node("Transpose", ["m"], ["t"], perm=[0, 2, 1]),  # (N, W, 28)
        helper.make_node("Slice", ["t", "start", "end", "axis"], ["s"]),  # (N, W, classes)
        helper.make_node("Mul", ["s", "scale"], ["logits"]),
    ]
    consts = [
        helper.make_tensor("start", TensorProto.INT64, [1], [0]),
        helper.make_tensor("end", TensorProto.INT64, [1], [classes]),
        helper.make_tensor("axis", TensorProto.INT64, [1], [2]),
        helper.make_tensor("scale", TensorProto.FLOAT, [], [float("nan") if nan else 1.0]),
    ]
    graph = helper.make_graph(nodes, "tiny", [x], [y], initializer=consts)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    save(model, str(path))
    return path


# --- g) a model that cannot read is refused at load ----------------------------------------------


@pytest.mark.parametrize("nan, classes, words", [(False, 7, "outputs shape"), (True, 11, "NaN")])
def test_an_onnx_model_of_the_wrong_shape_or_with_nan_outputs_is_refused(
    capsys, tmp_path, nan, classes, words
):
    pytest.importorskip("onnx")
    model = tiny_onnx(tmp_path / "bad.onnx", nan=nan, classes=classes)
    code, _, err = run_cli(capsys, "predict", "--model", model, SAMPLES[0])
    assert_one_line_error(code, err, words)
    code, _, err = run_cli(capsys, "serve", "--model", model, "--port", "0")
    assert_one_line_error(code, err, words)  # before: /healthz ok, and 500 to every read


def test_the_service_does_not_start_with_an_unusable_model(tmp_path):
    pytest.importorskip("onnx")
    from fastapi.testclient import TestClient

    from digitseq.apps.serve.app import ServeSettings, create_app
    from digitseq.core.errors import DigitseqError

    settings = ServeSettings(model=str(tiny_onnx(tmp_path / "nan.onnx", nan=True)))
    with pytest.raises(DigitseqError, match="NaN"), TestClient(create_app(settings)):
        pass


# --- c) EXIF orientation ---------------------------------------------------------------------


@pytest.mark.parametrize("scale", [1, 20], ids=["small", "large-jpeg-draft"])
def test_a_photo_stored_sideways_is_read_upright(tmp_path, scale):
    """Orientation=8: before, read as ``1`` at 0.94 (the line seen standing up)."""
    import io

    from PIL import Image

    from digitseq.reading.predictor import Predictor

    predictor = Predictor.load()
    upright = Image.open(SAMPLES[0]).convert("L")
    upright = upright.resize((upright.width * scale, upright.height * scale))
    stored = upright.transpose(Image.Transpose.ROTATE_270)  # what the phone wrote
    exif = Image.Exif()
    exif[0x0112] = 8  # "rotate 90 degrees clockwise to show"
    buf = io.BytesIO()
    stored.save(buf, "JPEG", exif=exif.tobytes(), quality=95)
    want = predictor.read(upright)
    got = predictor.read(buf.getvalue())
    assert got.digits == want.digits and len(want.digits) == 5
    assert got.spans[-1][1] <= upright.width  # spans in the picture as shown


# --- d) --engine ray honours --digits and --jobs ------------------------------------------------


def test_ray_with_jobs_and_a_cluster_address_is_refused(capsys, monkeypatch):
    monkeypatch.setenv("RAY_ADDRESS", "ray://example:10001")
    code, _, err = run_cli(capsys, "predict", "--engine", "ray", "--jobs", "2", SAMPLES[0])
    assert_one_line_error(code, err, "--jobs", "RAY_ADDRESS")


@pytest.mark.slow
def test_ray_engine_honours_digits_and_patterns(tmp_path):
    """Before: ``--engine ray --digits 3`` read the five digits anyway. A pattern reaches the
    cluster's readers as it does predict's."""
    ray = pytest.importorskip("ray")
    from digitseq.apps.batch import ray_engine

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        sample = [str(SAMPLES[0])]
        rows = list(ray_engine.read(sample, None, "onnx", False, None, False, 8, None, (3, 3)))
        held = list(ray_engine.read(sample, None, "onnx", False, None, False, 8, None, None,
                                    pattern=r"\d{3}"))  # fmt: skip
    finally:
        ray.shutdown()
    assert len(rows) == 1 and rows[0]["error"] is None
    assert rows[0]["digits"] is None or len(rows[0]["digits"]) == 3
    assert rows[0]["digits"] is not None or rows[0]["warning"].startswith("unsure")
    assert held[0]["digits"] == rows[0]["digits"]  # the most probable 3 digits, either way


def test_an_unreadable_folder_under_the_runs_or_models_folder_leaves_the_app_page_up(
    tmp_path, monkeypatch
):
    """Before: Path.is_file raised PermissionError inside an unreadable run folder (tests run
    as root, who reads everything: the refusal is simulated)."""
    from digitseq.apps.webapp import view

    runs = tmp_path / "runs"
    for name in ("good", "locked"):
        (runs / name).mkdir(parents=True)
        (runs / name / "config.json").write_text("{}")
        (runs / name / "weights.pth").write_bytes(b"")
    real_stat = Path.stat

    def stat(self, *args, **kwargs):
        if "locked" in self.parts and self.name != "locked":
            raise PermissionError(13, "Permission denied", str(self))
        return real_stat(self, *args, **kwargs)

    monkeypatch.setattr(Path, "stat", stat)
    monkeypatch.setenv("DIGITSEQ_RUNS_DIR", str(runs))
    choices = view.model_choices()
    assert "run: good" in choices and "run: locked" not in choices


# --- h) the service describes and parses like the CLI -----------------------------------------


def test_the_service_describes_the_line_reader_and_parses_digits_like_the_cli():
    """Before: /v1/model and the OpenAPI summary said 5-digit 28x140; ``digits=5-`` answered a
    raw regex, and ``digits=12-8`` was read though the CLI refuses ``--digits 12-8``."""
    import argparse

    from fastapi.testclient import TestClient

    from digitseq.apps.cli.options import digit_range
    from digitseq.apps.serve.app import ServeSettings, create_app

    with TestClient(create_app(ServeSettings())) as client:
        info = client.get("/v1/model").json()
        assert info["input"]["shape"] == [1, 28, "W"] and "any length" in str(info["input"])
        summary = client.get("/openapi.json").json()["info"]["summary"]
        assert "5-digit" not in summary and "any length" in summary
        image = {"files": ("a.png", SAMPLES[0].read_bytes(), "image/png")}
        for text in ("5-", "12-8", " 5", "05", "65"):
            r = client.post("/v1/read", params={"digits": text}, files=image)
            assert r.status_code == 422, (text, r.text)
            with pytest.raises(argparse.ArgumentTypeError):  # the CLI's --digits refuses it too
                digit_range(text)
            assert r.json()["detail"].startswith("digits: expected") and "^(" not in r.text
        r = client.post("/v1/read", params={"digits": "4-6"}, files=image)
        assert r.status_code == 200 and len(r.json()["results"][0]["digits"]) == 5


def test_healthz_fails_when_the_model_fails_batch_after_batch():
    """Before: every read answered 500 while /healthz said ok."""
    from fastapi.testclient import TestClient

    from digitseq.apps.serve import app as service
    from digitseq.reading.predictor import Predictor

    predictor = Predictor.load()
    app = service.create_app(service.ServeSettings(max_wait_ms=0), predictor)
    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.get("/healthz").status_code == 200

        class Broken:
            name = "onnx"

            def __call__(self, x):
                raise RuntimeError("the model's memory is gone")

        predictor.backend = Broken()
        image = {"files": ("a.png", SAMPLES[0].read_bytes(), "image/png")}
        for _ in range(getattr(service, "SICK", 3)):
            assert client.post("/v1/read", files=image).status_code == 500
        health = client.get("/healthz")
        assert health.status_code == 503 and health.json()["status"] == "unavailable"


def test_a_number_a_few_pixels_tall_is_flagged():
    """Fewer rows of ink than a digit's shape needs: the reading carries a warning (before:
    read without one). A thin '1' of normal height is not flagged."""
    import numpy as np
    from PIL import Image

    from digitseq.reading.predictor import Predictor

    predictor = Predictor.load()
    line = Image.open(SAMPLES[0]).convert("L")
    tiny = predictor.read(line.resize((25, 5), Image.Resampling.BILINEAR))
    assert tiny.warning is not None and tiny.warning.startswith("too small")
    assert predictor.read(line).warning is None
    one = np.full((60, 30), 255, np.uint8)
    one[10:50, 14:16] = 0
    assert predictor.read(one).warning is None


def test_a_line_too_long_for_the_reader_is_flagged_as_squeezed(mnist_data):
    """Before: a line of ~45 digits was squeezed into the widest input and lost digits without
    a word. A line of 12 digits is not flagged."""
    import numpy as np

    from digitseq.data import compose
    from digitseq.reading.predictor import Predictor

    predictor = Predictor.load()
    for n, squeezed in ((12, False), (45, True)):
        lines = compose.generate(mnist_data.test_images, mnist_data.test_labels, 1,
                                 np.random.default_rng(n), "natural", lengths=(n, n))  # fmt: skip
        paper = np.pad(255 - lines.images[0][:, : lines.widths[0]], 20, constant_values=255)
        reading = predictor.read(paper)
        assert ("squeezed" in (reading.warning or "")) is squeezed, reading.warning


def test_a_number_turned_on_its_side_or_a_one_pixel_strip_is_flagged():
    """Before: both read as a sure '1' with no warning. The same number upright reads without
    one."""
    import numpy as np
    from PIL import Image

    from digitseq.reading.predictor import Predictor

    predictor = Predictor.load()
    number = Image.open(SAMPLES[0]).convert("L")
    assert predictor.read(number).warning is None
    turned = predictor.read(number.rotate(90, expand=True, fillcolor=255))
    assert "turned on its side" in turned.warning
    strip = np.full((60, 1), 255, np.uint8)
    strip[10:50] = 0
    assert predictor.read(strip).warning == "too small to read reliably: the image is 1x60 px"
