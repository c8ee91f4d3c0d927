"""Dagster definitions of the operations around the night: missed deliveries, retention, failure alerts."""

from datetime import time

from dagster import DefaultScheduleStatus, Definitions

from beop_assets.defs.operations.alerts import alert_on_run_failure
from beop_assets.defs.operations.missed_deliveries import build_missed_deliveries, build_missed_deliveries_schedule
from beop_assets.defs.operations.retention import build_retention_schedule, retention_job
from beop_assets.defs.partitions import Partitions


def operations_definitions(partitions: Partitions, deadline: time, schedules: DefaultScheduleStatus) -> Definitions:
    missed_job, missed_schedule, missed_sensor = build_missed_deliveries_schedule(
        partitions.data_days, deadline, schedules
    )
    return Definitions(
        assets=[build_missed_deliveries(partitions.data_days)],
        jobs=[missed_job, retention_job],
        schedules=[missed_schedule, build_retention_schedule(schedules)],
        sensors=[missed_sensor, alert_on_run_failure],
    )
