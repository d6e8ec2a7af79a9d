from mailward.events import Origin
from mailward.sources.live import Batch


def test_batch_carries_lines_and_position() -> None:
    b = Batch(source="file:x", lines=[("a", Origin("x", 1))], position="[1]")
    assert b.newest_ts is None and b.extra == {} and b.lines[0][1].line == 1
