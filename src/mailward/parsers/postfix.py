"""Postfix messages (smtpd in every master.cf service, postscreen, anvil) -> events.

The client address is always taken from the fixed ``name[addr]`` right after Postfix's own text
(``connect from``, ``warning:``, ``RCPT from``); everything the client controls (sasl_username,
HELO, sender, recipient) comes after it, so it cannot move the address. Fixed-string checks run
before any regex; every regex is linear (no nested quantifiers).
"""

from __future__ import annotations

import re

from mailward.events import (
    Event,
    FailReason,
    Service,
    Violation,
)
from mailward.factories import (
    new_auth_error,
    new_auth_failure,
    new_auth_success,
    new_connection,
    new_disconnect,
    new_lost_connection,
    new_protocol_violation,
    new_rate_limit_warning,
    new_smtp_reject,
    new_unknown_recipient,
)
from mailward.parsers.base import IGNORED, IPCache, rule

R_CONNECT = rule("postfix.connect", "smtpd `connect from name[addr]`")
R_DISCONNECT = rule("postfix.disconnect", "smtpd `disconnect from name[addr] ... auth=0/N`")
R_SASL_FAILED = rule("postfix.sasl_failed", "smtpd `SASL <mech> authentication failed: ...`")
R_SASL_AUTH_SERVER = rule(
    "postfix.sasl_auth_server_lost",
    "smtpd `SASL ... failed: Connection lost to authentication server`: a local fault",
)
R_SASL_SUCCESS = rule("postfix.sasl_success", "smtpd `QUEUEID: client=..., sasl_username=...`")
R_USER_UNKNOWN = rule("postfix.user_unknown", "smtpd RCPT/VRFY reject `User unknown in ... table`")
R_LOST_AUTH = rule("postfix.lost_after_auth", "smtpd `lost connection after AUTH from ...`")
R_LOST_OTHER = rule(
    "postfix.lost_connection", "smtpd `lost connection after STAGE` (weak signal; not AUTH)"
)
R_TOO_MANY = rule("postfix.too_many_errors", "smtpd `too many errors after STAGE from ...`")
R_NON_SMTP = rule("postfix.non_smtp_command", "smtpd `warning: non-SMTP command from ...`")
R_PIPELINING = rule("postfix.improper_pipelining", "smtpd `improper command pipelining after`")
R_ANVIL_WARN = rule("postfix.rate_limit", "smtpd `warning: <what> limit exceeded: N from ...`")
R_ANVIL_STATS = rule("postfix.anvil_statistics", "anvil `statistics: max ...` (informational)")
R_PS_PREGREET = rule("postscreen.pregreet", "postscreen `PREGREET N after S from [addr]:port`")
R_PS_HANGUP = rule("postscreen.hangup", "postscreen `HANGUP after S from [addr]:port in tests`")
R_PS_NON_SMTP = rule("postscreen.non_smtp_command", "postscreen `NON-SMTP COMMAND from [addr]`")
R_PS_PIPELINING = rule("postscreen.pipelining", "postscreen `COMMAND PIPELINING from [addr]`")
R_PS_BARE_NL = rule("postscreen.bare_newline", "postscreen `BARE NEWLINE from [addr]`")
R_PS_LIMIT = rule(
    "postscreen.command_limit", "postscreen `COMMAND TIME|COUNT|LENGTH LIMIT from [addr]`"
)
R_REJECT = rule(
    "postfix.reject",
    "smtpd `NOQUEUE: reject: CMD from name[addr]: CODE ...` (not User unknown): relay, HELO, "
    "sender, client, DNSBL and policy rejects",
)
R_PS_REJECT = rule("postscreen.reject", "postscreen `NOQUEUE: reject: RCPT from [addr]:port: CODE`")

_Result = tuple[str, Event | None]


# `name[addr]` or `name[addr]:port`; a name never holds brackets or blanks (Postfix checks it).
_CLIENT = r"([^\[\]\s]*)\[([^\[\]\s]*)\](?::\d+)?"
_SASL = re.compile(r"warning: " + _CLIENT + r": SASL ([A-Za-z0-9_-]+) authentication failed:? ?")
_ANVIL = re.compile(
    r"warning: (Connection rate|Connection concurrency|Message delivery request rate|"
    r"Recipient address rate|New TLS session rate|AUTH command rate) limit exceeded: (\d+) from "
    + _CLIENT
    + r" for service (\S+)"
)
_STAGE_FROM = re.compile(
    r"(?:[A-Za-z0-9]+: )?(lost connection|too many errors|improper command "
    r"pipelining|timeout) after ([A-Za-z-]+|\.)(?: \(\d+ bytes\))? from " + _CLIENT
)
_REJECT = re.compile(r"(?:NOQUEUE|[0-9A-Za-z]+): reject: (RCPT|VRFY) from " + _CLIENT + r": ")
_ANY_REJECT = re.compile(
    r"(?:NOQUEUE|[0-9A-Za-z]+): (?:milter-)?reject: ([A-Z-]+) from "
    + _CLIENT
    + r": ([45]\d\d [45]\.\d{1,3}\.\d{1,3})? ?"
)
# Server texts that name the reason (checked in this order, on the text after the code).
_REJECT_CATEGORIES = (
    ("blocked using ", "dnsbl"),
    ("Relay access denied", "relay_denied"),
    ("Helo command rejected", "helo_rejected"),
    ("Sender address rejected", "sender_rejected"),
    ("Client host rejected", "client_rejected"),
    ("Recipient address rejected", "recipient_rejected"),
    ("Data command rejected", "data_rejected"),
    ("Service unavailable", "dnsbl"),
)
_CLIENT_LINE = re.compile(r"[0-9A-Za-z]+: client=" + _CLIENT + r"(?:, |$)")
_PS_ADDR = re.compile(r"\[([^\[\]\s]+)\]:\d+")
_RCPT_ADDR = re.compile(r"<([^<>\s]*)>: Recipient address rejected: User unknown in ")
_LIMIT_NAME = {
    "Connection rate": "connection_rate",
    "Connection concurrency": "connection_concurrency",
    "Message delivery request rate": "message_rate",
    "Recipient address rate": "recipient_rate",
    "New TLS session rate": "tls_session_rate",
    "AUTH command rate": "auth_rate",
}
_WEAK_STAGES = frozenset({"CONNECT", "EHLO", "HELO", "STARTTLS", "UNKNOWN"})


def service_for(program: str) -> Service:
    """master.cf service from the program name.

    ``postfix/submission/smtpd`` -> SUBMISSION, ``postfix/smtps/smtpd`` -> SMTPS; any other
    component between the syslog name and ``smtpd`` (``postfix/10025/smtpd``, ``postfix/amavis``)
    is an extra SMTP listener -> SMTP, unless it names 587/465. ``postscreen`` -> POSTSCREEN.
    """
    parts = program.lower().split("/")
    if parts[-1] == "postscreen":
        return Service.POSTSCREEN
    for part in parts[:-1]:
        if "submission" in part or part == "587":
            return Service.SUBMISSION
        if "smtps" in part or part == "465":
            return Service.SMTPS
    return Service.SMTP


def _sasl_username(text: str) -> str | None:
    # `, sasl_username=` is appended last (Postfix >= 3.9); the reason before it is server text,
    # so the first occurrence is the real field and the username (attacker text) is all the rest.
    i = text.find(", sasl_username=")
    if i < 0:
        if text.startswith("sasl_username="):
            name = text[14:]
        else:
            return None
    else:
        name = text[i + 16 :]
    return None if name in ("", "(unavailable)") else name


class PostfixParser:
    """Parses the message part of Postfix lines; ``weak_signals`` decides whether lost
    connections before AUTH become events."""

    def __init__(self, ips: IPCache, *, weak_signals: bool = False) -> None:
        self.ips = ips
        self.weak_signals = weak_signals
        self._services: dict[str, Service] = {}

    def _service(self, program: str) -> Service:
        try:
            return self._services[program]
        except KeyError:
            svc = self._services[program] = service_for(program)
            return svc

    # -- smtpd --------------------------------------------------------------------------------

    def smtpd(self, ts: float, host: str, program: str, pid: str, msg: str) -> _Result | None:
        if msg.startswith("connect from "):
            i = msg.find("[", 13)
            j = msg.find("]", i)
            if i < 0 or j < 0:
                return None
            return R_CONNECT, new_connection(
                ts=ts,
                service=self._services.get(program) or self._service(program),
                ip=self.ips.get(msg[i + 1 : j]),
                session=f"{host}:{program}[{pid}]",
            )
        if msg.startswith("disconnect from "):
            return self._disconnect(ts, host, program, pid, msg)
        if msg.startswith("warning: "):
            if "authentication failed" in msg:
                return self._sasl(ts, host, program, pid, msg)
            if "limit exceeded" in msg:
                m = _ANVIL.match(msg)
                if m is None:
                    return None
                return R_ANVIL_WARN, new_rate_limit_warning(
                    ts=ts,
                    service=self._services.get(program) or self._service(program),
                    ip=self.ips.get(m[4]),
                    limit=_LIMIT_NAME[m[1]],
                    count=int(m[2]),
                )
            if msg.startswith("warning: non-SMTP command from "):
                return self._client_violation(
                    ts, program, msg, 31, R_NON_SMTP, Violation.NON_SMTP_COMMAND
                )
            return None
        if " after " in msg:
            staged = self._stage(ts, host, program, pid, msg)
            if staged is not None:
                return staged
        if "reject: " in msg:
            if "User unknown in " not in msg:
                return self._reject(ts, program, msg, R_REJECT)
            m = _REJECT.match(msg)
            if m is None:
                return self._reject(ts, program, msg, R_REJECT)
            tail = msg[m.end() :]
            r = _RCPT_ADDR.search(tail)
            return R_USER_UNKNOWN, new_unknown_recipient(
                ts=ts,
                service=self._services.get(program) or self._service(program),
                ip=self.ips.get(m[3]),
                recipient=r[1] if r else None,
                sender=_field(tail, " from=<"),
                helo=_field(tail, " helo=<"),
            )
        if "sasl_username=" in msg:
            m = _CLIENT_LINE.match(msg)
            if m is None:
                return None
            tail = msg[m.end() :]
            method = _field(tail, "sasl_method=", ",")
            return R_SASL_SUCCESS, new_auth_success(
                ts=ts,
                service=self._services.get(program) or self._service(program),
                ip=self.ips.get(m[2]),
                username=_sasl_username(tail),
                mechanism=method,
                session=f"{host}:{program}[{pid}]",
            )
        return None

    def _disconnect(self, ts: float, host: str, program: str, pid: str, msg: str) -> _Result | None:
        i = msg.find("[", 16)
        j = msg.find("]", i)
        if i < 0 or j < 0:
            return None
        tail = msg[j + 1 :]
        auth_ok, auth_total = _counter(tail, " auth=")
        cmd_ok, cmd_total = _counter(tail, " commands=")
        return R_DISCONNECT, new_disconnect(
            ts=ts,
            service=self._services.get(program) or self._service(program),
            ip=self.ips.get(msg[i + 1 : j]),
            session=f"{host}:{program}[{pid}]",
            auth_ok=auth_ok,
            auth_total=auth_total,
            commands_ok=cmd_ok,
            commands_total=cmd_total,
        )

    def _sasl(self, ts: float, host: str, program: str, pid: str, msg: str) -> _Result | None:
        cut = sasl_failure_cut(msg)
        if cut is None:
            return None
        address, mech, end = cut
        tail = msg[end:]
        service = self._services.get(program) or self._service(program)
        session = f"{host}:{program}[{pid}]"
        if tail.startswith("Connection lost to authentication server"):
            return R_SASL_AUTH_SERVER, new_auth_error(
                ts=ts,
                service=service,
                ip=self.ips.get(address),
                username=_sasl_username(tail),
                detail="Connection lost to authentication server",
                session=session,
            )
        return R_SASL_FAILED, new_auth_failure(
            ts=ts,
            service=service,
            ip=self.ips.get(address),
            username=_sasl_username(tail),
            mechanism=mech.upper(),
            reason=FailReason.UNSPECIFIED,
            session=session,
        )

    def _stage(self, ts: float, host: str, program: str, pid: str, msg: str) -> _Result | None:
        m = _STAGE_FROM.match(msg)
        if m is None:
            return None
        what, stage, addr = m[1], m[2], m[4]
        service = self._services.get(program) or self._service(program)
        session = f"{host}:{program}[{pid}]"
        if what == "lost connection":
            if stage == "AUTH":
                return R_LOST_AUTH, new_lost_connection(
                    ts=ts, service=service, ip=self.ips.get(addr), stage=stage, session=session
                )
            if not self.weak_signals or stage not in _WEAK_STAGES:
                return R_LOST_OTHER, None
            return R_LOST_OTHER, new_lost_connection(
                ts=ts, service=service, ip=self.ips.get(addr), stage=stage, session=session
            )
        if what == "too many errors":
            return R_TOO_MANY, new_protocol_violation(
                ts=ts,
                service=service,
                ip=self.ips.get(addr),
                violation=Violation.TOO_MANY_ERRORS,
                detail=f"after {stage}",
            )
        if what == "improper command pipelining":
            return R_PIPELINING, new_protocol_violation(
                ts=ts,
                service=service,
                ip=self.ips.get(addr),
                violation=Violation.PIPELINING,
                detail=f"after {stage}",
            )
        return None  # timeout after ...: not a signal

    def _reject(self, ts: float, program: str, msg: str, name: str) -> _Result | None:
        m = _ANY_REJECT.match(msg)
        if m is None or not m[4]:
            return None  # no SMTP code: a resource limit such as "too many connections"
        tail = msg[m.end() :]
        # The reason is Postfix's text; addresses in <...> before it belong to the client.
        semi = tail.find("; from=")
        if semi < 0:
            semi = tail.find("; to=")
        text = tail if semi < 0 else tail[:semi]
        category = "other"
        for needle, cat in _REJECT_CATEGORIES:
            if needle in text:
                category = cat
                break
        rest = tail[semi:] if semi >= 0 else ""
        return name, new_smtp_reject(
            ts=ts,
            service=self._services.get(program) or self._service(program),
            ip=self.ips.get(m[3]),
            command=m[1],
            category=category,
            recipient=_field(rest, " to=<"),
            helo=_field(rest, " helo=<"),
        )

    def _client_violation(
        self, ts: float, program: str, msg: str, at: int, name: str, violation: Violation
    ) -> _Result | None:
        i = msg.find("[", at)
        j = msg.find("]", i)
        if i < 0 or j < 0:
            return None
        detail = msg[j + 1 :].lstrip(":0123456789 ")
        return name, new_protocol_violation(
            ts=ts,
            service=self._services.get(program) or self._service(program),
            ip=self.ips.get(msg[i + 1 : j]),
            violation=violation,
            detail=detail[:200],
        )

    # -- postscreen -----------------------------------------------------------------------------

    def postscreen(self, ts: float, host: str, program: str, pid: str, msg: str) -> _Result | None:
        c = msg[:1]
        if c == "P" and msg.startswith("PREGREET "):
            return self._ps(ts, msg, R_PS_PREGREET, Violation.PREGREET)
        if c == "H" and msg.startswith("HANGUP "):
            return self._ps(ts, msg, R_PS_HANGUP, Violation.HANGUP)
        if c == "N" and msg.startswith("NON-SMTP COMMAND "):
            return self._ps(ts, msg, R_PS_NON_SMTP, Violation.NON_SMTP_COMMAND)
        if c == "C" and msg.startswith("COMMAND PIPELINING "):
            return self._ps(ts, msg, R_PS_PIPELINING, Violation.PIPELINING)
        if c == "B" and msg.startswith("BARE NEWLINE "):
            return self._ps(ts, msg, R_PS_BARE_NL, Violation.BARE_NEWLINE)
        if c == "C" and msg.startswith(
            ("COMMAND TIME LIMIT ", "COMMAND COUNT LIMIT ", "COMMAND LENGTH LIMIT ")
        ):
            return self._ps(ts, msg, R_PS_LIMIT, Violation.COMMAND_LIMIT)
        if c == "N" and msg.startswith("NOQUEUE: reject: "):
            return self._reject(ts, program, msg, R_PS_REJECT)
        return None

    def _ps(self, ts: float, msg: str, name: str, violation: Violation) -> _Result | None:
        # The address follows Postfix's own " from " (or "for") and precedes any client text.
        i = msg.find(" from [")
        if i < 0:
            return None
        m = _PS_ADDR.match(msg, i + 6)
        if m is None:
            return None
        detail = msg[:i] + msg[m.end() :]
        return name, new_protocol_violation(
            ts=ts,
            service=Service.POSTSCREEN,
            ip=self.ips.get(m[1]),
            violation=violation,
            detail=detail[:200],
        )

    # -- anvil --------------------------------------------------------------------------------

    def anvil(self, ts: float, host: str, program: str, pid: str, msg: str) -> _Result | None:
        if msg.startswith("statistics: "):
            return R_ANVIL_STATS, None
        return None


def sasl_failure_cut(msg: str) -> tuple[str, str, int] | None:
    """``warning: name[addr](:port)?: SASL MECH authentication failed:? ?`` at the start of
    ``msg`` -> (addr, MECH, end of that prefix), or None: what ``_SASL.match`` gives.

    The usual line is cut with ``find`` (``startswith`` with a position is a generic call even
    compiled; a bounded ``find`` is not) and accepted only when every piece is plainly clean
    (printable, no blank, no bracket; an alphanumeric mechanism), where the regex could not
    read it otherwise; anything else goes to the regex. A test holds both to the same answers.
    """
    if not msg.startswith("warning: "):
        return None
    i = msg.find("[", 9)
    j = msg.find("]", i + 1) if i > 0 else -1
    if j > 0 and msg.find(": SASL ", j + 1, j + 8) == j + 1:
        q = msg.find(" ", j + 8)
        if q > 0 and msg.find(" authentication failed", q, q + 22) == q:
            name = msg[9:i]
            address = msg[i + 1 : j]
            mech = msg[j + 8 : q]
            if _clean(name) and _clean(address) and mech.isascii() and mech.isalnum():
                end = q + 22
                n = len(msg)
                if end < n and msg[end] == ":":
                    end += 1
                if end < n and msg[end] == " ":
                    end += 1
                return address, mech, end
    # One split instead of match, end and groups (match-object methods are generic calls).
    parts = _SASL.split(msg, 1)
    if len(parts) != 5 or parts[0]:
        return None
    return parts[2], parts[3], len(msg) - len(parts[4])


def _clean(text: str) -> bool:
    """Empty, or printable with no blank and no bracket (printable excludes every other
    whitespace): text that the regex's ``[^\\[\\]\\s]*`` reads the same way."""
    return not text or (
        text.isprintable() and " " not in text and "[" not in text and "]" not in text
    )


def _counter(text: str, key: str) -> tuple[int, int]:
    """``auth=0/2`` -> (0, 2); ``auth=1`` -> (1, 1); absent or malformed -> (0, 0)."""
    i = text.find(key)
    if i < 0:
        return 0, 0
    i += len(key)
    j = text.find(" ", i)
    value = text[i:] if j < 0 else text[i:j]
    if len(value) == 3 and value[1] == "/":  # `0/1`: the usual shape, read digit by digit
        ok_d = ord(value[0]) - 48
        total_d = ord(value[2]) - 48
        if 0 <= ok_d <= 9 and 0 <= total_d <= 9:
            return ok_d, total_d
    ok_s, slash, total_s = value.partition("/")
    try:
        ok = int(ok_s)
        return ok, int(total_s) if slash else ok
    except ValueError:
        return 0, 0


def _field(text: str, key: str, end: str = ">") -> str | None:
    i = text.find(key)
    if i < 0:
        return None
    i += len(key)
    j = text.find(end, i)
    return text[i:] if j < 0 else text[i:j]


__all__ = ["PostfixParser", "service_for", "IGNORED"]
