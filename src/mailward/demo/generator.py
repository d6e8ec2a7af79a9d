"""Seeded, realistic Postfix + Dovecot syslog: normal traffic mixed with attack scenarios.

``DemoLog(config)`` yields log lines in time order, streaming (memory bounded by one hour of
traffic), the same lines for the same config. ``.truth`` counts what was emitted so far (failed
login attempts per scenario, unknown-recipient probes, successes): the ground truth the analysis
and the benchmark's recall check are compared against. Addresses are synthetic (``demo.geo``).
"""

from __future__ import annotations

import base64
import heapq
import math
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Literal

from mailward.demo.geo import block_index
from mailward.events import AuthFailure, AuthSuccess, Event, Service, UnknownRecipient, normalise_ip

Format = Literal["rfc3164", "iso", "mixed"]

DOMAIN = "example.org"
HOST = "mx1"
SERVER_V4 = "192.0.2.10"
DEFAULT_END = datetime(2026, 11, 21, tzinfo=UTC)

# Tags on emitted lines: what a line counts for in the ground truth. A positive tag is a number of
# failed attempts (1 per passdb/SASL line; N on a Dovecot summary when there are no passdb lines).
_NONE, _ATTEMPT, _PROBE, _SUCCESS = 0, 1, -1, -2

SCENARIOS = (
    "steady",  # persistent slow guessers, all month
    "scanners",  # drive-by IPs, a handful of guesses each
    "spike",  # two hosts, ~100 guesses each within 40 minutes (the real incident)
    "botnet",  # many IPs, one or two guesses each, one username
    "sweep",  # every address of one /24 takes a turn
    "ipv6",  # one host rotating through a /64
    "enumeration",  # RCPT probing for valid addresses
    "breach",  # one steady guesser finally gets a password right
    "users",  # real users' own typos
)
ATTACKS = frozenset(SCENARIOS) - {"users"}

USERS = (
    "alice",
    "bob",
    "carol",
    "dave",
    "erin",
    "frank",
    "grace",
    "heidi",
    "ivan",
    "judy",
    "niaj",
    "olivia",
    "peggy",
    "rupert",
    "sybil",
    "trent",
    "victor",
    "walter",
    "info",
    "office",
)
GUESSED = (
    "admin",
    "info",
    "test",
    "sales",
    "support",
    "office",
    "contact",
    "webmaster",
    "postmaster",
    "user",
    "mail",
    "marketing",
    "hr",
    "billing",
    "noreply",
    "alice",
    "bob",
    "root",
    "guest",
    "scanner",
)
PROBED = (
    "jsmith",
    "john",
    "mary",
    "accounts",
    "finance",
    "ceo",
    "it",
    "helpdesk",
    "jobs",
    "press",
    "legal",
    "team",
    "hello",
    "service",
    "orders",
)
BOTNET_TARGET = f"info@{DOMAIN}"
SPIKE_COUNTRY = "GB"

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
# People read mail by day: relative activity per UTC hour (the demo org is in UTC+1).
_DAY_RHYTHM = (
    0.08,
    0.05,
    0.04,
    0.04,
    0.05,
    0.15,
    0.45,
    0.85,
    1.0,
    1.0,
    0.95,
    0.9,
    0.8,
    0.9,
    0.95,
    0.9,
    0.85,
    0.7,
    0.55,
    0.45,
    0.4,
    0.3,
    0.2,
    0.12,
)
# Lines per hour at scale 1 (calibrated against the generator itself, see tests).
_LINES_PER_HOUR_AT_SCALE_1 = 1150.0


@dataclass(frozen=True, slots=True)
class DemoConfig:
    """What to generate. ``days`` defaults to 28, or longer so that ~36k lines make a day."""

    lines: int = 150_000
    seed: int = 1
    end: datetime = DEFAULT_END
    days: int | None = None
    format: Format = "rfc3164"
    scenarios: frozenset[str] = frozenset(SCENARIOS)
    auth_verbose: bool = True  # Dovecot passdb lines ("Password mismatch"), as fail2ban needs

    def span_days(self) -> int:
        if self.days is not None:
            return self.days
        return max(28, math.ceil(self.lines / 36_000))


@dataclass(frozen=True, slots=True)
class Incident:
    """Where the generator put a scripted attack: for the report's reader and for tests."""

    scenario: str
    start: float
    end: float
    ips: tuple[str, ...]
    username: str | None = None


@dataclass(slots=True)
class GroundTruth:
    """Counts of the lines emitted so far, by what they mean."""

    lines: int = 0
    attempts: int = 0
    attempts_by_scenario: dict[str, int] = field(default_factory=dict)
    probes: int = 0
    successes: int = 0
    incidents: list[Incident] = field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        return {
            "lines": self.lines,
            "failed_attempts": self.attempts,
            "failed_attempts_by_scenario": dict(sorted(self.attempts_by_scenario.items())),
            "unknown_recipient_probes": self.probes,
            "successful_logins": self.successes,
            "incidents": [
                {
                    "scenario": i.scenario,
                    "start": _iso(i.start),
                    "end": _iso(i.end),
                    "ips": list(i.ips),
                    "username": i.username,
                }
                for i in self.incidents
            ],
        }


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


# What a tagged line is about: (service, client address, username or recipient).
_Meta = tuple[str, str, str] | None
# A scheduled line: (ts, seq, program, pid, message, tag, scenario, meta).
_Line = tuple[float, int, str, int, str, int, str, _Meta]


class DemoLog:
    """Iterate to get the lines (no trailing newline); ``truth`` fills in as they are emitted."""

    def __init__(self, config: DemoConfig | None = None) -> None:
        self.config = config or DemoConfig()
        self.truth = GroundTruth()
        cfg = self.config
        self._rng = random.Random(cfg.seed)
        days = cfg.span_days()
        self._end = cfg.end.timestamp()
        self._start = self._end - days * 86400
        self._scale = cfg.lines / (days * 24 * _LINES_PER_HOUR_AT_SCALE_1)
        self._seq = 0
        self._stamp_cache: dict[int, str] = {}
        self._switch = self._start + (self._end - self._start) / 2  # "mixed": rsyslog upgrade
        rng = self._rng
        # People: each user has a home address and a phone; both stable all month.
        self._user_home = {u: f"192.0.2.{20 + i}" for i, u in enumerate(USERS)}
        self._user_phone = {
            u: f"2001:db8:100:{i + 1:x}::{rng.randrange(1, 0xFFFF):x}" for i, u in enumerate(USERS)
        }
        self._steady = [self._attacker_ip(rng) for _ in range(max(2, round(30 * self._scale)))]
        self._steady_rate = [rng.uniform(1, 6) for _ in self._steady]  # guesses per hour
        self._scheduled: list[Callable[[float], list[_Line]]] = []
        self._plan_incidents()

    # -- public -------------------------------------------------------------------------------

    def __iter__(self) -> Iterator[str]:
        render = self._render
        for ts, prog, pid, msg, _tag, _meta in self._emit():
            yield render(ts, prog, pid, msg)

    def events(self) -> Iterator[Event]:
        """The typed events the tagged lines stand for (ground truth; no parser involved)."""
        for ts, _prog, _pid, _msg, tag, meta in self._emit():
            if not tag or meta is None:
                continue
            service, ip_text, name = meta
            svc = Service(service)
            ip = normalise_ip(ip_text)
            if tag > 0:
                yield AuthFailure(ts=ts, service=svc, ip=ip, username=name, attempts=tag)
            elif tag == _PROBE:
                yield UnknownRecipient(ts=ts, service=svc, ip=ip, recipient=name)
            else:
                yield AuthSuccess(ts=ts, service=svc, ip=ip, username=name)

    def _emit(self) -> Iterator[tuple[float, str, int, str, int, _Meta]]:
        cfg = self.config
        limit = cfg.lines
        truth = self.truth
        by_scen = truth.attempts_by_scenario
        pending: list[_Line] = []
        hour = self._start
        # Never past ``end``: year-less stamps from the future would be read as last year's.
        while truth.lines < limit and hour < self._end:
            hour_end = hour + 3600
            for line in self._hour(hour):
                heapq.heappush(pending, line)
            while pending and pending[0][0] < hour_end:
                ts, _seq, prog, pid, msg, tag, scen, meta = heapq.heappop(pending)
                if tag > 0:
                    truth.attempts += tag
                    by_scen[scen] = by_scen.get(scen, 0) + tag
                elif tag == _PROBE:
                    truth.probes += 1
                elif tag == _SUCCESS:
                    truth.successes += 1
                truth.lines += 1
                yield ts, prog, pid, msg, tag, meta
                if truth.lines >= limit:
                    return
            hour = hour_end

    def write(self, out: IO[str] | Path | str) -> GroundTruth:
        """Write all lines to a path or text stream, in chunks; return the ground truth."""
        if isinstance(out, Path | str):
            with open(out, "w", encoding="utf-8", newline="\n") as fh:
                return self.write(fh)
        chunk: list[str] = []
        for line in self:
            chunk.append(line)
            if len(chunk) >= 8192:
                chunk.append("")
                out.write("\n".join(chunk))
                chunk.clear()
        if chunk:
            chunk.append("")
            out.write("\n".join(chunk))
        return self.truth

    # -- rendering ------------------------------------------------------------------------------

    def _render(self, ts: float, prog: str, pid: int, msg: str) -> str:
        ident = f"{prog}[{pid}]" if pid else prog
        iso = self.config.format == "iso" or (self.config.format == "mixed" and ts >= self._switch)
        sec = int(ts)
        minute = sec - sec % 60
        key = minute if not iso else -minute - 1
        prefix = self._stamp_cache.get(key)
        if prefix is None:
            if len(self._stamp_cache) > 4096:
                self._stamp_cache.clear()
            t = datetime.fromtimestamp(minute, UTC)
            if iso:
                prefix = t.strftime("%Y-%m-%dT%H:%M:")
            else:
                prefix = f"{_MONTHS[t.month - 1]} {t.day:2d} {t.hour:02d}:{t.minute:02d}:"
            self._stamp_cache[key] = prefix
        if iso:
            usec = int((ts - sec) * 1_000_000)
            return f"{prefix}{sec - minute:02d}.{usec:06d}+00:00 {HOST} {ident}: {msg}"
        return f"{prefix}{sec - minute:02d} {HOST} {ident}: {msg}"

    # -- helpers ----------------------------------------------------------------------------------

    def _line(
        self,
        ts: float,
        prog: str,
        pid: int,
        msg: str,
        tag: int = 0,
        scen: str = "",
        meta: _Meta = None,
    ) -> _Line:
        self._seq += 1
        return (ts, self._seq, prog, pid, msg, tag, scen, meta)

    @staticmethod
    def _attacker_ip(rng: random.Random, country: str | None = None) -> str:
        if country is None:
            block = rng.randrange(512)
        else:
            block = block_index(country, rng)
        return f"198.{18 + (block >> 8)}.{block & 255}.{rng.randrange(1, 255)}"

    def _session_id(self) -> str:
        return base64.b64encode(self._rng.getrandbits(96).to_bytes(12, "big")).decode()

    def _qid(self) -> str:
        return f"{self._rng.getrandbits(40):010X}"

    def _pid(self) -> int:
        return self._rng.randrange(1200, 64000)

    def _poisson(self, lam: float) -> int:
        if lam <= 0:
            return 0
        if lam > 50:  # normal approximation; exactness does not matter for traffic volume
            return max(0, round(self._rng.gauss(lam, math.sqrt(lam))))
        limit, k, p = math.exp(-lam), 0, self._rng.random()
        while p > limit:
            k += 1
            p *= self._rng.random()
        return k

    # -- one hour of traffic ----------------------------------------------------------------------

    def _hour(self, hour: float) -> list[_Line]:
        rng = self._rng
        s = self._scale
        on = self.config.scenarios
        t = datetime.fromtimestamp(hour, UTC)
        weekend = t.weekday() >= 5
        people = _DAY_RHYTHM[t.hour] * (0.45 if weekend else 1.0)
        # Attack traffic has a milder rhythm of its own (residential bots are on in the evening).
        bots = 1.0 + 0.25 * math.sin((t.hour - 14) / 24 * 2 * math.pi)
        out: list[_Line] = []

        def at() -> float:
            return hour + rng.random() * 3600

        for _ in range(self._poisson(70 * s * people + 6 * s)):
            out += self._mx_delivery(at())
        for _ in range(self._poisson(55 * s * people + 4 * s)):
            out += self._imap_login(at(), rng.choice(USERS), "users" in on)
        for _ in range(self._poisson(9 * s * people)):
            out += self._submission(at(), rng.choice(USERS))
        for _ in range(self._poisson(45 * s * bots)):
            out += self._postscreen_noise(at())
        for _ in range(self._poisson(2 * s * people + 0.3 * s)):
            out += self._rcpt_reject(at(), None, f"{rng.choice(PROBED)}.{rng.randrange(9)}", "")
        if "steady" in on:
            for ip, rate in zip(self._steady, self._steady_rate, strict=True):
                for _ in range(self._poisson(rate)):
                    out += self._guess(at(), ip, self._guess_user(), "steady")
        if "scanners" in on:
            for _ in range(self._poisson(14 * s * bots)):
                out += self._scanner(at())
        for fn in self._scheduled:
            out += fn(hour)
        return out

    def _guess_user(self) -> str:
        rng = self._rng
        name = rng.choice(GUESSED)
        return name if rng.random() < 0.3 else f"{name}@{DOMAIN}"

    # -- normal traffic ---------------------------------------------------------------------------

    def _mx_delivery(self, t: float) -> list[_Line]:
        rng = self._rng
        ip = f"203.0.113.{rng.randrange(2, 250)}" if rng.random() < 0.7 else None
        ip = ip or f"198.51.100.{rng.randrange(2, 250)}"
        name = f"mail-out{ip.rsplit('.', 1)[1]}.example.net"
        port = rng.randrange(30000, 65000)
        ps, pid, qid = self._pid(), self._pid(), self._qid()
        user = rng.choice(USERS)
        L = self._line
        t1 = t + rng.uniform(0.2, 2.0)
        return [
            L(t, "postfix/postscreen", ps, f"CONNECT from [{ip}]:{port} to [{SERVER_V4}]:25"),
            L(t + 0.01, "postfix/postscreen", ps, f"PASS OLD [{ip}]:{port}"),
            L(t + 0.02, "postfix/smtpd", pid, f"connect from {name}[{ip}]"),
            L(t1, "postfix/smtpd", pid, f"{qid}: client={name}[{ip}]"),
            L(
                t1 + 0.1,
                "postfix/cleanup",
                self._pid(),
                f"{qid}: message-id=<{rng.getrandbits(48):x}@example.net>",
            ),
            L(
                t1 + 0.2,
                "postfix/qmgr",
                900,
                f"{qid}: from=<news@example.net>, size={rng.randrange(2000, 90000)}, nrcpt=1 (queue active)",
            ),
            L(
                t1 + 0.3,
                "postfix/smtpd",
                pid,
                f"disconnect from {name}[{ip}] ehlo=2 starttls=1 mail=1 rcpt=1 data=1 quit=1 commands=7",
            ),
            L(
                t1 + 0.5,
                "postfix/lmtp",
                self._pid(),
                f"{qid}: to=<{user}@{DOMAIN}>, relay={HOST}.{DOMAIN}[private/dovecot-lmtp], delay=0.5, "
                f"delays=0.2/0.01/0.1/0.2, dsn=2.0.0, status=sent (250 2.0.0 <{user}@{DOMAIN}> "
                f"{self._session_id()} Saved)",
            ),
            L(t1 + 0.6, "postfix/qmgr", 900, f"{qid}: removed"),
        ]

    def _imap_login(self, t: float, user: str, typos: bool) -> list[_Line]:
        rng = self._rng
        ip = self._user_home[user] if rng.random() < 0.6 else self._user_phone[user]
        login = f"{user}@{DOMAIN}"
        service = "imap" if rng.random() < 0.92 else "pop3"
        out: list[_Line] = []
        t0 = t
        if typos and rng.random() < 0.02:  # a typo, then the right password
            sess = self._session_id()
            out += self._dovecot_failure(t, ip, login, 1, "users", service, sess, "mismatch")
            t0 = t + 6
        sess = self._session_id()
        mpid = self._pid()
        out.append(
            self._line(
                t0,
                "dovecot",
                0,
                f"{service}-login: Login: user=<{login}>, method=PLAIN, rip={ip}, lip={SERVER_V4}, "
                f"mpid={mpid}, TLS, session=<{sess}>",
                _SUCCESS,
                "users",
                (service, ip, login),
            )
        )
        dur = rng.expovariate(1 / 600)
        out.append(
            self._line(
                t0 + dur,
                "dovecot",
                0,
                f"{service}({login})<{mpid}><{sess}>: Disconnected: Logged out in={rng.randrange(50, 900)} "
                f"out={rng.randrange(400, 90000)} deleted=0 expunged=0 trashed=0 hdr_count=0 "
                "hdr_bytes=0 body_count=0 body_bytes=0",
            )
        )
        return out

    def _submission(self, t: float, user: str) -> list[_Line]:
        rng = self._rng
        ip = self._user_home[user] if rng.random() < 0.7 else self._user_phone[user]
        pid, qid = self._pid(), self._qid()
        login = f"{user}@{DOMAIN}"
        L = self._line
        p = "postfix/submission/smtpd"
        return [
            L(t, p, pid, f"connect from unknown[{ip}]"),
            L(
                t + 0.3,
                p,
                pid,
                f"Anonymous TLS connection established from unknown[{ip}]: TLSv1.3 with cipher "
                "TLS_AES_256_GCM_SHA384 (256/256 bits)",
            ),
            L(
                t + 0.8,
                p,
                pid,
                f"{qid}: client=unknown[{ip}], sasl_method=PLAIN, sasl_username={login}",
                _SUCCESS,
                "users",
                ("submission", ip, login),
            ),
            L(
                t + 1.0,
                "postfix/cleanup",
                self._pid(),
                f"{qid}: message-id=<{qid.lower()}@{DOMAIN}>",
            ),
            L(
                t + 1.1,
                "postfix/qmgr",
                900,
                f"{qid}: from=<{login}>, size={rng.randrange(900, 40000)}, nrcpt=1 (queue active)",
            ),
            L(
                t + 1.2,
                p,
                pid,
                f"disconnect from unknown[{ip}] ehlo=2 starttls=1 auth=1 mail=1 rcpt=1 data=1 quit=1 commands=8",
            ),
            L(
                t + 1.9,
                "postfix/smtp",
                self._pid(),
                f"{qid}: to=<friend@example.net>, relay=mx.example.net[203.0.113.5]:25, delay=1.1, "
                "delays=0.2/0.01/0.4/0.5, dsn=2.0.0, status=sent (250 2.0.0 Ok: queued)",
            ),
            L(t + 2.0, "postfix/qmgr", 900, f"{qid}: removed"),
        ]

    def _postscreen_noise(self, t: float) -> list[_Line]:
        rng = self._rng
        ip = self._attacker_ip(rng)
        port = rng.randrange(1024, 65000)
        ps = self._pid()
        L = self._line
        out = [L(t, "postfix/postscreen", ps, f"CONNECT from [{ip}]:{port} to [{SERVER_V4}]:25")]
        r = rng.random()
        if r < 0.35:
            out.append(
                L(
                    t + 0.2,
                    "postfix/postscreen",
                    ps,
                    f"PREGREET 11 after 0.{rng.randrange(10, 99)} from [{ip}]:{port}: EHLO User\\r\\n",
                )
            )
        elif r < 0.7:
            out.append(
                L(
                    t + 1.3,
                    "postfix/postscreen",
                    ps,
                    f"HANGUP after 1.{rng.randrange(1, 9)} from [{ip}]:{port} in tests before SMTP handshake",
                )
            )
        else:
            out.append(
                L(
                    t + 0.4,
                    "postfix/dnsblog",
                    self._pid(),
                    f"addr {ip} listed by domain zen.spamhaus.org as 127.0.0.{rng.choice((2, 3, 4))}",
                )
            )
            out.append(
                L(
                    t + 6.1,
                    "postfix/postscreen",
                    ps,
                    f"DNSBL rank 3 for [{ip}]:{port}",
                )
            )
        out.append(L(t + 6.2, "postfix/postscreen", ps, f"DISCONNECT [{ip}]:{port}"))
        return out

    # -- attacks ------------------------------------------------------------------------------------

    def _guess(
        self, t: float, ip: str, login: str, scen: str, per_conn: int = 1, service: str = ""
    ) -> list[_Line]:
        """One connection with ``per_conn`` failed guesses over SMTP AUTH or IMAP/POP3."""
        rng = self._rng
        service = service or rng.choice(
            ("submission", "submission", "smtp", "smtps", "imap", "pop3")
        )
        if service in ("imap", "pop3"):
            reason = "unknown" if login.split("@")[0] not in USERS else "mismatch"
            return self._dovecot_failure(t, ip, login, per_conn, scen, service, None, reason)
        prog = {"submission": "postfix/submission/smtpd", "smtps": "postfix/smtps/smtpd"}.get(
            service, "postfix/smtpd"
        )
        pid = self._pid()
        L = self._line
        out = [L(t, prog, pid, f"connect from unknown[{ip}]")]
        known = login.split("@")[0] in USERS
        tt = t + rng.uniform(0.5, 2.0)
        for _ in range(per_conn):
            mech = rng.choice(("LOGIN", "PLAIN"))
            detail = "UGFzc3dvcmQ6" if mech == "LOGIN" else "authentication failure"
            if self.config.auth_verbose:
                why = "Password mismatch" if known else "unknown user"
                out.append(L(tt - 0.05, "dovecot", 0, f"auth: passwd-file({login},{ip}): {why}"))
            out.append(
                L(
                    tt,
                    prog,
                    pid,
                    f"warning: unknown[{ip}]: SASL {mech} authentication failed: {detail}, "
                    f"sasl_username={login}",
                    _ATTEMPT,
                    scen,
                    (service, ip, login),
                )
            )
            tt += rng.uniform(2.0, 4.0)  # Dovecot's auth_failure_delay
        if rng.random() < 0.5:
            out.append(L(tt, prog, pid, f"lost connection after AUTH from unknown[{ip}]"))
            counters = f"ehlo=1 auth=0/{per_conn} commands=1/{per_conn + 1}"
        else:
            counters = f"ehlo=1 auth=0/{per_conn} quit=1 commands=2/{per_conn + 2}"
        out.append(L(tt + 0.01, prog, pid, f"disconnect from unknown[{ip}] {counters}"))
        return out

    def _dovecot_failure(
        self,
        t: float,
        ip: str,
        login: str,
        attempts: int,
        scen: str,
        service: str,
        sess: str | None,
        reason: str,
    ) -> list[_Line]:
        rng = self._rng
        sess = sess or self._session_id()
        L = self._line
        out: list[_Line] = []
        tt = t
        verbose = self.config.auth_verbose
        why = "Password mismatch" if reason == "mismatch" else "unknown user"
        for _ in range(attempts):
            if verbose:
                out.append(
                    L(
                        tt,
                        "dovecot",
                        0,
                        f"auth: passwd-file({login},{ip},<{sess}>): {why}",
                        _ATTEMPT,
                        scen,
                        (service, ip, login),
                    )
                )
            tt += rng.uniform(2.0, 5.0)
        secs = int(tt - t)
        closing = rng.choice(("Disconnected: Connection closed", "Aborted login by logging out"))
        if service == "pop3":
            closing = "Aborted login"
        out.append(
            L(
                tt,
                "dovecot",
                0,
                f"{service}-login: {closing} (auth failed, {attempts} attempts in {secs} secs): "
                f"user=<{login}>, method=PLAIN, rip={ip}, lip={SERVER_V4}, TLS, session=<{sess}>",
                _NONE if verbose else attempts,
                scen,
                (service, ip, login),
            )
        )
        return out

    def _scanner(self, t: float) -> list[_Line]:
        rng = self._rng
        ip = self._attacker_ip(rng)
        service = rng.choice(("submission", "smtp", "smtps", "imap"))
        out: list[_Line] = []
        for _ in range(rng.randint(1, 6)):
            out += self._guess(t, ip, self._guess_user(), "scanners", rng.randint(1, 3), service)
            t += rng.uniform(20, 150)
        return out

    def _rcpt_reject(self, t: float, ip: str | None, local: str, scen: str) -> list[_Line]:
        rng = self._rng
        ip = ip or self._attacker_ip(rng)
        pid = self._pid()
        L = self._line
        rcpt = f"{local}@{DOMAIN}"
        return [
            L(t, "postfix/smtpd", pid, f"connect from unknown[{ip}]"),
            L(
                t + 0.5,
                "postfix/smtpd",
                pid,
                f"NOQUEUE: reject: RCPT from unknown[{ip}]: 550 5.1.1 <{rcpt}>: Recipient address "
                f"rejected: User unknown in virtual mailbox table; from=<bounce@example.com> "
                f"to=<{rcpt}> proto=ESMTP helo=<WIN-{rng.getrandbits(24):06X}>",
                _PROBE,
                scen,
                ("smtp", ip, rcpt),
            ),
            L(
                t + 0.7,
                "postfix/smtpd",
                pid,
                f"disconnect from unknown[{ip}] ehlo=1 mail=1 rcpt=0/1 quit=1 commands=3/4",
            ),
        ]

    # -- scripted incidents -------------------------------------------------------------------------

    def _plan_incidents(self) -> None:
        rng = self._rng
        on = self.config.scenarios
        span = self._end - self._start
        day = 86400.0

        def when(fraction: float, hour: int) -> float:
            d = self._start + math.floor(fraction * span / day) * day
            return d + hour * 3600 + rng.randrange(0, 1800)

        if "spike" in on:
            start = when(0.62, 2)  # 02:xx UTC: a quiet night, like the real incident
            block = block_index(SPIKE_COUNTRY, rng)
            hosts = (
                f"198.{18 + (block >> 8)}.{block & 255}.{rng.randrange(2, 120)}",
                f"198.{18 + (block >> 8)}.{block & 255}.{rng.randrange(130, 250)}",
            )
            self._add_spike(start, hosts)
        if "botnet" in on:
            start = when(0.35, 9)
            self._add_botnet(start, hours=30, ips=max(400, round(900 * min(self._scale, 2.0))))
        if "sweep" in on:
            self._add_sweep(when(0.2, 14))
        if "ipv6" in on:
            self._add_ipv6(when(0.48, 20))
        if "enumeration" in on:
            self._add_enumeration(when(0.75, 4))
        if "breach" in on and "steady" in on:
            self._add_breach(when(0.8, 23))

    def _schedule(self, start: float, end: float, lines: list[_Line]) -> None:
        """Release precomputed lines into the hour that contains them."""
        lines.sort()
        box = {"i": 0}

        def release(hour: float) -> list[_Line]:
            i = box["i"]
            j = i
            while j < len(lines) and lines[j][0] < hour + 3600:
                j += 1
            box["i"] = j
            return lines[i:j]

        self._scheduled.append(release)

    def _add_spike(self, start: float, hosts: tuple[str, str]) -> None:
        rng = self._rng
        lines: list[_Line] = []
        duration = 39 * 60
        for ip in hosts:
            t = start + rng.uniform(0, 60)
            n = 0
            target = 103
            while n < target and t < start + duration:
                k = min(rng.randint(2, 4), target - n)
                lines += self._guess(
                    t, ip, self._guess_user(), "spike", k, rng.choice(("submission", "smtps"))
                )
                n += k
                t += rng.uniform(25, 70)
        self.truth.incidents.append(Incident("spike", start, start + duration, hosts, None))
        self._schedule(start, start + duration, lines)

    def _add_botnet(self, start: float, hours: int, ips: int) -> None:
        rng = self._rng
        lines: list[_Line] = []
        used: list[str] = []
        for _ in range(ips):
            ip = self._attacker_ip(rng)
            used.append(ip)
            t = start + rng.random() * hours * 3600
            for _ in range(rng.choice((1, 1, 1, 2, 2, 3))):
                lines += self._guess(
                    t, ip, BOTNET_TARGET, "botnet", 1, rng.choice(("imap", "submission"))
                )
                t += rng.uniform(600, 7200)
        self.truth.incidents.append(
            Incident(
                "botnet", start, start + hours * 3600, (f"{len(used)} addresses",), BOTNET_TARGET
            )
        )
        self._schedule(start, start + hours * 3600, lines)

    def _add_sweep(self, start: float) -> None:
        rng = self._rng
        block = block_index("NL", rng)
        net = f"198.{18 + (block >> 8)}.{block & 255}"
        lines: list[_Line] = []
        for host in range(1, 255):
            t = start + rng.random() * 3 * 3600
            lines += self._guess(t, f"{net}.{host}", self._guess_user(), "sweep", rng.randint(1, 3))
        self.truth.incidents.append(Incident("sweep", start, start + 3 * 3600, (f"{net}.0/24",)))
        self._schedule(start, start + 3 * 3600, lines)

    def _add_ipv6(self, start: float) -> None:
        rng = self._rng
        prefix = "2001:db8:bad:7"
        lines: list[_Line] = []
        t = start
        end = start + 8 * 3600
        while t < end:
            ip = f"{prefix}:{rng.getrandbits(16):x}:{rng.getrandbits(16):x}:{rng.getrandbits(16):x}:{rng.getrandbits(16):x}"
            lines += self._guess(t, ip, f"{rng.choice(USERS)}@{DOMAIN}", "ipv6", 1, "imap")
            t += rng.uniform(30, 120)
        self.truth.incidents.append(Incident("ipv6", start, end, (f"{prefix}::/64",)))
        self._schedule(start, end, lines)

    def _add_enumeration(self, start: float) -> None:
        rng = self._rng
        hosts = (self._attacker_ip(rng, "RU"), self._attacker_ip(rng, "CN"))
        lines: list[_Line] = []
        names = [f"{a}{b}" for a in PROBED for b in ("", ".smith", "1", "2020", ".office")]
        t = start
        for name in names * 4:
            lines += self._rcpt_reject(t, rng.choice(hosts), name, "enumeration")
            t += rng.uniform(3, 9)
        self.truth.incidents.append(Incident("enumeration", start, t, hosts))
        self._schedule(start, t, lines)

    def _add_breach(self, start: float) -> None:
        ip = self._steady[0]
        login = f"office@{DOMAIN}"
        sess = self._session_id()
        mpid = self._pid()
        lines = [
            self._line(
                start,
                "dovecot",
                0,
                f"imap-login: Login: user=<{login}>, method=PLAIN, rip={ip}, lip={SERVER_V4}, "
                f"mpid={mpid}, TLS, session=<{sess}>",
                _SUCCESS,
                "breach",
                ("imap", ip, login),
            ),
            self._line(
                start + 95,
                "dovecot",
                0,
                f"imap({login})<{mpid}><{sess}>: Disconnected: Logged out in=120 out=48211 deleted=0 "
                "expunged=0 trashed=0 hdr_count=0 hdr_bytes=0 body_count=0 body_bytes=0",
            ),
        ]
        self.truth.incidents.append(Incident("breach", start, start + 95, (ip,), login))
        self._schedule(start, start + 95, lines)


def generate(out: IO[str] | Path | str, config: DemoConfig | None = None) -> GroundTruth:
    """Write a demo log; the returned ground truth says what is in it."""
    return DemoLog(config).write(out)


def demo_end(now: float) -> datetime:
    """The demo's period ends at midnight UTC before ``now``, so year-less stamps stay in the past."""
    return datetime.fromtimestamp(now, UTC).replace(hour=0, minute=0, second=0, microsecond=0)
