"""Addresses and prefixes as compact int keys for detector state (one int, not a string or an
``ip_address`` object, per tracked source). IPv4 and IPv6 keys, and address and prefix keys, never
collide, so one distinct set may hold addresses and prefixes together.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address
from typing import Final

# One key space for the whole pipeline: the ingest stages key addresses the same way.
from mailward.events import IPV6_KEY_FLAG as _V6
from mailward.events import ip_key

IPAddress = IPv4Address | IPv6Address

__all__ = ["IPAddress", "address_of_key", "ip_key", "prefix_key", "prefix_of_key"]


def prefix_key(ip: IPAddress, v4len: int, v6len: int) -> int:
    """The containing /v4len or /v6len network as a key distinct from every address key."""
    if isinstance(ip, IPv4Address):
        return (int(ip) >> (32 - v4len) << (32 - v4len)) | (v4len << 33)
    return (int(ip) >> (128 - v6len) << (128 - v6len)) | _V6 | (v6len << 129)


def prefix_of_key(key: int, v4len: int, v6len: int) -> int:
    """``prefix_key`` of the address whose ``ip_key`` is ``key`` (no address object needed)."""
    if key < _V6:
        return (key >> (32 - v4len) << (32 - v4len)) | (v4len << 33)
    value = key ^ _V6
    return (value >> (128 - v6len) << (128 - v6len)) | _V6 | (v6len << 129)


# ``IPv4Address(n)`` runs ``__init__`` in Python (type checks and a range check, about 2k
# instructions); a key is known good, so the object is made as that ``__init__`` leaves it: its
# one slot set. tests/detectors/test_keys.py holds the two equal in value, hash and text.
_V4_SLOTS: Final = getattr(IPv4Address, "__slots__", ())
_NEW_V4: Final = IPv4Address.__new__ if "_ip" in _V4_SLOTS else None
_IPv4Address: Final = IPv4Address  # compiled: a static, not a module-dict lookup per call
_IPv6Address: Final = IPv6Address


def address_of_key(key: int) -> IPAddress:
    """The address back from its ``ip_key``."""
    if key < _V6:
        if _NEW_V4 is None:
            return _IPv4Address(key)
        ip: IPv4Address = _NEW_V4(_IPv4Address)
        setattr(ip, "_ip", key)  # noqa: B010 (a slot typeshed does not declare)
        return ip
    return _IPv6Address(key ^ _V6)
