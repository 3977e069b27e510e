"""Handwriting fonts for training: OFL families from npm's ``@fontsource`` packages, fetched with
``npm pack`` and verified by SHA-256, and their digits as MNIST-style 28x28 cells.

These families are the *training* fonts. The held-out font benchmark draws its digits from
Debian's ``fonts-*`` packages, never from these (a split by family: no training family is ever
evaluated on, and no evaluation family is ever trained on).
"""

from __future__ import annotations

import hashlib
import io
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from digitseq.core import files
from digitseq.core.errors import DigitseqError
from digitseq.core.paths import home
from digitseq.data.mnist_style import digit_cell, stroke_width

VERSION = "5.3.0"
# family -> SHA-256 of its npm tarball (@fontsource/<family>@VERSION); each draws ten distinct
# digits (checked when these were pinned).
FAMILIES = {
    "annie-use-your-telescope": "ed1cea10322cff6e760b1c1d2cb3be8b5a3b08ddea41feae31f9f938f39fe1ab",
    "architects-daughter": "791d2009fbdc46ca3eb942c27c62c0ee353668cd290dfad17f401b8488c727a1",
    "caveat": "ebf746fc0667b9d10fcac7c8604e2ba40a264da85a1c9b48bd679c0af3221293",
    "coming-soon": "aac84961066a709d468766331ec2dcbe9c45bbf5260537ca859e411703d20395",
    "covered-by-your-grace": "1bd27256356f90c7bc7b463d36c05565ef4b3d655bc56d0dd7b7387114b1308d",
    "gloria-hallelujah": "8755cc046e06286eeebee193f9f753bd0f03eec44c7bf188fc883db66e7a9d91",
    "gochi-hand": "6e206b6139093775d8762503196d6d991408bd5f8393ea0357f4f89b75b195a3",
    "handlee": "e1fbeba16906d4807b42add8ab85dec533c3e667575be00ba96f050b5fc452ce",
    "homemade-apple": "0ad668da20f63bd47bb32c86e160a7cae8ef0f2e1844c405bc40e278c86b91d0",
    "indie-flower": "be380503f1e2c5ef08b8399a28f8cb2f1725527db2cb6aacec3037c2bd1b9083",
    "just-another-hand": "58754de1b8784c97defb535f0c7e5d683ace09c17533e20c0c8c627da8239d2f",
    "kalam": "0aaf22523f3c57ae19f32c4f4df0d43d6efd01b7563a19cf4ed818cd5601426d",
    "nanum-pen-script": "91c7118b1d68e8ab576addbae76351857cf5c3656b7ee496c51fe16f01258a44",
    "nothing-you-could-do": "dac48ef024df5e754bf8586157d73d0dba139d6353f28b9ec6de77b0dadf0add",
    "patrick-hand": "c3428d02610c7b8fa92b044cf766f8c30b88bb32a47460b4ac42fa14e0bcdcc0",
    "permanent-marker": "1fc372d174353a87b0ae7bb9651e32e7d1731f9e0b4c50c5d8704baea032bc1b",
    "reenie-beanie": "8a2406f9b3c0b76199dcd87288ea40480fcd8547ba1af2f9f3156205f1688be9",
    "rock-salt": "c298a87c9a667bcd034b4a5c87430394a0d9bdc03ff6182eaacac2abb868db57",
    "schoolbell": "08901884344f129587928d2260a84e6d8cc7baae54ecdce19ff225694314b704",
    "shadows-into-light": "0885aefd34c65bd79207cffff0771ae0527f227a202bc850f8cf9a12257fc7f1",
}


def fonts_dir() -> Path:
    return home() / "fonts"


def font_path(family: str, folder: Path | None = None) -> Path:
    return (folder or fonts_dir()) / f"{family}-latin-400-normal.woff2"


def fetch(folder: Path | None = None, families=None) -> list[Path]:
    """The training fonts in ``folder`` (default $DIGITSEQ_HOME/fonts), each fetched once with
    ``npm pack`` and verified against its pinned SHA-256 -> their paths."""
    folder = folder or fonts_dir()
    paths = []
    for family in families or FAMILIES:
        path = font_path(family, folder)
        if not path.is_file():
            files.atomic_write_bytes(path, _woff2_from_npm(family))
        paths.append(path)
    return paths


def _woff2_from_npm(family: str) -> bytes:
    npm = shutil.which("npm")
    if npm is None:
        raise DigitseqError("the training fonts come from npm's @fontsource packages: install npm")
    spec = f"@fontsource/{family}@{VERSION}"
    with tempfile.TemporaryDirectory() as tmp:
        res = subprocess.run(
            [npm, "pack", spec, "--silent"], cwd=tmp, capture_output=True, text=True, timeout=300
        )
        tarballs = list(Path(tmp).glob("*.tgz"))
        if res.returncode != 0 or len(tarballs) != 1:
            raise DigitseqError(f"npm pack {spec} failed: {res.stderr.strip()[-300:]}")
        data = tarballs[0].read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != FAMILIES[family]:
        raise DigitseqError(f"{spec}: SHA-256 {digest} is not the pinned {FAMILIES[family]}")
    name = f"package/files/{family}-latin-400-normal.woff2"
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        member = tar.extractfile(name)
        if member is None:
            raise DigitseqError(f"{spec} holds no {name}")
        return member.read()


def glyph_mask(font: ImageFont.FreeTypeFont, digit: str) -> np.ndarray:
    """One digit drawn in ``font`` as a float image in [0, 1] cropped to its ink."""
    left, top, right, bottom = font.getbbox(digit)
    im = Image.new("L", (right - left + 8, bottom - top + 8), 0)
    ImageDraw.Draw(im).text((4 - left, 4 - top), digit, font=font, fill=255)
    a = np.asarray(im, np.float32) / 255
    rows, cols = np.flatnonzero(a.max(1) > 0.2), np.flatnonzero(a.max(0) > 0.2)
    return a[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]


def font_cells(paths, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``n`` font digits as MNIST-style cells -> (cells (n, 28, 28) uint8, labels (n,) uint8):
    each a random family and digit, drawn 48-96 px tall, stretched 0.8-1.25 wide, slanted,
    its stroke thickened or thinned; preprocessing's own cell maker (``digit_cell``) brings
    it to 28x28 as it would bring a font line a user uploads."""
    fonts = [ImageFont.truetype(str(p), 72) for p in paths]
    glyphs = [[glyph_mask(f, str(d)) for d in range(10)] for f in fonts]
    labels = rng.integers(0, 10, size=n).astype(np.uint8)
    which = rng.integers(0, len(fonts), size=n)
    cells = np.zeros((n, 28, 28), np.uint8)
    for i in range(n):
        g = glyphs[which[i]][labels[i]]
        h = int(rng.integers(48, 97))
        scale = h / g.shape[0]
        w = max(2, round(g.shape[1] * scale * rng.uniform(0.8, 1.25)))
        g = cv2.resize(g, (w, h), interpolation=cv2.INTER_LINEAR)
        shear = rng.uniform(-0.25, 0.25)
        pad = int(abs(shear) * h) + 4
        m = np.float32([[1, shear, pad - shear * h / 2], [0, 1, 0]])
        g = cv2.warpAffine(g, m, (w + 2 * pad, h))
        k = int(rng.integers(-1, 3))  # stroke: thinner, as drawn, or thicker
        if k:
            kernel = np.ones((abs(k) * 2 + 1,) * 2, np.uint8)
            g = (cv2.dilate if k > 0 else cv2.erode)(g, kernel)
        mask = g > 0.35
        if not mask.any():
            mask = g > 0
        cells[i] = np.round(digit_cell(g, mask, stroke_width(mask)) * 255)
    return cells, labels
