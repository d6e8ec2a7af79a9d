"""Shared fixtures. ``shared_file`` reads the third-party corpora in ../shared/data in place and
skips cleanly when they are absent (fresh clones, CI without shared/)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import settings

# No per-example time limit: on a shared VM one example can stall for the host, and a test must
# not assert a time (benchmarks measure speed, in bench/).
settings.register_profile("mailward", deadline=None)
settings.load_profile("mailward")

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


def shared_file(relpath: str) -> Path:
    """Path of a shared data file, or skip the calling test if it is not there."""
    path = SHARED_DATA / relpath
    if not path.exists():
        pytest.skip(f"shared test data not available: {relpath}")
    return path


@pytest.fixture
def shared() -> type[object]:
    class _Shared:
        file = staticmethod(shared_file)
        root = SHARED_DATA

    return _Shared
