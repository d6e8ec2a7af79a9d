"""File inputs: rotation order, compression, stdin, resumable offsets, bad bytes."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import sys
from pathlib import Path

import pytest

from mailward.errors import InputError
from mailward.sources.files import (
    STDIN,
    expand_inputs,
    file_identity,
    input_size,
    read_lines,
    rotation_key,
)

LINES = [f"Nov 21 10:00:{i:02d} mx1 postfix/smtpd[1]: line {i}" for i in range(50)]
TEXT = "\n".join(LINES) + "\n"


def _write(path: Path, text: str = TEXT) -> Path:
    data = text.encode()
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(data))
    elif path.suffix == ".bz2":
        path.write_bytes(bz2.compress(data))
    elif path.suffix == ".xz":
        path.write_bytes(lzma.compress(data))
    else:
        path.write_bytes(data)
    return path


@pytest.mark.parametrize("name", ["mail.log", "mail.log.2.gz", "mail.log.3.bz2", "mail.log.4.xz"])
def test_read_lines_plain_and_compressed(tmp_path: Path, name: str) -> None:
    path = _write(tmp_path / name)
    got = list(read_lines(path))
    assert [t for _, t, _ in got] == LINES
    assert [n for n, _, _ in got] == list(range(1, 51))
    assert got[-1][2] == len(TEXT.encode())


@pytest.mark.parametrize("name", ["mail.log", "mail.log.1.gz", "mail.log.2.xz"])
def test_resume_at_offset_keeps_line_numbers(tmp_path: Path, name: str) -> None:
    path = _write(tmp_path / name)
    full = list(read_lines(path))
    n, _, offset = full[19]
    rest = list(read_lines(path, start=offset))
    assert rest == full[20:]
    assert rest[0][0] == n + 1


def test_resume_across_chunk_boundaries(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import mailward.sources.files as files

    monkeypatch.setattr(files, "CHUNK", 7)
    path = _write(tmp_path / "mail.log")
    full = list(read_lines(path))
    assert [t for _, t, _ in full] == LINES
    for k in (0, 1, 13, 49):
        assert list(read_lines(path, start=full[k][2])) == full[k + 1 :]


def test_undecodable_bytes_crlf_and_missing_final_newline(tmp_path: Path) -> None:
    path = tmp_path / "mail.log"
    path.write_bytes(b"caf\xe9 \xff\xfe ok\r\nsecond\nthird without newline")
    got = list(read_lines(path))
    assert [t for _, t, _ in got] == [
        "caf\ufffd \ufffd\ufffd ok",
        "second",
        "third without newline",
    ]
    assert got[-1][2] == path.stat().st_size


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.log"
    path.write_bytes(b"")
    assert list(read_lines(path)) == []


def test_corrupt_archive_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "mail.log.1.gz"
    path.write_bytes(gzip.compress(TEXT.encode())[:40])
    with pytest.raises(InputError, match="mail.log.1.gz"):
        list(read_lines(path))


def test_stdin(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = io.TextIOWrapper(io.BytesIO(b"a\nb\n"))
    monkeypatch.setattr(sys, "stdin", fake)
    assert expand_inputs(["-"]) == [STDIN]
    assert [t for _, t, _ in read_lines(STDIN)] == ["a", "b"]
    assert input_size(STDIN) is None


def test_rotated_set_in_chronological_order(tmp_path: Path) -> None:
    names = ["mail.log", "mail.log.1", "mail.log.2.gz", "mail.log.10.gz", "mail.log.9.gz"]
    for n in names:
        _write(tmp_path / n)
    got = [p.name for p in expand_inputs([str(tmp_path)])]  # type: ignore[union-attr]
    assert got == ["mail.log.10.gz", "mail.log.9.gz", "mail.log.2.gz", "mail.log.1", "mail.log"]
    # The shell's alphabetical expansion is reordered too.
    shell = [str(tmp_path / n) for n in sorted(names)]
    assert [p.name for p in expand_inputs(shell)] == got  # type: ignore[union-attr]
    assert [p.name for p in expand_inputs([str(tmp_path / "mail.log*")])] == got  # type: ignore[union-attr]


def test_dated_rotation_order(tmp_path: Path) -> None:
    names = ["mail.log-20251120.gz", "mail.log", "mail.log-20251106.gz", "mail.log-20251113"]
    for n in names:
        _write(tmp_path / n)
    got = [p.name for p in expand_inputs([str(tmp_path / "mail.log*")])]  # type: ignore[union-attr]
    assert got == ["mail.log-20251106.gz", "mail.log-20251113", "mail.log-20251120.gz", "mail.log"]


def test_rotation_key_groups_by_base() -> None:
    assert rotation_key(Path("/v/dovecot.log.1"))[:2] == ("/v", "dovecot.log")
    assert rotation_key(Path("/v/mail.log.3.gz"))[:2] == ("/v", "mail.log")
    assert rotation_key(Path("/v/mail.log-20251120.gz"))[:2] == ("/v", "mail.log")


def test_missing_inputs_raise_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="nope.log"):
        expand_inputs([str(tmp_path / "nope.log")])
    with pytest.raises(InputError, match=r"\*.gz"):
        expand_inputs([str(tmp_path / "*.gz")])
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="empty"):
        expand_inputs([str(empty)])


def test_file_identity_survives_rename_and_compression(tmp_path: Path) -> None:
    plain = _write(tmp_path / "mail.log")
    packed = _write(tmp_path / "mail.log.1.gz")
    other = _write(tmp_path / "other.log", TEXT.replace("line", "LINE"))
    assert file_identity(plain) == file_identity(packed)
    assert file_identity(plain) != file_identity(other)
    assert len(file_identity(plain)) == 32
    with pytest.raises(InputError):
        file_identity(STDIN)
