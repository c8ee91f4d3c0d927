"""Delivery checks: each export partition's delivered file, read back from the customer's server.

They run right after each export's delivery, in the export asset's own step (a batched run delivers
many exports; exports/batch.py), on the file downloaded again through the delivery IO manager
(`read_back`): one download per export for its four checks, each check with its own name, result and
metadata in the UI, linked to the export's materialization. An operator sees, per export and day: the file arrived intact, its layout is the contract's, it holds every row the model has for
it, and no other account's row.

A customer's key may be allowed to create objects but not to read them (GCS Storage Object
Creator). Reading back then answers 403, and the checks say, in their description and metadata,
that they verified from the upload receipt instead: the ledger's crc32c, md5 and size of the stored
object (reported by GCS in the upload response) equal the built file's, and the content checks
read the built file that this receipt proves identical. They neither fail for a denial the
customer chose nor pass silently.
"""

import csv
import json
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from dagster import AssetCheckResult, AssetCheckSpec, MetadataValue, PreviewWarning
from zlib_ng import gzip_ng

from beop_assets.defs.exports.io_managers import DeliveredFile
from beop_assets.defs.resources import Warehouse
from beop_assets.exports import spool
from beop_assets.exports.crm_columns import crm_headers, crm_select, optin_names
from beop_assets.exports.export_file import sha256_of
from beop_assets.exports.global_ndjson import NDJSON_KEYS
from beop_assets.model import warehouse as model

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


def _intact(delivered: DeliveredFile, **_: Any) -> AssetCheckResult:
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
    with gzip_ng.open(_readable_path(delivered), "rt", encoding="utf-8") as handle:
        for line in handle:
            yield json.loads(line)


# A check: (name, description, what it computes from the file, export, reference, warehouse).
Check = tuple[str, str, Callable[..., AssetCheckResult]]


def evaluate_checks(
    checks: list[Check], delivered: DeliveredFile, *, day, export, reference, warehouse
) -> tuple[list[tuple[str, AssetCheckResult]], Exception | None]:
    """Every check's result, named, and the first error a check raised (the others still report: the
    caller fails the export with it). The copy read back is removed afterwards, checked or not: it has
    no further use, and it is personal data."""
    results: list[tuple[str, AssetCheckResult]] = []
    failure: Exception | None = None
    try:
        for name, _description, compute in checks:
            try:
                results.append(
                    (name, compute(delivered, day=day, export=export, reference=reference, warehouse=warehouse))
                )
            except Exception as exc:  # reported after the other checks, as the export's failure
                failure = failure or exc
    finally:
        if delivered.folder is not None:
            spool.remove(delivered.folder)
    return results, failure


def check_specs(asset: str, checks: list[Check], partitions_def) -> list[AssetCheckSpec]:
    """The checks of a mode, declared on its export asset: the asset's step evaluates them for each
    export it delivered (exports/batch.py), so a batched run reports every export's checks even when a
    batchmate failed (a separate check step would be skipped by that failure)."""
    return [
        AssetCheckSpec(check, asset=asset, description=about, partitions_def=partitions_def)
        for check, about, _ in checks
    ]


def _own_account(content_ids: set, account_id: str, reference) -> AssetCheckResult:
    foreign = sorted(c for c in content_ids if reference.contents.get(c) != account_id)
    return AssetCheckResult(
        passed=not foreign,
        metadata={"creatives_seen": len(content_ids), "foreign_creatives": MetadataValue.json(foreign[:20])},
    )


# -- specific exports (CSV over SFTP) --------------------------------------------------------------


def _crm_header(delivered: DeliveredFile, *, export, reference, **_: Any) -> AssetCheckResult:
    expected = crm_headers(export, optin_names(export, reference))
    header: list[str] = next(_csv_records(delivered), [])
    return AssetCheckResult(
        passed=header == expected,
        metadata={"header": MetadataValue.json(header), "expected": MetadataValue.json(expected)},
    )


def _crm_rows(delivered: DeliveredFile, *, day, export, reference, warehouse: Warehouse, **_: Any) -> AssetCheckResult:
    query = crm_select(
        export, optin_names(export, reference), model.loaded_day_file("participations", day, warehouse.day_root(day))
    )
    con = model.reader(warehouse.read_threads)
    try:
        expected = con.sql(f"SELECT count(*) FROM ({query.sql})", params=query.params).fetchall()[0][0]
    finally:
        con.close()
    records = sum(1 for _ in _csv_records(delivered)) - 1
    return AssetCheckResult(passed=records == expected, metadata={"file_rows": records, "model_rows": expected})


def _crm_own_account(delivered: DeliveredFile, *, export, reference, **_: Any) -> AssetCheckResult:
    records = _csv_records(delivered)
    header: list[str] = next(records, [])
    column = header.index("creative-id") if "creative-id" in header else None
    creatives = {row[column] for row in records} if column is not None else set()
    return _own_account(creatives, export.account_id, reference)


CRM_CHECKS: list[Check] = [
    (
        "crm_file_delivered_intact",
        "The file on the SFTP server has the size and sha256 of the file built.",
        _intact,
    ),
    (
        "crm_header_is_contract",
        "The header row is the contract's: fixed columns, then the export's optin columns.",
        _crm_header,
    ),
    (
        "crm_rows_match_model",
        "The file holds one record per participation the model selects for this export and day.",
        _crm_rows,
    ),
    ("crm_only_own_account", "Every creative in the file belongs to the export's account.", _crm_own_account),
]


# -- global exports (ndJSON.gz to GCS) -------------------------------------------------------------


def _global_lines(delivered: DeliveredFile, **_: Any) -> AssetCheckResult:
    if unreadable := _unreadable(delivered):
        return unreadable
    bad = [n for n, record in enumerate(_ndjson_records(delivered), 1) if list(record) != NDJSON_KEYS]
    return _result(delivered, not bad, {"lines_with_other_keys": MetadataValue.json(bad[:20])})


def _global_rows(delivered: DeliveredFile, *, day, export, warehouse: Warehouse, **_: Any) -> AssetCheckResult:
    if unreadable := _unreadable(delivered):
        return unreadable
    participations = model.sql_path(model.loaded_day_file("participations", day, warehouse.day_root(day)))
    con = model.reader(warehouse.read_threads)
    try:
        (expected,) = con.execute(
            f"SELECT count(*) FROM read_parquet({participations}) WHERE account_id = ?", [export.account_id]
        ).fetchall()[0]
    finally:
        con.close()
    lines = sum(1 for _ in _ndjson_records(delivered))
    return _result(delivered, lines == expected, {"file_rows": lines, "model_rows": expected})


def _global_own_account(delivered: DeliveredFile, *, export, reference, **_: Any) -> AssetCheckResult:
    if unreadable := _unreadable(delivered):
        return unreadable
    creatives = {record.get("content_id") for record in _ndjson_records(delivered)}
    result = _own_account(creatives, export.account_id, reference)
    return _result(delivered, result.passed, dict(result.metadata))


GLOBAL_CHECKS: list[Check] = [
    (
        "global_file_delivered_intact",
        "The object in the bucket has the size and sha256 of the file built.",
        _intact,
    ),
    (
        "global_lines_follow_contract",
        "Every line is one JSON object with the contract's keys, in the contract's order.",
        _global_lines,
    ),
    ("global_rows_match_model", "The file holds every participation of the account for the day.", _global_rows),
    (
        "global_only_own_account",
        "Every participation in the file is of a creative of the export's account.",
        _global_own_account,
    ),
]
