"""Retention: personal data (e-mails, phones, names, consent strings, raw landing lines) is kept
BEOP_RETENTION_DAYS days, then removed from every copy the product made of it.

Every copy is filed under its data day, so that it goes with that day (day < today - retention days),
whatever run, backfill, crash or switched-off export left it. The kinds of copy, as the retention run's
metadata names them per day (`removed_by_day`):
- `landing`: the landing zone's `participations/date=DAY/` files (local folder or `gs://` objects);
- `model`: the model's Parquet days (`<warehouse>/<table>/date=DAY/`, every version; rows per table),
  which the DuckDB file's views then no longer serve;
- `stored`: with `BEOP_WAREHOUSE=gs://...`, the tables of the day in the bucket (this machine's copy
  is `model`);
- `old_parquet_versions`: versions of a kept day replaced by a later load, once no reader can still be
  on them (`OLD_VERSIONS_KEPT_S`);
- `spool`: files built or read back for a delivery and left there (`spool/date=DAY/`, exports/spool.py);
- `ledger_rows`: the delivery ledger's rows of the day;
- `load_scratch`: a killed load's scratch folder in the warehouse (`.load-date=DAY-*`: judged lines and
  DuckDB's spill files);
- `landing_staging`: a killed load's scratch copy of a `gs://` landing day in the temporary folder
  (`beop-landing-date=DAY-*`).
Copies that carry no day (the spool and load scratch of older releases, the ledger's records of removed
temporary files) go by their age instead (`removed_undated`).

A day inside the window is never touched; the reference data (accounts, contents, optins) is not
personal data and stays. Plain Python, no Dagster: the `retention_job` runs it nightly.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from beop_assets.cloud_storage import is_gs
from beop_assets.delivery import ledger
from beop_assets.exports import spool
from beop_assets.landing import zone
from beop_assets.model import warehouse

_DATED = re.compile(r"date=(\d{4}-\d{2}-\d{2})-")
# A ledger read large enough for every row it holds (`history` pages by default).
_EVERY_ROW = 2**62


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
    by_day: dict[str, dict[str, Any]] = field(default_factory=dict)  # day -> kind of copy -> what went
    undated: dict[str, Any] = field(default_factory=dict)  # kind of copy -> what went, by age

    def removed(self, day: date | str, kind: str, what: Any) -> None:
        key = day.isoformat() if isinstance(day, date) else day
        self.by_day.setdefault(key, {})[kind] = what

    def count(self, day: date | str, kind: str, n: int = 1) -> None:
        key = day.isoformat() if isinstance(day, date) else day
        found = self.by_day.setdefault(key, {})
        found[kind] = found.get(kind, 0) + n

    @property
    def removed_anything(self) -> bool:
        return bool(self.by_day or self.undated or self.ledger_rows or self.spool_folders)


def first_kept_day(today: date, retention_days: int) -> date:
    if retention_days < 1:
        raise ValueError(f"retention must keep at least one day, not {retention_days}")
    return today - timedelta(days=retention_days)


def _day_of(name: str) -> date | None:
    return zone.day_of_folder(name)


def _iso_day(text: str) -> date | None:
    try:
        return date.fromisoformat(text)
    except ValueError:
        return None


def _expired_day_folders(parent: Path, keep_from: date) -> list[tuple[date, Path]]:
    if not parent.is_dir():
        return []
    found = [(_day_of(p.name), p) for p in parent.iterdir() if p.is_dir()]
    return sorted((d, p) for d, p in found if d is not None and d < keep_from)


def _files_in(folder: Path) -> int:
    return sum(1 for p in folder.rglob("*") if not p.is_dir())


def purge_landing(landing: str, keep_from: date, report: PurgeReport) -> None:
    if is_gs(landing):
        _purge_gcs_landing(landing, keep_from, report)
    else:
        for day, folder in _expired_day_folders(Path(landing) / zone.PARTICIPATIONS, keep_from):
            files = _files_in(folder)
            shutil.rmtree(folder)
            report.removed(day, "landing", files)
    report.landing_days = sorted(d for d, kinds in report.by_day.items() if "landing" in kinds)


def _purge_gcs_landing(landing: str, keep_from: date, report: PurgeReport) -> None:
    from beop_assets.cloud_storage import GsUrl, platform_client

    where = GsUrl.parse(landing, "BEOP_LANDING")
    base = where.object_name(zone.PARTICIPATIONS) + "/"
    client = platform_client()
    for blob in client.list_blobs(where.bucket, prefix=base):
        day = _day_of(blob.name[len(base) :].split("/", 1)[0])
        if day is not None and day < keep_from:
            blob.delete()
            report.count(day, "landing")


def _parquet_rows(folder: Path) -> int:
    """The rows of a Parquet day as the model serves it (its current version), from the file's footer."""
    current = folder / "data.parquet"
    return pq.ParquetFile(current).metadata.num_rows if current.exists() else 0


def purge_model(root: Path, keep_from: date, report: PurgeReport, now: float) -> None:
    for table in warehouse.MODEL_TABLES:
        removed = []
        rows = 0
        for day, folder in _expired_day_folders(root / table, keep_from):
            day_rows = _parquet_rows(folder)
            shutil.rmtree(folder)
            removed.append(day.isoformat())
            report.by_day.setdefault(day.isoformat(), {}).setdefault("model", {})[table] = day_rows
            rows += day_rows
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
                    report.count(folder.name.removeprefix("date="), "old_parquet_versions")
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


def purge_spool(root: Path, keep_from: date, max_age_s: float, now: float, report: PurgeReport) -> None:
    """The spool of every expired data day; and folders of the layout before the spool was filed by day
    (`spool/<export>/<run>`), by their age."""
    for day, files in spool.purge_before(root, keep_from).items():
        report.removed(day, "spool", files)
        report.spool_folders.append(f"{spool.SPOOL}/date={day}")
    legacy = []
    folder = root / spool.SPOOL
    for export_folder in sorted(folder.iterdir()) if folder.is_dir() else []:
        if not export_folder.is_dir() or export_folder.name.startswith("date="):
            continue
        for run_folder in sorted(export_folder.iterdir()):
            if run_folder.is_dir() and run_folder.stat().st_mtime < now - max_age_s:
                shutil.rmtree(run_folder, ignore_errors=True)
                legacy.append(str(run_folder.relative_to(root)))
        with contextlib.suppress(OSError):
            export_folder.rmdir()  # only when empty
    if legacy:
        report.spool_folders.extend(legacy)
        report.undated["spool"] = legacy


def purge_scratch(parent: Path, prefix: str, kind: str, keep_from: date, now: float, report: PurgeReport) -> None:
    """What a killed load left in `parent` (`<prefix>date=DAY-*`): removed with its day; a folder named
    without a day (an older release's) once no load can still be using it (`OLD_VERSIONS_KEPT_S`)."""
    undated = 0
    for folder in sorted(parent.glob(f"{prefix}*")) if parent.is_dir() else []:
        match = _DATED.match(folder.name, len(prefix))
        day = _iso_day(match.group(1)) if match else None
        if day is not None:
            if day < keep_from:
                shutil.rmtree(folder, ignore_errors=True)
                report.count(day, kind)
        elif folder.is_dir() and folder.stat().st_mtime < now - warehouse.OLD_VERSIONS_KEPT_S:
            shutil.rmtree(folder, ignore_errors=True)
            undated += 1
    if undated:
        report.undated[kind] = undated


def purge_ledger(where: ledger.Location, keep_from: date, report: PurgeReport) -> None:
    expired = Counter(
        d.data_day for d in ledger.history(root=where, limit=_EVERY_ROW) if d.data_day < keep_from.isoformat()
    )
    report.ledger_rows = ledger.purge_before(keep_from, root=where)
    for day, rows in sorted(expired.items()):
        report.removed(day, "ledger_rows", rows)
    if report.ledger_rows > sum(expired.values()):  # records of removed temporary files, by their date
        report.undated["ledger_rows"] = report.ledger_rows - sum(expired.values())


def purge_store(store: str, keep_from: date, report: PurgeReport) -> None:
    from beop_assets.cloud_storage import platform_client
    from beop_assets.model.warehouse_store import Store, purge_days

    report.stored_days = purge_days(Store.parse(store), platform_client(), keep_from)
    for table, days in report.stored_days.items():
        for day in days:
            report.by_day.setdefault(day, {}).setdefault("stored", []).append(table)


def purge_expired(
    landing: str,
    root: Path,
    retention_days: int,
    today: date,
    now: float | None = None,
    store: str | None = None,
    ledger_at: ledger.Location | None = None,
    temp_dir: Path | None = None,
) -> PurgeReport:
    """Remove everything older than the window (see the module docstring); report what was removed.
    `ledger_at`: where the delivery ledger is when not in the warehouse folder (a database URL)."""
    now = time.time() if now is None else now
    keep_from = first_kept_day(today, retention_days)
    report = PurgeReport(first_kept_day=keep_from)
    purge_landing(landing, keep_from, report)
    purge_scratch(
        temp_dir or Path(tempfile.gettempdir()), zone.STAGING_PREFIX, "landing_staging", keep_from, now, report
    )
    if store:
        purge_store(store, keep_from, report)
    purge_model(root, keep_from, report, now)
    purge_scratch(root, warehouse.LOAD_SCRATCH, "load_scratch", keep_from, now, report)
    purge_spool(root, keep_from, retention_days * 86400, now, report)
    purge_ledger(ledger_at or root, keep_from, report)
    report.by_day = dict(sorted(report.by_day.items()))
    return report
