"""The model's job and schedule: load yesterday shortly after midnight UTC.

Deliveries follow the load, not the clock: the delivery sensor (`defs/exports/sensors.py`) requests the
exports of a day once that day is loaded, so a late or failed load never ships empty files.
"""

from datetime import timedelta

from dagster import (
    AssetSelection,
    DailyPartitionsDefinition,
    DefaultScheduleStatus,
    RunRequest,
    ScheduleDefinition,
    ScheduleEvaluationContext,
    define_asset_job,
    schedule,
)
from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition

LOAD_JOB = "load_participations"


def build_load_participations_job(data_days: DailyPartitionsDefinition) -> UnresolvedAssetJobDefinition:
    return define_asset_job(
        LOAD_JOB,
        selection=AssetSelection.assets("participations", "optins", "rejected_participations"),
        partitions_def=data_days,
        description="Load one UTC day of the landing zone into the participation model.",
    )


def build_nightly_participations_schedule(
    job: UnresolvedAssetJobDefinition, default_status: DefaultScheduleStatus
) -> ScheduleDefinition:
    @schedule(
        job=job,
        cron_schedule="15 0 * * *",
        execution_timezone="UTC",
        default_status=default_status,
        description="Loads yesterday (UTC) at 00:15 UTC; the deliveries of that day follow its load.",
    )
    def nightly_participations_schedule(context: ScheduleEvaluationContext):
        day = (context.scheduled_execution_time - timedelta(days=1)).date().isoformat()
        return RunRequest(run_key=f"load-{day}", partition_key=day, tags={"beop/trigger": "nightly"})

    return nightly_participations_schedule
