"""`BEOP_WAREHOUSE=gs://bucket/prefix` through the product's own jobs: the day loaded on one machine
is stored in the bucket before the load is reported, an export runs on a machine that never loaded
it and delivers the same rows, and a load on a fresh machine rebuilds its DuckDB file over every
stored day. "Machines" are cache folders (`BEOP_WAREHOUSE_CACHE`): nothing else is shared but GCS.
On Celery workers in separate folders: test_topology_celery.py."""

from __future__ import annotations

import time
from datetime import date

import duckdb
from dagster import AssetKey, MultiPartitionKey
from google.cloud import storage

from beop_assets.daily_run import run_day
from beop_assets.definitions import defs as load_definitions
from beop_assets.model.warehouse import MODEL_TABLES

DAY = date(2026, 11, 25)
NEXT_DAY = date(2026, 11, 26)


def _csv_bodies(folder):
    return sorted(p.read_bytes() for p in folder.iterdir() if p.suffix == ".csv")


def test_exports_read_the_stored_day_on_a_machine_that_did_not_load_it(product, gcs_emulator, monkeypatch, tmp_path):
    bucket = gcs_emulator.create_bucket(f"warehouse-{time.time_ns()}", exist_ok=False).name
    monkeypatch.setenv("BEOP_WAREHOUSE", f"gs://{bucket}/model")
    monkeypatch.setenv("BEOP_WAREHOUSE_CACHE", str(tmp_path / "machine-a"))
    monkeypatch.setenv("BEOP_DELIVERY_WORKERS", "1")
    product.landing.write_events(DAY, [product.landing.event("p_1"), product.landing.event("p_2", content_id="c_2")])
    product.write_registry([product.crm("acme-crm"), product.global_("acme-all")])

    outcomes = run_day(DAY, dagster_instance=product.instance)
    assert {o.status for o in outcomes} == {"delivered"}, outcomes
    client = storage.Client.create_anonymous_client()
    assert sorted(b.name for b in client.list_blobs(bucket)) == sorted(
        f"model/{t}/date={DAY}/data.parquet" for t in MODEL_TABLES
    )
    assert not product.landing.warehouse.exists()  # the local warehouse setting is replaced, not used
    (load,) = product.instance.fetch_materializations(AssetKey("participations"), limit=1).records
    parquet = load.asset_materialization.metadata["parquet"].value
    assert parquet == f"gs://{bucket}/model/participations/date={DAY}/data.parquet"

    # Another machine: an empty folder of its own, and only the export's run.
    machine_b = tmp_path / "machine-b"
    monkeypatch.setenv("BEOP_WAREHOUSE_CACHE", str(machine_b))
    result = (
        load_definitions()
        .resolve_job_def("deliver_specific_exports")
        .execute_in_process(
            partition_key=MultiPartitionKey({"date": DAY.isoformat(), "export": "acme-crm"}), instance=product.instance
        )
    )
    assert result.success
    assert (machine_b / "participations" / f"date={DAY}" / "data.parquet").exists()
    assert not (machine_b / "optins").exists()  # an export reads the participations only: nothing else pulled
    assert not (machine_b / "beop.duckdb").exists()  # an export never builds the DuckDB file
    first, second = _csv_bodies(product.upload_dir)
    assert first == second  # the same file, delivered twice (once per machine)
    assert first.count(b"\r\n") == 2 and b'"c_1","Quiz"' in first  # the header and the day's c_1 row

    # A load on a third machine: its DuckDB file serves the stored day it did not load, and its own.
    machine_c = tmp_path / "machine-c"
    monkeypatch.setenv("BEOP_WAREHOUSE_CACHE", str(machine_c))
    product.landing.write_events(NEXT_DAY, [product.landing.event("p_3", NEXT_DAY)])
    load = (
        load_definitions()
        .resolve_job_def("load_participations")
        .execute_in_process(partition_key=NEXT_DAY.isoformat(), instance=product.instance)
    )
    assert load.success
    with duckdb.connect(str(machine_c / "beop.duckdb"), read_only=True) as con:
        served = con.sql("SELECT participation_id FROM participations ORDER BY 1").fetchall()
    assert [r[0] for r in served] == ["p_1", "p_2", "p_3"]
    assert len(list(client.list_blobs(bucket))) == 2 * len(MODEL_TABLES)


def test_a_warehouse_bucket_this_machine_may_not_write_fails_the_load_before_it_is_reported(
    product, gcs_proxy, monkeypatch, tmp_path
):
    bucket = gcs_proxy.emulator.client().create_bucket(f"warehouse-{time.time_ns()}").name
    monkeypatch.setenv("BEOP_WAREHOUSE", f"gs://{bucket}/model")
    monkeypatch.setenv("BEOP_WAREHOUSE_CACHE", str(tmp_path / "machine-a"))
    gcs_proxy.grant("roles/storage.objectViewer")  # may read the bucket, not write it
    product.landing.write_events(DAY, [product.landing.event("p_1")])

    load = (
        load_definitions()
        .resolve_job_def("load_participations")
        .execute_in_process(partition_key=DAY.isoformat(), instance=product.instance, raise_on_error=False)
    )
    assert not load.success
    (failure,) = [e for e in load.all_events if e.is_step_failure]
    error, messages = failure.step_failure_data.error, []
    while error is not None:  # Dagster's step error, then the product's own
        messages.append(error.message)
        error = error.cause
    message = "\n".join(messages)
    assert f"gs://{bucket}/model/" in message and "storage.objects.create" in message, message
    assert "roles/storage.objectAdmin" in message and "BEOP_WAREHOUSE" in message, message
    # Not reported loaded: the delivery sensor will not start an export that would find no stored day.
    assert product.instance.fetch_materializations(AssetKey("participations"), limit=1).records == []
    assert list(gcs_proxy.emulator.client().list_blobs(bucket)) == []
