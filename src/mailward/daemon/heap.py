"""Keep the cyclic garbage collector off the long-lived heap: after the daemon restores its state
(ledger -> detectors) everything alive is moved to the permanent generation with ``gc.freeze()``,
so full collections no longer traverse it (policy p99 at 2,000 req/s went from ~30 ms to 0.6 ms).
When the heap later grows a lot (an attack filling the detectors), it is frozen again.
"""

from __future__ import annotations

import gc
import logging
import sys
from collections.abc import Callable

log = logging.getLogger(__name__)

CHECK_INTERVAL = 60.0  # seconds between growth checks (one O(1) call each)


class HeapFreezer:
    """``freeze()`` once the long-lived state is built; ``maybe_freeze()`` periodically: it
    refreezes when the allocated block count has grown by ``factor`` and by at least
    ``min_growth`` blocks since the last freeze. Frozen objects that later lose their last
    reference are still freed by reference counting; only garbage *cycles* among them would stay,
    and the detectors' state has none, so the cost is bounded."""

    def __init__(
        self,
        *,
        factor: float = 1.5,
        min_growth: int = 1_000_000,
        blocks: Callable[[], int] = sys.getallocatedblocks,
    ) -> None:
        self.factor = factor
        self.min_growth = min_growth
        self.blocks = blocks
        self.baseline = 0
        self.freezes = 0

    def freeze(self) -> int:
        """Collect what is garbage now, then freeze the rest; returns the frozen object count."""
        gc.collect()
        gc.freeze()
        self.baseline = self.blocks()
        self.freezes += 1
        frozen = gc.get_freeze_count()
        log.info("heap frozen: %d objects moved out of the collector's way", frozen)
        return frozen

    def maybe_freeze(self) -> bool:
        now = self.blocks()
        if now - self.baseline >= self.min_growth and now >= self.baseline * self.factor:
            self.freeze()
            return True
        return False

    def status(self) -> dict[str, int]:
        return {"frozen_objects": gc.get_freeze_count(), "freezes": self.freezes}
