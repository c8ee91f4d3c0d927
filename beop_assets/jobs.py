"""The jobs operators launch, backfill and schedule: load a day; deliver specific or global exports."""

from dagster import AssetSelection, define_asset_job

from beop_assets.partitions import data_days, global_export_days, specific_export_days

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

EXPORT_JOBS_BY_MODE = {"specific": deliver_specific_exports_job, "global": deliver_global_exports_job}
