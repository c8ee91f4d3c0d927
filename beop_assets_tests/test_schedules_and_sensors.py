"""The nightly schedule and the two sensors, evaluated as the daemon evaluates them, without a daemon.

Each tick goes through `evaluate_tick` with the real `Definitions` (so partition keys and job names are
resolved and validated as in production) inside `partition_loading_context(dynamic_partitions_store=
instance)`, as the sensor daemon does; the dynamic-partition requests a tick returns are then applied
to the instance, as the daemon applies them. The instance is an ephemeral one; a day is "loaded" by
reporting a materialization of `participations` for it, and an export "delivered" by one of its asset.

The same sensors running inside the real daemon are covered by `test_e2e_dagster_daemon.py`.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from dagster import (
    AddDynamicPartitionsRequest,
    AssetMaterialization,
    DagsterInstance,
    DagsterRunStatus,
    DefaultScheduleStatus,
    DefaultSensorStatus,
    DeleteDynamicPartitionsRequest,
    build_schedule_context,
    build_sensor_context,
    partition_loading_context,
)
from dagster._core.definitions.sensor_definition import SensorExecutionData
from dagster._core.storage.dagster_run import DagsterRun

from beop_assets.definitions import defs as load_definitions
from beop_assets.defs.exports import sensors
from beop_assets.defs.exports.sensors import RANGE_END, RANGE_START
from beop_assets.defs.resources import ExportRegistry
from beop_assets.delivery import ledger
from beop_assets_tests.fixtures.definitions import definitions, range_keys, resources, schedule, sensor
from beop_assets_tests.fixtures.landing import LandingZone

TODAY = datetime.now(UTC).date()
YESTERDAY = TODAY - timedelta(days=1)


# --------------------------------------------------------------------------------------------------
# The nightly schedule
# --------------------------------------------------------------------------------------------------


def _at_0015(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, 0, 15, tzinfo=UTC)


@pytest.mark.parametrize("days_back", [0, 1, 31, 89])
def test_nightly_schedule_tick_loads_the_day_before_it(days_back: int):
    # Ticks inside the partitions' range (90 days back by default), across month ends.
    tick = _at_0015(TODAY - timedelta(days=days_back))
    data_day = (tick - timedelta(days=1)).date().isoformat()
    context = build_schedule_context(
        repository_def=load_definitions().get_repository_def(), scheduled_execution_time=tick
    )
    result = schedule("nightly_participations_schedule").evaluate_tick(context)
    assert result.skip_message is None
    assert len(result.run_requests) == 1
    request = result.run_requests[0]
    assert request.partition_key == data_day
    assert request.run_key == f"load-{data_day}"  # a tick evaluated twice never loads the day twice
    assert request.tags["beop/trigger"] == "nightly"
    assert request.tags["dagster/partition"] == data_day


def test_missed_deliveries_schedule_checks_yesterday_at_the_deadline():
    assert schedule("missed_deliveries_schedule").cron_schedule == "0 6 * * *"
    assert schedule("missed_deliveries_schedule").execution_timezone == "UTC"
    tick = datetime(TODAY.year, TODAY.month, TODAY.day, 6, 0, tzinfo=UTC)
    with build_schedule_context(
        repository_def=load_definitions().get_repository_def(), scheduled_execution_time=tick, resources=resources()
    ) as context:
        requests = schedule("missed_deliveries_schedule").evaluate_tick(context).run_requests
    # yesterday always; other days of the look-back window only with a gap (test_missed_days.py)
    assert YESTERDAY.isoformat() in [r.partition_key for r in requests]
    assert schedule("missed_deliveries_schedule").job_name == "missed_deliveries_job"
    assert schedule("retention_schedule").job_name == "retention_job"


def test_schedules_and_sensors_start_running_on_a_fresh_deployment():
    """Issue 15: the nightly schedule used to start STOPPED while the sensors ran: nothing was loaded."""
    repository = load_definitions().get_repository_def()
    assert {s.name: s.default_status for s in repository.schedule_defs} == {
        "nightly_participations_schedule": DefaultScheduleStatus.RUNNING,
        "missed_deliveries_schedule": DefaultScheduleStatus.RUNNING,
        "retention_schedule": DefaultScheduleStatus.RUNNING,
    }
    assert {s.name: s.default_status for s in repository.sensor_defs} == {
        "export_registry_sensor": DefaultSensorStatus.RUNNING,
        "deliver_loaded_days_sensor": DefaultSensorStatus.RUNNING,
        "missed_deliveries_sensor": DefaultSensorStatus.RUNNING,
        "alert_on_run_failure": DefaultSensorStatus.RUNNING,
    }


@pytest.mark.parametrize("value, expected", [("stopped", "STOPPED"), ("running", "RUNNING"), ("", "RUNNING")])
def test_beop_schedule_default_turns_the_schedules_off(value: str, expected: str):
    env = {k: v for k, v in os.environ.items() if k != "BEOP_SCHEDULE_DEFAULT"}
    if value:
        env["BEOP_SCHEDULE_DEFAULT"] = value
    code = (
        "from beop_assets.definitions import defs\n"
        "r = defs().get_repository_def()\n"
        "print(sorted({s.default_status.value for s in r.schedule_defs}), "
        "sorted({s.default_status.value for s in r.sensor_defs}))"
    )
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"['{expected}'] ['RUNNING']"


def test_nightly_schedule_runs_the_load_job_at_0015_utc():
    assert schedule("nightly_participations_schedule").job_name == "load_participations"
    assert schedule("nightly_participations_schedule").cron_schedule == "15 0 * * *"
    assert schedule("nightly_participations_schedule").execution_timezone == "UTC"


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


@pytest.fixture(autouse=True)
def own_ledger(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test's delivery ledger of its own: the delivery sensor reads each key's attempts from it."""
    monkeypatch.setenv("BEOP_WAREHOUSE", str(tmp_path / "warehouse"))


@pytest.fixture
def instance() -> Iterator[DagsterInstance]:
    with DagsterInstance.ephemeral() as instance:
        yield instance


def tick(sensor, instance: DagsterInstance, registry: Registry, cursor: str | None = None) -> SensorExecutionData:
    with (
        build_sensor_context(
            instance=instance,
            cursor=cursor,
            definitions=load_definitions(),
            resources={**resources(), "registry": registry.resource},
        ) as context,
        partition_loading_context(dynamic_partitions_store=instance),
    ):
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
# sensor("export_registry_sensor")
# --------------------------------------------------------------------------------------------------


def test_registry_sensor_adds_a_partition_per_enabled_export(instance, registry):
    registry.write([crm("acme-crm"), crm("acme-crm-off", enabled=False), global_("acme-all")])
    result = tick(sensor("export_registry_sensor"), instance, registry)
    assert not result.run_requests  # it only changes partitions
    assert requests_by_kind(result) == {
        ("Add", "specific_exports", ("acme-crm",)),
        ("Add", "global_exports", ("acme-all",)),
    }
    apply_partition_requests(instance, result)
    assert partitions(instance) == {"specific_exports": {"acme-crm"}, "global_exports": {"acme-all"}}

    again = tick(sensor("export_registry_sensor"), instance, registry, cursor=result.cursor)
    assert not again.dynamic_partitions_requests
    assert again.skip_message.startswith("registry unchanged since the last sync")
    fresh = tick(sensor("export_registry_sensor"), instance, registry)  # no cursor: compared in full
    assert not fresh.dynamic_partitions_requests
    assert fresh.skip_message == "registry and partitions already in sync"


def test_registry_sensor_of_thousands_of_exports_compares_once_per_change(instance, tmp_path, monkeypatch):
    """Issue 24: with 4,000 exports, an unchanged registry costs one cheap comparison per tick (no
    partition query, no validation), and an edit reaches the partitions at the next tick."""
    from beop_assets.exports import registry as registry_module
    from beop_assets_tests.fixtures import many_exports

    landing = tmp_path / "landing"
    many_exports.write_reference(landing, 4000)
    path = many_exports.write_registry(tmp_path / "exports.yaml", 4000)
    resource = ExportRegistry(path=str(path), landing=str(landing))
    holder = SimpleNamespace(resource=resource)
    first = tick(sensor("export_registry_sensor"), instance, holder)
    apply_partition_requests(instance, first)
    assert sum(len(p) for p in partitions(instance).values()) == 4000

    queries, validations = [], []
    real_query, real_check = instance.get_dynamic_partitions, registry_module.check_tenancy
    monkeypatch.setattr(instance, "get_dynamic_partitions", lambda name: queries.append(name) or real_query(name))
    monkeypatch.setattr(registry_module, "check_tenancy", lambda *a: validations.append(1) or real_check(*a))
    for _ in range(3):
        quiet = tick(sensor("export_registry_sensor"), instance, holder, cursor=first.cursor)
        assert quiet.skip_message.startswith("registry unchanged") and not quiet.dynamic_partitions_requests
    assert queries == [] and validations == []

    path.write_text(yaml.safe_dump({"exports": many_exports.entries(4000)[1:]}, sort_keys=False), encoding="utf-8")
    edited = tick(sensor("export_registry_sensor"), instance, holder, cursor=first.cursor)
    (request,) = edited.dynamic_partitions_requests
    assert isinstance(request, DeleteDynamicPartitionsRequest) and len(request.partition_keys) == 1


def test_registry_sensor_removes_deleted_and_disabled_exports_and_adds_new_ones(instance, registry):
    instance.add_dynamic_partitions("specific_exports", ["acme-crm", "acme-crm-2"])
    instance.add_dynamic_partitions("global_exports", ["acme-all"])
    registry.write([crm("acme-crm"), crm("acme-crm-2", enabled=False), global_("acme-all-2")])
    result = tick(sensor("export_registry_sensor"), instance, registry)
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
    result = tick(sensor("export_registry_sensor"), instance, registry)
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
    apply_partition_requests(instance, tick(sensor("export_registry_sensor"), instance, registry))
    before = partitions(instance)
    assert before == {"specific_exports": {"acme-crm"}, "global_exports": {"acme-all"}}

    if text is None:
        registry.path.unlink()
    else:
        registry.write(text)
    result = tick(sensor("export_registry_sensor"), instance, registry)
    assert not result.dynamic_partitions_requests
    assert result.skip_message.startswith("registry unreadable, partitions kept as they were: ")
    assert partitions(instance) == before

    registry.write([crm("acme-crm")])  # fixed: the sync resumes
    result = tick(sensor("export_registry_sensor"), instance, registry)
    assert requests_by_kind(result) == {("Delete", "global_exports", ("acme-all",))}


def test_registry_sensor_keeps_every_partition_when_the_reference_data_is_missing(instance, registry, landing_zone):
    registry.write([crm("acme-crm"), global_("acme-all")])
    apply_partition_requests(instance, tick(sensor("export_registry_sensor"), instance, registry))
    (landing_zone.reference_folder / "contents.ndjson").unlink()
    result = tick(sensor("export_registry_sensor"), instance, registry)
    assert not result.dynamic_partitions_requests
    assert partitions(instance) == {"specific_exports": {"acme-crm"}, "global_exports": {"acme-all"}}


# --------------------------------------------------------------------------------------------------
# sensor("deliver_loaded_days_sensor")
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


ORDER = {"deliver_specific_exports": ["acme-crm", "acme-crm-2"], "deliver_global_exports": ["acme-all"]}


def requested(result: SensorExecutionData) -> list[tuple[str, str, str]]:
    """(job, first key of the range, last key of the range): the sensor asks ranges, never single keys."""
    assert all(r.partition_key is None for r in result.run_requests or [])
    return sorted((r.job_name, r.tags[RANGE_START], r.tags[RANGE_END]) for r in result.run_requests or [])


def keys(result: SensorExecutionData) -> list[str]:
    """Every (day, export) key the tick's ranges cover (the fixture's partitions, in insertion order)."""
    return sorted(k for job, start, end in requested(result) for k in range_keys(start, end, ORDER[job]))


def every_export(*days: date) -> list[str]:
    return sorted(f"{d}|{e}" for d in days for e in ("acme-crm", "acme-crm-2", "acme-all"))


def test_delivery_sensor_requests_one_run_per_scheduled_export_of_the_loaded_day(instance, scheduled):
    deliver(instance, "crm_export_file", YESTERDAY, "acme-crm-2")  # already delivered for that day: skipped
    deliver(instance, "crm_export_file", YESTERDAY - timedelta(days=1), "acme-crm")  # another day: no matter
    load(instance, YESTERDAY)

    result = tick(sensor("deliver_loaded_days_sensor"), instance, scheduled)
    assert result.skip_message is None
    assert requested(result) == [
        ("deliver_global_exports", f"{YESTERDAY}|acme-all", f"{YESTERDAY}|acme-all"),
        ("deliver_specific_exports", f"{YESTERDAY}|acme-crm", f"{YESTERDAY}|acme-crm"),
    ]
    for request in result.run_requests:
        assert request.tags["beop/trigger"] == "day-loaded" and request.tags["beop/attempt"] == "1"

    # Delivered since: the next tick requests nothing.
    deliver(instance, "crm_export_file", YESTERDAY, "acme-crm")
    deliver(instance, "global_export_file", YESTERDAY, "acme-all")
    again = tick(sensor("deliver_loaded_days_sensor"), instance, scheduled, cursor=result.cursor)
    assert not again.run_requests
    assert again.skip_message.startswith(f"every scheduled export of {YESTERDAY} is already delivered")


def test_first_tick_delivers_every_day_loaded_before_the_sensor_ever_ran(instance, scheduled):
    """Issue 15: a backfill of loads on a fresh instance, then the sensor's FIRST tick (no cursor): every
    loaded day is requested, not only the latest one."""
    days = [YESTERDAY - timedelta(days=n) for n in (2, 1, 0)]
    for day in (days[1], days[2], days[0]):  # loads finish in any order
        load(instance, day)
    first = tick(sensor("deliver_loaded_days_sensor"), instance, scheduled, cursor=None)
    assert keys(first) == every_export(*days)
    assert len({r.run_key for r in first.run_requests}) == len(first.run_requests) == 6  # (day, mode) ranges


def test_delivery_sensor_looks_back_seven_days_by_default_and_as_configured(instance, scheduled, monkeypatch):
    old, recent = TODAY - timedelta(days=8), TODAY - timedelta(days=7)
    load(instance, old)
    load(instance, recent)
    assert keys(tick(sensor("deliver_loaded_days_sensor"), instance, scheduled)) == every_export(recent)

    monkeypatch.setenv("BEOP_DELIVERY_LOOKBACK_DAYS", "8")
    assert keys(tick(sensor("deliver_loaded_days_sensor"), instance, scheduled)) == every_export(old, recent)

    monkeypatch.setenv("BEOP_DELIVERY_LOOKBACK_DAYS", "2")
    result = tick(sensor("deliver_loaded_days_sensor"), instance, scheduled)
    assert not result.run_requests
    assert result.skip_message == "no day loaded in the last 2 days"


def test_runs_hold_at_most_the_configured_batch_of_exports(instance, scheduled, monkeypatch):
    load(instance, YESTERDAY)
    both = (f"{YESTERDAY}|acme-crm", f"{YESTERDAY}|acme-crm-2")
    assert ("deliver_specific_exports", *both) in requested(
        tick(sensor("deliver_loaded_days_sensor"), instance, scheduled)
    )

    # A deployment with many run workers spreads a small night over them: one export per run here.
    monkeypatch.setenv("BEOP_DELIVERY_BATCH_SIZE", "1")
    result = tick(sensor("deliver_loaded_days_sensor"), instance, scheduled)
    assert requested(result) == [
        ("deliver_global_exports", f"{YESTERDAY}|acme-all", f"{YESTERDAY}|acme-all"),
        ("deliver_specific_exports", both[0], both[0]),
        ("deliver_specific_exports", both[1], both[1]),
    ]
    # The UI's backfills are cut the same way.
    policy = definitions().get_assets_def("crm_export_file").backfill_policy
    assert policy is not None and policy.max_partitions_per_run == 1


def _queue(instance: DagsterInstance, result: SensorExecutionData) -> None:
    """The tick's runs, created and not started yet (what the daemon does with its run requests)."""
    for n, request in enumerate(result.run_requests or []):
        run_id = f"{len(instance.get_runs()):08d}-0000-4000-8000-{n:012d}"
        instance.add_run(
            DagsterRun(job_name=request.job_name, run_id=run_id, status=DagsterRunStatus.NOT_STARTED, tags=request.tags)
        )


def test_a_tick_asks_at_most_its_budget_of_keys_and_the_next_ticks_ask_the_rest_oldest_day_first(
    instance, scheduled, monkeypatch
):
    """Issue 24: Dagster writes a few rows per key when it creates a tick's runs, so a night of 10,000
    exports asked at once made a tick of a minute. Capped, each tick asks a bounded share; the ones it asked
    are in flight on the next tick, which asks the rest; no key is asked twice, none forgotten."""
    monkeypatch.setenv("BEOP_DELIVERY_BATCH_SIZE", "1")
    monkeypatch.setenv("BEOP_DELIVERY_KEYS_PER_TICK", "2")
    older, newer = YESTERDAY - timedelta(days=1), YESTERDAY
    load(instance, newer)
    load(instance, older)
    asked: list[list[str]] = []
    for _ in range(5):
        result = tick(sensor("deliver_loaded_days_sensor"), instance, scheduled)
        if not result.run_requests:
            break
        asked.append(keys(result))
        _queue(instance, result)
    assert [len(a) for a in asked] == [2, 2, 2]
    assert sorted(k for a in asked for k in a) == every_export(older, newer)
    assert all(k.startswith(str(older)) for k in asked[0]) and all(k.startswith(str(newer)) for k in asked[-1])
    assert result.skip_message.startswith("every scheduled export of")

    # Whole ranges: a range larger than the budget is still asked, alone.
    monkeypatch.setenv("BEOP_DELIVERY_BATCH_SIZE", "250")
    monkeypatch.setenv("BEOP_DELIVERY_KEYS_PER_TICK", "1")
    for run in instance.get_runs():
        instance.delete_run(run.run_id)
    assert len(tick(sensor("deliver_loaded_days_sensor"), instance, scheduled).run_requests) == 1


def test_delivery_sensor_never_asks_again_for_a_delivered_or_running_delivery(instance, scheduled):
    load(instance, YESTERDAY)
    for export_id in ("acme-crm",):
        deliver(instance, "crm_export_file", YESTERDAY, export_id)
    # acme-crm-2 is being delivered right now (a backfill's run, say): not requested twice.
    instance.add_run(
        DagsterRun(
            job_name="deliver_specific_exports",
            run_id="0" * 8 + "-0000-4000-8000-" + "0" * 12,
            status=DagsterRunStatus.STARTED,
            tags={"dagster/partition": f"{YESTERDAY}|acme-crm-2"},
        )
    )
    assert keys(tick(sensor("deliver_loaded_days_sensor"), instance, scheduled)) == [f"{YESTERDAY}|acme-all"]


def test_delivery_sensor_skips_a_reloaded_day_whose_exports_are_all_delivered(instance, scheduled):
    for export_id in ("acme-crm", "acme-crm-2"):
        deliver(instance, "crm_export_file", YESTERDAY, export_id)
    deliver(instance, "global_export_file", YESTERDAY, "acme-all")
    load(instance, YESTERDAY)
    result = tick(sensor("deliver_loaded_days_sensor"), instance, scheduled)
    assert not result.run_requests
    assert result.skip_message.startswith(f"every scheduled export of {YESTERDAY} is already delivered")


def _fail(export_id: str, error: str) -> None:
    """A failed attempt of (YESTERDAY, export_id) in the delivery ledger, as a delivery run records it."""
    where = resources()["warehouse"].ledger()
    row = ledger.start(export_id, "specific", YESTERDAY, "f.csv", 1, 1, "x", "sftp://h/d", "run", root=where)
    ledger.finish(row, error=error, attempts=1, root=where)


def test_a_failed_delivery_is_asked_again_on_the_retry_schedule(instance, scheduled, monkeypatch):
    start = datetime.now(UTC)
    clock = {"now": start}
    monkeypatch.setattr(sensors, "now", lambda: clock["now"])
    load(instance, YESTERDAY)
    first = tick(sensor("deliver_loaded_days_sensor"), instance, scheduled)
    assert keys(first) == every_export(YESTERDAY)
    # acme-crm and acme-all were delivered; acme-crm-2 failed (its server refused the connection).
    deliver(instance, "crm_export_file", YESTERDAY, "acme-crm")
    deliver(instance, "global_export_file", YESTERDAY, "acme-all")
    _fail("acme-crm-2", "TransientDeliveryError: export 'acme-crm-2': connect: connection refused")
    waiting = tick(sensor("deliver_loaded_days_sensor"), instance, scheduled)
    assert not waiting.run_requests
    assert (
        f"{YESTERDAY}|acme-crm-2, attempt 2 at" in waiting.skip_message and "connection refused" in waiting.skip_message
    )

    clock["now"] = start + timedelta(minutes=5, seconds=5)
    (retry,) = tick(sensor("deliver_loaded_days_sensor"), instance, scheduled).run_requests
    assert keys(SimpleNamespace(run_requests=[retry])) == [f"{YESTERDAY}|acme-crm-2"]
    assert (retry.tags["beop/attempt"], retry.tags["beop/trigger"]) == ("2", "retry")
    assert retry.run_key not in {r.run_key for r in first.run_requests}  # a new key: Dagster launches it
    assert "beop/announce" not in retry.tags


def test_a_permanent_failure_is_retried_every_three_hours_and_not_announced_again(
    instance, scheduled, monkeypatch, tmp_path
):
    start = datetime.now(UTC)
    clock = {"now": start + timedelta(hours=1)}
    monkeypatch.setattr(sensors, "now", lambda: clock["now"])
    load(instance, YESTERDAY)
    deliver(instance, "crm_export_file", YESTERDAY, "acme-crm")
    deliver(instance, "global_export_file", YESTERDAY, "acme-all")
    _fail("acme-crm-2", "PermanentDeliveryError: export 'acme-crm-2': auth: the server refused the key")
    assert not tick(sensor("deliver_loaded_days_sensor"), instance, scheduled).run_requests
    clock["now"] = start + timedelta(hours=3, minutes=1)
    (retry,) = tick(sensor("deliver_loaded_days_sensor"), instance, scheduled).run_requests
    assert retry.tags["beop/announce"] == "false" and retry.tags["beop/attempt"] == "2"


def test_delivery_sensor_ignores_a_materialization_without_a_partition(instance, scheduled):
    load(instance, None)
    result = tick(sensor("deliver_loaded_days_sensor"), instance, scheduled)
    assert not result.run_requests
    assert result.skip_message == "no day loaded in the last 7 days"


def test_delivery_sensor_requests_nothing_and_says_why_while_the_registry_is_unreadable(instance, scheduled):
    load(instance, YESTERDAY)
    scheduled.write("exports: [unterminated\n")
    result = tick(sensor("deliver_loaded_days_sensor"), instance, scheduled)
    assert not result.run_requests
    assert result.skip_message.startswith("registry unreadable, no delivery requested: ")


def test_the_missed_day_deadline_is_a_setting():
    env = {**os.environ, "BEOP_MISSED_DAY_DEADLINE": "07:30"}
    code = (
        "from beop_assets.definitions import defs; "
        "print(defs().get_repository_def().get_schedule_def('missed_deliveries_schedule').cron_schedule)"
    )
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "30 7 * * *", done.stderr
    # An unusable deadline does not stop the code location (every other schedule and sensor goes on): the
    # schedule keeps the default time, and its run fails with the setting's error (test_missed_days.py).
    bad = subprocess.run(
        [sys.executable, "-c", code], env={**env, "BEOP_MISSED_DAY_DEADLINE": "6h"}, capture_output=True, text=True
    )
    assert bad.returncode == 0 and bad.stdout.strip() == "0 6 * * *", bad.stderr
