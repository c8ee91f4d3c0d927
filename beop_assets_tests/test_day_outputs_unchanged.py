"""The model and the exports of a day holding every fault kind are exactly what they were.

The golden file (`golden/hostile_day.json.gz`) was written by the loader and the builders as they were
before the streaming loader (the reference, byte for byte): every row of the three Parquet days in file
order (participations, optins, rejected lines with their reasons), what the DuckDB file serves for the
day, the load's counts, the bytes of three CSV exports (one with `neutralize_formulas`) and the
decompressed lines of a global export. Any change of validation, reasons, duplicates rule, order or
output fails here. Columns added to the participations day later (the stored CRM columns) are not in
the golden rows and are checked against an independent Python derivation instead.

Regenerate only on purpose, with the code whose outputs are the reference:
`BEOP_WRITE_GOLDEN=1 .venv/bin/python -m pytest beop_assets_tests/test_day_outputs_unchanged.py`.
"""

from __future__ import annotations

import gzip
import json
import os
import random
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import pytest

from beop_assets.demo.generate import generate_day
from beop_assets.exports.crm_csv import build_crm_csv
from beop_assets.exports.global_ndjson import build_global_ndjson
from beop_assets.exports.registry import GcsTarget, GlobalExport, SftpTarget, SpecificExport
from beop_assets.landing.zone import staged_day
from beop_assets.model import warehouse
from beop_assets.model.day_loader import load_day

pytestmark = pytest.mark.timeout(300)

DAY = date(2026, 11, 25)
GOLDEN = Path(__file__).parent / "golden" / "hostile_day.json.gz"
SFTP = SftpTarget(
    host="sftp.example.com", username="u", directory="/in", password_env="UNUSED", insecure_skip_host_key_check=True
)
GCS = GcsTarget(bucket="golden-bucket", credentials_env="UNUSED")
OPTIN_NAMES = {"o_1": "Newsletter ACME", "o_2": "Offres partenaires", "o_3": "Newsletter ACME", "o_4": "Règlement"}
CRM_EXPORTS = [
    SpecificExport(
        id="crm-all",
        account_id="a_1",
        mode="specific",
        type="crm-participation",
        name="All",
        campaigns=["cmp_1", "cmp_2", "cmp_3"],
        contents=["c_5"],
        optins=["o_1", "o_3", "o_2", "o_4", "o_5"],
        sftp=SFTP,
    ),
    SpecificExport(
        id="crm-optin",
        account_id="a_1",
        mode="specific",
        type="crm-optin",
        name="Optin",
        optins=["o_2", "o_1"],
        sftp=SFTP,
    ),
    SpecificExport(
        id="crm-safe",
        account_id="a_1",
        mode="specific",
        type="crm-participation",
        name="Safe",
        campaigns=["cmp_1"],
        contents=["c_5", "c_6"],
        optins=["o_4"],
        neutralize_formulas=True,
        sftp=SFTP,
    ),
]
# The typed form-field columns of a CRM file, in order (docs/file-contract.md).
FIELD_TYPES = [
    "email",
    "phone",
    "firstname",
    "lastname",
    "gender",
    "birthdate",
    "address-line-1",
    "address-line-2",
    "address-zip-code",
    "address-city",
    "address-country",
]


def _event(pid: str, ts: str = "2026-11-25T12:00:00.000Z", **fields: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "participation_id": pid,
        "timestamp": ts,
        "account_id": "a_1",
        "content_id": "c_1",
        "content_version": 2,
        "publisher_id": "pub_9",
        "publisher_name": "Hostile",
        "page_url": "https://hostile.example/",
    }
    event.update(fields)
    return event


def _field(field_type: Any, value: Any, n: int = 1) -> dict[str, Any]:
    return {"field_id": f"fd_{n}", "field_name": str(field_type), "field_type": field_type, "field_value": value}


def _line(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False).encode()


def write_hostile_day(landing: Path) -> None:
    """The generator's day with its faults file, plus one file per hostile kind of input."""
    generate_day(landing, DAY, 400, seed=11, faults=True)  # part-00000, part-00001.ndjson.gz, part-faults
    folder = landing / "participations" / f"date={DAY.isoformat()}"
    first_generated = (folder / "part-00000.ndjson").read_text(encoding="utf-8").splitlines()[0]
    generated_pid = json.loads(first_generated)["participation_id"]
    control = "<" + "".join(chr(c) for c in range(0x20)) + "\x7f\u2028\u2029\u0085>"
    lines: list[bytes] = [
        b"",  # blank lines are not records
        b"   ",
        b"[1, 2, 3]",
        b'"just a string"',
        b"null",
        b"42",
        b"{not json",
        _line({"timestamp": "2026-11-25T01:00:00Z", "account_id": "a_1", "content_id": "c_1"}),
        _line({"participation_id": "", "timestamp": "2026-11-25T01:00:00Z", "account_id": "a_1", "content_id": "c_1"}),
        _line({"participation_id": "h_no_ts", "account_id": "a_1", "content_id": "c_1"}),
        _line({"participation_id": "h_no_acc", "timestamp": "2026-11-25T01:00:00Z", "content_id": "c_1"}),
        _line({"participation_id": "h_no_con", "timestamp": "2026-11-25T01:00:00Z", "account_id": "a_1"}),
        _line(_event("h_bad_ts", ts="yesterday")),
        _line(_event("h_bad_ts2", ts="2026-13-45T99:00:00Z")),
        _line(_event("h_after", ts="2026-11-26T00:00:00.000Z")),
        _line(_event("h_before", ts="2026-11-24T23:59:59.999Z")),
        _line(_event("h_local_evening", ts="2026-11-25T23:30:00-02:00")),  # 01:30 UTC on the 26th
        _line(_event("h_offset_ok", ts="2026-11-26T00:30:00+01:00")),  # 23:30 UTC on the 25th
        _line(_event("h_unknown_acc", account_id="a_404")),
        _line(_event("h_unknown_con", content_id="c_404")),
        _line(_event("h_foreign", content_id="c_6")),  # a content of a_2
        # rejected first, then accepted: the accepted one is not a duplicate
        _line(_event("h_first_rejected", ts="not a time")),
        _line(_event("h_first_rejected", ts="2026-11-25T05:00:00Z")),
        # the same id twice in one file: the first line wins
        _line(_event("h_twice", ts="2026-11-25T06:00:00Z", email="first@example.com")),
        _line(_event("h_twice", ts="2026-11-25T03:00:00Z", email="second@example.com")),
        # a duplicate of a generated participation (first seen in part-00000)
        first_generated.encode(),
        # ties on the timestamp, written out of order: participation_id breaks them
        _line(_event("h_tie_b", ts="2026-11-25T07:00:00.000Z")),
        _line(_event("h_tie_a", ts="2026-11-25T07:00:00.000Z")),
        _line(_event("h_tie_c", ts="2026-11-25T07:00:00Z")),
        # odd types: read leniently, the participation is loaded
        _line(
            _event(
                "h_types",
                content_version="three",
                email=123,
                questions={"not": "a list"},
                optins="yes",
                forms=[{"form_id": 5, "form_data": "nope"}, None],
                tc_string=["a"],
            )
        ),
        _line(_event("h_nulls", email=None, questions=None, optins=None, forms=None, page_url=None, tc_string=None)),
        _line(
            {
                k: v
                for k, v in _event("h_minimal").items()
                if k in ("participation_id", "timestamp", "account_id", "content_id")
            }
        ),
        # unknown keys at any depth, deep nesting
        (json.dumps(_event("h_deep"))[:-1] + ', "extra": ' + "[" * 3000 + "]" * 3000 + "}").encode(),
        # every control character in every text, and formula triggers for neutralize_formulas
        _line(
            _event(
                "h_control",
                ts="2026-11-25T08:00:00Z",
                email=control,
                publisher_name=control,
                page_url=control,
                tc_string=control,
                questions=[{"question_id": "q_1", "question_text": control, "answer_text": control}, None],
                forms=[
                    {
                        "form_id": "f_1",
                        "form_name": control,
                        "form_data": [
                            _field("firstname", control, 1),
                            _field("address-city", '=HYPERLINK("x")', 2),
                            _field("phone", "+33 6 12 34 56 78", 3),
                            _field("lastname", "-minus", 4),
                            _field("gender", "@at", 5),
                            _field("birthdate", "\ttab", 6),
                            _field("address-line-1", "\rcr", 7),
                        ],
                    }
                ],
            )
        ),
        # the email fallback and the first non-empty value across forms
        _line(
            _event(
                "h_fallback",
                ts="2026-11-25T09:00:00Z",
                email="",
                forms=[
                    {
                        "form_id": "f_1",
                        "form_name": "One",
                        "form_data": [_field("email", ""), _field("phone", None, 2)],
                    },
                    {"form_id": "f_2", "form_name": "Two", "form_data": None},
                    {
                        "form_id": "f_3",
                        "form_name": "Three",
                        "form_data": [
                            _field("email", "form@example.com", 3),
                            _field("phone", "0600", 4),
                            _field("phone", "0700", 5),
                            _field("Email", "case@example.com", 6),
                            _field(None, "typeless", 7),
                            None,
                            _field("address-country", "FR", 8),
                        ],
                    },
                ],
            )
        ),
        # optins: repeated, of another account, unknown, null value, and a null element
        _line(
            _event(
                "h_optins",
                ts="2026-11-25T10:00:00Z",
                optins=[
                    {"optin_id": "o_2", "optin_email": "x@example.com", "optin_value": False},
                    {"optin_id": "o_1", "optin_value": True},
                    {"optin_id": "o_2", "optin_value": True},
                    {"optin_id": "o_5", "optin_value": True},  # an optin of a_2
                    {"optin_id": "o_404", "optin_value": True},
                    {"optin_id": "o_4", "optin_value": None},
                    None,
                ],
            )
        ),
        _line(
            _event(
                "h_c5", ts="2026-11-25T11:00:00Z", content_id="c_5", optins=[{"optin_id": "o_4", "optin_value": True}]
            )
        ),
        _line(_event("h_other_account", account_id="a_2", content_id="c_6")),
    ]
    (folder / "hostile.ndjson").write_bytes(b"\r\n".join(lines) + b"\r\n\n")
    # a UTF-8 BOM (plain and gzip)
    bom = b"\xef\xbb\xbf" + _line(_event("h_bom", ts="2026-11-25T13:00:00Z")) + b"\n"
    (folder / "bom.ndjson").write_bytes(bom)
    (folder / "bom-gz.ndjson.gz").write_bytes(gzip.compress(bom.replace(b"h_bom", b"h_bomgz"), mtime=0))
    # invalid UTF-8 among good lines
    (folder / "mixed.ndjson").write_bytes(
        _line(_event("h_mixed_1"))
        + b"\n"
        + b'{"participation_id": "h_latin1", "email": "caf\xe9@example.com"}\n'
        + _line(_event("h_mixed_2"))
        + b"\n"
    )
    # a truncated gzip: every complete line before the cut is kept, the cut is one rejected record
    body = b"".join(_line(_event(f"h_cut_{i:03d}", ts=f"2026-11-25T14:{i % 60:02d}:00Z")) + b"\n" for i in range(150))
    data = gzip.compress(body, mtime=0)
    (folder / "cut.ndjson.gz").write_bytes(data[: len(data) // 2])
    # binary garbage
    (folder / "garbage.ndjson").write_bytes(random.Random(20261125).randbytes(4096))
    # an empty file, and a later file repeating ids already loaded
    (folder / "empty.ndjson").write_bytes(b"")
    (folder / "z-repeats.ndjson").write_bytes(
        _line(_event("h_twice", email="third@example.com"))
        + b"\n"
        + _line(_event(generated_pid, email="later@example.com"))
        + b"\n"
        + _line(_event("h_cut_000", email="after the cut"))
        + b"\n"
    )


def _rows(con: duckdb.DuckDBPyConnection, sql: str, params: list | None = None) -> dict[str, Any]:
    cursor = con.execute(sql, params or [])
    columns = [d[0] for d in cursor.description]
    return {"columns": columns, "rows": json.loads(json.dumps(cursor.fetchall(), default=str))}


def _parquet(con: duckdb.DuckDBPyConnection, table: str, root: Path) -> dict[str, Any]:
    path = warehouse.sql_path(warehouse.day_file(table, DAY, root))
    described = con.execute(f"DESCRIBE SELECT * FROM read_parquet({path})").fetchall()
    result = _rows(con, f"SELECT * FROM read_parquet({path})")
    result["types"] = [row[1] for row in described]
    return result


def outputs(tmp: Path) -> dict[str, Any]:
    """Load the hostile day and build its exports; everything a customer or an operator can see."""
    landing, root, spool = tmp / "landing", tmp / "warehouse", tmp / "spool"
    write_hostile_day(landing)
    with staged_day(DAY, str(landing)) as staged:
        load = load_day(staged, root)
    result: dict[str, Any] = {
        "load": {
            "files": load.files,
            "lines": load.lines,
            "participations": load.participations,
            "optins": load.optins,
            "rejected": load.rejected,
            "rejected_by_reason": load.rejected_by_reason,
            "lines_by_file": load.lines_by_file,
        }
    }
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET threads = 1")
    for table in warehouse.MODEL_TABLES:
        result[table] = _parquet(con, table, root)
    con.close()
    db = duckdb.connect(str(warehouse.database_file(root)), read_only=True)
    db.execute("SET TimeZone = 'UTC'")
    db.execute("SET threads = 1")
    for table in warehouse.MODEL_TABLES:
        golden_columns = ", ".join(f'"{c}"' for c in result[table]["columns"])
        result[f"duckdb.{table}"] = _rows(db, f"SELECT {golden_columns} FROM {table} WHERE day = ?", [DAY])
    db.close()
    for export in CRM_EXPORTS:
        out = spool / f"{export.id}.csv"
        built = build_crm_csv(export, DAY, OPTIN_NAMES, out, out.name, root=root)
        result[f"csv.{export.id}"] = {"rows": built.rows, "text": out.read_bytes().decode("utf-8")}
    for account in ("a_1", "a_2"):
        export = GlobalExport(id=f"global-{account.replace('_', '-')}", account_id=account, mode="global", gcs=GCS)
        out = spool / f"{export.id}.ndjson.gz"
        built = build_global_ndjson(export, DAY, out, out.name, root=root)
        result[f"ndjson.{account}"] = {"rows": built.rows, "text": gzip.decompress(out.read_bytes()).decode("utf-8")}
    return result


@pytest.fixture(scope="module", params=["reference in maps", "reference joined"])
def current(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The outputs of today's code, with each way the loader looks the reference up (small or large)."""
    with pytest.MonkeyPatch.context() as patch:
        if request.param == "reference joined":
            from beop_assets.model import day_loader

            patch.setattr(day_loader, "MAP_LOOKUP_MAX", 0)
        got = outputs(tmp_path_factory.mktemp("hostile"))
    if os.environ.get("BEOP_WRITE_GOLDEN") and request.param == "reference in maps":
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_bytes(gzip.compress(json.dumps(got, ensure_ascii=False, indent=0).encode(), mtime=0))
    return got


@pytest.fixture(scope="module")
def golden(current: dict[str, Any]) -> dict[str, Any]:
    return json.loads(gzip.decompress(GOLDEN.read_bytes()))


def _only_golden_columns(current: dict[str, Any], golden: dict[str, Any]) -> dict[str, Any]:
    """The current table restricted to the golden columns (added columns are checked elsewhere)."""
    indexes = [current["columns"].index(c) for c in golden["columns"] if c in current["columns"]]
    return {
        "columns": [current["columns"][i] for i in indexes],
        "rows": [[row[i] for i in indexes] for row in current["rows"]],
        **({"types": [current["types"][i] for i in indexes]} if "types" in current else {}),
    }


def test_the_day_holds_every_fault_kind(golden):
    reasons = set(golden["load"]["rejected_by_reason"])
    assert reasons == {
        "unreadable_line",
        "invalid_json",
        "not_an_object",
        "missing_participation_id",
        "missing_timestamp",
        "missing_account_id",
        "missing_content_id",
        "invalid_timestamp",
        "timestamp_outside_day",
        "unknown_account",
        "unknown_content",
        "content_of_another_account",
        "duplicate_participation_id",
    }
    assert golden["load"]["participations"] > 400 and golden["load"]["rejected"] > 40


def test_load_counts_are_unchanged(current, golden):
    assert current["load"] == golden["load"]


@pytest.mark.parametrize("table", ["participations", "optins", "rejected_participations"])
def test_parquet_day_rows_order_and_types_are_unchanged(current, golden, table):
    got = _only_golden_columns(current[table], golden[table])
    assert got["columns"] == golden[table]["columns"]
    assert got["types"] == golden[table]["types"]
    assert len(got["rows"]) == len(golden[table]["rows"])
    for number, (row, expected) in enumerate(zip(got["rows"], golden[table]["rows"], strict=True)):
        assert row == expected, f"{table} row {number} differs"


@pytest.mark.parametrize("table", ["participations", "optins", "rejected_participations"])
def test_the_duckdb_file_serves_the_same_rows(current, golden, table):
    key = f"duckdb.{table}"
    got = _only_golden_columns(current[key], golden[key])
    assert got["columns"] == golden[key]["columns"]
    assert sorted(map(json.dumps, got["rows"])) == sorted(map(json.dumps, golden[key]["rows"]))


@pytest.mark.parametrize("export_id", [e.id for e in CRM_EXPORTS])
def test_csv_bytes_are_unchanged(current, golden, export_id):
    assert current[f"csv.{export_id}"]["rows"] == golden[f"csv.{export_id}"]["rows"] > 0
    assert current[f"csv.{export_id}"]["text"] == golden[f"csv.{export_id}"]["text"]


@pytest.mark.parametrize("account", ["a_1", "a_2"])
def test_global_lines_are_unchanged(current, golden, account):
    assert current[f"ndjson.{account}"] == golden[f"ndjson.{account}"]


def _first_non_empty(forms: list | None, field_type: str) -> str | None:
    for form in forms or []:
        for item in (form or {}).get("form_data") or []:
            if item and item.get("field_type") == field_type and item.get("field_value"):
                return item["field_value"]
    return None


def test_stored_crm_columns_match_an_independent_derivation(current):
    """Each participation carries its typed form-field values and the email fallback (computed once)."""
    table = current["participations"]
    stored = [c for c in table["columns"] if c.startswith("crm_")]
    assert stored == ["crm_" + t.replace("-", "_") for t in FIELD_TYPES]
    position = {c: i for i, c in enumerate(table["columns"])}
    for row in table["rows"]:
        forms = row[position["forms"]]
        own = row[position["email"]]
        for field_type in FIELD_TYPES:
            expected = _first_non_empty(forms, field_type)
            if field_type == "email":
                expected = own or expected
            assert row[position["crm_" + field_type.replace("-", "_")]] == expected, (row[1], field_type)
