"""Retention (issue 15): everything older than BEOP_RETENTION_DAYS goes (landing days, model days and
their DuckDB rows, replaced Parquet versions, spool folders, ledger rows); nothing inside the window is
touched; the job's metadata says what it removed. Real loads, a real DuckDB file and ledger."""

from __future__ import annotations

import os
import time
from datetime import UTC, date, datetime, timedelta

import duckdb
import pytest
from dagster import DagsterEventType, DagsterInstance
from google.cloud import storage

from beop_assets import settings
from beop_assets.definitions import defs as load_definitions
from beop_assets.delivery import ledger
from beop_assets.model import warehouse
from beop_assets.operations.retention import first_kept_day, purge_expired

TODAY = datetime.now(UTC).date()


def days_back(*counts: int) -> list[date]:
    return [TODAY - timedelta(days=n) for n in counts]


def _prepare(zone, days: list[date]) -> None:
    for n, day in enumerate(days):
        zone.write_events(day, [zone.event(f"p_{n}", day=day, email=f"user{n}@example.com")])
        zone.load(day)
        delivery = ledger.start("acme", "specific", day, "f.csv", 1, 1, "0" * 64, "d", "r", root=zone.warehouse)
        ledger.finish(delivery, root=zone.warehouse)


def _model_days(zone) -> list[str]:
    con = duckdb.connect(str(warehouse.database_file(zone.warehouse)), read_only=True)
    try:
        return [str(r[0]) for r in con.execute("SELECT DISTINCT day FROM participations ORDER BY day").fetchall()]
    finally:
        con.close()


def test_retention_job_purges_what_is_older_than_the_window_and_reports_it(landing_env, monkeypatch):
    zone = landing_env
    monkeypatch.setenv("BEOP_RETENTION_DAYS", "30")
    expired, kept = days_back(45, 31), days_back(30, 29, 1)
    _prepare(zone, expired + kept)
    # A kept day reloaded: its first version is replaced, and old enough for no reader to be on it.
    zone.load(kept[1])
    folder = warehouse.day_file("participations", kept[1], zone.warehouse).parent
    versions = sorted(folder.glob("data-*.parquet"))
    assert len(versions) == 2
    live = warehouse.day_file("participations", kept[1], zone.warehouse).resolve()
    (replaced,) = [v for v in versions if v != live]
    old = time.time() - warehouse.OLD_VERSIONS_KEPT_S - 60
    os.utime(replaced, (old, old))
    # Spool: one run folder older than the window, one recent.
    stale = zone.warehouse / "spool" / "acme" / "run-stale"
    fresh = zone.warehouse / "spool" / "acme" / "run-fresh"
    for path in (stale, fresh):
        path.mkdir(parents=True)
        (path / "20261101_crm.csv").write_text("email\njane@example.com\n")
    month_ago = time.time() - 31 * 86400
    os.utime(stale, (month_ago, month_ago))

    with DagsterInstance.ephemeral() as instance:
        result = load_definitions().resolve_job_def("retention_job").execute_in_process(instance=instance)
    assert result.success
    (output,) = [e for e in result.all_events if e.event_type == DagsterEventType.STEP_OUTPUT]
    metadata = {k: v.value for k, v in output.event_specific_data.metadata.items()}

    assert metadata["first_kept_day"] == first_kept_day(TODAY, 30).isoformat() == kept[0].isoformat()
    assert metadata["landing_days_removed"] == [d.isoformat() for d in expired]
    assert metadata["model_days_removed"] == {t: [d.isoformat() for d in expired] for t in warehouse.MODEL_TABLES}
    assert metadata["database_rows_removed"]["participations"] == 2
    assert metadata["parquet_versions_removed"] == 1
    assert metadata["spool_folders_removed"] == 1
    assert metadata["ledger_rows_removed"] == 2
    # Per day, every kind of copy that went (issue 23).
    by_day = metadata["removed_by_day"]
    assert sorted(by_day) == sorted([*(d.isoformat() for d in expired), kept[1].isoformat()])
    for day in expired:
        assert set(by_day[day.isoformat()]) == {"landing", "model", "ledger_rows"}
        assert by_day[day.isoformat()]["landing"] == 1 and by_day[day.isoformat()]["ledger_rows"] == 1
        assert by_day[day.isoformat()]["model"]["participations"] == 1
        assert set(by_day[day.isoformat()]["model"]) == set(warehouse.MODEL_TABLES)
    assert by_day[kept[1].isoformat()] == {"old_parquet_versions": 1}
    assert metadata["removed_undated"] == {"spool": [str(stale.relative_to(zone.warehouse))]}

    # Gone:
    for day in expired:
        assert not zone.day_folder(day).exists()
        for table in warehouse.MODEL_TABLES:
            assert not warehouse.day_file(table, day, zone.warehouse).parent.exists()
    assert not replaced.exists() and not stale.exists()
    # Never a day inside the window:
    for day in kept:
        assert zone.day_folder(day).exists()
        for table in warehouse.MODEL_TABLES:
            assert warehouse.day_file(table, day, zone.warehouse).exists()
    assert live.exists() and fresh.exists()
    assert _model_days(zone) == [d.isoformat() for d in kept]
    assert sorted(e.data_day for e in ledger.history(root=zone.warehouse)) == sorted(d.isoformat() for d in kept)

    # A second run finds nothing more to remove.
    again = purge_expired(str(zone.root), zone.warehouse, 30, TODAY)
    assert not again.removed_anything


def test_a_young_replaced_version_stays_for_the_readers_still_on_it(landing_zone):
    day = TODAY - timedelta(days=1)
    landing_zone.write_events(day, [landing_zone.event("p_1", day=day)])
    landing_zone.load(day)
    landing_zone.load(day)
    report = purge_expired(str(landing_zone.root), landing_zone.warehouse, 1, TODAY)
    assert report.parquet_versions == [] and not report.removed_anything
    assert len(list(warehouse.day_file("participations", day, landing_zone.warehouse).parent.glob("data-*"))) == 2


@pytest.mark.parametrize("value", ["0", "-2", "abc"])
def test_a_bad_retention_window_fails_the_retention_run_alone_and_deletes_nothing(landing_env, monkeypatch, value):
    """Issue 23: a typo in BEOP_RETENTION_DAYS used to stop the whole code location (every load, delivery and
    alert). Now the location loads, the retention run fails with the setting's error, and a load still runs."""
    zone = landing_env
    expired = days_back(40)
    _prepare(zone, expired)
    monkeypatch.setenv("BEOP_RETENTION_DAYS", value)
    assert any(p.startswith(f"BEOP_RETENTION_DAYS={value!r}: expected") for p in settings.current().problems())
    definitions = load_definitions()  # the code location still loads
    with DagsterInstance.ephemeral() as instance:
        purge = definitions.resolve_job_def("retention_job").execute_in_process(instance=instance, raise_on_error=False)
        assert not purge.success
        (failure,) = [e for e in purge.all_events if e.event_type == DagsterEventType.STEP_FAILURE]
        assert f"BEOP_RETENTION_DAYS={value!r}: expected" in failure.event_specific_data.error.cause.message
        load = definitions.resolve_job_def("load_participations").execute_in_process(
            partition_key=days_back(1)[0].isoformat(), instance=instance
        )
        assert load.success
    for table in warehouse.MODEL_TABLES:  # nothing deleted
        assert warehouse.day_file(table, expired[0], zone.warehouse).exists()
    with pytest.raises(ValueError):
        first_kept_day(TODAY, 0)


def test_a_gcs_landing_zone_loses_its_expired_days_only(gcs_emulator, gcs_bucket, monkeypatch, tmp_path):
    client = gcs_emulator.client()
    bucket = client.bucket(gcs_bucket)
    old, kept = days_back(40, 30)
    names = [
        f"landing/participations/date={old}/a.ndjson",
        f"landing/participations/date={old}/b.ndjson.gz",
        f"landing/participations/date={kept}/a.ndjson",
        "landing/reference/accounts.ndjson",
    ]
    for name in names:
        bucket.blob(name).upload_from_string(b"{}\n")
    report = purge_expired(f"gs://{gcs_bucket}/landing", tmp_path / "warehouse", 30, TODAY)
    assert report.landing_days == [old.isoformat()]
    assert sorted(b.name for b in client.list_blobs(gcs_bucket)) == sorted(names[2:])


def test_a_gs_warehouse_loses_its_expired_stored_days_through_the_job(landing_env, gcs_bucket, monkeypatch):
    from beop_assets.model.warehouse_store import Store, push_day, stored_days

    zone = landing_env
    monkeypatch.setenv("BEOP_RETENTION_DAYS", "30")
    expired, kept = days_back(40), days_back(30, 1)
    _prepare(zone, expired + kept)
    client = storage.Client.create_anonymous_client()
    store = Store.parse(f"gs://{gcs_bucket}/model")
    for day in expired + kept:
        push_day(day, zone.warehouse, store, client)
    monkeypatch.setenv("BEOP_WAREHOUSE", f"gs://{gcs_bucket}/model")
    monkeypatch.setenv("BEOP_WAREHOUSE_CACHE", str(zone.warehouse))  # this machine's copy: the loaded folder

    with DagsterInstance.ephemeral() as instance:
        result = load_definitions().resolve_job_def("retention_job").execute_in_process(instance=instance)
    assert result.success
    (output,) = [e for e in result.all_events if e.event_type == DagsterEventType.STEP_OUTPUT]
    metadata = {k: v.value for k, v in output.event_specific_data.metadata.items()}
    assert metadata["stored_days_removed"] == {t: [expired[0].isoformat()] for t in warehouse.MODEL_TABLES}
    assert metadata["model_days_removed"] == {t: [expired[0].isoformat()] for t in warehouse.MODEL_TABLES}
    assert stored_days(store, client) == {t: sorted(kept) for t in warehouse.MODEL_TABLES}
