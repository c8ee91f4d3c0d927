"""Specific exports: one CSV file per (data day, specific export), delivered over SFTP.

The columns are decided in `exports/crm_columns.py`; the file is built in `exports/crm_csv.py`;
the upload (with its retries) is in `delivery/sftp.py`, driven by the delivery IO manager.
"""

from dagster import (
    AssetDep,
    AssetExecutionContext,
    AssetsDefinition,
    MultiPartitionsDefinition,
    TableColumn,
    TableSchema,
    asset,
)

from beop_assets.defs.partitions import SAME_DATA_DAY, split_export_day_key
from beop_assets.defs.resources import ExportFiles, ExportRegistry, Warehouse
from beop_assets.exports.crm_columns import FIXED_COLUMNS, optin_headers, optin_names
from beop_assets.exports.crm_csv import build_crm_csv
from beop_assets.exports.export_file import ExportFile
from beop_assets.exports.file_names import crm_file_name, delivery_uuid
from beop_assets.exports.registry import SpecificExport


def build_crm_export_file(export_days: MultiPartitionsDefinition) -> AssetsDefinition:
    @asset(
        partitions_def=export_days,
        group_name="specific_exports",
        io_manager_key="sftp_delivery",
        deps=[AssetDep("participations", partition_mapping=SAME_DATA_DAY)],
        kinds={"csv", "sftp"},
        owners=["team:data-platform"],
        tags={"domain": "exports", "transport": "sftp", "format": "csv"},
        description="The day's CSV file of one specific export (crm-participation or crm-optin), "
        "delivered to the customer's SFTP directory as YYYYMMDD_TYPE_NAME_UUID.csv.",
    )
    def crm_export_file(
        context: AssetExecutionContext, registry: ExportRegistry, warehouse: Warehouse, export_files: ExportFiles
    ) -> ExportFile:
        day, export_id = split_export_day_key(context.partition_key)
        loaded = registry.load()
        export = loaded.get_as(export_id, SpecificExport)
        names = optin_names(export, loaded.checked_reference())
        file_name = crm_file_name(export.type, export.name, day, delivery_uuid(context.run_id, context.partition_key))
        built = build_crm_csv(
            export,
            day,
            names,
            warehouse.spool(day, export_id, context.run_id) / file_name,
            file_name,
            root=warehouse.day_root(day),
            read_threads=export_files.read_threads,
        )
        context.log.info(f"{export_id} {day}: built {file_name} ({built.rows} rows, {built.bytes} bytes)")
        context.add_output_metadata(
            {
                "dagster/row_count": built.rows,
                "dagster/column_schema": TableSchema(
                    columns=[TableColumn(c, "string") for c in FIXED_COLUMNS]
                    + [
                        TableColumn(h, "boolean", description=f"optin {o}: true, false, or empty if not asked")
                        for o, h in zip(export.optins, optin_headers(export.optins, names), strict=True)
                    ]
                ),
            }
        )
        return built

    return crm_export_file
