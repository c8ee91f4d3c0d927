"""Retention: the `retention_job` (one `retention` op) and its nightly `retention_schedule`.

What is removed, and why, is decided in `operations/retention.py`; this only runs it with the deployment's
window (BEOP_RETENTION_DAYS). An unusable window fails this job alone, with the setting's error (and its
failure alert): nothing is deleted, and the night's loads and deliveries go on.
"""

from datetime import UTC, datetime

from dagster import (
    DefaultScheduleStatus,
    MetadataValue,
    Nothing,
    OpExecutionContext,
    Out,
    Output,
    RunRequest,
    ScheduleDefinition,
    ScheduleEvaluationContext,
    in_process_executor,
    job,
    op,
    schedule,
)

from beop_assets.defs.resources import Landing, Retention, Warehouse
from beop_assets.operations.retention import purge_expired


@op(
    name="retention",
    out=Out(Nothing),
    description="Removes every copy of the data days older than BEOP_RETENTION_DAYS (landing, model, stored "
    "model, old Parquet versions, spool, ledger rows, scratch folders of killed loads); its output metadata "
    "lists what was removed, per day (`removed_by_day`).",
)
def retention_op(context: OpExecutionContext, warehouse: Warehouse, landing: Landing, retention: Retention):
    days = retention.window()
    report = purge_expired(
        landing.url,
        warehouse.path(),
        days,
        datetime.now(UTC).date(),
        store=warehouse.store_url(),
        ledger_at=warehouse.ledger(),
    )
    model_days = sorted({d for days in [*report.model_days.values(), *report.stored_days.values()] for d in days})
    context.log.info(
        f"kept data days from {report.first_kept_day} ({days} days); removed copies of {len(report.by_day)} "
        f"days: {len(report.landing_days)} landing days, {len(model_days)} model days, "
        f"{len(report.parquet_versions)} old Parquet versions, {len(report.spool_folders)} spool folders, "
        f"{report.ledger_rows} ledger rows"
    )
    yield Output(
        None,
        metadata={
            "retention_days": MetadataValue.int(days),
            "removed_by_day": MetadataValue.json(report.by_day),
            "removed_undated": MetadataValue.json(report.undated),
            "first_kept_day": MetadataValue.text(report.first_kept_day.isoformat()),
            "landing_days_removed": MetadataValue.json(report.landing_days),
            "model_days_removed": MetadataValue.json(report.model_days),
            "stored_days_removed": MetadataValue.json(report.stored_days),
            "database_rows_removed": MetadataValue.json(report.database_rows),
            "parquet_versions_removed": MetadataValue.int(len(report.parquet_versions)),
            "spool_folders_removed": MetadataValue.int(len(report.spool_folders)),
            "spool_removed": MetadataValue.json(report.spool_folders),
            "ledger_rows_removed": MetadataValue.int(report.ledger_rows),
        },
    )


@job(
    name="retention_job",
    executor_def=in_process_executor,
    description="Purge every copy of the personal data older than BEOP_RETENTION_DAYS (landing, model, spool, "
    "ledger, scratch folders): docs/operators-guide.md, Retention.",
    tags={"beop/kind": "retention"},
)
def retention_job():
    retention_op()


def build_retention_schedule(default_status: DefaultScheduleStatus) -> ScheduleDefinition:
    @schedule(
        job=retention_job,
        cron_schedule="30 3 * * *",
        execution_timezone="UTC",
        default_status=default_status,
        description="Every night at 03:30 UTC, removes every copy of the data days older than "
        "BEOP_RETENTION_DAYS (30 by default).",
    )
    def retention_schedule(context: ScheduleEvaluationContext):
        return RunRequest(
            run_key=f"purge-{context.scheduled_execution_time.date().isoformat()}", tags={"beop/trigger": "retention"}
        )

    return retention_schedule
