"""Row layout of typed events in the ``events`` table, derived from the dataclasses themselves.

Every event class in ``mailward.events.ALL_EVENTS`` maps onto the same fixed columns: ``ts``,
``kind``/``service`` (interned), ``ip`` (4- or 16-byte blob), ``user`` (the account an event is
about: ``username`` or ``recipient``, interned), ``attempts``, ``session``, three interned text
slots, four integer slots and the origin. Fields that do not fit go to a JSON ``extra`` column, so a
new event kind is stored (and decoded) without a migration.
"""

from __future__ import annotations

import json
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, fields
from enum import StrEnum
from ipaddress import IPv4Address, IPv6Address
from typing import Any

from mailward.events import ALL_EVENTS, Event, Origin, Service

TEXT_SLOTS = ("t1", "t2", "t3")
INT_SLOTS = ("n1", "n2", "n3", "n4")
USER_FIELDS = ("username", "recipient")  # the account an event targets, for "top usernames"
COMMON = ("ts", "service", "ip", "origin")
IP_CACHE = 100_000

# Column order of a decoded row (``SELECT_EVENT``); ``id`` only orders events of equal ``ts``.
COLUMNS = (
    "ts",
    "kind",
    "service",
    "ip",
    "user",
    "attempts",
    "session",
    *TEXT_SLOTS,
    *INT_SLOTS,
    "src",
    "line",
    "cursor",
    "extra",
)

Row = tuple[Any, ...]
Intern = Callable[[str], int]
Resolve = Callable[[int], str]


def _base_type(hint: Any) -> tuple[type, bool]:
    """``str | None`` -> (str, True); ``FailReason`` -> (FailReason, False)."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) != 1:
            raise TypeError(f"unsupported union field type {hint!r}")
        return args[0], True
    return hint, False


@dataclass(frozen=True, slots=True)
class Field:
    name: str
    column: str
    type: type  # str, int, bool, float, or a StrEnum subclass
    interned: bool  # stored as a strings.id
    optional: bool = False


@dataclass(frozen=True, slots=True)
class Layout:
    """Where each field of one event class lives in a row."""

    cls: type[Event]
    fields: tuple[Field, ...]

    @property
    def by_column(self) -> dict[str, Field]:
        return {f.column: f for f in self.fields}


def layout_for(cls: type[Event]) -> Layout:
    hints = typing.get_type_hints(cls)
    texts = list(TEXT_SLOTS)
    ints = list(INT_SLOTS)
    out: list[Field] = []
    for f in fields(cls):
        if f.name in COMMON:
            continue
        typ, opt = _base_type(hints[f.name])
        if f.name in USER_FIELDS and typ is str and not any(x.column == "user" for x in out):
            out.append(Field(f.name, "user", str, True, opt))
        elif f.name == "attempts" and typ is int and not opt:
            out.append(Field(f.name, "attempts", int, False))
        elif f.name == "session" and typ is str:
            out.append(Field(f.name, "session", str, False, opt))
        elif (typ is str or (isinstance(typ, type) and issubclass(typ, StrEnum))) and texts:
            out.append(Field(f.name, texts.pop(0), typ, True, opt))
        elif typ in (int, bool) and ints:
            out.append(Field(f.name, ints.pop(0), typ, False, opt))
        elif typ in (str, int, bool, float) or (isinstance(typ, type) and issubclass(typ, StrEnum)):
            out.append(Field(f.name, "extra", typ, False, opt))
        else:
            raise TypeError(f"{cls.__name__}.{f.name}: type {typ!r} cannot be stored")
    return Layout(cls, tuple(out))


LAYOUTS: dict[str, Layout] = {cls.kind: layout_for(cls) for cls in ALL_EVENTS}


def decode_ip(value: int | bytes | None) -> IPv4Address | IPv6Address | None:
    """IPv4 is stored as an INTEGER, IPv6 as a 16-byte BLOB (docs/storage.md)."""
    if value is None:
        return None
    return IPv4Address(value) if type(value) is int else IPv6Address(value)


def encode_ip(ip: IPv4Address | IPv6Address) -> int | bytes:
    return int(ip) if type(ip) is IPv4Address else ip.packed


@dataclass(frozen=True, slots=True)
class Encoder:
    """The columns one event kind binds, and ``fn(event, row_id)`` producing their values."""

    columns: tuple[str, ...]
    fn: Callable[[Event, int], Row]


class Codec:
    """Encodes events into rows and rows back into events.

    ``lookup`` is the interning cache's ``dict.get`` and ``intern`` its slow path (insert or
    select); ``resolve`` maps an id back to its string. Interned columns hold 0 for None (ids
    start at 1; 0 and NULL both cost no payload bytes) because binding ``None`` through Python's
    sqlite3 is several times slower than binding an int. Per-kind encoders and decoders are
    generated once as straight-line code: this is the hot path of every import.
    """

    def __init__(
        self,
        lookup: Callable[[Any], int | None],
        intern: Intern,
        resolve: Resolve,
    ) -> None:
        self._lookup = lookup
        self._intern = intern
        self._resolve = resolve
        self._encoders: dict[type[Event], Encoder] = {}
        self._decoders: dict[int, Callable[[Row], Event]] = {}
        self._enum_cache: dict[Any, dict[int, Any]] = {}
        self._ips: dict[int | bytes, IPv4Address | IPv6Address | None] = {}

    def _decode_ip(self, value: int | bytes | None) -> IPv4Address | IPv6Address | None:
        # Attack traffic repeats addresses; building an ipaddress object costs more than the row.
        if value is None:
            return None
        ip = self._ips.get(value)
        if ip is None:
            if len(self._ips) >= IP_CACHE:
                self._ips.clear()
            ip = self._ips[value] = decode_ip(value)
        return ip

    def forget(self) -> None:
        """Drop cached ids (after a rollback: ids created inside it may be reused)."""
        self._decoders.clear()
        for cache in self._enum_cache.values():
            cache.clear()

    def encoder(self, cls: type[Event]) -> Encoder:
        enc = self._encoders.get(cls)
        if enc is None:
            enc = self._encoders[cls] = self._make_encoder(cls)
        return enc

    def encode(self, ev: Event, row_id: int = 0) -> Row:
        return self.encoder(type(ev)).fn(ev, row_id)

    def _make_encoder(self, cls: type[Event]) -> Encoder:
        layout = _layout(cls)
        extras = [f.name for f in layout.fields if f.column == "extra"]
        ns: dict[str, Any] = {
            "G": self._lookup,
            "I": self._intern,
            "V4": IPv4Address,
            "dumps": json.dumps,
            "EXTRAS": extras,
        }
        body = ["def encode(ev, row_id):", "    ip = ev.ip", "    o = ev.origin"]

        def interned(expr: str, var: str) -> str:
            body.append(f"    {var} = {expr}")
            return f"(0 if {var} is None else (G({var}) or I({var})))"

        # Only the columns this kind uses are bound; the others take their schema DEFAULT.
        columns = ["id", "ts", "kind", "service", "ip"]
        values = [
            "row_id",
            "ev.ts",
            f"(G({cls.kind!r}) or I({cls.kind!r}))",
            interned("ev.service", "svc"),
            "(None if ip is None else (int(ip) if ip.__class__ is V4 else ip.packed))",
        ]
        for f in layout.fields:
            if f.column == "extra":
                continue
            columns.append(f.column)
            if f.interned:
                values.append(interned(f"ev.{f.name}", f"v_{f.name}"))
            elif f.type is bool and f.optional:
                values.append(f"(None if ev.{f.name} is None else int(ev.{f.name}))")
            elif f.type is bool:
                values.append(f"int(ev.{f.name})")
            else:
                values.append(f"ev.{f.name}")
        columns += ["src", "line", "cursor"]
        values += [
            "(0 if o is None else (G(o.source) or I(o.source)))",
            "(None if o is None else o.line)",
            "(None if o is None else o.cursor)",
        ]
        if extras:
            columns.append("extra")
            values.append("dumps({k: getattr(ev, k) for k in EXTRAS}, ensure_ascii=False)")
        body.append("    return (" + ", ".join(values) + ",)")
        exec("\n".join(body), ns)  # generated from the dataclass fields above
        return Encoder(tuple(columns), ns["encode"])

    def decode(self, row: Row) -> Event:
        """``row`` is in ``COLUMNS`` order (what ``SELECT_EVENT`` returns)."""
        dec = self._decoders.get(row[1])
        if dec is None:
            dec = self._decoders[row[1]] = self._make_decoder(self._resolve(row[1]))
        return dec(row)

    def _make_decoder(self, kind: str) -> Callable[[Row], Event]:
        layout = LAYOUTS.get(kind)
        if layout is None:
            raise ValueError(f"stored event kind {kind!r} is not in mailward.events.ALL_EVENTS")
        index = {c: i for i, c in enumerate(COLUMNS)}
        ns: dict[str, Any] = {
            "CLS": layout.cls,
            "R": self._resolve,
            "IP": self._decode_ip,
            "Origin": Origin,
            "Service": Service,
            "loads": json.loads,
        }

        def enum_lookup(enum_cls: Any) -> tuple[dict[int, Any], Callable[[int], Any]]:
            cache = self._enum_cache.setdefault(enum_cls, {})

            def load(sid: int) -> Any:
                member = cache[sid] = enum_cls(self._resolve(sid))
                return member

            return cache, load

        ns["SVC"], ns["SVCL"] = enum_lookup(Service)
        kw = [
            "ts=row[0]",
            f"service=(SVC.get(row[{index['service']}]) or SVCL(row[{index['service']}]))",
            f"ip=IP(row[{index['ip']}])",
            f"origin=(None if not row[{index['src']}] else "
            f"Origin(R(row[{index['src']}]), row[{index['line']}], row[{index['cursor']}]))",
        ]
        extras: list[Field] = []
        for n, f in enumerate(layout.fields):
            i = index[f.column]
            if f.column == "extra":
                extras.append(f)
            elif f.interned and f.type is str:
                kw.append(f"{f.name}=(None if not row[{i}] else R(row[{i}]))")
            elif f.interned:
                ns[f"E{n}"], ns[f"EL{n}"] = enum_lookup(f.type)
                kw.append(
                    f"{f.name}=(None if not row[{i}] else (E{n}.get(row[{i}]) or EL{n}(row[{i}])))"
                )
            elif f.type is bool and f.optional:
                kw.append(f"{f.name}=(None if row[{i}] is None else bool(row[{i}]))")
            elif f.type is bool:
                kw.append(f"{f.name}=bool(row[{i}])")
            else:
                kw.append(f"{f.name}=row[{i}]")
        ns["EXTRA_TYPES"] = {f.name: f.type for f in extras}
        body = ["def decode(row):"]
        if extras:
            body.append(f"    x = loads(row[{index['extra']}] or '{{}}')")
            body.append(
                "    x = {k: (v if v is None or EXTRA_TYPES[k] in (str, int, float) "
                "else EXTRA_TYPES[k](v)) for k, v in x.items() if k in EXTRA_TYPES}"
            )
            body.append("    return CLS(" + ", ".join(kw) + ", **x)")
        else:
            body.append("    return CLS(" + ", ".join(kw) + ")")
        exec("\n".join(body), ns)  # noqa: S102 - generated from the dataclass fields above
        fn: Callable[[Row], Event] = ns["decode"]
        return fn


def _layout(cls: type[Event]) -> Layout:
    layout = LAYOUTS.get(cls.kind)
    if layout is None or layout.cls is not cls:
        layout = LAYOUTS[cls.kind] = layout_for(cls)
    return layout
