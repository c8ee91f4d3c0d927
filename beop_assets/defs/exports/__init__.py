"""Dagster definitions of the exports: the two export assets, their delivery checks, the delivery jobs
and the sensors that keep them in step with the registry and the loaded days."""

from dagster import Definitions

from beop_assets.defs.exports.crm_export import build_crm_export_file
from beop_assets.defs.exports.global_export import build_global_export_file
from beop_assets.defs.exports.jobs import build_delivery_jobs
from beop_assets.defs.exports.sensors import build_deliver_loaded_days_sensor, export_registry_sensor
from beop_assets.defs.partitions import Partitions


def export_definitions(partitions: Partitions, batch_size: int) -> Definitions:
    jobs = build_delivery_jobs(partitions)
    return Definitions(
        assets=[
            build_crm_export_file(partitions.specific_export_days, batch_size),
            build_global_export_file(partitions.global_export_days, batch_size),
        ],
        jobs=jobs,
        sensors=[export_registry_sensor, build_deliver_loaded_days_sensor(partitions.data_days, jobs, batch_size)],
    )
