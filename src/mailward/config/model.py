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
    cache_size: int = Field(
        65536,
        ge=0,
        description="Addresses whose country/ASN answers are kept in memory (LRU); 0 turns the "
        "cache off.",
    )
    max_age_days: int = Field(
        45,
        ge=1,
        description="An .mmdb older than this (by its build date) is reported as stale by "
        "'mailward doctor'; MaxMind and DB-IP publish monthly or more often.",
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
    prune_interval: float = Field(
        86400.0,
        gt=0,
        description="Seconds between applications of storage.retention_days to the database "
        "(the first runs at start).",
    )
    start_at_end: bool = Field(
        False,
        description="A file seen for the first time is read from its end rather than from "
        "the start (the default reads the whole backlog once).",
    )


class PostfixPolicySettings(Section):
    enabled: bool = Field(False, description="Run the Postfix policy delegation server.")
    listen: list[str] = Field(
        default_factory=lambda: ["inet:127.0.0.1:10040"],
        description="Where it listens: 'inet:HOST:PORT' and/or 'unix:/absolute/path' (a socket "
        "under Postfix's queue directory, e.g. /var/spool/postfix/private/mailward, is reachable "
        "from a chrooted smtpd).",
    )
    socket_mode: str = Field(
        "0660", pattern=r"^0?[0-7]{3}$", description="Octal permissions of UNIX listen sockets."
    )
    socket_group: str | None = Field(
        "postfix", description="Group given to UNIX listen sockets (none: leave it unchanged)."
    )
    max_request_bytes: int = Field(
        16384, ge=512, description="Largest request accepted; a bigger one closes the connection."
    )
    ban_reply: str = Field(
        "4.7.0 Service unavailable, try again later",
        description="Text after the 421 code for a banned client; keep it uninformative.",
    )
    max_connections_per_client: int = Field(
        20,
        ge=0,
        description="mailward's own limit on simultaneous sessions per client, from CONNECT "
        "requests and disconnect log lines (0: off).",
    )
    connection_ttl: float = Field(
        3600.0, gt=0, description="Seconds after which a session without a disconnect line expires."
    )
    anvil_connection_limit: int = Field(
        10,
        ge=0,
        description="Postfix's own smtpd_client_connection_count_limit printed by 'mailward "
        "integrate postfix' for the submission services (0: leave Postfix's default).",
    )
    anvil_auth_rate_limit: int = Field(
        30,
        ge=0,
        description="smtpd_client_auth_rate_limit (AUTH commands per client per minute) printed by "
        "'mailward integrate postfix' for the submission services (0: leave it off).",
    )
    submission_services: list[str] = Field(
        default_factory=lambda: ["submission", "submissions"],
        description="master.cf services that get the CONNECT-stage check and smtpd_delay_reject=no.",
    )
    timeout: int = Field(
        1, ge=1, le=100, description="Postfix's timeout for one policy query, whole seconds."
    )
    prefix_v4: int = Field(
        24, ge=8, le=32, description="IPv4 prefix length for enumeration counts."
    )
    prefix_v6: int = Field(
        64, ge=16, le=128, description="IPv6 prefix length for enumeration counts."
    )
    unknown_recipients_per_client: int = Field(
        10, ge=0, description="Distinct unknown recipients from one client that ban it (0: off)."
    )
    unknown_recipients_per_prefix: int = Field(
        30, ge=0, description="Distinct unknown recipients from one prefix that ban it (0: off)."
    )
    enumeration_window: float = Field(
        3600.0, gt=0, description="Seconds over which unknown recipients are counted."
    )
    enumeration_ban: float = Field(
        3600.0, gt=0, description="Seconds an enumerating client or prefix is refused."
    )
    account_window: float = Field(
        3600.0, gt=0, description="Window in seconds for per-account message and recipient counts."
    )
    account_max_messages: int = Field(
        200, ge=0, description="Messages per account per window before it is flagged (0: off)."
    )
    account_max_recipients: int = Field(
        1000, ge=0, description="Recipients per account per window before it is flagged (0: off)."
    )
    account_source_window: float = Field(
        86400.0,
        gt=0,
        description="Window in seconds for distinct client IPs/countries per account.",
    )
    account_max_ips: int = Field(
        10, ge=0, description="Distinct client IPs per account per source window (0: off)."
    )
    account_max_countries: int = Field(
        3, ge=0, description="Distinct countries per account per source window (0: off)."
    )
    account_flag_seconds: float = Field(
        86400.0, gt=0, description="How long a flagged account stays flagged."
    )
    compromised_action: Literal["defer", "hold", "reject", "warn"] = Field(
        "defer",
        description="What a flagged account's further mail gets: 'defer' (450, the client retries), "
        "'hold' (accepted into the hold queue for review), 'reject' (554) or 'warn' (log only).",
    )

    @field_validator("listen")
    @classmethod
    def _listen_forms(cls, value: list[str]) -> list[str]:
        for item in value:
            kind, _, rest = item.partition(":")
            if kind == "unix" and rest.startswith("/"):
                continue
            host, _, port = rest.rpartition(":")
            if kind == "inet" and host and port.isdigit() and int(port) < 65536:
                continue
            raise ValueError(f"{item!r}: want 'inet:HOST:PORT' or 'unix:/absolute/path'")
        return value


class DovecotPolicySettings(Section):
    enabled: bool = Field(False, description="Run the Dovecot auth-policy HTTP server.")
    host: str = Field("127.0.0.1", description="Address the HTTP server binds to.")
    port: int = Field(
        8421, ge=0, le=65535, description="TCP port of the HTTP server (0: any free port)."
    )
    api_header: str = Field(
        "X-API-Key",
        description="Header carrying the API key (Dovecot auth_policy_server_api_header).",
    )
    api_key: SecretStr | None = Field(
        None, description="Required API key; none means no key is checked. Use $env/$file."
    )
    basic_user: str | None = Field(None, description="Required HTTP Basic user (optional).")
    basic_password: SecretStr | None = Field(
        None, description="Password for basic_user. Use $env/$file."
    )
    hash_nonce: SecretStr | None = Field(
        None,
        description="auth_policy_hash_nonce printed by 'mailward integrate dovecot' (identical on "
        "every node); without it a placeholder is printed.",
    )
    timeout_ms: int = Field(
        300, ge=50, description="auth_policy_server_timeout_msecs printed for Dovecot 2.3."
    )
    max_tarpit: int = Field(
        8, ge=0, description="Largest tarpit (seconds) answered for IMAP/POP3/other logins."
    )
    max_tarpit_smtp: int = Field(
        2,
        ge=0,
        description="Largest tarpit for protocol=smtp: a tarpit holds one Postfix smtpd process.",
    )
    pwhash_window: float = Field(
        3600.0, gt=0, description="Seconds over which distinct failed password hashes are counted."
    )
    pwhash_per_ip: int = Field(
        10,
        ge=0,
        description="Distinct failed password hashes from one IP that ban it (0: off).",
    )
    pwhash_per_login: int = Field(
        20,
        ge=0,
        description="Distinct failed password hashes on one login that protect it (0: off).",
    )
    pwhash_ban: float = Field(
        3600.0, gt=0, description="Seconds a ban or protection from the pwhash counts lasts."
    )
    skip_repeated_pwhash: bool = Field(
        True,
        description="Do not feed the detectors a failure that repeats the same wrong password from "
        "the same IP for the same login (a stale client, not a guess).",
    )
    max_body_bytes: int = Field(
        16384, ge=256, description="Largest request body accepted (larger: 413, connection closed)."
    )
    max_header_bytes: int = Field(
        8192,
        ge=1024,
        description="Largest request line plus headers accepted (larger: 431, connection closed).",
    )
    max_connections: int = Field(
        256,
        ge=1,
        description="Simultaneous HTTP connections; more are answered 503 and closed (Dovecot's "
        "auth process keeps a few).",
    )
    request_timeout: float = Field(
        10.0,
        gt=0,
        description="Seconds from a request's first byte to its last; a slower one gets 408 and "
        "its connection is closed (slowloris).",
    )
    idle_timeout: float = Field(
        120.0,
        gt=0,
        description="Seconds a keep-alive connection may wait for its next request before it is "
        "closed.",
    )
    report_queue: int = Field(
        10000, ge=1, description="Reports waiting to be processed before new ones are dropped."
    )


class PolicySettings(Section):
    postfix: PostfixPolicySettings = Field(
        default_factory=PostfixPolicySettings, description="Postfix check_policy_service server."
    )
    dovecot: DovecotPolicySettings = Field(
        default_factory=DovecotPolicySettings, description="Dovecot auth_policy server."
    )


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
    """Per-address login rate limit (docs/detectors.md)."""

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
    """One extra short-ban step: failures within a window give a ban."""

    failures: int = Field(ge=1, description="Failed logins from one address ...")
    window: DurationSeconds = Field(description="... within this window ...")
    ban: DurationSeconds = Field(description="... give a first ban this long.")


class ShortBanSettings(Section):
    """Failed logins from one address in a short window."""

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
    """Failed logins from one address in a long window: slow guessing."""

    enabled: bool = Field(True, description="Catch slow guessing that never fills a short window.")
    failures: int = Field(12, ge=1, description="Failed logins from one address ...")
    window: DurationSeconds = Field(86400.0, description="... within this window (default 1d) ...")
    ban: DurationSeconds = Field(
        86400.0, description="... give a first ban this long (default 1d)."
    )


class EscalationSettings(Section):
    """Repeat offenders: each offence multiplies the ban."""

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
    """Country and ASN deny lists, allow-only mode, per-country thresholds."""

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
    """Usernames under distributed attack, prefix and ASN rules."""

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
    """Unknown recipients and unknown-user logins per address and prefix."""

    enabled: bool = Field(
        True, description="Count unknown-recipient rejects and unknown-user logins."
    )
    per_ip: int = Field(10, ge=1, description="Unknown users/recipients from one address ...")
    per_prefix: int = Field(30, ge=1, description="... or from one prefix ...")
    window: DurationSeconds = Field(3600.0, description="... within this window ...")
    ban: DurationSeconds = Field(86400.0, description="... give a first ban this long.")


class SafetySettings(Section):
    """Allow lists, NAT safety and the ban circuit breaker."""

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
    """In-line delay suggestions for addresses with recent failures."""

    enabled: bool = Field(
        True, description="Suggest a delay to in-line policy for rising suspicion."
    )
    per_failure: float = Field(
        1.0, ge=0, description="Seconds of delay per recent failure of the address."
    )
    max_delay: float = Field(5.0, ge=0, description="Longest suggested delay in seconds.")


class DetectorSettings(Section):
    """Detectors: thresholds and ban lengths (docs/detectors.md)."""

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
    enforce: EnforceSettings = Field(default_factory=EnforceSettings)
    daemon: DaemonSettings = Field(default_factory=DaemonSettings)
    policy: PolicySettings = Field(default_factory=PolicySettings)
    notify: NotifySettings = Field(default_factory=NotifySettings)
    alerts: AlertSettings = Field(default_factory=AlertSettings)
    digest: DigestSettings = Field(default_factory=DigestSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    detectors: DetectorSettings = Field(default_factory=DetectorSettings)

    @property
    def db_path(self) -> Path:
        return self.storage.path or self.general.state_dir / "mailward.db"

    @property
    def control_socket(self) -> Path:
        return self.daemon.control_socket or self.general.state_dir / "control.sock"


__all__ = ["Settings", "SecretStr", "Network"]
