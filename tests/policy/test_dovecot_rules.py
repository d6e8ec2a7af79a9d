import json
import logging
import re
from ipaddress import ip_address

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailward.config.model import DovecotPolicySettings
from mailward.decisions.model import Action, Decision
from mailward.errors import ProtocolError
from mailward.events import AuthFailure, AuthSuccess, Event, FailReason, Service
from mailward.policy.backend import MemoryBackend
from mailward.policy.dovecot_rules import AuthRequest, DovecotPolicy, client_of


def body(remote: str = "198.51.100.7", login: str = "bob", **extra: object) -> dict[str, object]:
    b: dict[str, object] = {
        "device_id": "",
        "login": login,
        "protocol": "imap",
        "pwhash": "0a3f",
        "remote": remote,
        "session_id": "s1",
        "tls": False,
    }
    b.update(extra)
    return b


def make(
    backend: MemoryBackend | None = None, **settings: object
) -> tuple[DovecotPolicy, list[Event], list[Decision]]:
    events: list[Event] = []
    decisions: list[Decision] = []
    core = DovecotPolicy(
        DovecotPolicySettings.model_validate(settings),
        backend or MemoryBackend(),
        feed=events.append,
        on_decisions=decisions.extend,
    )
    return core, events, decisions


def test_auth_request_parses_dovecot_23_and_24_bodies() -> None:
    r = AuthRequest.from_json(body(success=True, policy_reject=False, remote="::ffff:192.0.2.1"))
    assert (
        r.ip == ip_address("192.0.2.1") and r.login == "bob" and r.success and not r.policy_reject
    )
    r = AuthRequest.from_json(body(fail_type="policy"))
    assert r.policy_reject
    r = AuthRequest.from_json({"remote": "", "login": None})
    assert r.ip is None and r.login is None


@pytest.mark.parametrize(
    "bad",
    [
        [],
        "x",
        3,
        {"remote": "not-an-ip"},
        {"login": 5},
        {"success": "yes"},
        {"policy_reject": 1},
        {"success": None},
        {"protocol": {"imap": 1}},
        {"remote": "1.2.3.4", "pwhash": []},
    ],
)
def test_auth_request_rejects_malformed_bodies(bad: object) -> None:
    with pytest.raises(ProtocolError):
        AuthRequest.from_json(bad)


def test_allow_answers_zero_minus_one_and_tarpit() -> None:
    backend = MemoryBackend(tarpit_after=1, ban_after=100)
    core, _, _ = make(backend, max_tarpit=8, max_tarpit_smtp=2)
    req = AuthRequest.from_json(body())
    assert core.allow(req, 0) == 0
    for t in range(4):
        backend.observe(AuthFailure(ts=t, service=Service.IMAP, ip=req.ip, username="bob"), t)
    assert core.allow(req, 5) == 8  # 1 << 3, capped at 8
    smtp = AuthRequest.from_json(body(protocol="smtp"))
    assert core.allow(smtp, 5) == 2  # a tarpit holds an smtpd process: short for smtp
    backend.apply(Decision(6, "198.51.100.0/24", Action.BAN, "manual"))
    assert core.allow(req, 7) == -1
    assert core.allow(AuthRequest.from_json(body(remote="")), 7) == 0


def test_allow_refuses_new_ip_on_protected_user_but_not_its_owner() -> None:
    backend = MemoryBackend()
    backend.observe(
        AuthSuccess(ts=0, service=Service.IMAP, ip=ip_address("198.51.100.1"), username="bob"), 0
    )
    backend.apply(Decision(1, "user:bob", Action.PROTECT_USER, "manual", until=1000))
    core, _, _ = make(backend)
    assert core.allow(AuthRequest.from_json(body(remote="203.0.113.9")), 2) == -1
    assert core.allow(AuthRequest.from_json(body(remote="198.51.100.1")), 2) == 0
    assert core.allow(AuthRequest.from_json(body(remote="203.0.113.9", login="alice")), 2) == 0


def test_report_feeds_success_and_failure_events() -> None:
    core, events, _ = make()
    core.report(AuthRequest.from_json(body(success=True)), 10)
    core.report(
        AuthRequest.from_json(
            body(success=False, fail_type="account", protocol="smtp", login="nobody")
        ),
        11,
    )
    core.report(AuthRequest.from_json(body(success=False, pwhash="0001")), 12)
    s, f1, f2 = events
    assert isinstance(s, AuthSuccess) and s.username == "bob" and s.service is Service.IMAP
    assert s.origin is not None and s.origin.source == "dovecot-policy" and s.ts == 10
    assert isinstance(f1, AuthFailure) and f1.reason is FailReason.UNKNOWN_USER
    assert f1.service is Service.SUBMISSION  # SMTP AUTH through Dovecot SASL
    assert isinstance(f2, AuthFailure) and f2.reason is FailReason.UNSPECIFIED  # 2.3: no fail_type


def test_policy_refused_attempts_are_not_counted_again() -> None:
    core, events, _ = make()
    core.report(AuthRequest.from_json(body(success=False, policy_reject=True)), 1)
    core.report(AuthRequest.from_json(body(success=False, fail_type="policy")), 2)
    assert events == [] and core.stats.policy_rejects == 2


def test_repeated_wrong_password_is_a_stale_client_not_a_guess() -> None:
    core, events, _ = make()
    for t in range(5):
        core.report(AuthRequest.from_json(body(success=False, pwhash="0757")), t)
    assert len(events) == 1 and core.stats.repeats == 4
    assert core.distinct_pwhash(5, ip=ip_address("198.51.100.7")) == 1
    core2, events2, _ = make(skip_repeated_pwhash=False)
    for t in range(5):
        core2.report(AuthRequest.from_json(body(success=False, pwhash="0757")), t)
    assert len(events2) == 5


def test_distinct_pwhash_per_ip_bans_and_per_login_protects() -> None:
    core, _, decisions = make(pwhash_per_ip=3, pwhash_per_login=4)
    for i in range(3):
        core.report(AuthRequest.from_json(body(success=False, pwhash=f"{i:04x}")), i)
    assert [(d.target, d.rule) for d in decisions] == [("198.51.100.7", "policy_pwhash_ip")]
    assert core.allow(AuthRequest.from_json(body()), 4) == -1
    assert core.allow(AuthRequest.from_json(body()), 4000) == 0  # ban over
    core.report(AuthRequest.from_json(body(remote="192.0.2.1", success=False, pwhash="ffff")), 5)
    assert decisions[-1].target == "user:bob" and decisions[-1].action is Action.PROTECT_USER
    assert core.distinct_pwhash(5, login="bob") == 4


def test_default_feed_observes_the_backend_and_forwards_its_decisions() -> None:
    backend = MemoryBackend(ban_after=2)
    decisions: list[Decision] = []
    core = DovecotPolicy(DovecotPolicySettings(), backend, on_decisions=decisions.extend)
    for i in range(2):
        core.report(AuthRequest.from_json(body(success=False, pwhash=f"{i:04x}")), i)
    assert [d.rule for d in decisions] == ["memory_failures"]
    assert core.allow(AuthRequest.from_json(body()), 3) == -1


def test_a_refused_client_is_logged_once_a_minute_not_once_per_attempt(
    caplog: pytest.LogCaptureFixture,
) -> None:
    backend = MemoryBackend()
    core, _, _ = make(backend)
    backend.apply(Decision(0, "198.51.100.0/24", Action.BAN, "manual"))
    req = AuthRequest.from_json(body())
    with caplog.at_level(logging.INFO, logger="mailward.policy.dovecot_rules"):
        for t in range(50):
            assert core.allow(req, t) == -1
        assert core.allow(req, 61) == -1
    lines = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert len(lines) == 2
    assert "49 more refusals not logged since the last line" in lines[1]
    assert core.stats.refused == 51  # every refusal still counts


def test_a_botnet_of_refused_clients_writes_ten_lines_a_second_not_one_per_client(
    caplog: pytest.LogCaptureFixture,
) -> None:
    backend = MemoryBackend()
    core, _, _ = make(backend)
    backend.apply(Decision(0, "198.51.100.0/24", Action.BAN, "manual"))
    with caplog.at_level(logging.INFO, logger="mailward.policy.dovecot_rules"):
        for i in range(200):  # 200 clients in one second
            req = AuthRequest.from_json(body(remote=f"198.51.100.{i}"))
            assert core.allow(req, 1000 + i / 200) == -1
        assert core.allow(AuthRequest.from_json(body(remote="198.51.100.250")), 1002) == -1
    lines = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert len(lines) == 11
    # each line says how many went unsaid since the one before: together, every refusal
    held = [int(m) for line in lines for m in re.findall(r"\((\d+) more refusals", line)]
    assert len(lines) + sum(held) == core.stats.refused == 201


def test_remembered_clients_answer_as_the_engine_would_over_a_random_stream() -> None:
    """``allow`` remembers what the bans say of each client until the ban state moves, and asks
    the engine only for what moves with every event. Against a fresh ``Engine.check`` (plus the
    core's own password-hash bans) at every step of a random stream of reports, manual bans with
    an end, unbans and expiries, the answers are the same."""
    import math
    import random
    from ipaddress import ip_network

    from mailward.config.model import DetectorSettings
    from mailward.detectors.engine import Engine

    rnd = random.Random(5)
    engine = Engine(
        DetectorSettings.model_validate({"distributed": {"user_sources": 3}}),
        server_addresses=[ip_network("192.0.2.25/32")],  # exempt: its answer is final
    )
    settings = DovecotPolicySettings.model_validate(
        {"pwhash_per_ip": 5, "pwhash_window": 86400, "max_tarpit": 5, "max_tarpit_smtp": 2}
    )
    core = DovecotPolicy(settings, engine)  # reports observed by the engine itself
    ips = [f"198.51.{n}.{h}" for n in range(3) for h in range(1, 12)]
    ips += ["2001:db8::1", "2001:db8:0:1::9", "192.0.2.25", "::ffff:198.51.0.3"]
    users = ["alice", "bob", "carol", "Bob"]
    now = 1_763_700_000.0
    seen: dict[int, int] = {}
    for step in range(4000):
        now += rnd.choice([0.5, 2, 10, 60, 300])
        pick = rnd.random()
        if pick < 0.45:
            ok = rnd.random() < 0.3
            b = body(rnd.choice(ips), rnd.choice(users), success=ok, pwhash=f"{rnd.randrange(9)}")
            core.report(AuthRequest.from_json(b), now)
        elif pick < 0.5:
            net = f"198.51.{rnd.randrange(3)}.0/24"
            engine.apply(
                Decision(now, net, Action.BAN, "manual", until=now + rnd.choice([30, 900]))
            )
        elif pick < 0.53:
            engine.apply(Decision(now, f"198.51.{rnd.randrange(3)}.0/24", Action.UNBAN, "manual"))
        elif pick < 0.56:
            engine.expire(now)
        for _ in range(3):
            remote, login = rnd.choice(ips), rnd.choice([*users, None])
            protocol = rnd.choice(["imap", "smtp"])
            req = AuthRequest.from_json(body(remote, login, protocol=protocol))
            assert req.ip is not None
            if core.blocked.match(req.ip, now) is not None:
                want = -1
            else:
                verdict = engine.check(req.ip, login, now)
                cap = 2 if protocol == "smtp" else 5
                want = (
                    -1
                    if not verdict.allow
                    else min(cap, math.ceil(verdict.tarpit))
                    if verdict.tarpit > 0
                    else 0
                )
            assert core.allow(req, now) == want, (step, remote, login)
            seen[max(-1, min(1, want))] = seen.get(max(-1, min(1, want)), 0) + 1
    assert seen[-1] > 300 and seen[0] > 300 and seen[1] > 30  # every kind of answer came up
    assert core.blocked.changes > 0  # and the core's own bans moved the remembered answers


def test_the_address_is_kept_as_its_key_and_rebuilt_on_demand() -> None:
    from mailward.events import ip_key

    for text in ("198.51.100.7", "::ffff:198.51.100.7", "2001:db8::1"):
        req = AuthRequest.from_json(body(text))
        assert req.ip is not None and req.key == ip_key(req.ip)
    assert req.ip == ip_address("2001:db8::1")
    assert AuthRequest.from_json(body("")).key == -1


def test_a_ban_forgets_only_the_clients_it_covers() -> None:
    """What ``allow`` remembers survives a ban elsewhere (a botnet's prefix bans land when the
    load is highest), and a client inside the new ban is refused at once."""
    from ipaddress import ip_network

    from mailward.config.model import DetectorSettings
    from mailward.detectors.engine import Engine

    engine = Engine(DetectorSettings(), server_addresses=[ip_network("192.0.2.25/32")])
    core = DovecotPolicy(DovecotPolicySettings(), engine)
    inside, outside = "198.51.100.7", "203.0.113.9"
    v6_inside, v6_outside = "2001:db8::7", "2001:db8:1::7"
    for remote in (inside, outside, v6_inside, v6_outside):
        assert core.allow(AuthRequest.from_json(body(remote)), 1) == 0
    remembered = dict(core._known)
    engine.apply(Decision(2, "198.51.100.0/24", Action.BAN, "manual", until=1000))
    engine.apply(Decision(2, "2001:db8::/64", Action.BAN, "manual", until=1000))
    assert core.allow(AuthRequest.from_json(body(outside)), 3) == 0
    kept = {k for k in remembered if k in core._known}
    assert kept == {AuthRequest.from_json(body(r)).key for r in (outside, v6_outside)}
    assert core.allow(AuthRequest.from_json(body(inside)), 3) == -1
    assert core.allow(AuthRequest.from_json(body(v6_inside)), 3) == -1
    assert core.allow(AuthRequest.from_json(body(v6_outside)), 3) == 0
    engine.apply(Decision(4, "198.51.100.0/24", Action.UNBAN, "manual"))  # lifted: all go
    assert core.allow(AuthRequest.from_json(body(inside)), 5) == 0


@pytest.mark.parametrize("crowd", [0, 300])  # few remembered: a scan; many: a lookup per address
def test_forgetting_a_ban_takes_its_edges_and_nothing_past_them(crowd: int) -> None:
    from ipaddress import ip_network

    from mailward.config.model import DetectorSettings
    from mailward.detectors.engine import Engine

    engine = Engine(DetectorSettings(), server_addresses=[ip_network("192.0.2.25/32")])
    core = DovecotPolicy(DovecotPolicySettings(), engine)
    edges_in = ["198.51.100.0", "198.51.100.255", "2001:db8::", "2001:db8::ffff:ffff:ffff:ffff"]
    edges_out = ["198.51.99.255", "198.51.101.0", "2001:db7:ffff:ffff:ffff:ffff:ffff:ffff"]
    edges_out += ["2001:db8:0:1::"]
    others = [f"203.0.{i >> 8}.{i & 255}" for i in range(crowd)]
    for remote in edges_in + edges_out + others:
        assert core.allow(AuthRequest.from_json(body(remote)), 1) == 0
    engine.apply(Decision(2, "198.51.100.0/24", Action.BAN, "manual", until=1000))
    engine.apply(Decision(2, "2001:db8::/64", Action.BAN, "manual", until=1000))
    core.allow(AuthRequest.from_json(body(others[0] if others else "203.0.113.1")), 3)
    for remote in edges_out + others:
        assert AuthRequest.from_json(body(remote)).key in core._known, remote
    for remote in edges_in:
        assert AuthRequest.from_json(body(remote)).key not in core._known, remote
        assert core.allow(AuthRequest.from_json(body(remote)), 3) == -1


_FIELD = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 3),
    st.sampled_from(["", "imap", "IMAP", "Smtp", "pop3", "sieve", "198.51.100.7", "::1", "x"]),
    st.text(max_size=8),
)


@given(
    st.dictionaries(
        st.sampled_from(
            ["remote", "login", "protocol", "pwhash", "success", "fail_type", "tls", "x"]
        ),
        _FIELD,
        max_size=6,
    )
)
def test_allow_reads_a_body_as_the_whole_request_would_be_read(fields: dict[str, object]) -> None:
    """``client_of`` (what the allow path decodes) accepts and refuses exactly the bodies
    ``from_raw`` does, and reads the same client, login and protocol from them."""
    raw = json.dumps(fields).encode()
    try:
        req = AuthRequest.from_raw(raw)
    except ProtocolError as exc:
        with pytest.raises(ProtocolError) as err:
            client_of(raw)
        assert str(err.value) == str(exc)
        return
    assert client_of(raw) == (req.key, req.login, req.protocol)
