"""Split a log line into its envelope (time, host, program, pid) and the program's message.

Formats: RFC 3164 (year inferred), RFC 5424, ISO 8601 / RFC 3339 (rsyslog, ``journalctl -o
short-iso``), Dovecot's own ``log_path`` file (no host, no ident) and ``journalctl -o json``.
Time conversions are cached per distinct stamp, so a busy log converts each second once.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta, tzinfo
from typing import NamedTuple
from zoneinfo import ZoneInfo

MONTHS = {
    m: i + 1
    for i, m in enumerate(
        ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
    )
}

# Program name given to Dovecot ``log_path`` lines, which carry no ident.
DOVECOT_LOGPATH = "dovecot"

_CACHE_MAX = 8192


class Envelope(NamedTuple):
    ts: float
    host: str
    program: str
    pid: str
    message: str
    cursor: str | None = None


def resolve_zone(name: str) -> tzinfo:
    """``local`` is the system zone (re-read from /etc/localtime), anything else an IANA name."""
    if name == "local":
        try:
            return ZoneInfo("localtime")
        except Exception:  # noqa: BLE001 - no /etc/localtime: fall back to the C library's offset
            offset = -time.timezone
            return UTC if offset == 0 else _fixed(offset)
    if name.upper() == "UTC":
        return UTC
    return ZoneInfo(name)


def _fixed(offset: int) -> tzinfo:
    from datetime import timezone

    return timezone(timedelta(seconds=offset))


class HeaderParser:
    """RFC 3164 stamps have no year. With a reference time (``now``, default: the clock) a
    stamp whose month is later than the reference month is last year's, otherwise this year's;
    with ``default_year`` the first stamp of an input takes that year. Either way, a step from
    December to January inside one input moves to the next year. Call ``start_input`` between
    inputs."""

    def __init__(
        self, zone: tzinfo, *, now: float | None = None, default_year: int | None = None
    ) -> None:
        self.zone = zone
        ref = datetime.fromtimestamp(time.time() if now is None else now, zone)
        self._ref_year = ref.year
        self._ref_month = ref.month
        self._default_year = default_year
        self._year: int | None = None
        self._last_month = 0
        self._bsd: dict[str, float] = {}
        self._days: dict[tuple[int, int, int], tuple[float, bool]] = {}
        self._iso: dict[str, float] = {}

    @property
    def minute_cache(self) -> dict[str, float]:
        """``Mon dd HH:MM`` -> POSIX seconds of that minute, for callers that inline the lookup."""
        return self._bsd

    def start_input(self) -> None:
        self._year = None
        self._last_month = 0
        self._bsd.clear()

    # -- RFC 3164 ---------------------------------------------------------------------------

    def bsd_time(self, stamp: str) -> float | None:
        """``Nov 21 10:15:02`` / ``Nov  1 09:04:17`` / ``Sep 8 07:16:27`` -> POSIX seconds.

        Cached per minute (``Nov 21 10:15``): the seconds are added as an integer, so a busy log
        converts each minute once and DST changes (on minute boundaries) stay exact.
        """
        key = stamp[:-3]
        cached = self._bsd.get(key)  # not try/except KeyError: a raised miss costs a traceback
        if cached is not None:
            try:
                return cached + int(stamp[-2:])
            except ValueError:
                return None
        month = MONTHS.get(stamp[:3])
        if month is None:
            return None
        try:
            day_s, hms = stamp[4:].split()
            day = int(day_s)
            hh, mm, ss = hms.split(":")
            hour, minute, second = int(hh), int(mm), int(ss)
        except ValueError:
            return None
        if not (0 <= second <= 60):
            return None
        if self._default_year is not None:
            year = self._default_year if self._year is None else self._year
            if self._last_month == 12 and month == 1:
                # December -> January inside one input: the new year began.
                year += 1
                self._bsd.clear()
        else:
            # A month later than the reference month cannot be this year's yet.
            year = self._ref_year - 1 if month > self._ref_month else self._ref_year
            if (
                self._year is not None
                and self._last_month == 12
                and month == 1
                and year <= self._year
            ):
                year = self._year + 1
                self._bsd.clear()
        self._year = year
        self._last_month = month
        try:
            base = self._minute_base(year, month, day, hour, minute)
        except ValueError:
            if month == 2 and day == 29:  # Feb 29 in a non-leap inferred year: the year before
                base = self._minute_base(year - 1, 2, 29, hour, minute)
            else:
                return None
        if len(self._bsd) >= _CACHE_MAX:
            self._bsd.clear()
        self._bsd[key] = base
        return base + second

    def _minute_base(self, year: int, month: int, day: int, hour: int, minute: int) -> float:
        """POSIX seconds of a local wall-clock minute (raises ValueError for no such date).

        A day whose UTC offset is the same at 00:00 and 23:59 has no DST change, so its minutes
        are midnight plus arithmetic: one zone conversion per day instead of per minute. A day
        with a change converts each minute exactly, as zoneinfo does (gaps and folds included).
        """
        key = (year, month, day)
        known = self._days.get(key)
        if known is None:
            first = datetime(year, month, day, tzinfo=self.zone)
            last = datetime(year, month, day, 23, 59, tzinfo=self.zone)
            uniform = first.utcoffset() == last.utcoffset()
            known = (first.timestamp(), uniform)
            if len(self._days) >= _CACHE_MAX:
                self._days.clear()
            self._days[key] = known
        midnight, uniform = known
        if uniform and 0 <= hour < 24 and 0 <= minute < 60:
            return midnight + hour * 3600 + minute * 60
        return datetime(year, month, day, hour, minute, tzinfo=self.zone).timestamp()

    # -- ISO 8601 / RFC 3339 -------------------------------------------------------------------

    def iso_time(self, stamp: str) -> float | None:
        """``2025-11-21T10:15:02.318842+01:00`` (also ``+0100``, ``Z``, no zone = configured)."""
        # Cache per minute and zone; seconds (with any fraction) are added as a float.
        n = len(stamp)
        if n < 19 or stamp[16] != ":":
            return None
        z = n
        last = stamp[-1]
        if last == "Z" or last == "z":
            z = n - 1
        else:
            for k in (6, 5, 3):
                if n - k >= 19 and stamp[n - k] in "+-":
                    z = n - k
                    break
        key = stamp[:16] + stamp[z:]
        try:
            seconds = float(stamp[17:z].replace(",", "."))
        except ValueError:
            return None
        cached = self._iso.get(key)
        if cached is not None:
            return cached + seconds
        try:
            dt = datetime.fromisoformat(stamp[:16] + ":00" + stamp[z:])
        except ValueError:
            return None
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=self.zone)
        base = dt.timestamp()
        if len(self._iso) >= _CACHE_MAX:
            self._iso.clear()
        self._iso[key] = base
        return base + seconds

    # -- whole lines --------------------------------------------------------------------------

    def split(self, line: str) -> Envelope | None:
        """The envelope of one line, or None when no known header format matches."""
        if not line:
            return None
        c = line[0]
        if c in "JFMASOND":
            if len(line) > 16 and line[15] == " " and line[9] == ":":
                ts = self.bsd_time(line[:15])
                rest = line[16:]
            elif len(line) > 15 and line[14] == " " and line[8] == ":":
                ts = self.bsd_time(line[:14])
                rest = line[15:]
            else:
                return None
            if ts is None:
                return None
            return _after_stamp(ts, rest)
        if c.isdigit():
            if len(line) > 20 and line[10] == " " and line[4] == "-" and line[13] == ":":
                # `2025-11-21 10:15:02 imap-login: ...` (a Dovecot log_timestamp in ISO order)
                ts = self.iso_time(line[:19])
                return None if ts is None else _after_stamp(ts, line[20:])
            sp = line.find(" ")
            if sp < 19 or line[10] != "T":
                return None
            ts = self.iso_time(line[:sp])
            if ts is None:
                return None
            return _after_stamp(ts, line[sp + 1 :])
        if c == "<":
            return self._rfc5424(line)
        if c == "{":
            return self._journal_json(line)
        return None

    def _rfc5424(self, line: str) -> Envelope | None:
        close = line.find(">", 1, 6)
        if close < 0 or not line[1:close].isdigit():
            return None
        body = line[close + 1 :]
        if not body.startswith("1 "):
            # A BSD line with only a PRI in front (forwarded syslog written raw).
            return self.split(body) if body[:1] != "<" else None
        parts = body.split(" ", 6)
        if len(parts) < 7:
            if len(parts) == 6:
                parts.append("")
            else:
                return None
        _, stamp, host, app, procid, _msgid, rest = parts
        if stamp == "-":
            return None
        ts = self.iso_time(stamp)
        if ts is None:
            return None
        msg = _skip_structured_data(rest)
        if msg is None:
            return None
        if msg.startswith("\ufeff"):
            msg = msg[1:]
        return Envelope(
            ts,
            "" if host == "-" else host,
            "" if app == "-" else app,
            "" if procid == "-" else procid,
            msg,
        )

    def _journal_json(self, line: str) -> Envelope | None:
        try:
            obj = json.loads(line)
        except ValueError:
            return None
        if not isinstance(obj, dict):
            return None
        msg = _journal_text(obj.get("MESSAGE"))
        stamp = obj.get("__REALTIME_TIMESTAMP")
        if msg is None or not isinstance(stamp, str) or not stamp.isdigit():
            return None
        program = _journal_text(obj.get("SYSLOG_IDENTIFIER")) or ""
        pid = _journal_text(obj.get("SYSLOG_PID")) or _journal_text(obj.get("_PID")) or ""
        host = _journal_text(obj.get("_HOSTNAME")) or ""
        cursor = obj.get("__CURSOR")
        return Envelope(
            int(stamp) / 1_000_000,
            host,
            program,
            pid,
            msg,
            cursor if isinstance(cursor, str) else None,
        )


def _after_stamp(ts: float, rest: str) -> Envelope:
    tok, _, msg = rest.partition(" ")
    if tok.endswith(":"):
        # No host: Dovecot log_path (``auth: Info: ...``) or a syslog without hostnames.
        prog = tok[:-1]
        if "[" in prog and prog.endswith("]"):
            name, _, pid = prog[:-1].partition("[")
            return Envelope(ts, "", name, pid, msg)
        if "/" in prog:
            return Envelope(ts, "", prog, "", msg)
        return Envelope(ts, "", DOVECOT_LOGPATH, "", rest)
    if tok.startswith(("auth(", "auth-worker(")):
        # Dovecot log_path lines whose first token holds a username with a space: the token is
        # never a host name, and the attacker text must not be read as "host program:".
        return Envelope(ts, "", DOVECOT_LOGPATH, "", rest)
    host = tok
    tok, _, msg = msg.partition(" ")
    if not tok.endswith(":"):
        return Envelope(ts, host, "", "", tok + " " + msg if msg else tok)
    tok = tok[:-1]
    if tok.endswith("]"):
        i = tok.find("[")
        if i > 0:
            return Envelope(ts, host, tok[:i], tok[i + 1 : -1], msg)
    return Envelope(ts, host, tok, "", msg)


def _skip_structured_data(rest: str) -> str | None:
    """Drop RFC 5424 STRUCTURED-DATA (``-`` or ``[id k="v"]...``) and the space after it."""
    if rest.startswith("-"):
        return rest[2:] if len(rest) > 1 else ""
    i = 0
    n = len(rest)
    while i < n and rest[i] == "[":
        i += 1
        in_value = False
        while i < n:
            ch = rest[i]
            if ch == "\\" and in_value:
                i += 2
                continue
            if ch == '"':
                in_value = not in_value
            elif ch == "]" and not in_value:
                break
            i += 1
        if i >= n:
            return None
        i += 1
    return rest[i + 1 :] if i < n else ""


def _journal_text(value: object) -> str | None:
    """A journal field: a string, an array of byte numbers (non-UTF-8), or a repeated field."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and value:
        if all(isinstance(b, int) and 0 <= b < 256 for b in value):
            return bytes(value).decode("utf-8", "replace")
        return _journal_text(value[0])
    return None
