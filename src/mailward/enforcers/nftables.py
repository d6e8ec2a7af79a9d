"""nftables enforcement in mailward's own ``table inet <name>``: address sets and interval
prefix sets per family, with per-element timeouts, and one chain whose rules cover only the
configured ports. Every change is one atomic ``nft -f -`` batch; no other table is ever touched.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

from mailward.config.model import EnforceSettings
from mailward.decisions.model import Decision
from mailward.enforcers.bantable import BanTable, Change, Net, as_network, is_host
from mailward.enforcers.base import plan
from mailward.errors import BackendUnavailable

log = logging.getLogger(__name__)

SETS = {(4, True): "addr4", (6, True): "addr6", (4, False): "net4", (6, False): "net6"}
CHUNK = 2000  # elements per "add element" statement; one batch may hold many statements


def set_name(net: Net) -> str:
    return SETS[(net.version, is_host(net))]


def _timeout(until: float | None, now: float) -> str:
    if until is None:
        return ""
    ms = max(1000, math.ceil((until - now) * 1000))
    return f" timeout {ms}ms"


def table_definition(settings: EnforceSettings) -> str:
    """The table with its four sets and the chain(s), as one ``nft -f`` block."""
    ports = ", ".join(str(p) for p in settings.ports)
    verdict = "reject with tcp reset" if settings.action == "reject" else "drop"
    lines = [f"table inet {settings.table} {{"]
    lines += [
        "  set addr4 { type ipv4_addr; flags timeout; }",
        "  set addr6 { type ipv6_addr; flags timeout; }",
        "  set net4 { type ipv4_addr; flags interval, timeout; }",
        "  set net6 { type ipv6_addr; flags interval, timeout; }",
    ]
    for hook in settings.hooks:
        lines.append(f"  chain {hook} {{")
        lines.append(f"    type filter hook {hook} priority -10; policy accept;")
        for family, name in (("ip", "addr4"), ("ip", "net4"), ("ip6", "addr6"), ("ip6", "net6")):
            lines.append(
                f'    {family} saddr @{name} tcp dport {{ {ports} }} counter {verdict} comment "mailward"'
            )
        lines.append("  }")
    lines.append("}")
    return "\n".join(lines) + "\n"


def element_statements(
    table: str, verb: str, items: Iterable[tuple[Net, float | None]], now: float
) -> list[str]:
    by_set: dict[str, list[str]] = {}
    for net, until in items:
        text = str(net.network_address) if is_host(net) else str(net)
        by_set.setdefault(set_name(net), []).append(
            text + (_timeout(until, now) if verb == "add" else "")
        )
    out = []
    for name, elems in sorted(by_set.items()):
        for i in range(0, len(elems), CHUNK):
            out.append(
                f"{verb} element inet {table} {name} {{ {', '.join(elems[i : i + CHUNK])} }}"
            )
    return out


def change_script(table: str, change: Change, now: float) -> str:
    """Deletes first, then adds. A delete of an element the kernel already timed out would fail
    the whole batch, so each delete is preceded by an add of the same element (a no-op when it
    exists): nft 1.0.6 has no ``destroy``."""
    lines: list[str] = []
    if change.delete:
        lines += element_statements(table, "add", ((n, now + 1) for n in change.delete), now)
        lines += element_statements(table, "delete", ((n, None) for n in change.delete), now)
    live = [(n, u) for n, u in change.add if u is None or u > now]
    lines += element_statements(table, "add", live, now)
    return "\n".join(lines) + ("\n" if lines else "")


def rebuild_script(settings: EnforceSettings, table: BanTable, now: float) -> str:
    """Replace the table whole: create-if-missing, delete, define, fill. Atomic in one batch."""
    name = settings.table
    head = f"add table inet {name}\ndelete table inet {name}\n" + table_definition(settings)
    live = [(n, u) for n, u in table.elements() if u is None or u > now]
    body = element_statements(name, "add", live, now)
    return head + "\n".join(body) + ("\n" if body else "")


def remove_table_script(name: str) -> str:
    return f"add table inet {name}\ndelete table inet {name}\n"


def _reshapes_intervals(change: Change) -> bool:
    deleted = [n for n in change.delete if not is_host(n)]
    if not deleted:
        return False
    for net, _ in change.add:
        if is_host(net):
            continue
        for old in deleted:
            if old.version == net.version and old != net and old.overlaps(net):
                return True
    return False


class NftRunner(Protocol):
    async def run(self, script: str) -> str:
        """Feed ``script`` to ``nft -f -``; raise BackendUnavailable with nft's message."""
        ...

    async def query(self, *args: str) -> str:
        """Run ``nft -j <args>`` and return its stdout."""
        ...


class SubprocessNft:
    """The real runner: ``[ip netns exec NS] nft -f -``."""

    def __init__(self, nft: str = "nft", netns: str | None = None) -> None:
        self.prefix = (["ip", "netns", "exec", netns] if netns else []) + [nft]

    async def _exec(self, args: list[str], stdin: str | None) -> str:
        try:
            proc = await asyncio.create_subprocess_exec(
                *self.prefix,
                *args,
                stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
            )
        except OSError as exc:
            raise BackendUnavailable(f"cannot run {' '.join(self.prefix)}: {exc}") from exc
        out, err = await proc.communicate(stdin.encode() if stdin is not None else None)
        if proc.returncode != 0:
            message = err.decode(errors="replace").strip().splitlines()
            raise BackendUnavailable(
                f"nft failed (exit {proc.returncode}): " + " | ".join(message[:6])
            )
        return out.decode(errors="replace")

    async def run(self, script: str) -> str:
        return await self._exec(["-f", "-"], script)

    async def query(self, *args: str) -> str:
        return await self._exec(["-j", *args], None)


class RecordingNft:
    """The twin: records every script, fails on demand."""

    def __init__(self) -> None:
        self.scripts: list[str] = []
        self.fail_next = 0

    async def run(self, script: str) -> str:
        if self.fail_next:
            self.fail_next -= 1
            raise BackendUnavailable("nft failed (exit 1): simulated")
        self.scripts.append(script)
        return ""

    async def query(self, *args: str) -> str:
        return '{"nftables": []}'


class NftablesEnforcer:
    """Bans through nftables. The ``BanTable`` mirrors the kernel sets; when a batch fails (the
    table was deleted behind our back, say) the whole table is rebuilt from the mirror."""

    name = "nftables"

    def __init__(
        self,
        settings: EnforceSettings,
        *,
        clock: Callable[[], float] = time.time,
        runner: NftRunner | None = None,
    ) -> None:
        self.settings = settings
        self.runner: NftRunner = runner or SubprocessNft(settings.nft, settings.netns)
        self.table = BanTable()
        self._now = clock
        self._lock = asyncio.Lock()
        self._dirty = True  # nothing sent yet: the first batch builds the table
        self.batches = 0
        self.failures = 0
        self.last_batch_seconds: float | None = None
        self.last_error: str | None = None
        self.invalid_targets = 0

    async def apply(self, decisions: Sequence[Decision]) -> None:
        async with self._lock:
            change, bad = plan(self.table, decisions, self._now())
            if bad:
                self.invalid_targets += len(bad)
                log.error("not enforced, not an address or prefix: %s", ", ".join(bad[:5]))
            await self._send(change)

    async def remove(self, targets: Sequence[str]) -> None:
        async with self._lock:
            self.table.expire(self._now())
            change = Change()
            for target in targets:
                change.extend(self.table.unban(as_network(target)))
            await self._send(change)

    async def restore(self, active: Sequence[Decision]) -> None:
        async with self._lock:
            self.table.clear()
            plan(self.table, active, self._now())
            await self._rebuild()

    async def clear(self) -> None:
        async with self._lock:
            self.table.clear()
            await self._rebuild()

    async def remove_table(self) -> None:
        """Delete mailward's table and everything in it (``mailward nft remove``)."""
        async with self._lock:
            self.table.clear()
            await self.runner.run(remove_table_script(self.settings.table))
            self._dirty = True

    async def kernel_elements(self) -> dict[str, int]:
        """Element counts per set as the kernel reports them (``nft -j list set``)."""
        counts: dict[str, int] = {}
        for name in sorted(set(SETS.values())):
            data = json.loads(
                await self.runner.query("list", "set", "inet", self.settings.table, name)
            )
            for item in data.get("nftables", []):
                if "set" in item:
                    counts[name] = len(item["set"].get("elem", []))
        return counts

    async def _send(self, change: Change) -> None:
        if self._dirty:
            await self._rebuild()
            return
        if not change:
            return
        if _reshapes_intervals(change):
            # nft checks a new interval against the set as it was before the batch, so
            # replacing a prefix by an overlapping one cannot be a delta: rebuild, still atomic.
            await self._rebuild()
            return
        script = change_script(self.settings.table, change, self._now())
        try:
            await self._run(script)
        except BackendUnavailable as exc:
            log.warning("nft batch failed, rebuilding the table: %s", exc)
            await self._rebuild()

    async def _rebuild(self) -> None:
        self.table.expire(self._now())
        try:
            await self._run(rebuild_script(self.settings, self.table, self._now()))
        except BackendUnavailable:
            self._dirty = True
            raise
        self._dirty = False

    async def _run(self, script: str) -> None:
        started = time.perf_counter()
        try:
            await self.runner.run(script)
        except BackendUnavailable as exc:
            self.failures += 1
            self.last_error = str(exc)
            raise
        self.batches += 1
        self.last_batch_seconds = time.perf_counter() - started

    def status(self) -> dict[str, Any]:
        self.table.expire(self._now())
        return {
            "backend": self.name,
            "table": f"inet {self.settings.table}",
            "netns": self.settings.netns,
            "addresses": len(self.table.hosts),
            "prefixes": len(self.table.prefixes),
            "batches": self.batches,
            "failures": self.failures,
            "in_sync": not self._dirty,
            "last_batch_ms": None
            if self.last_batch_seconds is None
            else round(self.last_batch_seconds * 1000, 2),
            "last_error": self.last_error,
        }
