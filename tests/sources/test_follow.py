import asyncio
import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailward.sources.follow import FileFollower, FilePosition


class Log:
    """A log writer that can rotate both ways, like syslog + logrotate."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.n = 0
        self.fh = open(path, "ab", buffering=0)  # noqa: SIM115

    def write(self, count: int = 1, newline: bool = True) -> None:
        for _ in range(count):
            self.n += 1
            self.fh.write(f"line {self.n:06d}".encode() + (b"\n" if newline else b""))

    def raw(self, data: bytes) -> None:
        self.fh.write(data)

    def rename_rotate(self, reopen: bool = True) -> None:
        os.replace(self.path, self.path.with_name(self.path.name + ".1"))
        if reopen:
            self.reopen()

    def reopen(self) -> None:
        self.fh.close()
        self.fh = open(self.path, "ab", buffering=0)  # noqa: SIM115

    def copytruncate(self) -> None:
        shutil.copyfile(self.path, self.path.with_name(self.path.name + ".1"))
        os.truncate(self.path, 0)


@pytest.fixture
def log(tmp_path: Path) -> Iterator[Log]:
    writer = Log(tmp_path / "mail.log")
    yield writer
    writer.fh.close()


def drain(f: FileFollower, out: list[str], rounds: int = 6) -> str | None:
    """Poll until quiet; return the last position seen."""
    if not f._resumed:
        assert f._start()
        f._resumed = True
    position = None
    idle = 0
    while idle < rounds:
        batch = f._step()
        if batch is None:
            idle += 1
            continue
        idle = 0
        out.extend(text for text, _ in batch.lines)
        position = batch.position
    return position


def numbers(lines: list[str]) -> list[int]:
    return [int(x.split()[1]) for x in lines]


def make(path: Path) -> FileFollower:
    return FileFollower(path, poll_interval=0.01, rotated_grace=0)


def test_follows_appends_and_waits_for_whole_lines(log: Log, tmp_path: Path) -> None:
    f = make(log.path)
    out: list[str] = []
    log.write(3)
    log.raw(b"line 000004")
    drain(f, out)
    assert numbers(out) == [1, 2, 3]
    log.raw(b" tail\n")
    drain(f, out)
    assert out[-1] == "line 000004 tail"
    assert f.unread_bytes() == 0


def test_rename_and_create_with_late_writes_to_old_file(log: Log, tmp_path: Path) -> None:
    f = make(log.path)
    out: list[str] = []
    log.write(5)
    drain(f, out)
    log.write(3)
    log.rename_rotate(reopen=False)
    log.write(2)  # the writer has not reopened yet: these go to mail.log.1
    drain(f, out, rounds=1)
    log.reopen()
    log.write(4)
    drain(f, out)
    assert numbers(out) == list(range(1, 15))
    assert f.rotations == 1


def test_copytruncate_reads_unread_tail_from_copy(log: Log, tmp_path: Path) -> None:
    f = make(log.path)
    out: list[str] = []
    log.write(5)
    drain(f, out)
    log.write(3)  # unread when the copy is taken
    log.copytruncate()
    log.write(200)  # the file grows past the old offset before we look again
    drain(f, out)
    assert numbers(out) == list(range(1, 209))
    assert f.truncations == 1 and f.gaps == 0


def test_restart_catches_up_after_rotation_while_down(log: Log, tmp_path: Path) -> None:
    out: list[str] = []
    f = make(log.path)
    log.write(5)
    saved = drain(f, out)
    f.close()
    log.write(3)  # written while the daemon is down, then rotated away
    log.rename_rotate()
    log.write(2)
    g = make(log.path)
    g.resume(saved)
    drain(g, out)
    assert numbers(out) == list(range(1, 11))


def test_restart_after_copytruncate_while_down(log: Log, tmp_path: Path) -> None:
    out: list[str] = []
    f = make(log.path)
    log.write(50)
    saved = drain(f, out)
    f.close()
    log.write(3)
    log.copytruncate()
    log.write(100)
    g = make(log.path)
    g.resume(saved)
    drain(g, out)
    assert numbers(out) == list(range(1, 154))


def test_restart_same_file_resumes_exactly(log: Log, tmp_path: Path) -> None:
    out: list[str] = []
    f = make(log.path)
    log.write(10)
    saved = drain(f, out)
    assert saved is not None and FilePosition.loads(saved).line == 10
    log.write(5)
    g = make(log.path)
    g.resume(saved)
    drain(g, out)
    assert numbers(out) == list(range(1, 16))


def test_position_of_a_deleted_file_reads_new_file_whole(log: Log, tmp_path: Path) -> None:
    out: list[str] = []
    f = make(log.path)
    log.write(5)
    saved = drain(f, out)
    log.rename_rotate()
    (tmp_path / "mail.log.1").unlink()
    log.write(2)
    g = make(log.path)
    g.resume(saved)
    drain(g, out)
    assert numbers(out) == [1, 2, 3, 4, 5, 6, 7]
    assert g.gaps == 1


def test_start_at_end_and_bad_bytes(log: Log, tmp_path: Path) -> None:
    log.write(5)
    f = FileFollower(log.path, start_at_end=True, poll_interval=0.01)
    out: list[str] = []
    drain(f, out)
    assert out == []
    log.raw(b"caf\xe9 \xff\r\n")
    drain(f, out)
    assert out == ["caf\ufffd \ufffd"]


async def test_async_batches_wait_for_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "mail.log"
    f = FileFollower(path, poll_interval=0.01)
    got: list[str] = []

    async def consume() -> None:
        async with contextlib.aclosing(f.batches()) as batches:
            async for batch in batches:
                got.extend(t for t, _ in batch.lines)
                if len(got) >= 2:
                    return

    task = asyncio.ensure_future(consume())
    await asyncio.sleep(0.05)
    assert f.last_error and "does not exist" in f.last_error
    path.write_text("a\nb\n")
    await asyncio.wait_for(task, 2)
    assert got == ["a", "b"] and f.status()["lines"] == 2


def test_restart_after_several_rotations_reads_every_generation(log: Log, tmp_path: Path) -> None:
    out: list[str] = []
    f = make(log.path)
    log.write(5)
    saved = drain(f, out)
    f.close()
    log.write(2)  # unread, then the file is rotated twice (rename, then copytruncate)
    os.replace(log.path, tmp_path / "mail.log.1")
    log.reopen()
    log.write(3)
    os.replace(tmp_path / "mail.log.1", tmp_path / "mail.log.2")
    log.copytruncate()
    log.write(4)
    g = make(log.path)
    g.resume(saved)
    drain(g, out)
    assert numbers(out) == list(range(1, 15))
    assert g.gaps == 0


def test_live_rename_twice_while_behind_loses_nothing(log: Log, tmp_path: Path) -> None:
    f = FileFollower(log.path, poll_interval=0.01, rotated_grace=0, max_batch_bytes=64)
    out: list[str] = []
    log.write(5)
    assert f._start()
    f._resumed = True
    out.extend(t for t, _ in f._step().lines)  # type: ignore[union-attr]
    for _ in range(2):  # two renames while the follower is still in the first file
        log.write(3)
        if (tmp_path / "mail.log.1").exists():
            os.replace(tmp_path / "mail.log.1", tmp_path / "mail.log.2")
        log.rename_rotate()
        f._watch_path()
    log.write(2)
    drain(f, out)
    assert numbers(out) == list(range(1, 14))
    assert f.status()["queued"] == 0 and f.rotations == 2
