"""OnFailure: the daemon process is killed with SIGKILL; the hook command from the shipped
``mailward-failure@.service`` is run the way systemd runs it, and the notice reaches sendmail."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.notify.sinks import read_outbox, sendmail_stub

from mailward.notify.failure import compose, notify_failure, resolve_target
from mailward.notify.spool import Spool

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "packaging" / "systemd" / "mailward-failure@.service"
VENV_BIN = Path(sys.executable).parent

DAEMON = """
import asyncio, sys
from mailward.config import load
from mailward.notify.manager import AlertManager

async def main():
    manager = AlertManager(load(None))
    await manager.start(None)
    print("ready", flush=True)
    await asyncio.sleep(3600)

asyncio.run(main())
"""


def exec_start(instance: str) -> list[str]:
    """ExecStart= of the shipped unit with %i expanded; /usr/bin/mailward is this venv's."""
    for line in UNIT.read_text().splitlines():
        if line.startswith("ExecStart="):
            argv = shlex.split(line.removeprefix("ExecStart=").replace("%i", instance))
            if argv[0] == "/usr/bin/mailward":
                argv[0] = str(VENV_BIN / "mailward")
            return argv
    raise AssertionError("no ExecStart in the unit")


def test_killed_daemon_triggers_a_notice_through_sendmail(tmp_path: Path) -> None:
    script, outbox = sendmail_stub(tmp_path)
    config = tmp_path / "mailward.toml"
    config.write_text(
        f'[general]\nstate_dir = "{tmp_path / "state"}"\n'
        f'[notify]\nsendmail_path = "{script}"\nto = ["ops@example.org"]\n'
    )
    env = {**os.environ, "MAILWARD_CONFIG": str(config)}
    daemon = subprocess.Popen(
        [sys.executable, "-c", DAEMON], env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        assert daemon.stdout is not None and daemon.stdout.readline().strip() == "ready"
        os.kill(daemon.pid, signal.SIGKILL)
        assert daemon.wait(10) == -signal.SIGKILL
    finally:
        if daemon.poll() is None:
            daemon.kill()
            daemon.wait()
        if daemon.stdout is not None:
            daemon.stdout.close()
    # What systemd (v251+) puts in the environment of an OnFailure= unit after a SIGKILL.
    hook_env = {
        **env,
        "MONITOR_SERVICE_RESULT": "signal",
        "MONITOR_EXIT_CODE": "killed",
        "MONITOR_EXIT_STATUS": "KILL",
        "MONITOR_UNIT": "mailward.service",
    }
    done = subprocess.run(
        [*exec_start("mailward.service"), "--no-journal"],
        env=hook_env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    [mail] = read_outbox(outbox)
    assert mail["Subject"].endswith("CRITICAL: mailward.service failed (signal, killed KILL)")
    assert mail["To"] == "ops@example.org"
    body = mail.get_body(("plain",))
    assert body is not None and "attacks are NOT being detected" in body.get_content()


def test_broken_config_still_delivers_through_the_configured_sendmail(tmp_path: Path) -> None:
    script, outbox = sendmail_stub(tmp_path)
    config = tmp_path / "mailward.toml"
    config.write_text(
        "[storage]\nretention_days = -1\n"  # invalid elsewhere: the daemon would not start
        f'[notify]\nsendmail_path = "{script}"\nto = ["ops@example.org"]\n'
    )
    delivered, report = notify_failure(
        "mailward.service", env={"MAILWARD_CONFIG": str(config)}, journal=False
    )
    assert delivered, report
    [mail] = read_outbox(outbox)
    body = mail.get_body(("plain",))
    assert body is not None and "storage.retention_days" in body.get_content()


def test_missing_config_falls_back_to_defaults(tmp_path: Path) -> None:
    target = resolve_target(None, {"MAILWARD_CONFIG": str(tmp_path / "nope.toml")})
    assert (str(target.sendmail), target.to) == ("/usr/sbin/sendmail", ["root"])
    assert target.problems and "nope.toml" in target.problems[0]


def test_undeliverable_notice_is_queued_for_the_next_start(tmp_path: Path) -> None:
    config = tmp_path / "mailward.toml"
    config.write_text(
        f'[general]\nstate_dir = "{tmp_path / "state"}"\n'
        f'[notify]\nsendmail_path = "{tmp_path / "missing-sendmail"}"\n'
    )
    delivered, report = notify_failure("mailward.service", config=config, env={}, journal=False)
    assert not delivered and "queued in the outbox" in report
    spool = Spool(tmp_path / "state" / "notify.db")
    [pending] = spool.due("sendmail", time.time())
    spool.close()
    assert "mailward.service failed" in pending.message.subject


def test_compose_without_systemd_variables() -> None:
    subject, body = compose("mailward.service", {}, ["x"], journal=False)
    assert "failed (unknown, unknown unknown)" in subject and "Also: x" in body


def _systemd_expand(text: str, instance: str) -> str:
    """The few systemd transformations the unit uses: specifiers, $$ and \\\\ unescaping."""
    return (
        text.replace("%%", "\0")
        .replace("%i", instance)
        .replace("%H", "mx1")
        .replace("\0", "%")
        .replace("$$", "$")
        .replace("\\\\", "\\")
    )


def test_last_resort_notice_when_the_mailward_command_itself_fails(tmp_path: Path) -> None:
    script, outbox = sendmail_stub(tmp_path)
    line = next(
        ln for ln in UNIT.read_text().splitlines() if ln.startswith("ExecStopPost=")
    ).removeprefix("ExecStopPost=")
    argv = shlex.split(_systemd_expand(line, "mailward.service"))
    assert argv[:2] == ["/bin/sh", "-c"]
    command = argv[2].replace("/usr/sbin/sendmail", str(script))
    env = {"PATH": os.environ["PATH"], "SERVICE_RESULT": "exit-code", "EXIT_STATUS": "1"}
    subprocess.run(["/bin/sh", "-c", command], env=env, check=True, timeout=30)
    [mail] = read_outbox(outbox)
    assert mail["Subject"].startswith("[mailward] CRITICAL: mailward.service failed")
    assert "did not run (1)" in mail.get_content()
    # When the notice went out, the fallback stays silent.
    env["SERVICE_RESULT"] = "success"
    subprocess.run(["/bin/sh", "-c", command], env=env, check=True, timeout=30)
    assert len(read_outbox(outbox)) == 1
