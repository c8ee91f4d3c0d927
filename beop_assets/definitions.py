"""The one place where the product is assembled for Dagster (`dagster dev`, the CLI and the tests).

Runs use the in-process executor: an export run is one build-and-deliver step plus its checks,
and a process per step would cost more than the work itself (see README, "Dagster overhead").
"""

from dagster import Definitions, in_process_executor

from beop_assets.assets.global_exports import global_export_file
from beop_assets.assets.missed_deliveries import missed_deliveries
from beop_assets.assets.model import participation_model
from beop_assets.assets.specific_exports import crm_export_file
from beop_assets.checks import delivery_checks
from beop_assets.io_managers import GcsDeliveryIOManager, SftpDeliveryIOManager
from beop_assets.jobs import (
    deliver_global_exports_job,
    deliver_specific_exports_job,
    detect_missed_deliveries_job,
    load_participations_job,
    purge_expired_data_job,
)
from beop_assets.resources import ExportRegistry, Warehouse
from beop_assets.schedules import missed_deliveries_schedule, nightly_participations_schedule, retention_schedule
from beop_assets.sensors import alert_on_run_failure, deliver_loaded_days_sensor, export_registry_sensor

registry = ExportRegistry()
warehouse = Warehouse()

defs = Definitions(
    assets=[participation_model, crm_export_file, global_export_file, missed_deliveries],
    asset_checks=delivery_checks,
    jobs=[
        load_participations_job,
        deliver_specific_exports_job,
        deliver_global_exports_job,
        detect_missed_deliveries_job,
        purge_expired_data_job,
    ],
    schedules=[nightly_participations_schedule, missed_deliveries_schedule, retention_schedule],
    sensors=[export_registry_sensor, deliver_loaded_days_sensor, alert_on_run_failure],
    resources={
        "registry": registry,
        "warehouse": warehouse,
        "sftp_delivery": SftpDeliveryIOManager(registry=registry, warehouse=warehouse),
        "gcs_delivery": GcsDeliveryIOManager(registry=registry, warehouse=warehouse),
    },
    executor=in_process_executor,
)
