"""Assertions and small runners shared by the test files (``from helpers import ...``)."""

from __future__ import annotations

import subprocess
import sys

from digitseq.apps.cli import main


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    """``digitseq ARGV`` in this process: (exit status, stdout, stderr)."""
    code = main.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code: int, err: str, *words: str) -> None:
    """How the CLI fails on a user mistake: exit status 2 and exactly one stderr line,
    ``digitseq: error: ...``, holding every one of ``words``; never a traceback."""
    assert code == 2, (code, err)
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("digitseq: error: "), err
    for word in words:
        assert word in lines[0], (word, lines[0])


def run_python(code: str, *args: str, env: dict | None = None, python: str = sys.executable):
    """Run ``python -c code`` in a fresh interpreter; the CompletedProcess (text)."""
    return subprocess.run(
        [python, "-c", code, *args], capture_output=True, text=True, env=env, timeout=120
    )


def ink_boxes(patches):
    """First/last ink row and column of each (..., 28, 28) patch (ink = any pixel > 0)."""
    rows, cols = (patches > 0).any(-1), (patches > 0).any(-2)
    return (
        rows.argmax(-1),
        rows.shape[-1] - 1 - rows[..., ::-1].argmax(-1),
        cols.argmax(-1),
        cols.shape[-1] - 1 - cols[..., ::-1].argmax(-1),
    )


def warp_and_place(layout: str, digit_images, d, p, t=None):
    """What ``compose_lines`` does to one group of numbers of one length in ``layout`` (not
    seed), given their draws ``d``: (patches (n, L, 28, 28), x0 (n, L), y0 (n, L), widths (n,))."""
    from digitseq.data import layouts, warp

    t = t or layouts.TouchingParams()
    lid, length = layouts.LAYOUT_IDS[layout], digit_images.shape[1]
    centres = layouts.centres(lid, length, d, t)
    patches, left, top, ink = warp.warp_digits(digit_images, d, p, centres)
    return (patches, *layouts.place(lid, length, d, left, top, ink))
