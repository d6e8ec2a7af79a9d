import json
from pathlib import Path

from click.testing import CliRunner

from mailward.cli.main import cli


def test_check_valid_and_invalid(tmp_path: Path) -> None:
    good = tmp_path / "good.toml"
    good.write_text("[analyze]\ntop = 3\n")
    bad = tmp_path / "bad.toml"
    bad.write_text("[analyze]\ntop = -1\n")
    runner = CliRunner()
    ok = runner.invoke(cli, ["config", "check", str(good)])
    assert ok.exit_code == 0, ok.output
    broken = runner.invoke(cli, ["config", "check", str(bad)])
    assert broken.exit_code == 2
    assert "analyze.top" in broken.output
    as_json = runner.invoke(cli, ["config", "check", "--json", str(bad)])
    assert json.loads(as_json.output)["ok"] is False
