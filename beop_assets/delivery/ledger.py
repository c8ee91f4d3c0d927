"""The delivery ledger: every delivery attempt and its result, in one table.

Embedded default: SQLite in the warehouse folder, because many export runs append to it at once (WAL
mode and a busy timeout serialize them safely) and the DuckDB model file must stay free for its single
writer. On several machines there is no shared warehouse folder: `BEOP_LEDGER_URL`
(`postgresql://user@host/db`, usually the database of the Dagster instance) puts the same table in
Postgres. Both go through one SQLAlchemy code path, so the backends cannot drift apart.

Each delivery also records how its content was proven (`verified_from`) and, where the transport
reports them, the checksums of the file built and of the object stored: when a customer's key may
not read a delivered object back, these recorded checksums are what the delivery checks verify.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Collection, Iterator
from dataclasses import asdict, dataclass, fields
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

_METADATA = sa.MetaData()
# Sizes and GCS generations (microsecond timestamps) overflow a 32-bit integer: BIGINT, except for
# SQLite's rowid alias, which must be spelled INTEGER to autoincrement.
_BIG = sa.BigInteger()


def _id_column() -> sa.Column:
    return sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True)


DELIVERIES = sa.Table(
    "deliveries",
    _METADATA,
    _id_column(),
    sa.Column("export_id", sa.Text, nullable=False),
    sa.Column("mode", sa.Text, nullable=False),
    sa.Column("data_day", sa.Text, nullable=False),
    sa.Column("file_name", sa.Text),
    sa.Column("rows", _BIG),
    sa.Column("bytes", _BIG),
    sa.Column("sha256", sa.Text),
    sa.Column("destination", sa.Text),
    sa.Column("run_id", sa.Text),
    sa.Column("status", sa.Text, nullable=False),  # started | delivered | failed
    sa.Column("error", sa.Text),
    sa.Column("attempts", sa.Integer),
    sa.Column("started_at", sa.Text, nullable=False),
    sa.Column("finished_at", sa.Text),
    sa.Column("verified_from", sa.Text),  # how the content was proven: "read-back", "upload receipt", ...
    sa.Column("built_crc32c", sa.Text),
    sa.Column("built_md5", sa.Text),
    sa.Column("stored_bytes", _BIG),
    sa.Column("stored_crc32c", sa.Text),
    sa.Column("stored_md5", sa.Text),
    sa.Column("generation", _BIG),
    # The temporary name the attempt writes first (SFTP): recorded before the upload, so that what a
    # crashed attempt left behind can be named to the next delivery of the same export and day.
    sa.Column("temp_name", sa.Text),
    # Which registry configuration produced the file (a YAML file's digest, or the table's revision).
    sa.Column("registry_revision", sa.Text),
    sa.Index("deliveries_by_export_day", "export_id", "data_day"),
    sqlite_autoincrement=True,
)
# The product's own leftover temporary files that deliveries removed from customers' directories.
REMOVED_TEMP_FILES = sa.Table(
    "removed_temp_files",
    _METADATA,
    _id_column(),
    sa.Column("export_id", sa.Text, nullable=False),
    sa.Column("destination", sa.Text, nullable=False),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("run_id", sa.Text),
    sa.Column("removed_at", sa.Text, nullable=False),
    sqlite_autoincrement=True,
)
# Any lock id will do, as long as it is this table's: concurrent first runs must not race on CREATE TABLE.
_SCHEMA_LOCK = 0x0BE0DE11


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
    temp_name: str | None = None
    registry_revision: str | None = None


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
# Columns added after the first ledgers were written: added in place to an existing table.
_ADDED_COLUMNS = [*(f.name for f in fields(Verification)), "temp_name", "registry_revision"]


# Where the ledger is: a database URL (`BEOP_LEDGER_URL`: on several machines the warehouse folder is not
# shared), or the warehouse folder, which then holds it as SQLite. Decided at the edge and passed in.
Location = Path | str


def _is_url(where: Location) -> bool:
    return isinstance(where, str) and "://" in where


def ledger_file(root: Location) -> Path:
    """Where the embedded (SQLite) ledger lives: the warehouse folder."""
    return Path(root) / "deliveries.sqlite"


def ledger_url(root: Location) -> str:
    """The ledger's database: the URL given, else SQLite in the warehouse folder given."""
    if _is_url(root):
        return str(root)
    return f"sqlite:///{ledger_file(root).resolve()}"


@functools.lru_cache(maxsize=16)
def _engine(url: str) -> Engine:
    """One engine per database, without a pool: a connection per call, never one inherited across
    the fork of a Dagster step process, and none left open by a finished run."""
    parsed = sa.make_url(url)
    if parsed.drivername in ("postgres", "postgresql"):
        # SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3; psycopg2 is the driver Dagster's
        # Postgres storage needs, so the ledger uses the same one.
        parsed = parsed.set(drivername="postgresql+psycopg2")
    if parsed.get_backend_name() != "sqlite":
        return sa.create_engine(parsed, poolclass=sa.NullPool)
    engine = sa.create_engine(parsed, poolclass=sa.NullPool, connect_args={"timeout": 60})

    @sa.event.listens_for(engine, "connect")
    def _wal(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.execute("PRAGMA journal_mode=WAL")

    return engine


def _schema_is_current(con: Connection) -> bool:
    inspector = sa.inspect(con)
    if not (inspector.has_table(DELIVERIES.name) and inspector.has_table(REMOVED_TEMP_FILES.name)):
        return False
    present = {column["name"] for column in inspector.get_columns(DELIVERIES.name)}
    return all(column in present for column in _ADDED_COLUMNS)


def _ensure_schema(con: Connection) -> None:
    """Create the table, or extend one written before the proof columns existed."""
    if _schema_is_current(con):
        return
    postgres = con.dialect.name == "postgresql"
    if postgres:  # held until this transaction ends; another process may be creating the table right now
        con.execute(sa.text("SELECT pg_advisory_xact_lock(:lock)"), {"lock": _SCHEMA_LOCK})
    con.execute(sa.schema.CreateTable(DELIVERIES, if_not_exists=True))
    con.execute(sa.schema.CreateTable(REMOVED_TEMP_FILES, if_not_exists=True))
    for index in DELIVERIES.indexes:
        con.execute(sa.schema.CreateIndex(index, if_not_exists=True))
    present = {column["name"] for column in sa.inspect(con).get_columns(DELIVERIES.name)}
    for name in _ADDED_COLUMNS:
        if name in present:
            continue
        kind = DELIVERIES.c[name].type.compile(dialect=con.dialect)
        if postgres:
            con.execute(sa.text(f"ALTER TABLE {DELIVERIES.name} ADD COLUMN IF NOT EXISTS {name} {kind}"))
        else:  # SQLite has no IF NOT EXISTS here; another process may have added the column meanwhile
            with contextlib.suppress(sa.exc.OperationalError):
                con.execute(sa.text(f"ALTER TABLE {DELIVERIES.name} ADD COLUMN {name} {kind}"))


# Ledgers whose schema this process found current: a batch writes several rows per export, and a look
# at the schema costs as much as the write. A SQLite file that is gone since is looked at again.
_CURRENT: set[str] = set()


@contextlib.contextmanager
def _connect(root: Location) -> Iterator[Connection]:
    url = ledger_url(root)
    sqlite = url.startswith("sqlite")
    if sqlite:
        ledger_file(root).parent.mkdir(parents=True, exist_ok=True)
    known = url in _CURRENT and (not sqlite or ledger_file(root).exists())
    with _engine(url).begin() as con:
        if not known:
            _ensure_schema(con)
        yield con
    _CURRENT.add(url)


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
    root: Location,
    temp_name: str | None = None,
    registry_revision: str | None = None,
) -> int:
    values = dict(
        export_id=export_id,
        mode=mode,
        data_day=day.isoformat(),
        file_name=file_name,
        rows=rows,
        bytes=size,
        sha256=sha256,
        destination=destination,
        run_id=run_id,
        status="started",
        started_at=_now(),
        temp_name=temp_name,
        registry_revision=registry_revision,
    )
    with _connect(root) as con:
        return int(con.execute(sa.insert(DELIVERIES).values(**values).returning(DELIVERIES.c.id)).scalar_one())


def finish(
    delivery_id: int,
    *,
    error: str | None = None,
    attempts: int | None = None,
    destination: str | None = None,
    verification: Verification | None = None,
    root: Location,
) -> None:
    proof = asdict(verification) if verification is not None else {}
    update = (
        sa.update(DELIVERIES)
        .where(DELIVERIES.c.id == delivery_id)
        .values(
            status="failed" if error else "delivered",
            error=error,
            attempts=attempts,
            destination=sa.func.coalesce(destination, DELIVERIES.c.destination),
            finished_at=_now(),
            **proof,
        )
    )
    with _connect(root) as con:
        con.execute(update)


def history(
    export_id: str | None = None,
    day: date | None = None,
    *,
    root: Location,
    status: str | None = None,
    limit: int = 1000,
    export_ids: Collection[str] | None = None,
) -> list[Delivery]:
    """The newest rows first, filtered by export, day, status, and by `export_ids` (a run's exports: its
    rows only, whatever else the day holds)."""
    query = sa.select(*(DELIVERIES.c[c] for c in _COLUMNS)).order_by(DELIVERIES.c.id.desc()).limit(limit)
    for column, value in (("export_id", export_id), ("data_day", day and day.isoformat()), ("status", status)):
        if value:
            query = query.where(DELIVERIES.c[column] == value)
    if export_ids is not None:
        query = query.where(DELIVERIES.c.export_id.in_(sorted(export_ids)))
    if not _is_url(root) and not ledger_file(root).exists():
        return []
    with _connect(root) as con:
        return [Delivery(*row) for row in con.execute(query)]


def last_delivered(export_id: str, day: date, root: Location) -> Delivery | None:
    found = history(export_id, day, root=root, status="delivered", limit=1)
    return found[0] if found else None


def leftover_temps(export_id: str, day: date, root: Location) -> list[str]:
    """The temporary names of this export's and day's attempts that did not end delivered (failed, or
    still "started": a crash), oldest first: what the next delivery of that day may leave behind in
    the customer's directory and removes once it has succeeded."""
    if not _is_url(root) and not ledger_file(root).exists():
        return []
    query = (
        sa.select(DELIVERIES.c.temp_name)
        .where(
            DELIVERIES.c.export_id == export_id,
            DELIVERIES.c.data_day == day.isoformat(),
            DELIVERIES.c.status != "delivered",
            DELIVERIES.c.temp_name.is_not(None),
        )
        .order_by(DELIVERIES.c.id)
    )
    with _connect(root) as con:
        return list(dict.fromkeys(name for (name,) in con.execute(query)))


def latest_attempts(first: date, last: date, root: Location) -> dict[tuple[str, date], tuple[bool, Delivery]]:
    """For every (export, data day) from `first` to `last` with an attempt: whether one delivered it,
    and its latest attempt. One query for the whole range, whatever the number of exports."""
    if not _is_url(root) and not ledger_file(root).exists():
        return {}
    day_range = DELIVERIES.c.data_day.between(first.isoformat(), last.isoformat())
    latest = (
        sa.select(
            sa.func.max(sa.case((DELIVERIES.c.status == "delivered", 1), else_=0)).label("delivered"),
            sa.func.max(DELIVERIES.c.id).label("last_id"),
        )
        .where(day_range)
        .group_by(DELIVERIES.c.export_id, DELIVERIES.c.data_day)
        .subquery()
    )
    query = sa.select(latest.c.delivered, *(DELIVERIES.c[c] for c in _COLUMNS)).join(
        latest, DELIVERIES.c.id == latest.c.last_id
    )
    with _connect(root) as con:
        found = {}
        for delivered, *row in con.execute(query):
            attempt = Delivery(*row)
            found[(attempt.export_id, date.fromisoformat(attempt.data_day))] = (bool(delivered), attempt)
        return found


def record_removed_temp_files(
    export_id: str,
    destination: str,
    names: tuple[str, ...] | list[str],
    run_id: str | None = None,
    *,
    root: Location,
) -> None:
    """Record the product's own leftover temporary files a delivery removed from a customer's directory
    (a crash's `.part` files, docs/file-contract.md), one row each, so that what was cleaned up, where and
    when can be seen afterwards."""
    if not names:
        return
    now = _now()
    rows = [dict(export_id=export_id, destination=destination, name=n, run_id=run_id, removed_at=now) for n in names]
    with _connect(root) as con:
        con.execute(sa.insert(REMOVED_TEMP_FILES), rows)


def purge_before(keep_from: date, root: Location) -> int:
    """Delete the ledger's detail older than the retention window: deliveries of data days before
    `keep_from`, and leftover-removal records made before it. Returns the rows deleted."""
    if not _is_url(root) and not ledger_file(root).exists():
        return 0
    with _connect(root) as con:
        deleted = con.execute(sa.delete(DELIVERIES).where(DELIVERIES.c.data_day < keep_from.isoformat())).rowcount
        deleted += con.execute(
            sa.delete(REMOVED_TEMP_FILES).where(REMOVED_TEMP_FILES.c.removed_at < keep_from.isoformat())
        ).rowcount
    return deleted
