from mailward.daemon.twins import ThresholdEngine, TwinParser
from mailward.decisions.model import Action, Decision
from mailward.events import AuthFailure, Service

LINE = (
    "2026-11-21T10:15:02.000000+00:00 mx1 postfix/submission/smtpd[48211]: warning: "
    "unknown[::ffff:203.0.113.45]: SASL LOGIN authentication failed: UGFzc3dvcmQ6, "
    "sasl_username=info@example.org"
)


def test_twin_parser_reads_sasl_failures_only() -> None:
    ev = TwinParser().parse(LINE)
    assert isinstance(ev, AuthFailure)
    assert str(ev.ip) == "203.0.113.45" and ev.username == "info@example.org"
    assert ev.service is Service.SUBMISSION and ev.ts == 1795256102.0
    assert (
        TwinParser().parse("2026-11-21T10:15:02Z mx1 postfix/smtpd[1]: connect from x[1.2.3.4]")
        is None
    )
    assert TwinParser().parse(LINE.replace("203.0.113.45", "999.1.1.1")) is None


def test_threshold_engine_bans_once_and_obeys_unban() -> None:
    parser, engine = TwinParser(), ThresholdEngine(failures=3, window=60, ban_seconds=100)
    ev = parser.parse(LINE)
    assert ev is not None
    assert engine.observe(ev, 0) == [] and engine.observe(ev, 1) == []
    [ban] = engine.observe(ev, 2)
    assert ban.target == "203.0.113.45" and ban.until == 102
    assert engine.observe(ev, 3) == []
    assert [d.target for d in engine.active(50)] == ["203.0.113.45"]
    engine.apply(Decision(ts=4, target="203.0.113.0/24", action=Action.UNBAN, rule="manual"))
    assert engine.active(50) == []
    engine.apply(Decision(ts=5, target="198.51.100.1", action=Action.BAN, rule="m", until=10))
    assert [d.target for d in engine.expire(20)] == ["198.51.100.1"]
    assert engine.observe(ev, 200) == [] and engine.observe(ev, 300) == []
