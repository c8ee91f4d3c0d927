"""The one-box instance's event log: Dagster's consolidated SQLite event log, made cheap per event.

A batched night writes about seven Dagster events per export (its materialization and four check
evaluations among them), so the night's pace on one box is the event log's pace. Dagster's SQLite
storage builds a new SQLAlchemy engine for every statement and syncs the disk at every commit; the
profile of a 200-export night put four fifths of its time there: the engine, a look at the schema
before each check evaluation, and above all the close of each connection, which, being the last one open, checkpoints the WAL into the database and syncs
it. This storage keeps one engine per process with a pool of open connections (a connection is used
by one thread at a time; SQLite's locks order the processes, as before) and commits with
`synchronous=NORMAL`, which in WAL mode keeps the database consistent and may, after a power cut,
lose the last events written. That is a fair trade here: what was delivered is decided by the delivery
ledger (its own database, synced at every commit), not by Dagster's events, so a lost event can neither
hide a missed delivery nor cause a second one.

The deployment instances (PostgreSQL) do not use it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cached_property
from typing import Any

import sqlalchemy as sa
from dagster._core.storage.event_log.sqlite.consolidated_sqlite_event_log import ConsolidatedSqliteEventLogStorage
from dagster._core.storage.sqlite import SQLITE_BUSY_TIMEOUT_SECONDS
from sqlalchemy.pool import QueuePool


class SqliteEventLog(ConsolidatedSqliteEventLogStorage):
    @cached_property
    def _engine(self) -> sa.Engine:
        engine = sa.create_engine(
            self._conn_string,
            poolclass=QueuePool,
            pool_size=4,
            max_overflow=-1,  # never wait for a connection: a thread beyond the pool opens one more
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS, "check_same_thread": False},
        )

        @sa.event.listens_for(engine, "connect")
        def _sync_normal(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.execute("PRAGMA synchronous=NORMAL")

        return engine

    @contextmanager
    def _connect(self) -> Iterator[sa.Connection]:
        with self._engine.connect() as conn, conn.begin():
            yield conn

    # Dagster asks the schema before every check evaluation and materialization (a table's or a
    # column's presence); what is there stays there, so a positive answer is kept for the process.
    @cached_property
    def _present(self) -> set[tuple[str, str]]:
        return set()

    def _remembered(self, key: tuple[str, str], ask: Callable[[], bool]) -> bool:
        if key not in self._present and ask():
            self._present.add(key)
        return key in self._present

    def has_table(self, table_name: str) -> bool:
        return self._remembered(("table", table_name), lambda: super(SqliteEventLog, self).has_table(table_name))

    def has_asset_key_col(self, column_name: str) -> bool:
        return self._remembered(
            ("asset_keys", column_name), lambda: super(SqliteEventLog, self).has_asset_key_col(column_name)
        )
