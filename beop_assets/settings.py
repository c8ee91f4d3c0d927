"""The operator's settings (docs/operators-guide.md), read from the environment at the edge only.

`current()` is called where the product meets its deployment: the CLI, `definitions.py` (which builds the
resources' fields from it) and the Celery app. Everything below them gets its settings as arguments or
resource fields. Nothing is cached in module globals: a process that reloads its definitions (`dagster dev`)
sees a changed environment. Every variable, its default and why is listed in docs/operators-guide.md.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from beop_assets.cloud_storage import GsUrl, is_gs
from beop_assets.delivery.retry import DEFAULT_ATTEMPTS, DEFAULT_BACKOFF_S, RetryPolicy
from beop_assets.exports.delivery_runs import DEFAULT_BATCH_SIZE, DEFAULT_KEYS_PER_TICK
from beop_assets.exports.delivery_schedule import (
    DEFAULT_FIRST_MINUTES,
    DEFAULT_MAX_MINUTES,
    DEFAULT_PERMANENT_MINUTES,
    RetrySchedule,
)

if TYPE_CHECKING:
    from beop_assets.operations.alert_settings import AlertSettings

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
# Delivery runs in processes of their own yield the CPU to the daemon and the code server (BEOP_RUN_NICE).
DEFAULT_RUN_NICE = 10
SCHEDULE_STATES = ("running", "stopped")


def _flag(env: Mapping[str, str], name: str) -> bool:
    text = env.get(name, "").strip().lower()
    if text not in ("", "0", "1", "true", "false", "yes", "no"):
        raise SettingError(f"{name}={text!r}: expected 1 or 0")
    return text in ("1", "true", "yes")


def _positive_int(env: Mapping[str, str], name: str, default: int, unit: str = "days") -> int:
    return _bounded_int(env, name, default, 1, None, f"a whole number of {unit}")


def _bounded_int(env: Mapping[str, str], name: str, default: int, low: int, high: int | None, what: str) -> int:
    text = env.get(name) or str(default)
    try:
        value = int(text)
    except ValueError:
        raise SettingError(f"{name}={text!r}: expected {what}") from None
    if value < low or (high is not None and value > high):
        bounds = f"from {low} to {high}" if high is not None else f"at least {low}"
        raise SettingError(f"{name}={text!r}: expected {what}, {bounds}")
    return value


def parse_clock(text: str, name: str = "BEOP_MISSED_DAY_DEADLINE") -> time:
    try:
        hours, minutes = text.split(":")
        return time(int(hours), int(minutes))
    except ValueError:
        raise SettingError(f"{name}={text!r}: expected HH:MM (UTC), e.g. 06:00") from None


def _port(text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise SettingError(f"BEOP_ALERT_SMTP_PORT={text!r}: expected a TCP port number (25, 465, 587, ...)")
    return int(text)


def alert_settings(env: Mapping[str, str]) -> AlertSettings:
    from beop_assets.operations.alert_settings import AlertSettings

    get = env.get
    return AlertSettings(
        webhook_url=get("BEOP_ALERT_WEBHOOK_URL") or None,
        smtp_host=get("BEOP_ALERT_SMTP_HOST") or None,
        smtp_port=_port(get("BEOP_ALERT_SMTP_PORT") or "25"),
        smtp_from=get("BEOP_ALERT_SMTP_FROM") or "beop-exports@localhost",
        smtp_to=tuple(a.strip() for a in (get("BEOP_ALERT_SMTP_TO") or "").split(",") if a.strip()),
        smtp_user=get("BEOP_ALERT_SMTP_USER") or None,
        smtp_password=get("BEOP_ALERT_SMTP_PASSWORD") or None,
        smtp_starttls=(get("BEOP_ALERT_SMTP_STARTTLS") or "").lower() in ("1", "true", "yes"),
    )


def default_start_date(today: date | None = None) -> str:
    today = today or datetime.now(UTC).date()
    return (today - timedelta(days=DEFAULT_START_DAYS_BACK)).isoformat()


def _warehouse(env: Mapping[str, str]) -> tuple[Path, str | None]:
    """(local folder, gs:// store or None): a gs:// BEOP_WAREHOUSE keeps its local copy in BEOP_WAREHOUSE_CACHE."""
    value = env.get("BEOP_WAREHOUSE") or DEFAULT_WAREHOUSE
    if "://" not in value:
        return Path(value), None
    try:
        GsUrl.parse(value, "BEOP_WAREHOUSE")
    except ValueError:
        raise SettingError(f"BEOP_WAREHOUSE={value!r}: expected a local folder or gs://bucket/prefix") from None
    return Path(env.get("BEOP_WAREHOUSE_CACHE") or DEFAULT_WAREHOUSE_CACHE), value


class SettingError(ValueError):
    """A BEOP_* variable whose value cannot be used: the message names it and says what it expects."""


@dataclass(frozen=True)
class Settings:
    """The deployment's settings, read from the environment once, at the edge (the CLI, `definitions.py`).

    Each typed setting is parsed when it is first used, not when the environment is read: a bad
    `BEOP_RETENTION_DAYS` fails the retention job that needs it (and `beop-exports validate
    --settings-only`), never the code location, so loads, deliveries and alerts go on. `problems()`
    checks every setting at once.
    """

    env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ), repr=False)

    def _get(self, name: str, default: str = "") -> str:
        return self.env.get(name) or default

    @property
    def landing(self) -> str:
        return self._get("BEOP_LANDING", DEFAULT_LANDING)

    @property
    def landing_is_gcs(self) -> bool:
        return is_gs(self.landing)

    @property
    def warehouse(self) -> Path:
        """The local folder of the model, the spool and the SQLite ledger (with a gs:// BEOP_WAREHOUSE,
        this machine's copy: BEOP_WAREHOUSE_CACHE)."""
        return _warehouse(self.env)[0]

    @property
    def warehouse_store(self) -> str | None:
        """BEOP_WAREHOUSE=gs://bucket/prefix: where the model's days live."""
        return _warehouse(self.env)[1]

    @property
    def exports(self) -> str:
        """The export registry: a YAML file's path (or a database URL)."""
        return self._get("BEOP_EXPORTS", DEFAULT_EXPORTS)

    @property
    def exports_file(self) -> Path:
        return Path(self.exports)

    @property
    def start_date(self) -> str:
        text = self._get("BEOP_START_DATE")
        if not text:
            return default_start_date()
        parse_day(text, "BEOP_START_DATE")
        return text

    @property
    def gzip_level(self) -> int:
        return _bounded_int(self.env, "BEOP_GZIP_LEVEL", 5, 0, 9, "a deflate level")

    @property
    def load_memory_limit(self) -> str:
        return self._get("BEOP_LOAD_MEMORY_LIMIT", "1GB")

    @property
    def export_threads(self) -> int:
        """DuckDB threads of an export's read of the model (2 cores: one export at a time)."""
        return _positive_int(self.env, "BEOP_EXPORT_THREADS", 2, "threads")

    @property
    def schedule_default(self) -> str:
        value = self._get("BEOP_SCHEDULE_DEFAULT", "running").strip().lower()
        if value not in SCHEDULE_STATES:
            raise SettingError(f"BEOP_SCHEDULE_DEFAULT={value!r}: expected one of {', '.join(SCHEDULE_STATES)}")
        return value

    @property
    def delivery_lookback_days(self) -> int:
        return _positive_int(self.env, "BEOP_DELIVERY_LOOKBACK_DAYS", DEFAULT_DELIVERY_LOOKBACK_DAYS)

    @property
    def delivery_batch_size(self) -> int:
        """At most this many exports of one day and mode per delivery run (the sensor's ranges, the UI's
        backfills, `beop-exports run`)."""
        return _positive_int(self.env, "BEOP_DELIVERY_BATCH_SIZE", DEFAULT_BATCH_SIZE, "exports")

    @property
    def delivery_keys_per_tick(self) -> int:
        """At most this many (day, export) keys asked by one tick of the delivery sensor (whole ranges: a
        tick asks at least one)."""
        return _positive_int(self.env, "BEOP_DELIVERY_KEYS_PER_TICK", DEFAULT_KEYS_PER_TICK, "exports")

    @property
    def retry_schedule(self) -> RetrySchedule:
        """When the night asks a failed (day, export) again (exports/delivery_schedule.py): the first wait
        BEOP_RETRY_FIRST_MINUTES, doubling up to BEOP_RETRY_MAX_MINUTES; BEOP_RETRY_PERMANENT_MINUTES for a
        failure that waiting cannot fix."""
        return RetrySchedule(
            first_minutes=_positive_int(self.env, "BEOP_RETRY_FIRST_MINUTES", int(DEFAULT_FIRST_MINUTES), "minutes"),
            max_minutes=_positive_int(self.env, "BEOP_RETRY_MAX_MINUTES", int(DEFAULT_MAX_MINUTES), "minutes"),
            permanent_minutes=_positive_int(
                self.env, "BEOP_RETRY_PERMANENT_MINUTES", int(DEFAULT_PERMANENT_MINUTES), "minutes"
            ),
        )

    @property
    def missed_day_deadline(self) -> time:
        return parse_clock(self._get("BEOP_MISSED_DAY_DEADLINE", DEFAULT_MISSED_DAY_DEADLINE))

    @property
    def retention_days(self) -> int:
        return _positive_int(self.env, "BEOP_RETENTION_DAYS", DEFAULT_RETENTION_DAYS)

    @property
    def alerts(self) -> AlertSettings:
        return alert_settings(self.env)

    @property
    def run_nice(self) -> int:
        """How much lower a delivery run in a process of its own runs than the daemon and the code server
        (a Unix nice value, 0-19; 0: the same)."""
        return _bounded_int(self.env, "BEOP_RUN_NICE", DEFAULT_RUN_NICE, 0, 19, "a nice value from 0 to 19")

    @property
    def sftp_read_back(self) -> bool:
        """SFTP servers without a hash extension: prove content by reading the temporary file back (a
        second transfer) rather than by every write's acknowledgement and the size."""
        return _flag(self.env, "BEOP_SFTP_READ_BACK")

    @property
    def delivery_retry(self) -> RetryPolicy:
        """How each delivery retries transient failures within its run (BEOP_DELIVERY_ATTEMPTS tries, the
        first wait BEOP_DELIVERY_BACKOFF seconds)."""
        attempts = _positive_int(self.env, "BEOP_DELIVERY_ATTEMPTS", DEFAULT_ATTEMPTS, "attempts")
        text = self._get("BEOP_DELIVERY_BACKOFF", str(DEFAULT_BACKOFF_S))
        try:
            backoff = float(text)
        except ValueError:
            raise SettingError(f"BEOP_DELIVERY_BACKOFF={text!r}: expected seconds, e.g. 1.0") from None
        if backoff < 0:
            raise SettingError(f"BEOP_DELIVERY_BACKOFF={text!r}: expected 0 or more seconds")
        return RetryPolicy(attempts=attempts, backoff_s=backoff)

    @property
    def ledger(self) -> str | Path:
        """Where the delivery ledger is: BEOP_LEDGER_URL, else the warehouse folder (SQLite inside)."""
        return self.ledger_url or self.warehouse

    @property
    def ledger_url(self) -> str | None:
        """BEOP_LEDGER_URL: the delivery ledger in Postgres; unset: SQLite in the warehouse."""
        return self._get("BEOP_LEDGER_URL") or None

    @property
    def delivery_workers(self) -> int:
        """Processes that deliver exports side by side in `beop-exports run` (1: one after another)."""
        return _positive_int(self.env, "BEOP_DELIVERY_WORKERS", os.cpu_count() or 1, "processes")

    def problems(self) -> list[str]:
        """Every setting that cannot be used, each naming its variable (empty: all good)."""
        found = []
        for name in SETTING_NAMES:
            try:
                getattr(self, name)
            except ValueError as exc:
                found.append(str(exc))
        return found


SETTING_NAMES = [name for name, value in vars(Settings).items() if isinstance(value, property)]


def current() -> Settings:
    """The settings of this process's environment (called at the edge only)."""
    return Settings(dict(os.environ))


def parse_day(text: str, name: str | None = None) -> date:
    """A data day as operators type it (YYYY-MM-DD), with an error that says what was expected."""
    try:
        return date.fromisoformat(text)
    except ValueError:
        where = f"{name}={text!r}" if name else f"invalid date {text!r}"
        raise SettingError(f"{where}: expected YYYY-MM-DD") from None
