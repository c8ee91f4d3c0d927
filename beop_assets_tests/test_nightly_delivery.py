"""Unattended nights, in-process with the real instance and the real servers (issue 15).

A backfill of loads over three days on a fresh instance, then the delivery sensor's first tick
(no cursor) evaluated against that instance, and every run it requests executed as the daemon would
launch it: one run per (day, mode) holding a range of exports, three deliveries per export, to the real
OpenSSH sshd and the GCS emulator; a second tick requests nothing. Then the night heals itself (issue
19): a customer's sshd down during the night, restarted, and the file delivered by the sensor's later
retry alone, exactly once, the ticks driven by a clock of the test's own. The same sensor inside the
real daemon: test_e2e_dagster_daemon.py.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from dagster import (
    AddDynamicPartitionsRequest,
    AssetKey,
    AssetRecordsFilter,
    build_sensor_context,
    partition_loading_context,
)

from beop_assets.definitions import defs as load_definitions
from beop_assets.defs.exports import sensors
from beop_assets.defs.exports.sensors import RANGE_END, RANGE_START
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


def execute(request, instance):
    """A run request executed as the daemon launches it (with the sensor's tag, as the daemon adds it)."""
    return (
        load_definitions()
        .resolve_job_def(request.job_name)
        .execute_in_process(
            instance=instance,
            tags={**request.tags, "dagster/sensor_name": "deliver_loaded_days_sensor"},
            raise_on_error=False,
        )
    )


def test_first_tick_after_a_three_day_backfill_delivers_three_days_per_export(product, gcs_emulator):
    for n, day in enumerate(DAYS):
        product.landing.write_events(day, [product.landing.event(f"p_{n}_{i}", day=day) for i in range(n + 1)])
    product.write_registry([product.crm("acme-crm"), product.global_("acme-all")])
    instance = product.instance
    register_exports(instance)
    load_days(instance, DAYS)

    first = tick("deliver_loaded_days_sensor", instance)
    # One run per (day, mode), a range of exports (here of one export each), never a single partition key.
    assert all(r.partition_key is None for r in first.run_requests)
    assert sorted((r.tags[RANGE_START], r.tags[RANGE_END]) for r in first.run_requests) == sorted(
        (f"{day}|{export_id}", f"{day}|{export_id}") for day in DAYS for export_id in ("acme-crm", "acme-all")
    )
    for request in first.run_requests:  # what the daemon does with each request
        run = execute(request, instance)
        assert run.success, request.tags
        (materialization,) = [
            m for node in ("crm_export_file", "global_export_file") for m in run.asset_materializations_for_node(node)
        ]
        metadata = materialization.metadata
        # What the UI shows: the row count and the file's columns, next to the delivery's receipt.
        key = request.tags[RANGE_START]
        assert materialization.partition == key
        day = date.fromisoformat(key.split("|")[0])
        assert metadata["dagster/row_count"].value == DAYS.index(day) + 1
        columns = [c.name for c in metadata["dagster/column_schema"].schema.columns]
        if key.endswith("acme-crm"):
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


def test_a_server_down_at_night_gets_its_file_from_the_sensors_later_retry_alone_exactly_once(
    product, private_sshd, monkeypatch
):
    monkeypatch.setenv("BEOP_DELIVERY_ATTEMPTS", "1")  # no in-run retries: the night's schedule is the subject
    day = YESTERDAY
    product.landing.write_events(day, [product.landing.event(f"p_{i}", day=day) for i in range(2)])
    down = product.sftp("key_file", server=private_sshd).model_dump(exclude_none=True, exclude_defaults=True)
    product.write_registry(
        [
            product.crm("up-crm"),
            {
                "id": "down-crm",
                "account_id": "a_1",
                "mode": "specific",
                "type": "crm-participation",
                "name": "Down",
                "campaigns": ["cmp_1"],
                "sftp": down,
            },
        ]
    )
    instance = product.instance
    register_exports(instance)
    load_days(instance, [day])
    start = datetime.now(UTC)
    clock = {"now": start}
    monkeypatch.setattr(sensors, "now", lambda: clock["now"])

    private_sshd.stop()  # the customer's server goes down before the night
    night = tick("deliver_loaded_days_sensor", instance)
    assert [(r.tags[RANGE_START], r.tags[RANGE_END]) for r in night.run_requests] == [
        (f"{day}|down-crm", f"{day}|up-crm")
    ]  # one range (the partitions' insertion order): both exports in one run
    assert not execute(night.run_requests[0], instance).success  # down-crm failed, up-crm delivered
    assert len(list(product.upload_dir.iterdir())) == 1

    clock["now"] = start + timedelta(minutes=2)
    waiting = tick("deliver_loaded_days_sensor", instance)
    assert not waiting.run_requests
    assert f"{day}|down-crm, attempt 2 at" in waiting.skip_message  # the next attempt's time, said

    private_sshd.start()  # back two minutes later
    clock["now"] = start + timedelta(minutes=6)
    retry = tick("deliver_loaded_days_sensor", instance)
    (request,) = retry.run_requests
    assert (request.tags[RANGE_START], request.tags[RANGE_END]) == (f"{day}|down-crm", f"{day}|down-crm")
    assert request.tags["beop/attempt"] == "2" and request.tags["beop/trigger"] == "retry"
    assert "beop/announce" not in request.tags  # a transient failure: its retries are announced as usual
    assert execute(request, instance).success

    clock["now"] = start + timedelta(hours=2)
    assert not tick("deliver_loaded_days_sensor", instance).run_requests
    delivered = ledger.history(day=day, root=product.landing.warehouse, status="delivered")
    assert sorted(d.export_id for d in delivered) == ["down-crm", "up-crm"]  # each exactly once
    (remote,) = [p for p in private_sshd.folder.rglob("*.csv")]
    assert remote.name.startswith((day + timedelta(days=1)).strftime("%Y%m%d"))
    (record,) = instance.fetch_materializations(
        AssetRecordsFilter(asset_key=AssetKey("crm_export_file"), asset_partitions=[f"{day}|down-crm"]), limit=5
    ).records
    assert record.event_log_entry.asset_materialization.metadata["attempt"].value == 2
