"""Resources: the export registry and the warehouse, configured by environment (SPEC section 6).

Both read their settings at use time, not at import time, so that `dagster dev`, the CLI and the
tests all see the same environment variables and registry edits need no restart.

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
import shutil
import threading
import time
from collections import OrderedDict
from datetime import date
from pathlib import Path

from dagster import ConfigurableResource
from google.cloud import storage

from beop_assets import settings
from beop_assets.exports.registry import Registry, load_registry
from beop_assets.landing.reference import REFERENCE_TABLES, Reference, ReferenceDataError
from beop_assets.landing.zone import staged_reference
from beop_assets.model import warehouse_store
from beop_assets.model.warehouse_store import Store

SPOOL_RETENTION_S = 24 * 3600
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

    path: str | None = None  # default: $BEOP_EXPORTS, else exports.yaml
    landing: str | None = None  # default: $BEOP_LANDING

    def file(self) -> Path:
        return Path(self.path) if self.path else settings.current().exports_file

    def reference(self) -> Reference:
        with staged_reference(self.landing or settings.current().landing) as folder:
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
        landing = self.landing or settings.current().landing
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

    root: str | None = None  # default: $BEOP_WAREHOUSE, or $BEOP_WAREHOUSE_CACHE when that is gs://
    store: str | None = None  # default: $BEOP_WAREHOUSE when it is gs://bucket/prefix (model/warehouse_store.py)

    def path(self) -> Path:
        return Path(self.root) if self.root else settings.current().warehouse

    def store_url(self) -> str | None:
        return self.store or settings.current().warehouse_store

    def _store(self) -> tuple[Store, storage.Client] | None:
        url = self.store_url()
        if not url:
            return None
        from beop_assets.cloud_storage import platform_client

        return Store.parse(url), platform_client()

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

    def spool(self, export_id: str, run_id: str) -> Path:
        """A folder of its own for each run of an export: concurrent runs never share a file.
        Folders of runs older than a day (files read back by the checks) are removed here."""
        folder = self.path() / "spool" / export_id / run_id
        if not folder.exists():
            cutoff = time.time() - SPOOL_RETENTION_S
            for old in folder.parent.glob("*") if folder.parent.exists() else []:
                if old.is_dir() and old.stat().st_mtime < cutoff:
                    shutil.rmtree(old, ignore_errors=True)
        folder.mkdir(parents=True, exist_ok=True)
        return folder
