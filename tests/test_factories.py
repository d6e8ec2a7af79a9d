"""The fast event builders: same keywords, defaults and results as the dataclasses, in both builds."""

import dataclasses
from ipaddress import IPv4Address, IPv6Address
from typing import Any

import pytest

from mailward import factories
from mailward.events import (
    ALL_EVENTS,
    AuthFailure,
    Event,
    FailReason,
    Origin,
    Service,
    Violation,
)
from mailward.factories import BUILDERS, fast_factory, new_auth_failure, new_origin

# One value per field type, distinct from every default, so a builder that drops a field or
# swaps two shows up as a difference.
_VALUES: dict[str, Any] = {
    "ts": 1700000000.25,
    "service": Service.IMAP,
    "ip": IPv6Address("2001:db8::7"),
    "origin": Origin("mail.log", 12, None),
    "source": "mail.log",
    "line": 7,
    "cursor": "s=abc",
    "reason": FailReason.BAD_PASSWORD,
    "violation": Violation.PREGREET,
    "attempts": 3,
    "summary": True,
    "count": 61,
    "auth_ok": 1,
    "auth_total": 4,
    "commands_ok": 2,
    "commands_total": 5,
}


def _full_kwargs(cls: type[Any]) -> dict[str, Any]:
    return {f.name: _VALUES.get(f.name, f"{f.name}-value") for f in dataclasses.fields(cls)}


def _required_kwargs(cls: type[Any]) -> dict[str, Any]:
    return {
        f.name: _VALUES.get(f.name, f"{f.name}-value")
        for f in dataclasses.fields(cls)
        if f.default is dataclasses.MISSING
    }


def test_every_event_class_has_a_builder() -> None:
    assert set(BUILDERS) == {*ALL_EVENTS, Origin}
    for cls, builder in BUILDERS.items():
        assert getattr(factories, builder.__name__) is not None, cls


@pytest.mark.parametrize("cls", [*ALL_EVENTS, Origin], ids=lambda c: c.__name__)
def test_builders_equal_the_dataclass_constructor(cls: type[Any]) -> None:
    # The builder as this build exports it (compiled direct writes, or fast_factory).
    exported = getattr(factories, BUILDERS[cls].__name__)
    for kwargs in (_full_kwargs(cls), _required_kwargs(cls)):
        fast, slow = exported(**kwargs), cls(**kwargs)
        assert type(fast) is cls
        assert fast == slow and hash(fast) == hash(slow) and repr(fast) == repr(slow)
        for f in dataclasses.fields(cls):
            assert getattr(fast, f.name) == getattr(slow, f.name), f.name
    with pytest.raises(TypeError):
        exported(no_such_field=1)


@pytest.mark.parametrize("cls", [*ALL_EVENTS, Origin], ids=lambda c: c.__name__)
def test_builders_take_the_same_keywords_only(cls: type[Any]) -> None:
    # Checked by behaviour, since a compiled function carries no inspectable signature.
    exported = getattr(factories, BUILDERS[cls].__name__)
    required = _required_kwargs(cls)
    with pytest.raises(TypeError):
        exported(*required.values())
    for name in required:
        with pytest.raises(TypeError):
            exported(**{k: v for k, v in required.items() if k != name})
    for f in dataclasses.fields(cls):
        if f.default is not dataclasses.MISSING:
            one = {**required, f.name: _VALUES.get(f.name, f"{f.name}-value")}
            assert exported(**one) == cls(**one), f.name


def test_built_events_stay_frozen() -> None:
    e = new_auth_failure(ts=1.0, service=Service.SMTP, ip=None, username="u")
    with pytest.raises(dataclasses.FrozenInstanceError):
        e.username = "x"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        new_origin(source="f").line = 3  # type: ignore[misc]


def test_the_build_picks_direct_writes_only_when_they_work() -> None:
    # Compiled: direct writes succeed and are exported. Pure Python: the frozen __setattr__
    # refuses them, so the fast_factory stand-ins are exported instead.
    assert factories.NATIVE == (factories.new_origin is BUILDERS[Origin])
    if not factories.NATIVE:
        with pytest.raises(dataclasses.FrozenInstanceError):
            BUILDERS[Origin](source="f")


def test_fast_factory_builds_equal_events_and_keeps_required_fields() -> None:
    make = fast_factory(AuthFailure)
    ip = IPv4Address("192.0.2.1")
    fast = make(ts=1.0, service=Service.SMTP, ip=ip, username="u", reason=FailReason.BAD_PASSWORD)
    assert fast == AuthFailure(
        ts=1.0, service=Service.SMTP, ip=ip, username="u", reason=FailReason.BAD_PASSWORD
    )
    with pytest.raises(TypeError):
        make(ts=1.0)


def test_fast_factory_refuses_default_factories() -> None:
    @dataclasses.dataclass(frozen=True, kw_only=True)
    class _WithFactory(Event):
        tags: list[str] = dataclasses.field(default_factory=list)

    with pytest.raises(TypeError, match="tags"):
        fast_factory(_WithFactory)
