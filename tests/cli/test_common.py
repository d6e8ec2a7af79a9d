import json

import click
from click.testing import CliRunner

from mailward.cli.common import emit_json


def test_emit_json_prints_parseable_json() -> None:
    @click.command()
    def cmd() -> None:
        emit_json({"a": 1})

    result = CliRunner().invoke(cmd)
    assert json.loads(result.output) == {"a": 1}
