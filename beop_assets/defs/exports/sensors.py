"""Sensors that keep the exports in step with the outside world.

- `export_registry_sensor` syncs the registry file into the two dynamic partition sets, so that an
  export added, disabled or removed in `exports.yaml` appears or disappears without a restart.
- `deliver_loaded_days_sensor` delivers every loaded day not yet delivered, for every scheduled
  export, within the look-back window (BEOP_DELIVERY_LOOKBACK_DAYS, 7 by default).

Why the delivery sensor scans a window instead of following new load events with a cursor: a cursor
only sees what happened after the sensor first ran, so a fresh deployment (or a sensor switched on
after a backfill of loads) would never deliver the days loaded before it. Scanning "every loaded day
of the last N days, minus what is delivered, being delivered or waiting for its retry" is right on
every tick, the first one included, and costs a handful of queries whatever the number of exports
(see `delivery_requests`): the ledger, not the sensor's cursor, remembers each key's attempts, so the
retry schedule survives restarts and is the same whichever daemon evaluates it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
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

from beop_assets.defs.exports.batch import ATTEMPT_TAG
from beop_assets.defs.exports.jobs import EXPORT_MODES
from beop_assets.defs.partitions import export_day_key, split_export_day_key
from beop_assets.defs.resources import DeliveryPolicy, ExportRegistry, Warehouse
from beop_assets.delivery import ledger
from beop_assets.exports.delivery_runs import contiguous_ranges
from beop_assets.exports.delivery_schedule import NextAttempt, PastAttempt, RetrySchedule, next_attempt

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
RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"
# A retry run of keys whose last failure was permanent: the failure alert does not announce it again.
ANNOUNCE_TAG = "beop/announce"


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


def _in_flight_keys(instance, job_name: str, order: list[str]) -> set[str]:
    """The (day, export) keys of the job's queued and running runs: a single key, or a range of exports
    of one day expanded along the partitions' insertion order (`order`). A range whose end no longer
    exists counts its whole day as busy: better a day asked one tick later than twice."""
    position = {export_id: n for n, export_id in enumerate(order)}
    busy: set[str] = set()
    for run in instance.get_runs(RunsFilter(job_name=job_name, statuses=IN_FLIGHT)):
        if run.tags.get("dagster/partition"):
            busy.add(run.tags["dagster/partition"])
            continue
        start, end = run.tags.get(RANGE_START), run.tags.get(RANGE_END)
        if not (start and end):
            continue
        (day, first), (_, last) = split_export_day_key(start), split_export_day_key(end)
        low, high = position.get(first, 0), position.get(last, len(order) - 1)
        busy.update(str(export_day_key(day, e)) for e in order[low : high + 1])
    return busy


@dataclass
class DeliveryPlan:
    """What one tick asks for, and what it leaves for later (said in the tick's log or skip message)."""

    requests: list[RunRequest] = field(default_factory=list)
    waiting: list[tuple[str, NextAttempt]] = field(default_factory=list)  # (key, its next attempt)
    budget: int = 0  # keys one tick may ask (BEOP_DELIVERY_KEYS_PER_TICK)
    held: int = 0  # keys due, left for the next ticks (the tick's budget is spent)

    def held_back(self) -> str:
        if not self.held:
            return ""
        return (
            f"{self.held} more export(s) due, asked on the next ticks (at most {self.budget} a tick, "
            "BEOP_DELIVERY_KEYS_PER_TICK; the oldest day first)"
        )

    def later(self) -> str:
        if not self.waiting:
            return ""
        key, soonest = min(self.waiting, key=lambda w: w[1].due_at)
        kind = "permanent failure, announced" if soonest.permanent else "failed"
        return (
            f"{len(self.waiting)} failed export(s) wait for their next attempt; the soonest: {key}, attempt "
            f"{soonest.number} at {soonest.due_at:%Y-%m-%d %H:%M} UTC ({kind}: {soonest.last_error})"
        )


def _kind(attempt: NextAttempt) -> tuple[int, bool]:
    """What a run's keys share: one attempt number, and whether their last failure was permanent."""
    return attempt.number, attempt.permanent


def delivery_requests(
    registry_resource: ExportRegistry,
    instance,
    loads: dict[date, str],
    ledger_at: ledger.Location,
    schedule: RetrySchedule,
    now: datetime,
    batch_size: int,
    keys_per_tick: int,
) -> DeliveryPlan:
    """Runs for every (loaded day, scheduled export) neither delivered nor being delivered whose attempt
    is due: ranges of up to `batch_size` contiguous exports of one day, split around the keys that are not
    due (delivered, in flight, or waiting for their retry). A first attempt is due at once; a failed key
    follows the retry schedule (exports/delivery_schedule.py), from its attempts in the ledger.

    At most `keys_per_tick` keys are asked (whole ranges, the oldest day first, at least one range): the
    rest are `held`, and the next tick, which sees the asked ones in flight, asks them.

    Cost: a handful of queries whatever the number of exports (the dynamic partitions, the materialized
    keys, the in-flight runs, the ledger's rows of each day); Dagster checks each request, so few requests;
    and Dagster's writes when it creates the runs, bounded by the budget."""
    registry = registry_resource.load()
    if registry.unreadable:
        raise ValueError("; ".join(map(str, registry.faults)))
    past: dict[tuple[str, str], list[ledger.Delivery]] = {}
    for day in loads:
        for row in ledger.history(day=day, root=ledger_at, limit=10_000_000):
            past.setdefault((row.data_day, row.export_id), []).append(row)
    plan = DeliveryPlan(budget=keys_per_tick)
    ranges: list[tuple[date, RunRequest, int]] = []
    for mode, spec in EXPORT_MODES.items():
        order = list(instance.get_dynamic_partitions(spec.partitions_name))
        scheduled = set(registry.scheduled_ids(mode))
        if not scheduled:
            continue
        done = set(instance.get_materialized_partitions(spec.asset_key))
        busy = _in_flight_keys(instance, spec.job_name, order)
        for day in sorted(loads):
            due: dict[str, NextAttempt] = {}
            for export_id in order:
                key = f"{day.isoformat()}|{export_id}"
                if export_id not in scheduled or key in done or key in busy:
                    continue
                rows = past.get((day.isoformat(), export_id), [])
                if any(r.status == "delivered" for r in rows):
                    continue
                attempt = next_attempt([_past(r) for r in rows], schedule)
                if attempt.is_due(now):
                    due[export_id] = attempt
                else:
                    plan.waiting.append((key, attempt))
            kinds = {export_id: _kind(attempt) for export_id, attempt in due.items()}
            for batch in contiguous_ranges(order, kinds, batch_size):
                ranges.append((day, _request(spec, day, batch, due[batch[0]], loads[day]), len(batch)))
    asked = 0
    for _day, request, size in sorted(ranges, key=lambda r: r[0]):  # stable: modes keep their order
        if plan.held or (plan.requests and asked + size > keys_per_tick):
            plan.held += size  # in order: nothing newer is asked before what is held
            continue
        plan.requests.append(request)
        asked += size
    return plan


def _past(row: ledger.Delivery) -> PastAttempt:
    at = datetime.fromisoformat(row.finished_at or row.started_at)
    return PastAttempt(at if at.tzinfo else at.replace(tzinfo=UTC), row.error)


def _request(spec, day: date, export_ids: list[str], attempt: NextAttempt, load: str) -> RunRequest:
    first, last = export_ids[0], export_ids[-1]
    tags = {
        RANGE_START: str(export_day_key(day, first)),
        RANGE_END: str(export_day_key(day, last)),
        "beop/trigger": "day-loaded" if attempt.number == 1 else "retry",
        ATTEMPT_TAG: str(attempt.number),
    }
    if attempt.permanent:  # announced when it first failed; its retries fail quietly until it heals
        tags[ANNOUNCE_TAG] = "false"
    return RunRequest(
        # Unique per attempt: the same range asks again only after a new failure was recorded.
        run_key=f"deliver-{day}-{first}..{last}-attempt{attempt.number}@load-{load}",
        job_name=spec.job_name,
        tags=tags,
    )


def now() -> datetime:
    """The sensor's clock (tests drive ticks through the retry schedule by replacing it)."""
    return datetime.now(UTC)


def build_deliver_loaded_days_sensor(
    data_days: DailyPartitionsDefinition, jobs: list, batch_size: int
) -> SensorDefinition:
    @sensor(
        jobs=jobs,
        minimum_interval_seconds=15,
        default_status=DefaultSensorStatus.RUNNING,
        description="Delivers every loaded day of the look-back window (BEOP_DELIVERY_LOOKBACK_DAYS, 7 by "
        "default) for every scheduled export not yet delivered, in ranges of exports, and asks failed ones "
        "again on the retry schedule (BEOP_RETRY_*); never sends a delivered day again.",
    )
    def deliver_loaded_days_sensor(
        context: SensorEvaluationContext,
        registry: ExportRegistry,
        delivery_policy: DeliveryPolicy,
        warehouse: Warehouse,
    ):
        lookback = delivery_policy.lookback()
        clock = now()
        days = lookback_days(clock.date(), lookback, data_days)
        loads = loaded_days(context.instance, days)
        if not loads:
            return SkipReason(f"no day loaded in the last {lookback} days")
        try:
            plan = delivery_requests(
                registry,
                context.instance,
                loads,
                warehouse.ledger(),
                delivery_policy.retry_schedule(),
                clock,
                batch_size,
                delivery_policy.tick_budget(),
            )
        except ValueError as exc:
            # Not "all delivered": nobody can tell which exports are due until the registry is fixed.
            return SkipReason(f"registry unreadable, no delivery requested: {exc}")
        if not plan.requests:
            return SkipReason(
                plan.later()
                or f"every scheduled export of {', '.join(d.isoformat() for d in sorted(loads))} is already "
                "delivered (or being delivered)"
            )
        for note in (plan.later(), plan.held_back()):
            if note:
                context.log.info(note)
        return plan.requests

    return deliver_loaded_days_sensor
