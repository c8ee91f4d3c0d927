"""Missed days, where an operator looks: one partition per data day, whose check fails while an
enabled export has no successful delivery of that day, for every day of the look-back window.

Dagster's FreshnessPolicy sees an export asset as a whole, not its (day, export) partitions, so the
deadline is checked here, per day, against the delivery ledger (`operations/missed_deliveries.py`).
Two triggers keep the partitions true, each from one ledger query over the whole window:
- `missed_deliveries_schedule`, at the deadline (06:00 UTC by default): yesterday, and every other day
  of the window that still has a gap. Its runs announce what is newly missing, and give a day's last
  word on its last day in the window ("this day will no longer be retried").
- `missed_deliveries_sensor`, every few minutes: only the days whose set of missing exports changed
  since its last tick (a late delivery clears its day's check within minutes, not at the next
  deadline). A sensor, not `AutomationCondition`s: what changes is the ledger, outside Dagster's view.
Each (day, export) is announced once: a partition's materialization records whom it has told about,
and the next run of that day reads it back.
"""

import hashlib
import json
from datetime import UTC, date, datetime, time, timedelta

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetRecordsFilter,
    AssetsDefinition,
    AssetSelection,
    DailyPartitionsDefinition,
    DefaultScheduleStatus,
    DefaultSensorStatus,
    MaterializeResult,
    MetadataValue,
    RunRequest,
    ScheduleDefinition,
    ScheduleEvaluationContext,
    SensorDefinition,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    asset,
    define_asset_job,
    schedule,
    sensor,
)
from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition

from beop_assets.defs.resources import Alerts, DeliveryPolicy, ExportRegistry, MissedDayDeadline, Warehouse
from beop_assets.operations import alerts
from beop_assets.operations import missed_deliveries as missed_days

CHECK_NAME = "every_enabled_export_delivered"
JOB = "missed_deliveries_job"
ANNOUNCED = "announced_missing"  # export ids whose missed delivery of the day was announced
GIVEN_UP = "announced_given_up"  # export ids whose last alert (the day leaves the window) was sent
SENSOR_INTERVAL_S = 300


def _told_before(context: AssetExecutionContext, day: str) -> tuple[set[str], set[str]]:
    """Whom the latest materialization of this day says was already told about, (missing, given up)."""
    records = context.instance.fetch_materializations(
        AssetRecordsFilter(asset_key=context.asset_key, asset_partitions=[day]), limit=1
    ).records
    materialization = records[0].asset_materialization if records else None
    metadata = materialization.metadata if materialization else {}

    def ids(name: str) -> set[str]:
        value = metadata.get(name)
        return set(value.value) if value is not None and isinstance(value.value, list) else set()

    return ids(ANNOUNCED), ids(GIVEN_UP)


def _announce(context: AssetExecutionContext, alert: alerts.Alert, channels, secrets: list[str]) -> str | None:
    """Send `alert`; returns what the materialization records, or None when it could not be sent."""
    try:
        return "sent: " + ", ".join(alerts.send_alert(alert, channels, secrets))
    except alerts.AlertDeliveryError as exc:
        context.log.error(f"alert not sent ({alert.subject}): {exc}")
        return None


def build_missed_deliveries(data_days: DailyPartitionsDefinition) -> AssetsDefinition:
    @asset(
        partitions_def=data_days,
        group_name="operations",
        owners=["team:data-platform"],
        tags={"domain": "operations"},
        kinds={"sqlite"},
        check_specs=[
            AssetCheckSpec(
                CHECK_NAME,
                asset="missed_deliveries",
                description="Every enabled export has a successful delivery of this data day in the ledger.",
            )
        ],
        description="Per data day, the enabled exports without a successful delivery (from the delivery "
        "ledger). Materialized at the deadline for every day of the look-back window with a gap, and "
        "again whenever a day's gaps change; its check fails while one is missing.",
    )
    def missed_deliveries(
        context: AssetExecutionContext,
        registry: ExportRegistry,
        warehouse: Warehouse,
        deadline_setting: MissedDayDeadline,
        delivery_policy: DeliveryPolicy,
        alert_channels: Alerts,
    ):
        day = date.fromisoformat(context.partition_key)
        deadline = missed_days.deadline_of(day, deadline_setting.at())
        retries_end = missed_days.retries_end(day, delivery_policy.lookback())
        channels = alert_channels.channels()
        loaded = registry.load()
        report = missed_days.missed_deliveries(loaded, day, warehouse.ledger())
        now = datetime.now(UTC)
        passed = now >= deadline
        announced, given_up = _told_before(context, context.partition_key)
        news = [m for m in report.missed if m.export_id not in announced] if passed else []
        # Its last day in the window (or later): the last word, before nothing asks for it any more.
        last_day = passed and now.date() >= retries_end.date() - timedelta(days=1)
        farewells = [m for m in report.missed if m.export_id not in given_up] if last_day else []
        faults = report.faults if passed else []  # not per export: said at every run past the deadline
        alerted = "nothing new to announce"
        if (news or faults or farewells) and not channels.enabled:
            alerted = "no alert channel configured (BEOP_ALERT_WEBHOOK_URL, BEOP_ALERT_SMTP_HOST)"
        elif news or faults or farewells:
            secrets = alerts.registry_secrets(loaded.exports.values())
            outcomes = []
            if news or faults:
                shown = missed_days.MissedDayReport(day, report.checked, news, faults)
                sent = _announce(
                    context, alerts.missed_day_alert(shown, f"{deadline:%Y-%m-%d %H:%M} UTC"), channels, secrets
                )
                announced |= {m.export_id for m in news} if sent else set()
                outcomes.append(sent or "missed-day alert FAILED (see the run's log)")
            if farewells:
                last = alerts.given_up_alert(day, farewells, f"{retries_end:%Y-%m-%d %H:%M} UTC")
                sent = _announce(context, last, channels, secrets)
                given_up |= {m.export_id for m in farewells} if sent else set()
                outcomes.append(("last alert " + sent) if sent else "last alert FAILED (see the run's log)")
            alerted = "; ".join(outcomes)
        for line in [m.describe() for m in report.missed] + report.faults:
            context.log.warning(line)
        table = "\n".join(
            ["| export | mode | last attempt | run | error |", "| --- | --- | --- | --- | --- |"]
            + [
                f"| {m.export_id} | {m.mode or '?'} | {m.last_status or 'none'} | {m.last_run_id or ''} | "
                f"{(m.last_error or '').replace('|', '/')[:300]} |"
                for m in report.missed
            ]
        )
        metadata = {
            "data_day": MetadataValue.text(day.isoformat()),
            "deadline": MetadataValue.text(deadline.strftime("%Y-%m-%d %H:%M UTC")),
            "deadline_passed": MetadataValue.bool(passed),
            "retried_until": MetadataValue.text(retries_end.strftime("%Y-%m-%d %H:%M UTC")),
            "exports_checked": MetadataValue.int(len(report.checked)),
            "missed": MetadataValue.int(len(report.missed)),
            "missed_exports": MetadataValue.json([m.export_id for m in report.missed]),
            "alert": MetadataValue.text(alerted),
            ANNOUNCED: MetadataValue.json(sorted(announced)),
            GIVEN_UP: MetadataValue.json(sorted(given_up)),
        }
        yield MaterializeResult(metadata={**metadata, "details": MetadataValue.md(table if report.missed else "none")})
        yield AssetCheckResult(
            check_name=CHECK_NAME,
            passed=report.ok,
            severity=AssetCheckSeverity.ERROR,
            description=(
                "every enabled export delivered"
                if report.ok
                else "; ".join([m.describe() for m in report.missed] + report.faults)[:2000]
            ),
            metadata={"missed_exports": MetadataValue.json([m.export_id for m in report.missed])},
        )

    return missed_deliveries


def _window_reports(
    data_days: DailyPartitionsDefinition,
    now: datetime,
    registry: ExportRegistry,
    warehouse: Warehouse,
    delivery_policy: DeliveryPolicy,
    deadline_setting: MissedDayDeadline,
) -> dict[date, missed_days.MissedDayReport]:
    """The report of every day of the look-back window past its deadline (one ledger query)."""
    days = missed_days.due_days(now.date(), delivery_policy.lookback(), deadline_setting.at(), now)
    days = [d for d in days if data_days.has_partition_key(d.isoformat())]
    return missed_days.missed_in_days(registry.load(), days, warehouse.ledger())


def build_missed_deliveries_schedule(
    data_days: DailyPartitionsDefinition, deadline: time, default_status: DefaultScheduleStatus
) -> tuple[UnresolvedAssetJobDefinition, ScheduleDefinition, SensorDefinition]:
    """The job, its schedule at the deadline (BEOP_MISSED_DAY_DEADLINE; an unusable setting leaves the
    schedule at the default 06:00, where the run fails with the setting's error), and its sensor."""
    job = define_asset_job(
        JOB,
        selection=AssetSelection.assets("missed_deliveries"),
        partitions_def=data_days,
        description="Flag (and announce) every enabled export without a successful delivery of the data day.",
    )

    @schedule(
        job=job,
        cron_schedule=f"{deadline.minute} {deadline.hour} * * *",
        execution_timezone="UTC",
        default_status=default_status,
        description="At the delivery deadline (BEOP_MISSED_DAY_DEADLINE, 06:00 UTC by default), flags and "
        "announces every enabled export without a successful delivery of yesterday, and of every other day "
        "of the look-back window (BEOP_DELIVERY_LOOKBACK_DAYS) that still has one.",
    )
    def missed_deliveries_schedule(
        context: ScheduleEvaluationContext,
        registry: ExportRegistry,
        warehouse: Warehouse,
        delivery_policy: DeliveryPolicy,
        deadline_setting: MissedDayDeadline,
    ):
        tick = context.scheduled_execution_time or datetime.now(UTC)
        yesterday = (tick - timedelta(days=1)).date()
        days = {yesterday}  # always: its run is where an unusable setting or registry says so
        try:
            reports = _window_reports(data_days, tick, registry, warehouse, delivery_policy, deadline_setting)
            days |= {d for d, report in reports.items() if not report.ok}
        except ValueError as exc:  # an unusable setting: yesterday's run fails with its error
            context.log.warning(f"only yesterday is checked: {exc}")
        return [
            RunRequest(
                run_key=f"missed-{day}@{tick.date()}", partition_key=day.isoformat(), tags={"beop/trigger": "deadline"}
            )
            for day in sorted(days)
        ]

    @sensor(
        job=job,
        minimum_interval_seconds=SENSOR_INTERVAL_S,
        default_status=DefaultSensorStatus.RUNNING,
        description="Re-checks a day of the look-back window past its deadline whenever its missing exports "
        "change (a late delivery clears the day's check; a new gap flags it), from one ledger query.",
    )
    def missed_deliveries_sensor(
        context: SensorEvaluationContext,
        registry: ExportRegistry,
        warehouse: Warehouse,
        delivery_policy: DeliveryPolicy,
        deadline_setting: MissedDayDeadline,
    ):
        try:
            reports = _window_reports(
                data_days, datetime.now(UTC), registry, warehouse, delivery_policy, deadline_setting
            )
        except ValueError as exc:
            return SkipReason(f"nothing re-checked: {exc}")
        before = json.loads(context.cursor or "{}")
        now_state = {day.isoformat(): _gaps_digest(report) for day, report in reports.items()}
        changed = [
            day
            for day, state in now_state.items()
            if state != before.get(day) and (state != "ok" or before.get(day) not in (None, "ok"))
        ]
        requests = [RunRequest(partition_key=day, tags={"beop/trigger": "gaps-changed"}) for day in sorted(changed)]
        return SensorResult(
            run_requests=requests,
            cursor=json.dumps(now_state, sort_keys=True),
            skip_reason=None if requests else "no day's missing exports changed",
        )

    return job, missed_deliveries_schedule, missed_deliveries_sensor


def _gaps_digest(report: missed_days.MissedDayReport) -> str:
    """A day's state for the sensor's cursor: "ok", or a digest of what is missing (short at any scale)."""
    if report.ok:
        return "ok"
    text = "\n".join(sorted(m.export_id for m in report.missed) + report.faults)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
