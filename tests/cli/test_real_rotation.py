"""Rotation and restart, proven with counts: a writer appends numbered lines fast, rotating
the log both ways (rename-and-create and copytruncate), while the real ``mailward run`` process
is killed with SIGKILL twice (once across each rotation style) and restarted. Every sequence
number must be in the daemon's ledger (the shared ``mailward.db``) exactly once. The twin detectors are used on purpose: this
proves the sources and the ledger, at a rate the real detectors are not built to sustain."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest

from mailward.storage.reader import SqliteReader

from . import daemon_proc  # type: ignore[attr-defined]

pytestmark = pytest.mark.slow

CHUNKS = 120  # of CHUNK lines, plus one late write per rename
CHUNK = 500
ROTATE = {
    10_000: "rename",
    20_000: "copytruncate",
    30_000: "rename",
    40_000: "copytruncate",
    50_000: "rename",
}
KILLS = [(25_000, 33_000), (38_000, 45_000)]  # (kill -9 when written, restart when written)


class Writer(threading.Thread):
    def __init__(self, path: Path) -> None:
        super().__init__(daemon=True)
        self.path = path
        self.written = 0
        self.error: BaseException | None = None

    def generation(self, n: int) -> Path:
        return self.path.with_name(f"{self.path.name}.{n}")

    def shift(self, keep: int = 4) -> None:
        """What logrotate does first: mail.log.3 -> .4, .2 -> .3, .1 -> .2."""
        for n in range(keep - 1, 0, -1):
            if self.generation(n).exists():
                os.replace(self.generation(n), self.generation(n + 1))

    def line(self, seq: int) -> bytes:
        stamp = datetime.now(UTC).isoformat()
        ip = f"10.{seq >> 16 & 255}.{seq >> 8 & 255}.{seq & 255}"
        return (
            f"{stamp} mx1 postfix/smtps/smtpd[77]: warning: unknown[{ip}]: SASL PLAIN "
            f"authentication failed: , sasl_username=seq{seq}\n"
        ).encode()

    def run(self) -> None:
        try:
            fh = open(self.path, "ab", buffering=0)  # noqa: SIM115
            for chunk_no in range(1, CHUNKS + 1):
                chunk = b"".join(self.line(self.written + i + 1) for i in range(CHUNK))
                fh.write(chunk)
                self.written += CHUNK
                style = ROTATE.get(chunk_no * CHUNK)
                if style:
                    self.shift()
                if style == "rename":
                    os.replace(self.path, self.generation(1))
                    fh.write(self.line(self.written + 1))  # a late write to the renamed file
                    self.written += 1
                    fh.close()
                    fh = open(self.path, "ab", buffering=0)  # noqa: SIM115
                elif style == "copytruncate":
                    shutil.copyfile(self.path, self.generation(1))
                    os.truncate(self.path, 0)
                time.sleep(0.05)
            fh.close()
        except BaseException as exc:  # surfaced by the test
            self.error = exc


def ledger_seqs(db: Path) -> list[int]:
    reader = SqliteReader(db)
    try:
        return [int(getattr(e, "username", "")[3:]) for e in reader.events()]
    finally:
        reader.close()


def ledger_count(db: Path) -> int:
    if not db.exists():
        return 0
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return int(con.execute("SELECT count(*) FROM events").fetchone()[0])
    except sqlite3.OperationalError:
        return 0
    finally:
        con.close()


def test_no_line_lost_or_repeated_across_rotation_and_kill_9(tmp_path: Path) -> None:
    cfg = daemon_proc.write_config(tmp_path, backend="none")
    db = tmp_path / "mailward.db"
    proc = daemon_proc.start(cfg, mode="twin")
    writer = Writer(tmp_path / "mail.log")
    writer.start()
    kills = 0
    try:
        for kill_at, restart_at in KILLS:
            while writer.written < kill_at:
                assert writer.is_alive() or writer.error is None
                time.sleep(0.005)
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
            kills += 1
            while writer.written < restart_at and writer.is_alive():
                time.sleep(0.005)
            proc = daemon_proc.start(cfg, mode="twin")
        writer.join(60)
        assert writer.error is None, writer.error
        deadline = time.monotonic() + 90
        total = writer.written
        while ledger_count(db) < total and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(0.5)  # anything extra (a duplicate) would show up now
    finally:
        code = daemon_proc.stop(proc)
    assert code == 0 and kills == 2
    seqs = ledger_seqs(db)
    dupes = [s for s, n in Counter(seqs).items() if n > 1]
    missing = sorted(set(range(1, total + 1)) - set(seqs))
    print(
        f"{len(seqs)} events recorded for {total} lines written; {len(dupes)} duplicated, {len(missing)} missing"
    )
    assert not dupes, f"{len(dupes)} duplicated, e.g. {dupes[:5]}"
    assert not missing, f"{len(missing)} missing, e.g. {missing[:5]}"
    assert len(seqs) == total == CHUNKS * CHUNK + 3
