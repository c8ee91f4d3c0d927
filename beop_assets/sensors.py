"""Sensors that keep Dagster in step with the outside world.

- `export_registry_sensor` syncs the registry file into the two dynamic partition sets, so that an
  export added, disabled or removed in `exports.yaml` appears or disappears without a restart.
- `deliver_loaded_days_sensor` requests the day's delivery of every scheduled export once the
  participations of that day have been loaded (by the nightly schedule, a backfill or the CLI),
  skipping exports already delivered for that day.
"""

from datetime import date

from dagster import (
    AssetKey,
    AssetRecordsFilter,
    DefaultSensorStatus,
    EventLogEntry,
    RunRequest,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    asset_sensor,
    sensor,
)

from beop_assets.jobs import (
    EXPORT_JOBS_BY_MODE,
    deliver_global_exports_job,
    deliver_specific_exports_job,
)
from beop_assets.partitions import EXPORT_PARTITIONS_BY_MODE, export_day_key
from beop_assets.resources import ExportRegistry

EXPORT_ASSET_BY_MODE = {"specific": AssetKey("crm_export_file"), "global": AssetKey("global_export_file")}


def registry_partition_requests(registry_resource: ExportRegistry, instance) -> tuple[list, list[str]]:
    """The add/delete requests that make the dynamic partitions equal to the registry's scheduled ids."""
    registry = registry_resource.load()
    if registry.unreadable:
        raise ValueError("; ".join(map(str, registry.faults)))
    requests, changes = [], []
    for mode, partitions in EXPORT_PARTITIONS_BY_MODE.items():
        wanted = set(registry.scheduled_ids(mode))
        current = set(instance.get_dynamic_partitions(partitions.name))
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
    try:
        requests, changes = registry_partition_requests(registry, context.instance)
    except ValueError as exc:
        # A malformed registry must not wipe every export: keep the partitions as they are.
        return SkipReason(f"registry unreadable, partitions kept as they were: {exc}")
    if not requests:
        return SkipReason("registry and partitions already in sync")
    context.log.info(f"registry changes: {', '.join(changes)}")
    return SensorResult(dynamic_partitions_requests=requests)


def _already_delivered(instance, mode: str, day: date, export_id: str) -> bool:
    records = instance.fetch_materializations(
        AssetRecordsFilter(
            asset_key=EXPORT_ASSET_BY_MODE[mode], asset_partitions=[str(export_day_key(day, export_id))]
        ),
        limit=1,
    )
    return bool(records.records)


def delivery_requests(registry_resource: ExportRegistry, instance, day: date, load_id: str) -> list[RunRequest]:
    """One run request per scheduled export of `day` that has not been delivered yet.

    The run key names the load (`load_id`, the run that loaded the day): a given load never
    asks twice, while a later reload of the day asks again for what is still undelivered (a delivery
    that failed the first time)."""
    registry = registry_resource.load()
    requests = []
    for mode, job in EXPORT_JOBS_BY_MODE.items():
        known = set(instance.get_dynamic_partitions(EXPORT_PARTITIONS_BY_MODE[mode].name))
        for export_id in registry.scheduled_ids(mode):
            if export_id not in known or _already_delivered(instance, mode, day, export_id):
                continue
            key = export_day_key(day, export_id)
            requests.append(
                RunRequest(
                    run_key=f"deliver-{key}@load-{load_id}",
                    job_name=job.name,
                    partition_key=key,
                    tags={"beop/trigger": "day-loaded"},
                )
            )
    return requests


@asset_sensor(
    asset_key=AssetKey("participations"),
    jobs=[deliver_specific_exports_job, deliver_global_exports_job],
    minimum_interval_seconds=15,
    default_status=DefaultSensorStatus.RUNNING,
    description="When a day of participations is loaded, delivers that day for every export not yet delivered.",
)
def deliver_loaded_days_sensor(context: SensorEvaluationContext, asset_event: EventLogEntry, registry: ExportRegistry):
    days = _loaded_days(context, asset_event)
    if not days:
        return SkipReason("materialization without a partition")
    requests = [r for day, load_id in days.items() for r in delivery_requests(registry, context.instance, day, load_id)]
    if not requests:
        return SkipReason(f"every scheduled export of {', '.join(map(str, days))} is already delivered")
    return requests


def _load_id(entry: EventLogEntry) -> str:
    return entry.run_id or f"{entry.timestamp:.6f}"


def _loaded_days(context: SensorEvaluationContext, asset_event: EventLogEntry) -> dict[date, str]:
    """Every day loaded since the previous tick, oldest first. `asset_sensor` hands over only the
    LATEST new materialization: when several days are loaded between two ticks (a backfill of loads),
    the earlier ones would otherwise never be delivered. `context.cursor` is still the previous tick's
    (the storage id of the last materialization it handled); on a first tick, only the latest counts.
    Returns each day with the id of its latest load."""
    loads: list[tuple[str | None, str]] = []
    try:
        after = int(context.cursor) if context.cursor else None
    except ValueError:
        after = None
    while after is not None:
        page = context.instance.fetch_materializations(
            AssetRecordsFilter(asset_key=AssetKey("participations"), after_storage_id=after),
            limit=500,
            ascending=True,
        )
        loads += [(record.partition_key, _load_id(record.event_log_entry)) for record in page.records]
        after = page.records[-1].storage_id if page.has_more and page.records else None
    materialization = asset_event.asset_materialization
    loads.append((materialization.partition if materialization is not None else None, _load_id(asset_event)))
    return {date.fromisoformat(partition): load_id for partition, load_id in loads if partition}
