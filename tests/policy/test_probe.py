from pathlib import Path

import pytest
from tests.conftest import shared_file

from mailward.config.model import DovecotPolicySettings, PostfixPolicySettings
from mailward.policy.backend import MemoryBackend
from mailward.policy.dovecot import DovecotPolicyServer
from mailward.policy.postfix import PostfixPolicyServer
from mailward.policy.probe import match_outage, probe_dovecot, probe_postfix


async def test_probes_report_up_and_down(tmp_path: Path) -> None:
    sock = tmp_path / "p.sock"
    pf = PostfixPolicyServer(
        PostfixPolicySettings(listen=["inet:127.0.0.1:0", f"unix:{sock}"], socket_group=None),
        backend=MemoryBackend(),
    )
    dv = DovecotPolicyServer(DovecotPolicySettings(port=0, api_key="k"), backend=MemoryBackend())  # type: ignore[arg-type]
    await pf.start()
    await dv.start()
    port = pf.addresses[0][1]
    url = f"http://127.0.0.1:{dv.port}/"
    try:
        assert (await probe_postfix(f"inet:127.0.0.1:{port}")).ok
        assert (await probe_postfix(f"unix:{sock}")).ok
        assert (await probe_dovecot(url, headers={"X-API-Key": "k"})).ok
        bad_key = await probe_dovecot(url, headers={"X-API-Key": "nope"})
        assert not bad_key.ok and bad_key.error == "HTTP 401"
        # the probe leaves no trace in the counters
        assert pf.core.sessions.open(__import__("ipaddress").ip_address("0.0.0.0"), 0) == 0
        assert dv.core.stats.reports == 0
    finally:
        await pf.stop()
        await dv.stop()
    down = await probe_postfix(f"inet:127.0.0.1:{port}", timeout=1)
    assert not down.ok and "refused" in down.error.lower()
    assert not (await probe_postfix(f"unix:{sock}")).ok
    down = await probe_dovecot(url, timeout=1)
    assert not down.ok and down.to_json()["ok"] is False


async def test_probe_of_something_that_is_not_a_policy_server(tmp_path: Path) -> None:
    import asyncio

    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"220 hello\n\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        r = await probe_postfix(f"inet:127.0.0.1:{port}")
        assert not r.ok and "unexpected reply" in r.error
        r = await probe_dovecot(f"http://127.0.0.1:{port}/", timeout=1)
        assert not r.ok
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize(
    ("line", "daemon", "endpoint"),
    [
        (
            "Nov 21 11:34:58 mail postfix/smtpd[20829]: warning: problem talking to server 127.0.0.1:10040: Connection refused",
            "postfix",
            "127.0.0.1:10040",
        ),
        (
            "Nov 21 11:34:58 mx postfix/submission/smtpd[1]: warning: problem talking to server unix:private/mailward: Connection timed out",
            "postfix",
            "unix:private/mailward",
        ),
        (
            "Nov 21 11:35:25 auth: Error: policy(alice,127.0.0.57,<S+S3wcdg5Zp/AAA5>): Policy server HTTP error: connect(127.0.0.1:10041) failed: Connection refused",
            "dovecot",
            "127.0.0.1:10041",
        ),
        (
            "Nov 21 11:35:50 vm dovecot: auth: Error: policy(bob,198.51.100.7,<x>): Policy server HTTP error: 500 Internal Server Error",
            "dovecot",
            "",
        ),
    ],
)
def test_match_outage_lines(line: str, daemon: str, endpoint: str) -> None:
    sign = match_outage(line)
    assert sign is not None and sign.daemon == daemon and sign.endpoint == endpoint


def test_match_outage_ignores_other_lines_and_attacker_text() -> None:
    assert match_outage("Nov 21 postfix/smtpd[1]: connect from unknown[1.2.3.4]") is None
    # a username cannot forge an outage: the text must be Dovecot's own policy error line
    assert (
        match_outage("auth: Info: passwd-file(Policy server HTTP error,1.2.3.4): unknown user")
        is None
    )


def test_captured_logs_contain_exactly_the_known_outages() -> None:
    pf = shared_file("captured-mailstack/captured-postfix.log").read_text().splitlines()
    dv = shared_file("captured-mailstack/captured-dovecot-logpath.log").read_text().splitlines()
    signs = [s for s in map(match_outage, pf + dv) if s is not None]
    assert [s.daemon for s in signs] == ["postfix", "postfix", "dovecot", "dovecot"]
    assert {s.endpoint for s in signs} == {"127.0.0.1:10040", "127.0.0.1:10041"}


def test_probe_alert_only_when_something_is_down() -> None:
    from mailward.notify.model import Severity
    from mailward.policy.probe import ProbeResult, probe_alert

    up = ProbeResult("postfix", "inet:127.0.0.1:10040", True, 0.3)
    assert probe_alert([up], 0) is None
    down = ProbeResult("dovecot", "http://127.0.0.1:8421/", False, error="ClientConnectorError")
    alert = probe_alert([up, down], 100)
    assert (
        alert is not None and alert.severity is Severity.CRITICAL and alert.kind == "policy_outage"
    )
    assert "dovecot" in alert.title and "postfix" not in alert.title
    assert any("fail open" in d for d in alert.details)
    assert alert.key == probe_alert([down], 200).key  # type: ignore[union-attr]  # dedup key is stable


def test_log_outage_alert_summarises_the_lines() -> None:
    from mailward.policy.probe import OutageSign, log_outage_alert

    assert log_outage_alert([], 0, 0) is None
    signs = [
        OutageSign("postfix", "127.0.0.1:10040", "Connection refused"),
        OutageSign("postfix", "127.0.0.1:10040", "Connection refused"),
        OutageSign("dovecot", "127.0.0.1:10041", "HTTP error: connect(127.0.0.1:10041) failed"),
    ]
    alert = log_outage_alert(signs, 5, 10)
    assert alert is not None
    assert alert.facts["lines"] == {"postfix": 2, "dovecot": 1}
    assert alert.facts["endpoints"] == ["127.0.0.1:10040", "127.0.0.1:10041"]
