"""The one typed configuration model. Defaults and help text live here, next to the types.

Each stage owns one section class; ``Settings`` composes them. Every field carries a
``description``: ``docs/configuration.md`` and the example config are checked against it by tests,
so a setting cannot go undocumented. Models are frozen: the config is validated once, at start.
"""

from __future__ import annotations

import re
from ipaddress import IPv4Network, IPv6Network
from pathlib import Path
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)

Network = IPv4Network | IPv6Network


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class GeneralSettings(Section):
    state_dir: Path = Field(
        Path("/var/lib/mailward"),
        description="Directory for the database, source positions and the alert queue.",
    )
    server_addresses: list[Network] = Field(
        default_factory=lambda: list[Network]([IPv4Network("127.0.0.0/8"), IPv6Network("::1/128")]),
        description="The server's own addresses and networks: never banned, never counted.",
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        "info", description="Level of mailward's own log."
    )


class ParsingSettings(Section):
    timezone: str = Field(
        "local",
        description="Time zone of year-less RFC 3164 and Dovecot log_path stamps: 'local', 'UTC' "
        "or an IANA name such as 'Europe/Berlin'.",
    )
    trusted_proxies: list[Network] = Field(
        default_factory=list,
        description="Addresses of webmail or proxies that log in for users; a failure whose client "
        "address is one of these is never attributed to that address.",
    )
    weak_signals: bool = Field(
        False,
        description="Also count 'no auth attempts' and 'lost connection after CONNECT/EHLO' "
        "(off by default: phones and NAT produce them).",
    )

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        if value != "local":
            try:
                ZoneInfo(value)
            except (ZoneInfoNotFoundError, ValueError) as exc:
                raise ValueError(f"unknown time zone {value!r}") from exc
        return value


class SourceSettings(Section):
    files: list[str] = Field(
        default_factory=lambda: ["/var/log/mail.log"],
        description="Log files or globs the daemon follows (rotated files are found by the daemon).",
    )
    journald: bool = Field(False, description="Also follow the systemd journal.")
    journald_units: list[str] = Field(
        default_factory=lambda: ["postfix@-.service", "dovecot.service"],
        description="Journal units to follow when journald is on.",
    )


class StorageSettings(Section):
    backend: Literal["sqlite"] = Field("sqlite", description="Where history is kept.")
    path: Path | None = Field(
        None, description="SQLite database file; default: <general.state_dir>/mailward.db."
    )
    retention_days: int = Field(
        400, ge=1, description="Days of events and decisions kept (default longer than a year)."
    )


class GeoIPSettings(Section):
    country_db: Path | None = Field(
        None,
        description="MaxMind/DB-IP country or city .mmdb; without it an offline country table "
        "shipped on PyPI (iptocc) is used.",
    )
    asn_db: Path | None = Field(
        None, description="MaxMind/DB-IP ASN .mmdb; no ASN data without it."
    )


class AnalyzeSettings(Section):
    rate_limit_per_minute: int = Field(
        3,
        ge=1,
        description="The login rate limit your defences were meant to enforce; clients above it are "
        "reported as evidence that a defence did not hold.",
    )
    spike_sensitivity: float = Field(
        6.0,
        gt=0,
        description="How many robust deviations (MAD) above the baseline an hour must be to count "
        "as a spike; lower finds more.",
    )
    top: int = Field(10, ge=1, le=1000, description="Rows in each top-N table.")


# --- detectors (issue 3) -------------------------------------------------------------------------

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
_DURATION_UNIT = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


def parse_duration_setting(value: object) -> float:
    """``90``, ``"90s"``, ``"10m"``, ``"1h30m"``, ``"30d"``, ``"1w"`` -> seconds."""
    if isinstance(value, bool):
        raise ValueError("a duration is a number of seconds or a string such as '10m'")
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        raw = value.strip().lower()
        try:
            return float(raw)
        except ValueError:
            pass
        pos, seconds = 0, 0.0
        for match in _DURATION_PART.finditer(raw):
            if match.start() != pos:
                break
            seconds += float(match.group(1)) * _DURATION_UNIT[match.group(2)]
            pos = match.end()
        if pos == len(raw) and pos > 0:
            return seconds
    raise ValueError(f"not a duration: {value!r} (use seconds or e.g. '90s', '10m', '6h', '30d')")


DurationSeconds = Annotated[float, BeforeValidator(parse_duration_setting), Field(gt=0)]


class RateLimitSettings(Section):
    enabled: bool = Field(True, description="Ban an address that tries logins too fast.")
    attempts: int = Field(3, ge=1, description="Login attempts allowed per address per window.")
    window: DurationSeconds = Field(60.0, description="The rate-limit window (default one minute).")
    ban: DurationSeconds = Field(
        900.0, description="First ban for exceeding the rate (default 15m)."
    )
    count_successes: bool = Field(
        False,
        description="Count successful logins as attempts too (off: mail clients that poll with "
        "several connections would trip it).",
    )


class BanStep(Section):
    failures: int = Field(ge=1, description="Failed logins from one address ...")
    window: DurationSeconds = Field(description="... within this window ...")
    ban: DurationSeconds = Field(description="... give a first ban this long.")


class ShortBanSettings(Section):
    enabled: bool = Field(True, description="The classic 'N failures in a window' ban.")
    failures: int = Field(5, ge=1, description="Failed logins from one address that trigger a ban.")
    window: DurationSeconds = Field(600.0, description="Window for 'failures' (default 10m).")
    ban: DurationSeconds = Field(3600.0, description="First ban length (default 1h).")
    steps: list[BanStep] = Field(
        default_factory=list,
        description="Extra steps, e.g. {failures=2, window='10m', ban='6h'} bans longer after the "
        "second failure; the longest ban among the triggered steps wins.",
    )


class LongWindowSettings(Section):
    enabled: bool = Field(True, description="Catch slow guessing that never fills a short window.")
    failures: int = Field(12, ge=1, description="Failed logins from one address ...")
    window: DurationSeconds = Field(86400.0, description="... within this window (default 1d) ...")
    ban: DurationSeconds = Field(
        86400.0, description="... give a first ban this long (default 1d)."
    )


class EscalationSettings(Section):
    multiplier: float = Field(
        4.0, ge=1, description="Each repeat offence multiplies the ban by this factor."
    )
    max_ban: DurationSeconds = Field(
        30 * 86400.0, description="Escalated bans never exceed this (30d)."
    )
    history: DurationSeconds = Field(
        400 * 86400.0, description="How far back offences count as repeats (at least a year)."
    )

    @field_validator("history")
    @classmethod
    def _at_least_a_year(cls, value: float) -> float:
        if value < 365 * 86400:
            raise ValueError("offender history must be kept for at least a year ('365d')")
        return value


class GeoRuleSettings(Section):
    deny_countries: list[str] = Field(
        default_factory=list, description="ISO country codes refused in-line and banned on failure."
    )
    allow_countries: list[str] = Field(
        default_factory=list,
        description="Allow-only mode: when set, logins from any other country are refused in-line "
        "and banned on failure (addresses with no known country pass).",
    )
    deny_asns: list[int] = Field(
        default_factory=list, description="AS numbers refused in-line and banned on failure."
    )
    country_failures: dict[str, int] = Field(
        default_factory=dict,
        description="Per-country short-ban threshold replacing short_ban.failures, e.g. {CN = 2}.",
    )
    ban: DurationSeconds = Field(
        86400.0, description="First ban for a failure from a denied origin."
    )

    @field_validator("deny_countries", "allow_countries")
    @classmethod
    def _upper(cls, value: list[str]) -> list[str]:
        for code in value:
            if len(code) != 2 or not code.isalpha():
                raise ValueError(f"not an ISO 3166 two-letter country code: {code!r}")
        return [code.upper() for code in value]

    @field_validator("country_failures")
    @classmethod
    def _upper_keys(cls, value: dict[str, int]) -> dict[str, int]:
        out = {}
        for code, failures in value.items():
            if len(code) != 2 or not code.isalpha():
                raise ValueError(f"not an ISO 3166 two-letter country code: {code!r}")
            if failures < 1:
                raise ValueError(f"{code}: failures must be at least 1")
            out[code.upper()] = failures
        return out


class DistributedSettings(Section):
    enabled: bool = Field(True, description="Detect one username tried from many addresses.")
    user_sources: int = Field(
        8, ge=2, description="Distinct failing sources on one username that mean 'under attack'."
    )
    user_count_by: Literal["ip", "prefix"] = Field(
        "ip", description="Count distinct addresses, or distinct prefixes (/24, /64)."
    )
    user_window: DurationSeconds = Field(
        3600.0, description="Window for user_sources (default 1h)."
    )
    protect: DurationSeconds = Field(
        6 * 3600.0,
        description="How long a username stays under attack; every rejected attempt extends it.",
    )
    first_failure_ban: DurationSeconds = Field(
        86400.0,
        description="Ban for a new (not known-good) address failing on a username under attack.",
    )
    known_good: DurationSeconds = Field(
        30 * 86400.0,
        description="A source with a successful login for a username stays known-good this long.",
    )
    prefix_sources: int = Field(
        5, ge=2, description="Distinct failing addresses in one prefix that get the prefix banned."
    )
    prefix_window: DurationSeconds = Field(
        3600.0, description="Window for prefix_sources (default 1h)."
    )
    prefix_ban: DurationSeconds = Field(
        86400.0, description="First ban for a whole prefix (default 1d)."
    )
    asn_sources: int = Field(
        0,
        ge=0,
        description="Distinct failing addresses in one ASN that make the ASN hostile (0 = off); "
        "then any address of that ASN is banned at its first failure. Needs an ASN database.",
    )
    asn_window: DurationSeconds = Field(3600.0, description="Window for asn_sources.")
    asn_hostile: DurationSeconds = Field(86400.0, description="How long an ASN stays hostile.")


class EnumerationSettings(Section):
    enabled: bool = Field(
        True, description="Count unknown-recipient rejects and unknown-user logins."
    )
    per_ip: int = Field(10, ge=1, description="Unknown users/recipients from one address ...")
    per_prefix: int = Field(30, ge=1, description="... or from one prefix ...")
    window: DurationSeconds = Field(3600.0, description="... within this window ...")
    ban: DurationSeconds = Field(86400.0, description="... give a first ban this long.")


class SafetySettings(Section):
    allow: list[str] = Field(
        default_factory=list,
        description="Never banned, never counted: CIDRs, addresses or host names (names are "
        "resolved when the detectors start).",
    )
    known_good_for: DurationSeconds = Field(
        7 * 86400.0,
        description="An address with a successful login within this time gets higher thresholds.",
    )
    known_good_factor: float = Field(
        3.0,
        ge=1,
        description="Threshold multiplier for such addresses (NAT office with one stale phone).",
    )
    max_bans_per_minute: int = Field(
        300,
        ge=1,
        description="Circuit breaker: beyond this many new bans in a minute, stop banning and "
        "raise an alert until the rate falls again.",
    )


class TarpitSettings(Section):
    enabled: bool = Field(
        True, description="Suggest a delay to in-line policy for rising suspicion."
    )
    per_failure: float = Field(
        1.0, ge=0, description="Seconds of delay per recent failure of the address."
    )
    max_delay: float = Field(5.0, ge=0, description="Longest suggested delay in seconds.")


class DetectorSettings(Section):
    prefix_v4: int = Field(24, ge=8, le=32, description="IPv4 prefix length for prefix rules.")
    prefix_v6: int = Field(64, ge=16, le=128, description="IPv6 prefix length for prefix rules.")
    rate_limit: RateLimitSettings = Field(
        default_factory=RateLimitSettings, description="Per-address login rate limit."
    )
    short_ban: ShortBanSettings = Field(
        default_factory=ShortBanSettings, description="Failures in a short window."
    )
    long_window: LongWindowSettings = Field(
        default_factory=LongWindowSettings, description="Failures in a long window (slow attacks)."
    )
    escalation: EscalationSettings = Field(
        default_factory=EscalationSettings, description="Repeat offenders get longer bans."
    )
    geo: GeoRuleSettings = Field(
        default_factory=GeoRuleSettings, description="Country and ASN rules."
    )
    distributed: DistributedSettings = Field(
        default_factory=DistributedSettings,
        description="Usernames under distributed attack, prefix and ASN rules.",
    )
    enumeration: EnumerationSettings = Field(
        default_factory=EnumerationSettings, description="Address and account enumeration."
    )
    safety: SafetySettings = Field(
        default_factory=SafetySettings, description="Allow lists, NAT safety, circuit breaker."
    )
    tarpit: TarpitSettings = Field(
        default_factory=TarpitSettings, description="In-line delay suggestions."
    )

    @model_validator(mode="after")
    def _sane(self) -> DetectorSettings:
        if self.tarpit.max_delay > 30:
            raise ValueError("tarpit.max_delay above 30 s holds mail server processes too long")
        return self


class Settings(BaseModel):
    """The whole configuration. Build it with ``mailward.config.load``, never at import time."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    general: GeneralSettings = Field(default_factory=GeneralSettings)
    parsing: ParsingSettings = Field(default_factory=ParsingSettings)
    sources: SourceSettings = Field(default_factory=SourceSettings)
    storage: StorageSettings = Field(default_factory=StorageSettings)
    geoip: GeoIPSettings = Field(default_factory=GeoIPSettings)
    analyze: AnalyzeSettings = Field(default_factory=AnalyzeSettings)
    detectors: DetectorSettings = Field(default_factory=DetectorSettings)

    @property
    def db_path(self) -> Path:
        return self.storage.path or self.general.state_dir / "mailward.db"


__all__ = ["Settings", "SecretStr", "Network"]
