"""Resources: the export registry and the warehouse, configured by environment (SPEC section 6).

Both read their settings at use time, not at import time, so that `dagster dev`, the CLI and the
tests all see the same environment variables and registry edits need no restart.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from dagster import ConfigurableResource

from beop_assets import settings
from beop_assets.exports.registry import Registry, load_registry
from beop_assets.landing.reference import Reference, ReferenceDataError
from beop_assets.landing.zone import staged_reference

SPOOL_RETENTION_S = 24 * 3600


class ExportRegistry(ConfigurableResource):
    """The export registry file, validated against the landing zone's reference data on every read."""

    path: str | None = None  # default: $BEOP_EXPORTS, else exports.yaml
    landing: str | None = None  # default: $BEOP_LANDING

    def file(self) -> Path:
        return Path(self.path) if self.path else settings.current().exports_file

    def reference(self) -> Reference:
        with staged_reference(self.landing) as folder:
            return Reference.read(folder)

    def load(self) -> Registry:
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

    root: str | None = None  # default: $BEOP_WAREHOUSE

    def path(self) -> Path:
        return Path(self.root) if self.root else settings.current().warehouse

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
