"""Delivery checks: each export partition's delivered file, read back from the customer's server.

They run right after the delivery, in the same run, on the file downloaded again through the IO
manager's `load_input` (downloaded once per run, shared by the checks). An operator sees, per export
and day: the file arrived intact, its layout is the contract's, it holds every row the model has for
it, and no other account's row.
"""

import csv
import gzip
import json
import warnings

from dagster import AssetCheckExecutionContext, AssetCheckResult, MetadataValue, PreviewWarning, asset_check

from beop_assets.delivery.io_managers import DeliveredFile
from beop_assets.exports.crm_columns import crm_headers, crm_select
from beop_assets.exports.export_file import sha256_of
from beop_assets.exports.global_ndjson import NDJSON_KEYS
from beop_assets.model import warehouse as model
from beop_assets.partitions import global_export_days, specific_export_days, split_export_day_key
from beop_assets.resources import ExportRegistry, Warehouse

# Partitioned checks are "preview" in this pinned train; they are what shows a check per export and day.
warnings.filterwarnings("ignore", category=PreviewWarning, message=".*partitions_def on an AssetCheckSpec.*")


def _intact(delivered: DeliveredFile) -> AssetCheckResult:
    size = delivered.local_path.stat().st_size
    digest = sha256_of(delivered.local_path)
    expected = delivered.delivery
    return AssetCheckResult(
        passed=size == expected.bytes and digest == expected.sha256,
        metadata={
            "delivered_bytes": size,
            "built_bytes": expected.bytes or 0,
            "delivered_sha256": digest,
            "built_sha256": expected.sha256 or "",
            "file_name": delivered.delivery.file_name or "",
        },
    )


def _csv_records(delivered: DeliveredFile):
    with open(delivered.local_path, newline="", encoding="utf-8") as handle:
        yield from csv.reader(handle)


def _ndjson_records(delivered: DeliveredFile):
    with gzip.open(delivered.local_path, "rt", encoding="utf-8") as handle:
        for line in handle:
            yield json.loads(line)


def _context(context: AssetCheckExecutionContext, registry: ExportRegistry):
    day, export_id = split_export_day_key(context.partition_key)
    loaded = registry.load()
    return day, loaded.get(export_id), loaded.reference


def _own_account(content_ids: set, account_id: str, reference) -> AssetCheckResult:
    foreign = sorted(c for c in content_ids if reference.contents.get(c) != account_id)
    return AssetCheckResult(
        passed=not foreign,
        metadata={"creatives_seen": len(content_ids), "foreign_creatives": MetadataValue.json(foreign[:20])},
    )


# -- specific exports (CSV over SFTP) --------------------------------------------------------------


@asset_check(
    asset="crm_export_file",
    partitions_def=specific_export_days,
    description="The file on the SFTP server has the size and sha256 of the file built.",
)
def crm_file_delivered_intact(crm_export_file: DeliveredFile) -> AssetCheckResult:
    return _intact(crm_export_file)


@asset_check(
    asset="crm_export_file",
    partitions_def=specific_export_days,
    description="The header row is the contract's: fixed columns, then the export's optin columns.",
)
def crm_header_is_contract(
    context: AssetCheckExecutionContext, crm_export_file: DeliveredFile, registry: ExportRegistry
) -> AssetCheckResult:
    _, export, reference = _context(context, registry)
    expected = crm_headers(export, {o: reference.optins[o].name for o in export.optins if o in reference.optins})
    header = next(_csv_records(crm_export_file), [])
    return AssetCheckResult(
        passed=header == expected,
        metadata={"header": MetadataValue.json(header), "expected": MetadataValue.json(expected)},
    )


@asset_check(
    asset="crm_export_file",
    partitions_def=specific_export_days,
    description="The file holds one record per participation the model selects for this export and day.",
)
def crm_rows_match_model(
    context: AssetCheckExecutionContext, crm_export_file: DeliveredFile, registry: ExportRegistry, warehouse: Warehouse
) -> AssetCheckResult:
    day, export, reference = _context(context, registry)
    names = {o: reference.optins[o].name for o in export.optins if o in reference.optins}
    query = crm_select(export, names, model.loaded_day_file("participations", day, warehouse.path()))
    con = model.reader()
    try:
        expected = con.sql(f"SELECT count(*) FROM ({query.sql})", params=query.params).fetchall()[0][0]
    finally:
        con.close()
    records = sum(1 for _ in _csv_records(crm_export_file)) - 1
    return AssetCheckResult(passed=records == expected, metadata={"file_rows": records, "model_rows": expected})


@asset_check(
    asset="crm_export_file",
    partitions_def=specific_export_days,
    description="Every creative in the file belongs to the export's account.",
)
def crm_only_own_account(
    context: AssetCheckExecutionContext, crm_export_file: DeliveredFile, registry: ExportRegistry
) -> AssetCheckResult:
    _, export, reference = _context(context, registry)
    records = _csv_records(crm_export_file)
    header = next(records, [])
    column = header.index("creative-id") if "creative-id" in header else None
    creatives = {row[column] for row in records} if column is not None else set()
    return _own_account(creatives, export.account_id, reference)


# -- global exports (ndJSON.gz to GCS) -------------------------------------------------------------


@asset_check(
    asset="global_export_file",
    partitions_def=global_export_days,
    description="The object in the bucket has the size and sha256 of the file built.",
)
def global_file_delivered_intact(global_export_file: DeliveredFile) -> AssetCheckResult:
    return _intact(global_export_file)


@asset_check(
    asset="global_export_file",
    partitions_def=global_export_days,
    description="Every line is one JSON object with the contract's keys, in the contract's order.",
)
def global_lines_follow_contract(global_export_file: DeliveredFile) -> AssetCheckResult:
    bad = [n for n, record in enumerate(_ndjson_records(global_export_file), 1) if list(record) != NDJSON_KEYS]
    return AssetCheckResult(passed=not bad, metadata={"lines_with_other_keys": MetadataValue.json(bad[:20])})


@asset_check(
    asset="global_export_file",
    partitions_def=global_export_days,
    description="The file holds every participation of the account for the day.",
)
def global_rows_match_model(
    context: AssetCheckExecutionContext,
    global_export_file: DeliveredFile,
    registry: ExportRegistry,
    warehouse: Warehouse,
) -> AssetCheckResult:
    day, export, _ = _context(context, registry)
    con = model.reader()
    try:
        expected = con.execute(
            f"SELECT count(*) FROM read_parquet({model.sql_path(model.loaded_day_file('participations', day, warehouse.path()))})"
            " WHERE account_id = ?",
            [export.account_id],
        ).fetchone()[0]
    finally:
        con.close()
    lines = sum(1 for _ in _ndjson_records(global_export_file))
    return AssetCheckResult(passed=lines == expected, metadata={"file_rows": lines, "model_rows": expected})


@asset_check(
    asset="global_export_file",
    partitions_def=global_export_days,
    description="Every participation in the file is of a creative of the export's account.",
)
def global_only_own_account(
    context: AssetCheckExecutionContext, global_export_file: DeliveredFile, registry: ExportRegistry
) -> AssetCheckResult:
    _, export, reference = _context(context, registry)
    creatives = {record.get("content_id") for record in _ndjson_records(global_export_file)}
    return _own_account(creatives, export.account_id, reference)


delivery_checks = [
    crm_file_delivered_intact,
    crm_header_is_contract,
    crm_rows_match_model,
    crm_only_own_account,
    global_file_delivered_intact,
    global_lines_follow_contract,
    global_rows_match_model,
    global_only_own_account,
]
