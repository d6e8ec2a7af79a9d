"""``LineParser``: one log line in, at most one typed event out, with statistics.

The envelope is split first (``envelope.py``), then the program name picks the message parser
through a cached table, so the many irrelevant lines (qmgr, cleanup, smtp, local, ...) cost one
dict lookup. Unknown or malformed lines are counted and skipped; parse() never raises on input.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from mailward.config.model import ParsingSettings
from mailward.events import Event, Origin
from mailward.factories import new_origin
from mailward.parsers.base import IPCache, ParseStats
from mailward.parsers.dovecot import PROCESS_PREFIXES, DovecotParser
from mailward.parsers.envelope import DOVECOT_LOGPATH, HeaderParser, resolve_zone
from mailward.parsers.postfix import PostfixParser

_Result = tuple[str, Event | None]
_Handler = Callable[[float, str, str, str, str], "_Result | None"]

_UNSEEN: Final = object()
# Handler codes of the bulk path (``parse_block``): an int compares and dispatches to a direct
# method call in compiled builds, where a stored bound method is a generic call.
_NONE: Final = 0
_SMTPD: Final = 1
_POSTSCREEN: Final = 2
_ANVIL: Final = 3
_DOVECOT: Final = 4
# Events are frozen; the origin is known only after parsing, so it is written to the slot once.
_SET_ORIGIN: Final[Callable[[Event, Origin], None]] = vars(Event)["origin"].__set__


class LineParser:
    """Parse lines of any supported header format into events.

    ``now`` (POSIX seconds, default: the current time) is the reference for year-less stamps;
    ``default_year`` pins their year instead. ``last_rule`` names the rule that handled the
    last line (None when unrecognised), for ``mailward parse`` and the golden-sample tests.
    """

    def __init__(
        self,
        settings: ParsingSettings | None = None,
        *,
        now: float | None = None,
        default_year: int | None = None,
    ) -> None:
        settings = settings or ParsingSettings()
        self.settings = settings
        self.headers = HeaderParser(
            resolve_zone(settings.timezone), now=now, default_year=default_year
        )
        self.ips = IPCache(settings.trusted_proxies)
        self.postfix = PostfixParser(self.ips, weak_signals=settings.weak_signals)
        self.dovecot = DovecotParser(self.ips, weak_signals=settings.weak_signals)
        self._dovecot_ident: _Handler = self.dovecot.ident
        self.stats = ParseStats()
        self.last_rule: str | None = None
        self._programs: dict[str, Any] = {}
        self._codes: dict[str, int] = {}

    def start_input(self) -> None:
        """Call between inputs: year inference restarts per file."""
        self.headers.start_input()

    # -- dispatch ----------------------------------------------------------------------------

    def _code(self, program: str) -> int:
        """Which handler takes a program's lines (``_NONE`` for programs we ignore)."""
        code = _NONE
        last = program.rsplit("/", 1)[-1]
        if program.startswith("dovecot") or program == DOVECOT_LOGPATH:
            code = _DOVECOT
        elif "/" in program:
            if last == "smtpd":
                code = _SMTPD
            elif last == "postscreen":
                code = _POSTSCREEN
            elif last == "anvil":
                code = _ANVIL
        if len(self._codes) < 4096:  # syslog tags are client-chosen only in spoofed logs
            self._codes[program] = code
        return code

    def _handler(self, program: str) -> _Handler | None:
        if program in self._programs:
            known: _Handler | None = self._programs[program]
            return known
        code = self._codes.get(program)
        if code is None:
            code = self._code(program)
        handler: _Handler | None = (
            None,
            self.postfix.smtpd,
            self.postfix.postscreen,
            self.postfix.anvil,
            self._dovecot_ident,
        )[code]
        if len(self._programs) < 4096:
            self._programs[program] = handler
        return handler

    def _message(self, ts: float, host: str, program: str, pid: str, msg: str) -> _Result | None:
        handler = self._handler(program)
        if handler is None:
            # An ident we do not know (e.g. Dovecot's instance_name): Dovecot messages still
            # start with their process name.
            if msg.startswith(PROCESS_PREFIXES):
                return self.dovecot.parse(ts, msg)
            return None
        return handler(ts, host, program, pid, msg)

    def _finish(self, result: _Result | None, origin: Origin | None) -> Event | None:
        stats = self.stats
        stats.lines += 1
        if result is None:
            stats.unrecognised += 1
            self.last_rule = None
            return None
        name, event = result
        self.last_rule = name
        stats.by_rule[name] += 1
        if event is None:
            stats.ignored += 1
            return None
        stats.recognised += 1
        stats.by_kind[event.kind] += 1
        if origin is not None:
            _SET_ORIGIN(event, origin)
        return event

    # -- public -------------------------------------------------------------------------------

    def parse(self, line: str, origin: Origin | None = None) -> Event | None:
        """The event in one line (without its newline), or None (counted in ``stats``)."""
        try:
            env = self.headers.split(line)
            result = None if env is None else self._message(env[0], env[1], env[2], env[3], env[4])
            if result is not None and origin is None and env is not None and env.cursor:
                origin = new_origin(source="journal", line=None, cursor=env.cursor)
        except (ValueError, IndexError, OverflowError):  # defensive: input never crashes a run
            result = None
        return self._finish(result, origin)

    def parse_at(self, line: str, source: str, lineno: int) -> Event | None:
        """``parse`` with the origin built only when an event comes out (the fast path).

        RFC 3164 lines (the common case) are split inline, and the program is looked up
        before the time is converted, so an irrelevant line costs a split and a dict lookup.
        """
        try:
            if line[15:16] == " " and line[9:10] == ":":
                parts = line[16:].split(" ", 2)
                if len(parts) == 3:
                    tok = parts[1]
                    host = parts[0]
                    # `host` ending in ':' is a Dovecot log_path process; `auth(` there may
                    # carry a username with blanks: both take the careful path below.
                    if tok[-1:] == ":" and host[-1:] != ":" and not host.startswith("auth"):
                        b = tok.find("[") if tok[-2:-1] == "]" else -1
                        program = tok[:b] if b > 0 else tok[:-1]
                        handler = self._programs.get(program, _UNSEEN)
                        if handler is _UNSEEN:
                            handler = self._handler(program)
                        if handler is None:
                            msg = parts[2]
                            if not msg.startswith(PROCESS_PREFIXES):
                                return self._finish(None, None)
                            handler = self._dovecot_ident
                        ts = self.headers.bsd_time(line[:15])
                        if ts is None:
                            return self._finish(None, None)
                        pid = tok[b + 1 : -2] if b > 0 else ""
                        result = handler(ts, host, program, pid, parts[2])
                        if result is None or result[1] is None:
                            return self._finish(result, None)
                        return self._finish(result, new_origin(source=source, line=lineno))
            env = self.headers.split(line)
            result = None if env is None else self._message(env[0], env[1], env[2], env[3], env[4])
        except (ValueError, IndexError, OverflowError):
            result = None
        if result is None or result[1] is None:
            return self._finish(result, None)
        cursor = env.cursor if env is not None else None
        return self._finish(result, new_origin(source=source, line=lineno, cursor=cursor))

    def parse_block(
        self, lines: list[str], source: str, first: int, *, origins: bool = True
    ) -> list[Event]:
        """Parse consecutive lines (numbered from ``first``) and return their events.

        The bulk path of ``read_events``: the RFC 3164 fast path of ``parse_at`` inlined in one
        loop, the envelope cut with ``find`` instead of ``split`` (no copy of the line's tail),
        handlers picked by a small integer so compiled builds call them directly, and the
        counters kept in locals. Same results and statistics as ``parse_at``; ``origins=False``
        leaves ``origin`` unset on fast-path events (saves one object each).
        """
        out: list[Event] = []
        codes = self._codes
        postfix = self.postfix
        dovecot = self.dovecot
        bsd_time = self.headers.bsd_time
        iso_time = self.headers.iso_time
        minutes = self.headers.minute_cache
        stats = self.stats
        rules: dict[str, int] = {}
        kinds: dict[str, int] = {}
        slow = self.parse_at
        fast = unrecognised = ignored = recognised = 0
        last_rule: str | None = None
        minute_key = ""
        minute_base = 0.0
        lineno = first - 1
        for line in lines:
            lineno += 1
            n = len(line)
            if n > 16 and line[15] == " " and line[9] == ":":
                start = 16  # RFC 3164
            elif n > 19 and line[10] == "T" and line[4] == "-":
                start = line.find(" ", 19) + 1  # ISO 8601 / RFC 3339
            else:
                start = 0
            if start:
                h = line.find(" ", start)  # host ends
                t = line.find(" ", h + 1) if h > 0 else -1  # syslog tag ends
                if (
                    t > h + 1
                    and line[t - 1] == ":"
                    and line[h - 1] != ":"
                    and line.find("auth", start, start + 4) < 0
                ):
                    fast += 1
                    result: _Result | None = None
                    try:
                        # `name[pid]:` as the general path reads it: the first `[`, not at
                        # the start, and the tag ends in `]:`; anything else is all name.
                        b = line.find("[", h + 1, t) if line[t - 2] == "]" else -1
                        if b <= h + 1:
                            b = -1
                        program = line[h + 1 : b] if b > 0 else line[h + 1 : t - 1]
                        code = codes.get(program, -1)
                        if code < 0:
                            code = self._code(program)
                        msg = line[t + 1 :]
                        if code == _NONE:
                            if not msg.startswith(PROCESS_PREFIXES):
                                unrecognised += 1
                                last_rule = None
                                continue
                            code = _DOVECOT
                        ts: float | None
                        if start == 16:
                            # Runs of lines share a minute: compare it in place (no key
                            # string, no hash) and add the two second digits.
                            d1 = ord(line[13]) - 48
                            d2 = ord(line[14]) - 48
                            if (
                                0 <= d1 <= 9
                                and 0 <= d2 <= 9
                                and minute_key
                                and line.startswith(minute_key)
                            ):
                                ts = minute_base + (d1 * 10 + d2)
                            else:
                                ts = bsd_time(line[:15])
                                base = minutes.get(line[:12])
                                if base is not None:
                                    minute_key, minute_base = line[:12], base
                        else:
                            ts = iso_time(line[: start - 1])
                        if ts is not None:
                            # Only smtpd reads host and pid (its session key).
                            if code == _SMTPD:
                                pid = line[b + 1 : t - 2] if b > 0 else ""
                                result = postfix.smtpd(ts, line[start:h], program, pid, msg)
                            elif code == _DOVECOT:
                                result = dovecot.ident(ts, "", program, "", msg)
                            elif code == _POSTSCREEN:
                                result = postfix.postscreen(ts, "", program, "", msg)
                            else:
                                result = postfix.anvil(ts, "", program, "", msg)
                    except (ValueError, IndexError, OverflowError):
                        result = None
                    if result is None:
                        unrecognised += 1
                        last_rule = None
                        continue
                    name, event = result
                    last_rule = name
                    rules[name] = rules.get(name, 0) + 1
                    if event is None:
                        ignored += 1
                        continue
                    recognised += 1
                    kind = event.kind
                    kinds[kind] = kinds.get(kind, 0) + 1
                    if origins:
                        _SET_ORIGIN(event, new_origin(source=source, line=lineno))
                    out.append(event)
                    continue
            # Everything else (other formats, Dovecot log_path files) takes the general path.
            stats.lines += fast
            stats.unrecognised += unrecognised
            stats.ignored += ignored
            stats.recognised += recognised
            fast = unrecognised = ignored = recognised = 0
            event = slow(line, source, lineno)
            last_rule = self.last_rule
            if event is not None:
                out.append(event)
        stats.lines += fast
        stats.unrecognised += unrecognised
        stats.ignored += ignored
        stats.recognised += recognised
        stats.by_rule.update(rules)
        stats.by_kind.update(kinds)
        self.last_rule = last_rule
        return out

    def parse_message(
        self,
        program: str,
        message: str,
        *,
        ts: float = 0.0,
        host: str = "",
        pid: str = "",
        origin: Origin | None = None,
    ) -> Event | None:
        """Parse a bare message whose program is known (``postfix/smtpd``, ``dovecot``)."""
        try:
            result = self._message(ts, host, program, pid, message)
        except (ValueError, IndexError, OverflowError):
            result = None
        return self._finish(result, origin)
