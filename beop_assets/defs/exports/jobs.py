"""The delivery jobs, one per export mode, and what differs between the two modes."""

from dataclasses import dataclass

from dagster import AssetKey, AssetSelection, DynamicPartitionsDefinition, define_asset_job
from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition

from beop_assets.defs.partitions import Partitions, global_exports, specific_exports


@dataclass(frozen=True)
class ExportMode:
    """Everything that differs between the two export modes, in one row: the dynamic partition set of
    its export ids, the asset that builds and delivers its files, and the job that runs that asset."""

    partitions: DynamicPartitionsDefinition
    asset_key: AssetKey
    job_name: str

    @property
    def partitions_name(self) -> str:
        return self.partitions.name or ""


EXPORT_MODES = {
    "specific": ExportMode(specific_exports, AssetKey("crm_export_file"), "deliver_specific_exports"),
    "global": ExportMode(global_exports, AssetKey("global_export_file"), "deliver_global_exports"),
}


def build_delivery_jobs(partitions: Partitions) -> list[UnresolvedAssetJobDefinition]:
    return [
        define_asset_job(
            EXPORT_MODES["specific"].job_name,
            selection=AssetSelection.assets("crm_export_file"),
            partitions_def=partitions.specific_export_days,
            description="Build and deliver specific exports' CSV files for data days, then verify them.",
        ),
        define_asset_job(
            EXPORT_MODES["global"].job_name,
            selection=AssetSelection.assets("global_export_file"),
            partitions_def=partitions.global_export_days,
            description="Build and deliver global exports' ndJSON.gz files for data days, then verify them.",
        ),
    ]
