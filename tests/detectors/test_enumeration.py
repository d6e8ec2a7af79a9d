from __future__ import annotations

from ipaddress import ip_address

from mailward.config.model import DetectorSettings
from mailward.detectors.base import Source
from mailward.detectors.enumeration import Enumeration
from mailward.detectors.keys import ip_key, prefix_key
from mailward.detectors.state import MemoryState


def src(ip: str) -> Source:
    addr = ip_address(ip)
    return Source(ip=addr, key=ip_key(addr), prefix=prefix_key(addr, 24, 64), prefixlen=24)


def test_per_address() -> None:
    e = Enumeration(DetectorSettings())
    state = MemoryState()
    out = [e.on_miss(state, src("198.51.100.23"), float(i), "recipient") for i in range(10)]
    assert all(f == [] for f in out[:9])
    [finding] = out[9]
    assert finding.rule == "enumeration" and finding.target == "198.51.100.23"
    assert finding.evidence == {"misses": 10, "window": 3600.0, "last": "recipient"}


def test_per_prefix() -> None:
    e = Enumeration(DetectorSettings())
    state = MemoryState()
    findings = []
    for i in range(30):  # 30 hosts of one /24, one probe each
        findings += e.on_miss(state, src(f"198.51.100.{i + 1}"), float(i), "login")
    [finding] = findings
    assert finding.target == "198.51.100.0/24" and finding.evidence["misses"] == 30


def test_disabled() -> None:
    e = Enumeration(DetectorSettings(enumeration={"enabled": False}))
    state = MemoryState()
    assert all(e.on_miss(state, src("198.51.100.1"), float(i), "login") == [] for i in range(50))
