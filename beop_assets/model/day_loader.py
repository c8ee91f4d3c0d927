"""Loading one data day: landing files -> validated, deduplicated Parquet days -> the DuckDB file.

Lines are read by DuckDB as raw text (one VARCHAR per line, numbered), then parsed once with
`from_json`. A line is rejected, with its reason, file and line number, when SPEC section 2 says so;
a rejected line never stops the day. A file DuckDB cannot read as a whole (a truncated gzip, bytes
that are not UTF-8) is read again line by line in Python, so that every good line before the fault
is kept and the fault itself becomes a rejected record.
"""

from __future__ import annotations

import gzip
import os
import tempfile
import zlib
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import duckdb
import pyarrow as pa

from beop_assets.landing.reference import (
    REFERENCE_TABLES,
    ReferenceDataError,
    read_reference_sql,
)
from beop_assets.landing.zone import StagedDay
from beop_assets.model import warehouse
from beop_assets.model.events import EVENT_STRUCTURE_SQL

# Lines longer than this are rejected rather than loaded (a 10 MB line is loaded).
MAX_LINE_BYTES = 64 * 1024 * 1024

_RAW_LINES_SQL = (
    "SELECT line, ordinality AS line_number FROM read_csv({path}, columns={{'line': 'VARCHAR'}}, "
    "header=false, delim='\\0', quote='', escape='', new_line='\\n', auto_detect=false, "
    f"max_line_size={MAX_LINE_BYTES}, strict_mode=false, store_rejects=true, ignore_errors=true) "
    "WITH ORDINALITY"
)

# Evaluated in order: the first rule that applies is the line's reason (a stable code, counted in
# the metadata) with a detail for the operator. Conditions are SQL over the parsed line (line,
# is_json := json_valid(line), json_kind := json_type(line) of a valid line, e := the parsed event,
# ts := its UTC timestamp) and its reference joins (acc, con). Each line is parsed once per function
# (json_valid, json_type, from_json), not once per rule that looks at it.
REJECTION_RULES: list[tuple[str, str, str]] = [
    ("read_error IS NOT NULL", "unreadable_line", "read_error"),
    ("NOT is_json", "invalid_json", "'not valid JSON'"),
    ("json_kind <> 'OBJECT'", "not_an_object", "'a JSON ' || lower(json_kind) || ', not an object'"),
    ("coalesce(e.participation_id, '') = ''", "missing_participation_id", "'participation_id is missing'"),
    ("coalesce(e.timestamp, '') = ''", "missing_timestamp", "'timestamp is missing'"),
    ("coalesce(e.account_id, '') = ''", "missing_account_id", "'account_id is missing'"),
    ("coalesce(e.content_id, '') = ''", "missing_content_id", "'content_id is missing'"),
    ("ts IS NULL", "invalid_timestamp", "'timestamp ' || e.timestamp || ' is not ISO 8601'"),
    (
        "CAST(ts AS DATE) <> DATE '{day}'",
        "timestamp_outside_day",
        "'timestamp ' || e.timestamp || ' is not in the folder''s UTC day {day}'",
    ),
    ("acc.account_id IS NULL", "unknown_account", "'unknown account ' || e.account_id"),
    ("con.content_id IS NULL", "unknown_content", "'unknown content ' || e.content_id"),
    (
        "con.account_id <> e.account_id",
        "content_of_another_account",
        "'content ' || e.content_id || ' belongs to another account than ' || e.account_id",
    ),
]
DUPLICATE = "duplicate_participation_id"


@dataclass
class DayLoad:
    """What one load did, for the materialization metadata and the CLI."""

    day: date
    files: list[str] = field(default_factory=list)
    lines: int = 0
    participations: int = 0
    optins: int = 0
    rejected: int = 0
    rejected_by_reason: dict[str, int] = field(default_factory=dict)
    lines_by_file: dict[str, int] = field(default_factory=dict)


def _python_lines(path: Path) -> tuple[list[tuple[int, str | None, str | None]], str | None]:
    """Read a file DuckDB refused, line by line: (line_number, text, error) rows, and a file-level fault."""
    rows: list[tuple[int, str | None, str | None]] = []
    opener = gzip.open if path.name.endswith(".gz") else open
    number = 0
    try:
        with opener(path, "rb") as handle:
            for number, raw in enumerate(handle, start=1):
                raw = raw.rstrip(b"\r\n")
                if not raw.strip():
                    continue
                if len(raw) > MAX_LINE_BYTES:
                    rows.append(
                        (number, raw[:1024].decode("utf-8", "replace"), f"line longer than {MAX_LINE_BYTES} bytes")
                    )
                    continue
                try:
                    rows.append((number, raw.decode("utf-8"), None))
                except UnicodeDecodeError as exc:
                    rows.append(
                        (number, raw.decode("utf-8", "replace"), f"invalid UTF-8 ({exc.reason} at byte {exc.start})")
                    )
    except (EOFError, OSError, zlib.error) as exc:
        return rows, f"file unreadable after line {number}: {exc}"
    return rows, None


def _stage_raw_lines(con: duckdb.DuckDBPyConnection, files: dict[str, Path], load: DayLoad) -> None:
    con.execute("CREATE TABLE raw_lines (source_file VARCHAR, line_number BIGINT, line VARCHAR, read_error VARCHAR)")
    for name, path in files.items():
        load.files.append(name)
        con.execute("DELETE FROM reject_errors") if _has_table(con, "reject_errors") else None
        try:
            con.execute(
                "INSERT INTO raw_lines SELECT ?, line_number, "
                # rtrim(line, chr(13)) alone is slow on long lines (~8 s per 1M lines of ~1 KB): only lines
                # that end with a CR go through it, the others are kept as they are (the same result).
                "CASE WHEN suffix(line, chr(13)) THEN rtrim(line, chr(13)) ELSE line END, NULL FROM ("
                + _RAW_LINES_SQL.format(path=warehouse.sql_path(path))
                + ") WHERE line IS NOT NULL",
                [name],
            )
            refused = con.execute("SELECT count(*) FROM reject_errors").fetchone()[0]
        except duckdb.Error:
            refused = 1
        if refused:
            # Exact line numbers and the good lines around the fault: re-read this file in Python.
            con.execute("DELETE FROM raw_lines WHERE source_file = ?", [name])
            rows, fault = _python_lines(path)
            if fault:
                rows.append((len(rows) and rows[-1][0] + 1 or 1, None, fault))
            table = pa.table(
                {
                    "source_file": pa.array([name] * len(rows), pa.string()),
                    "line_number": pa.array([r[0] for r in rows], pa.int64()),
                    "line": pa.array([r[1] for r in rows], pa.string()),
                    "read_error": pa.array([r[2] for r in rows], pa.string()),
                }
            )
            con.register("python_lines", table)
            con.execute("INSERT INTO raw_lines SELECT * FROM python_lines")
            con.unregister("python_lines")
    for name, count in con.execute("SELECT source_file, count(*) FROM raw_lines GROUP BY 1").fetchall():
        load.lines_by_file[name] = count
    for name in load.files:
        load.lines_by_file.setdefault(name, 0)
    load.lines = sum(load.lines_by_file.values())


def _has_table(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    return bool(con.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = ?", [name]).fetchone()[0])


def _stage_reference(con: duckdb.DuckDBPyConnection, folder: Path) -> None:
    for name in REFERENCE_TABLES:
        path = folder / f"{name}.ndjson"
        if not path.exists():
            raise ReferenceDataError(f"reference file missing: {path}")
        try:
            con.execute(
                f"CREATE TABLE ref_{name} AS SELECT DISTINCT ON ({name[:-1]}_id) * FROM ({read_reference_sql(name, path)})"
            )
        except duckdb.Error as exc:
            raise ReferenceDataError(f"reference file unreadable: {path}: {exc}") from exc


def _classify(con: duckdb.DuckDBPyConnection, day: date) -> None:
    def case(pick) -> str:
        return (
            "CASE "
            + " ".join(
                f"WHEN {cond.format(day=day.isoformat())} THEN {pick(code, detail).format(day=day.isoformat())}"
                for cond, code, detail in REJECTION_RULES
            )
            + " END"
        )

    reason, detail = case(lambda code, _: f"'{code}'"), case(lambda _, detail: detail)
    # One wide pass parses and judges every line; `line` is kept for the rejected ones only (the
    # accepted ones live on in `e`). The duplicates are then found over the accepted lines' keys alone
    # and updated in place: a window over the wide rows (line text and parsed event included) used to
    # take most of the load's time and memory.
    con.execute(f"""
        CREATE TABLE classified AS
        SELECT * EXCLUDE (is_json, json_kind) REPLACE (CASE WHEN reason IS NOT NULL THEN line END AS line)
        FROM (
            SELECT parsed.*, {reason} AS reason, {detail} AS detail,
                   acc.username, con.name AS content_name, con.campaign_id, cmp.name AS campaign_name
            FROM (
                SELECT r.*, TRY_CAST(e.timestamp AS TIMESTAMPTZ) AS ts
                FROM (
                    SELECT *, CASE WHEN read_error IS NULL AND is_json AND json_kind = 'OBJECT'
                                   THEN from_json(line, '{EVENT_STRUCTURE_SQL}') END AS e
                    FROM (
                        SELECT *, CASE WHEN is_json THEN json_type(line) END AS json_kind
                        FROM (SELECT *, json_valid(line) AS is_json FROM raw_lines)
                    )
                ) r
            ) parsed
            LEFT JOIN ref_accounts acc ON acc.account_id = parsed.e.account_id
            LEFT JOIN ref_contents con ON con.content_id = parsed.e.content_id
            LEFT JOIN ref_campaigns cmp ON cmp.campaign_id = con.campaign_id AND cmp.account_id = con.account_id
        )
    """)
    # A participation_id seen again among the accepted lines: the first (by file, then line) is loaded,
    # every later one is rejected as a duplicate, its line taken back from `raw_lines`.
    con.execute(f"""
        UPDATE classified SET reason = '{DUPLICATE}',
               detail = 'participation_id ' || d.participation_id || ' already loaded from ' || d.first_seen,
               line = d.line
        FROM (
            SELECT later.*, raw.line
            FROM (
                SELECT source_file, line_number, e.participation_id AS participation_id,
                       row_number() OVER w AS seen, first_value(source_file || ':' || line_number) OVER w AS first_seen
                FROM classified
                WHERE reason IS NULL
                WINDOW w AS (PARTITION BY e.participation_id ORDER BY source_file, line_number)
            ) later
            JOIN raw_lines raw USING (source_file, line_number)
            WHERE later.seen > 1
        ) d
        WHERE classified.source_file = d.source_file AND classified.line_number = d.line_number
    """)
    con.execute("DROP TABLE raw_lines")  # everything it held is in `classified` now: free it for the writes


_PARTICIPATIONS_SQL = """
    WITH optin_ref AS (
        SELECT map_from_entries(list((optin_id, {{'account_id': account_id, 'name': name, 'text': text}}))) AS m
        FROM ref_optins
    )
    SELECT DATE '{day}' AS day,
           e.participation_id AS participation_id, CAST(ts AS TIMESTAMP) AS timestamp,
           e.account_id AS account_id, username, e.content_id AS content_id, content_name,
           e.content_version AS content_version, campaign_id, campaign_name,
           e.publisher_id AS publisher_id, e.publisher_name AS publisher_name, e.page_url AS page_url,
           e.tc_string AS tc_string, e.email AS email,
           coalesce(e.questions, []) AS questions,
           coalesce(list_transform(e.optins, lambda o: struct_pack(
               optin_id := o.optin_id, optin_email := o.optin_email, optin_value := o.optin_value,
               optin_name := CASE WHEN optin_ref.m[o.optin_id].account_id = e.account_id THEN optin_ref.m[o.optin_id].name END,
               optin_text := CASE WHEN optin_ref.m[o.optin_id].account_id = e.account_id THEN optin_ref.m[o.optin_id].text END
           )), []) AS optins,
           coalesce(list_transform(e.forms, lambda f: struct_pack(
               form_id := f.form_id, form_name := f.form_name, form_data := coalesce(f.form_data, [])
           )), []) AS forms,
           source_file, line_number
    FROM classified, optin_ref
    WHERE reason IS NULL
    ORDER BY timestamp, participation_id
"""

_OPTINS_SQL = """
    SELECT day, participation_id, timestamp, account_id, content_id, campaign_id,
           o.optin_id, o.optin_email, o.optin_value, o.optin_name, o.optin_text
    FROM (SELECT *, unnest(optins) AS o FROM read_parquet({path}))
    ORDER BY timestamp, participation_id
"""

_REJECTED_SQL = """
    SELECT DATE '{day}' AS day, source_file, line_number, reason, detail, line
    FROM classified WHERE reason IS NOT NULL ORDER BY source_file, line_number
"""


def _write_parquet(con: duckdb.DuckDBPyConnection, sql: str, table: str, day: date, root: Path) -> Path:
    final = warehouse.day_file(table, day, root)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.{os.getpid()}.tmp")
    con.execute(f"COPY ({sql}) TO {warehouse.sql_path(tmp)} (FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE 50000)")
    warehouse.replace_file(tmp, final)
    return final


def _store_in_database(day: date, root: Path) -> None:
    """Replace the day in the DuckDB file (never duplicate it), under the model's write lock."""
    with warehouse.model_writer(root) as db:
        db.execute("BEGIN TRANSACTION")
        for table in warehouse.MODEL_TABLES:
            source = f"read_parquet({warehouse.sql_path(warehouse.day_file(table, day, root))})"
            db.execute(f"CREATE TABLE IF NOT EXISTS {table} AS SELECT * FROM {source} LIMIT 0")
            db.execute(f"DELETE FROM {table} WHERE day = ?", [day])
            db.execute(f"INSERT INTO {table} BY NAME SELECT * FROM {source}")
        db.execute("COMMIT")


def load_day(staged: StagedDay, root: Path | None = None) -> DayLoad:
    """Load one day from its staged landing files; replaces whatever the model held for that day."""
    root = warehouse.warehouse_root(root)
    day = staged.day
    load = DayLoad(day=day)
    scratch = Path(tempfile.mkdtemp(prefix="beop-load-"))
    con = duckdb.connect(":memory:", config={"temp_directory": str(scratch)})
    try:
        con.execute("SET TimeZone = 'UTC'")
        _stage_reference(con, staged.reference_folder)
        _stage_raw_lines(con, staged.files, load)
        _classify(con, day)
        participations = _write_parquet(
            con, _PARTICIPATIONS_SQL.format(day=day.isoformat()), "participations", day, root
        )
        _write_parquet(con, _OPTINS_SQL.format(path=warehouse.sql_path(participations)), "optins", day, root)
        _write_parquet(con, _REJECTED_SQL.format(day=day.isoformat()), "rejected_participations", day, root)
        load.participations = con.execute(
            f"SELECT count(*) FROM read_parquet({warehouse.sql_path(participations)})"
        ).fetchone()[0]
        load.optins = con.execute(
            f"SELECT count(*) FROM read_parquet({warehouse.sql_path(warehouse.day_file('optins', day, root))})"
        ).fetchone()[0]
        load.rejected_by_reason = dict(
            con.execute(
                "SELECT reason, count(*) FROM classified WHERE reason IS NOT NULL GROUP BY 1 ORDER BY 1"
            ).fetchall()
        )
        load.rejected = sum(load.rejected_by_reason.values())
    finally:
        con.close()
        for leftover in scratch.glob("*"):
            leftover.unlink(missing_ok=True)
        scratch.rmdir() if scratch.exists() and not any(scratch.iterdir()) else None
    _store_in_database(day, root)
    return load
