"""Follow a log file across rotation, exactly once.

Rename-and-create: the old file (found by device+inode) is drained to its end before the new one is
read. Copytruncate: a shrink, or a last-read line that no longer matches, means truncation; the
unread tail is then read from the copy (``mail.log.1``), found by matching that last line. The
position (device, inode, offset, line number, hash of the last line) resumes after downtime too.
"""

from __future__ import annotations

import asyncio
import glob
import hashlib
import json
import logging
import os
import re
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mailward.events import Origin
from mailward.sources.live import Batch

log = logging.getLogger(__name__)

COMPRESSED = (".gz", ".bz2", ".xz", ".zst", ".lz4", ".Z")
MAX_LINE = 64 * 1024  # a longer "line" is cut: a log line that long is an attack or garbage


def line_hash(raw: bytes) -> str:
    return hashlib.blake2b(raw, digest_size=8).hexdigest()


@dataclass(frozen=True, slots=True)
class FilePosition:
    dev: int
    ino: int
    offset: int  # bytes consumed (always just after a newline)
    line: int  # lines consumed
    tail: str  # hash of the TAIL bytes before offset; "" at offset 0

    def dumps(self) -> str:
        return json.dumps([self.dev, self.ino, self.offset, self.line, self.tail])

    @classmethod
    def loads(cls, text: str) -> FilePosition:
        dev, ino, offset, line, tail = json.loads(text)
        return cls(int(dev), int(ino), int(offset), int(line), str(tail))


TAIL = 512  # bytes before the offset whose hash proves we are still in the same file


def tail_window(fd: int, offset: int) -> bytes:
    size = min(offset, TAIL)
    return os.pread(fd, size, offset - size)


def last_line_matches(fd: int, pos: FilePosition) -> bool:
    """Do the bytes just before ``pos.offset`` still hash to ``pos.tail``?"""
    if pos.offset == 0:
        return True
    window = tail_window(fd, pos.offset)
    return len(window) == min(pos.offset, TAIL) and line_hash(window) == pos.tail


class _Open:
    """One open file being read: its descriptor and how far we consumed it."""

    def __init__(self, path: Path, fd: int, pos: FilePosition) -> None:
        self.path = path
        self.fd = fd
        self.pos = pos
        self.last_raw = b""  # the TAIL bytes before pos.offset, for the cheap truncation check

    def close(self) -> None:
        try:
            os.close(self.fd)
        except OSError:
            pass


def _open(path: Path) -> tuple[int, os.stat_result] | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        return None
    return fd, os.fstat(fd)


ROTATED_SUFFIX = re.compile(r"^(\.\d+|-\d{8}(\d\d)?(\.\d+)?)$")  # .1 / -20261121 / -2026112114


class FileFollower:
    """Reads ``path`` and the files it rotates into, oldest first. ``_files[0]`` is being read;
    the last one is the file currently at ``path``; those in between were rotated away and are
    finished before moving on (their descriptors are held, so a rename cannot lose them)."""

    kind = "file"

    def __init__(
        self,
        path: Path | str,
        *,
        name: str | None = None,
        poll_interval: float = 0.25,
        start_at_end: bool = False,
        max_batch_bytes: int = 256 * 1024,
        rotated_grace: float | None = None,
    ) -> None:
        self.path = Path(path)
        self.name = name or f"file:{self.path}"
        self.poll_interval = poll_interval
        self.start_at_end = start_at_end
        self.max_batch_bytes = max_batch_bytes
        # How long a renamed-away file is still watched for late writes before we move on.
        self.rotated_grace = poll_interval * 2 if rotated_grace is None else rotated_grace
        self._saved: FilePosition | None = None
        self._resumed = False
        self._files: list[_Open] = []
        self._eof_since: float | None = None
        self.caught_up_at: float | None = None  # wall time we last found nothing more to read
        self.last_error: str | None = None
        self.lines = 0
        self.rotations = 0
        self.truncations = 0
        self.gaps = 0  # times lines may have been missed (position's file vanished)

    # -- public --------------------------------------------------------------------------
    def resume(self, position: str | None) -> None:
        self._saved = None
        if position:
            try:
                self._saved = FilePosition.loads(position)
            except (ValueError, TypeError):
                log.warning("%s: ignoring unreadable saved position %r", self.name, position)

    async def batches(self) -> AsyncGenerator[Batch, None]:
        while True:
            if not self._resumed:
                if not self._start():
                    await asyncio.sleep(self.poll_interval)
                    continue
                self._resumed = True
            batch = self._step()
            if batch is not None:
                yield batch
                await asyncio.sleep(0)
            else:
                await asyncio.sleep(self.poll_interval)

    def unread_bytes(self) -> int | None:
        if not self._files:
            return None
        total = 0
        for item in self._files:
            try:
                total += max(0, os.fstat(item.fd).st_size - item.pos.offset)
            except OSError:
                return None
        return total

    def status(self) -> dict[str, Any]:
        cur = self._files[0] if self._files else None
        return {
            "path": str(self.path),
            "reading": str(cur.path) if cur else None,
            "offset": cur.pos.offset if cur else None,
            "inode": cur.pos.ino if cur else None,
            "queued": len(self._files) - 1 if self._files else 0,
            "lines": self.lines,
            "rotations": self.rotations,
            "truncations": self.truncations,
            "gaps": self.gaps,
        }

    def close(self) -> None:
        for item in self._files:
            item.close()
        self._files.clear()
        self._resumed = False

    # -- start / resume ------------------------------------------------------------------
    def _start(self) -> bool:
        opened = _open(self.path)
        if opened is None:
            self.last_error = f"{self.path} does not exist (yet)"
            return False
        fd, st = opened
        saved = self._saved
        fresh = FilePosition(st.st_dev, st.st_ino, 0, 0, "")
        files: list[_Open] = []
        if saved is None:
            if self.start_at_end:
                fresh = self._end_position(fd, st)
        elif (st.st_dev, st.st_ino) == (saved.dev, saved.ino) and (
            st.st_size >= saved.offset and last_line_matches(fd, saved)
        ):
            fresh = saved
        else:
            # Rotated or truncated while we were down: find the file that holds our last line
            # (same inode, or a copy), then every rotated file newer than it, then the current.
            if (st.st_dev, st.st_ino) == (saved.dev, saved.ino):
                self.truncations += 1
            else:
                self.rotations += 1
            old = self._find_continuation(saved, current=(st.st_dev, st.st_ino))
            if old is not None:
                files.append(old)
                files += self._newer_siblings(old, current=(st.st_dev, st.st_ino))
        files.append(_Open(self.path, fd, fresh))
        self._files = files
        self.last_error = None
        self._saved = None
        return True

    def _end_position(self, fd: int, st: os.stat_result) -> FilePosition:
        # Start after the last complete line, so a line being written is not cut in half.
        size = st.st_size
        data = os.pread(fd, min(size, MAX_LINE), size - min(size, MAX_LINE))
        cut = data.rfind(b"\n")
        if cut < 0:
            return FilePosition(st.st_dev, st.st_ino, 0, 0, "")
        end = size - len(data) + cut + 1
        return FilePosition(st.st_dev, st.st_ino, end, 0, line_hash(tail_window(fd, end)))

    def _siblings(self) -> list[tuple[Path, os.stat_result]]:
        """Uncompressed rotated generations (``.1``, ``-20261121``), oldest write first."""
        out = []
        for name in glob.glob(glob.escape(str(self.path)) + "[.-]*"):
            suffix = name[len(str(self.path)) :]
            if not ROTATED_SUFFIX.match(suffix):
                continue
            try:
                out.append((Path(name), os.stat(name)))
            except OSError:
                continue
        out.sort(key=lambda item: item[1].st_mtime_ns)
        return out

    def _find_continuation(self, pos: FilePosition, current: tuple[int, int]) -> _Open | None:
        """The rotated file (same inode) or copy (same bytes) that holds our last line."""
        candidates = self._siblings()
        candidates.sort(key=lambda item: (item[1].st_dev, item[1].st_ino) != (pos.dev, pos.ino))
        for sibling, st in candidates:
            if (st.st_dev, st.st_ino) == current or st.st_size < pos.offset:
                continue
            opened = _open(sibling)
            if opened is None:
                continue
            fd, fst = opened
            if last_line_matches(fd, pos):
                return _Open(
                    sibling,
                    fd,
                    FilePosition(fst.st_dev, fst.st_ino, pos.offset, pos.line, pos.tail),
                )
            os.close(fd)
        if pos.offset > 0:
            self.gaps += 1
            log.warning(
                "%s: the file last read up to byte %d is gone or changed and no rotated file "
                "holds that position; lines written before the rotation may be missed",
                self.name,
                pos.offset,
            )
        return None

    def _newer_siblings(self, old: _Open, current: tuple[int, int]) -> list[_Open]:
        old_mtime = os.fstat(old.fd).st_mtime_ns
        out = []
        for sibling, st in self._siblings():
            key = (st.st_dev, st.st_ino)
            if key in (current, (old.pos.dev, old.pos.ino)) or st.st_mtime_ns < old_mtime:
                continue
            opened = _open(sibling)
            if opened is not None:
                fd, fst = opened
                out.append(_Open(sibling, fd, FilePosition(fst.st_dev, fst.st_ino, 0, 0, "")))
        return out

    # -- one poll ------------------------------------------------------------------------
    def _step(self) -> Batch | None:
        self._watch_path()
        item = self._files[0]
        live = len(self._files) == 1
        if live:
            try:
                st = os.fstat(item.fd)
            except OSError as exc:
                self.last_error = str(exc)
                return None
            if st.st_size < item.pos.offset or (
                st.st_size > item.pos.offset and not self._tail_intact(item)
            ):
                self._truncated(item)
                item = self._files[0]
        lines = self._read(item)
        if lines:
            self._eof_since = None
            return self._batch(lines, item.pos)
        if len(self._files) == 1:
            self.caught_up_at = time.time()
            return None
        # A rotated-away file at its end: give late writers a moment, then move on.
        now = time.monotonic()
        if self._eof_since is None:
            self._eof_since = now
        if now - self._eof_since < self.rotated_grace:
            return None
        final = self._read(item, final=True)  # a last line without newline, if any
        item.close()
        self._files.pop(0)
        self._eof_since = None
        # That file is consumed whole: after these lines we stand at the next file's start.
        return self._batch(final, self._files[0].pos)

    def _watch_path(self) -> None:
        """Hold on to a new file at ``path`` as soon as it appears (rename-and-create)."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return  # renamed, the new file is not there yet: keep reading the old one
        except OSError as exc:
            self.last_error = str(exc)
            return
        last = self._files[-1].pos
        if (st.st_dev, st.st_ino) == (last.dev, last.ino):
            self.last_error = None
            return
        opened = _open(self.path)
        if opened is None:
            return
        fd, nst = opened
        self.rotations += 1
        log.info("%s: rotated (new inode %d)", self.name, nst.st_ino)
        self._files.append(_Open(self.path, fd, FilePosition(nst.st_dev, nst.st_ino, 0, 0, "")))

    def _batch(self, lines: list[tuple[str, Origin]], pos: FilePosition) -> Batch:
        self.lines += len(lines)
        return Batch(source=self.name, lines=lines, position=pos.dumps())

    def _tail_intact(self, item: _Open) -> bool:
        raw = item.last_raw
        if not raw:
            return last_line_matches(item.fd, item.pos)
        return os.pread(item.fd, len(raw), item.pos.offset - len(raw)) == raw

    def _truncated(self, cur: _Open) -> None:
        self.truncations += 1
        log.info("%s: truncated (copytruncate); reading the copy's tail first", self.name)
        copy = self._find_continuation(cur.pos, current=(cur.pos.dev, cur.pos.ino))
        cur.pos = FilePosition(cur.pos.dev, cur.pos.ino, 0, 0, "")
        cur.last_raw = b""
        if copy is not None:
            self._files.insert(0, copy)

    def _read(self, item: _Open, final: bool = False) -> list[tuple[str, Origin]]:
        """Consume the complete lines available (all of it when ``final``)."""
        data = os.pread(item.fd, self.max_batch_bytes, item.pos.offset)
        if not data:
            return []
        end = data.rfind(b"\n")
        if end >= 0:
            consumed = end + 1
            raws = data[:consumed].split(b"\n")[:-1]
        elif final or len(data) > MAX_LINE:
            consumed = len(data)
            raws = [data]
        else:
            return []  # a line still being written
        new_offset = item.pos.offset + consumed
        if consumed >= TAIL:
            last_raw = data[consumed - TAIL : consumed]
        else:
            last_raw = tail_window(item.fd, new_offset)
        pos = item.pos
        lines: list[tuple[str, Origin]] = []
        source = str(item.path)
        number = pos.line
        for raw in raws:
            number += 1
            text = raw[:MAX_LINE].decode("utf-8", errors="replace").rstrip("\r")
            lines.append((text, Origin(source=source, line=number)))
        item.pos = FilePosition(pos.dev, pos.ino, new_offset, number, line_hash(last_raw))
        item.last_raw = last_raw
        return lines
