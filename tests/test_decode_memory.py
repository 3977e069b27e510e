"""Big images are decoded at reduced size where the format allows it (JPEG draft) and reduced
at once otherwise, so reading a 7000x7000 RGBA PNG holds one full-size copy, not several."""

from __future__ import annotations

import io
import subprocess
import sys

from PIL import Image, ImageDraw

from digitseq.reading import preprocess

PEAK = (
    "import resource, sys\n"
    "from digitseq.reading import preprocess\n"
    "base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
    "preprocess.preprocess(sys.argv[1])\n"
    "print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) // 1024)\n"
)


def number_image(mode: str, side: tuple[int, int]) -> Image.Image:
    im = Image.new(mode, side, "white")
    draw = ImageDraw.Draw(im)
    w, h = side
    for i in range(5):
        x = w // 8 + i * w // 6
        draw.line([(x, h // 3), (x + w // 20, 2 * h // 3)], fill="black", width=max(2, w // 100))
    return im


def test_big_rgba_png_peaks_at_one_decoded_copy(tmp_path):
    path = tmp_path / "big.png"
    number_image("RGBA", (7000, 7000)).save(path, compress_level=1)
    out = subprocess.run([sys.executable, "-c", PEAK, str(path)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    grown_mb = int(out.stdout.split()[-1])
    assert grown_mb < 260, grown_mb  # one RGBA copy is 187 MiB; it was 383 MiB before


def test_big_jpeg_is_decoded_at_reduced_size():
    buf = io.BytesIO()
    number_image("RGB", (6000, 4000)).save(buf, format="JPEG")
    im = preprocess.open_image(buf.getvalue())
    assert preprocess.WORK_SIDE <= max(im.size) <= 2 * preprocess.WORK_SIDE
    assert im.size == (1500, 1000)  # 1/4 scale straight from the decoder
    assert preprocess.preprocess(buf.getvalue()).shape == (28, 140)
