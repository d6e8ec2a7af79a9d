import importlib
import pkgutil
import subprocess
import sys

from click.testing import CliRunner

import mailward.cli as pkg
from mailward.cli.main import COMMAND_MODULES, cli


def test_help_lists_commands() -> None:
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    for name in ("analyze", "parse", "run", "doctor", "config"):
        assert name in result.output


def test_registry_matches_every_modules_commands() -> None:
    found: dict[str, str] = {}
    for info in pkgutil.iter_modules(pkg.__path__):
        if info.name in ("main", "common"):
            continue
        module = importlib.import_module(f"mailward.cli.{info.name}")
        for command in getattr(module, "COMMANDS", ()):
            found[command.name] = info.name
    assert found == COMMAND_MODULES


def test_a_verb_imports_only_its_own_module() -> None:
    code = (
        "import sys\n"
        "from mailward.cli.main import cli\n"
        "cli.get_command(None, 'parse')\n"
        "print('aiohttp' in sys.modules, 'mailward.cli.run' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_unknown_verb_is_a_usage_error() -> None:
    result = CliRunner().invoke(cli, ["frobnicate"])
    assert result.exit_code == 2
    assert "No such command" in result.output


def test_version_says_whether_the_ingest_path_is_compiled() -> None:
    from mailward import __version__
    from mailward.speedups import describe

    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0
    assert result.output == f"mailward {__version__} ({describe()})\n"
