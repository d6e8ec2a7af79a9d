"""The policy components inside the real ``Daemon`` with the real detector ``Engine``: reports reach
the detectors through the daemon, the engine's bans come back in-line, the policy servers' own
decisions are enforced, and log events reach the Postfix server's counters."""

from __future__ import annotations

import asyncio
import json
from ipaddress import ip_address

import aiohttp

from mailward.clock import SystemClock
from mailward.config.model import Settings
from mailward.daemon.app import Daemon
from mailward.daemon.ledger import MemoryLedger
from mailward.detectors.engine import Engine
from mailward.enforcers.base import MemoryEnforcer
from mailward.events import Service, UnknownRecipient
from mailward.policy import DovecotPolicyServer, PostfixPolicyServer, policy_components


def settings() -> Settings:
    return Settings.model_validate(
        {
            "general": {"server_addresses": []},
            "detectors": {"short_ban": {"failures": 3}, "tarpit": {"enabled": False}},
            "policy": {
                "postfix": {
                    "enabled": True,
                    "listen": ["inet:127.0.0.1:0"],
                    "unknown_recipients_per_client": 2,
                },
                "dovecot": {"enabled": True, "port": 0, "pwhash_per_ip": 0},
            },
        }
    )


async def postfix_ask(port: int, client: str) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(
        f"request=smtpd_access_policy\nprotocol_state=CONNECT\nclient_address={client}\n\n".encode()
    )
    reply = await asyncio.wait_for(reader.readuntil(b"\n\n"), 5)
    writer.close()
    return reply


async def test_policy_components_inside_the_daemon() -> None:
    s = settings()
    clock = SystemClock()
    enforcer = MemoryEnforcer(clock.now)
    daemon = Daemon(
        s,
        clock=clock,
        enforcer=enforcer,
        store=MemoryLedger(),
        engine=Engine.from_settings(s),
    )
    components = policy_components(s)
    for c in components:
        daemon.add_component(c)
    await daemon.start()
    try:
        pf = next(c for c in components if isinstance(c, PostfixPolicyServer))
        dv = next(c for c in components if isinstance(c, DovecotPolicyServer))
        assert not daemon.component_errors
        url = f"http://127.0.0.1:{dv.port}/"
        async with aiohttp.ClientSession() as http:
            for i in range(3):
                body = {
                    "login": "bob",
                    "remote": "198.51.100.9",
                    "pwhash": f"{i:04x}",
                    "protocol": "imap",
                    "success": False,
                    "policy_reject": False,
                }
                async with http.post(url + "?command=report", data=json.dumps(body)) as r:
                    assert r.status == 200
            for _ in range(100):  # the daemon detects asynchronously
                if not daemon.engine.check(ip_address("198.51.100.9"), None, clock.now()).allow:
                    break
                await asyncio.sleep(0.02)
            body = {"login": "bob", "remote": "198.51.100.9", "pwhash": "0aa0", "protocol": "imap"}
            async with http.post(url + "?command=allow", data=json.dumps(body)) as r:
                assert (await r.json())["status"] == -1
        # the engine's ban is answered at CONNECT by the Postfix server too
        assert (await postfix_ask(pf.addresses[0][1], "198.51.100.9")).startswith(b"action=421")
        # a policy server's own decision (enumeration from log events) is applied and enforced
        for rcpt in ("a@x", "b@x"):
            daemon.submit_event(
                UnknownRecipient(
                    ts=clock.now(),
                    service=Service.SMTP,
                    ip=ip_address("192.0.2.44"),
                    recipient=rcpt,
                )
            )
        for _ in range(100):
            if enforcer.banned("192.0.2.44"):
                break
            await asyncio.sleep(0.02)
        assert enforcer.banned("192.0.2.44")
        assert (await postfix_ask(pf.addresses[0][1], "192.0.2.44")).startswith(b"action=421")
        assert (await postfix_ask(pf.addresses[0][1], "192.0.2.45")) == b"action=DUNNO\n\n"
    finally:
        await daemon.shutdown()
