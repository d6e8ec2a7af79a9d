from __future__ import annotations

from ipaddress import ip_address, ip_network

from mailward.config.model import DetectorSettings, Settings
from mailward.decisions.model import Action, Decision
from mailward.detectors.engine import Engine, Verdict
from mailward.detectors.history import MemoryHistory
from mailward.detectors.safety import CircuitClosed, CircuitOpen
from mailward.enrich.geoip import MemoryGeo
from mailward.events import (
    AuthFailure,
    AuthSuccess,
    Connection,
    FailReason,
    Service,
    UnknownRecipient,
)

T = 1_763_700_000.0


def fail(ip: str | None, user: str | None = "bob", ts: float = T, **kw: object) -> AuthFailure:
    return AuthFailure(
        ts=ts,
        service=Service.SUBMISSION,
        ip=None if ip is None else ip_address(ip),
        username=user,
        **kw,  # type: ignore[arg-type]
    )


def ok(ip: str, user: str = "bob", ts: float = T) -> AuthSuccess:
    return AuthSuccess(ts=ts, service=Service.IMAP, ip=ip_address(ip), username=user)


def engine(**sections: object) -> Engine:
    return Engine(DetectorSettings(**sections), server_addresses=[ip_network("192.0.2.25/32")])  # type: ignore[arg-type]


def test_decision_carries_who_why_when_until_offence() -> None:
    eng = engine()
    out = []
    for i in range(4):
        out += eng.observe(fail("203.0.113.5", ts=T + i), T + i)
    [d] = out
    assert d.target == "203.0.113.5" and d.action is Action.BAN and d.rule == "rate_limit"
    assert d.ts == T + 3 and d.until == T + 3 + 900 and d.offence == 1
    assert d.evidence["attempts"] == 4 and d.reason
    assert eng.active(T + 4) == [d]
    verdict = eng.check(ip_address("203.0.113.5"), "anyone", T + 5)
    assert verdict == Verdict(False, reason="banned (rate_limit)", decision=d)


def test_check_accepts_strings_and_allows_unknown() -> None:
    eng = engine()
    assert eng.check("::ffff:198.51.100.1", "bob", T).allow
    assert eng.check(None, "bob", T).allow


def test_escalation_multiplies_and_caps() -> None:
    eng = engine(rate_limit={"enabled": False}, long_window={"enabled": False})
    lengths = []
    t = T
    for _ in range(6):
        for _ in range(5):
            t += 1
            for d in eng.observe(fail("203.0.113.5", ts=t), t):
                lengths.append((d.offence, d.until - d.ts if d.until else None))
        t += 40 * 86400  # wait out the ban
        eng.expire(t)
    assert lengths == [
        (1, 3600.0),
        (2, 4 * 3600.0),
        (3, 16 * 3600.0),
        (4, 64 * 3600.0),
        (5, 256 * 3600.0),
        (6, 30 * 86400.0),  # capped
    ]


def test_history_from_elsewhere_escalates_the_first_ban_here() -> None:
    history = MemoryHistory()
    history.record("203.0.113.5", T - 200 * 86400)
    eng = Engine(DetectorSettings(), history=history)
    out = []
    for i in range(4):
        out += eng.observe(fail("203.0.113.5", ts=T + i), T + i)
    assert out[0].offence == 2 and out[0].until == out[0].ts + 4 * 900
    assert out[0].evidence["previous_offences"] == 1


def test_stronger_rule_lengthens_a_ban_without_a_new_offence() -> None:
    eng = engine()
    out = []
    for i in range(6):
        out += eng.observe(fail("203.0.113.5", ts=T + i), T + i)
    assert [(d.rule, d.offence) for d in out] == [("rate_limit", 1), ("short_ban", 1)]
    assert eng.ledger.get("203.0.113.5", T + 10).rule == "short_ban"  # type: ignore[union-attr]


def test_server_addresses_and_allow_list_are_never_counted_or_banned() -> None:
    eng = Engine(
        DetectorSettings(safety={"allow": ["10.0.0.0/8", "mx.example.org"]}),
        server_addresses=[ip_network("192.0.2.25/32")],
        resolver=lambda name: ["198.51.100.25"],
    )
    for ip in ("192.0.2.25", "10.1.2.3", "198.51.100.25"):
        for i in range(50):
            assert eng.observe(fail(ip, ts=T + i), T + i) == []
        assert eng.check(ip, "bob", T + 60).allow
    assert eng.counts["exempt"] == 150
    # nor may a prefix ban cover them
    out = []
    for i in range(1, 20):
        out += eng.observe(fail(f"192.0.2.{i}", user=f"u{i}", ts=T + i), T + i)
    assert all(d.target != "192.0.2.0/24" for d in out)
    eng.apply(Decision(ts=T, target="192.0.2.0/24", action=Action.BAN, rule="manual", until=T + 60))
    assert eng.ledger.get("192.0.2.0/24", T) is None


def test_failure_without_address_or_other_events_do_nothing() -> None:
    eng = engine()
    assert eng.observe(fail(None), T) == []
    conn = Connection(ts=T, service=Service.SMTP, ip=ip_address("203.0.113.5"))
    assert eng.observe(conn, T) == []


def test_unknown_users_are_enumeration_not_protection() -> None:
    eng = engine(rate_limit={"enabled": False}, short_ban={"enabled": False})
    out = []
    for i in range(10):
        ev = fail(f"198.51.{i}.1", user="nobody", ts=T + i, reason=FailReason.UNKNOWN_USER)
        out += eng.observe(ev, T + i)
    assert not any(d.action is Action.PROTECT_USER for d in out)
    out = []
    for i in range(10):
        ev = UnknownRecipient(
            ts=T + i,
            service=Service.SMTP,
            ip=ip_address("198.51.100.23"),
            recipient=f"x{i}@example.org",
        )
        out += eng.observe(ev, T + i)
    assert [d.rule for d in out] == ["enumeration"]


def test_protect_user_flow_and_unban() -> None:
    eng = engine()
    eng.observe(ok("192.0.2.10", "carol"), T - 10)
    out = []
    for i in range(8):
        out += eng.observe(fail(f"198.18.{i}.1", user="carol", ts=T + i), T + i)
    protect = [d for d in out if d.action is Action.PROTECT_USER]
    assert len(protect) == 1 and protect[0].target == "user:carol"
    assert eng.check("192.0.2.10", "carol", T + 10).allow
    refused = eng.check("198.18.100.1", "CAROL", T + 10)
    assert not refused.allow and refused.decision is not None
    assert refused.decision.target == "user:carol"
    # every rejected attempt extends the protection
    later = T + 5 * 3600
    assert eng.check("198.18.100.1", "carol", later).decision.until == later + 6 * 3600  # type: ignore[union-attr]
    assert eng.check("198.18.100.1", "dave", later).allow
    eng.apply(Decision(ts=later, target="user:carol", action=Action.UNBAN, rule="manual"))
    assert eng.check("198.18.100.1", "carol", later + 1).allow
    # and the distinct-source count starts again, not at 8
    assert eng.observe(fail("198.18.200.1", user="carol", ts=later + 2), later + 2) == []


def test_extensions_are_announced_only_now_and_then() -> None:
    eng = engine()
    announced = []
    for i in range(400):
        t = T + i * 10
        for d in eng.observe(fail(f"198.18.{i // 250}.{i % 250}", user="erin", ts=t), t):
            if d.action is Action.PROTECT_USER:
                announced.append(d)
    assert 1 < len(announced) <= 5  # 4000 s of attack, re-announced at most every hour


def test_apply_restores_and_unban_resets_counters() -> None:
    eng = engine()
    ban = Decision(ts=T, target="203.0.113.0/24", action=Action.BAN, rule="manual", until=None)
    eng.apply(ban)
    assert not eng.check("203.0.113.77", None, T + 10**9).allow
    for i in range(3):
        eng.observe(fail("198.51.100.9", ts=T + i), T + i)
    eng.apply(Decision(ts=T, target="198.51.100.9", action=Action.UNBAN, rule="manual"))
    assert eng.observe(fail("198.51.100.9", ts=T + 4), T + 4) == []  # not the 4th in a minute
    eng.apply(Decision(ts=T, target="203.0.113.0/24", action=Action.UNBAN, rule="manual"))
    assert eng.check("203.0.113.77", None, T).allow
    eng.apply(Decision(ts=T, target="203.0.113.1", action=Action.TARPIT, rule="manual"))
    assert eng.active(T) == []


def test_expire_returns_unbans() -> None:
    eng = engine()
    for i in range(4):
        eng.observe(fail("203.0.113.5", ts=T + i), T + i)
    assert eng.expire(T + 100) == []
    [unban] = eng.expire(T + 3 + 900)
    assert unban.action is Action.UNBAN and unban.target == "203.0.113.5"
    assert unban.rule == "expired" and unban.reason == "rate_limit ban expired"
    assert eng.check("203.0.113.5", None, T + 1000).allow


def test_tarpit_rises_with_failures() -> None:
    eng = engine(rate_limit={"enabled": False})
    eng.observe(fail("203.0.113.5", ts=T), T)
    eng.observe(fail("203.0.113.5", ts=T + 1), T + 1)
    verdict = eng.check("203.0.113.5", "bob", T + 2)
    assert verdict.allow and verdict.tarpit == 2.0
    for i in range(2, 4):
        eng.observe(fail("203.0.113.5", ts=T + i), T + i)
    assert eng.check("203.0.113.5", "bob", T + 5).tarpit == 4.0
    assert eng.check("203.0.113.6", "bob", T + 5).tarpit == 0.0
    quiet = engine(tarpit={"enabled": False})
    quiet.observe(fail("203.0.113.5", ts=T), T)
    assert quiet.check("203.0.113.5", "bob", T + 1).tarpit == 0.0


def test_geo_rules_in_line_and_on_failure() -> None:
    geo = MemoryGeo(
        {"198.51.100.0/24": "CN", "203.0.113.0/24": "DE"}, {"203.0.113.0/25": (64500, "x")}
    )
    eng = Engine(DetectorSettings(geo={"deny_countries": ["CN"], "deny_asns": [64500]}), geo=geo)
    assert eng.check("198.51.100.1", "bob", T).reason == "country CN is denied"
    assert eng.check("203.0.113.1", "bob", T).reason == "AS64500 is denied"
    assert eng.check("203.0.113.200", "bob", T).allow
    [d] = eng.observe(fail("198.51.100.1", ts=T), T)
    assert d.rule == "geo" and d.evidence["country"] == "CN"


def test_circuit_breaker_stops_bans_and_signals() -> None:
    eng = engine(safety={"max_bans_per_minute": 5})
    out = []
    for i in range(20):  # twenty attackers each trip the rate limit within one minute
        for k in range(4):
            out += eng.observe(
                fail(f"198.{i}.0.1", user=f"u{i}", ts=T + i + k / 10), T + i + k / 10
            )
    assert len([d for d in out if d.action is Action.BAN]) == 5
    signals = eng.take_signals()
    assert isinstance(signals[0], CircuitOpen) and signals[0].limit == 5
    for k in range(4):
        eng.observe(fail("198.99.0.1", user="x", ts=T + 120 + k), T + 120 + k)
    [closed] = eng.take_signals(T + 130)
    assert isinstance(closed, CircuitClosed) and closed.suppressed == 15


def test_from_settings_takes_server_addresses() -> None:
    eng = Engine.from_settings(Settings())
    assert eng.check("127.0.0.1", "bob", T).allow
    for i in range(10):
        assert eng.observe(fail("127.0.0.1", ts=T + i), T + i) == []


def test_manual_protection_uses_the_canonical_username() -> None:
    eng = engine()
    eng.apply(
        Decision(
            ts=T,
            target="user:Bob@Example.org",
            action=Action.PROTECT_USER,
            rule="manual",
            until=T + 60,
        )
    )
    assert not eng.check("198.51.100.1", "bob@example.org", T + 1).allow
    assert [d.target for d in eng.active(T + 1)] == ["user:bob@example.org"]
    eng.apply(Decision(ts=T, target="user:BOB@example.org", action=Action.UNBAN, rule="manual"))
    assert eng.check("198.51.100.1", "bob@example.org", T + 2).allow
    assert eng.active(T + 2) == []


def _reference_check(eng: Engine, ip: object, username: str | None, now: float) -> Verdict:
    """``Engine.check`` as it was before it worked on ints (the differential oracle)."""
    from mailward.detectors.base import Source, canonical_user
    from mailward.detectors.distributed import ATTACK, GOOD_IP
    from mailward.detectors.keys import ip_key, prefix_key
    from mailward.events import normalise_ip

    if ip is None:
        return Verdict(True)
    if isinstance(ip, str):
        ip = normalise_ip(ip)
    assert not isinstance(ip, str | type(None))
    if ip in eng.exempt:  # type: ignore[operator]
        return Verdict(True)
    banned = eng.ledger.covering(ip, now)  # type: ignore[arg-type]
    if banned is not None:
        return Verdict(False, reason=f"banned ({banned.rule})", decision=banned)
    if eng.georule.active and eng.geo is not None:
        asn = eng.geo.asn(ip)  # type: ignore[arg-type]
        why = eng.georule.refuses(eng.geo.country(ip), None if asn is None else asn[0])  # type: ignore[arg-type]
        if why is not None:
            return Verdict(False, reason=why)
    user = canonical_user(username)
    key = ip_key(ip)  # type: ignore[arg-type]
    if user is not None and eng.state.marked(ATTACK, user, now) is not None:
        cfg = eng.settings
        src = Source(
            ip=ip,  # type: ignore[arg-type]
            key=key,
            prefix=prefix_key(ip, cfg.prefix_v4, cfg.prefix_v6),  # type: ignore[arg-type]
            prefixlen=cfg.prefix_v4 if ip.version == 4 else cfg.prefix_v6,  # type: ignore[attr-defined]
        )
        if not eng.distributed.is_known_good(eng.state, user, src, now):
            eng.decider.touch(user, now)
            return Verdict(
                False, reason=f"user:{user} is under attack", decision=eng.ledger.user(user, now)
            )
    tarpit = eng.settings.tarpit
    if tarpit.enabled and tarpit.per_failure > 0:
        recent = eng.failures.recent(eng.state, key, now)
        if recent:
            factor = 1.0
            if eng.state.marked(GOOD_IP, key, now) is not None:
                factor = eng.settings.safety.known_good_factor
            delay = min(tarpit.max_delay, tarpit.per_failure * recent / factor)
            return Verdict(True, tarpit=delay, reason=f"{recent} recent failures")
    return Verdict(True)


def test_check_is_identical_to_the_reference_over_a_random_stream() -> None:
    import random

    for seed, sections in enumerate(
        [{}, {"rate_limit": {"enabled": False}, "distributed": {"user_sources": 3}}]
    ):
        rnd = random.Random(seed)
        fast, slow = engine(**sections), engine(**sections)
        ips = [f"198.51.{n}.{h}" for n in range(3) for h in range(1, 15)]
        ips += ["2001:db8::1", "2001:db8::2", "2001:db8:0:1::9", "192.0.2.25", "::ffff:198.51.0.3"]
        users = ["alice", "Alice ", "bob", "carol", "", None]
        now = T
        asked = refused = tarpitted = 0
        for step in range(3000):
            now += rnd.choice([0.5, 2, 10, 60, 400])
            pick = rnd.random()
            event: AuthFailure | AuthSuccess | None = None
            if pick < 0.7:
                reason = rnd.choice([FailReason.BAD_PASSWORD, FailReason.UNKNOWN_USER])
                event = fail(rnd.choice(ips), rnd.choice(users), now, reason=reason)
            elif pick < 0.9:
                event = ok(rnd.choice(ips), rnd.choice(["alice", "bob", "carol"]), now)
            elif pick < 0.95:
                manual = Decision(now, f"198.51.{rnd.randrange(3)}.0/24", Action.BAN, "manual")
                manual = Decision(now, manual.target, Action.BAN, "manual", until=now + 900)
                fast.apply(manual)
                slow.apply(manual)
            else:
                for eng in (fast, slow):
                    eng.expire(now)
            if event is not None:
                assert fast.observe(event, now) == slow.observe(event, now)
            for _ in range(3):
                ip = rnd.choice([*ips, None])
                query: object = ip if ip is None or rnd.random() < 0.5 else ip_address(ip)
                user = rnd.choice(users)
                got = fast.check(query, user, now)  # type: ignore[arg-type]
                assert got == _reference_check(slow, query, user, now), (step, ip, user)
                asked += 1
                refused += not got.allow
                tarpitted += got.tarpit > 0
        assert fast.active(now) == slow.active(now)
        # the stream reached every branch: bans, protections, tarpits and plain allows
        assert refused > 200 and tarpitted > 100 and asked - refused - tarpitted > 200


def test_a_refusal_follows_the_ban_it_quotes() -> None:
    eng = engine()
    eng.apply(Decision(T, "198.51.100.0/24", Action.BAN, "manual", until=T + 60))
    first = eng.check("198.51.100.9", "bob", T + 1)
    assert not first.allow and first.decision is not None and first.decision.until == T + 60
    assert eng.check("198.51.100.10", None, T + 2) is first  # one verdict per standing ban
    eng.apply(Decision(T + 3, "198.51.100.0/24", Action.BAN, "longer", until=T + 600))
    later = eng.check("198.51.100.9", "bob", T + 4)
    assert later.decision is not None and later.decision.until == T + 600
    assert later.reason == "banned (longer)"
    assert eng.check("198.51.100.9", "bob", T + 601).allow


def test_standing_and_pressure_split_check_by_what_moves_them() -> None:
    from mailward.events import ip_key

    eng = engine()
    plain, exempt = ip_key(ip_address("198.51.100.7")), ip_key(ip_address("192.0.2.25"))
    assert eng.standing(plain, T) is None  # nothing fixed: pressure decides
    assert eng.standing(exempt, T) == Verdict(True)  # final, whatever happens to users
    g = eng.generation
    eng.apply(Decision(T, "198.51.100.0/24", Action.BAN, "manual", until=T + 60))
    assert eng.generation > g  # what a server remembered is to be asked again
    refusal = eng.standing(plain, T + 1)
    assert refusal is not None and not refusal.allow and refusal.reason == "banned (manual)"
    assert eng.standing(plain, T + 61) is None  # the ban ran out
    eng.apply(Decision(T, "user:bob", Action.PROTECT_USER, "manual", until=T + 600))
    assert not eng.pressure(plain, "Bob", T + 62).allow  # an unknown source for bob
    assert eng.pressure(plain, "alice", T + 62).allow
    v6 = ip_key(ip_address("2001:db8::1"))
    eng.apply(Decision(T, "2001:db8::/64", Action.BAN, "manual", until=T + 600))
    assert not eng.check("2001:db8::1", None, T + 62).allow
    refused6 = eng.standing(v6, T + 62)
    assert refused6 is not None and not refused6.allow
