"""Bounded counting for one pass over unbounded input: a pruning counter and a distinct sketch."""

from __future__ import annotations


class BoundedCounter:
    """A dict counter that prunes its smallest entries when it grows past ``cap`` keys."""

    __slots__ = ("cap", "counts", "pruned")

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.counts: dict[str, int] = {}
        self.pruned = 0  # keys dropped so far: when > 0, small counts are approximate

    def add(self, key: str, n: int = 1) -> None:
        counts = self.counts
        counts[key] = counts.get(key, 0) + n
        if len(counts) > self.cap:
            self._prune()

    def _prune(self) -> None:
        ordered = sorted(self.counts.values())
        floor = ordered[len(ordered) // 2]
        before = len(self.counts)
        self.counts = {k: v for k, v in self.counts.items() if v > floor}
        self.pruned += before - len(self.counts)

    def top(self, n: int) -> list[tuple[str, int]]:
        return sorted(self.counts.items(), key=lambda kv: (-kv[1], kv[0]))[:n]


def _mix(x: int) -> int:
    """A 64-bit mixing hash (splitmix64 finaliser): addresses are sequential, hashes must not be."""
    x = (x ^ (x >> 64)) & 0xFFFFFFFFFFFFFFFF
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    return x ^ (x >> 31)


class DistinctSketch:
    """Distinct count: exact up to ``k`` values, then a K-minimum-values estimate (error ~1/sqrt k)."""

    __slots__ = ("hashed", "k", "values", "worst")

    def __init__(self, k: int = 128) -> None:
        self.k = k
        self.values: set[int] = set()
        self.hashed = False  # exact phase: raw values; then the k smallest hashes
        self.worst = 0  # the largest kept hash, once hashed

    def add(self, value: int) -> None:
        values = self.values
        if not self.hashed:
            values.add(value)
            if len(values) >= self.k:
                self.values = {_mix(v) for v in values}
                self.hashed = True
                self.worst = max(self.values)
            return
        h = _mix(value)
        if h >= self.worst or h in values:
            return
        values.discard(self.worst)
        values.add(h)
        self.worst = max(values)

    @property
    def exact(self) -> bool:
        return not self.hashed

    def estimate(self) -> int:
        if not self.hashed:
            return len(self.values)
        return round((self.k - 1) * 2**64 / self.worst)
