"""Correlate parsed events so each login attempt is counted exactly once (docs/events.md).

One failed attempt can show up as a Postfix SASL warning, an ``auth=0/N`` disconnect counter, a
Dovecot passdb line, a 2.4 duplicate and a login summary. Per session the per-attempt lines win
and the summaries only fill in when no per-attempt line was seen. State is bounded: sessions are
evicted by log time (``session_ttl``) and by count (``max_sessions``).
"""

from __future__ import annotations

from collections import deque

from mailward.events import (
    AuthError,
    AuthFailure,
    AuthSuccess,
    Connection,
    Disconnect,
    Event,
    FailReason,
    Service,
    ip_key,
)
from mailward.factories import new_auth_failure, new_auth_success


class _SmtpSession:
    # A plain class, not a dataclass: compiled, its constructor is a C function (a compiled
    # dataclass keeps the generated Python __init__), and one is built per SMTP connection.
    __slots__ = ("auth_error", "last", "sasl_lines", "success")

    def __init__(self, last: float) -> None:
        self.last = last
        self.sasl_lines = 0
        self.auth_error = False
        self.success = False


def is_passdb_line(ev: AuthFailure) -> bool:
    """Dovecot auth-process lines (passdb/policy) are per-attempt and name no service."""
    return not ev.summary and ev.service is Service.UNKNOWN


def _same_user(a: str | None, b: str | None) -> bool:
    return a is None or b is None or a.lower() == b.lower()


class Correlator:
    """Feed events in log order with ``push``; call ``flush`` at the end of the input.

    ``hold`` is how long (log seconds) a session-less Dovecot passdb failure waits for the
    Postfix SASL warning of the same attempt before it is counted on its own.
    """

    def __init__(
        self, *, hold: float = 10.0, session_ttl: float = 3600.0, max_sessions: int = 100_000
    ) -> None:
        self.hold = hold
        self.session_ttl = session_ttl
        self.max_sessions = max_sessions
        self._now = float("-inf")
        self._pushes = 0
        self._smtpd: dict[str, _SmtpSession] = {}
        self._dovecot: dict[str, list[float]] = {}  # session id -> [per-attempt count, last ts]
        self._pending: list[AuthFailure] = []  # session-less passdb failures, oldest first
        # Recent Postfix SASL warnings: (ts, ip_key or -1, username). Int keys, not address
        # objects: ipaddress compares in Python code, and this deque is scanned per lookup.
        self._recent: deque[tuple[float, int, str | None]] = deque()
        self.dropped = 0  # duplicates removed (for tests and `mailward parse` summaries)

    # -- public -------------------------------------------------------------------------------

    def push(self, event: Event) -> list[Event]:
        """The events to pass on now, given the next event in log order."""
        out: list[Event] = []
        self._one(event, out)
        return out

    def push_many(self, events: list[Event]) -> list[Event]:
        """``push`` for a batch in log order, with one output list (the bulk path)."""
        out: list[Event] = []
        for event in events:
            self._one(event, out)  # a direct call when compiled; a bound method would not be
        return out

    def _one(self, event: Event, out: list[Event]) -> None:
        ts = event.ts
        if ts > self._now:
            self._now = ts
            if self._pending and self._pending[0].ts < ts - self.hold:
                self._expire_pending(ts, out)
            if self._recent and self._recent[0][0] < ts - self.hold:
                recent = self._recent
                while recent and recent[0][0] < ts - self.hold:
                    recent.popleft()
        self._pushes += 1
        if not self._pushes & 0xFFF:
            self._sweep()
        kind = type(event)
        if kind is AuthFailure:
            self._failure(event, out)  # type: ignore[arg-type]
        elif kind is Disconnect:
            self._disconnect(event, out)  # type: ignore[arg-type]
        elif kind is Connection:
            session = event.session  # type: ignore[attr-defined]
            if session is not None:
                self._smtpd[session] = _SmtpSession(ts)
            out.append(event)
        elif kind is AuthSuccess:
            self._success(event, out)  # type: ignore[arg-type]
        elif kind is AuthError:
            session = event.session  # type: ignore[attr-defined]
            if session is not None:
                self._session(session, ts).auth_error = True
            self.dropped += 1
        else:
            out.append(event)

    def tick(self, now: float) -> list[Event]:
        """Release held session-less passdb failures older than ``hold`` at wall-clock ``now``:
        a live daemon calls this periodically so a lone Dovecot line is not held while the log
        is quiet."""
        out: list[Event] = []
        if self._pending and self._pending[0].ts < now - self.hold:
            self._expire_pending(now, out)
        return out

    def flush(self) -> list[Event]:
        """Emit what is still held (session-less passdb failures) and forget all sessions."""
        out: list[Event] = list(self._pending)
        self._pending.clear()
        self._recent.clear()
        self._smtpd.clear()
        self._dovecot.clear()
        return out

    @property
    def open_sessions(self) -> int:
        return len(self._smtpd) + len(self._dovecot) + len(self._pending)

    # -- rules --------------------------------------------------------------------------------

    def _session(self, key: str, ts: float) -> _SmtpSession:
        s = self._smtpd.get(key)
        if s is None:
            s = self._smtpd[key] = _SmtpSession(ts)
        else:
            s.last = ts
        return s

    def _failure(self, ev: AuthFailure, out: list[Event]) -> None:
        if ev.summary:
            # Dovecot login summary: count it only if no per-attempt line named this session.
            seen = self._dovecot.pop(ev.session, None) if ev.session else None
            if seen is not None and seen[0] > 0:
                self.dropped += 1
                return
            out.append(ev)
            return
        if ev.service is Service.UNKNOWN:  # is_passdb_line(ev), inlined: summaries returned above
            if ev.session is not None:
                entry = self._dovecot.get(ev.session)
                if entry is None:
                    self._dovecot[ev.session] = [1, ev.ts]
                else:
                    entry[0] += 1
                    entry[1] = ev.ts
                out.append(ev)
                return
            # No session: an SMTP AUTH through Dovecot SASL; Postfix logs the same attempt.
            if self._take_recent(ev):
                self.dropped += 1
                return
            self._pending.append(ev)
            return
        # A Postfix SASL warning: the per-attempt line of its smtpd session.
        if ev.session is not None:
            self._session(ev.session, ev.ts).sasl_lines += 1
        match = self._take_pending(ev)
        if match is not None:
            self.dropped += 1
            if ev.reason is FailReason.UNSPECIFIED and match.reason is not FailReason.UNSPECIFIED:
                ev = new_auth_failure(
                    ts=ev.ts,
                    service=ev.service,
                    ip=ev.ip,
                    origin=ev.origin,
                    username=ev.username,
                    mechanism=ev.mechanism,
                    reason=match.reason,
                    session=ev.session,
                )
        else:
            self._recent.append((ev.ts, -1 if ev.ip is None else ip_key(ev.ip), ev.username))
        out.append(ev)

    def _disconnect(self, ev: Disconnect, out: list[Event]) -> None:
        s = self._smtpd.pop(ev.session, None) if ev.session else None
        failed = ev.auth_total - ev.auth_ok
        if failed > 0 and (s is None or (s.sasl_lines == 0 and not s.auth_error)):
            out.append(
                new_auth_failure(
                    ts=ev.ts,
                    service=ev.service,
                    ip=ev.ip,
                    origin=ev.origin,
                    username=None,
                    session=ev.session,
                    attempts=failed,
                    summary=True,
                )
            )
        if ev.auth_ok > 0 and (s is None or not s.success):
            out.append(
                new_auth_success(
                    ts=ev.ts,
                    service=ev.service,
                    ip=ev.ip,
                    origin=ev.origin,
                    username=None,
                    session=ev.session,
                )
            )
        out.append(ev)

    def _success(self, ev: AuthSuccess, out: list[Event]) -> None:
        if ev.session is not None and ev.service in (
            Service.SMTP,
            Service.SUBMISSION,
            Service.SMTPS,
        ):
            s = self._session(ev.session, ev.ts)
            if s.success:  # one `client=..., sasl_username=` line per message, one login
                self.dropped += 1
                return
            s.success = True
        out.append(ev)

    # -- session-less passdb vs Postfix SASL ----------------------------------------------------

    def _take_pending(self, ev: AuthFailure) -> AuthFailure | None:
        for i, p in enumerate(self._pending):
            if (
                (p.ip is ev.ip or p.ip == ev.ip)  # one parser hands out one object per address
                and abs(p.ts - ev.ts) <= self.hold
                and _same_user(p.username, ev.username)
            ):
                del self._pending[i]
                return p
        return None

    def _take_recent(self, ev: AuthFailure) -> bool:
        if not self._recent:
            return False
        key = -1 if ev.ip is None else ip_key(ev.ip)
        for i, (ts, ip, user) in enumerate(self._recent):
            if ip == key and abs(ts - ev.ts) <= self.hold and _same_user(user, ev.username):
                del self._recent[i]
                return True
        return False

    def _expire_pending(self, now: float, out: list[Event]) -> None:
        keep: list[AuthFailure] = []
        for p in self._pending:
            if p.ts < now - self.hold:
                out.append(p)
            else:
                keep.append(p)
        self._pending = keep

    def _sweep(self) -> None:
        cutoff = self._now - self.session_ttl
        for key in [k for k, s in self._smtpd.items() if s.last < cutoff]:
            del self._smtpd[key]
        for key in [k for k, v in self._dovecot.items() if v[1] < cutoff]:
            del self._dovecot[key]
        # Hard cap: drop the oldest-inserted sessions (dicts keep insertion order).
        for table in (self._smtpd, self._dovecot):
            excess = len(table) - self.max_sessions
            if excess > 0:
                for key in list(table)[:excess]:
                    del table[key]
