import asyncio
import contextlib
import json
import sys
from pathlib import Path

from mailward.sources.journald import JournaldFollower, entry_line

FAKE = r"""
import json, sys, time
args = sys.argv[1:]
root = __ROOT__
with open(root + "/argv.log", "a") as fh:
    fh.write(json.dumps(args) + "\n")
entries = [json.loads(l) for l in open(root + "/entries.jsonl")]
sys.stderr.write("Journal file /var/log/journal/x/system@1.journal~ is truncated, ignoring file.\n")
sys.stderr.flush()
if "--after-cursor" in args:
    cur = args[args.index("--after-cursor") + 1]
    idx = [e["__CURSOR"] for e in entries].index(cur) if cur in [e["__CURSOR"] for e in entries] else None
    if idx is None:
        sys.stderr.write("Failed to seek to cursor: Invalid argument\n")
        sys.exit(1)
    entries = entries[idx + 1:]
elif "--since" in args:
    since = float(args[args.index("--since") + 1][1:])
    entries = [e for e in entries if int(e["__REALTIME_TIMESTAMP"]) / 1e6 >= since]
for e in entries:
    sys.stdout.write(json.dumps(e) + "\n")
sys.stdout.write("not json\n")
sys.stdout.flush()
sys.exit(1)  # journalctl dying: the follower must restart it from the cursor
"""


def entry(n: int) -> dict[str, object]:
    return {
        "__CURSOR": f"s=abc;i={n}",
        "__REALTIME_TIMESTAMP": str(1_800_000_000_000_000 + n * 1_000_000),
        "_HOSTNAME": "mx1",
        "SYSLOG_IDENTIFIER": "postfix/smtpd",
        "_PID": "4242",
        "MESSAGE": f"message {n}",
    }


def setup(tmp_path: Path, count: int) -> list[str]:
    (tmp_path / "fake.py").write_text(FAKE.replace("__ROOT__", repr(str(tmp_path))))
    with open(tmp_path / "entries.jsonl", "w") as fh:
        for n in range(1, count + 1):
            fh.write(json.dumps(entry(n)) + "\n")
    return [sys.executable, str(tmp_path / "fake.py")]


def add(tmp_path: Path, first: int, last: int) -> None:
    with open(tmp_path / "entries.jsonl", "a") as fh:
        for n in range(first, last + 1):
            fh.write(json.dumps(entry(n)) + "\n")


async def collect(src: JournaldFollower, want: int, on_batch=None) -> list[str]:  # type: ignore[no-untyped-def]
    got: list[str] = []

    async def run() -> None:
        async with contextlib.aclosing(src.batches()) as batches:  # stops journalctl
            async for batch in batches:
                got.extend(t for t, _ in batch.lines)
                if on_batch:
                    on_batch(batch)
                if len(got) >= want:
                    return

    await asyncio.wait_for(run(), 10)
    return got


def test_entry_line_formats_syslog_with_rfc3339() -> None:
    text, ts = entry_line(entry(1))  # type: ignore[misc]
    assert text == "2027-01-15T08:00:01.000000+00:00 mx1 postfix/smtpd[4242]: message 1"
    assert ts == 1_800_000_001.0
    binary = dict(entry(2), MESSAGE=list(b"caf\xe9"))
    assert entry_line(binary)[0].endswith(": caf\ufffd")  # type: ignore[index]
    assert entry_line({"MESSAGE": None}) is None


async def test_restarts_from_cursor_survives_stderr_and_garbage(tmp_path: Path) -> None:
    cmd = setup(tmp_path, 3)
    src = JournaldFollower(["postfix@-.service"], command=cmd, min_backoff=0.01)
    added = False

    def more(batch: object) -> None:
        nonlocal added
        if not added:
            add(tmp_path, 4, 5)
            added = True

    got = await collect(src, 5, more)
    assert [g.rsplit(" ", 1)[1] for g in got] == ["1", "2", "3", "4", "5"]
    argvs = [json.loads(x) for x in (tmp_path / "argv.log").read_text().splitlines()]
    assert argvs[0][:5] == ["-o", "json", "--follow", "--no-pager", "--all"]
    assert ["-u", "postfix@-.service"] == argvs[0][5:7]
    assert argvs[1][-2:] == ["--after-cursor", "s=abc;i=3"]
    assert src.stderr_lines >= 2 and src.bad_entries >= 1 and src.restarts >= 1
    saved = json.loads(src.position())
    assert saved["cursor"] == "s=abc;i=5"


async def test_vanished_cursor_falls_back_to_time(tmp_path: Path) -> None:
    cmd = setup(tmp_path, 6)
    src = JournaldFollower(command=cmd, min_backoff=0.01)
    # The saved cursor points into a journal file that was vacuumed; its entry was read at
    # 3.5 s, so reading resumes from there.
    src.resume(json.dumps({"cursor": "s=old;i=999", "ts": 1_800_000_003.5}))
    got = await collect(src, 3)
    assert [g.rsplit(" ", 1)[1] for g in got] == ["4", "5", "6"]
    argvs = [json.loads(x) for x in (tmp_path / "argv.log").read_text().splitlines()]
    assert "--after-cursor" in argvs[0] and "--since" in argvs[1]


async def test_missing_binary_is_an_error_not_a_crash(tmp_path: Path) -> None:
    src = JournaldFollower(command=[str(tmp_path / "nope")], min_backoff=0.01)

    async def first() -> None:
        async for _ in src.batches():
            pass

    task = asyncio.ensure_future(first())
    await asyncio.sleep(0.1)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert src.last_error and "cannot run" in src.last_error
    assert src.restarts >= 1 and src.unread_bytes() is None and not src.status()["running"]
