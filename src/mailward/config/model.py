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


Severity = Literal["info", "warning", "high", "critical"]


class NotifySettings(Section):
    """[notify]: where alerts go. Local sendmail is the default: no credentials stored."""

    enabled: bool = Field(True, description="Send notifications at all.")
    to: list[str] = Field(
        default_factory=lambda: ["root"],
        description="Recipients of alert mail (sendmail and SMTP channels).",
    )
    from_address: str = Field("mailward@localhost", description="Sender address of alert mail.")
    min_severity: Severity = Field(
        "warning", description="Alerts below this severity are not sent (still counted)."
    )
    sendmail: bool = Field(True, description="Deliver through the local sendmail binary.")
    sendmail_path: Path = Field(
        Path("/usr/sbin/sendmail"), description="The sendmail binary (Postfix ships one)."
    )
    smtp_host: str | None = Field(
        None, description="SMTP relay for alerts; empty means the SMTP channel is off."
    )
    smtp_port: int = Field(587, ge=1, le=65535, description="SMTP relay port.")
    smtp_security: Literal["starttls", "tls", "none"] = Field(
        "starttls",
        description="'starttls' (587), 'tls' (implicit TLS, 465) or 'none' (loopback only).",
    )
    smtp_username: str | None = Field(None, description="SMTP login; empty means no AUTH.")
    smtp_password: SecretStr | None = Field(
        None,
        description='SMTP password; write it as { "$file" = "/etc/mailward/smtp.pw" } or '
        '{ "$env" = "NAME" }, never inline.',
    )
    smtp_verify_tls: bool = Field(True, description="Verify the relay's TLS certificate.")
    smtp_ca_file: Path | None = Field(
        None, description="CA bundle for the relay's certificate (default: the system store)."
    )
    apprise_urls: list[SecretStr] = Field(
        default_factory=list,
        description="Apprise URLs (ntfy://, slack://, matrix://, json://, ...); each one may be a "
        "$env/$file secret since URLs carry tokens.",
    )
    timeout_seconds: float = Field(
        30.0, gt=0, description="A delivery attempt taking longer than this counts as failed."
    )
    queue_size: int = Field(
        1000, ge=1, description="Per-channel in-memory queue bound; overflow goes to the spool."
    )
    group_seconds: float = Field(
        20.0,
        ge=0,
        description="Alerts raised within this window are sent as one message (critical ones "
        "are never held back).",
    )
    cooldown_seconds: float = Field(
        3600.0,
        ge=0,
        description="After an alert is sent, the same alert (same key) is held back this long; "
        "repeats are counted and reported with the next one. Survives restarts.",
    )
    retry_initial_seconds: float = Field(
        30.0, gt=0, description="First retry delay for an undelivered message (doubles each try)."
    )
    retry_max_seconds: float = Field(
        3600.0, gt=0, description="Longest delay between retries of an undelivered message."
    )
    spool_max_age_days: float = Field(
        7.0, gt=0, description="Undelivered messages older than this are dropped (and logged)."
    )
    heartbeat_url: SecretStr | None = Field(
        None,
        description="Dead-man's-switch URL (e.g. healthchecks.io) pinged while mailward is "
        "healthy; empty means off.",
    )
    heartbeat_seconds: float = Field(300.0, ge=10, description="Interval between heartbeat pings.")


class AlertSettings(Section):
    """[alerts]: the rules that turn events, decisions and health into alerts."""

    check_seconds: float = Field(
        15.0, gt=0, description="How often time-based rules (spikes, lag, silence) are evaluated."
    )
    spike_kinds: list[str] = Field(
        default_factory=lambda: ["auth_failure"],
        description="Event kinds counted as login attempts by the spike rule.",
    )
    spike_sensitivity: float = Field(
        6.0,
        gt=0,
        description="Robust deviations (MAD, Poisson floor) above the hour-of-week baseline a "
        "60-minute window must reach to be a spike; lower fires more.",
    )
    spike_min_count: int = Field(
        30, ge=1, description="A spike needs at least this many attempts in 60 minutes."
    )
    spike_min_ratio: float = Field(
        3.0, ge=1, description="A spike needs at least this many times the baseline."
    )
    spike_history_weeks: int = Field(
        8, ge=1, le=52, description="Weeks of hourly counts kept for the baseline."
    )
    distributed_min_ips: int = Field(
        10,
        ge=2,
        description="Distinct IPs failing on one username within the window that make a "
        "distributed-attack alert.",
    )
    distributed_window_seconds: float = Field(
        3600.0, gt=0, description="Window of the distributed-attack rule."
    )
    ban_storm_per_minute: int = Field(
        30, ge=1, description="Bans per minute above which a ban-storm alert fires."
    )
    breach_min_failures: int = Field(
        5,
        ge=1,
        description="Failures from the same IP before a successful login that make a "
        "possible-breach alert (critical).",
    )
    breach_prefix_min_failures: int = Field(
        20,
        ge=1,
        description="Failures from the same /24 or /64 before a success that make a "
        "possible-breach alert.",
    )
    breach_window_seconds: float = Field(
        86400.0, gt=0, description="How far back failures count for the possible-breach rule."
    )
    new_location: bool = Field(
        True,
        description="Alert when an account logs in from a country or ASN never seen for it.",
    )
    source_lag_seconds: float = Field(
        120.0,
        gt=0,
        description="Alert when a source's processing falls this far behind its newest line.",
    )
    source_silence_seconds: float = Field(
        3600.0,
        gt=0,
        description="Alert when a busy source has written no new line for this long.",
    )
    task_crash_alert: bool = Field(
        True, description="Alert when a daemon task crashes (it is restarted either way)."
    )


class DigestSettings(Section):
    """[digest]: the daily summary mail."""

    enabled: bool = Field(False, description="Send the daily digest from the daemon.")
    hour: int = Field(7, ge=0, le=23, description="Local hour of day the digest is sent.")
    chart: bool = Field(True, description="Include the PNG chart of attempts per hour.")


class MetricsSettings(Section):
    """[metrics]: the Prometheus endpoint."""

    enabled: bool = Field(False, description="Serve Prometheus metrics.")
    listen: str = Field(
        "127.0.0.1:9617", description="host:port of the metrics endpoint (keep it on loopback)."
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
    notify: NotifySettings = Field(default_factory=NotifySettings)
    alerts: AlertSettings = Field(default_factory=AlertSettings)
    digest: DigestSettings = Field(default_factory=DigestSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)

    @property
    def db_path(self) -> Path:
        return self.storage.path or self.general.state_dir / "mailward.db"


__all__ = ["Settings", "SecretStr", "Network"]
