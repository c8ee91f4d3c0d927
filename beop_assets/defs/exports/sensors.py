"""Sensors that keep the exports in step with the outside world.

- `export_registry_sensor` syncs the registry file into the two dynamic partition sets, so that an
  export added, disabled or removed in `exports.yaml` appears or disappears without a restart.
- `deliver_loaded_days_sensor` delivers every loaded day not yet delivered, for every scheduled
  export, within the look-back window (BEOP_DELIVERY_LOOKBACK_DAYS, 7 by default).

Why the delivery sensor scans a window instead of following new load events with a cursor: a cursor
only sees what happened after the sensor first ran, so a fresh deployment (or a sensor switched on
after a backfill of loads) would never deliver the days loaded before it. Scanning "every loaded day
of the last N days, minus what is delivered or being delivered" is right on every tick, the first one
included, and costs two event-log queries per export kind.
"""

from __future__ import annotations

import time
from datetime import UTC, date, datetime, timedelta

from dagster import (
    AddDynamicPartitionsRequest,
    AssetKey,
    AssetRecordsFilter,
    DagsterRunStatus,
    DailyPartitionsDefinition,
    DefaultSensorStatus,
    DeleteDynamicPartitionsRequest,
    RunRequest,
    RunsFilter,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    sensor,
)

from beop_assets.defs.exports.jobs import EXPORT_MODES
from beop_assets.defs.partitions import export_day_key
from beop_assets.defs.resources import DeliveryPolicy, ExportRegistry

LOADED_ASSET = AssetKey("participations")
IN_FLIGHT = [
    DagsterRunStatus.QUEUED,
    DagsterRunStatus.NOT_STARTED,
    DagsterRunStatus.STARTING,
    DagsterRunStatus.STARTED,
]
PAGE = 1000
# The registry sensor compares the partitions with the registry in full at least this often, even when
# the registry did not change.
RESYNC_S = 600


def registry_partition_requests(registry_resource: ExportRegistry, instance) -> tuple[list, list[str]]:
    """The add/delete requests that make the dynamic partitions equal to the registry's scheduled ids."""
    registry = registry_resource.load()
    if registry.unreadable:
        raise ValueError("; ".join(map(str, registry.faults)))
    requests: list[AddDynamicPartitionsRequest | DeleteDynamicPartitionsRequest] = []
    changes: list[str] = []
    for mode, spec in EXPORT_MODES.items():
        partitions = spec.partitions
        wanted = set(registry.scheduled_ids(mode))
        current = set(instance.get_dynamic_partitions(spec.partitions_name))
        if wanted - current:
            requests.append(partitions.build_add_request(sorted(wanted - current)))
            changes += [f"+{mode}:{i}" for i in sorted(wanted - current)]
        if current - wanted:
            requests.append(partitions.build_delete_request(sorted(current - wanted)))
            changes += [f"-{mode}:{i}" for i in sorted(current - wanted)]
    return requests, changes


@sensor(
    minimum_interval_seconds=15,
    default_status=DefaultSensorStatus.RUNNING,
    description="Keeps the specific_exports and global_exports partitions equal to the registry file.",
)
def export_registry_sensor(context: SensorEvaluationContext, registry: ExportRegistry):
    # One cheap comparison per tick: the registry's fingerprint (its revision and the reference data's
    # identity) against the last synced one. The partitions are compared in full only when it changed,
    # and at least every RESYNC_S (in case someone edited them by hand), so a platform of 10,000 exports
    # is not re-read every 15 s and an edit reaches the partitions within one tick.
    fingerprint = registry.fingerprint()
    last, _, synced_at = (context.cursor or "").partition("@")
    now = time.time()
    if fingerprint and fingerprint == last and synced_at and now - float(synced_at) < RESYNC_S:
        return SkipReason(f"registry unchanged since the last sync (fingerprint {fingerprint})")
    try:
        requests, changes = registry_partition_requests(registry, context.instance)
    except ValueError as exc:
        # A malformed registry must not wipe every export: keep the partitions as they are.
        return SkipReason(f"registry unreadable, partitions kept as they were: {exc}")
    cursor = f"{fingerprint}@{now:.0f}" if fingerprint else None
    if not requests:
        return SensorResult(skip_reason="registry and partitions already in sync", cursor=cursor)
    context.log.info(f"registry changes: {len(changes)}: {', '.join(changes[:50])}")
    return SensorResult(dynamic_partitions_requests=requests, cursor=cursor)


# --------------------------------------------------------------------------------------------------
# Delivery of loaded days
# --------------------------------------------------------------------------------------------------


def today() -> date:
    return datetime.now(UTC).date()


def lookback_days(until: date, lookback: int, data_days: DailyPartitionsDefinition) -> list[date]:
    """The data days the sensor considers, oldest first: `lookback` days before `until`, and `until`."""
    days = [until - timedelta(days=n) for n in range(lookback, -1, -1)]
    return [d for d in days if data_days.has_partition_key(d.isoformat())]


def _partition_records(instance, asset_key: AssetKey, partitions: list[str]):
    """Every materialization record of those partitions, newest first (paged)."""
    cursor = None
    while partitions:
        page = instance.fetch_materializations(
            AssetRecordsFilter(asset_key=asset_key, asset_partitions=partitions), limit=PAGE, cursor=cursor
        )
        yield from page.records
        if not page.has_more:
            return
        cursor = page.cursor


def loaded_days(instance, days: list[date]) -> dict[date, str]:
    """Each day of `days` that has been loaded, with the id of its latest load (its run id)."""
    latest: dict[date, str] = {}
    for record in _partition_records(instance, LOADED_ASSET, [d.isoformat() for d in days]):
        day = date.fromisoformat(record.partition_key)
        if day not in latest:  # newest first: the first record of a day is its latest load
            entry = record.event_log_entry
            latest[day] = entry.run_id or f"{entry.timestamp:.6f}"
    return latest


def _in_flight_partitions(instance, job_name: str) -> set[str]:
    runs = instance.get_runs(RunsFilter(job_name=job_name, statuses=IN_FLIGHT))
    return {run.tags.get("dagster/partition") for run in runs if run.tags.get("dagster/partition")}


def delivery_requests(registry_resource: ExportRegistry, instance, loads: dict[date, str]) -> list[RunRequest]:
    """One run request per (loaded day, scheduled export) neither delivered nor being delivered.

    The run key names the load (the run that loaded the day): the daemon never launches a run key twice,
    so a given load asks once, and a failed delivery is not retried in a loop (the failure is
    announced instead); a later reload of the day asks again for what is still undelivered."""
    registry = registry_resource.load()
    if registry.unreadable:
        raise ValueError("; ".join(map(str, registry.faults)))
    requests = []
    for mode, spec in EXPORT_MODES.items():
        known = set(instance.get_dynamic_partitions(spec.partitions_name))
        wanted = {
            str(export_day_key(day, export_id)): (day, export_id)
            for day in sorted(loads)
            for export_id in registry.scheduled_ids(mode)
            if export_id in known
        }
        done = {r.partition_key for r in _partition_records(instance, spec.asset_key, sorted(wanted))}
        busy = _in_flight_partitions(instance, spec.job_name) if wanted else set()
        for key, (day, _) in sorted(wanted.items()):
            if key in done or key in busy:
                continue
            requests.append(
                RunRequest(
                    run_key=f"deliver-{key}@load-{loads[day]}",
                    job_name=spec.job_name,
                    partition_key=key,
                    tags={"beop/trigger": "day-loaded"},
                )
            )
    return requests


def build_deliver_loaded_days_sensor(data_days: DailyPartitionsDefinition, jobs: list) -> SensorDefinition:
    @sensor(
        jobs=jobs,
        minimum_interval_seconds=15,
        default_status=DefaultSensorStatus.RUNNING,
        description="Delivers every loaded day of the look-back window (BEOP_DELIVERY_LOOKBACK_DAYS, 7 by "
        "default) for every scheduled export not yet delivered; never sends a delivered day again.",
    )
    def deliver_loaded_days_sensor(
        context: SensorEvaluationContext, registry: ExportRegistry, delivery_policy: DeliveryPolicy
    ):
        lookback = delivery_policy.lookback()
        days = lookback_days(today(), lookback, data_days)
        loads = loaded_days(context.instance, days)
        if not loads:
            return SkipReason(f"no day loaded in the last {lookback} days")
        try:
            requests = delivery_requests(registry, context.instance, loads)
        except ValueError as exc:
            # Not "all delivered": nobody can tell which exports are due until the registry is fixed.
            return SkipReason(f"registry unreadable, no delivery requested: {exc}")
        if not requests:
            return SkipReason(
                f"every scheduled export of {', '.join(d.isoformat() for d in sorted(loads))} is already delivered"
                " (or being delivered)"
            )
        return requests

    return deliver_loaded_days_sensor
