"""Dovecot 2.3 and 2.4 messages (login processes, auth and auth-worker passdb lines) -> events.

Login summaries end in server-generated ``key=value`` fields after the attacker's ``user=<...>``,
so the address is the LAST ``rip=``. passdb lines put the username before the address
(``driver(user,ip[,<session>]): result``): the line is used only when exactly one well-formed
``,ip[,<session>]): `` closes the prefix, otherwise it is ambiguous and skipped. Passwords that
``auth_verbose_passwords`` adds are never kept.
"""

from __future__ import annotations

import re

from mailward.events import (
    Event,
    FailReason,
    Service,
)
from mailward.factories import new_auth_failure, new_auth_success, new_login_aborted
from mailward.parsers.base import IPCache, rule

R_LOGIN = rule("dovecot.login", "login process `Login: user=<...>, method=..., rip=...` (success)")
R_LOGIN_FAILED = rule(
    "dovecot.login_auth_failed",
    "login process summary `(auth failed, N attempts in S secs)` (2.3 Disconnected/Aborted "
    "login, 2.4 Login aborted ... (auth_failed))",
)
R_LOGIN_NO_AUTH = rule(
    "dovecot.login_no_auth",
    "login process ended without a password (`no auth attempts`, disallowed plaintext, TLS "
    "handshake...): weak signal",
)
R_PASSDB = rule(
    "dovecot.passdb_failed",
    "auth/auth-worker `driver(user,ip[,<session>]): unknown user | Password mismatch | "
    "pam_authenticate() failed`",
)
R_POLICY = rule(
    "dovecot.policy_refused", "auth `policy(user,ip): Authentication failure due to policy server`"
)
R_POLICY_INFO = rule(
    "dovecot.policy_info", "auth `policy(...)`: action/HTTP error lines (informational)"
)
R_AUTH24 = rule(
    "dovecot.auth24_failed",
    "2.4 `auth(user,ip,sasl:mech)<session>: ... driver: Password mismatch | unknown user`",
)
R_WORKER24 = rule(
    "dovecot.auth_worker24_duplicate",
    "2.4 `auth-worker(user,ip)<pid><session>: ...` repeats the auth process line: ignored",
)
R_AMBIGUOUS = rule(
    "dovecot.passdb_ambiguous",
    "passdb line whose username imitates the `,ip): ` structure: skipped, address unknowable",
)


_Result = tuple[str, Event | None]

LOGIN_SERVICES = {
    "imap-login": Service.IMAP,
    "pop3-login": Service.POP3,
    "submission-login": Service.SUBMISSION,
    "managesieve-login": Service.MANAGESIEVE,
}
PROCESS_PREFIXES = (
    "imap-login:",
    "pop3-login:",
    "submission-login:",
    "managesieve-login:",
    "auth:",
    "auth-worker(",
    "auth(",
)
_LEVELS = ("Info: ", "Warning: ", "Error: ", "Debug: ", "Fatal: ", "Panic: ")

_ATTEMPTS = re.compile(r"\(auth failed, (\d+) attempts?(?: in \d+ secs?)?\)")
# passdb prefix end: `,<ip>): ` or `,<ip>,<session>): `; an address never holds `,()<> `.
_IP = r"([0-9A-Fa-f.:]+(?:%[A-Za-z0-9]+)?)"
_PASSDB_END = re.compile(r"," + _IP + r"(?:,<([^<>\s]*)>)?\): ")
_DRIVER = re.compile(r"(?:^|: )([a-z][a-z0-9_-]*)\(")
# 2.4: `auth(user,ip,sasl:plain)<session>: ` (the mech part and the session are optional)
_AUTH24_END = re.compile(r"," + _IP + r"(?:,sasl:([A-Za-z0-9_-]+))?\)((?:<[^<>\s]*>)*): ")


def _strip_level(msg: str) -> str:
    if msg[:1] in "IWEDFP":
        for level in _LEVELS:
            if msg.startswith(level):
                return msg[len(level) :]
    return msg


def _passdb_reason(tail: str) -> tuple[str, FailReason] | None:
    """Classify the text after the passdb prefix (server text, then maybe a password)."""
    if tail.startswith("unknown user"):
        return R_PASSDB, FailReason.UNKNOWN_USER
    if tail.startswith("Password mismatch"):
        return R_PASSDB, FailReason.BAD_PASSWORD
    if tail.startswith("pam_authenticate() failed: "):
        text = tail[27:]
        if text.startswith("User not known"):
            return R_PASSDB, FailReason.UNKNOWN_USER
        if text.startswith("Authentication failure"):
            return R_PASSDB, FailReason.BAD_PASSWORD
        return R_PASSDB, FailReason.UNSPECIFIED
    if tail.startswith("Authentication failure due to policy server refusal"):
        return R_POLICY, FailReason.POLICY_REJECT
    if tail.startswith(("Policy check action", "Policy server HTTP error")):
        return R_POLICY_INFO, FailReason.UNSPECIFIED
    return None


_IP_CHARS = "0123456789abcdefABCDEF.:"


def passdb_cut(text: str) -> tuple[str, str, str | None, str] | tuple[()] | None:
    """``user,ip[,<session>]): tail`` -> (user, ip, session, tail); ``()`` when the end
    structure ``,ip[,<session>]): `` appears more than once (a username imitating it: the
    address is unknowable); None when it is absent. What ``_PASSDB_END`` finds.

    When ``): `` occurs once, the structure can only end there, and the usual line (a plain
    address, a plain session id) is cut with ``rfind``; anything else goes to the regex. A test
    holds both to the same answers.
    """
    k = text.find("): ")
    if k > 0 and text.find("): ", k + 3) < 0:
        session: str | None = None
        head = text[:k]
        if head.endswith(">"):
            p = head.rfind(",<")
            if p >= 0:
                session = head[p + 2 : -1]
                head = head[:p]
        r = head.rfind(",")
        if r >= 0:
            address = head[r + 1 :]
            if address and not address.strip(_IP_CHARS) and (session is None or _plain(session)):
                return head[:r], address, session, text[k + 3 :]
    # One split does what search, span, a second search and groups would (match methods are
    # generic calls, even compiled): [user, ip, session, tail], more parts when the structure
    # appears twice, one part when it is absent.
    parts = _PASSDB_END.split(text, 2)
    if len(parts) == 1:
        return None
    if len(parts) != 4:
        return ()
    return parts[0], parts[1], parts[2], parts[3]


def _plain(session: str) -> bool:
    """No ``<``, ``>`` or whitespace (what the regex allows in a session id), by C-level scans;
    printable excludes every whitespace but the blank."""
    return (
        not session
        or session.isprintable()
        and " " not in session
        and "<" not in session
        and ">" not in session
    )


class DovecotParser:
    def __init__(self, ips: IPCache, *, weak_signals: bool = False) -> None:
        self.ips = ips
        self.weak_signals = weak_signals

    def parse(self, ts: float, text: str) -> _Result | None:
        """``text`` is the message after the syslog ident: ``<process>: [Level: ]<message>``."""
        return self.ident(ts, "", "", "", text)

    def ident(self, ts: float, host: str, program: str, pid: str, text: str) -> _Result | None:
        """``parse`` with the signature of a ``LineParser`` program handler (one call less
        per Dovecot line on the bulk path)."""
        if text.startswith("auth("):
            return self._auth24(ts, text)
        process, sep, msg = text.partition(": ")
        if not sep:
            return None
        svc = LOGIN_SERVICES.get(process)
        if svc is not None:
            return self._login(ts, svc, _strip_level(msg))
        if process == "auth" or process.startswith("auth-worker("):
            if process.startswith("auth-worker(") and not process[12:-1].isdigit():
                return R_WORKER24, None
            return self._passdb(ts, _strip_level(msg))
        return None

    # -- login processes ----------------------------------------------------------------------

    def _login(self, ts: float, service: Service, msg: str) -> _Result | None:
        j = msg.rfind(" rip=")
        if j < 0:
            return None
        end = msg.find(",", j)
        ip = self.ips.get(msg[j + 5 : end] if end > 0 else msg[j + 5 :])
        u = msg.find("user=<")
        head = msg if u < 0 else msg[:u]  # server text before any attacker-controlled field
        username: str | None = None
        method: str | None = None
        if 0 <= u < j:
            k = msg.rfind(">,", u + 6, j + 1)
            if k >= 0:
                username = msg[u + 6 : k] or None
                mm = msg.find(" method=", k, j)
                if mm >= 0:
                    me = msg.find(",", mm)
                    method = msg[mm + 8 : me] if me > 0 else None
        session = None
        s = msg.find("session=<", j)
        if s >= 0:
            se = msg.find(">", s)
            if se > 0:
                session = msg[s + 9 : se]
        if head.startswith(("Login: ", "Logged in: ")):
            return R_LOGIN, new_auth_success(
                ts=ts, service=service, ip=ip, username=username, mechanism=method, session=session
            )
        m = _ATTEMPTS.search(head)
        if m is not None:
            return R_LOGIN_FAILED, new_auth_failure(
                ts=ts,
                service=service,
                ip=ip,
                username=username,
                mechanism=method,
                reason=FailReason.UNSPECIFIED,
                session=session,
                attempts=int(m[1]),
                summary=True,
            )
        if "proxy dest auth failed" in head or "(proxy_dest_auth_failed)" in head:
            # A proxy: the backend refused the password the client gave.
            return R_LOGIN_FAILED, new_auth_failure(
                ts=ts,
                service=service,
                ip=ip,
                username=username,
                mechanism=method,
                reason=FailReason.UNSPECIFIED,
                session=session,
                attempts=1,
                summary=True,
            )
        if head.startswith(("Disconnected", "Aborted login", "Login aborted")):
            if not self.weak_signals:
                return R_LOGIN_NO_AUTH, None
            detail = head.rstrip(": ")
            return R_LOGIN_NO_AUTH, new_login_aborted(
                ts=ts,
                service=service,
                ip=ip,
                username=username,
                detail=detail[:200],
                session=session,
            )
        return None

    # -- passdb -------------------------------------------------------------------------------

    def _passdb(self, ts: float, msg: str) -> _Result | None:
        if not (
            "unknown user" in msg
            or "mismatch" in msg
            or "pam_authenticate" in msg
            or "olicy" in msg
        ):
            return None
        # Common case first: the message starts with `driver(`; else find it after prefixes
        # such as `conn unix:auth-worker (pid=..,uid=..): auth-worker<42>: `.
        p = msg.find("(")
        if p > 0 and " " not in msg[:p] and ":" not in msg[:p]:
            start = p + 1
        else:
            d = _DRIVER.search(msg)
            if d is None:
                return None
            start = d.end()
        cut = passdb_cut(msg[start:])
        if cut is None:
            return None
        if not cut:
            return R_AMBIGUOUS, None
        user, address, session, tail = cut
        classified = _passdb_reason(tail)
        if classified is None:
            return None
        name, reason = classified
        if name == R_POLICY_INFO:
            return name, None
        return name, new_auth_failure(
            ts=ts,
            service=Service.UNKNOWN,
            ip=self.ips.get(address),
            username=user or None,
            reason=reason,
            session=session or None,
        )

    def _auth24(self, ts: float, msg: str) -> _Result | None:
        if not ("unknown user" in msg or "mismatch" in msg or "pam_authenticate" in msg):
            return None
        e = _AUTH24_END.search(msg, 5)
        if e is None:
            return None
        if _AUTH24_END.search(msg, e.end()) is not None:
            return R_AMBIGUOUS, None
        # After the prefix: `[Level: ]driver: result` or `[Level: ]driver(args): result`.
        rest = _strip_level(msg[e.end() :])
        driver, sep, tail = rest.partition(": ")
        if not sep or " " in driver:
            return None
        classified = _passdb_reason(tail)
        if classified is None or classified[0] == R_POLICY_INFO:
            return None
        sessions = e[3]
        session = sessions[sessions.rfind("<") + 1 : -1] if sessions else None
        return R_AUTH24, new_auth_failure(
            ts=ts,
            service=Service.UNKNOWN,
            ip=self.ips.get(e[1]),
            username=msg[5 : e.start()] or None,
            mechanism=e[2].upper() if e[2] else None,
            reason=classified[1],
            session=session or None,
        )
