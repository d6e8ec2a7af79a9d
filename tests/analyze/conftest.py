from __future__ import annotations

from datetime import UTC, datetime

import pytest

from mailward.analyze.aggregate import Aggregator
from mailward.analyze.report import Report, build_report
from mailward.demo.generator import DemoConfig, DemoLog
from mailward.demo.geo import DemoGeo

END = datetime(2026, 11, 21, tzinfo=UTC)


@pytest.fixture(scope="session")
def demo_log() -> DemoLog:
    log = DemoLog(DemoConfig(lines=150_000, seed=7, end=END))
    log.agg = Aggregator().add_all(log.events())  # type: ignore[attr-defined]
    return log


@pytest.fixture(scope="session")
def demo_report(demo_log: DemoLog) -> Report:
    return build_report(demo_log.agg, geo=DemoGeo(), geo_name="demo")  # type: ignore[attr-defined]
