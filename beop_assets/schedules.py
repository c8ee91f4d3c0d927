"""The nightly schedule: load yesterday's participations shortly after midnight UTC.

Deliveries follow the load, not the clock: `deliver_loaded_days_sensor` requests every enabled
export of a day once that day is loaded, so a late or failed load never ships empty files.
"""

from datetime import timedelta

from dagster import RunRequest, ScheduleEvaluationContext, schedule

from beop_assets.jobs import load_participations_job


@schedule(
    job=load_participations_job,
    cron_schedule="15 0 * * *",
    execution_timezone="UTC",
    description="Loads yesterday (UTC) at 00:15 UTC; the deliveries of that day follow its load.",
)
def nightly_participations_schedule(context: ScheduleEvaluationContext):
    day = (context.scheduled_execution_time - timedelta(days=1)).date().isoformat()
    return RunRequest(run_key=f"load-{day}", partition_key=day, tags={"beop/trigger": "nightly"})
