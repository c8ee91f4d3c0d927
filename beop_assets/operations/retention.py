"""Retention: personal data (e-mails, phones, names, raw landing lines) is kept BEOP_RETENTION_DAYS
days, then removed everywhere the product put it.

What goes, for every data day older than the window (day < today - retention days):
- the landing zone's `participations/date=DAY/` folder (local folder or `gs://` prefix);
- the model's Parquet days (`<warehouse>/<table>/date=DAY/`, every version) and the day's rows in
  the DuckDB file; with `BEOP_WAREHOUSE=gs://...`, the stored days too (this machine's copy is the
  folder above);
- the delivery ledger's rows of that day.
- the spool's copies of that day (`spool/date=DAY/`: files built or read back, see exports/spool.py).
And, whatever their day: Parquet versions replaced by a newer load (once no reader can still be on
them: `OLD_VERSIONS_KEPT_S`).

A day inside the window is never touched; the reference data (accounts, contents, optins) is not
personal data and stays. Plain Python, no Dagster: the `retention_job` runs it nightly.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import time
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import pyarrow.parquet as pq

from beop_assets.delivery import ledger
from beop_assets.exports import spool
from beop_assets.model import warehouse

DAY_FOLDER = re.compile(r"^date=(\d{4}-\d{2}-\d{2})$")


@dataclass
class PurgeReport:
    first_kept_day: date
    landing_days: list[str] = field(default_factory=list)
    model_days: dict[str, list[str]] = field(default_factory=dict)  # table -> days removed
    database_rows: dict[str, int] = field(default_factory=dict)  # table -> rows deleted from DuckDB
    parquet_versions: list[str] = field(default_factory=list)
    spool_folders: list[str] = field(default_factory=list)
    ledger_rows: int = 0
    stored_days: dict[str, list[str]] = field(default_factory=dict)  # table -> days removed from the store

    @property
    def removed_anything(self) -> bool:
        return bool(
            self.landing_days
            or any(self.model_days.values())
            or any(self.database_rows.values())
            or self.parquet_versions
            or self.spool_folders
            or self.ledger_rows
            or any(self.stored_days.values())
        )


def first_kept_day(today: date, retention_days: int) -> date:
    if retention_days < 1:
        raise ValueError(f"retention must keep at least one day, not {retention_days}")
    return today - timedelta(days=retention_days)


def _day_of(name: str) -> date | None:
    match = DAY_FOLDER.match(name)
    if not match:
        return None
    try:
        return date.fromisoformat(match.group(1))
    except ValueError:
        return None


def _expired_day_folders(parent: Path, keep_from: date) -> list[tuple[date, Path]]:
    if not parent.is_dir():
        return []
    found = [(_day_of(p.name), p) for p in parent.iterdir() if p.is_dir()]
    return sorted((d, p) for d, p in found if d is not None and d < keep_from)


def purge_landing(landing: str, keep_from: date) -> list[str]:
    if landing.startswith("gs://"):
        return _purge_gcs_landing(landing, keep_from)
    removed = []
    for day, folder in _expired_day_folders(Path(landing) / "participations", keep_from):
        shutil.rmtree(folder)
        removed.append(day.isoformat())
    return removed


def _purge_gcs_landing(landing: str, keep_from: date) -> list[str]:
    from beop_assets.cloud_storage import platform_client

    bucket_name, _, prefix = landing.removeprefix("gs://").partition("/")
    base = f"{prefix.strip('/')}/participations/" if prefix.strip("/") else "participations/"
    client = platform_client()
    removed: set[str] = set()
    for blob in client.list_blobs(bucket_name, prefix=base):
        day = _day_of(blob.name[len(base) :].split("/", 1)[0])
        if day is not None and day < keep_from:
            blob.delete()
            removed.add(day.isoformat())
    return sorted(removed)


def _parquet_rows(folder: Path) -> int:
    """The rows of a Parquet day as the model serves it (its current version), from the file's footer."""
    current = folder / "data.parquet"
    return pq.ParquetFile(current).metadata.num_rows if current.exists() else 0


def purge_model(root: Path, keep_from: date, report: PurgeReport, now: float) -> None:
    for table in warehouse.MODEL_TABLES:
        removed = []
        rows = 0
        for day, folder in _expired_day_folders(root / table, keep_from):
            rows += _parquet_rows(folder)
            shutil.rmtree(folder)
            removed.append(day.isoformat())
        report.model_days[table] = removed
        # The DuckDB file serves views over the Parquet days: what they no longer serve.
        report.database_rows[table] = rows
        # Versions replaced by a later load of a day that is kept.
        for folder in sorted((root / table).glob("date=*")) if (root / table).is_dir() else []:
            current = folder / "data.parquet"
            live = current.resolve() if current.exists() else None
            for version in folder.glob("data-*.parquet"):
                if version != live and version.stat().st_mtime < now - warehouse.OLD_VERSIONS_KEPT_S:
                    version.unlink(missing_ok=True)
                    report.parquet_versions.append(str(version.relative_to(root)))
    if warehouse.database_file(root).exists():
        with warehouse.model_writer(root) as db:
            existing = {row[0] for row in db.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
            db.execute("BEGIN TRANSACTION")
            for table in warehouse.MODEL_TABLES:
                if table in existing:  # a copy in a table, from before the views: purged there too
                    counted = db.execute(f"SELECT count(*) FROM {table} WHERE day < ?", [keep_from]).fetchone()
                    count = counted[0] if counted else 0
                    db.execute(f"DELETE FROM {table} WHERE day < ?", [keep_from])
                    report.database_rows[table] = max(report.database_rows.get(table, 0), int(count))
            db.execute("COMMIT")
            db.execute("CHECKPOINT")


def purge_spool(root: Path, keep_from: date, max_age_s: float, now: float) -> list[str]:
    """The spool of every expired data day; and folders of the layout before the spool was filed by day
    (`spool/<export>/<run>`), by their age."""
    removed = spool.purge_before(root, keep_from)
    folder = root / spool.SPOOL
    for export_folder in sorted(folder.iterdir()) if folder.is_dir() else []:
        if not export_folder.is_dir() or export_folder.name.startswith("date="):
            continue
        for run_folder in sorted(export_folder.iterdir()):
            if run_folder.is_dir() and run_folder.stat().st_mtime < now - max_age_s:
                shutil.rmtree(run_folder, ignore_errors=True)
                removed.append(str(run_folder.relative_to(root)))
        with contextlib.suppress(OSError):
            export_folder.rmdir()  # only when empty
    return removed


def purge_ledger(where: ledger.Location, keep_from: date) -> int:
    return ledger.purge_before(keep_from, root=where)


def purge_store(store: str, keep_from: date) -> dict[str, list[str]]:
    from beop_assets.cloud_storage import platform_client
    from beop_assets.model.warehouse_store import Store, purge_days

    return purge_days(Store.parse(store), platform_client(), keep_from)


def purge_expired(
    landing: str,
    root: Path,
    retention_days: int,
    today: date,
    now: float | None = None,
    store: str | None = None,
    ledger_at: ledger.Location | None = None,
) -> PurgeReport:
    """Remove everything older than the window (see the module docstring); report what was removed.
    `ledger_at`: where the delivery ledger is when not in the warehouse folder (a database URL)."""
    now = time.time() if now is None else now
    keep_from = first_kept_day(today, retention_days)
    report = PurgeReport(first_kept_day=keep_from)
    report.landing_days = purge_landing(landing, keep_from)
    if store:
        report.stored_days = purge_store(store, keep_from)
    purge_model(root, keep_from, report, now)
    report.spool_folders = purge_spool(root, keep_from, retention_days * 86400, now)
    report.ledger_rows = purge_ledger(ledger_at or root, keep_from)
    return report
