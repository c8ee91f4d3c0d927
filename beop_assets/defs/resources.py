"""Resources: what the product's assets, checks, sensors and IO managers are given by the deployment.

Every field is set by `definitions.py` from the deployment's settings (`beop_assets.settings`), and the
resources are handed to Dagster locked (`locked`): they expose no run config, so nobody can redirect
where data is read from or delivered to when launching a run. A setting that cannot be used travels as
its error (`problem`) and fails only the job that needs it.

The registry is read by every step of an export run (the asset, the IO manager, each check) and by
every sensor tick; parsing and validating it against the reference data costs more than a small
export itself, and grows with the registry. So the validated registry is kept, in this process only,
for as long as the files it came from are unchanged: the key is a digest of the registry file's bytes
and the identity of each reference file (its bytes' digest for a local landing zone; generation and
checksum for `gs://`). A file timestamp alone would not do: Linux stamps files with a coarse clock
tick, so two same-size edits within one tick would look alike. Nothing is kept that a changed file
could make stale, so an edit is seen by the very next read, without a restart.
"""

from __future__ import annotations

import dataclasses
import hashlib
import threading
from collections import OrderedDict
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

from beop_assets.exports import spool
from beop_assets.exports.registry import Registry, load_registry
from beop_assets.landing.reference import REFERENCE_TABLES, Reference, ReferenceDataError
from beop_assets.landing.zone import staged_reference
from beop_assets.model import warehouse as model_warehouse
from beop_assets.model import warehouse_store
from beop_assets.model.warehouse_store import Store
from beop_assets.operations.alerts import AlertSettings
from beop_assets.settings import SettingError

# Registries kept per process: one per (registry file, landing zone) in use, plus a few versions.
REGISTRY_CACHE_SIZE = 8
_registry_cache: OrderedDict[tuple, Registry] = OrderedDict()
_registry_cache_lock = threading.Lock()


def _digest(path: Path) -> str | None:
    try:
        return hashlib.blake2b(path.read_bytes(), digest_size=16).hexdigest()
    except FileNotFoundError:
        return None
    except OSError as exc:  # unreadable: never cached, so the real read reports it
        raise _Uncacheable from exc


class _Uncacheable(Exception):
    pass


def _reference_identity(landing: str) -> tuple:
    """What changes whenever a reference file changes, without reading it into DuckDB."""
    if not landing.startswith("gs://"):
        folder = Path(landing) / "reference"
        return tuple((name, _digest(folder / f"{name}.ndjson")) for name in REFERENCE_TABLES)
    from beop_assets.cloud_storage import platform_client

    bucket, _, prefix = landing.removeprefix("gs://").partition("/")
    base = f"{prefix.strip('/')}/" if prefix.strip("/") else ""
    names = {f"{base}reference/{name}.ndjson" for name in REFERENCE_TABLES}
    try:
        blobs = platform_client().list_blobs(bucket, prefix=f"{base}reference/")
        return tuple(sorted((b.name, b.generation, b.size, b.crc32c) for b in blobs if b.name in names))
    except Exception as exc:  # the real read names the problem
        raise _Uncacheable from exc


def _copy(registry: Registry) -> Registry:
    """A registry of the caller's own: callers may add faults or drop exports from what they got."""
    return dataclasses.replace(
        registry, exports=dict(registry.exports), faults=list(registry.faults), broken=dict(registry.broken)
    )


class ExportRegistry(ConfigurableResource):
    """The export registry file, validated against the landing zone's reference data (re-validated
    whenever either changed: see the module's docstring)."""

    path: str
    landing: str

    def file(self) -> Path:
        return Path(self.path)

    def reference(self) -> Reference:
        with staged_reference(self.landing) as folder:
            return Reference.read(folder)

    def load(self) -> Registry:
        """The registry validated against the reference data, as the files are now."""
        try:
            key = self._cache_key()
        except _Uncacheable:
            return self._read()
        with _registry_cache_lock:
            cached = _registry_cache.get(key)
            if cached is not None:
                _registry_cache.move_to_end(key)
                return _copy(cached)
        registry = self._read()
        try:
            unchanged = self._cache_key() == key  # an edit during the read: keep nothing
        except _Uncacheable:
            unchanged = False
        if not unchanged:
            return registry
        with _registry_cache_lock:
            _registry_cache[key] = registry
            while len(_registry_cache) > REGISTRY_CACHE_SIZE:
                _registry_cache.popitem(last=False)
        return _copy(registry)

    def _cache_key(self) -> tuple:
        path = self.file()
        landing = self.landing
        return (str(path.resolve()), _digest(path), landing, _reference_identity(landing))

    def _read(self) -> Registry:
        try:
            reference = self.reference()
        except ReferenceDataError as exc:
            registry = load_registry(self.file(), None)
            registry.faults.insert(0, _reference_fault(exc))
            # Without reference data tenancy cannot be proven: no export may run.
            registry.broken.update({e.id: e.mode for e in registry.enabled()})
            registry.exports.clear()
            return registry
        return load_registry(self.file(), reference)


def _reference_fault(exc: Exception):
    from beop_assets.exports.registry import Fault

    return Fault(None, "reference", f"{exc}: exports cannot be checked against their account")


class Warehouse(ConfigurableResource):
    """Where the model (DuckDB file and Parquet days), the spool and the delivery ledger live."""

    root: str  # this machine's folder (with a gs:// store: its copy)
    store: str | None = None  # gs://bucket/prefix where the model's days live (model/warehouse_store.py)
    load_memory_limit: str = "1GB"  # DuckDB's memory limit for a day load (it spills past it)
    read_threads: int = model_warehouse.DEFAULT_READ_THREADS

    def path(self) -> Path:
        return Path(self.root)

    def store_url(self) -> str | None:
        return self.store

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
    """Which loaded days the night delivers (BEOP_DELIVERY_LOOKBACK_DAYS)."""

    lookback_days: int = 7

    def lookback(self) -> int:
        self.require()
        return self.lookback_days


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
