"""Real nftables, end to end: a real ``mailward run`` process follows a log, and the attacker's
TCP connections into a server network namespace stop within seconds of the threshold; ``mailward
unban`` lets them back in; a restart restores the ban from the ledger. Runs as root in CI."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from ipaddress import ip_address, ip_network
from pathlib import Path

import pytest

from . import daemon_proc  # type: ignore[attr-defined]

pytestmark = [pytest.mark.realstack, pytest.mark.slow]

LISTENER = textwrap.dedent(
    """
    import socket, sys, threading
    def serve(port):
        s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind((sys.argv[1], port)); s.listen(64)
        while True:
            c, _ = s.accept(); c.sendall(b"220 test ESMTP\\r\\n"); c.close()
    for p in sys.argv[2:]:
        threading.Thread(target=serve, args=(int(p),), daemon=True).start()
    print("ready", flush=True)
    threading.Event().wait()
    """
)

PROBE = textwrap.dedent(
    """
    import socket, sys
    try:
        c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=1.0)
        print("ok" if c.recv(64).startswith(b"220") else "bad")
    except ConnectionRefusedError:
        print("refused")
    except (TimeoutError, OSError) as e:
        print("timeout" if isinstance(e, TimeoutError) else f"error {e}")
    """
)


@dataclass
class Net:
    srv: str
    cli: str
    server_ip: str
    attacker_ip: str

    def probe(self, port: int) -> str:
        out = subprocess.run(
            [
                "ip",
                "netns",
                "exec",
                self.cli,
                sys.executable,
                "-c",
                PROBE,
                self.server_ip,
                str(port),
            ],
            capture_output=True,
            text=True,
            timeout=10,
        )
        return out.stdout.strip()

    def nft(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["ip", "netns", "exec", self.srv, "nft", *args], capture_output=True, text=True
        )


@pytest.fixture
def net() -> Iterator[Net]:
    if os.geteuid() != 0 or not shutil.which("nft") or not shutil.which("ip"):
        pytest.skip("needs root, nft and ip (run by .ci/run)")
    tag = uuid.uuid4().hex[:6]
    third = int(tag[:2], 16)
    n = Net(f"mwsrv-{tag}", f"mwcli-{tag}", f"10.99.{third}.1", f"10.99.{third}.2")
    veth_a, veth_b = f"mwv{tag}a", f"mwv{tag}b"
    listener = None

    def sh(*cmd: str) -> None:
        subprocess.run(cmd, check=True, capture_output=True)

    try:
        sh("ip", "netns", "add", n.srv)
        sh("ip", "netns", "add", n.cli)
        sh("ip", "link", "add", veth_a, "type", "veth", "peer", "name", veth_b)
        sh("ip", "link", "set", veth_a, "netns", n.srv)
        sh("ip", "link", "set", veth_b, "netns", n.cli)
        sh("ip", "-n", n.srv, "addr", "add", f"{n.server_ip}/24", "dev", veth_a)
        sh("ip", "-n", n.cli, "addr", "add", f"{n.attacker_ip}/24", "dev", veth_b)
        for ns, dev in ((n.srv, veth_a), (n.cli, veth_b)):
            sh("ip", "-n", ns, "link", "set", "lo", "up")
            sh("ip", "-n", ns, "link", "set", dev, "up")
        listener = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                n.srv,
                sys.executable,
                "-c",
                LISTENER,
                n.server_ip,
                "587",
                "8080",
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert listener.stdout is not None and listener.stdout.readline().strip() == "ready"
        yield n
    finally:
        if listener is not None:
            listener.kill()
            listener.wait()
            if listener.stdout:
                listener.stdout.close()
        for ns in (n.srv, n.cli):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def failure(ip: str) -> str:
    stamp = datetime.now(UTC).isoformat()
    return (
        f"{stamp} mx1 postfix/submission/smtpd[4242]: warning: unknown[{ip}]: SASL LOGIN "
        "authentication failed: UGFzc3dvcmQ6, sasl_username=info@example.org\n"
    )


def wait_for(net: Net, port: int, want: str, timeout: float) -> float:
    started = time.monotonic()
    while True:
        got = net.probe(port)
        if got == want:
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise AssertionError(f"port {port}: still {got!r} after {timeout}s, wanted {want!r}")
        time.sleep(0.05)


def banned(cfg: Path, ip: str, within: float) -> bool:
    from mailward.daemon import control

    sock = cfg.parent / "control.sock"
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        bans = control.request(sock, "bans")
        if any(ip_address(ip) in ip_network(b["target"]) for b in bans):
            return True
        time.sleep(0.05)
    return False


def mailward(cfg: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mailward.cli.main", "-c", str(cfg), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_attacker_is_cut_off_within_seconds_and_unban_restores(net: Net, tmp_path: Path) -> None:
    table = f"mw_{uuid.uuid4().hex[:8]}"
    cfg = daemon_proc.write_config(
        tmp_path, backend="nftables", enforce=f'netns = "{net.srv}"\ntable = "{table}"'
    )
    log = tmp_path / "mail.log"
    assert net.probe(587) == "ok"
    proc = daemon_proc.start(cfg)
    try:
        with log.open("a") as fh:
            fh.write(failure(net.attacker_ip))
        time.sleep(0.5)
        assert net.probe(587) == "ok", "one failed login must never ban"
        # Keep failing until the detectors decide (the twin bans at the 5th failure, the real
        # rate limit earlier), then time how long the ban takes to bite.
        cut_off = None
        for _ in range(12):
            with log.open("a") as fh:
                fh.write(failure(net.attacker_ip))
            written = time.monotonic()
            if banned(cfg, net.attacker_ip, within=1.0):
                wait_for(net, 587, "refused", timeout=5.0)
                cut_off = time.monotonic() - written
                break
        assert cut_off is not None, "no ban after 13 failures"
        print(f"attacker cut off {cut_off:.2f}s after the threshold line")
        assert net.probe(8080) == "ok", "ports outside enforce.ports must stay open"
        listed = net.nft("list", "set", "inet", table, "addr4")
        assert net.attacker_ip in listed.stdout and "expires" in listed.stdout
        other = [t for t in net.nft("list", "tables").stdout.split("\n") if t.strip()]
        assert other == [f"table inet {table}"], "mailward must touch only its own table"

        # restart after the table vanished: the ban is restored from the ledger
        assert daemon_proc.stop(proc) == 0
        net.nft("delete", "table", "inet", table)
        assert net.probe(587) == "ok"
        proc = daemon_proc.start(cfg)
        wait_for(net, 587, "refused", timeout=5.0)

        status = mailward(cfg, "status", "--json")
        assert '"active_bans": 1' in status.stdout and '"in_sync": true' in status.stdout
        unban = mailward(cfg, "unban", net.attacker_ip)
        assert unban.returncode == 0, unban.stderr
        restored = wait_for(net, 587, "ok", timeout=3.0)
        print(f"attacker back {restored:.2f}s after unban")
    finally:
        code = daemon_proc.stop(proc)
        removed = mailward(cfg, "nft", "remove")
    assert code == 0
    assert removed.returncode == 0, removed.stderr
    assert table not in net.nft("list", "tables").stdout
