"""The jobs operators launch, backfill and schedule: load a day; deliver specific or global exports;
check a day's deliveries against the deadline; purge what is older than the retention window."""

from dataclasses import dataclass
from datetime import UTC, datetime

from dagster import (
    AssetKey,
    AssetSelection,
    DynamicPartitionsDefinition,
    Nothing,
    OpExecutionContext,
    Out,
    Output,
    define_asset_job,
    in_process_executor,
    job,
    op,
)
from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition

from beop_assets import settings
from beop_assets.partitions import data_days, global_export_days, global_exports, specific_export_days, specific_exports
from beop_assets.resources import Warehouse

load_participations_job = define_asset_job(
    "load_participations",
    selection=AssetSelection.assets("participations", "optins", "rejected_participations"),
    partitions_def=data_days,
    description="Load one UTC day of the landing zone into the participation model.",
)

deliver_specific_exports_job = define_asset_job(
    "deliver_specific_exports",
    selection=AssetSelection.assets("crm_export_file"),
    partitions_def=specific_export_days,
    description="Build and deliver one specific export's CSV for one data day, then verify it.",
)

deliver_global_exports_job = define_asset_job(
    "deliver_global_exports",
    selection=AssetSelection.assets("global_export_file"),
    partitions_def=global_export_days,
    description="Build and deliver one global export's ndJSON.gz for one data day, then verify it.",
)

detect_missed_deliveries_job = define_asset_job(
    "detect_missed_deliveries",
    selection=AssetSelection.assets("missed_deliveries"),
    partitions_def=data_days,
    description="Flag (and announce) every enabled export without a successful delivery of the data day.",
)


@dataclass(frozen=True)
class ExportMode:
    """Everything that differs between the two export modes, in one row: the dynamic partition set of
    its export ids, the asset that builds and delivers its files, and the job that runs that asset."""

    partitions: DynamicPartitionsDefinition
    asset_key: AssetKey
    job: UnresolvedAssetJobDefinition

    @property
    def partitions_name(self) -> str:
        return self.partitions.name or ""


EXPORT_MODES = {
    "specific": ExportMode(specific_exports, AssetKey("crm_export_file"), deliver_specific_exports_job),
    "global": ExportMode(global_exports, AssetKey("global_export_file"), deliver_global_exports_job),
}


@op(
    out=Out(Nothing),
    description="Removes landing days, model days, old Parquet versions, spool folders and ledger rows "
    "older than BEOP_RETENTION_DAYS; its output metadata lists what was removed.",
)
def purge_expired(context: OpExecutionContext, warehouse: Warehouse):
    from dagster import MetadataValue

    from beop_assets.retention import purge_expired as purge

    current = settings.current()
    report = purge(
        current.landing, warehouse.path(), current.retention_days, datetime.now(UTC).date(), store=warehouse.store_url()
    )
    model_days = sorted({d for days in [*report.model_days.values(), *report.stored_days.values()] for d in days})
    context.log.info(
        f"kept data days from {report.first_kept_day} ({current.retention_days} days); removed "
        f"{len(report.landing_days)} landing days, {len(model_days)} model days, "
        f"{len(report.parquet_versions)} old Parquet versions, {len(report.spool_folders)} spool folders, "
        f"{report.ledger_rows} ledger rows"
    )
    yield Output(
        None,
        metadata={
            "retention_days": MetadataValue.int(current.retention_days),
            "first_kept_day": MetadataValue.text(report.first_kept_day.isoformat()),
            "landing_days_removed": MetadataValue.json(report.landing_days),
            "model_days_removed": MetadataValue.json(report.model_days),
            "stored_days_removed": MetadataValue.json(report.stored_days),
            "database_rows_removed": MetadataValue.json(report.database_rows),
            "parquet_versions_removed": MetadataValue.int(len(report.parquet_versions)),
            "spool_folders_removed": MetadataValue.int(len(report.spool_folders)),
            "ledger_rows_removed": MetadataValue.int(report.ledger_rows),
        },
    )


@job(
    name="purge_expired_data",
    executor_def=in_process_executor,
    description="Purge personal data older than BEOP_RETENTION_DAYS (landing, model, spool, ledger).",
    tags={"beop/kind": "retention"},
)
def purge_expired_data_job():
    purge_expired()
