"""Conformance against third-party corpora in ../shared/data (skipped when absent).

Each corpus carries its own expectations: the captured-mailstack README (what each 127.0.0.x
client did), CrowdSec hub parser.assert files, sshguard's attack cases, whyscream's grok cases,
digineo's counters and the postfix-logsums line counts.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.conftest import SHARED_DATA, shared_file

from mailward.config.model import ParsingSettings
from mailward.events import (
    AuthFailure,
    AuthSuccess,
    Disconnect,
    Event,
    LostConnection,
    ProtocolViolation,
    SmtpReject,
    UnknownRecipient,
)
from mailward.parsers import LineParser, read_events

pytestmark = pytest.mark.shared

NOW = 1795737600.0  # 2026-11-28: the captured logs are from 2026-11-21
UTC = ParsingSettings(timezone="UTC")
WEAK = ParsingSettings(timezone="UTC", weak_signals=True)


def _attempts_by_ip(events: list[Event]) -> Counter[str]:
    c: Counter[str] = Counter()
    for e in events:
        if isinstance(e, AuthFailure):
            c[str(e.ip)] += e.attempts
    return c


# -- captured-mailstack -----------------------------------------------------------------------

CAPTURED = "captured-mailstack/"


def test_captured_postfix_lines() -> None:
    path = shared_file(CAPTURED + "captured-postfix.log")
    parser = LineParser(UTC, now=NOW)
    events = [e for line in path.read_text().splitlines() if (e := parser.parse(line))]
    fails = {(str(e.ip), e.username) for e in events if isinstance(e, AuthFailure)}
    assert fails == {
        ("127.0.0.1", "alice"),
        ("127.0.0.1", "bob"),
        ("127.0.0.1", "nosuchuser"),
        ("127.0.0.21", "bob"),
        ("127.0.0.22", "nosuchuser"),
        ("127.0.0.23", "alice"),
        ("127.0.0.55", "blockme"),
        ("127.0.0.75", "bob"),
    }
    rcpt = [e for e in events if isinstance(e, UnknownRecipient)]
    assert [(str(e.ip), e.recipient) for e in rcpt] == [
        ("127.0.0.41", "nosuchuser@mail.test.invalid")
    ]
    ok = {(str(e.ip), e.username) for e in events if isinstance(e, AuthSuccess)}
    assert ok == {("127.0.0.43", "bob"), ("127.0.0.65", "bob")}
    assert [e.kind for e in events if str(e.ip) == "127.0.0.42"] == [
        "connection",
        "smtp_reject",
        "disconnect",
    ]
    rejects = Counter(e.category for e in events if isinstance(e, SmtpReject))
    # .42 relay, .66/.67/.68(x2) policy refusals, .69 policy server down (451)
    assert rejects == {
        "relay_denied": 1,
        "recipient_rejected": 1,
        "data_rejected": 1,
        "client_rejected": 3,
    }
    assert parser.stats.by_kind["auth_error"] == 1
    assert all(e.origin is None or e.origin.line is None for e in events)


def test_captured_stack_correlated() -> None:
    postfix = shared_file(CAPTURED + "captured-postfix.log")
    logpath = shared_file(CAPTURED + "captured-dovecot-logpath.log")
    events = list(read_events([str(postfix), str(logpath)], UTC, now=NOW))
    attempts = _attempts_by_ip(events)
    # .1: three SMTP AUTH failures (the fourth hit "Connection lost to authentication server");
    # SMTP AUTH through Dovecot SASL counted once although both logs show it.
    assert attempts == {
        "127.0.0.1": 3,
        "127.0.0.21": 1,
        "127.0.0.22": 1,
        "127.0.0.23": 1,
        "127.0.0.31": 1,
        "127.0.0.32": 1,
        "127.0.0.52": 1,
        "127.0.0.53": 1,
        "127.0.0.55": 1,
        "127.0.0.75": 1,
    }
    reasons = {str(e.ip): e.reason.value for e in events if isinstance(e, AuthFailure)}
    assert reasons["127.0.0.21"] == "bad_password"
    assert reasons["127.0.0.22"] == "unknown_user"
    assert reasons["127.0.0.32"] == "unknown_user"
    assert reasons["127.0.0.53"] == "policy_reject"
    assert reasons["127.0.0.55"] == "policy_reject"
    ok = sorted(str(e.ip) for e in events if isinstance(e, AuthSuccess))
    assert ok == sorted(
        ["127.0.0.24", "127.0.0.25", "127.0.0.43", "127.0.0.65", "127.0.0.56"]
        + ["127.0.0.33", "127.0.0.51", "127.0.0.54", "127.0.0.57"]
    )


def test_captured_dovecot_syslog() -> None:
    path = shared_file(CAPTURED + "captured-dovecot-syslog.log")
    events = list(read_events([str(path)], UTC, now=NOW))
    assert _attempts_by_ip(events) == {
        "127.0.0.71": 1,
        "127.0.0.72": 1,
        "127.0.0.74": 1,
        "127.0.0.76": 1,
        "127.0.0.77": 1,
        "127.0.0.78": 1,
        "127.0.0.79": 3,
    }
    users = {str(e.ip): e.username for e in events if isinstance(e, AuthFailure)}
    assert users["127.0.0.72"] == "nosuchuser" and users["127.0.0.79"] == "alice"
    assert [str(e.ip) for e in events if isinstance(e, AuthSuccess)] == ["127.0.0.73"]


# -- CrowdSec hub -----------------------------------------------------------------------------

_ASSERT = re.compile(
    r'results\["s01-parse"\]\["crowdsecurity/(postfix|dovecot)-logs"\]\[(\d+)\]\.'
    r'(?:Evt\.(Meta|Parsed)\["(\w+)"\] == "(.*)"|Success == (true|false))'
)


def _crowdsec_cases() -> list[Path]:
    root = SHARED_DATA / "crowdsec-hub" / ".tests"
    if not root.is_dir():
        return []
    return sorted(
        p
        for p in root.iterdir()
        if (p / "parser.assert").exists()
        and re.search(r"crowdsecurity/(postfix|dovecot)-logs", (p / "parser.assert").read_text())
    )


@pytest.mark.parametrize("case", _crowdsec_cases(), ids=lambda p: p.name)
def test_crowdsec_parser_asserts(case: Path) -> None:
    config = yaml.safe_load((case / "config.yaml").read_text())
    log = case / Path(config["log_file"]).name
    lines = log.read_text(errors="replace").splitlines()
    expected: dict[int, dict[str, Any]] = defaultdict(dict)
    for raw in (case / "parser.assert").read_text().splitlines():
        m = _ASSERT.match(raw)
        if m is None:
            continue
        i = int(m[2])
        if m[6] is not None:
            expected[i]["success"] = m[6] == "true"
        else:
            expected[i][m[4]] = m[5]
    assert expected
    parser = LineParser(WEAK, now=NOW)
    claimed = 0
    for i, fields in expected.items():
        event = parser.parse(lines[i])
        if not fields.get("success", True):
            assert event is None, f"{case.name}[{i}] CrowdSec rejects it, we claim {event}"
            continue
        if event is None:
            continue
        claimed += 1
        ip = fields.get("source_ip") or fields.get("dovecot_remote_ip")
        if ip is not None:
            assert str(event.ip) == ip, f"{case.name}[{i}]: {lines[i]}"
        user = fields.get("dovecot_user")
        if user is not None:
            assert getattr(event, "username", None) == user, f"{case.name}[{i}]"
        if fields.get("dovecot_login_result") == "auth_failed":
            assert isinstance(event, AuthFailure), f"{case.name}[{i}]"
    assert claimed > 0


def test_crowdsec_recall_on_login_lines() -> None:
    """Every CrowdSec-parsed Postfix SASL / Dovecot auth line of the hub tests is ours too."""
    cases = [c for c in _crowdsec_cases() if c.name in ("postfix-logs", "dovecot-logs")]
    if not cases:
        pytest.skip("crowdsec-hub absent")
    parser = LineParser(WEAK, now=NOW)
    missed = []
    for case in cases:
        for line in (case / f"{case.name}.log").read_text().splitlines():
            login_line = "authentication failed" in line or "dovecot" in line
            if login_line and parser.parse(line) is None:
                missed.append(line)
    assert not missed


# -- sshguard ---------------------------------------------------------------------------------


def _sshguard_mail_cases() -> list[tuple[str, str | None]]:
    path = SHARED_DATA / "sshguard" / "src" / "parser" / "tests.txt"
    if not path.exists():
        return []
    lines = path.read_text().splitlines()
    cases: list[tuple[str, str | None]] = []
    section = ""
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("# ") and "{{{" in line:
            section = line[2:].split()[0]
            i += 1
            continue
        if section in ("postfix", "dovecot") and line and not line.startswith(("#", "M")):
            result = lines[i + 1]
            cases.append((line, None if result == "*" else result.split()[1]))
            i += 2
            continue
        i += 1
    return cases


# Cases sshguard counts that mailward does not claim, each for a stated reason.
SSHGUARD_NOT_CLAIMED = {
    "pam_unix(dovecot:auth)": "PAM's own log line, not Dovecot's; Dovecot logs the attempt itself",
    "postgrey[": "greylisting is not an attack signal",
    "DNSBL rank": "a DNSBL listing is reputation, not behaviour",
    "lost connection after CONNECT": "a weak signal, claimed only with parsing.weak_signals",
}


def _program_for(message: str) -> str:
    if message.startswith(("imap-login", "pop3-login", "submission-login")):
        return "dovecot"
    return "postfix/smtpd"


def test_sshguard_mail_cases() -> None:
    cases = _sshguard_mail_cases()
    if not cases:
        pytest.skip("sshguard absent")
    parser = LineParser(UTC, now=NOW)
    claimed = 0
    for line, ip in cases:
        event = parser.parse(line)
        if event is None and parser.last_rule is None:
            message = re.sub(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d ", "", line)
            event = parser.parse_message(_program_for(message), message)
        reason = next((why for key, why in SSHGUARD_NOT_CLAIMED.items() if key in line), None)
        if ip is None:
            assert not isinstance(event, (AuthFailure, ProtocolViolation, LostConnection)), line
            continue
        if reason is not None:
            assert event is None, f"{line} is listed as not claimed ({reason})"
            continue
        assert isinstance(event, (AuthFailure, ProtocolViolation, LostConnection)), line
        assert str(event.ip) == ip, line
        claimed += 1
    assert claimed == 14


# -- whyscream/postfix-grok-patterns ----------------------------------------------------------

GROK_PROGRAMS = {
    "POSTFIX_SMTPD": "postfix/smtpd",
    "POSTFIX_POSTSCREEN": "postfix/postscreen",
    "POSTFIX_ANVIL": "postfix/anvil",
}


def _grok_cases() -> list[Path]:
    root = SHARED_DATA / "postfix-grok-patterns" / "test"
    return sorted(root.glob("*.yaml")) if root.is_dir() else []


def test_grok_client_addresses() -> None:
    cases = _grok_cases()
    if not cases:
        pytest.skip("postfix-grok-patterns absent")
    parser = LineParser(WEAK, now=NOW)
    claimed = 0
    for path in cases:
        case = yaml.safe_load(path.read_text())
        pattern = str(case["pattern"]).strip('^$"%{}')
        program = GROK_PROGRAMS.get(pattern)
        if program is None:
            continue
        event = parser.parse_message(program, str(case["data"]))
        if event is None:
            continue
        claimed += 1
        expected = (case.get("results") or {}).get("postfix_client_ip")
        if expected is not None and event.ip is not None:
            assert str(event.ip) == str(expected), path.name
    assert claimed == 33


# -- digineo postfix_exporter ----------------------------------------------------------------


def test_digineo_sasl_failure_count() -> None:
    log = shared_file("digineo-postfix_exporter/testdata/mail.log")
    metrics = shared_file("digineo-postfix_exporter/testdata/mail.metrics").read_text()
    m = re.search(
        r"^postfix_smtpd_sasl_authentication_failures_total\{[^}]*\} (\d+)", metrics, re.M
    )
    assert m is not None
    events = list(read_events([str(log)], UTC, now=NOW))
    sasl = [e for e in events if isinstance(e, AuthFailure) and not e.summary]
    assert len(sasl) == int(m[1])
    assert str(sasl[0].ip) == "192.168.1.2"
    ok = [e for e in events if isinstance(e, AuthSuccess)]
    assert {e.username for e in ok} == {"user@domain", "out@example.org"}


# -- postfix-logsums (69,861 real lines) ------------------------------------------------------


@pytest.mark.slow
def test_postfix_logsums_counts() -> None:
    log = shared_file("postfix-logsums/test/mail.log")
    stream = read_events([str(log)], UTC, now=NOW)
    events = list(stream)
    stats = stream.stats
    assert stats.lines == 69861
    assert stats.recognised + stats.ignored + stats.unrecognised == stats.lines
    failed = [e for e in events if isinstance(e, Disconnect) and e.auth_total - e.auth_ok > 0]
    assert len(failed) == 23 and all((e.auth_ok, e.auth_total) == (0, 1) for e in failed)
    assert sum(e.attempts for e in events if isinstance(e, AuthFailure)) == 23
    assert stats.by_rule["postfix.sasl_failed"] == 0
    assert stats.by_rule["postscreen.pregreet"] == 3872
    assert stats.by_rule["postfix.non_smtp_command"] == 8
    assert stats.by_kind["unknown_recipient"] == 0
    # The README's 116 NOQUEUE rejects: 90 DNSBL, 19 + 3 sender, 4 HELO.
    rejects = Counter(e.category for e in events if isinstance(e, SmtpReject))
    assert rejects == {"dnsbl": 90, "sender_rejected": 22, "helo_rejected": 4}


# -- recall against fail2ban's stock filters ------------------------------------------------

F2B_CASES = [
    ("captured-mailstack/captured-postfix.log", "postfix[mode=aggressive]"),
    ("captured-mailstack/captured-dovecot-logpath.log", "dovecot"),
    ("captured-mailstack/captured-dovecot-syslog.log", "dovecot"),
    ("crowdsec-hub/.tests/dovecot-logs/dovecot-logs.log", "dovecot"),
    ("crowdsec-hub/.tests/postfix-logs/postfix-logs.log", "postfix[mode=aggressive]"),
    ("digineo-postfix_exporter/testdata/mail.log", "postfix[mode=aggressive]"),
]


@pytest.mark.parametrize(
    "relpath, jail_filter", F2B_CASES, ids=[c[0].split("/")[-1] for c in F2B_CASES]
)
def test_recall_at_least_fail2ban(relpath: str, jail_filter: str) -> None:
    """Every line fail2ban's stock filter matches is attack evidence for mailward too (with
    weak signals on; fail2ban counts `lost connection after CONNECT` as an attack)."""
    import shutil
    import subprocess

    path = shared_file(relpath)
    exe = shutil.which("fail2ban-regex")
    if exe is None:
        pytest.skip("fail2ban-regex not installed")
    out = subprocess.run(
        [exe, "--usedns", "no", "--print-all-matched", str(path), jail_filter],
        capture_output=True,
        text=True,
        errors="replace",
        timeout=120,
        check=True,
    ).stdout
    section = (
        out.split("Matched line(s):", 1)[1].split("`-", 1)[0] if "Matched line(s):" in out else ""
    )
    matched = [line[3:] for line in section.splitlines() if line.startswith("|  ")]
    assert matched, out[-500:]
    parser = LineParser(WEAK, now=NOW)
    missed = []
    for line in matched:
        event = parser.parse(line)
        evidence = event is not None and event.kind not in ("connection", "auth_success")
        if isinstance(event, Disconnect):
            evidence = event.auth_total > event.auth_ok
        if not evidence:
            missed.append(line)
    assert not missed
