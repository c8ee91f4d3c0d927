"""Unattended nights, in-process with the real instance and the real servers (issue 15).

A backfill of loads over three days on a fresh instance, then the delivery sensor's first tick
(no cursor) evaluated against that instance, and every run it requests executed as the daemon would
launch it: three deliveries per export, to the real OpenSSH sshd and the GCS emulator; a second tick
requests nothing. The same sensor inside the real daemon: test_e2e_dagster_daemon.py.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from dagster import AddDynamicPartitionsRequest, build_sensor_context, partition_loading_context

from beop_assets.definitions import defs as load_definitions
from beop_assets.delivery import ledger
from beop_assets_tests.fixtures.definitions import resources, sensor

YESTERDAY = datetime.now(UTC).date() - timedelta(days=1)
DAYS = [YESTERDAY - timedelta(days=n) for n in (2, 1, 0)]


def tick(name: str, instance):
    with (
        build_sensor_context(instance=instance, definitions=load_definitions(), resources=resources()) as context,
        partition_loading_context(dynamic_partitions_store=instance),
    ):
        return sensor(name).evaluate_tick(context)


def register_exports(instance) -> None:
    result = tick("export_registry_sensor", instance)
    for request in result.dynamic_partitions_requests or []:
        assert isinstance(request, AddDynamicPartitionsRequest)
        instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))


def load_days(instance, days: list[date]) -> None:
    for day in days:
        result = (
            load_definitions()
            .resolve_job_def("load_participations")
            .execute_in_process(partition_key=day.isoformat(), instance=instance, tags={"beop/trigger": "backfill"})
        )
        assert result.success


def test_first_tick_after_a_three_day_backfill_delivers_three_days_per_export(product, gcs_emulator):
    for n, day in enumerate(DAYS):
        product.landing.write_events(day, [product.landing.event(f"p_{n}_{i}", day=day) for i in range(n + 1)])
    product.write_registry([product.crm("acme-crm"), product.global_("acme-all")])
    instance = product.instance
    register_exports(instance)
    load_days(instance, DAYS)

    first = tick("deliver_loaded_days_sensor", instance)
    assert sorted(r.partition_key for r in first.run_requests) == sorted(
        f"{day}|{export_id}" for day in DAYS for export_id in ("acme-crm", "acme-all")
    )
    for request in first.run_requests:  # what the daemon does with each request
        run = (
            load_definitions()
            .resolve_job_def(request.job_name)
            .execute_in_process(partition_key=request.partition_key, instance=instance, tags=request.tags)
        )
        assert run.success, request.partition_key
        (materialization,) = [
            m for node in ("crm_export_file", "global_export_file") for m in run.asset_materializations_for_node(node)
        ]
        metadata = materialization.metadata
        # What the UI shows: the row count and the file's columns, next to the delivery's receipt.
        day = date.fromisoformat(request.partition_key.split("|")[0])
        assert metadata["dagster/row_count"].value == DAYS.index(day) + 1
        columns = [c.name for c in metadata["dagster/column_schema"].schema.columns]
        if request.partition_key.endswith("acme-crm"):
            assert columns[:3] == ["email", "phone", "firstname"] and len(columns) == 15
        else:
            assert columns[0] == "questions" and columns[-1] == "content_version"
        assert "file_name" in metadata and "sha256" in metadata

    delivered = ledger.history(root=product.landing.warehouse, status="delivered")
    assert sorted((d.export_id, d.data_day) for d in delivered) == sorted(
        (export_id, day.isoformat()) for day in DAYS for export_id in ("acme-crm", "acme-all")
    )
    assert len(list(product.upload_dir.iterdir())) == 3
    stamps = {(day + timedelta(days=1)).strftime("%Y%m%d") for day in DAYS}
    assert {p.name[:8] for p in product.upload_dir.iterdir()} == stamps
    blobs = [b.name for b in gcs_emulator.client().list_blobs(product.bucket)]
    assert sorted(blobs) == sorted(f"{(day + timedelta(days=1)).isoformat()}_acme.ndjson.gz" for day in DAYS)

    second = tick("deliver_loaded_days_sensor", instance)
    assert not second.run_requests
    assert "already delivered" in second.skip_message
    assert len(list(product.upload_dir.iterdir())) == 3  # never sent twice
