from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from mailward.cli.main import cli


def test_digest_without_a_database_says_what_to_do(tmp_path: Path) -> None:
    config = tmp_path / "m.toml"
    config.write_text(f'[general]\nstate_dir = "{tmp_path}"\n')
    result = CliRunner().invoke(cli, ["-c", str(config), "digest"])
    assert result.exit_code == 2
    assert result.output.startswith("mailward: ")
    assert "mailward analyze --store" in result.output or "not available" in result.output
