import pytest

from mailward.daemon.durations import format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90s", 90),
        ("10m", 600),
        ("1h", 3600),
        ("1d", 86400),
        ("2w", 1209600),
        ("1h30m", 5400),
        ("1.5h", 5400),
        ("45", 45),
        (" 2D ", 172800),
    ],
)
def test_parses_units(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["permanent", "forever", "never"])
def test_permanent_is_none(text: str) -> None:
    assert parse_duration(text) is None


@pytest.mark.parametrize("text", ["", "1y", "h", "10 m", "-5m", "0s", "1h-", "m10", "abc"])
def test_rejects_with_clear_message(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_format_roundtrip() -> None:
    assert format_duration(None) == "permanent"
    assert format_duration(93784) == "1d2h"
    assert format_duration(45) == "45s"
    assert format_duration(0) == "0s"
    assert parse_duration(format_duration(5400) or "") == 5400
