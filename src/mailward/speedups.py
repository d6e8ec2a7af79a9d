"""Which modules the build compiles with mypyc, and whether this install runs them compiled.

The ingest hot path (read, parse, correlate, aggregate) is plain typed Python that mypyc turns into
a C extension at build time (``setup.py`` reads ``COMPILED_MODULES`` from this file); a build
without a C compiler, or with ``MAILWARD_COMPILE=0``, runs the very same modules interpreted.
This module imports nothing from mailward, so ``setup.py`` can read it before anything is built.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util

COMPILED_MODULES: tuple[str, ...] = (
    "mailward.events",
    "mailward.factories",
    "mailward.parsers.base",
    "mailward.parsers.envelope",
    "mailward.parsers.postfix",
    "mailward.parsers.dovecot",
    "mailward.parsers.line",
    "mailward.parsers.correlate",
    "mailward.parsers.pipeline",
    "mailward.sources.files",
    "mailward.analyze.counting",
    "mailward.analyze.aggregate",
    # the in-line policy path: the Dovecot server's handler and rules, the detector engine
    "mailward.policy.dovecot",
    "mailward.policy.dovecot_rules",
    "mailward.policy.postfix",  # the connection loop: framing, scanning, answering
    "mailward.policy.postfix_rules",  # request parsing and the decisions behind the socket
    "mailward.policy.signals",
    "mailward.detectors.base",
    "mailward.detectors.keys",
    "mailward.detectors.state",
    "mailward.detectors.failures",
    "mailward.detectors.distributed",
    "mailward.detectors.enumeration",
    "mailward.detectors.geo",
    "mailward.detectors.safety",
    "mailward.detectors.history",
    "mailward.detectors.decide",
    "mailward.detectors.engine",
    "mailward.decisions.ledger",
    "mailward.clock",  # SystemClock.now() is asked once per request
)

#: hand-written C extensions built beside the mypyc modules: module name -> its source file
C_MODULES: dict[str, str] = {
    # the Postfix policy request scanner; ``policy.postfix`` falls back to Python without it
    "mailward.policy._scan": "src/mailward/policy/_scan.c",
}


def compiled_modules() -> dict[str, bool]:
    """Module name -> True when it loads from a compiled extension in this install."""
    suffixes = tuple(importlib.machinery.EXTENSION_SUFFIXES)
    out: dict[str, bool] = {}
    for name in COMPILED_MODULES:
        spec = importlib.util.find_spec(name)
        origin = spec.origin if spec is not None else None
        out[name] = bool(origin and origin.endswith(suffixes))
    return out


def c_modules() -> dict[str, bool]:
    """C module name -> True when this install has it built."""
    return {name: importlib.util.find_spec(name) is not None for name in C_MODULES}


def describe() -> str:
    """One line for ``mailward --version`` and ``mailward doctor``."""
    state = {**compiled_modules(), **c_modules()}
    done = sum(state.values())
    if done == len(state):
        return f"ingest path compiled with mypyc, {len(COMPILED_MODULES)} modules + C scanner"
    if done == 0:
        return "ingest path interpreted: a pure-Python build, analyze runs about 1.5-2x slower"
    return f"ingest path partly compiled ({done} of {len(state)} modules): rebuild mailward"
