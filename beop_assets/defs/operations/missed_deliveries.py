"""Missed days, where an operator looks: one partition per data day, whose check fails when an
enabled export has no successful delivery of that day.

Dagster's FreshnessPolicy sees an export asset as a whole, not its (day, export) partitions, so the
deadline is checked here, per day, against the delivery ledger (`operations/missed_deliveries.py`). The
`missed_deliveries_schedule` materializes yesterday's partition at the deadline (06:00 UTC by default);
when something is missing and the deadline has passed, the alert channels are told too.
"""

from datetime import UTC, date, datetime, time, timedelta

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetsDefinition,
    AssetSelection,
    DailyPartitionsDefinition,
    DefaultScheduleStatus,
    MaterializeResult,
    MetadataValue,
    RunRequest,
    ScheduleDefinition,
    ScheduleEvaluationContext,
    asset,
    define_asset_job,
    schedule,
)
from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition

from beop_assets.defs.resources import Alerts, ExportRegistry, MissedDayDeadline, Warehouse
from beop_assets.operations import alerts
from beop_assets.operations import missed_deliveries as missed_days

CHECK_NAME = "every_enabled_export_delivered"


JOB = "missed_deliveries_job"


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
        "ledger). Materialized at the deadline for yesterday; its check fails when one is missing.",
    )
    def missed_deliveries(
        context: AssetExecutionContext,
        registry: ExportRegistry,
        warehouse: Warehouse,
        deadline_setting: MissedDayDeadline,
        alert_channels: Alerts,
    ):
        day = date.fromisoformat(context.partition_key)
        deadline = missed_days.deadline_of(day, deadline_setting.at())
        channels = alert_channels.channels()
        loaded = registry.load()
        report = missed_days.missed_deliveries(loaded, day, warehouse.ledger())
        passed = datetime.now(UTC) >= deadline
        alerted = "nothing to announce"
        if not report.ok and passed:
            if channels.enabled:
                alert = alerts.missed_day_alert(report, deadline.strftime("%Y-%m-%d %H:%M UTC"))
                try:
                    alerted = "sent: " + ", ".join(
                        alerts.send_alert(alert, channels, alerts.registry_secrets(loaded.exports.values()))
                    )
                except alerts.AlertDeliveryError as exc:
                    alerted = f"FAILED: {exc}"
                    context.log.error(f"missed-day alert for {day} could not be sent: {exc}")
            else:
                alerted = "no alert channel configured (BEOP_ALERT_WEBHOOK_URL, BEOP_ALERT_SMTP_HOST)"
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
            "exports_checked": MetadataValue.int(len(report.checked)),
            "missed": MetadataValue.int(len(report.missed)),
            "missed_exports": MetadataValue.json([m.export_id for m in report.missed]),
            "alert": MetadataValue.text(alerted),
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


def build_missed_deliveries_schedule(
    data_days: DailyPartitionsDefinition, deadline: time, default_status: DefaultScheduleStatus
) -> tuple[UnresolvedAssetJobDefinition, ScheduleDefinition]:
    """The job, and its schedule at the deadline (BEOP_MISSED_DAY_DEADLINE; an unusable setting leaves
    the schedule at the default 06:00, where the run fails with the setting's error)."""
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
        "announces every enabled export without a successful delivery of yesterday.",
    )
    def missed_deliveries_schedule(context: ScheduleEvaluationContext):
        day = (context.scheduled_execution_time - timedelta(days=1)).date().isoformat()
        return RunRequest(run_key=f"missed-{day}", partition_key=day, tags={"beop/trigger": "deadline"})

    return job, missed_deliveries_schedule
