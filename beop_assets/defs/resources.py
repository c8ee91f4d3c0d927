"""Resources: what the product's assets, checks, sensors and IO managers are given by the deployment.

Every field is set by `definitions.py` from the deployment's settings (`beop_assets.settings`), and the
resources are handed to Dagster locked (`locked`): they expose no run config, so nobody can redirect
where data is read from or delivered to when launching a run. A setting that cannot be used travels as
its error (`problem`) and fails only the job that needs it. Resources hold no logic of their own: the
registry's sources, validation and per-process cache are plain code in `beop_assets/exports/`
(registry_cache.py says what is kept and for how long), the model's store in `beop_assets/model/`.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import date, time
from pathlib import Path

from dagster import (
    ConfigurableResource,
    Field,
    IOManager,
    IOManagerDefinition,
    Noneable,
    ResourceDefinition,
)
from google.cloud import storage

from beop_assets.exports import registry_cache, spool
from beop_assets.exports.delivery_runs import DEFAULT_KEYS_PER_TICK
from beop_assets.exports.delivery_schedule import (
    DEFAULT_FIRST_MINUTES,
    DEFAULT_MAX_MINUTES,
    DEFAULT_PERMANENT_MINUTES,
    RetrySchedule,
)
from beop_assets.exports.registry import Registry
from beop_assets.exports.registry_source import RegistrySource, open_source
from beop_assets.model import warehouse as model_warehouse
from beop_assets.model import warehouse_store
from beop_assets.model.warehouse_store import Store
from beop_assets.operations.alerts import AlertSettings
from beop_assets.settings import SettingError


class ExportRegistry(ConfigurableResource):
    """The export registry (a YAML file or the platform's table), validated against the landing zone's
    reference data, re-validated whenever either changed."""

    path: str  # a file or a postgresql:// URL (BEOP_EXPORTS)
    landing: str  # BEOP_LANDING

    def source(self) -> RegistrySource:
        return open_source(self.path)

    def load(self) -> Registry:
        """The whole registry, as its source and the reference data are now."""
        return registry_cache.load(self.source(), self.landing)

    def fingerprint(self) -> str | None:
        """Changes whenever the registry or the reference data does (exports/registry_cache.py)."""
        return registry_cache.fingerprint(self.source(), self.landing)

    def exports_for(self, export_ids: Collection[str]) -> Registry:
        """Only these exports, read and validated alone (a run pays for its own exports only)."""
        return registry_cache.exports_for(self.source(), self.landing, export_ids)


class Warehouse(ConfigurableResource):
    """Where the model (DuckDB file and Parquet days), the spool and the delivery ledger live."""

    root: str  # this machine's folder (with a gs:// store: its copy)
    store: str | None = None  # gs://bucket/prefix where the model's days live (model/warehouse_store.py)
    load_memory_limit: str = "1GB"  # DuckDB's memory limit for a day load (it spills past it)
    ledger_url: str | None = None  # the delivery ledger's database (BEOP_LEDGER_URL); unset: SQLite in `root`
    read_threads: int = model_warehouse.DEFAULT_READ_THREADS

    def path(self) -> Path:
        return Path(self.root)

    def store_url(self) -> str | None:
        return self.store

    def ledger(self) -> str | Path:
        """Where the delivery ledger is (delivery/ledger.py `Location`)."""
        return self.ledger_url or self.path()

    def _store(self) -> tuple[Store, storage.Client] | None:
        if not self.store:
            return None
        from beop_assets.cloud_storage import platform_client

        return Store.parse(self.store), platform_client()

    def publish_day(self, day: date) -> dict[str, str]:
        """A loaded day to the store, before the load is reported: the object written for each table
        (none on one disk)."""
        found = self._store()
        return warehouse_store.push_day(day, self.path(), *found) if found else {}

    def pull_every_day(self) -> list[Path]:
        """Before a load: every stored day, so that the DuckDB file built here serves them all."""
        found = self._store()
        return warehouse_store.pull_all(self.path(), *found) if found else []

    def day_root(self, day: date) -> Path:
        """The folder to read `day` from, holding the stored version of the day's participations
        (pulled if need be): the one table the exports and their checks read."""
        found = self._store()
        if found:
            warehouse_store.pull_day(day, self.path(), *found, tables=("participations",))
        return self.path()

    def spool(self, day: date, export_id: str, run_id: str) -> Path:
        """A folder of its own for each run of an export and day, filed under the data day so that
        retention removes whatever a crash left there with the day (exports/spool.py)."""
        return spool.run_folder(self.path(), day, export_id, run_id)


class _Setting(ConfigurableResource):
    """A resource whose setting may be unusable: `problem` is then the setting's error, raised when a
    run needs it (never when the definitions load)."""

    problem: str | None = None

    def require(self) -> None:
        if self.problem:
            raise SettingError(self.problem)


class Landing(ConfigurableResource):
    """The landing zone the platform drops participations and reference data into."""

    url: str


class ExportFiles(_Setting):
    """How export files are built."""

    gzip_level: int = 5
    read_threads: int = model_warehouse.DEFAULT_READ_THREADS


class Retention(_Setting):
    """How many data days personal data is kept (BEOP_RETENTION_DAYS)."""

    days: int = 30

    def window(self) -> int:
        self.require()
        return self.days


class MissedDayDeadline(_Setting):
    """By when (UTC, the day after a data day) every enabled export must have delivered that day."""

    hour: int = 6
    minute: int = 0

    def at(self) -> time:
        self.require()
        return time(self.hour, self.minute)


class DeliveryPolicy(_Setting):
    """Which loaded days the night delivers (BEOP_DELIVERY_LOOKBACK_DAYS), how much one sensor tick asks
    (BEOP_DELIVERY_KEYS_PER_TICK), and when it asks a failed (day, export) again (BEOP_RETRY_*:
    exports/delivery_schedule.py)."""

    lookback_days: int = 7
    keys_per_tick: int = DEFAULT_KEYS_PER_TICK
    retry_first_minutes: float = DEFAULT_FIRST_MINUTES
    retry_max_minutes: float = DEFAULT_MAX_MINUTES
    retry_permanent_minutes: float = DEFAULT_PERMANENT_MINUTES

    def retry_schedule(self) -> RetrySchedule:
        self.require()
        return RetrySchedule(self.retry_first_minutes, self.retry_max_minutes, self.retry_permanent_minutes)

    def lookback(self) -> int:
        self.require()
        return self.lookback_days

    def tick_budget(self) -> int:
        self.require()
        return self.keys_per_tick


class Alerts(_Setting):
    """Where alerts go (BEOP_ALERT_*): a webhook and/or e-mail."""

    webhook_url: str | None = None
    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_from: str | None = None
    smtp_to: list[str] = []
    smtp_user: str | None = None
    smtp_password: str | None = None
    smtp_starttls: bool = False

    def channels(self) -> AlertSettings:
        self.require()
        return AlertSettings(
            webhook_url=self.webhook_url,
            smtp_host=self.smtp_host,
            smtp_port=self.smtp_port,
            smtp_from=self.smtp_from,
            smtp_to=tuple(self.smtp_to),
            smtp_user=self.smtp_user,
            smtp_password=self.smtp_password,
            smtp_starttls=self.smtp_starttls,
        )


# The only config a locked resource accepts: any other key is refused at launch, and Dagster's error
# names this one, which says why.
LOCKED_CONFIG = {"deployment_settings_only": Field(Noneable(str), is_required=False)}


def locked(resource: ConfigurableResource) -> ResourceDefinition:
    """`resource` as the deployment set it, with no run config that could change it."""
    return ResourceDefinition(
        resource_fn=lambda _: resource,
        config_schema=LOCKED_CONFIG,
        description=f"{type(resource).__name__}: set by the deployment (BEOP_* settings), not by run config",
    )


def locked_io_manager(manager: IOManager) -> IOManagerDefinition:
    return IOManagerDefinition(
        resource_fn=lambda _: manager,
        config_schema=LOCKED_CONFIG,
        description=f"{type(manager).__name__}: set by the deployment (BEOP_* settings), not by run config",
    )
