"""What to read: command-line arguments, folders (walked lazily) and lists of paths -> a stream
of image paths, in order, with a ``Reading`` holding the error for anything that cannot be read.

Nothing is ever skipped silently and nothing stops the stream: a folder that cannot be listed,
a symlink loop, a FIFO or a device named like an image each become an error entry.
"""

from __future__ import annotations

import errno
import itertools
import os
import stat
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path

from digitseq.reading.predictor import Reading
from digitseq.reading.preprocess import IMAGE_SUFFIXES

NUL_IN_NAME = "a NUL byte in the name: not a path (a list from find -print0? use one per line)"
Item = Path | Reading  # a path to read, or the finished (error) reading of an input


def is_image_name(name: str) -> bool:
    return os.path.splitext(name)[1].lower() in IMAGE_SUFFIXES


def not_a_file(mode: int) -> str | None:
    """Why a stat mode is not a readable file, or None for a regular file."""
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe), not a file: not read"
    if stat.S_ISSOCK(mode):
        return "a socket, not a file: not read"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device, not a file: not read"
    return "not a regular file: not read"


def stat_error(path: Path, e: OSError) -> str:
    """One line for a path whose stat failed (after following symlinks)."""
    if e.errno == errno.ELOOP:
        return "symlink loop: the link leads back to itself"
    if e.errno == errno.ENOENT:
        return (
            "broken symlink: its target does not exist"
            if path.is_symlink()
            else ("no such file or folder")
        )
    if e.errno == errno.EACCES:
        return "permission denied"
    return f"cannot access: {e.strerror or e}"


def iter_items(inputs: Iterable[str | Path], recursive: bool = False) -> Iterator[Item]:
    """Each argument -> its image paths (a folder: its image files, sorted, and with
    ``recursive`` its sub-folders' too, depth first), or a Reading with the error."""
    for arg in inputs:
        p = Path(arg)
        try:
            st = p.stat()
        except OSError as e:
            yield Reading(file=str(p), error=stat_error(p, e))
            continue
        except ValueError:  # a NUL byte: no file name holds one
            yield Reading(file=str(p), error=NUL_IN_NAME)
            continue
        if stat.S_ISDIR(st.st_mode):
            yield from walk(p, recursive, ancestors=())
        elif (why := not_a_file(st.st_mode)) is not None:
            yield Reading(file=str(p), error=why)
        else:
            yield p


def walk(folder: Path, recursive: bool, ancestors: tuple) -> Iterator[Item]:
    """The image files of one folder, sorted (one folder's listing is held, never a tree's);
    then, with ``recursive``, each sub-folder in name order. Symlinked folders are followed
    unless they lead back to a folder being walked (a loop: an error entry)."""
    try:
        key = (folder.stat().st_dev, folder.stat().st_ino)
        with os.scandir(folder) as it:
            entries = sorted(it, key=lambda e: e.name)
    except OSError as e:
        yield Reading(file=str(folder), error=f"cannot list folder: {e.strerror or e}")
        return
    images, subfolders, found = [], [], False
    for entry in entries:
        path = Path(entry.path)
        try:
            st = entry.stat()  # follows symlinks
        except OSError as e:
            if is_image_name(entry.name) or e.errno == errno.ELOOP:
                images.append(Reading(file=str(path), error=stat_error(path, e)))
            continue
        if stat.S_ISDIR(st.st_mode):
            if recursive:
                subfolders.append((path, (st.st_dev, st.st_ino)))
        elif is_image_name(entry.name):
            why = not_a_file(st.st_mode)
            images.append(path if why is None else Reading(file=str(path), error=why))
    for item in images:
        found = True
        yield item
    del images, entries
    for path, sub_key in subfolders:
        if sub_key in (*ancestors, key):
            found = True
            yield Reading(file=str(path), error="symlink loop: this folder contains itself")
            continue
        for item in walk(path, recursive, (*ancestors, key)):
            found = True
            yield item
    if not found and not ancestors:
        kinds = " ".join(IMAGE_SUFFIXES)
        where = "folder or its sub-folders" if recursive else "folder"
        yield Reading(file=str(folder), error=f"no image files in {where} ({kinds})")


MAX_LIST_LINE = 4096  # bytes: PATH_MAX on Linux; a longer line is no path


def read_list(source: str) -> Iterator[str]:
    """The paths in a text file, one per line (``-``: standard input), streamed; blank lines
    are skipped. Lines are decoded like file names (undecodable bytes kept as surrogates).
    A file, a pipe or a FIFO; never a device (``/dev/zero`` is an endless line)."""
    from digitseq.core.errors import DigitseqError

    if source == "-":
        yield from _lines(sys.stdin.buffer, "standard input")
        return
    try:
        f = open(source, "rb")  # noqa: SIM115 - closed below; a generator holds it open
        mode = os.fstat(f.fileno()).st_mode
    except OSError as e:
        raise DigitseqError(f"cannot read the list {source}: {e.strerror}") from None
    with f:
        if not (stat.S_ISREG(mode) or stat.S_ISFIFO(mode)):
            raise DigitseqError(f"the list {source} is not a file: {not_a_file(mode)}")
        yield from _lines(f, source)


def _lines(stream, source: str) -> Iterator[str]:
    from digitseq.core.errors import DigitseqError

    for number in itertools.count(1):
        raw = stream.readline(MAX_LIST_LINE + 1)
        if not raw:
            return
        if len(raw) > MAX_LIST_LINE:
            hint = " (paths separated by NUL, as find -print0 writes? use one per line)"
            raise DigitseqError(
                f"line {number} of the list {source} is over {MAX_LIST_LINE} bytes: not a path"
                + (hint if b"\0" in raw else "")
            )
        line = raw.rstrip(b"\r\n")
        if line.strip():
            yield os.fsdecode(line)
