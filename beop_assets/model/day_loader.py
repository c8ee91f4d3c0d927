"""Loading one data day: landing files -> validated, deduplicated Parquet days, served by the DuckDB file.

A day of any size loads in bounded memory: nothing holds the day's lines or rows at once. DuckDB runs
with a memory limit and spills to a scratch folder in the warehouse; between the passes only files on
disk and narrow keys remain:

1. **Judge** (one query per file, `threads` files at a time: DuckDB numbers lines only through
   `read_csv(...) WITH ORDINALITY`, one thread per file): every line is read as raw text, checked
   (`TRY(json_type)`) and parsed for its four key fields only. A line is rejected, with its reason,
   file and line number, when docs/landing-zone.md says so; a rejected line never stops the day. Each line
   goes, numbered and with its verdict, into the file's scratch Parquet file.
2. **Duplicates**, on the accepted lines' keys alone: a participation_id accepted again is rejected,
   the first (by file name, then line) being loaded.
3. **Write** (one order-preserving COPY over the scratch files, in file order, on every thread): the
   accepted lines that are not later duplicates are parsed whole and become the participations day,
   with the reference names and the typed CRM columns every CSV export reads (computed once, here).
   Landing files usually arrive in time order: the rows are then already in (timestamp,
   participation_id) order. Whether they are is checked on the written file; if not, the day is sorted
   once (DuckDB's sort spills past the memory limit).
4. The optins day is the participations day's optins, unnested in place (same order); the rejected day
   is the rejected lines and the duplicates, by file and line. The three are published together, once
   the count of written participations agrees with the judged lines.

The DuckDB file holds no copy of the rows: its `participations`, `optins` and `rejected_participations`
are views over the Parquet days (`publish_views`), so that operators query the model there as before.

A file DuckDB cannot read as a whole (a truncated gzip, bytes that are not UTF-8) is read again line by
line in Python, a chunk at a time, into a scratch Parquet file, so that every good line before the
fault is kept and the fault itself becomes a rejected record.
"""

from __future__ import annotations

import gzip
import os
import shutil
import tempfile
import time
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from beop_assets.landing.reference import (
    REFERENCE_TABLES,
    ReferenceDataError,
    read_reference_sql,
)
from beop_assets.landing.zone import StagedDay
from beop_assets.model import warehouse
from beop_assets.model.events import EVENT_STRUCTURE_SQL, KEY_STRUCTURE_SQL
from beop_assets.model.typed_fields import CRM_FIELDS_SQL, stored_crm_columns_sql, typed_fields_sql

# Lines longer than this are rejected rather than loaded (a 10 MB line is loaded).
MAX_LINE_BYTES = 64 * 1024 * 1024
# DuckDB's memory for one load (the process's peak is this plus the interpreter, ~0.2 GB); past it,
# DuckDB spills to the load's scratch folder. BEOP_LOAD_MEMORY_LIMIT overrides it (assets/model.py).
DEFAULT_MEMORY_LIMIT = "1GB"
PARQUET_OPTIONS = "FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE 50000"
# The judged lines live only for the load: a fast codec, and row groups small enough to read in parallel.
SCRATCH_PARQUET_OPTIONS = "FORMAT parquet, COMPRESSION lz4_raw, ROW_GROUP_SIZE 20000"
# Lines read from a file DuckDB refused, per scratch Parquet row group (bounded memory).
_PYTHON_CHUNK_LINES = 10_000

# The "delimiter" that makes DuckDB's CSV reader hand over each line whole: four control characters,
# which a line of valid JSON can never hold raw. (DuckDB took the former `'\\0'` as the two characters
# backslash and zero, and cut short every line that held them as text, e.g. an email "\\0".) Only a
# line that is already invalid JSON can hold this sequence, and it is then cut at it.
LINE_DELIMITER = "\x01\x02\x03\x04"
_RAW_LINES_SQL = (
    "SELECT line, ordinality AS line_number FROM read_csv({path}, columns={{'line': 'VARCHAR'}}, "
    f"header=false, delim='{LINE_DELIMITER}', quote='', escape='', new_line='\\n', auto_detect=false, "
    f"max_line_size={MAX_LINE_BYTES}, buffer_size={2 * MAX_LINE_BYTES}, strict_mode=false, "
    "{rejects}ignore_errors=true) WITH ORDINALITY"
)
# rtrim(line, chr(13)) alone is slow on long lines: only lines that end
# with a CR go through it, the others are kept as they are (the same result).
_DUCKDB_SOURCE_SQL = (
    "SELECT line_number, CASE WHEN suffix(line, chr(13)) THEN rtrim(line, chr(13)) ELSE line END AS line, "
    "NULL::VARCHAR AS read_error FROM ({raw}) WHERE line IS NOT NULL"
)
_PYTHON_SOURCE_SQL = "SELECT line_number, line, read_error FROM read_parquet({path}, hive_partitioning = false)"

# Evaluated in order: the first rule that applies is the line's reason (a stable code, counted in
# the metadata) with a detail for the operator. Conditions are SQL over the parsed line (line,
# read_error, json_kind := TRY(json_type(line)), NULL when the line is not valid JSON, e := the parsed
# event, ts := its UTC timestamp) and its reference lookups (acc, con). Each line is parsed once per
# function (json_type, from_json), not once per rule that looks at it.
REJECTION_RULES: list[tuple[str, str, str]] = [
    ("read_error IS NOT NULL", "unreadable_line", "read_error"),
    ("json_kind IS NULL", "invalid_json", "'not valid JSON'"),
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


# -- reading the lines ---------------------------------------------------------------------------


def _python_line_rows(path: Path) -> Iterator[tuple[int, str | None, str | None]]:
    """Read a file DuckDB refused, line by line: (line_number, text, error) rows, then a file-level fault."""
    opener = gzip.open if path.name.endswith(".gz") else open
    number = 0
    last_kept = 0
    try:
        with opener(path, "rb") as handle:
            for number, raw in enumerate(handle, start=1):
                raw = raw.rstrip(b"\r\n")
                if not raw.strip():
                    continue
                last_kept = number
                if len(raw) > MAX_LINE_BYTES:
                    yield number, raw[:1024].decode("utf-8", "replace"), f"line longer than {MAX_LINE_BYTES} bytes"
                    continue
                try:
                    yield number, raw.decode("utf-8"), None
                except UnicodeDecodeError as exc:
                    yield number, raw.decode("utf-8", "replace"), f"invalid UTF-8 ({exc.reason} at byte {exc.start})"
    except (EOFError, OSError, zlib.error) as exc:
        yield last_kept + 1, None, f"file unreadable after line {number}: {exc}"


_PYTHON_LINES_SCHEMA = pa.schema([("line_number", pa.int64()), ("line", pa.string()), ("read_error", pa.string())])


def _python_source(path: Path, out: Path) -> str:
    """Re-read a refused file into a scratch Parquet file, a chunk at a time; return the SQL reading it."""
    with pq.ParquetWriter(out, _PYTHON_LINES_SCHEMA, compression="zstd") as writer:
        chunk: list[tuple[int, str | None, str | None]] = []

        def flush() -> None:
            numbers, lines, errors = zip(*chunk, strict=True) if chunk else ((), (), ())
            writer.write_table(
                pa.table(
                    [pa.array(numbers, pa.int64()), pa.array(lines, pa.string()), pa.array(errors, pa.string())],
                    schema=_PYTHON_LINES_SCHEMA,
                )
            )
            chunk.clear()

        for row in _python_line_rows(path):
            chunk.append(row)
            if len(chunk) >= _PYTHON_CHUNK_LINES:
                flush()
        flush()
    return _PYTHON_SOURCE_SQL.format(path=warehouse.sql_path(out))


# -- the rules -------------------------------------------------------------------------------------


def _case(day: date, pick) -> str:
    return (
        "CASE "
        + " ".join(
            f"WHEN {cond.format(day=day.isoformat())} THEN {pick(code, detail).format(day=day.isoformat())}"
            for cond, code, detail in REJECTION_RULES
        )
        + " END"
    )


# Up to this many accounts and contents, the reference rows are looked up in session-variable maps:
# the lines keep their order, so in-order landing files are written without a sort. A map lookup scans
# its keys, so a larger reference is hash-joined instead (the day is then sorted once after the write).
MAP_LOOKUP_MAX = 256


def _reference_sql(rows: str, small: bool) -> str:
    """`rows` (a query with `e`) with its reference rows `acc` and `con` (NULL when unknown)."""
    if small:
        return f"""
            SELECT *, getvariable('accounts')[e.account_id] AS acc, getvariable('contents')[e.content_id] AS con
            FROM ({rows})
        """
    return f"""
        SELECT parsed.*, acc, con
        FROM ({rows}) parsed
        LEFT JOIN lookup_accounts acc ON acc.account_id = parsed.e.account_id
        LEFT JOIN lookup_contents con ON con.content_id = parsed.e.content_id
    """


def _judged_sql(source: str, structure: str, small: bool) -> str:
    """Every line of one source with what the rules look at: json_kind, the parsed event, ts, acc, con."""
    return _reference_sql(
        f"""
            SELECT *, TRY_CAST(e.timestamp AS TIMESTAMPTZ) AS ts
            FROM (
                SELECT *, CASE WHEN json_kind = 'OBJECT' THEN from_json(line, '{structure}') END AS e
                FROM (SELECT *, CASE WHEN read_error IS NULL THEN TRY(json_type(line)) END AS json_kind FROM ({source}))
            )
        """,
        small,
    )


def _stage_reference(con: duckdb.DuckDBPyConnection, folder: Path) -> None:
    """The reference tables, and the lookups the rules and the rows join (one row per id)."""
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
    con.execute("CREATE TABLE lookup_accounts AS SELECT account_id, username FROM ref_accounts")
    con.execute("""
        CREATE TABLE lookup_contents AS
        SELECT c.content_id, c.account_id, c.name, c.campaign_id, cmp.name AS campaign_name
        FROM ref_contents c
        LEFT JOIN ref_campaigns cmp ON cmp.campaign_id = c.campaign_id AND cmp.account_id = c.account_id
    """)


def _one_row(result: duckdb.DuckDBPyConnection) -> tuple:
    """The single row an aggregate query always returns."""
    row = result.fetchone()
    if row is None:
        raise RuntimeError("an aggregate query returned no row")
    return row


def _small_reference(con: duckdb.DuckDBPyConnection) -> bool:
    counts = con.execute("SELECT (SELECT count(*) FROM lookup_accounts), (SELECT count(*) FROM lookup_contents)")
    accounts, contents = _one_row(counts)
    return max(accounts, contents) <= MAP_LOOKUP_MAX


def _set_lookups(con: duckdb.DuckDBPyConnection) -> None:
    """The reference as session variables of one connection (each cursor has its own): the optins
    (read inside the optins lambda) and, when small, the accounts and contents."""
    con.execute("""
        SET VARIABLE optins = (
            SELECT map_from_entries(list((optin_id, {'account_id': account_id, 'name': name, 'text': text})))
            FROM ref_optins WHERE optin_id IS NOT NULL)
    """)
    if _small_reference(con):
        con.execute("""
            SET VARIABLE accounts = (
                SELECT map_from_entries(list((account_id, {'account_id': account_id, 'username': username})))
                FROM lookup_accounts WHERE account_id IS NOT NULL)
        """)
        con.execute("""
            SET VARIABLE contents = (
                SELECT map_from_entries(list((content_id, {'content_id': content_id, 'account_id': account_id,
                    'name': name, 'campaign_id': campaign_id, 'campaign_name': campaign_name})))
                FROM lookup_contents WHERE content_id IS NOT NULL)
        """)


# -- pass 1: judge every line, keep keys and rejects ------------------------------------------------


def _judge(
    con: duckdb.DuckDBPyConnection, staged: StagedDay, day: date, scratch: Path, load: DayLoad, threads: int
) -> list[Path]:
    """Judge every line of every file into the file's scratch Parquet (`threads` files at a time: reading
    numbered lines is one thread per file). Each scratch row is a line with its verdict: `reason` and
    `detail` (NULL when accepted), the accepted line's `participation_id` and `ts`."""
    reason, detail = _case(day, lambda code, _: f"'{code}'"), _case(day, lambda _, detail: detail)
    small = _small_reference(con)
    names = list(staged.files)
    load.files.extend(names)

    def judge_file(index: int, path: Path) -> Path:
        out = scratch / f"judged-{index:05d}.parquet"
        cur = con.cursor()
        try:
            _set_lookups(cur)

            def copy(source: str) -> None:
                cur.execute(f"""
                    COPY (
                        SELECT CAST({index} AS INTEGER) AS file_index, line_number, line, reason,
                               CASE WHEN reason IS NOT NULL THEN {detail} END AS detail,
                               CASE WHEN reason IS NULL THEN e.participation_id END AS participation_id,
                               CASE WHEN reason IS NULL THEN CAST(ts AS TIMESTAMP) END AS ts
                        FROM (SELECT *, {reason} AS reason FROM ({_judged_sql(source, KEY_STRUCTURE_SQL, small)}))
                    ) TO {warehouse.sql_path(out)} ({SCRATCH_PARQUET_OPTIONS})
                """)

            rejects = f"store_rejects=true, rejects_table='rejects_{index}', rejects_scan='scans_{index}', "
            try:
                copy(
                    _DUCKDB_SOURCE_SQL.format(raw=_RAW_LINES_SQL.format(path=warehouse.sql_path(path), rejects=rejects))
                )
                (refused,) = _one_row(cur.execute(f"SELECT count(*) FROM rejects_{index}"))
            except duckdb.Error:
                refused = 1
            if refused:
                # Exact line numbers and the good lines around the fault: re-read this file in Python.
                copy(_python_source(path, scratch / f"python-lines-{index:05d}.parquet"))
            return out
        finally:
            cur.close()

    with ThreadPoolExecutor(max_workers=max(1, threads)) as pool:
        judged = list(pool.map(lambda item: judge_file(*item), enumerate(staged.files.values())))
    con.execute(
        "CREATE TABLE files AS SELECT unnest(?) AS source_file, generate_subscripts(?, 1) - 1 AS file_index",
        [names, names],
    )
    con.execute(f"SET VARIABLE file_names = {_sql_list(names)}::VARCHAR[]")
    if judged:
        con.execute(f"CREATE VIEW judged AS SELECT * FROM read_parquet({_sql_list(judged)}, hive_partitioning = false)")
    else:
        con.execute(
            "CREATE VIEW judged AS SELECT NULL::INTEGER AS file_index, NULL::BIGINT AS line_number, "
            "NULL::VARCHAR AS line, NULL::VARCHAR AS reason, NULL::VARCHAR AS detail, "
            "NULL::VARCHAR AS participation_id, NULL::TIMESTAMP AS ts WHERE false"
        )
    counts = dict(con.execute("SELECT file_index, count(*) FROM judged GROUP BY 1").fetchall())
    load.lines_by_file = {name: counts.get(index, 0) for index, name in enumerate(names)}
    load.lines = sum(load.lines_by_file.values())
    return judged


def _sql_list(items: list) -> str:
    return (
        "["
        + ", ".join(
            warehouse.sql_path(Path(item)) if isinstance(item, Path) else "'" + str(item).replace("'", "''") + "'"
            for item in items
        )
        + "]"
    )


def _find_duplicates(con: duckdb.DuckDBPyConnection) -> int:
    """A participation_id accepted again: the first (by file name, then line) is loaded, every later one
    is rejected as a duplicate. Only the accepted lines' keys are looked at."""
    con.execute("""
        CREATE TABLE duplicates AS
        SELECT file_index, line_number, line,
               'participation_id ' || participation_id || ' already loaded from ' || first_seen AS detail
        FROM (
            SELECT j.file_index, j.line_number, j.participation_id, j.line,
                   row_number() OVER w AS seen, first_value(f.source_file || ':' || j.line_number) OVER w AS first_seen
            FROM judged j JOIN files f USING (file_index)
            WHERE j.reason IS NULL
              AND j.participation_id IN (
                  SELECT participation_id FROM judged WHERE reason IS NULL GROUP BY 1 HAVING count(*) > 1)
            WINDOW w AS (PARTITION BY j.participation_id ORDER BY f.source_file, j.line_number)
        )
        WHERE seen > 1
    """)
    (count,) = _one_row(con.execute("SELECT count(*) FROM duplicates"))
    return int(count)


# -- pass 2: write the participations day -----------------------------------------------------------

_PARTICIPATION_COLUMNS = """
    DATE '{day}' AS day,
    e.participation_id AS participation_id, ts AS timestamp,
    e.account_id AS account_id, acc.username AS username, e.content_id AS content_id, con.name AS content_name,
    e.content_version AS content_version, con.campaign_id AS campaign_id, con.campaign_name AS campaign_name,
    e.publisher_id AS publisher_id, e.publisher_name AS publisher_name, e.page_url AS page_url,
    e.tc_string AS tc_string, e.email AS email,
    coalesce(e.questions, []) AS questions,
    coalesce(list_transform(e.optins, lambda o: struct_pack(
        optin_id := o.optin_id, optin_email := o.optin_email, optin_value := o.optin_value,
        optin_name := CASE WHEN getvariable('optins')[o.optin_id].account_id = e.account_id
                           THEN getvariable('optins')[o.optin_id].name END,
        optin_text := CASE WHEN getvariable('optins')[o.optin_id].account_id = e.account_id
                           THEN getvariable('optins')[o.optin_id].text END
    )), []) AS optins,
    coalesce(list_transform(e.forms, lambda f: struct_pack(
        form_id := f.form_id, form_name := f.form_name, form_data := coalesce(f.form_data, [])
    )), []) AS forms,
    getvariable('file_names')[file_index + 1] AS source_file, line_number
"""


def _participations_sql(day: date, judged: list[Path], duplicates: int, small: bool) -> str:
    # The judged files are read in file order, each in line order (an order-preserving COPY).
    lines = (
        f"SELECT * FROM read_parquet({_sql_list(judged)}, hive_partitioning = false)"
        if judged
        else "SELECT NULL::INTEGER AS file_index, NULL::BIGINT AS line_number, NULL::VARCHAR AS line, "
        "NULL::VARCHAR AS reason, NULL::TIMESTAMP AS ts WHERE false"
    )
    later = (
        "AND NOT EXISTS (SELECT 1 FROM duplicates d "
        "WHERE d.file_index = j.file_index AND d.line_number = j.line_number)"
        if duplicates
        else ""
    )
    parsed = f"""
        SELECT file_index, line_number, ts, from_json(line, '{EVENT_STRUCTURE_SQL}') AS e
        FROM ({lines}) j
        WHERE reason IS NULL {later}
    """
    return f"""
        SELECT * EXCLUDE (crm_fields_kept, crm_fields_kinds), {stored_crm_columns_sql("crm_fields")}
        FROM (
            SELECT * EXCLUDE (crm_fields), {typed_fields_sql("crm_fields")}
            FROM (
                SELECT *, {CRM_FIELDS_SQL} AS crm_fields
                FROM (
                    SELECT {_PARTICIPATION_COLUMNS.format(day=day.isoformat())}
                    FROM ({_reference_sql(parsed, small)})
                )
            )
        )
    """


def _in_order(path: Path) -> bool:
    """Whether the written day is in (timestamp, participation_id) order, read back a batch at a time."""
    previous: tuple[object, object] | None = None
    for batch in pq.ParquetFile(path).iter_batches(batch_size=65536, columns=["timestamp", "participation_id"]):
        if batch.num_rows == 0:
            continue
        ts, pid = batch.column(0), batch.column(1)
        if previous is not None and (ts[0].as_py(), pid[0].as_py()) <= previous:
            return False  # participation_ids are unique: ties on both never happen
        if batch.num_rows > 1:
            a_ts, b_ts = ts.slice(0, batch.num_rows - 1), ts.slice(1)
            a_pid, b_pid = pid.slice(0, batch.num_rows - 1), pid.slice(1)
            ok = pc.or_(pc.less(a_ts, b_ts), pc.and_(pc.equal(a_ts, b_ts), pc.less(a_pid, b_pid)))
            if not pc.all(ok).as_py():
                return False
        previous = (ts[-1].as_py(), pid[-1].as_py())
    return True


def _tmp_for(final: Path, tag: str = "tmp") -> Path:
    final.parent.mkdir(parents=True, exist_ok=True)
    return final.with_name(f".{final.name}.{os.getpid()}.{tag}")


def _write(con: duckdb.DuckDBPyConnection, sql: str, tmp: Path) -> Path:
    con.execute(f"COPY ({sql}) TO {warehouse.sql_path(tmp)} ({PARQUET_OPTIONS})")
    return tmp


def _write_participations(
    con: duckdb.DuckDBPyConnection, day: date, root: Path, judged: list[Path], duplicates: int
) -> Path:
    final = warehouse.day_file("participations", day, root)
    tmp = _write(con, _participations_sql(day, judged, duplicates, _small_reference(con)), _tmp_for(final))
    if not _in_order(tmp):
        # The landing files were not in time order: sort the day once (spilling past the memory limit).
        con.execute("SET preserve_insertion_order = false")
        resorted = _write(
            con,
            f"SELECT * FROM read_parquet({warehouse.sql_path(tmp)}) ORDER BY timestamp, participation_id",
            _tmp_for(final, "sorted"),
        )
        con.execute("SET preserve_insertion_order = true")
        os.replace(resorted, tmp)
    return tmp


# Row order: the participations day's, then each participation's list order (no sort needed).
_OPTINS_SQL = """
    SELECT day, participation_id, timestamp, account_id, content_id, campaign_id,
           o.optin_id, o.optin_email, o.optin_value, o.optin_name, o.optin_text
    FROM (SELECT day, participation_id, timestamp, account_id, content_id, campaign_id, unnest(optins) AS o
          FROM read_parquet({path}, hive_partitioning = false))
"""

_REJECTED_SQL = """
    SELECT DATE '{day}' AS day, f.source_file, r.line_number, r.reason, r.detail, r.line
    FROM (
        SELECT file_index, line_number, reason, detail, line FROM judged WHERE reason IS NOT NULL
        UNION ALL
        SELECT file_index, line_number, '{duplicate}', detail, line FROM duplicates
    ) r JOIN files f USING (file_index)
    ORDER BY f.source_file, r.line_number
"""


def _remove_stale_scratch(root: Path) -> None:
    """A load killed mid-way leaves its scratch folder (the day's lines): removed by a later load."""
    cutoff = time.time() - warehouse.OLD_VERSIONS_KEPT_S
    for folder in root.glob(f"{warehouse.LOAD_SCRATCH}*"):
        if folder.is_dir() and folder.stat().st_mtime < cutoff:
            shutil.rmtree(folder, ignore_errors=True)


def load_day(
    staged: StagedDay,
    root: Path,
    *,
    memory_limit: str = DEFAULT_MEMORY_LIMIT,
    threads: int | None = None,
) -> DayLoad:
    """Load one day from its staged landing files; replaces whatever the model held for that day.

    `memory_limit` bounds DuckDB's memory (it spills to a scratch folder in the warehouse past it);
    `threads` is how many files are judged at once and DuckDB's thread count (default: the CPUs).
    """
    day = staged.day
    load = DayLoad(day=day)
    threads = threads or os.cpu_count() or 1
    root.mkdir(parents=True, exist_ok=True)
    _remove_stale_scratch(root)
    scratch = Path(tempfile.mkdtemp(prefix=warehouse.load_scratch_prefix(day), dir=root))
    written: dict[str, Path] = {}
    con = duckdb.connect(
        ":memory:",
        config={
            "temp_directory": str(scratch / "spill"),
            "memory_limit": memory_limit,
            "threads": threads,
            "preserve_insertion_order": True,
        },
    )
    try:
        con.execute("SET TimeZone = 'UTC'")
        _stage_reference(con, staged.reference_folder)
        judged = _judge(con, staged, day, scratch, load, threads)
        duplicates = _find_duplicates(con)
        _set_lookups(con)
        written["participations"] = _write_participations(con, day, root, judged, duplicates)
        load.rejected_by_reason = dict(
            con.execute(
                "SELECT reason, count(*) FROM (SELECT reason FROM judged WHERE reason IS NOT NULL "
                f"UNION ALL SELECT '{DUPLICATE}' FROM duplicates) GROUP BY 1 ORDER BY 1"
            ).fetchall()
        )
        load.rejected = sum(load.rejected_by_reason.values())
        load.participations = pq.read_metadata(written["participations"]).num_rows
        if load.participations != load.lines - load.rejected:
            raise RuntimeError(
                f"load of {day}: {load.participations} participations written, but {load.lines} lines minus "
                f"{load.rejected} rejected were judged valid (a defect, not bad input)"
            )
        participations = warehouse.sql_path(written["participations"])
        optins = warehouse.day_file("optins", day, root)
        written["optins"] = _write(con, _OPTINS_SQL.format(path=participations), _tmp_for(optins))
        load.optins = pq.read_metadata(written["optins"]).num_rows
        rejected = warehouse.day_file("rejected_participations", day, root)
        written["rejected_participations"] = _write(
            con, _REJECTED_SQL.format(day=day.isoformat(), duplicate=DUPLICATE), _tmp_for(rejected)
        )
        for table in warehouse.MODEL_TABLES:  # published only once the three are written and consistent
            warehouse.replace_file(written.pop(table), warehouse.day_file(table, day, root))
    finally:
        con.close()
        for leftover in written.values():
            leftover.unlink(missing_ok=True)
        shutil.rmtree(scratch, ignore_errors=True)
    publish_views(root)
    return load


def publish_views(root: Path) -> None:
    """Serve every loaded day in the DuckDB file, as views over the Parquet days (no second copy).

    Each view reads the current version of every day (`date=*/data.parquet`, see `warehouse.replace_file`);
    days loaded before a column was added read it as NULL. A table left by an older release (a copy of
    the days) is dropped: the Parquet days hold the same rows.
    """
    with warehouse.model_writer(root) as db:
        db.execute("BEGIN TRANSACTION")
        for table in warehouse.MODEL_TABLES:
            days = warehouse.sql_path(root / table / "date=*" / "data.parquet")
            kind = db.execute(
                "SELECT table_type FROM information_schema.tables WHERE table_name = ? AND table_schema = 'main'",
                [table],
            ).fetchone()
            if kind and kind[0] == "BASE TABLE":
                db.execute(f"DROP TABLE {table}")
            db.execute(
                f"CREATE OR REPLACE VIEW {table} AS SELECT * FROM read_parquet({days}, hive_partitioning = true, "
                "union_by_name = true)"
            )
        db.execute("COMMIT")
