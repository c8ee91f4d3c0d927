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

It also writes a batch of events in one transaction. When Dagster creates a run of a range of exports, it
stores a "materialization planned" event per (day, export): 250 events, two transactions each, for one
run, inside the delivery sensor's tick and competing with the running runs for SQLite's one writer: on
the night of 10,000 exports a tick that created two runs took up to 25 s. Dagster hands those events
over as one batch when `DAGSTER_EVENT_BATCH_SIZE` is set (its own storage then still writes them one by
one; PostgreSQL's batches them), so this storage sets that variable for its process, unless the
environment already does, and commits a batch at once.

The deployment instances (PostgreSQL) do not use it.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import cached_property
from typing import Any

import sqlalchemy as sa
from dagster import EventLogEntry
from dagster._core.storage.event_log.sqlite.consolidated_sqlite_event_log import ConsolidatedSqliteEventLogStorage
from dagster._core.storage.sqlite import SQLITE_BUSY_TIMEOUT_SECONDS
from sqlalchemy.pool import QueuePool

# Events per batch: the planned events of a run of up to 1,000 keys (BEOP_DELIVERY_BATCH_SIZE is 250).
EVENT_BATCH_SIZE = "1000"


class SqliteEventLog(ConsolidatedSqliteEventLogStorage):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Read by the instance of this process (the daemon, the webserver, the CLI, a run) when it stores
        # events Dagster marked as a batch: they come to `store_event_batch` instead of one by one.
        os.environ.setdefault("DAGSTER_EVENT_BATCH_SIZE", EVENT_BATCH_SIZE)

    @cached_property
    def _batching(self) -> threading.local:
        return threading.local()

    def store_event_batch(self, events: Sequence[EventLogEntry]) -> None:
        """The batch in one transaction: every statement Dagster's `store_event` makes for each event
        goes through `_connect`, which hands out this thread's open transaction while the batch lasts."""
        with self._engine.connect() as conn, conn.begin():
            self._batching.conn = conn
            try:
                for event in events:
                    self.store_event(event)
            finally:
                self._batching.conn = None

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
        batch = getattr(self._batching, "conn", None)
        if batch is not None:  # inside `store_event_batch`: its transaction, committed at its end
            yield batch
            return
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
