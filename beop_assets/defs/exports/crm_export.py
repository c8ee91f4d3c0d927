"""Specific exports: one CSV file per (data day, specific export), delivered over SFTP.

The columns are decided in `exports/crm_columns.py`; the file is built in `exports/crm_csv.py`; the
upload (with its retries) is the delivery IO manager's; a run covers many exports (exports/batch.py).
"""

from datetime import date
from typing import Any

from dagster import (
    AssetDep,
    AssetExecutionContext,
    AssetKey,
    AssetsDefinition,
    AssetSpec,
    BackfillPolicy,
    MultiPartitionsDefinition,
    ResourceParam,
    TableColumn,
    TableSchema,
    multi_asset,
)

from beop_assets.defs.exports.batch import deliver_partitions
from beop_assets.defs.exports.checks import CRM_CHECKS, check_specs
from beop_assets.defs.exports.io_managers import DeliveryIOManager
from beop_assets.defs.partitions import SAME_DATA_DAY
from beop_assets.defs.resources import ExportFiles, ExportRegistry, Warehouse
from beop_assets.exports.crm_columns import FIXED_COLUMNS, optin_headers, optin_names
from beop_assets.exports.crm_csv import build_crm_csv
from beop_assets.exports.export_file import ExportFile
from beop_assets.exports.file_names import crm_file_name, delivery_uuid
from beop_assets.exports.registry import Registry, SpecificExport


def build_crm_export_file(export_days: MultiPartitionsDefinition, batch_size: int) -> AssetsDefinition:
    # A multi_asset of one asset, for one reason: `can_subset` makes the asset's output and its checks
    # optional, so that a batched run reports each export itself (exports/batch.py) and succeeds.
    @multi_asset(
        specs=[
            AssetSpec(
                "crm_export_file",
                group_name="specific_exports",
                deps=[AssetDep("participations", partition_mapping=SAME_DATA_DAY)],
                kinds={"csv", "sftp"},
                owners=["team:data-platform"],
                tags={"domain": "exports", "transport": "sftp", "format": "csv"},
                description="The day's CSV file of one specific export (crm-participation or crm-optin), "
                "delivered to the customer's SFTP directory as YYYYMMDD_TYPE_NAME_UUID.csv.",
            )
        ],
        partitions_def=export_days,
        can_subset=True,
        backfill_policy=BackfillPolicy.multi_run(batch_size),
        check_specs=check_specs("crm_export_file", CRM_CHECKS, export_days),
    )
    def crm_export_file(
        context: AssetExecutionContext,
        registry: ExportRegistry,
        warehouse: Warehouse,
        export_files: ExportFiles,
        sftp_delivery: ResourceParam[DeliveryIOManager],
    ):
        def build(loaded: Registry, day: date, export_id: str, run_id: str, key: str) -> tuple[ExportFile, dict]:
            export = loaded.get_as(export_id, SpecificExport)
            names = optin_names(export, loaded.checked_reference())
            file_name = crm_file_name(export.type, export.name, day, delivery_uuid(run_id, key))
            built = build_crm_csv(
                export,
                day,
                names,
                warehouse.spool(day, export_id, run_id) / file_name,
                file_name,
                root=warehouse.day_root(day),
                read_threads=export_files.read_threads,
            )
            metadata: dict[str, Any] = {
                "dagster/row_count": built.rows,
                "dagster/column_schema": TableSchema(
                    columns=[TableColumn(c, "string") for c in FIXED_COLUMNS]
                    + [
                        TableColumn(h, "boolean", description=f"optin {o}: true, false, or empty if not asked")
                        for o, h in zip(export.optins, optin_headers(export.optins, names), strict=True)
                    ]
                ),
            }
            return built, metadata

        yield from deliver_partitions(
            context,
            asset_key=AssetKey("crm_export_file"),
            mode="specific",
            kind=SpecificExport,
            checks=CRM_CHECKS,
            build=build,
            registry=registry,
            warehouse=warehouse,
            delivery=sftp_delivery,
        )

    return crm_export_file
