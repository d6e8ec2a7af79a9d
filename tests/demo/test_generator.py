from __future__ import annotations

import io
import re
from datetime import UTC, datetime

from mailward.demo.generator import (
    ATTACKS,
    SCENARIOS,
    DemoConfig,
    DemoLog,
    generate,
)
from mailward.events import AuthFailure, AuthSuccess, UnknownRecipient

END = datetime(2026, 11, 21, tzinfo=UTC)
BSD = re.compile(r"^[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d mx1 [\w/-]+(\[\d+\])?: ")
ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}\+00:00 mx1 [\w/-]+(\[\d+\])?: ")


def _lines(**kw: object) -> list[str]:
    return list(DemoLog(DemoConfig(end=END, **kw)))  # type: ignore[arg-type]


def test_same_seed_same_log_other_seed_other_log() -> None:
    a = _lines(lines=5000, seed=3)
    assert a == _lines(lines=5000, seed=3)
    assert a != _lines(lines=5000, seed=4)
    assert len(a) == 5000


def test_lines_are_syslog_shaped_and_in_time_order() -> None:
    lines = _lines(lines=20_000, seed=1, format="iso")
    assert all(ISO.match(line) for line in lines)
    stamps = [line[:26] for line in lines]
    assert stamps == sorted(stamps)
    bsd = _lines(lines=3000, seed=1)
    assert all(BSD.match(line) for line in bsd)


def test_mixed_format_switches_once_from_bsd_to_iso() -> None:
    lines = _lines(lines=40_000, seed=2, format="mixed", days=10)
    kinds = ["iso" if ISO.match(x) else "bsd" if BSD.match(x) else "?" for x in lines]
    assert "?" not in kinds
    first_iso = kinds.index("iso")
    assert "bsd" not in kinds[first_iso:]
    assert first_iso > 0


def test_never_writes_past_the_end_even_when_asked_for_more_lines() -> None:
    # Without the attack traffic the calibrated volume is not reached before the end.
    quiet = frozenset({"users"})
    log = DemoLog(DemoConfig(lines=20_000, days=2, end=END, scenarios=quiet))
    lines = list(log)
    last = lines[-1]
    assert log.truth.lines < 20_000
    assert last.startswith("Nov 20 2")


def test_truth_counts_match_the_typed_events() -> None:
    cfg = DemoConfig(lines=60_000, seed=5, end=END)
    log = DemoLog(cfg)
    events = list(log.events())
    fails = sum(e.attempts for e in events if isinstance(e, AuthFailure))
    assert fails == log.truth.attempts
    assert sum(isinstance(e, UnknownRecipient) for e in events) == log.truth.probes
    assert sum(isinstance(e, AuthSuccess) for e in events) == log.truth.successes
    assert sum(log.truth.attempts_by_scenario.values()) == log.truth.attempts
    # The same config replayed as text carries the same ground truth.
    text = DemoLog(cfg)
    assert sum(1 for _ in text) == 60_000
    assert text.truth.attempts == log.truth.attempts


def test_spike_incident_is_two_hosts_about_a_hundred_each_within_forty_minutes() -> None:
    log = DemoLog(DemoConfig(lines=150_000, seed=7, end=END))
    per_ip: dict[str, list[float]] = {}
    for e in log.events():
        if isinstance(e, AuthFailure):
            per_ip.setdefault(str(e.ip), []).append(e.ts)
    spike = next(i for i in log.truth.incidents if i.scenario == "spike")
    assert len(spike.ips) == 2
    assert log.truth.attempts_by_scenario["spike"] == 206
    for ip in spike.ips:
        ts = per_ip[ip]
        assert len(ts) == 103
        assert max(ts) - min(ts) <= 40 * 60


def test_each_attack_scenario_leaves_its_mark() -> None:
    log = DemoLog(DemoConfig(lines=150_000, seed=7, end=END))
    raw = "\n".join(log)
    for scen in ("steady", "scanners", "spike", "botnet", "sweep", "ipv6"):
        assert log.truth.attempts_by_scenario.get(scen, 0) > 0, scen
    assert log.truth.probes > 300  # enumeration
    assert "User unknown in virtual mailbox table" in raw
    assert "SASL LOGIN authentication failed" in raw
    assert "imap-login: Disconnected" in raw or "imap-login: Aborted" in raw
    assert "PREGREET" in raw and "postfix/postscreen" in raw
    assert "status=sent" in raw  # MX deliveries
    assert {i.scenario for i in log.truth.incidents} >= {"spike", "botnet", "sweep", "ipv6"}


def test_quiet_config_has_no_scripted_attacks() -> None:
    log = DemoLog(DemoConfig(lines=20_000, seed=1, end=END, scenarios=frozenset({"users"})))
    for _ in log:
        pass
    assert set(log.truth.attempts_by_scenario) <= {"users"}
    assert log.truth.incidents == []
    assert ATTACKS == frozenset(SCENARIOS) - {"users"}


def test_only_synthetic_addresses() -> None:
    addr = re.compile(r"(?<![\d.])(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})(?![\d.])")
    allowed = ("198.18.", "198.19.", "192.0.2.", "198.51.100.", "203.0.113.", "127.0.0.")
    for line in _lines(lines=30_000, seed=9):
        for m in addr.finditer(line):
            text = m.group(0)
            assert text.startswith(allowed), line
        for v6 in re.findall(r"\b[0-9a-f]{1,4}(?::[0-9a-f]{0,4}){2,7}\b", line):
            if "::" in v6 or v6.count(":") >= 4:
                assert v6.startswith("2001:db8:"), line


def test_generate_writes_a_file_and_returns_truth(tmp_path: object) -> None:
    buf = io.StringIO()
    truth = generate(buf, DemoConfig(lines=1234, seed=1, end=END))
    assert buf.getvalue().count("\n") == 1234 == truth.lines
    assert truth.to_json()["lines"] == 1234
