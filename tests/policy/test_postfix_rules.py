import logging
import re
from ipaddress import ip_address

import pytest

from mailward.config.model import PostfixPolicySettings
from mailward.decisions.model import Action, Decision
from mailward.events import Disconnect, Service, UnknownRecipient
from mailward.policy.backend import MemoryBackend
from mailward.policy.postfix_rules import DUNNO, TOO_MANY_CONNECTIONS, PostfixPolicy

BAN = "421 4.7.0 Service unavailable, try again later"


def req(state: str, ip: str = "198.51.100.7", **extra: str) -> dict[str, str]:
    attrs = {"request": "smtpd_access_policy", "protocol_state": state, "client_address": ip}
    attrs.update(extra)
    return attrs


def make(**settings: object) -> tuple[PostfixPolicy, MemoryBackend, list[Decision]]:
    backend = MemoryBackend()
    out: list[Decision] = []
    core = PostfixPolicy(
        PostfixPolicySettings.model_validate(settings),
        backend,
        country=lambda ip: "DE" if str(ip).startswith("198.") else "CN",
        on_decisions=out.extend,
    )
    return core, backend, out


def test_default_answer_is_dunno_in_every_state() -> None:
    core, _, _ = make()
    for state in (
        "CONNECT",
        "EHLO",
        "HELO",
        "MAIL",
        "RCPT",
        "DATA",
        "END-OF-MESSAGE",
        "VRFY",
        "ETRN",
        "",
    ):
        assert core.decide(req(state), 0) == DUNNO


def test_banned_ip_and_prefix_get_421_at_connect_and_later() -> None:
    core, backend, _ = make()
    backend.apply(Decision(0, "203.0.113.0/24", Action.BAN, "manual"))
    assert core.decide(req("CONNECT", "203.0.113.9"), 1) == BAN
    assert core.decide(req("RCPT", "203.0.113.10"), 1) == BAN
    assert core.decide(req("CONNECT", "203.0.114.9"), 1) == DUNNO
    # ::ffff:-mapped form of a banned IPv4 address is the same client
    assert core.decide(req("CONNECT", "::ffff:203.0.113.9"), 1) == BAN


def test_missing_or_garbage_client_address_is_dunno_not_a_crash() -> None:
    core, _, _ = make()
    assert core.decide({"request": "smtpd_access_policy"}, 0) == DUNNO
    assert core.decide(req("CONNECT", "unknown[1.2.3.4]"), 0) == DUNNO


def test_simultaneous_connections_limit_uses_disconnect_events() -> None:
    core, _, _ = make(max_connections_per_client=2)
    ip = "192.0.2.33"
    assert core.decide(req("CONNECT", ip), 0) == DUNNO
    assert core.decide(req("CONNECT", ip), 0) == DUNNO
    assert core.decide(req("CONNECT", ip), 0) == TOO_MANY_CONNECTIONS
    assert core.decide(req("CONNECT", "192.0.2.34"), 0) == DUNNO
    for _ in range(2):
        core.observe(Disconnect(ts=1, service=Service.SUBMISSION, ip=ip_address(ip)), 1)
    assert core.decide(req("CONNECT", ip), 2) == DUNNO


def test_connection_limit_zero_means_off() -> None:
    core, _, _ = make(max_connections_per_client=0)
    for _ in range(100):
        assert core.decide(req("CONNECT"), 0) == DUNNO


def unknown(ip: str, rcpt: str, ts: float = 0) -> UnknownRecipient:
    return UnknownRecipient(ts=ts, service=Service.SMTP, ip=ip_address(ip), recipient=rcpt)


def test_unknown_recipients_per_client_ban_the_client() -> None:
    core, _, out = make(unknown_recipients_per_client=3, unknown_recipients_per_prefix=0)
    for name in ("a", "b", "b", "c"):  # "b" twice counts once: distinct recipients
        assert core.decide(req("RCPT", "192.0.2.5", recipient=f"{name}@x"), 0) == DUNNO
        core.observe(unknown("192.0.2.5", f"{name}@x"), 0)
    assert [(d.target, d.rule) for d in out] == [("192.0.2.5", "policy_enumeration_ip")]
    assert core.decide(req("RCPT", "192.0.2.5", recipient="alice@x"), 1) == BAN
    assert core.decide(req("CONNECT", "192.0.2.6"), 1) == DUNNO
    assert core.decide(req("CONNECT", "192.0.2.5"), 3601) == DUNNO  # expired


def test_unknown_recipients_per_prefix_ban_the_prefix() -> None:
    core, _, out = make(unknown_recipients_per_client=0, unknown_recipients_per_prefix=4)
    for i in range(4):
        core.observe(unknown(f"192.0.2.{10 + i}", f"user{i}@x"), 0)
    assert [(d.target, d.action) for d in out] == [("192.0.2.0/24", Action.BAN)]
    assert core.decide(req("CONNECT", "192.0.2.200"), 1) == BAN


def test_account_flagged_after_too_many_messages_then_deferred() -> None:
    core, _, out = make(account_max_messages=3)
    for i in range(3):
        a = req("DATA", sasl_username="alice", instance=f"i{i}", recipient_count="1")
        assert core.decide(a, i) == DUNNO
        assert core.decide(a, i) == DUNNO  # DATA and END-OF-MESSAGE of one message count once
    assert core.decide(req("DATA", sasl_username="alice", instance="i3"), 4).startswith(
        "DEFER 4.7.1"
    )
    assert [(d.target, d.action, d.rule) for d in out] == [
        ("user:alice", Action.PROTECT_USER, "policy_account_outbound")
    ]
    assert out[0].evidence["messages"] == 4
    # another account is untouched
    assert core.decide(req("DATA", sasl_username="bob", instance="j"), 4) == DUNNO


def test_account_flagged_for_recipients_ips_and_countries() -> None:
    core, _, out = make(account_max_recipients=2, compromised_action="hold")
    for r in ("a", "b", "c"):
        core.decide(req("RCPT", sasl_username="u1", instance="m", recipient=f"{r}@x"), 0)
    assert core.decide(
        req("RCPT", sasl_username="u1", instance="m", recipient="d@x"), 0
    ).startswith("HOLD")

    core, _, out = make(account_max_ips=2, account_max_countries=0)
    for i in range(3):
        core.decide(req("MAIL", f"198.51.100.{i}", sasl_username="u2"), i)
    assert out and out[0].evidence["ips"] == 3

    core, _, out = make(account_max_ips=0, account_max_countries=1)
    core.decide(req("MAIL", "198.51.100.1", sasl_username="u3"), 0)
    core.decide(req("MAIL", "203.0.113.1", sasl_username="u3"), 1)
    assert out and out[0].evidence["countries"] == 2
    # MAIL is not blocked by a flag (only RCPT/DATA are), so the client sees its real error
    assert core.decide(req("MAIL", "203.0.113.1", sasl_username="u3"), 2) == DUNNO


def test_warn_action_only_logs() -> None:
    core, _, _ = make(account_max_messages=1, compromised_action="warn")
    core.decide(req("DATA", sasl_username="x", instance="1"), 0)
    assert core.decide(req("DATA", sasl_username="x", instance="2"), 0).startswith("WARN")


def test_failing_decision_sink_does_not_break_the_answer() -> None:
    def boom(_: list[Decision]) -> None:
        raise RuntimeError("sink down")

    core = PostfixPolicy(
        PostfixPolicySettings(unknown_recipients_per_client=1), MemoryBackend(), on_decisions=boom
    )
    core.observe(unknown("192.0.2.1", "x@y"), 0)
    assert core.decide(req("CONNECT", "192.0.2.1"), 0) == BAN


def test_never_permits() -> None:
    core, _, _ = make()
    answers = {
        core.decide(req(s, sasl_username="u", instance="1"), 0) for s in ("CONNECT", "RCPT", "DATA")
    }
    assert not any(a.split()[0].upper() in ("OK", "RELAY") or a.isdigit() for a in answers)


def test_a_client_found_clear_is_refused_on_its_next_request_once_banned() -> None:
    # Clients found not refused are remembered (every request of a session names the same
    # client); any ban must end that at once, with the engine as with the memory backend.
    from mailward.config.model import Settings
    from mailward.detectors.engine import Engine

    for backend in (MemoryBackend(), Engine.from_settings(Settings())):
        core = PostfixPolicy(PostfixPolicySettings(), backend)
        for _ in range(3):
            assert core.decide(req("RCPT", "203.0.113.9"), 1) == DUNNO
            assert core.decide(req("RCPT", "203.0.114.9"), 1) == DUNNO
        backend.apply(Decision(1, "203.0.113.0/24", Action.BAN, "manual", until=100))
        assert core.decide(req("RCPT", "203.0.113.9"), 2).startswith("421 ")
        assert core.decide(req("RCPT", "203.0.114.9"), 2) == DUNNO
        # a refusal is not remembered: the ban running out lets the client through again
        assert core.decide(req("RCPT", "203.0.113.9"), 101) == DUNNO
        backend.apply(Decision(101, "203.0.114.9", Action.BAN, "manual"))
        assert core.decide(req("EHLO", "203.0.114.9"), 102).startswith("421 ")
        backend.apply(Decision(102, "203.0.114.9", Action.UNBAN, "manual"))
        assert core.decide(req("EHLO", "203.0.114.9"), 103) == DUNNO


def test_an_enumeration_block_refuses_a_client_found_clear_before() -> None:
    core, _, _ = make(unknown_recipients_per_client=2, unknown_recipients_per_prefix=0)
    assert core.decide(req("RCPT", "198.51.100.7"), 0) == DUNNO
    for rcpt in ("a@x", "b@x"):
        core.observe(unknown("198.51.100.7", rcpt), 1)
    assert core.decide(req("RCPT", "198.51.100.7"), 2) == BAN


def test_a_refused_client_is_logged_once_a_minute_not_once_per_attempt(
    caplog: pytest.LogCaptureFixture,
) -> None:
    core, backend, _ = make()
    backend.apply(Decision(0, "203.0.113.9", Action.BAN, "manual"))
    with caplog.at_level(logging.INFO, logger="mailward.policy.postfix_rules"):
        for t in range(30):
            assert core.decide(req("CONNECT", "203.0.113.9"), t) == BAN
        assert core.decide(req("CONNECT", "203.0.113.9"), 75) == BAN
    lines = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert len(lines) == 2
    assert "29 more refusals not logged since the last line" in lines[1]
    assert core.stats.refused == 31


def test_refusals_of_many_clients_share_ten_lines_a_second_and_every_one_is_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    core, backend, _ = make(max_connections_per_client=1)
    backend.apply(Decision(0, "203.0.113.0/24", Action.BAN, "manual"))
    with caplog.at_level(logging.INFO, logger="mailward.policy.postfix_rules"):
        for i in range(100):  # 100 banned clients in half a second
            assert core.decide(req("CONNECT", f"203.0.113.{i}"), 1000 + i / 200) == BAN
        for t in range(3):  # one client over its session limit, again and again
            core.decide(req("CONNECT", "198.51.100.7"), 1001 + t / 10)
        assert core.decide(req("CONNECT", "203.0.113.200"), 1002) == BAN
    lines = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert len(lines) == 7  # five for the bans' half second, one session limit, one at 1002
    held = [int(m) for line in lines for m in re.findall(r"\((\d+) more refusals", line)]
    assert len(lines) + sum(held) == core.stats.refused == 103


def test_per_client_memory_gives_the_cyclic_collector_nothing_to_scan() -> None:
    # Every full collection scans what it tracks; per-client state that it tracked made 26 ms
    # pauses at ~45,000 clients (docs/benchmarks.md). Tuples of plain values it stops tracking.
    import gc

    core, backend, _ = make()
    backend.apply(Decision(0, "203.0.113.0/24", Action.BAN, "manual", until=1000))
    for i in range(200):
        core.decide(req("CONNECT", f"198.51.{i // 100}.{i % 100}"), 1)
        core.decide(req("RCPT", f"203.0.113.{i}"), 1)
    gc.collect()
    assert len(core._known) == 400 and len(core.sessions._open) == 200
    assert not any(gc.is_tracked(v) for v in core._known.values())
    assert not any(gc.is_tracked(v) for v in core.sessions._open.values())
