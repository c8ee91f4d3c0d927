"""The delivery ledger: every delivery attempt and its result, in one table.

SQLite in the warehouse folder, because many export runs append to it at once (WAL mode and a busy
timeout serialize them safely) and the DuckDB model file must stay free for its single writer.
On a cluster this table moves to the same Postgres as the Dagster instance.

Each delivery also records how its content was proven (`verified_from`) and, where the transport
reports them, the checksums of the file built and of the object stored: when a customer's key may
not read a delivered object back, these recorded checksums are what the delivery checks verify.
"""

from __future__ import annotations

import contextlib
import sqlite3
from contextlib import closing
from dataclasses import asdict, dataclass, fields
from datetime import UTC, date, datetime
from pathlib import Path

from beop_assets import settings

_SCHEMA = """
CREATE TABLE IF NOT EXISTS deliveries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    export_id TEXT NOT NULL,
    mode TEXT NOT NULL,
    data_day TEXT NOT NULL,
    file_name TEXT,
    rows INTEGER,
    bytes INTEGER,
    sha256 TEXT,
    destination TEXT,
    run_id TEXT,
    status TEXT NOT NULL,           -- started | delivered | failed
    error TEXT,
    attempts INTEGER,
    started_at TEXT NOT NULL,
    finished_at TEXT,
    verified_from TEXT,             -- how the content was proven: "read-back", "upload receipt", ...
    built_crc32c TEXT,
    built_md5 TEXT,
    stored_bytes INTEGER,
    stored_crc32c TEXT,
    stored_md5 TEXT,
    generation INTEGER
);
CREATE INDEX IF NOT EXISTS deliveries_by_export_day ON deliveries (export_id, data_day);
"""


@dataclass(frozen=True)
class Delivery:
    id: int
    export_id: str
    mode: str
    data_day: str
    file_name: str | None
    rows: int | None
    bytes: int | None
    sha256: str | None
    destination: str | None
    run_id: str | None
    status: str
    error: str | None
    attempts: int | None
    started_at: str
    finished_at: str | None
    verified_from: str | None = None
    built_crc32c: str | None = None
    built_md5: str | None = None
    stored_bytes: int | None = None
    stored_crc32c: str | None = None
    stored_md5: str | None = None
    generation: int | None = None


@dataclass(frozen=True)
class Verification:
    """How a delivery's content was proven, and the checksums that prove it (base64, as GCS reports)."""

    verified_from: str
    built_crc32c: str | None = None
    built_md5: str | None = None
    stored_bytes: int | None = None
    stored_crc32c: str | None = None
    stored_md5: str | None = None
    generation: int | None = None


_COLUMNS = [f.name for f in fields(Delivery)]
# Columns added after the first ledgers were written: added in place to an existing file.
_ADDED_COLUMNS = {f.name: "INTEGER" if "int" in str(f.type) else "TEXT" for f in fields(Verification)}


def ledger_file(root: Path | None = None) -> Path:
    return (root or settings.current().warehouse) / "deliveries.sqlite"


def _connect(root: Path | None) -> sqlite3.Connection:
    path = ledger_file(root)
    path.parent.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(path, timeout=60, isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.executescript(_SCHEMA)
    present = {row[1] for row in con.execute("PRAGMA table_info(deliveries)")}
    for column, kind in _ADDED_COLUMNS.items():
        if column not in present:
            with contextlib.suppress(sqlite3.OperationalError):  # another process added it meanwhile
                con.execute(f"ALTER TABLE deliveries ADD COLUMN {column} {kind}")
    return con


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def start(
    export_id: str,
    mode: str,
    day: date,
    file_name: str,
    rows: int,
    size: int,
    sha256: str,
    destination: str,
    run_id: str,
    root: Path | None = None,
) -> int:
    with closing(_connect(root)) as con:
        cur = con.execute(
            "INSERT INTO deliveries (export_id, mode, data_day, file_name, rows, bytes, sha256, destination, run_id,"
            " status, started_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'started', ?)",
            (export_id, mode, day.isoformat(), file_name, rows, size, sha256, destination, run_id, _now()),
        )
        return int(cur.lastrowid or 0)


def finish(
    delivery_id: int,
    *,
    error: str | None = None,
    attempts: int | None = None,
    destination: str | None = None,
    verification: Verification | None = None,
    root: Path | None = None,
) -> None:
    proof = asdict(verification) if verification is not None else {}
    assignments = "".join(f", {column} = ?" for column in proof)
    with closing(_connect(root)) as con:
        con.execute(
            "UPDATE deliveries SET status = ?, error = ?, attempts = ?, destination = coalesce(?, destination),"
            f" finished_at = ?{assignments} WHERE id = ?",
            ("failed" if error else "delivered", error, attempts, destination, _now(), *proof.values(), delivery_id),
        )


def history(
    export_id: str | None = None,
    day: date | None = None,
    root: Path | None = None,
    status: str | None = None,
    limit: int = 1000,
) -> list[Delivery]:
    clauses, params = [], []
    for column, value in (("export_id", export_id), ("data_day", day and day.isoformat()), ("status", status)):
        if value:
            clauses.append(f"{column} = ?")
            params.append(value)
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    if not ledger_file(root).exists():
        return []
    with closing(_connect(root)) as con:
        rows = con.execute(
            f"SELECT {', '.join(_COLUMNS)} FROM deliveries {where} ORDER BY id DESC LIMIT ?", (*params, limit)
        ).fetchall()
    return [Delivery(*row) for row in rows]


def last_delivered(export_id: str, day: date, root: Path | None = None) -> Delivery | None:
    found = history(export_id, day, root, status="delivered", limit=1)
    return found[0] if found else None


def record_removed_temp_files(
    export_id: str,
    destination: str,
    names: tuple[str, ...] | list[str],
    run_id: str | None = None,
    root: Path | None = None,
) -> None:
    """Record the product's own leftover temporary files a delivery removed from a customer's directory
    (a crash's `.part` files, SPEC section 5), one row each, so that what was cleaned up, where and
    when can be seen afterwards. Its table is created here, beside `deliveries`."""
    if not names:
        return
    with closing(_connect(root)) as con:
        con.execute(
            "CREATE TABLE IF NOT EXISTS removed_temp_files (id INTEGER PRIMARY KEY AUTOINCREMENT,"
            " export_id TEXT NOT NULL, destination TEXT NOT NULL, name TEXT NOT NULL, run_id TEXT,"
            " removed_at TEXT NOT NULL)"
        )
        now = _now()
        con.executemany(
            "INSERT INTO removed_temp_files (export_id, destination, name, run_id, removed_at) VALUES (?, ?, ?, ?, ?)",
            [(export_id, destination, name, run_id, now) for name in names],
        )
