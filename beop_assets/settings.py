"""The operator's settings (SPEC section 6), read from the environment at the moment they are needed.

Nothing here is cached in module globals: the same process (a test, `dagster dev`) may see the
settings change, and the registry file is looked at on every use so that edits need no restart
(`resources.py` reuses the validated registry only while its files are byte for byte unchanged).
Every variable, its default and why is listed in docs/operators-guide.md.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

from beop_assets.delivery.retry import DEFAULT_ATTEMPTS, DEFAULT_BACKOFF_S, RetryPolicy

DEFAULT_LANDING = "data/landing"
DEFAULT_WAREHOUSE = "data/warehouse"
# With BEOP_WAREHOUSE=gs://...: the local folder this machine reads and writes the model in.
DEFAULT_WAREHOUSE_CACHE = "data/warehouse-cache"
DEFAULT_EXPORTS = "exports.yaml"
# The first data day Dagster offers as a partition is this many days back (BEOP_START_DATE overrides):
# a partition bar of a few months stays readable; an older backfill sets BEOP_START_DATE.
DEFAULT_START_DAYS_BACK = 90
# How many data days back the delivery sensor looks for loaded days not yet delivered.
DEFAULT_DELIVERY_LOOKBACK_DAYS = 7
# By this time (UTC) yesterday's file of every enabled export must have been delivered.
DEFAULT_MISSED_DAY_DEADLINE = "06:00"
# Landing days, model days, spool files and ledger rows older than this many days are purged.
DEFAULT_RETENTION_DAYS = 30
# A crash leaves nothing behind for longer than one night: an older temporary file of the product in a
# customer's directory is removed by the next delivery there (a live upload is never that old).
DEFAULT_SFTP_STALE_TEMP_HOURS = 1
SCHEDULE_STATES = ("running", "stopped")


@dataclass(frozen=True)
class AlertSettings:
    """Where alerts go: a Slack-compatible webhook and/or e-mail over SMTP (none: alerts are only logged)."""

    webhook_url: str | None = None
    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_from: str | None = None
    smtp_to: tuple[str, ...] = ()
    smtp_user: str | None = None
    smtp_password: str | None = field(default=None, repr=False)
    smtp_starttls: bool = False
    timeout_s: float = 10.0

    @property
    def email_enabled(self) -> bool:
        return bool(self.smtp_host and self.smtp_to)

    @property
    def enabled(self) -> bool:
        return bool(self.webhook_url) or self.email_enabled


@dataclass(frozen=True)
class Settings:
    landing: str
    warehouse: Path  # the local folder of the model, the spool and the SQLite ledger
    exports_file: Path
    start_date: str
    gzip_level: int  # deflate level of global exports, zlib-ng 0-9
    load_memory_limit: str  # DuckDB's memory limit for a day load (it spills past it)
    export_threads: int = 2  # DuckDB threads of an export's read of the model (2 cores: one export at a time)
    schedule_default: str = "running"
    delivery_lookback_days: int = DEFAULT_DELIVERY_LOOKBACK_DAYS
    missed_day_deadline: time = time(6, 0)
    retention_days: int = DEFAULT_RETENTION_DAYS
    alerts: AlertSettings = field(default_factory=AlertSettings)
    # SFTP servers without a hash extension: prove content by reading the temporary file back
    # (costs a second transfer) rather than by every write's acknowledgement and the size.
    sftp_read_back: bool = False
    # A temporary file of the product's older than this in a customer's directory is a crash's leftover.
    sftp_stale_temp_age_s: float = DEFAULT_SFTP_STALE_TEMP_HOURS * 3600
    ledger_url: str | None = None  # BEOP_LEDGER_URL: the delivery ledger in Postgres; unset: SQLite in the warehouse
    delivery_workers: int = 1
    # BEOP_DELIVERY_ATTEMPTS, BEOP_DELIVERY_BACKOFF: how each delivery retries transient failures.
    delivery_retry: RetryPolicy = field(default_factory=RetryPolicy)
    # BEOP_WAREHOUSE=gs://bucket/prefix: where the model's days live; `warehouse` is then this machine's copy.
    warehouse_store: str | None = None

    @property
    def landing_is_gcs(self) -> bool:
        return self.landing.startswith("gs://")


def _flag(name: str) -> bool:
    text = os.environ.get(name, "").strip().lower()
    if text not in ("", "0", "1", "true", "false", "yes", "no"):
        raise ValueError(f"{name}={text!r}: expected 1 or 0")
    return text in ("1", "true", "yes")


def _positive_int(name: str, default: int, unit: str = "days") -> int:
    text = os.environ.get(name, str(default))
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"{name}={text!r}: expected a whole number of {unit}") from None
    if value < 1:
        raise ValueError(f"{name}={text!r}: expected at least 1")
    return value


def parse_clock(text: str, name: str = "BEOP_MISSED_DAY_DEADLINE") -> time:
    try:
        hours, minutes = text.split(":")
        return time(int(hours), int(minutes))
    except ValueError:
        raise ValueError(f"{name}={text!r}: expected HH:MM (UTC), e.g. 06:00") from None


def _schedule_default() -> str:
    value = os.environ.get("BEOP_SCHEDULE_DEFAULT", "running").strip().lower()
    if value not in SCHEDULE_STATES:
        raise ValueError(f"BEOP_SCHEDULE_DEFAULT={value!r}: expected one of {', '.join(SCHEDULE_STATES)}")
    return value


def _port(text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError(f"BEOP_ALERT_SMTP_PORT={text!r}: expected a TCP port number (25, 465, 587, ...)")
    return int(text)


def alert_settings() -> AlertSettings:
    env = os.environ.get
    return AlertSettings(
        webhook_url=env("BEOP_ALERT_WEBHOOK_URL") or None,
        smtp_host=env("BEOP_ALERT_SMTP_HOST") or None,
        smtp_port=_port(env("BEOP_ALERT_SMTP_PORT") or "25"),
        smtp_from=env("BEOP_ALERT_SMTP_FROM") or "beop-exports@localhost",
        smtp_to=tuple(a.strip() for a in (env("BEOP_ALERT_SMTP_TO") or "").split(",") if a.strip()),
        smtp_user=env("BEOP_ALERT_SMTP_USER") or None,
        smtp_password=env("BEOP_ALERT_SMTP_PASSWORD") or None,
        smtp_starttls=(env("BEOP_ALERT_SMTP_STARTTLS") or "").lower() in ("1", "true", "yes"),
    )


def default_start_date(today: date | None = None) -> str:
    today = today or datetime.now(UTC).date()
    return (today - timedelta(days=DEFAULT_START_DAYS_BACK)).isoformat()


def _warehouse() -> tuple[Path, str | None]:
    """(local folder, gs:// store or None): a gs:// BEOP_WAREHOUSE keeps its local copy in BEOP_WAREHOUSE_CACHE."""
    value = os.environ.get("BEOP_WAREHOUSE") or DEFAULT_WAREHOUSE
    if "://" not in value:
        return Path(value), None
    if not value.startswith("gs://") or not value.removeprefix("gs://").split("/", 1)[0]:
        raise ValueError(f"BEOP_WAREHOUSE={value!r}: expected a local folder or gs://bucket/prefix")
    return Path(os.environ.get("BEOP_WAREHOUSE_CACHE") or DEFAULT_WAREHOUSE_CACHE), value


def current() -> Settings:
    warehouse, warehouse_store = _warehouse()
    return Settings(
        landing=os.environ.get("BEOP_LANDING", DEFAULT_LANDING),
        warehouse=warehouse,
        warehouse_store=warehouse_store,
        exports_file=Path(os.environ.get("BEOP_EXPORTS", DEFAULT_EXPORTS)),
        start_date=os.environ.get("BEOP_START_DATE") or default_start_date(),
        gzip_level=int(os.environ.get("BEOP_GZIP_LEVEL", "5")),
        load_memory_limit=os.environ.get("BEOP_LOAD_MEMORY_LIMIT", "1GB"),
        export_threads=_positive_int("BEOP_EXPORT_THREADS", 2, "threads"),
        schedule_default=_schedule_default(),
        delivery_lookback_days=_positive_int("BEOP_DELIVERY_LOOKBACK_DAYS", DEFAULT_DELIVERY_LOOKBACK_DAYS),
        missed_day_deadline=parse_clock(os.environ.get("BEOP_MISSED_DAY_DEADLINE", DEFAULT_MISSED_DAY_DEADLINE)),
        retention_days=_positive_int("BEOP_RETENTION_DAYS", DEFAULT_RETENTION_DAYS),
        alerts=alert_settings(),
        sftp_read_back=_flag("BEOP_SFTP_READ_BACK"),
        sftp_stale_temp_age_s=_positive_int("BEOP_SFTP_STALE_TEMP_HOURS", DEFAULT_SFTP_STALE_TEMP_HOURS, "hours")
        * 3600,
        ledger_url=os.environ.get("BEOP_LEDGER_URL") or None,
        # Processes that deliver exports side by side in `beop-exports run` (1: one after another).
        delivery_workers=max(1, int(os.environ.get("BEOP_DELIVERY_WORKERS") or os.cpu_count() or 1)),
        delivery_retry=delivery_retry(),
    )


def delivery_retry() -> RetryPolicy:
    """The delivery retry policy: BEOP_DELIVERY_ATTEMPTS tries, the first wait BEOP_DELIVERY_BACKOFF seconds."""
    attempts = _positive_int("BEOP_DELIVERY_ATTEMPTS", DEFAULT_ATTEMPTS, "attempts")
    text = os.environ.get("BEOP_DELIVERY_BACKOFF", str(DEFAULT_BACKOFF_S))
    try:
        backoff = float(text)
    except ValueError:
        raise ValueError(f"BEOP_DELIVERY_BACKOFF={text!r}: expected seconds, e.g. 1.0") from None
    if backoff < 0:
        raise ValueError(f"BEOP_DELIVERY_BACKOFF={text!r}: expected 0 or more seconds")
    return RetryPolicy(attempts=attempts, backoff_s=backoff)


def parse_day(text: str) -> date:
    """A data day as operators type it (YYYY-MM-DD), with an error that says what was expected."""
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ValueError(f"invalid date {text!r}: expected YYYY-MM-DD") from None
