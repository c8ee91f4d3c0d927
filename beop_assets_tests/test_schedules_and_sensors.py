"""The nightly schedule and the two sensors, evaluated as the daemon evaluates them, without a daemon.

Each tick goes through `evaluate_tick` with the real `Definitions` (so partition keys and job names are
resolved and validated as in production) inside `partition_loading_context(dynamic_partitions_store=
instance)`, as the sensor daemon does; the dynamic-partition requests a tick returns are then applied
to the instance, as the daemon applies them. The instance is an ephemeral one; a day is "loaded" by
reporting a materialization of `participations` for it, and an export "delivered" by one of its asset.

The same sensors running inside the real daemon are covered by `test_e2e_dagster_daemon.py`.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from dagster import (
    AddDynamicPartitionsRequest,
    AssetMaterialization,
    DagsterInstance,
    DeleteDynamicPartitionsRequest,
    build_schedule_context,
    build_sensor_context,
    partition_loading_context,
)
from dagster._core.definitions.sensor_definition import SensorExecutionData

from beop_assets.definitions import defs
from beop_assets.resources import ExportRegistry
from beop_assets.schedules import nightly_participations_schedule
from beop_assets.sensors import deliver_loaded_days_sensor, export_registry_sensor
from beop_assets_tests.fixtures.landing import LandingZone

DAY = date(2026, 11, 25)


# --------------------------------------------------------------------------------------------------
# The nightly schedule
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "tick, data_day",
    [
        (datetime(2026, 11, 26, 0, 15, tzinfo=UTC), "2026-11-25"),
        (datetime(2026, 1, 1, 0, 15, tzinfo=UTC), "2025-12-31"),
        (datetime(2024, 3, 1, 0, 15, tzinfo=UTC), "2024-02-29"),
    ],
)
def test_nightly_schedule_tick_loads_the_day_before_it(tick: datetime, data_day: str):
    context = build_schedule_context(repository_def=defs.get_repository_def(), scheduled_execution_time=tick)
    result = nightly_participations_schedule.evaluate_tick(context)
    assert result.skip_message is None
    assert len(result.run_requests) == 1
    request = result.run_requests[0]
    assert request.partition_key == data_day
    assert request.run_key == f"load-{data_day}"  # a tick evaluated twice never loads the day twice
    assert request.tags["beop/trigger"] == "nightly"
    assert request.tags["dagster/partition"] == data_day


def test_nightly_schedule_runs_the_load_job_at_0015_utc():
    assert nightly_participations_schedule.job_name == "load_participations"
    assert nightly_participations_schedule.cron_schedule == "15 0 * * *"
    assert nightly_participations_schedule.execution_timezone == "UTC"


# --------------------------------------------------------------------------------------------------
# Helpers: a registry file against the landing zone's reference data, ticks as the daemon runs them
# --------------------------------------------------------------------------------------------------

SFTP = {
    "host": "sftp.example.com",
    "username": "beop",
    "directory": "/incoming",
    "password_env": "UNUSED_PASSWORD",
    "known_hosts_file": "/etc/beop/known_hosts",
}
GCS = {"bucket": "acme-beop", "credentials_file": "/etc/beop/acme-key.json"}


def crm(export_id: str, **fields: Any) -> dict:
    return {
        "id": export_id,
        "account_id": "a_1",
        "mode": "specific",
        "type": "crm-participation",
        "name": export_id.title(),
        "campaigns": ["cmp_1"],
        "sftp": SFTP,
        **fields,
    }


def global_(export_id: str, **fields: Any) -> dict:
    return {"id": export_id, "account_id": "a_1", "mode": "global", "gcs": GCS, **fields}


class Registry:
    def __init__(self, zone: LandingZone, path: Path):
        self.path = path
        self.resource = ExportRegistry(path=str(path), landing=str(zone.root))

    def write(self, exports: list[dict] | str) -> None:
        self.path.write_text(
            exports if isinstance(exports, str) else yaml.safe_dump({"exports": exports}), encoding="utf-8"
        )


@pytest.fixture
def registry(landing_zone: LandingZone, tmp_path: Path) -> Registry:
    return Registry(landing_zone, tmp_path / "exports.yaml")


@pytest.fixture
def instance() -> Iterator[DagsterInstance]:
    with DagsterInstance.ephemeral() as instance:
        yield instance


def tick(sensor, instance: DagsterInstance, registry: Registry, cursor: str | None = None) -> SensorExecutionData:
    context = build_sensor_context(
        instance=instance, cursor=cursor, definitions=defs, resources={"registry": registry.resource}
    )
    with partition_loading_context(dynamic_partitions_store=instance):
        return sensor.evaluate_tick(context)


def apply_partition_requests(instance: DagsterInstance, result: SensorExecutionData) -> None:
    """What the sensor daemon does with a tick's dynamic-partition requests."""
    for request in result.dynamic_partitions_requests or []:
        if isinstance(request, AddDynamicPartitionsRequest):
            instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
        else:
            assert isinstance(request, DeleteDynamicPartitionsRequest)
            for key in request.partition_keys:
                instance.delete_dynamic_partition(request.partitions_def_name, key)


def partitions(instance: DagsterInstance) -> dict[str, set[str]]:
    return {name: set(instance.get_dynamic_partitions(name)) for name in ("specific_exports", "global_exports")}


def requests_by_kind(result: SensorExecutionData) -> set[tuple[str, str, tuple[str, ...]]]:
    return {
        (type(r).__name__.removesuffix("DynamicPartitionsRequest"), r.partitions_def_name, tuple(r.partition_keys))
        for r in result.dynamic_partitions_requests or []
    }


def load(instance: DagsterInstance, day: date | None) -> None:
    """A materialization of `participations` for `day`, as a load run (or the CLI) records it."""
    instance.report_runless_asset_event(
        AssetMaterialization("participations", partition=day.isoformat() if day else None)
    )


def deliver(instance: DagsterInstance, asset: str, day: date, export_id: str) -> None:
    instance.report_runless_asset_event(AssetMaterialization(asset, partition=f"{day.isoformat()}|{export_id}"))


# --------------------------------------------------------------------------------------------------
# export_registry_sensor
# --------------------------------------------------------------------------------------------------


def test_registry_sensor_adds_a_partition_per_enabled_export(instance, registry):
    registry.write([crm("acme-crm"), crm("acme-crm-off", enabled=False), global_("acme-all")])
    result = tick(export_registry_sensor, instance, registry)
    assert not result.run_requests  # it only changes partitions
    assert requests_by_kind(result) == {
        ("Add", "specific_exports", ("acme-crm",)),
        ("Add", "global_exports", ("acme-all",)),
    }
    apply_partition_requests(instance, result)
    assert partitions(instance) == {"specific_exports": {"acme-crm"}, "global_exports": {"acme-all"}}

    again = tick(export_registry_sensor, instance, registry)
    assert not again.dynamic_partitions_requests
    assert again.skip_message == "registry and partitions already in sync"


def test_registry_sensor_removes_deleted_and_disabled_exports_and_adds_new_ones(instance, registry):
    instance.add_dynamic_partitions("specific_exports", ["acme-crm", "acme-crm-2"])
    instance.add_dynamic_partitions("global_exports", ["acme-all"])
    registry.write([crm("acme-crm"), crm("acme-crm-2", enabled=False), global_("acme-all-2")])
    result = tick(export_registry_sensor, instance, registry)
    assert requests_by_kind(result) == {
        ("Delete", "specific_exports", ("acme-crm-2",)),
        ("Add", "global_exports", ("acme-all-2",)),
        ("Delete", "global_exports", ("acme-all",)),
    }
    apply_partition_requests(instance, result)
    assert partitions(instance) == {"specific_exports": {"acme-crm"}, "global_exports": {"acme-all-2"}}


def test_registry_sensor_keeps_an_invalid_enabled_export_so_that_its_runs_fail_visibly(instance, registry):
    # cmp_2 belongs to a_2: a tenancy fault. The export stays scheduled and fails with its fault.
    registry.write([crm("acme-crm"), crm("acme-bad", campaigns=["cmp_2"])])
    result = tick(export_registry_sensor, instance, registry)
    assert requests_by_kind(result) == {("Add", "specific_exports", ("acme-bad", "acme-crm"))}


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("exports:\n  - id: acme-crm\n    mode: [specific\n", id="malformed-yaml"),
        pytest.param("- id: acme-crm\n", id="not-a-mapping"),
        pytest.param("exports: {id: acme-crm}\n", id="exports-not-a-list"),
        pytest.param(None, id="file-missing"),
    ],
)
def test_registry_sensor_keeps_every_partition_when_the_registry_is_unreadable(instance, registry, text):
    registry.write([crm("acme-crm"), global_("acme-all")])
    apply_partition_requests(instance, tick(export_registry_sensor, instance, registry))
    before = partitions(instance)
    assert before == {"specific_exports": {"acme-crm"}, "global_exports": {"acme-all"}}

    if text is None:
        registry.path.unlink()
    else:
        registry.write(text)
    result = tick(export_registry_sensor, instance, registry)
    assert not result.dynamic_partitions_requests
    assert result.skip_message.startswith("registry unreadable, partitions kept as they were: ")
    assert partitions(instance) == before

    registry.write([crm("acme-crm")])  # fixed: the sync resumes
    result = tick(export_registry_sensor, instance, registry)
    assert requests_by_kind(result) == {("Delete", "global_exports", ("acme-all",))}


def test_registry_sensor_keeps_every_partition_when_the_reference_data_is_missing(instance, registry, landing_zone):
    registry.write([crm("acme-crm"), global_("acme-all")])
    apply_partition_requests(instance, tick(export_registry_sensor, instance, registry))
    (landing_zone.reference_folder / "contents.ndjson").unlink()
    result = tick(export_registry_sensor, instance, registry)
    assert not result.dynamic_partitions_requests
    assert partitions(instance) == {"specific_exports": {"acme-crm"}, "global_exports": {"acme-all"}}


# --------------------------------------------------------------------------------------------------
# deliver_loaded_days_sensor
# --------------------------------------------------------------------------------------------------


@pytest.fixture
def scheduled(instance, registry) -> Registry:
    """A registry of three scheduled exports (two specific, one global), all registered as partitions,
    plus a disabled one and an enabled one the registry sensor has not registered yet."""
    registry.write(
        [crm("acme-crm"), crm("acme-crm-2"), crm("acme-off", enabled=False), crm("acme-new"), global_("acme-all")]
    )
    instance.add_dynamic_partitions("specific_exports", ["acme-crm", "acme-crm-2"])
    instance.add_dynamic_partitions("global_exports", ["acme-all"])
    return registry


def requested(result: SensorExecutionData) -> list[tuple[str, str, str]]:
    """(job, partition, run key without the load id it ends with)."""
    return sorted((r.job_name, r.partition_key, r.run_key.split("@load-")[0]) for r in result.run_requests or [])


def test_delivery_sensor_requests_one_run_per_scheduled_export_of_the_loaded_day(instance, scheduled):
    deliver(instance, "crm_export_file", DAY, "acme-crm-2")  # already delivered for that day: skipped
    deliver(instance, "crm_export_file", date(2026, 11, 24), "acme-crm")  # another day: does not count
    load(instance, DAY)

    result = tick(deliver_loaded_days_sensor, instance, scheduled)
    assert result.skip_message is None
    assert requested(result) == [
        ("deliver_global_exports", "2026-11-25|acme-all", "deliver-2026-11-25|acme-all"),
        ("deliver_specific_exports", "2026-11-25|acme-crm", "deliver-2026-11-25|acme-crm"),
    ]
    for request in result.run_requests:
        assert request.tags["beop/trigger"] == "day-loaded"
        assert request.tags["dagster/partition/date"] == "2026-11-25"

    # Nothing new since: the next tick requests nothing.
    again = tick(deliver_loaded_days_sensor, instance, scheduled, cursor=result.cursor)
    assert not again.run_requests
    assert again.skip_message.startswith("No new materialization events")


def test_delivery_sensor_skips_a_reloaded_day_whose_exports_are_all_delivered(instance, scheduled):
    for export_id in ("acme-crm", "acme-crm-2"):
        deliver(instance, "crm_export_file", DAY, export_id)
    deliver(instance, "global_export_file", DAY, "acme-all")
    load(instance, DAY)
    result = tick(deliver_loaded_days_sensor, instance, scheduled)
    assert not result.run_requests
    assert result.skip_message == "every scheduled export of 2026-11-25 is already delivered"


def test_delivery_sensor_delivers_every_day_loaded_between_two_ticks(instance, scheduled):
    # A backfill of loads finishes several days between two ticks: none of them may be missed.
    load(instance, date(2026, 11, 20))
    first = tick(deliver_loaded_days_sensor, instance, scheduled)
    assert {r.partition_key.split("|")[0] for r in first.run_requests} == {"2026-11-20"}

    for day in (date(2026, 11, 23), date(2026, 11, 21), date(2026, 11, 22)):
        load(instance, day)
    second = tick(deliver_loaded_days_sensor, instance, scheduled, cursor=first.cursor)
    assert sorted(r.partition_key for r in second.run_requests) == sorted(
        f"{day}|{export_id}"
        for day in ("2026-11-21", "2026-11-22", "2026-11-23")
        for export_id in ("acme-crm", "acme-crm-2", "acme-all")
    )
    assert len({r.run_key for r in second.run_requests}) == 9


def test_a_reloaded_day_asks_again_for_a_delivery_that_failed(instance, scheduled):
    load(instance, DAY)
    first = tick(deliver_loaded_days_sensor, instance, scheduled)
    assert len(first.run_requests) == 3
    # acme-crm and acme-all were delivered; acme-crm-2 failed (no materialization). The day is reloaded.
    deliver(instance, "crm_export_file", DAY, "acme-crm")
    deliver(instance, "global_export_file", DAY, "acme-all")
    load(instance, DAY)
    second = tick(deliver_loaded_days_sensor, instance, scheduled, cursor=first.cursor)
    (retry,) = second.run_requests
    assert retry.partition_key == "2026-11-25|acme-crm-2"
    assert retry.run_key not in {r.run_key for r in first.run_requests}  # a new key: Dagster will launch it


def test_delivery_sensor_ignores_a_materialization_without_a_partition(instance, scheduled):
    load(instance, None)
    result = tick(deliver_loaded_days_sensor, instance, scheduled)
    assert not result.run_requests
    assert result.skip_message == "materialization without a partition"
