"""The schedules: load yesterday shortly after midnight UTC, check at the deadline that every enabled
export delivered it, and purge what is older than the retention window.

Deliveries follow the load, not the clock: `deliver_loaded_days_sensor` requests every enabled
export of a day once that day is loaded, so a late or failed load never ships empty files.

Every schedule starts RUNNING, so that a fresh deployment delivers every night unattended; an
operator who wants to switch them on by hand sets BEOP_SCHEDULE_DEFAULT=stopped. The setting is
read when the code location loads (Dagster's default status is part of the definition); a state set
in the UI always wins over it.
"""

from __future__ import annotations

from datetime import timedelta

from dagster import DefaultScheduleStatus, RunRequest, ScheduleEvaluationContext, schedule

from beop_assets import settings
from beop_assets.jobs import detect_missed_deliveries_job, load_participations_job, purge_expired_data_job


def default_status() -> DefaultScheduleStatus:
    if settings.current().schedule_default == "stopped":
        return DefaultScheduleStatus.STOPPED
    return DefaultScheduleStatus.RUNNING


def deadline_cron() -> str:
    deadline = settings.current().missed_day_deadline
    return f"{deadline.minute} {deadline.hour} * * *"


@schedule(
    job=load_participations_job,
    cron_schedule="15 0 * * *",
    execution_timezone="UTC",
    default_status=default_status(),
    description="Loads yesterday (UTC) at 00:15 UTC; the deliveries of that day follow its load.",
)
def nightly_participations_schedule(context: ScheduleEvaluationContext):
    day = (context.scheduled_execution_time - timedelta(days=1)).date().isoformat()
    return RunRequest(run_key=f"load-{day}", partition_key=day, tags={"beop/trigger": "nightly"})


@schedule(
    job=detect_missed_deliveries_job,
    cron_schedule=deadline_cron(),
    execution_timezone="UTC",
    default_status=default_status(),
    description="At the delivery deadline (BEOP_MISSED_DAY_DEADLINE, 06:00 UTC by default), flags and "
    "announces every enabled export without a successful delivery of yesterday.",
)
def missed_deliveries_schedule(context: ScheduleEvaluationContext):
    day = (context.scheduled_execution_time - timedelta(days=1)).date().isoformat()
    return RunRequest(run_key=f"missed-{day}", partition_key=day, tags={"beop/trigger": "deadline"})


@schedule(
    job=purge_expired_data_job,
    cron_schedule="30 3 * * *",
    execution_timezone="UTC",
    default_status=default_status(),
    description="Every night at 03:30 UTC, removes landing days, model days, spool files and ledger rows "
    "older than BEOP_RETENTION_DAYS (30 by default).",
)
def retention_schedule(context: ScheduleEvaluationContext):
    return RunRequest(
        run_key=f"purge-{context.scheduled_execution_time.date().isoformat()}", tags={"beop/trigger": "retention"}
    )
