"""Resources: the export registry and the warehouse, configured by environment (SPEC section 6).

Both read their settings at use time, not at import time, so that `dagster dev`, the CLI and the
tests all see the same environment variables and registry edits need no restart. The registry's
sources, validation and per-process cache are plain code in `beop_assets/exports/` (registry_cache.py
says what is kept and for how long); the resource only says where the registry and the landing zone are.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Collection
from datetime import date
from pathlib import Path

from dagster import ConfigurableResource
from google.cloud import storage

from beop_assets import settings
from beop_assets.exports import registry_cache
from beop_assets.exports.registry import Registry
from beop_assets.exports.registry_source import RegistrySource, open_source
from beop_assets.model import warehouse_store
from beop_assets.model.warehouse_store import Store

SPOOL_RETENTION_S = 24 * 3600


class ExportRegistry(ConfigurableResource):
    """The export registry (a YAML file or the platform's table), validated against the landing zone's
    reference data, re-validated whenever either changed."""

    path: str | None = None  # a file or a postgresql:// URL; default: $BEOP_EXPORTS, else exports.yaml
    landing: str | None = None  # default: $BEOP_LANDING

    def source(self) -> RegistrySource:
        return open_source(self.path or settings.current().exports)

    def _landing(self) -> str:
        return self.landing or settings.current().landing

    def load(self) -> Registry:
        """The whole registry, as its source and the reference data are now."""
        return registry_cache.load(self.source(), self._landing())

    def exports_for(self, export_ids: Collection[str]) -> Registry:
        """Only these exports, read and validated alone (a run pays for its own exports only)."""
        return registry_cache.exports_for(self.source(), self._landing(), export_ids)


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
