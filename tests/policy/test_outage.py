import asyncio
import time
from pathlib import Path

from tests.cli import daemon_proc

from mailward.cli.run import build_daemon
from mailward.clock import ManualClock
from mailward.config import load
from mailward.notify.model import Alert, Severity
from mailward.policy.outage import OutageWatch
from mailward.storage.reader import SqliteReader

POSTFIX = (
    "Nov 21 11:34:58 mx postfix/smtpd[20829]: warning: problem talking to server "
    "127.0.0.1:10040: Connection refused"
)
DOVECOT = (
    "Nov 21 11:35:25 mx dovecot: auth: Error: policy(alice,192.0.2.57,<S3>): Policy server "
    "HTTP error: connect(127.0.0.1:10041) failed: Connection refused"
)


def test_signs_are_summarised_into_one_alert() -> None:
    raised: list[Alert] = []
    watch = OutageWatch(raised.append, clock=ManualClock(1000.0), max_signs=3)
    watch.lines(["Nov 21 11:34:58 mx postfix/smtpd[1]: connect from unknown[192.0.2.1]"])
    assert watch.flush() is None and raised == []
    watch.lines([POSTFIX] * 5 + ["Nov 21 11:34:59 mx postfix/smtpd[2]: connect from x[1.2.3.4]"])
    watch.lines([DOVECOT])
    alert = watch.flush()
    assert alert is not None and raised == [alert]
    assert alert.kind == "policy_outage" and alert.severity is Severity.HIGH
    assert alert.facts["endpoints"] == ["127.0.0.1:10040", "127.0.0.1:10041"]
    assert watch.status() == {"lines": 6, "alerts": 1, "pending": 0}
    assert watch.flush() is None  # nothing new


async def test_outage_line_in_a_followed_log_raises_an_alert(tmp_path: Path) -> None:
    cfg = daemon_proc.write_config(tmp_path)
    settings = load(cfg, env={})
    daemon = build_daemon(settings, pipeline="twin")
    await daemon.start()
    try:
        [watch] = [c for c in daemon.components if isinstance(c, OutageWatch)]
        manager = next(c for c in daemon.components if c.name == "alerts")
        with (tmp_path / "mail.log").open("a") as fh:
            fh.write(POSTFIX + "\n")
        deadline = time.monotonic() + 5
        while not watch.alerts and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        raised = [a for a in manager.raised if a.kind == "policy_outage"]  # type: ignore[attr-defined]
        assert len(raised) == 1 and "postfix: 1 log line(s)" in raised[0].details
        with (tmp_path / "mail.log").open("a") as fh:  # more lines within the interval: held
            fh.write(POSTFIX + "\n")
        await asyncio.sleep(0.3)
        assert watch.alerts == 1 and watch.status()["pending"] == 1
    finally:
        await daemon.shutdown()
        daemon.store.close()
    assert watch.alerts == 2  # flushed at stop: nothing seen is lost
    reader = SqliteReader(settings.db_path)
    try:
        kinds = [a.kind for a in reader.alerts()]
    finally:
        reader.close()
    assert kinds.count("policy_outage") == 2
