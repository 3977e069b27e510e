"""Where ``generate`` may write: the safety checks on a dataset's output folder.

- ``--overwrite`` replaces only a digitseq dataset: a folder whose ``manifest.json`` says
  ``"format": "digitseq-dataset"`` and that holds nothing the manifest does not list;
- the dataset must fit in the free space of the target's file system (checked before writing);
- counts are capped at something a disk can hold;
- hidden ``.NAME.PID.HEX.tmp`` folders left by killed runs whose process is gone are removed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

from digitseq.core.errors import DigitseqError

MAX_COUNT = 50_000_000  # numbers per split: ~200 GB of images; more is a typo, not a plan
PNG_BYTES = 1200  # a generous size per sample for --png (NNNNNN.png + its labels.csv row)
MARGIN = 1.05  # headers, manifest, file-system overhead


def check_counts(counts: dict[str, int]) -> None:
    for split, n in counts.items():
        if n > MAX_COUNT:
            raise DigitseqError(
                f"--{split} {n:,} is over the limit of {MAX_COUNT:,} numbers per split"
            )


def dataset_bytes(counts: dict[str, int], sample_bytes: int, png: bool) -> int:
    """Bytes the dataset will take on disk (before it is written)."""
    per_sample = sample_bytes + (PNG_BYTES if png else 0)
    return int(sum(counts.values()) * per_sample * MARGIN) + (1 << 20)


def check_free_space(folder: Path, needed: int) -> None:
    """Refuse, in one line naming both, a dataset bigger than the free space."""
    probe = Path(folder)
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if needed > free:
        raise DigitseqError(
            f"the dataset needs {human(needed)} but {probe} has only {human(free)} free"
        )


def human(n: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError  # pragma: no cover


def check_replaceable(out_dir: Path) -> None:
    """An existing ``out_dir`` may be replaced only when it is empty or a digitseq dataset
    holding nothing but the files its manifest lists."""
    out_dir = Path(out_dir)
    if not out_dir.exists() and not out_dir.is_symlink():
        return
    if out_dir.is_symlink() or not out_dir.is_dir():
        raise DigitseqError(f"{out_dir} exists and is not a folder; not replacing it")
    if not any(out_dir.iterdir()):
        return
    refuse = f"{out_dir} is not a digitseq dataset; not replacing it"
    try:
        manifest = json.loads((out_dir / "manifest.json").read_text())
    except (OSError, ValueError):
        raise DigitseqError(f"{refuse} (no readable manifest.json)") from None
    if not isinstance(manifest, dict) or manifest.get("format") != "digitseq-dataset":
        raise DigitseqError(f"{refuse} (its manifest.json is not a digitseq manifest)")
    listed = set(manifest.get("files") or {}) | {"manifest.json"}
    for path in out_dir.rglob("*"):
        rel = path.relative_to(out_dir).as_posix()
        if path.is_dir() and not path.is_symlink():
            if not any(name.startswith(rel + "/") for name in listed):
                raise DigitseqError(f"{refuse}: it also holds {rel}/")
        elif rel not in listed:
            raise DigitseqError(f"{refuse}: it also holds {rel}")


def remove_stale_temps(out_dir: Path) -> list[Path]:
    """Remove ``.NAME.PID.HEX.tmp`` siblings of ``out_dir`` whose process no longer runs."""
    out_dir = Path(out_dir)
    pattern = re.compile(rf"\.{re.escape(out_dir.name)}\.(\d+)\.[0-9a-f]{{8}}\.tmp")
    removed = []
    if not out_dir.parent.is_dir():
        return removed
    for path in out_dir.parent.iterdir():
        match = pattern.fullmatch(path.name)
        if match and path.is_dir() and not path.is_symlink() and not alive(int(match[1])):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: it exists
        return True
    except OverflowError:
        return False
    return True
