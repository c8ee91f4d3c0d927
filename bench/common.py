"""What the benchmark's stages share: the exports it builds, and the anchor queries derived from the
product's own SQL (never a copy of it), so that the anchor and the product select the same rows.

Only bench code lives here: every measured path is a product function imported from `beop_assets`.
"""

from __future__ import annotations

import json
import subprocess
from datetime import date
from pathlib import Path

from beop_assets.exports.crm_columns import crm_select
from beop_assets.exports.global_ndjson import GLOBAL_NDJSON_SQL
from beop_assets.exports.registry import GlobalExport, SpecificExport
from beop_assets.model.events import EVENT_STRUCTURE

SFTP_PASSWORD_ENV = "BEOP_BENCH_SFTP_PASSWORD"
ACCOUNT = "a_1"  # acme: 5 of the generator's 11 contents, ~45% of a day's participations

# The measured crm-participation export: every campaign and the campaign-less content of acme, i.e.
# every acme participation (the same rows as the global export), with its four optin columns
# (two of them share the name "Newsletter ACME": the duplicate-header rule is exercised too).
CRM_EXPORT = dict(
    id="bench-crm",
    account_id=ACCOUNT,
    mode="specific",
    type="crm-participation",
    name="Bench CRM",
    campaigns=["cmp_1", "cmp_2", "cmp_3"],
    contents=["c_5"],
    optins=["o_1", "o_3", "o_2", "o_4"],
)
GLOBAL_EXPORT = dict(id="bench-global", account_id=ACCOUNT, mode="global")

# optin id -> name, as the asset reads them from the reference data (beop_assets.demo.generate)
OPTIN_NAMES = {
    "o_1": "Newsletter ACME",
    "o_2": "Offres partenaires",
    "o_3": "Newsletter ACME",
    "o_4": "Règlement du jeu",
}


def crm_export(sftp: dict) -> SpecificExport:
    return SpecificExport(**CRM_EXPORT, sftp=sftp)


def global_export(gcs: dict) -> GlobalExport:
    return GlobalExport(**GLOBAL_EXPORT, gcs=gcs)


def sql_literal(text: str | Path) -> str:
    return "'" + str(text).replace("'", "''") + "'"


def crm_anchor(export: SpecificExport, participations: Path, out: Path) -> tuple[str, dict]:
    """DuckDB's own `COPY (<the product's crm_select query>) TO csv`, with the same bound parameters."""
    query = crm_select(export, OPTIN_NAMES, participations)
    return f"COPY ({query.sql}) TO {sql_literal(out)} (FORMAT CSV, HEADER true)", query.params


def json_anchor_select() -> str:
    """The product's global ndJSON query with its struct as columns instead of one `to_json` text: the
    same rows, and `COPY (FORMAT JSON)` writes each row as the same object, keys in the same order."""
    head, tail = "SELECT to_json(struct_pack(", ")) || chr(10) AS line"
    if head not in GLOBAL_NDJSON_SQL or tail not in GLOBAL_NDJSON_SQL:
        raise RuntimeError("GLOBAL_NDJSON_SQL changed shape: update bench/common.py json_anchor_select")
    return GLOBAL_NDJSON_SQL.replace(head, "SELECT unnest(struct_pack(", 1).replace(tail, "))", 1)


def json_anchor(participations: Path, out: Path, compression: str = "GZIP") -> tuple[str, dict]:
    return (
        f"COPY ({json_anchor_select()}) TO {sql_literal(out)} (FORMAT JSON, COMPRESSION {compression})",
        {"parquet": str(participations), "account_id": ACCOUNT},
    )


def _sql_type(spec) -> str:
    if isinstance(spec, str):
        return spec
    if isinstance(spec, list):
        return _sql_type(spec[0]) + "[]"
    return "STRUCT(" + ", ".join(f'"{k}" {_sql_type(v)}' for k, v in spec.items()) + ")"


def load_anchor(files: list[Path], out: Path) -> str:
    """DuckDB reading the landing files directly with read_json (the product's event structure as the
    column types) and writing them as one zstd Parquet file, without any validation."""
    columns = (
        "{" + ", ".join(f"{sql_literal(k)}: {sql_literal(_sql_type(v))}" for k, v in EVENT_STRUCTURE.items()) + "}"
    )
    listing = "[" + ", ".join(sql_literal(f) for f in files) + "]"
    return (
        f"COPY (SELECT * FROM read_json({listing}, format='newline_delimited', columns={columns}, "
        f"maximum_object_size=67108864)) TO {sql_literal(out)} (FORMAT parquet, COMPRESSION zstd)"
    )


def dump(obj) -> str:
    return json.dumps(obj, default=str)


def parse_day(text: str) -> date:
    return date.fromisoformat(text)


def openssh_put(
    source: Path,
    destination: str,
    *,
    host: str,
    port: int,
    username: str,
    key: Path | str,
    known_hosts: Path | str,
    scratch: Path,
) -> None:
    """The anchor of every SFTP figure: OpenSSH's own `sftp` client putting `source` (key
    authentication, host key checked), login included."""
    batch = scratch / "sftp-batch.txt"
    batch.write_text(f"put {source} {destination}\n")
    done = subprocess.run(
        [
            "sftp",
            "-q",
            "-b",
            str(batch),
            "-P",
            str(port),
            "-i",
            str(key),
            "-o",
            f"UserKnownHostsFile={known_hosts}",
            "-o",
            "StrictHostKeyChecking=yes",
            "-o",
            "BatchMode=yes",
            f"{username}@{host}",
        ],
        capture_output=True,
        text=True,
    )
    if done.returncode:
        raise RuntimeError(f"sftp failed: {done.stderr}")
