"""The participation model: one load per UTC day produces participations, optins and the rejects.

The three tables come from one pass over the day's landing files, so they are one multi-asset.
They are the only writers of the DuckDB file, hence the `duckdb_model` pool (limit 1; see README).
"""

from datetime import date

from dagster import (
    AssetExecutionContext,
    AssetsDefinition,
    AssetSpec,
    DailyPartitionsDefinition,
    MaterializeResult,
    MetadataValue,
    multi_asset,
)

from beop_assets.defs.resources import Landing, Warehouse
from beop_assets.landing.zone import staged_day
from beop_assets.model import warehouse as model_warehouse
from beop_assets.model.day_loader import load_day

MODEL_POOL = "duckdb_model"


def build_participation_model(data_days: DailyPartitionsDefinition) -> AssetsDefinition:
    @multi_asset(
        specs=[
            AssetSpec(
                "participations",
                description="Every valid participation of the UTC day, deduplicated, with its account, content "
                "and campaign names, and the typed CRM columns every CSV export reads. One Parquet file per day, "
                "served by a view in the DuckDB file.",
                group_name="participation_model",
                kinds={"duckdb", "parquet"},
                owners=["team:data-platform"],
                tags={"domain": "model"},
            ),
            AssetSpec(
                "optins",
                deps=["participations"],
                description="One row per optin answer inside the day's participations, with the optin's name and text.",
                group_name="participation_model",
                kinds={"duckdb", "parquet"},
                owners=["team:data-platform"],
                tags={"domain": "model"},
            ),
            AssetSpec(
                "rejected_participations",
                description="Landing lines the file contract rejects (docs/file-contract.md), with file, line number, reason and the raw line.",
                group_name="participation_model",
                kinds={"duckdb", "parquet"},
                owners=["team:data-platform"],
                tags={"domain": "model"},
            ),
        ],
        partitions_def=data_days,
        pool=MODEL_POOL,
        can_subset=False,
    )
    def participation_model(context: AssetExecutionContext, warehouse: Warehouse, landing: Landing):
        day = date.fromisoformat(context.partition_key)
        pulled = warehouse.pull_every_day()
        if pulled:
            context.log.info(f"{len(pulled)} stored Parquet day file(s) brought into {warehouse.path()}")
        with staged_day(day, landing.url) as staged:
            if not staged.files:
                context.log.warning(f"no participation files for {day}: the day is loaded empty")
            load = load_day(staged, warehouse.path(), memory_limit=warehouse.load_memory_limit)
        root = warehouse.path()
        stored = warehouse.publish_day(day)  # before the day is reported loaded: exports launched then find it
        if stored:
            context.log.info(f"{day}: stored as {', '.join(stored.values())}")
        context.log.info(
            f"{day}: {load.lines} lines in {len(load.files)} files -> {load.participations} participations, "
            f"{load.rejected} rejected {load.rejected_by_reason or ''}"
        )
        yield MaterializeResult(
            asset_key="participations",
            metadata={
                "rows": MetadataValue.int(load.participations),
                "dagster/row_count": MetadataValue.int(load.participations),
                "lines_read": MetadataValue.int(load.lines),
                "rejected": MetadataValue.int(load.rejected),
                "files": MetadataValue.md(
                    "\n".join(f"- `{n}`: {c} lines" for n, c in load.lines_by_file.items()) or "(no files)"
                ),
                "parquet": MetadataValue.path(
                    stored.get("participations") or str(model_warehouse.day_file("participations", day, root))
                ),
            },
        )
        yield MaterializeResult(
            asset_key="optins",
            metadata={
                "rows": MetadataValue.int(load.optins),
                "dagster/row_count": MetadataValue.int(load.optins),
                "parquet": MetadataValue.path(
                    stored.get("optins") or str(model_warehouse.day_file("optins", day, root))
                ),
            },
        )
        yield MaterializeResult(
            asset_key="rejected_participations",
            metadata={
                "rows": MetadataValue.int(load.rejected),
                "dagster/row_count": MetadataValue.int(load.rejected),
                "by_reason": MetadataValue.json(load.rejected_by_reason),
                "parquet": MetadataValue.path(
                    stored.get("rejected_participations")
                    or str(model_warehouse.day_file("rejected_participations", day, root))
                ),
            },
        )

    return participation_model
