"""Shared fixtures. ``shared_file`` reads the third-party corpora in ../shared/data in place and
skips cleanly when they are absent (fresh clones, CI without shared/)."""

from __future__ import annotations

from pathlib import Path

import pytest

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
