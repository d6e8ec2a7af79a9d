"""Outage detection for the policy servers, from outside the daemon.

Both hooks fail open, so a dead mailward costs no mail, only defence; it must still be noticed.
``probe_postfix``/``probe_dovecot`` ask the live endpoints a harmless question (``mailward policy
probe`` runs them from cron or a systemd timer), and ``match_outage`` recognises the lines Postfix
and Dovecot log while the policy server is unreachable, so the log follower can report an outage
it reads in its backlog after a restart.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass

import aiohttp

from mailward.notify.model import Alert, Severity

PROBE_REQUEST = (
    b"request=smtpd_access_policy\nprotocol_state=PROBE\nprotocol_name=SMTP\n"
    b"client_address=0.0.0.0\npolicy_context=mailward-probe\n\n"
)
# remote="" makes the allow handler answer without touching any counter.
PROBE_BODY = b'{"login":"","protocol":"probe","pwhash":"","remote":"","session_id":"","tls":false}'


@dataclass(frozen=True, slots=True)
class ProbeResult:
    name: str
    endpoint: str
    ok: bool
    latency_ms: float | None = None
    error: str = ""

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "endpoint": self.endpoint,
            "ok": self.ok,
            "latency_ms": self.latency_ms,
            "error": self.error,
        }


async def probe_postfix(listen: str, timeout: float = 2.0) -> ProbeResult:
    """Send one policy request to ``inet:HOST:PORT`` or ``unix:/path``; ok if it is answered."""
    start = time.perf_counter()
    kind, _, rest = listen.partition(":")
    try:
        async with asyncio.timeout(timeout):
            if kind == "unix":
                reader, writer = await asyncio.open_unix_connection(rest)
            else:
                host, _, port = rest.rpartition(":")
                host = host.strip("[]")
                if host in ("0.0.0.0", "::", ""):
                    host = "127.0.0.1"
                reader, writer = await asyncio.open_connection(host, int(port))
            try:
                writer.write(PROBE_REQUEST)
                reply = await reader.readuntil(b"\n\n")
            finally:
                writer.close()
    except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError) as exc:
        return ProbeResult("postfix", listen, False, error=_describe(exc))
    if not reply.startswith(b"action="):
        return ProbeResult("postfix", listen, False, error=f"unexpected reply {reply[:40]!r}")
    return ProbeResult("postfix", listen, True, (time.perf_counter() - start) * 1000)


async def probe_dovecot(
    url: str, timeout: float = 2.0, headers: dict[str, str] | None = None
) -> ProbeResult:
    """POST an empty ``allow`` to the auth-policy URL; ok on 2xx with a JSON ``status``."""
    start = time.perf_counter()
    target = url + ("command=allow" if url.endswith("&") else "?command=allow")
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as s:
            async with s.post(
                target,
                data=PROBE_BODY,
                headers={"Content-Type": "application/json", **(headers or {})},
            ) as r:
                text = await r.text()
                if r.status // 10 != 20:
                    return ProbeResult("dovecot", url, False, error=f"HTTP {r.status}")
                status = json.loads(text).get("status")
                if not isinstance(status, int):
                    return ProbeResult("dovecot", url, False, error="reply without status")
    except (aiohttp.ClientError, TimeoutError, ValueError, AttributeError) as exc:
        return ProbeResult("dovecot", url, False, error=_describe(exc))
    return ProbeResult("dovecot", url, True, (time.perf_counter() - start) * 1000)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "timed out"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


@dataclass(frozen=True, slots=True)
class OutageSign:
    """One log line showing that Postfix or Dovecot could not reach a policy server."""

    daemon: str  # "postfix" or "dovecot"
    endpoint: str
    detail: str


_POSTFIX = re.compile(
    r"postfix/[\w/.-]+\[\d+\]: warning: problem talking to server (?P<endpoint>\S+?): (?P<detail>.*)$"
)
_DOVECOT = re.compile(
    r"auth: Error: policy\(.*?\): Policy server (?P<detail>(?:HTTP error|response).*)$"
)
_DOVECOT_ENDPOINT = re.compile(r"connect\((?P<endpoint>[^)]*)\)")


def match_outage(line: str) -> OutageSign | None:
    """Recognise a policy-server outage line (Postfix 3.x, Dovecot 2.3/2.4), else None.

    Cheap substring tests first: this runs on every followed log line.
    """
    if "problem talking to server" in line:
        m = _POSTFIX.search(line)
        if m:
            return OutageSign("postfix", m["endpoint"], m["detail"])
    elif "Policy server" in line:
        m = _DOVECOT.search(line)
        if m:
            e = _DOVECOT_ENDPOINT.search(m["detail"])
            return OutageSign("dovecot", e["endpoint"] if e else "", m["detail"])
    return None


def probe_alert(results: Sequence[ProbeResult], now: float) -> Alert | None:
    """The alert for endpoints that did not answer a probe (None when all are up)."""
    down = [r for r in results if not r.ok]
    if not down:
        return None
    return Alert(
        ts=now,
        kind="policy_outage",
        key="policy_outage:" + ",".join(sorted(f"{r.name}={r.endpoint}" for r in down)),
        severity=Severity.CRITICAL,
        title=f"mailward policy server{'s' if len(down) > 1 else ''} not answering: "
        + ", ".join(r.name for r in down),
        details=tuple(f"{r.name} {r.endpoint}: {r.error}" for r in down)
        + (
            "Postfix and Dovecot fail open: mail and logins keep working, but without in-line "
            "defence until mailward answers again.",
        ),
        facts={"down": [r.to_json() for r in down]},
    )


def log_outage_alert(signs: Sequence[OutageSign], first_ts: float, now: float) -> Alert | None:
    """The alert for outage lines found in the mail log (e.g. in the backlog after a restart)."""
    if not signs:
        return None
    by_daemon: dict[str, int] = {}
    for s in signs:
        by_daemon[s.daemon] = by_daemon.get(s.daemon, 0) + 1
    endpoints = sorted({s.endpoint for s in signs if s.endpoint})
    return Alert(
        ts=now,
        kind="policy_outage",
        key="policy_outage_log:" + ",".join(sorted(by_daemon)),
        severity=Severity.HIGH,
        title="Postfix/Dovecot could not reach mailward's policy servers",
        details=tuple(f"{d}: {n} log line(s)" for d, n in sorted(by_daemon.items()))
        + (f"endpoints: {', '.join(endpoints)}" if endpoints else "endpoints: not logged",)
        + (f"latest: {signs[-1].detail}",),
        facts={"first_ts": first_ts, "lines": by_daemon, "endpoints": endpoints},
    )
