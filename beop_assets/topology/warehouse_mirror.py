"""The model's Parquet days on GCS, for workers that share no disk: a mirror at the run boundary.

The model writes and reads a local warehouse folder. On Celery workers with no shared disk, each
worker keeps its own warehouse folder as a cache, and `BEOP_WAREHOUSE_MIRROR=gs://bucket/prefix` is
where the days really live: after a worker loads a day, that day's Parquet files are uploaded there
(`push_day`); before a worker runs an export of a day, that day's files are downloaded from there into
its own folder (`pull_day`). The DuckDB file is not mirrored: it is rebuilt, day by day, on whichever
worker loads, and no export reads it.

Only the model's public layout is used (`MODEL_TABLES`, `day_file`), so the mirror follows it. A day
is pulled whole before the run starts, and published with the model's own `replace_file` (a new
immutable version, then an atomic symlink swap), so a reader never sees a half-downloaded day.
"""

from __future__ import annotations

import os
import tempfile
import time
from datetime import date
from pathlib import Path

from google.cloud import storage

from beop_assets.model.warehouse import MODEL_TABLES, day_file, replace_file


def _split(mirror: str) -> tuple[str, str]:
    bucket, _, prefix = mirror.removeprefix("gs://").partition("/")
    return bucket, prefix.strip("/")


def _object_name(prefix: str, table: str, day: date) -> str:
    name = f"{table}/date={day.isoformat()}/data.parquet"
    return f"{prefix}/{name}" if prefix else name


def push_day(day: date, warehouse: Path, mirror: str, client: storage.Client) -> list[str]:
    """Upload the day's Parquet files of every model table; returns the objects written."""
    bucket_name, prefix = _split(mirror)
    bucket = client.bucket(bucket_name)
    written = []
    for table in MODEL_TABLES:
        local = day_file(table, day, warehouse)
        if not local.exists():
            raise FileNotFoundError(f"the load of {day} left no {table} Parquet at {local}: nothing to mirror")
        name = _object_name(prefix, table, day)
        bucket.blob(name).upload_from_filename(str(local.resolve()))
        written.append(f"gs://{bucket_name}/{name}")
    return written


def pull_day(day: date, warehouse: Path, mirror: str, client: storage.Client, wait_s: float = 0) -> list[Path]:
    """Download the day's Parquet files into this worker's warehouse.

    The loading worker pushes a day only once its load run has finished, that is just after Dagster
    reports the load successful: an export launched in that window waits up to `wait_s` for the
    day. A day the mirror still does not hold is left alone (the export then fails as on one box:
    the day is not loaded)."""
    bucket_name, prefix = _split(mirror)
    bucket = client.bucket(bucket_name)
    deadline = time.monotonic() + wait_s
    last = bucket.blob(_object_name(prefix, MODEL_TABLES[-1], day))
    while not last.exists() and time.monotonic() < deadline:  # pushed last: its presence means the whole day
        time.sleep(0.5)
    pulled = []
    for table in MODEL_TABLES:
        blob = bucket.blob(_object_name(prefix, table, day))
        if not blob.exists():
            continue
        local = day_file(table, day, warehouse)
        local.parent.mkdir(parents=True, exist_ok=True)
        fd, partial = tempfile.mkstemp(dir=local.parent, prefix=".pull-", suffix=".parquet")
        os.close(fd)
        try:
            blob.download_to_filename(partial)
            replace_file(Path(partial), local)
        finally:
            Path(partial).unlink(missing_ok=True)
        pulled.append(local)
    return pulled
