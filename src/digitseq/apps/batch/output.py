"""How readings are written: the text line, the JSON record, and the resumable JSONL file.

File names are bytes on POSIX; Python holds the bytes that are not UTF-8 as lone surrogates
(``surrogateescape``). Neither a terminal nor a strict JSON parser accepts those, so:

- text: one line per image whatever the name holds. The name (and the error) are written with
  C-style escapes: ``\\\\`` for a backslash, ``\\t`` ``\\n`` ``\\r``, and ``\\xNN`` for other
  control characters and for bytes that are not UTF-8; the rest is printed as is (and with
  backslash escapes where the output encoding cannot show it, e.g. ``PYTHONIOENCODING=ascii``).
- JSONL: valid UTF-8 JSON always. A name that is valid Unicode is written as is (JSON's own
  escapes carry tabs and newlines exactly). A name holding bytes that are not UTF-8 is written
  with those bytes as ``\\xNN`` in ``file`` (for people) and exactly, as standard base64 of the
  name's bytes, in an extra key ``file_bytes`` (for programs): ``source_name(record)`` returns
  the original name, and ``--resume`` relies on it.
"""

from __future__ import annotations

import base64
import fcntl
import hashlib
import itertools
import json
import os
import stat
from collections.abc import Iterable
from pathlib import Path

from digitseq.core.errors import DigitseqError
from digitseq.core.lifeline import held
from digitseq.reading.predictor import JSON_KEYS

_SIMPLE = {"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"}


def escape(text: str) -> str:
    """Text safe on one line: C-style escapes for backslash, control characters and the
    undecodable bytes of a file name (surrogates U+DC80..U+DCFF)."""
    out = []
    for ch in text:
        o = ord(ch)
        if ch in _SIMPLE:
            out.append(_SIMPLE[ch])
        elif 0xDC80 <= o <= 0xDCFF:
            out.append(f"\\x{o - 0xDC00:02x}")
        elif o < 0x20 or o == 0x7F or 0xD800 <= o <= 0xDFFF:
            out.append(f"\\x{o:02x}" if o < 0x100 else f"\\u{o:04x}")
        else:
            out.append(ch)
    return "".join(out)


def text_line(record: dict) -> str:
    """``PATH<TAB>TEXT<TAB>CONFIDENCE``: TEXT is what was read (a digit reader: the digits; a
    separator-aware one: with its separators), ``-`` when unread (error or abstained), and the
    third field is then ``error: MESSAGE`` or the confidence that was too low."""
    name = escape(str(record["file"]))
    if record.get("error") is not None:
        return f"{name}\t-\terror: {escape(record['error'])}"
    return f"{name}\t{record.get('text') or record['digits'] or '-'}\t{record['confidence']:.4f}"


def valid_text(text: str) -> str:
    """A string without lone surrogates: undecodable bytes shown as ``\\xNN``."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        raw = text.encode("utf-8", "surrogateescape" if _only_escapes(text) else "surrogatepass")
        return raw.decode("utf-8", "backslashreplace")


def _only_escapes(text: str) -> bool:
    return all(not (0xD800 <= ord(c) <= 0xDFFF) or 0xDC80 <= ord(c) <= 0xDCFF for c in text)


def json_record(record: dict) -> dict:
    """A record that serializes to strict JSON (see the module docstring); idempotent."""
    out = {}
    for key, value in record.items():
        if isinstance(value, str):
            safe = valid_text(value)
            out[key] = safe
            if key == "file" and safe != value:
                out["file_bytes"] = base64.b64encode(os.fsencode(value)).decode("ascii")
        else:
            out[key] = value
    return out


def json_line(record: dict) -> str:
    return json.dumps(json_record(record), allow_nan=False)


def source_name(record: dict) -> str:
    """The file name a JSONL record was written for, exactly (surrogates for non-UTF-8 bytes)."""
    if record.get("file_bytes"):
        return os.fsdecode(base64.b64decode(record["file_bytes"]))
    return record["file"]


def name_key(name: str) -> int:
    """A 64-bit key per file, by its absolute path with symlinks resolved (``small/a.png`` and
    ``$PWD/small/a.png`` are one file): resume holds 1,000,000 done files in ~60 MB, not ~200."""
    try:
        name = os.path.realpath(name)
    except (ValueError, OSError):  # a NUL byte: no file has that name, keep the spelling
        pass
    raw = name.encode("utf-8", "surrogateescape")
    return int.from_bytes(hashlib.blake2b(raw, digest_size=8).digest(), "little")


# --- the resumable output file -------------------------------------------------------------------

MAX_LINE = 1 << 16  # bytes: a reading of 64 digits with a 4096-byte name takes ~10 KB
READING_KEYS = frozenset(JSON_KEYS) - {"text", "value"}
OPTIONAL_KEYS = frozenset({"abstained", "file_bytes", "text", "value"})  # since separators


def is_reading(rec) -> bool:
    """Whether a parsed JSONL line is a reading as predict writes it (its keys exactly)."""
    return (
        isinstance(rec, dict)
        and READING_KEYS <= rec.keys() <= READING_KEYS | OPTIONAL_KEYS
        and isinstance(rec["file"], str)
    )


class JsonlOutput:
    """An append-only JSONL file written a chunk at a time: one ``write`` of whole lines, then
    ``fsync``, never cut by a stop signal. A SIGKILL can leave at most a partial last line;
    ``open(resume=True)`` drops it and returns the keys of the files already written. The file
    is locked (``flock``) while open: a second predict on it is refused."""

    def __init__(self, path: Path, fd: int):
        self.path = path
        self.fd = fd

    @classmethod
    def open(cls, path: Path, resume: bool) -> tuple[JsonlOutput, set[int]]:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        # O_EXCL: the existence check and the creation are one step (no check-then-open race);
        # O_NONBLOCK: a FIFO is refused below instead of waiting for a reader
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NONBLOCK
        try:
            if resume and path.exists() and not path.is_file():
                raise DigitseqError(f"{path} is not a regular file: --output writes a file")
            fd = os.open(path, flags | (0 if resume else os.O_EXCL), 0o666)
        except FileExistsError:
            raise DigitseqError(
                f"{path} already exists: pass --resume to continue it, or remove it first"
            ) from None
        except OSError as e:
            raise DigitseqError(f"cannot write {path}: {e.strerror}") from None
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise DigitseqError(f"{path} is not a regular file: --output writes a file")
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise DigitseqError(
                    f"{path} is being written by another digitseq predict: wait for it to end"
                ) from None
            done = cls.scan(path) if resume else set()
        except BaseException:
            os.close(fd)
            raise
        return cls(path, fd), done

    @staticmethod
    def scan(path: Path) -> set[int]:
        """Cut a partial last line off ``path``; the keys of the files it holds. Anything but
        predict's own output is refused (its first line must be a reading), never cut."""
        done: set[int] = set()
        good = 0  # bytes up to the end of the last complete, valid line
        with open(path, "rb") as f:
            for number in itertools.count(1):
                raw = f.readline(MAX_LINE + 1)
                if len(raw) > MAX_LINE:
                    raise DigitseqError(
                        f"{path} line {number} is over {MAX_LINE} bytes: not an output of predict"
                    )
                if not raw.endswith(b"\n"):
                    break  # the end, or a line torn by a kill mid-write (only the last can be)
                try:
                    rec = json.loads(raw)
                except ValueError:
                    rec = None
                if not is_reading(rec):
                    raise DigitseqError(
                        f"{path} line {number} is not a reading: not an output of predict"
                    )
                done.add(name_key(source_name(rec)))
                good += len(raw)
            if raw and not good:  # one line, unended: nothing shows it is predict's
                raise DigitseqError(
                    f"{path} does not start with a reading line: not an output of predict"
                )
        if good != path.stat().st_size:
            os.truncate(path, good)
        return done

    def write(self, records: Iterable[dict]) -> None:
        data = "".join(json_line(r) + "\n" for r in records).encode("ascii")
        view = memoryview(data)
        with held():  # a stop signal waits for the chunk: the file never ends in a torn line
            try:
                while view:
                    written = os.write(self.fd, view)
                    view = view[written:]
                os.fsync(self.fd)
            except OSError as e:  # a full disk (ENOSPC), a quota: one line
                raise DigitseqError(f"cannot write {self.path}: {e.strerror}") from None

    def close(self) -> None:
        os.close(self.fd)
