"""Missed days, where an operator looks: one partition per data day, whose check fails when an
enabled export has no successful delivery of that day.

Dagster's FreshnessPolicy sees an export asset as a whole, not its (day, export) partitions, so the
deadline is checked here, per day, against the delivery ledger (`missed_days.py`). The
`missed_deliveries_schedule` materializes yesterday's partition at the deadline (06:00 UTC by default);
when something is missing and the deadline has passed, the alert channels are told too.
"""

from datetime import UTC, date, datetime

from dagster import (
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetExecutionContext,
    MaterializeResult,
    MetadataValue,
    asset,
)

from beop_assets import alerts, missed_days, settings
from beop_assets.partitions import data_days
from beop_assets.resources import ExportRegistry, Warehouse

CHECK_NAME = "every_enabled_export_delivered"


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
def missed_deliveries(context: AssetExecutionContext, registry: ExportRegistry, warehouse: Warehouse):
    day = date.fromisoformat(context.partition_key)
    current = settings.current()
    loaded = registry.load()
    report = missed_days.missed_deliveries(loaded, day, warehouse.path())
    deadline = missed_days.deadline_of(day, current.missed_day_deadline)
    passed = datetime.now(UTC) >= deadline
    alerted = "nothing to announce"
    if not report.ok and passed:
        if current.alerts.enabled:
            alert = alerts.missed_day_alert(report, deadline.strftime("%Y-%m-%d %H:%M UTC"))
            try:
                alerted = "sent: " + ", ".join(
                    alerts.send_alert(alert, current.alerts, alerts.registry_secrets(loaded.exports.values()))
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
