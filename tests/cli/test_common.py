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


def test_batch_gc_freezes_start_up_objects_and_restores_the_schedule() -> None:
    import gc

    from mailward.cli.common import batch_gc

    before = gc.get_threshold()
    with batch_gc(threshold=50_000):
        assert gc.get_threshold() == (50_000, before[1], before[2])
        assert gc.get_freeze_count() > 0
        # Reference cycles made meanwhile are still collectable.
        cycle: list[object] = []
        cycle.append(cycle)
        del cycle
        assert gc.collect() >= 1
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0
