"""Global exports: one gzip ndJSON file per (data day, global export), delivered to the customer's bucket.

The JSON layout is built in `exports/global_ndjson.py`; the upload is the delivery IO manager's; a run
covers many exports (exports/batch.py).
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
from beop_assets.defs.exports.checks import GLOBAL_CHECKS, check_specs
from beop_assets.defs.exports.io_managers import DeliveryIOManager
from beop_assets.defs.partitions import SAME_DATA_DAY
from beop_assets.defs.resources import ExportFiles, ExportRegistry, Warehouse
from beop_assets.exports.export_file import ExportFile
from beop_assets.exports.file_names import global_file_name
from beop_assets.exports.global_ndjson import NDJSON_KEYS, build_global_ndjson
from beop_assets.exports.registry import GlobalExport, Registry

# The JSON type of each key of a line (docs/file-contract.md), shown as the file's schema in the UI.
LINE_KEY_TYPES = {"questions": "list", "optins": "list", "forms": "list", "content_version": "integer"}


def build_global_export_file(export_days: MultiPartitionsDefinition, batch_size: int) -> AssetsDefinition:
    # A multi_asset of one asset, for one reason: `can_subset` makes the asset's output and its checks
    # optional, so that a batched run reports each export itself (exports/batch.py) and succeeds.
    @multi_asset(
        specs=[
            AssetSpec(
                "global_export_file",
                group_name="global_exports",
                deps=[AssetDep("participations", partition_mapping=SAME_DATA_DAY)],
                kinds={"json", "gcs"},
                owners=["team:data-platform"],
                tags={"domain": "exports", "transport": "gcs", "format": "ndjson-gzip"},
                description="Every participation of the account for the day as gzip ndJSON, delivered to the "
                "customer's bucket as YYYY-MM-DD_USERNAME.ndjson.gz (a re-run replaces it).",
            )
        ],
        partitions_def=export_days,
        can_subset=True,
        backfill_policy=BackfillPolicy.multi_run(batch_size),
        check_specs=check_specs("global_export_file", GLOBAL_CHECKS, export_days),
    )
    def global_export_file(
        context: AssetExecutionContext,
        registry: ExportRegistry,
        warehouse: Warehouse,
        export_files: ExportFiles,
        gcs_delivery: ResourceParam[DeliveryIOManager],
    ):
        export_files.require()

        def build(loaded: Registry, day: date, export_id: str, run_id: str, key: str) -> tuple[ExportFile, dict]:
            export = loaded.get_as(export_id, GlobalExport)
            username = loaded.checked_reference().accounts[export.account_id]
            file_name = global_file_name(username, day)
            built = build_global_ndjson(
                export,
                day,
                warehouse.spool(day, export_id, run_id) / file_name,
                file_name,
                root=warehouse.day_root(day),
                level=export_files.gzip_level,
                read_threads=export_files.read_threads,
            )
            metadata: dict[str, Any] = {
                "dagster/row_count": built.rows,
                "dagster/column_schema": TableSchema(
                    columns=[TableColumn(k, LINE_KEY_TYPES.get(k, "string")) for k in NDJSON_KEYS]
                ),
            }
            return built, metadata

        yield from deliver_partitions(
            context,
            asset_key=AssetKey("global_export_file"),
            mode="global",
            kind=GlobalExport,
            checks=GLOBAL_CHECKS,
            build=build,
            registry=registry,
            warehouse=warehouse,
            delivery=gcs_delivery,
        )

    return global_export_file
