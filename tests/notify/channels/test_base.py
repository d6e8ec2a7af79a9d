from __future__ import annotations

import pytest

from mailward.errors import BackendUnavailable
from mailward.notify.channels.base import DryRunNotifier, MemoryNotifier
from mailward.notify.model import Message


async def test_memory_twin_records_and_fails_on_demand() -> None:
    ok = MemoryNotifier()
    await ok.send(Message(subject="s", text="t"))
    assert [m.subject for m in ok.sent] == ["s"] and ok.arrived.is_set()
    bad = MemoryNotifier(fail=True)
    with pytest.raises(BackendUnavailable):
        await bad.send(Message(subject="s", text="t"))
    assert bad.attempts == 1 and bad.sent == []


async def test_dry_run_only_logs(caplog: pytest.LogCaptureFixture) -> None:
    await DryRunNotifier().send(Message(subject="hello", text="t"))
    assert "hello" in caplog.text
