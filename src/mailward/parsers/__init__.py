"""Stage 2, parse: turn log lines into typed events (``mailward.events``), then correlate them so
each login attempt is counted once.

Public API: ``LineParser`` (one line -> event), ``Correlator`` (dedupe attempts), ``read_events``
(files -> correlated events, streaming), ``RULES`` (every named parser rule).
"""

from mailward.parsers.base import RULES, ParseStats
from mailward.parsers.correlate import Correlator
from mailward.parsers.line import LineParser
from mailward.parsers.pipeline import EventStream, Progress, read_events

__all__ = [
    "RULES",
    "Correlator",
    "EventStream",
    "LineParser",
    "ParseStats",
    "Progress",
    "read_events",
]
