"""The delivery ledger behaves the same on its two backends: SQLite in the warehouse (the embedded
default) and Postgres (`BEOP_LEDGER_URL`, the distributed topology), against a real Postgres server.

The daily run at the end proves the setting reaches the IO managers: its rows land in Postgres and the
warehouse folder gets no ledger file.
"""

from __future__ import annotations

import sqlite3
import threading
from datetime import date
from pathlib import Path

import pytest
import sqlalchemy as sa

from beop_assets.delivery import ledger
from beop_assets_tests.fixtures.definitions import ledger_at, resource

DAY = date(2026, 11, 25)
OTHER_DAY = date(2026, 11, 26)
BIG_GENERATION = 1_764_567_890_123_456  # a GCS generation: microseconds, beyond 32 bits


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request, tmp_path, monkeypatch) -> str:
    """The backend under test; `tmp_path` is the warehouse folder (the SQLite ledger's home)."""
    monkeypatch.setenv("BEOP_WAREHOUSE", str(tmp_path))
    if request.param == "postgres":
        monkeypatch.setenv("BEOP_LEDGER_URL", request.getfixturevalue("postgres_url"))
    else:
        monkeypatch.delenv("BEOP_LEDGER_URL", raising=False)
    return request.param


def _engine(url: str) -> sa.Engine:
    """Read the database directly, not through the ledger (psycopg2: the driver installed)."""
    return sa.create_engine(url.replace("postgresql://", "postgresql+psycopg2://"))


def _start(export_id: str = "acme-all", day: date = DAY, **overrides) -> int:
    fields = dict(
        mode="global",
        file_name="2026-11-26_acme.ndjson.gz",
        rows=2,
        size=100,
        sha256="ab" * 32,
        destination="gs://bucket/",
        run_id="run-1",
    )
    fields.update(overrides)
    return ledger.start(export_id, day=day, **fields, root=ledger_at())  # type: ignore[arg-type]


def test_an_empty_ledger_has_no_history(backend):
    assert ledger.history(root=ledger_at()) == []
    assert ledger.last_delivered("acme-all", DAY, root=ledger_at()) is None


def test_start_then_finish_records_the_attempt_and_its_result(backend):
    first = _start()
    (started,) = ledger.history(root=ledger_at())
    assert (started.id, started.status, started.finished_at, started.error) == (first, "started", None, None)
    assert (started.rows, started.bytes, started.data_day, started.run_id) == (2, 100, "2026-11-25", "run-1")

    ledger.finish(first, error="ConnectionError: 127.0.0.1 refused", attempts=3, root=ledger_at())
    second = _start(run_id="run-2")
    proof = ledger.Verification("upload receipt", "c==", "m==", 100, "c==", "m==", BIG_GENERATION)
    ledger.finish(
        second, attempts=1, destination="gs://bucket/2026-11-26_acme.ndjson.gz", verification=proof, root=ledger_at()
    )

    latest, failed = ledger.history("acme-all", root=ledger_at())
    assert second > first and (latest.id, failed.id) == (second, first)  # newest first
    assert (failed.status, failed.error, failed.attempts) == ("failed", "ConnectionError: 127.0.0.1 refused", 3)
    assert failed.destination == "gs://bucket/"  # no destination given: the one recorded at start stays
    assert (latest.status, latest.error, latest.attempts) == ("delivered", None, 1)
    assert latest.destination == "gs://bucket/2026-11-26_acme.ndjson.gz"
    assert (latest.verified_from, latest.stored_crc32c, latest.generation) == ("upload receipt", "c==", BIG_GENERATION)
    assert latest.finished_at is not None and latest.finished_at >= latest.started_at
    assert ledger.last_delivered("acme-all", DAY, root=ledger_at()) == latest


def test_history_filters_by_export_day_and_status_and_limits(backend):
    ids = {}
    for export_id in ("acme-all", "globex-all"):
        for day in (DAY, OTHER_DAY):
            ids[export_id, day] = _start(export_id, day)
            ledger.finish(ids[export_id, day], attempts=1, error=None if day == DAY else "boom", root=ledger_at())

    assert [d.id for d in ledger.history("globex-all", root=ledger_at())] == [
        ids["globex-all", OTHER_DAY],
        ids["globex-all", DAY],
    ]
    assert [d.export_id for d in ledger.history(day=OTHER_DAY, root=ledger_at())] == ["globex-all", "acme-all"]
    assert {d.id for d in ledger.history(status="failed", root=ledger_at())} == {
        ids["acme-all", OTHER_DAY],
        ids["globex-all", OTHER_DAY],
    }
    assert [d.id for d in ledger.history("acme-all", DAY, status="delivered", root=ledger_at())] == [
        ids["acme-all", DAY]
    ]
    assert len(ledger.history(limit=3, root=ledger_at())) == 3
    assert ledger.last_delivered("acme-all", OTHER_DAY, root=ledger_at()) is None  # that day only failed


def test_concurrent_writers_on_a_new_ledger_lose_no_row(backend):
    """Many export runs start at once on a ledger nobody created yet: the schema is created once, no
    writer fails on it, and every attempt gets its own id."""
    errors: list[BaseException] = []
    made: list[int] = []

    def deliver(n: int) -> None:
        try:
            delivery_id = _start(f"export-{n}")
            ledger.finish(delivery_id, attempts=1, root=ledger_at())
            made.append(delivery_id)
        except BaseException as exc:  # collected: a thread's exception would otherwise vanish
            errors.append(exc)

    threads = [threading.Thread(target=deliver, args=(n,)) for n in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(set(made)) == 12
    assert sorted(d.export_id for d in ledger.history(status="delivered", root=ledger_at())) == sorted(
        f"export-{n}" for n in range(12)
    )


OLD_SCHEMA = (
    "CREATE TABLE deliveries (id {id}, export_id TEXT NOT NULL, mode TEXT NOT NULL,"
    " data_day TEXT NOT NULL, file_name TEXT, rows INTEGER, bytes INTEGER, sha256 TEXT, destination TEXT,"
    " run_id TEXT, status TEXT NOT NULL, error TEXT, attempts INTEGER, started_at TEXT NOT NULL, finished_at TEXT)"
)
OLD_ROW = (
    "INSERT INTO deliveries (export_id, mode, data_day, status, started_at)"
    " VALUES ('acme-all', 'global', '2026-11-24', 'delivered', 't')"
)


def test_a_ledger_from_before_the_proof_columns_is_extended_in_place(backend, tmp_path):
    if backend == "sqlite":
        old = sqlite3.connect(tmp_path / "deliveries.sqlite")
        old.executescript(OLD_SCHEMA.format(id="INTEGER PRIMARY KEY AUTOINCREMENT") + ";" + OLD_ROW)
        old.close()
    else:
        with _engine(ledger.ledger_url(ledger_at())).begin() as con:
            con.execute(sa.text(OLD_SCHEMA.format(id="SERIAL PRIMARY KEY")))
            con.execute(sa.text(OLD_ROW))

    new_id = _start()
    ledger.finish(
        new_id,
        attempts=1,
        verification=ledger.Verification("upload receipt", generation=BIG_GENERATION),
        root=ledger_at(),
    )
    latest, older = ledger.history("acme-all", root=ledger_at())
    assert (latest.verified_from, latest.generation) == ("upload receipt", BIG_GENERATION)
    assert (older.data_day, older.verified_from, older.temp_name) == ("2026-11-24", None, None)
    crashed = _start(temp_name=".crashed.csv.part")  # the temporary-name column was added too
    assert ledger.leftover_temps("acme-all", DAY, root=ledger_at()) == [".crashed.csv.part"] and crashed


def test_leftover_temps_are_the_days_attempts_that_did_not_end_delivered(backend):
    """What the next delivery of an export and day is told to remove: temporary names of its failed
    attempts and of those a crash left "started"; never a delivered one's, another day's or export's."""
    crashed = _start("acme-crm", temp_name=".a.csv.part")
    failed = _start("acme-crm", temp_name=".b.csv.part")
    ledger.finish(failed, error="TransientDeliveryError: connection refused", attempts=4, root=ledger_at())
    delivered = _start("acme-crm", temp_name=".c.csv.part")
    ledger.finish(delivered, attempts=1, root=ledger_at())
    _start("acme-crm", OTHER_DAY, temp_name=".other-day.csv.part")
    _start("acme-other", temp_name=".other-export.csv.part")
    _start("acme-crm")  # a GCS-like attempt: no temporary name
    _start("acme-crm", temp_name=".a.csv.part")  # the same name again: named once

    assert ledger.leftover_temps("acme-crm", DAY, root=ledger_at()) == [".a.csv.part", ".b.csv.part"] and crashed


def test_with_a_ledger_url_the_warehouse_folder_holds_no_ledger(postgres_url, tmp_path, monkeypatch):
    """On a cluster the warehouse folder is not shared: with BEOP_LEDGER_URL the resources the deployment
    builds put the ledger in that database, never in the warehouse folder."""
    monkeypatch.setenv("BEOP_WAREHOUSE", str(tmp_path))
    monkeypatch.setenv("BEOP_LEDGER_URL", postgres_url)
    where = resource("warehouse").ledger()
    assert where == postgres_url and ledger.ledger_url(where) == postgres_url
    _start()
    ledger.history(root=where)
    assert not (tmp_path / "deliveries.sqlite").exists()
    with _engine(postgres_url).connect() as con:
        assert con.execute(sa.text("SELECT count(*) FROM deliveries")).scalar_one() == 1


def test_an_unreachable_ledger_database_says_which(monkeypatch, tmp_path):
    from beop_assets.demo.sshd import free_port

    url = f"postgresql://postgres@127.0.0.1:{free_port()}/nowhere"
    monkeypatch.setenv("BEOP_LEDGER_URL", url)
    with pytest.raises(sa.exc.OperationalError, match="127.0.0.1"):
        _start()


def test_a_daily_run_records_its_deliveries_in_postgres(product, postgres_url, monkeypatch):
    from beop_assets.daily_run import run_day

    monkeypatch.setenv("BEOP_LEDGER_URL", postgres_url)
    product.landing.write_events(DAY, [product.landing.event("p_1", email="jane@example.com")])
    product.write_registry([product.crm("acme-participations"), product.global_("acme-all")])

    outcomes = {o.export_id: o for o in run_day(DAY, dagster_instance=product.instance)}

    assert {o.status for o in outcomes.values()} == {"delivered"}, outcomes
    with _engine(postgres_url).connect() as con:
        rows = con.execute(sa.text("SELECT export_id, status, run_id, data_day FROM deliveries ORDER BY export_id"))
        recorded = [tuple(r) for r in rows]
    assert recorded == [
        ("acme-all", "delivered", outcomes["acme-all"].run_id, "2026-11-25"),
        ("acme-participations", "delivered", outcomes["acme-participations"].run_id, "2026-11-25"),
    ]
    assert not (Path(product.landing.warehouse) / "deliveries.sqlite").exists()


def test_a_sqlite_ledger_removed_while_the_process_runs_is_created_again(tmp_path, monkeypatch):
    """The process remembers a ledger's schema once checked; a file deleted since (an operator starting
    afresh, the warehouse folder replaced) is checked, and created, again, not written to blindly."""
    monkeypatch.setenv("BEOP_WAREHOUSE", str(tmp_path))
    monkeypatch.delenv("BEOP_LEDGER_URL", raising=False)
    _start()
    assert len(ledger.history(root=ledger_at())) == 1
    ledger.ledger_file(ledger_at()).unlink()
    _start(run_id="run-2")
    (only,) = ledger.history(root=ledger_at())
    assert only.run_id == "run-2"
