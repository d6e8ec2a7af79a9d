"""``mailward doctor``: each broken prerequisite is one clear line and a non-zero exit."""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from click.testing import CliRunner
from tests.conftest import shared_file
from tests.notify.sinks import read_outbox, sendmail_stub

from mailward.cli.main import cli
from mailward.enrich.geoip import mmdb_info


def healthy_config(root: Path, *, log: Path, sendmail: Path, extra: str = "") -> Path:
    config = root / "mailward.toml"
    config.write_text(
        f'[general]\nstate_dir = "{root / "state"}"\n'
        f'[sources]\nfiles = ["{log}"]\n'
        f'[notify]\nsendmail_path = "{sendmail}"\n'
        '[enforce]\nbackend = "none"\n' + extra
    )
    config.chmod(0o644)
    return config


def doctor(config: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["-c", str(config), "doctor", *args])
    return result.exit_code, result.output


@pytest.fixture
def world(tmp_path: Path) -> Iterator[Path]:
    # A directory other users can enter (tmp_path's parents are private to root).
    root = Path(tempfile.mkdtemp(prefix="mailward-doctor-"))
    root.chmod(0o755)
    try:
        yield root
    finally:
        for p in sorted(root.rglob("*"), reverse=True):
            p.rmdir() if p.is_dir() and not p.is_symlink() else p.unlink()
        root.rmdir()


def test_all_good_and_send_test(world: Path) -> None:
    log = world / "mail.log"
    log.write_text("x\n")
    script, outbox = sendmail_stub(world)
    code, out = doctor(healthy_config(world, log=log, sendmail=script), "--send-test")
    assert code == 0, out
    assert f"ok    source {log}: readable" in out
    assert "ok    test notification via sendmail" in out
    assert out.strip().endswith("all checks passed")
    assert len(read_outbox(outbox)) == 1


def test_missing_log_and_bad_config_are_named(world: Path) -> None:
    script, _ = sendmail_stub(world)
    code, out = doctor(healthy_config(world, log=world / "nope.log", sendmail=script))
    assert code == 1
    assert f"FAIL  source {world / 'nope.log'}: no such file -> fix sources.files" in out
    bad = world / "bad.toml"
    bad.write_text("[alerts]\nspike_sensitivity = -1\n")
    code, out = doctor(bad, "--json")
    assert code == 1
    data = json.loads(out)
    [cfg] = [c for c in data["checks"] if c["name"] == "config"]
    assert not cfg["ok"] and "alerts.spike_sensitivity" in cfg["detail"]
    assert "mailward config check" in cfg["fix"]


def test_nft_missing_from_path(world: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = world / "mail.log"
    log.write_text("x\n")
    script, _ = sendmail_stub(world)
    config = (
        healthy_config(world, log=log, sendmail=script)
        .read_text()
        .replace('backend = "none"', 'backend = "nftables"')
    )
    (world / "mailward.toml").write_text(config)
    empty = world / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    code, out = doctor(world / "mailward.toml")
    assert code == 1
    assert "FAIL  nftables: nft not found on PATH -> install nftables" in out


def test_broken_sendmail_and_unreadable_geoip(world: Path) -> None:
    log = world / "mail.log"
    log.write_text("x\n")
    db = world / "GeoLite2-Country.mmdb"
    db.write_bytes(b"")
    config = healthy_config(
        world, log=log, sendmail=world / "no-sendmail", extra=f'[geoip]\ncountry_db = "{db}"\n'
    )
    code, out = doctor(config)
    assert code == 1
    assert f"FAIL  notify sendmail: {world / 'no-sendmail'} is missing or not executable" in out
    assert f"FAIL  geoip.country_db: {db}: not a readable MaxMind DB file" in out


@pytest.mark.shared
def test_geoip_age_is_the_build_date_and_the_type_must_fit(world: Path) -> None:
    """MaxMind's test databases were built years ago: stale by their metadata, however fresh
    the file's mtime; an ASN database given as the country database is the wrong type."""
    country = shared_file("maxmind-db/test-data/GeoIP2-Country-Test.mmdb")
    asn = shared_file("maxmind-db/test-data/GeoLite2-ASN-Test.mmdb")
    fresh = world / "Country.mmdb"
    fresh.write_bytes(country.read_bytes())  # mtime: now
    log = world / "mail.log"
    log.write_text("x\n")
    sendmail, _ = sendmail_stub(world)
    geo = f'[geoip]\ncountry_db = "{fresh}"\nasn_db = "{asn}"\nmax_age_days = 30\n'
    code, out = doctor(healthy_config(world, log=log, sendmail=sendmail, extra=geo))
    assert code == 1
    built = mmdb_info(country).build_epoch
    day = time.strftime("%Y-%m-%d", time.gmtime(built))
    assert f"FAIL  geoip.country_db: {fresh} (GeoIP2-Country) was built {day}" in out
    assert "(geoip.max_age_days = 30) -> update it (geoipupdate" in out
    assert "geoip.asn_db" in out and "GeoLite2-ASN" in out
    wrong = f'[geoip]\ncountry_db = "{asn}"\nmax_age_days = 100000\n'
    code, out = doctor(healthy_config(world, log=log, sendmail=sendmail, extra=wrong))
    assert code == 1
    assert (
        f"FAIL  geoip.country_db: {asn} is a 'GeoLite2-ASN' database, not Country or City data"
        in out
    )
    ok = f'[geoip]\ncountry_db = "{fresh}"\nmax_age_days = 100000\n'
    code, out = doctor(healthy_config(world, log=log, sendmail=sendmail, extra=ok))
    assert f"ok    geoip.country_db: {fresh} (GeoIP2-Country), built {day}" in out


@contextmanager
def as_nobody() -> Iterator[None]:
    os.setegid(65534)
    os.seteuid(65534)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop privileges")
def test_unreadable_log(world: Path) -> None:
    log = world / "mail.log"
    log.write_text("x\n")
    log.chmod(0o600)  # root-only, like /var/log/mail.log on many systems
    script, _ = sendmail_stub(world)
    config = healthy_config(world, log=log, sendmail=script)
    (world / "state").mkdir(mode=0o777)
    doctor(config)  # warm imports while root: the interpreter's stdlib is private to root here
    with as_nobody():
        code, out = doctor(config)
    assert code == 1
    assert f"FAIL  source {log}: cannot read: Permission denied -> run mailward as root" in out


def test_startup_mode_fails_only_on_what_stops_the_defence(world: Path) -> None:
    script, _ = sendmail_stub(world)
    config = healthy_config(world, log=world / "not-yet.log", sendmail=script)
    code, out = doctor(config, "--startup")
    assert code == 0, out  # a log that does not exist yet must not keep the daemon down
    assert f"WARN  source {world / 'not-yet.log'}: no such file" in out
    bad = world / "bad.toml"
    bad.write_text("[alerts]\nspike_sensitivity = -1\n")
    code, out = doctor(bad, "--startup")
    assert code == 1 and "FAIL  config:" in out
