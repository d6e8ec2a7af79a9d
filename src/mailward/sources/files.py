"""Read log files as numbered text lines: plain, .gz, .bz2, .xz, stdin, globs and directories.

Rotated sets are returned oldest first (``mail.log.9.gz … mail.log.1, mail.log``; dated names such
as ``mail.log-20251120.gz`` by date). Lines are decoded as UTF-8 with replacement, so no byte
sequence can stop an import; each line carries its decompressed byte offset so imports resume.
"""

from __future__ import annotations

import bz2
import glob
import gzip
import hashlib
import lzma
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, cast

from mailward.errors import InputError

CHUNK = 1 << 20  # 1 MiB reads: the loop cost is per chunk, not per line
IDENTITY_BYTES = 4096

_COMPRESSED: dict[str, Callable[[Path], IO[bytes]]] = {
    ".gz": lambda p: cast(IO[bytes], gzip.open(p, "rb")),
    ".bz2": lambda p: bz2.open(p, "rb"),
    ".xz": lambda p: lzma.open(p, "rb"),
}
# mail.log.3[.gz] | mail.log-20251120[.gz] | mail.log.20251120 | mail.log-2025112003
_ROTATED_NUM = re.compile(r"^(?P<base>.+?)\.(?P<n>\d{1,4})$")
_ROTATED_DATE = re.compile(r"^(?P<base>.+?)[.-](?P<date>\d{8}(?:\d{2})?)$")


@dataclass(frozen=True, slots=True)
class InputSpec:
    """A non-file input; only standard input (``-``) so far."""

    name: str = "-"

    def __str__(self) -> str:
        return "<stdin>"


STDIN = InputSpec("-")

Input = InputSpec | Path


def _strip_compression(name: str) -> str:
    for ext in _COMPRESSED:
        if name.endswith(ext):
            return name[: -len(ext)]
    return name


def rotation_key(path: Path) -> tuple[str, str, int, str, int]:
    """Sort key that puts a rotated set in chronological order, oldest first.

    Files group by directory and base name; within a group dated rotations come first (by date),
    then numbered ones (highest number first), then the live file.
    """
    name = _strip_compression(path.name)
    m = _ROTATED_DATE.match(name)
    if m:
        return (str(path.parent), m["base"], 0, m["date"], 0)
    m = _ROTATED_NUM.match(name)
    if m:
        return (str(path.parent), m["base"], 1, "", -int(m["n"]))
    return (str(path.parent), name, 2, "", 0)


def expand_inputs(specs: Sequence[str]) -> list[Input]:
    """Expand files, globs and directories into readable inputs in chronological order.

    ``-`` is standard input and is read after the files. A spec that matches nothing raises
    ``InputError`` naming it. Directories contribute their regular files (not recursively).
    """
    files: dict[Path, None] = {}
    stdin = False
    for spec in specs:
        if spec == "-":
            stdin = True
            continue
        path = Path(spec)
        if path.is_dir():
            found = [p for p in path.iterdir() if p.is_file() and not p.name.startswith(".")]
            if not found:
                raise InputError(f"{spec}: directory holds no files")
        elif path.exists():
            if not path.is_file():
                raise InputError(f"{spec}: not a regular file")
            found = [path]
        elif glob.has_magic(spec):
            found = [Path(p) for p in glob.glob(spec) if Path(p).is_file()]
            if not found:
                raise InputError(f"{spec}: no file matches")
        else:
            raise InputError(f"{spec}: no such file")
        for p in found:
            files[p] = None
    ordered: list[Path] = sorted(files, key=rotation_key)
    out: list[Input] = [*ordered]
    if stdin:
        out.append(STDIN)
    return out


def _open(source: Input | str) -> IO[bytes]:
    if isinstance(source, InputSpec) or source == "-":
        return sys.stdin.buffer
    path = Path(source)
    opener = _COMPRESSED.get(path.suffix)
    try:
        if opener is None:
            return open(path, "rb", buffering=CHUNK)  # noqa: SIM115 - closed by the caller
        return opener(path)
    except OSError as exc:
        raise InputError(f"{path}: {exc.strerror or exc}") from exc


def _chunks(stream: IO[bytes], name: str) -> Iterator[bytes]:
    try:
        while True:
            data = stream.read(CHUNK)
            if not data:
                return
            yield data
    except (OSError, EOFError, lzma.LZMAError, ValueError) as exc:
        # A truncated or corrupt archive: keep what was read, name the file.
        raise InputError(f"{name}: {exc}") from exc


def read_lines(source: Input | str, *, start: int = 0) -> Iterator[tuple[int, str, int]]:
    """Yield ``(line number, text, offset after the line)`` for every line of ``source``.

    Offsets count decompressed bytes, so ``start=offset`` resumes after a line already seen; line
    numbers stay true (the skipped part is counted). Undecodable bytes become U+FFFD. A final line
    without a newline is yielded too. Raises ``InputError`` when the input cannot be read.
    """
    name = str(source)
    stream = _open(source)
    try:
        lineno = 0
        offset = 0
        pending = b""
        skip = start
        for data in _chunks(stream, name):
            if skip:
                if len(data) <= skip:
                    lineno += data.count(b"\n")
                    offset += len(data)
                    skip -= len(data)
                    continue
                lineno += data.count(b"\n", 0, skip)
                offset += skip
                data = data[skip:]
                skip = 0
            if pending:
                data = pending + data
            cut = data.rfind(b"\n")
            if cut < 0:
                pending = data
                continue
            pending = data[cut + 1 :]
            block = data[: cut + 1]
            if block.isascii():
                # Fast path: one decode per chunk, character and byte lengths agree.
                for text in block.decode("ascii").split("\n")[:-1]:
                    lineno += 1
                    offset += len(text) + 1
                    yield lineno, text.rstrip("\r"), offset
            else:
                for raw in block.split(b"\n")[:-1]:
                    lineno += 1
                    offset += len(raw) + 1
                    yield lineno, raw.decode("utf-8", "replace").rstrip("\r"), offset
        if pending:
            lineno += 1
            offset += len(pending)
            yield lineno, pending.decode("utf-8", "replace").rstrip("\r"), offset
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()


def read_blocks(source: Input | str) -> Iterator[tuple[int, list[str], int]]:
    """Yield ``(number of the first line, lines, offset after the last line)`` per ~1 MiB.

    The bulk form of ``read_lines`` for importers: one decode and one split per block, so the
    per-line cost stays in the parser. Same decoding rules as ``read_lines``.
    """
    name = str(source)
    stream = _open(source)
    try:
        lineno = 1
        offset = 0
        pending = b""
        for data in _chunks(stream, name):
            if pending:
                data = pending + data
            cut = data.rfind(b"\n")
            if cut < 0:
                pending = data
                continue
            pending = data[cut + 1 :]
            block = data[:cut]
            offset += cut + 1
            text = block.decode("ascii") if block.isascii() else block.decode("utf-8", "replace")
            lines = text.split("\n")
            if "\r" in text:
                lines = [line.rstrip("\r") for line in lines]
            yield lineno, lines, offset
            lineno += len(lines)
        if pending:
            offset += len(pending)
            yield lineno, [pending.decode("utf-8", "replace").rstrip("\r")], offset
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()


def file_identity(source: Input | str) -> str:
    """A content fingerprint that survives renames and compression: SHA-256 of the first 4 KiB
    of decompressed content (plus its length when shorter), hex, 32 characters.

    A file shorter than 4 KiB changes identity as it grows; callers treat a changed identity as
    a new file and rely on the store's per-identity offset for longer ones.
    """
    if isinstance(source, InputSpec) or source == "-":
        raise InputError("<stdin>: standard input has no identity")
    stream = _open(source)
    try:
        head = b""
        for data in _chunks(stream, str(source)):
            head += data
            if len(head) >= IDENTITY_BYTES:
                break
    finally:
        stream.close()
    head = head[:IDENTITY_BYTES]
    digest = hashlib.sha256(head)
    digest.update(len(head).to_bytes(4, "big"))
    return digest.hexdigest()[:32]


def input_size(source: Input) -> int | None:
    """On-disk size in bytes (compressed size for archives), None for stdin."""
    if isinstance(source, InputSpec):
        return None
    try:
        return source.stat().st_size
    except OSError:
        return None
