"""The Dagster instance of the distributed topology (deploy/postgres/dagster.yaml) on a real Postgres.

A day's exports run through it, and everything the UI and the sensors rely on (runs, their status,
the event log, materializations by partition, dynamic partitions) is read back through the instance
API from a SECOND instance built from the same file in another DAGSTER_HOME, as another machine
would see it; the delivery ledger is in the same database.
"""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path

import sqlalchemy as sa
from dagster import AssetKey, DagsterEventType, DagsterInstance, DagsterRunStatus, EventRecordsFilter
from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage, PostgresScheduleStorage

from beop_assets.daily_run import run_day
from beop_assets_tests.fixtures.postgres import dagster_pg_env

DAY = date(2026, 11, 25)
DEPLOY = Path(__file__).resolve().parents[1] / "deploy"


def _instance_home(folder: Path, deployment: str) -> Path:
    folder.mkdir(parents=True)
    shutil.copy(DEPLOY / deployment / "dagster.yaml", folder / "dagster.yaml")
    return folder


def test_a_day_of_exports_is_recorded_in_postgres_and_seen_from_another_machine(
    product, postgres_url, tmp_path, monkeypatch
):
    for name, value in dagster_pg_env(postgres_url).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("BEOP_LEDGER_URL", postgres_url)
    product.landing.write_events(
        DAY, [product.landing.event("p_1", email="jane@example.com"), product.landing.event("p_2")]
    )
    product.write_registry([product.crm("acme-participations"), product.global_("acme-all")])

    with DagsterInstance.from_config(str(_instance_home(tmp_path / "machine-a", "postgres"))) as instance:
        assert isinstance(instance.run_storage, PostgresRunStorage)
        assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
        assert isinstance(instance.schedule_storage, PostgresScheduleStorage)
        outcomes = {o.export_id: o for o in run_day(DAY, dagster_instance=instance)}
    assert {o.status for o in outcomes.values()} == {"delivered"}, outcomes

    with DagsterInstance.from_config(str(_instance_home(tmp_path / "machine-b", "postgres"))) as other:
        runs = other.get_runs()
        assert len(runs) == 3  # the day's load, then one run per export
        assert {r.status for r in runs} == {DagsterRunStatus.SUCCESS}
        assert {r.job_name for r in runs} == {
            "load_participations",
            "deliver_specific_exports",
            "deliver_global_exports",
        }
        assert {o.run_id for o in outcomes.values()} <= {r.run_id for r in runs}
        assert set(other.get_dynamic_partitions("specific_exports")) == {"acme-participations"}
        assert set(other.get_dynamic_partitions("global_exports")) == {"acme-all"}

        crm = other.get_latest_materialization_event(AssetKey("crm_export_file"))
        assert crm is not None and crm.asset_materialization is not None
        assert crm.asset_materialization.partition == "2026-11-25|acme-participations"
        assert crm.asset_materialization.metadata["file_name"].value == outcomes["acme-participations"].file_name
        loaded = other.get_latest_materialization_event(AssetKey("participations"))
        assert loaded is not None and loaded.asset_materialization is not None
        assert loaded.asset_materialization.partition == "2026-11-25"

        checks = other.get_event_records(EventRecordsFilter(event_type=DagsterEventType.ASSET_CHECK_EVALUATION))
        assert checks and all(r.event_log_entry.dagster_event.event_specific_data.passed for r in checks)

    engine = sa.create_engine(postgres_url.replace("postgresql://", "postgresql+psycopg2://"))
    with engine.connect() as con:
        tables = set(sa.inspect(con).get_table_names())
        assert {"runs", "event_logs", "deliveries"} <= tables  # Dagster's and the ledger's, one database
        delivered = con.execute(sa.text("SELECT export_id, run_id FROM deliveries WHERE status = 'delivered'"))
        assert dict(tuple(row) for row in delivered) == {i: o.run_id for i, o in outcomes.items()}
    engine.dispose()
    assert not (product.landing.warehouse / "deliveries.sqlite").exists()
