"""Global exports: one gzip ndJSON file per (data day, global export), delivered to the customer's bucket.

The JSON layout is built in `exports/global_ndjson.py`; the upload in `delivery/gcs.py`, driven by
the delivery IO manager.
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
from beop_assets.exports.export_file import ExportFile
from beop_assets.exports.file_names import global_file_name
from beop_assets.exports.global_ndjson import NDJSON_KEYS, build_global_ndjson
from beop_assets.exports.registry import GlobalExport

# The JSON type of each key of a line (docs/file-contract.md), shown as the file's schema in the UI.
LINE_KEY_TYPES = {"questions": "list", "optins": "list", "forms": "list", "content_version": "integer"}


def build_global_export_file(export_days: MultiPartitionsDefinition) -> AssetsDefinition:
    @asset(
        partitions_def=export_days,
        group_name="global_exports",
        io_manager_key="gcs_delivery",
        deps=[AssetDep("participations", partition_mapping=SAME_DATA_DAY)],
        kinds={"json", "gcs"},
        owners=["team:data-platform"],
        tags={"domain": "exports", "transport": "gcs", "format": "ndjson-gzip"},
        description="Every participation of the account for the day as gzip ndJSON, delivered to the "
        "customer's bucket as YYYY-MM-DD_USERNAME.ndjson.gz (a re-run replaces it).",
    )
    def global_export_file(
        context: AssetExecutionContext, registry: ExportRegistry, warehouse: Warehouse, export_files: ExportFiles
    ) -> ExportFile:
        export_files.require()
        day, export_id = split_export_day_key(context.partition_key)
        loaded = registry.load()
        export = loaded.get_as(export_id, GlobalExport)
        username = loaded.checked_reference().accounts[export.account_id]
        file_name = global_file_name(username, day)
        built = build_global_ndjson(
            export,
            day,
            warehouse.spool(day, export_id, context.run_id) / file_name,
            file_name,
            root=warehouse.day_root(day),
            level=export_files.gzip_level,
            read_threads=export_files.read_threads,
        )
        context.log.info(f"{export_id} {day}: built {file_name} ({built.rows} rows, {built.bytes} bytes)")
        context.add_output_metadata(
            {
                "dagster/row_count": built.rows,
                "dagster/column_schema": TableSchema(
                    columns=[TableColumn(k, LINE_KEY_TYPES.get(k, "string")) for k in NDJSON_KEYS]
                ),
            }
        )
        return built

    return global_export_file
