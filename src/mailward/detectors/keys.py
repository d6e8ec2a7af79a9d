"""Addresses and prefixes as compact int keys for detector state (one int, not a string or an
``ip_address`` object, per tracked source). IPv4 and IPv6 keys, and address and prefix keys, never
collide, so one distinct set may hold addresses and prefixes together.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address

# One key space for the whole pipeline: the ingest stages key addresses the same way.
from mailward.events import IPV6_KEY_FLAG as _V6
from mailward.events import ip_key

IPAddress = IPv4Address | IPv6Address

__all__ = ["IPAddress", "ip_key", "prefix_key"]


def prefix_key(ip: IPAddress, v4len: int, v6len: int) -> int:
    """The containing /v4len or /v6len network as a key distinct from every address key."""
    if isinstance(ip, IPv4Address):
        return (int(ip) >> (32 - v4len) << (32 - v4len)) | (v4len << 33)
    return (int(ip) >> (128 - v6len) << (128 - v6len)) | _V6 | (v6len << 129)
