"""Where the model lives: one DuckDB file, and one Parquet file per table and day.

The DuckDB file is written only by the model assets, one at a time (a Dagster pool, and a file lock
for writers outside Dagster's pools such as a second `beop-exports run`). Exports never open it:
they read the day's Parquet through a fresh in-memory DuckDB connection, so that any number of
export runs proceed while a day is being loaded.
"""

from __future__ import annotations

import fcntl
import functools
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path

import duckdb

MODEL_TABLES = ("participations", "optins", "rejected_participations")
# How long a replaced Parquet day stays readable for the exports that resolved it before the reload.
OLD_VERSIONS_KEPT_S = 6 * 3600
LOAD_SCRATCH = ".load-"


class DayNotLoadedError(Exception):
    """An export asked for a day that the model has not loaded: delivering an empty file would lie."""


def day_file(table: str, day: date, root: Path) -> Path:
    return root / table / f"date={day.isoformat()}" / "data.parquet"


def load_scratch_prefix(day: date) -> str:
    """A load's scratch folder in the warehouse (its judged lines and DuckDB's spill) is named after its
    data day, so that retention removes what a killed load left there with the day."""
    return f"{LOAD_SCRATCH}date={day.isoformat()}-"


def database_file(root: Path) -> Path:
    return root / "beop.duckdb"


def sql_path(path: Path) -> str:
    """A path as a DuckDB string literal."""
    return "'" + str(path).replace("'", "''") + "'"


def loaded_day_file(table: str, day: date, root: Path) -> Path:
    """The day's Parquet file as it is now: an immutable version, so that a reader who resolved it
    keeps reading the same rows even if the day is reloaded meanwhile (see `replace_file`)."""
    path = day_file(table, day, root)
    if not path.exists():
        raise DayNotLoadedError(
            f"the model has no {table} for {day.isoformat()} (expected {path}): "
            f"materialize the participations partition {day.isoformat()} first"
        )
    return path.resolve()


@contextmanager
def model_writer(root: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    """The only way to write the DuckDB file: serialized by an exclusive file lock."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".model.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        con = duckdb.connect(str(database_file(root)))
        try:
            yield con
        finally:
            con.close()


# DuckDB threads of one export's read of the model: on 2 cores, one export at a time uses both.
DEFAULT_READ_THREADS = 2


def reader(threads: int = DEFAULT_READ_THREADS) -> duckdb.DuckDBPyConnection:
    """A fresh connection for reading Parquet days: never takes the DuckDB file lock.

    A connection of its own (close it when done) to an in-memory database this process keeps, one per
    thread count: opening a database costs a hundred times more than a connection to it, and a batch
    reads the model twice per export. Readers only query Parquet files; they create nothing in it."""
    con = _read_database(os.getpid(), threads).cursor()
    con.execute("SET TimeZone = 'UTC'")
    return con


@functools.lru_cache(maxsize=8)
def _read_database(pid: int, threads: int) -> duckdb.DuckDBPyConnection:
    """Keyed by pid too: a forked process (a Celery worker's child) opens its own."""
    con = duckdb.connect(":memory:", config={"threads": threads})
    con.execute("SET preserve_insertion_order = true")
    return con


def replace_file(tmp: Path, final: Path) -> None:
    """Publish a freshly written Parquet day: readers see the old day or the new one, never a mix.

    Each load is a new immutable file (`data-<time>-<pid>.parquet`) and `final` a symlink to it,
    swapped atomically. Renaming the new file over the old one would not do: DuckDB opens a Parquet
    file more than once during a read, and could read the footer of one version and the row groups of
    the other. Versions older than `OLD_VERSIONS_KEPT_S` are removed once a newer one is published.
    """
    folder = final.parent
    folder.mkdir(parents=True, exist_ok=True)
    version = folder / f"{final.stem}-{time.time_ns()}-{os.getpid()}{final.suffix}"
    os.replace(tmp, version)
    link = folder / f".{final.name}.{os.getpid()}.link"
    link.unlink(missing_ok=True)
    os.symlink(version.name, link)
    os.replace(link, final)
    cutoff = time.time() - OLD_VERSIONS_KEPT_S
    for old in folder.glob(f"{final.stem}-*{final.suffix}"):
        if old != version and old.stat().st_mtime < cutoff:
            old.unlink(missing_ok=True)
