"""The one typed configuration model. Defaults and help text live here, next to the types.

Each stage owns one section class; ``Settings`` composes them. Every field carries a
``description``: ``docs/configuration.md`` and the example config are checked against it by tests,
so a setting cannot go undocumented. Models are frozen: the config is validated once, at start.
"""

from __future__ import annotations

from ipaddress import IPv4Network, IPv6Network
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

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


MAIL_PORTS = [25, 465, 587, 110, 995, 143, 993, 4190]


class EnforceSettings(Section):
    backend: Literal["nftables", "dry-run", "none"] = Field(
        "nftables",
        description="How bans are enforced: 'nftables' (mailward's own table), 'dry-run' (log "
        "only) or 'none' (decisions are stored and answered by the policy servers only).",
    )
    table: str = Field(
        "mailward",
        pattern=r"^[A-Za-z][A-Za-z0-9_]{0,30}$",
        description="Name of mailward's own nftables table (family inet); no other table is "
        "ever touched.",
    )
    ports: list[int] = Field(
        default_factory=lambda: list(MAIL_PORTS),
        min_length=1,
        description="TCP ports the ban rules apply to (default: the mail ports 25, 465, 587, "
        "110, 995, 143, 993, 4190).",
    )
    action: Literal["reject", "drop"] = Field(
        "reject",
        description="'reject' answers banned clients with a TCP reset (fast, honest); 'drop' "
        "lets them time out.",
    )
    hooks: list[Literal["input", "forward"]] = Field(
        default_factory=lambda: list[Literal["input", "forward"]](["input"]),
        min_length=1,
        description="Netfilter hooks the ban chain attaches to; add 'forward' when the mail "
        "server runs in a container behind the host's forwarding.",
    )
    batch_interval: float = Field(
        0.2,
        ge=0,
        le=10,
        description="Seconds decisions are collected before one atomic nft batch is sent.",
    )
    nft: str = Field("nft", description="The nft binary (a name on PATH or an absolute path).")
    netns: str | None = Field(
        None,
        description="Run nft inside this named network namespace (ip netns exec); for tests "
        "and containers. Default: the daemon's own namespace.",
    )

    @field_validator("ports")
    @classmethod
    def _valid_ports(cls, value: list[int]) -> list[int]:
        for port in value:
            if not 1 <= port <= 65535:
                raise ValueError(f"port {port} is out of range 1-65535")
        return sorted(set(value))


class DaemonSettings(Section):
    control_socket: Path | None = Field(
        None,
        description="UNIX socket of the control API used by the CLI; default: "
        "<general.state_dir>/control.sock.",
    )
    poll_interval: float = Field(
        0.25, gt=0, le=60, description="Seconds between checks of followed log files."
    )
    expire_interval: float = Field(
        5.0, gt=0, le=3600, description="Seconds between sweeps that expire ended bans."
    )
    checkpoint_interval: float = Field(
        0.5,
        gt=0,
        le=60,
        description="At most this many seconds between commits of processed lines and "
        "source positions (one transaction each).",
    )
    start_at_end: bool = Field(
        False,
        description="A file seen for the first time is read from its end rather than from "
        "the start (the default reads the whole backlog once).",
    )


class Settings(BaseModel):
    """The whole configuration. Build it with ``mailward.config.load``, never at import time."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    general: GeneralSettings = Field(default_factory=GeneralSettings)
    parsing: ParsingSettings = Field(default_factory=ParsingSettings)
    sources: SourceSettings = Field(default_factory=SourceSettings)
    storage: StorageSettings = Field(default_factory=StorageSettings)
    geoip: GeoIPSettings = Field(default_factory=GeoIPSettings)
    analyze: AnalyzeSettings = Field(default_factory=AnalyzeSettings)
    enforce: EnforceSettings = Field(default_factory=EnforceSettings)
    daemon: DaemonSettings = Field(default_factory=DaemonSettings)

    @property
    def db_path(self) -> Path:
        return self.storage.path or self.general.state_dir / "mailward.db"

    @property
    def control_socket(self) -> Path:
        return self.daemon.control_socket or self.general.state_dir / "control.sock"


__all__ = ["Settings", "SecretStr", "Network"]
