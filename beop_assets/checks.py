"""Delivery checks: each export partition's delivered file, read back from the customer's server.

They run right after the delivery, in the same run, on the file downloaded again through the IO
manager's `load_input` (downloaded once per run, shared by the checks). An operator sees, per export
and day: the file arrived intact, its layout is the contract's, it holds every row the model has for
it, and no other account's row.

A customer's key may be allowed to create objects but not to read them (GCS Storage Object
Creator). Reading back then answers 403, and the checks say, in their description and metadata,
that they verified from the upload receipt instead: the ledger's crc32c, md5 and size of the stored
object (reported by GCS in the upload response) equal the built file's, and the content checks
read the built file that this receipt proves identical. They neither fail for a denial the
customer chose nor pass silently.
"""

import csv
import gzip
import json
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from dagster import AssetCheckExecutionContext, AssetCheckResult, MetadataValue, PreviewWarning, asset_check

from beop_assets.exports.crm_columns import crm_headers, crm_select, optin_names
from beop_assets.exports.export_file import sha256_of
from beop_assets.exports.global_ndjson import NDJSON_KEYS
from beop_assets.io_managers import DeliveredFile
from beop_assets.model import warehouse as model
from beop_assets.partitions import global_export_days, specific_export_days, split_export_day_key
from beop_assets.resources import ExportRegistry, Warehouse

# Partitioned checks are "preview" in this pinned train; they are what shows a check per export and day.
warnings.filterwarnings("ignore", category=PreviewWarning, message=".*partitions_def on an AssetCheckSpec.*")


def _denied_note(delivered: DeliveredFile) -> str:
    return (
        f"Reading the delivered file back is denied to the export's key ({delivered.read_back_denied}). "
        "Verified from the upload receipt instead"
    )


def _result(delivered: DeliveredFile, passed: bool, metadata: dict) -> AssetCheckResult:
    """A content check's result, saying which bytes it read."""
    if delivered.read_back_denied is None:
        return AssetCheckResult(passed=passed, metadata={**metadata, "verified_from": "read-back"})
    return AssetCheckResult(
        passed=passed,
        description=f"{_denied_note(delivered)}: this check read the built file, which the upload receipt "
        "(crc32c, md5 and size of the stored object) proves identical to what was delivered.",
        metadata={**metadata, "verified_from": "upload receipt"},
    )


def _unreadable(delivered: DeliveredFile) -> AssetCheckResult | None:
    """Neither the delivered file nor the built file it was proven equal to can be read."""
    if delivered.local_path is not None:
        return None
    return AssetCheckResult(
        passed=False,
        description=f"Reading the delivered file back is denied to the export's key ({delivered.read_back_denied}), "
        "and the built copy kept for the checks (one day) is gone: its content cannot be checked. Its size and "
        "checksums are verified from the upload receipt by the intact check; re-run the day to check its content.",
        metadata={"verified_from": "upload receipt", "file_name": delivered.delivery.file_name or ""},
    )


def _intact_from_receipt(delivered: DeliveredFile) -> AssetCheckResult:
    d = delivered.delivery
    stored = {"bytes": d.stored_bytes, "crc32c": d.stored_crc32c, "md5": d.stored_md5}
    built = {"bytes": d.bytes, "crc32c": d.built_crc32c, "md5": d.built_md5}
    proven = None not in stored.values() and stored == built
    return AssetCheckResult(
        passed=proven,
        description=f"{_denied_note(delivered)}: the crc32c, md5 and size that GCS reported for the stored "
        + (
            "object equal the built file's."
            if proven
            else "object, recorded in the ledger, do NOT equal the built file's."
        ),
        metadata={
            "verified_from": "upload receipt",
            **{f"stored_{k}": MetadataValue.text(str(v)) for k, v in stored.items()},
            **{f"built_{k}": MetadataValue.text(str(v)) for k, v in built.items()},
            "generation": d.generation or 0,
            "file_name": d.file_name or "",
        },
    )


def _intact(delivered: DeliveredFile) -> AssetCheckResult:
    if delivered.read_back_denied is not None:
        return _intact_from_receipt(delivered)
    path = _readable_path(delivered)
    size = path.stat().st_size
    digest = sha256_of(path)
    expected = delivered.delivery
    return AssetCheckResult(
        passed=size == expected.bytes and digest == expected.sha256,
        metadata={
            "verified_from": "read-back",
            "delivered_bytes": size,
            "built_bytes": expected.bytes or 0,
            "delivered_sha256": digest,
            "built_sha256": expected.sha256 or "",
            "file_name": delivered.delivery.file_name or "",
        },
    )


def _readable_path(delivered: DeliveredFile) -> Path:
    if delivered.local_path is None:  # the checks that read content ask `_unreadable` first
        raise FileNotFoundError(f"no readable copy of {delivered.delivery.file_name}")
    return delivered.local_path


def _csv_records(delivered: DeliveredFile) -> Iterator[list[str]]:
    with open(_readable_path(delivered), newline="", encoding="utf-8") as handle:
        yield from csv.reader(handle)


def _ndjson_records(delivered: DeliveredFile) -> Iterator[dict[str, Any]]:
    with gzip.open(_readable_path(delivered), "rt", encoding="utf-8") as handle:
        for line in handle:
            yield json.loads(line)


def _context(context: AssetCheckExecutionContext, registry: ExportRegistry):
    day, export_id = split_export_day_key(context.partition_key)
    loaded = registry.load()
    return day, loaded.get(export_id), loaded.checked_reference()


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
    expected = crm_headers(export, optin_names(export, reference))
    header: list[str] = next(_csv_records(crm_export_file), [])
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
    query = crm_select(
        export, optin_names(export, reference), model.loaded_day_file("participations", day, warehouse.day_root(day))
    )
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
    header: list[str] = next(records, [])
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
    if unreadable := _unreadable(global_export_file):
        return unreadable
    bad = [n for n, record in enumerate(_ndjson_records(global_export_file), 1) if list(record) != NDJSON_KEYS]
    return _result(global_export_file, not bad, {"lines_with_other_keys": MetadataValue.json(bad[:20])})


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
    if unreadable := _unreadable(global_export_file):
        return unreadable
    day, export, _ = _context(context, registry)
    con = model.reader()
    try:
        (expected,) = con.execute(
            f"SELECT count(*) FROM read_parquet({model.sql_path(model.loaded_day_file('participations', day, warehouse.day_root(day)))})"
            " WHERE account_id = ?",
            [export.account_id],
        ).fetchall()[0]
    finally:
        con.close()
    lines = sum(1 for _ in _ndjson_records(global_export_file))
    return _result(global_export_file, lines == expected, {"file_rows": lines, "model_rows": expected})


@asset_check(
    asset="global_export_file",
    partitions_def=global_export_days,
    description="Every participation in the file is of a creative of the export's account.",
)
def global_only_own_account(
    context: AssetCheckExecutionContext, global_export_file: DeliveredFile, registry: ExportRegistry
) -> AssetCheckResult:
    if unreadable := _unreadable(global_export_file):
        return unreadable
    _, export, reference = _context(context, registry)
    creatives = {record.get("content_id") for record in _ndjson_records(global_export_file)}
    result = _own_account(creatives, export.account_id, reference)
    return _result(global_export_file, result.passed, dict(result.metadata))


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
