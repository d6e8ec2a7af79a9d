"""Real Postfix + Dovecot against mailward's policy servers (issue 4, "Real tests"), six scenarios.

One session: the stack starts once; scenarios run in file order and use their own users and
source addresses. mailward is a separate process (``mailward policy serve``) running the real
detector engine ([detectors] in the generated config: 3 failures from one address ban it, 3
distinct failing addresses put a username under attack, no tarpit to keep the run short).
"""

from __future__ import annotations

import json
import os
import shutil
import smtplib
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator

import pytest
from tests.realstack.mailstack import DOMAIN, USERS, MailStack, SrcIMAP, available, make_stack

from mailward.policy.probe import log_outage_alert, match_outage

pytestmark = [pytest.mark.realstack, pytest.mark.slow]


@pytest.fixture(scope="module")
def stack() -> Iterator[MailStack]:
    why = available()
    if why:
        pytest.skip(f"real Postfix/Dovecot stack: {why}")
    st = make_stack()
    st.write_configs()
    try:
        st.start_mailward()  # first: Postfix would otherwise wait on a dead policy server
        st.start_mail()
        yield st
    finally:
        st.stop_all()
        if not os.environ.get("MAILWARD_KEEP_STACK"):  # set it to keep logs for a post-mortem
            shutil.rmtree(st.root, ignore_errors=True)


ALICE_HOME = "127.0.5.1"  # alice's usual address: reads her mail from here
BOB_HOME = "127.0.5.2"


def mail_flow(st: MailStack) -> None:
    """carol submits a message to alice on the submission port; alice reads it over IMAP."""
    tag = uuid.uuid4().hex
    with st.smtp(st.new_ip()) as s:
        s.ehlo()
        s.login("carol", USERS["carol"])
        refused = s.sendmail(
            f"carol@{DOMAIN}", [f"alice@{DOMAIN}"], f"Subject: flow {tag}\r\n\r\nhello\r\n"
        )
        assert refused == {}
    deadline = time.monotonic() + 15
    while True:
        imap = SrcIMAP("127.0.0.1", st.imap_port, ALICE_HOME)
        try:
            assert imap.login("alice", USERS["alice"])[0] == "OK"
            imap.select("INBOX")
            typ, data = imap.search(None, "SUBJECT", f'"{tag}"')
            found = typ == "OK" and data[0].split() != []
        finally:
            imap.logout()
        if found:
            return
        assert time.monotonic() < deadline, "submitted message never reached alice's INBOX"
        time.sleep(0.3)


def test_real_user_mail_flow_works(stack: MailStack) -> None:
    mail_flow(stack)
    # The settings came from `mailward integrate postfix`; Postfix accepted them as they are.
    main_cf = subprocess.run(
        ["postconf", "-c", str(stack.postfix_dir), "-h", "mailward_connect"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert f"inet:127.0.0.1:{stack.policy_port}" in main_cf and "default_action=DUNNO" in main_cf
    per_service = subprocess.run(
        ["postconf", "-c", str(stack.postfix_dir), "-P"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    sub = f"127.0.0.1:{stack.submission_port}/inet/"
    assert f"{sub}smtpd_delay_reject = no" in per_service
    assert f"{sub}smtpd_client_restrictions = $mailward_connect" in per_service
    assert f"{sub}smtpd_client_connection_count_limit = 10" in per_service


def test_attempt_after_threshold_is_refused_inline_by_dovecot(stack: MailStack) -> None:
    attacker = stack.new_ip()
    for i in range(3):  # distinct wrong passwords: a repeated one is a stale client, not a guess
        ok, text, _ = stack.imap_login("dave", f"guess{i}", attacker)
        assert not ok and "AUTHENTICATIONFAILED" in text
    # The 4th attempt carries the RIGHT password and is still refused: Dovecot asked mailward
    # before checking the password, and mailward said -1.
    ok, text, _ = stack.imap_login("dave", USERS["dave"], attacker)
    assert not ok
    line = stack.wait_log("dovecot.log", f"policy(dave,{attacker},")
    assert "refusal" in stack.wait_log(
        "dovecot.log", "Authentication failure due to policy server refusal"
    )
    assert attacker in line
    # dave himself, from elsewhere, is not affected
    assert stack.imap_login("dave", USERS["dave"], stack.new_ip())[0]
    mail_flow(stack)


def test_banned_ip_gets_421_at_connect_on_submission(stack: MailStack) -> None:
    attacker = stack.new_ip()
    for i in range(3):
        assert not stack.imap_login("dave", f"other{i}", attacker)[0]
    with pytest.raises(smtplib.SMTPConnectError) as err:
        stack.smtp(attacker)
    assert err.value.smtp_code == 421
    line = stack.wait_log("postfix.log", f"reject: CONNECT from unknown[{attacker}]: 421 4.7.0")
    assert "Service unavailable" in line
    # another address is served normally
    with stack.smtp(stack.new_ip()) as s:
        assert s.noop()[0] == 250
    mail_flow(stack)


def test_username_under_distributed_attack_refuses_new_ips_but_not_its_owner(
    stack: MailStack,
) -> None:
    assert stack.imap_login("bob", USERS["bob"], BOB_HOME)[0]  # bob's usual address, known good
    for i in range(3):  # a botnet: one try per address
        assert not stack.imap_login("bob", f"botnet{i}", stack.new_ip())[0]
    # a new address with bob's real password (a stolen one) is refused over IMAP ...
    thief = stack.new_ip()
    ok, _, _ = stack.imap_login("bob", USERS["bob"], thief)
    assert not ok
    stack.wait_log("dovecot.log", f"policy(bob,{thief},")
    # ... and over SMTP AUTH, which Postfix asks Dovecot for (protocol=smtp reaches mailward)
    with stack.smtp(stack.new_ip()) as s:
        s.ehlo()
        with pytest.raises(smtplib.SMTPAuthenticationError) as err:
            s.login("bob", USERS["bob"])
        assert err.value.smtp_code == 535
    # bob from home still gets in
    assert stack.imap_login("bob", USERS["bob"], BOB_HOME)[0]
    # other users are untouched
    assert stack.imap_login("carol", USERS["carol"], stack.new_ip())[0]
    mail_flow(stack)


def test_enumeration_counted_from_postfix_rejects_is_refused_inline(stack: MailStack) -> None:
    """With the whole daemon (``mailward run --dry-run``) following Postfix's log: three distinct
    unknown recipients, rejected by Postfix itself (reject_unlisted_recipient before the policy
    hook), get the client a 421 from the policy server at its next request."""
    stack.write_daemon_config()
    stack.stop_mailward()
    stack.start_mailward(daemon=True)
    try:
        prober = stack.new_ip()
        with stack.smtp(prober) as s:
            s.ehlo()
            s.mail(f"probe@{DOMAIN}")
            for name in ("nosuch1", "nosuch2", "nosuch3"):
                code, _ = s.rcpt(f"{name}@{DOMAIN}")
                assert code == 550  # Postfix's own "User unknown in virtual mailbox table"
            # the daemon reads the three reject lines and the policy server counts them
            deadline = time.monotonic() + 10
            while True:
                try:
                    code, _ = s.rcpt(f"alice@{DOMAIN}")  # a real recipient, asked at RCPT
                except smtplib.SMTPServerDisconnected:
                    break  # 421 ends the session
                if code == 421:
                    break
                assert code == 250 and time.monotonic() < deadline, "never refused in-line"
                time.sleep(0.2)
        with pytest.raises(smtplib.SMTPConnectError) as err:
            stack.smtp(prober)
        assert err.value.smtp_code == 421
        stack.wait_log("mailward.log", "policy_enumeration")
        mail_flow(stack)
    finally:
        stack.stop_mailward()
        stack.start_mailward()


def probe(stack: MailStack, hook_file: str) -> tuple[int, dict[str, object]]:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "mailward.cli.main",
            "-c",
            str(stack.config),
            "policy",
            "probe",
            "--json",
            "--timeout",
            "2",
            "--on-failure",
            f"cat > {hook_file}",
            "--notify",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    return done.returncode, json.loads(done.stdout)


def test_outage_fails_open_and_is_detected(stack: MailStack) -> None:
    hook = stack.root / "alert.txt"
    code, report = probe(stack, str(hook))
    assert code == 0 and report["ok"] is True and not hook.exists()

    stack.stop_mailward()
    try:
        # Logins and mail keep working: both hooks fail open.
        assert stack.imap_login("carol", USERS["carol"], stack.new_ip())[0]
        mail_flow(stack)
        # The outage is detected from outside, and the alert hook receives the report.
        code, report = probe(stack, str(hook))
        assert code == 1 and report["ok"] is False
        endpoints = report["endpoints"]
        assert isinstance(endpoints, list) and {e["name"] for e in endpoints} == {
            "postfix",
            "dovecot",
        }
        assert all(not e["ok"] for e in endpoints)
        alert = report["alert"]
        assert isinstance(alert, dict) and alert["kind"] == "policy_outage"
        assert alert["severity"] == "critical"
        delivered = hook.read_text()  # what the --on-failure command received on stdin
        assert delivered.startswith("[critical] mailward policy servers not answering")
        assert (
            f"127.0.0.1:{stack.policy_port}" in delivered and str(stack.authpol_port) in delivered
        )
        # ... and through the [notify] channel: the sendmail channel ran our stand-in binary.
        mail = stack.log("alerts.mbox").read_text()
        assert "CRITICAL: mailward policy servers not answering" in mail
        assert f"postmaster@{DOMAIN}" in mail
        # ... and in the mail logs, where mailward's log follower finds it after a restart.
        pf = stack.wait_log("postfix.log", "problem talking to server")
        dv = stack.wait_log("dovecot.log", "Policy server HTTP error")
        pf_sign, dv_sign = match_outage(pf), match_outage(dv)
        assert pf_sign is not None and pf_sign.endpoint.endswith(f"127.0.0.1:{stack.policy_port}")
        assert dv_sign is not None and dv_sign.endpoint == f"127.0.0.1:{stack.authpol_port}"
        log_alert = log_outage_alert([pf_sign, dv_sign], 0, time.time())
        assert log_alert is not None and log_alert.facts["lines"] == {"postfix": 1, "dovecot": 1}
    finally:
        stack.start_mailward()
    code, report = probe(stack, str(hook))
    assert code == 0
    mail_flow(stack)
