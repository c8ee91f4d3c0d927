"""Dagster definitions of the participation model: the daily load, its job and its schedule."""

from dagster import DefaultScheduleStatus, Definitions

from beop_assets.defs.model.assets import build_participation_model
from beop_assets.defs.model.jobs import build_load_participations_job, build_nightly_participations_schedule
from beop_assets.defs.partitions import Partitions


def model_definitions(partitions: Partitions, schedules: DefaultScheduleStatus) -> Definitions:
    job = build_load_participations_job(partitions.data_days)
    return Definitions(
        assets=[build_participation_model(partitions.data_days)],
        jobs=[job],
        schedules=[build_nightly_participations_schedule(job, schedules)],
    )
