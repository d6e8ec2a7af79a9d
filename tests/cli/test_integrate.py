import json

from click.testing import CliRunner

from mailward.cli.integrate import dovecot_snippet, postfix_endpoint, postfix_snippets
from mailward.cli.main import cli
from mailward.config.model import DovecotPolicySettings, PostfixPolicySettings


def test_postfix_endpoint_forms() -> None:
    assert postfix_endpoint("inet:127.0.0.1:10040") == "inet:127.0.0.1:10040"
    assert postfix_endpoint("inet:0.0.0.0:10040") == "inet:127.0.0.1:10040"
    assert postfix_endpoint("inet:[::1]:10040") == "inet:[::1]:10040"
    # under the queue directory: reachable from a chrooted smtpd as private/NAME
    assert postfix_endpoint("unix:/var/spool/postfix/private/mailward") == "unix:private/mailward"
    assert postfix_endpoint("unix:/run/mailward/policy.sock") == "unix:/run/mailward/policy.sock"


def test_postfix_snippets_fail_open_and_set_connect_stage_knobs() -> None:
    s = PostfixPolicySettings(timeout=2, anvil_connection_limit=7, anvil_auth_rate_limit=0)
    out = postfix_snippets(s)
    main_cf, master_cf = out["main.cf"], out["master.cf"]
    for hook in ("mailward_connect", "mailward_rcpt", "mailward_data"):
        assert (
            f"{hook} = check_policy_service {{ inet:127.0.0.1:10040, timeout=2s, try_limit=1, default_action=DUNNO"
            in main_cf
        )
    assert "reject_unlisted_recipient, $mailward_rcpt" in main_cf
    assert master_cf.count("-o smtpd_delay_reject=no") == 2  # submission and submissions
    assert "-o smtpd_client_restrictions=$mailward_connect" in master_cf
    assert "-o smtpd_client_connection_count_limit=7" in master_cf
    assert "smtpd_client_auth_rate_limit" not in master_cf  # 0 = leave it off
    assert "OK" not in main_cf.split() and "RELAY" not in main_cf


def test_dovecot_snippets_for_23_and_24() -> None:
    s = DovecotPolicySettings.model_validate(
        {
            "port": 9999,
            "api_key": "k",
            "basic_user": "u",
            "basic_password": "p",
            "hash_nonce": "n",
            "timeout_ms": 250,
        }
    )
    v23 = dovecot_snippet(s, "2.3")
    assert "auth_policy_server_url = http://u:p@127.0.0.1:9999/" in v23
    assert "auth_policy_server_api_header = X-API-Key: k" in v23
    assert "auth_policy_hash_nonce = n" in v23
    assert "auth_policy_reject_on_fail = no" in v23
    assert "auth_policy_server_timeout_msecs = 250" in v23
    v24 = dovecot_snippet(s, "2.4")
    assert "auth_policy_server_timeout_msecs" not in v24
    assert "http_client_request_absolute_timeout = 250ms" in v24
    placeholder = dovecot_snippet(DovecotPolicySettings(), "2.3")
    assert "auth_policy_hash_nonce = CHANGE-ME" in placeholder
    assert "api_header" not in placeholder


def test_cli_prints_snippets_from_the_config(tmp_path) -> None:  # type: ignore[no-untyped-def]
    cfg = tmp_path / "m.toml"
    cfg.write_text(
        '[policy.postfix]\nenabled = true\nlisten = ["unix:/var/spool/postfix/private/mw"]\n'
    )
    r = CliRunner().invoke(cli, ["-c", str(cfg), "integrate", "postfix"])
    assert r.exit_code == 0, r.output
    assert "unix:private/mw" in r.output and "note:" not in r.output
    r = CliRunner().invoke(cli, ["-c", str(cfg), "integrate", "postfix", "--json"])
    assert set(json.loads(r.output)) == {"main.cf", "master.cf"}
    r = CliRunner().invoke(
        cli, ["-c", str(cfg), "integrate", "dovecot", "--version", "2.4", "--json"]
    )
    data = json.loads(r.output)
    assert data["version"] == "2.4" and "auth_policy {" in data["dovecot.conf"]
    r = CliRunner().invoke(cli, ["-c", str(cfg), "integrate", "dovecot"])
    assert r.exit_code == 0 and "enabled = false" in r.output


def test_cli_bad_listen_setting_is_one_clear_line(tmp_path) -> None:  # type: ignore[no-untyped-def]
    cfg = tmp_path / "m.toml"
    cfg.write_text('[policy.postfix]\nlisten = ["tcp:1.2.3.4"]\n')
    r = CliRunner().invoke(cli, ["-c", str(cfg), "integrate", "postfix"])
    assert r.exit_code == 2
    assert "policy.postfix.listen" in r.output
