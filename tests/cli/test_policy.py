import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from click.testing import CliRunner

from mailward.cli.main import cli


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def config(tmp_path: Path) -> tuple[Path, int, int]:
    pf, dv = free_port(), free_port()
    cfg = tmp_path / "m.toml"
    cfg.write_text(
        f'[policy.postfix]\nenabled = true\nlisten = ["inet:127.0.0.1:{pf}"]\nsocket_group = "root"\n'
        f'[policy.dovecot]\nenabled = true\nport = {dv}\napi_key = "s3"\n'
    )
    return cfg, pf, dv


def test_serve_refuses_when_nothing_is_enabled(tmp_path: Path) -> None:
    cfg = tmp_path / "m.toml"
    cfg.write_text("")
    r = CliRunner().invoke(cli, ["-c", str(cfg), "policy", "serve"])
    assert r.exit_code == 2 and "enabled" in r.output


def test_probe_down_runs_the_hook_and_exits_1(tmp_path: Path) -> None:
    cfg, pf, dv = config(tmp_path)
    hook = tmp_path / "alert.txt"
    r = CliRunner().invoke(
        cli, ["-c", str(cfg), "policy", "probe", "--timeout", "1", "--on-failure", f"cat > {hook}"]
    )
    assert r.exit_code == 1
    assert "DOWN" in r.output
    text = hook.read_text()
    assert f"127.0.0.1:{pf}" in text and f":{dv}/" in text and "fail open" in text


def test_serve_then_probe_up_then_sigterm(tmp_path: Path) -> None:
    cfg, pf, dv = config(tmp_path)
    proc = subprocess.Popen(
        [sys.executable, "-m", "mailward.cli.main", "-c", str(cfg), "policy", "serve"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", dv), 0.2).close()
                socket.create_connection(("127.0.0.1", pf), 0.2).close()
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline
                time.sleep(0.05)
        r = CliRunner().invoke(cli, ["-c", str(cfg), "policy", "probe", "--json"])
        assert r.exit_code == 0, r.output
        data = json.loads(r.output)
        assert data["ok"] and [e["name"] for e in data["endpoints"]] == ["postfix", "dovecot"]
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        out, _ = proc.communicate(timeout=10)
    assert proc.returncode == 0
    assert b"policy-postfix listening" in out and b"policy-dovecot listening" in out


def test_probe_without_enabled_servers(tmp_path: Path) -> None:
    cfg = tmp_path / "m.toml"
    cfg.write_text("")
    r = CliRunner().invoke(cli, ["-c", str(cfg), "policy", "probe"])
    assert r.exit_code == 2


def test_probe_notify_delivers_through_the_sendmail_channel_once(tmp_path: Path) -> None:
    cfg, pf, dv = config(tmp_path)
    out = tmp_path / "mail.txt"
    sendmail = tmp_path / "sendmail"
    sendmail.write_text(f"#!/bin/sh\ncat >> {out}\necho '--END--' >> {out}\n")
    sendmail.chmod(0o755)
    cfg.write_text(
        cfg.read_text()
        + f'[general]\nstate_dir = "{tmp_path / "state"}"\n'
        + f'[notify]\nsendmail_path = "{sendmail}"\nto = ["admin@example.org"]\ngroup_seconds = 0\n'
    )
    (tmp_path / "state").mkdir()
    for _ in range(2):
        r = CliRunner().invoke(
            cli, ["-c", str(cfg), "policy", "probe", "--timeout", "1", "--notify"]
        )
        assert r.exit_code == 1, r.output
    mail = out.read_text()
    assert "policy servers not answering" in mail and "admin@example.org" in mail
    assert f"127.0.0.1:{pf}" in mail
    assert mail.count("--END--") == 1  # the second run is inside the cooldown: no second mail
