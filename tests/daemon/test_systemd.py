import os
import socket
from pathlib import Path

from mailward.daemon.systemd import SystemdNotifier


def test_sends_datagrams_to_notify_socket(tmp_path: Path) -> None:
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        n = SystemdNotifier({"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "20000000"})
        assert n.enabled and n.watchdog_interval == 10.0
        assert n.ready("starting")
        assert n.watchdog() and n.status("3 lines") and n.stopping()
        got = [sock.recv(1024).decode() for _ in range(4)]
    assert got == ["READY=1\nSTATUS=starting", "WATCHDOG=1", "STATUS=3 lines", "STOPPING=1"]


def test_abstract_socket_and_disabled() -> None:
    name = f"mw-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        assert SystemdNotifier({"NOTIFY_SOCKET": "@" + name}).ready()
        assert sock.recv(64) == b"READY=1"
    off = SystemdNotifier({})
    assert not off.enabled and not off.ready() and off.watchdog_interval is None


def test_watchdog_for_another_pid_is_ignored_and_errors_counted(tmp_path: Path) -> None:
    n = SystemdNotifier(
        {"NOTIFY_SOCKET": str(tmp_path / "gone"), "WATCHDOG_USEC": "1000", "WATCHDOG_PID": "1"}
    )
    assert n.watchdog_interval is None
    assert not n.watchdog() and n.errors == 1
