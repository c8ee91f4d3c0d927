"""Realistic demo data for the landing zone (docs/landing-zone.md).

`generate_day(landing, day, participations, seed)` writes

- ``<landing>/reference/{accounts,campaigns,contents,optins}.ndjson``: FIXED reference data, identical
  whatever the seed or the day, so that several generated days (any seeds) stay consistent and an
  export configuration can be written against these ids;
- ``<landing>/participations/date=YYYY-MM-DD/part-0000N.ndjson[.gz]``: exactly ``participations``
  events of that UTC day (1 file up to 99 events, 2 files up to 9,999, else 4; when there are several
  files, ``part-00001`` is gzip-compressed). The day's old ``part-*`` files are removed first;
- with ``faults=True``, one more file ``part-faults.ndjson`` holding a handful of bad lines (invalid
  JSON, missing ``participation_id``, unknown account, unknown content, content of another account,
  timestamp of another day, a duplicate ``participation_id``) to demonstrate the rejection path.

The reference data (``datasets/reference.json``; ids to write an export configuration against):

- ``a_1`` (username ``acme``): campaigns ``cmp_1``, ``cmp_2``, ``cmp_3``; contents ``c_1`` (cmp_1),
  ``c_2`` (cmp_1), ``c_3`` (cmp_2), ``c_4`` (cmp_3), ``c_5`` (no campaign);
- ``a_2`` (username ``globex``): campaigns ``cmp_4``, ``cmp_5``; contents ``c_6`` (cmp_4), ``c_7`` (cmp_5),
  ``c_8`` (no campaign);
- ``a_3`` (username ``initech``): campaigns ``cmp_6``, ``cmp_7``; contents ``c_9`` (cmp_6), ``c_10`` (cmp_7),
  ``c_11`` (no campaign).

Optins (each attached to a content of its account):

- ``a_1``: ``o_1`` "Newsletter ACME" (c_1), ``o_2`` "Offres partenaires" (c_1),
  ``o_3`` "Newsletter ACME" (c_4; the same name as ``o_1``, for the "same name" rule),
  ``o_4`` "Règlement du jeu" (c_5);
- ``a_2``: ``o_5`` (c_6), ``o_6`` (c_7), ``o_7`` (c_8);
- ``a_3``: ``o_8`` (c_9), ``o_9`` (c_10), ``o_10`` (c_11).

Names and texts contain accents, emoji, commas, quotes and newlines (``c_10``'s name, ``o_2``'s text).

Events: ``participation_id`` is ``p_YYYYMMDD_<n>`` (n zero-padded, 0-based); timestamps increase with n
over the day; each event's content is drawn among all contents, its account is that content's account,
its optins (0-3) are among that account's optins; names, texts, places... are drawn from the pools of
``datasets/event_pools.json``. The optional fields ``email``, ``tc_string``,
``page_url``, ``questions``, ``optins`` and ``forms`` are sometimes missing and sometimes null.
Everything is deterministic for a given (seed, day, participations).

A configuration to start from: a ``crm-participation`` export of ``a_1`` with ``campaigns: [cmp_1]``,
``contents: [c_5]`` and ``optins: [o_1, o_3]`` (two columns named "Newsletter ACME"); a ``crm-optin``
export of ``a_2`` with ``optins: [o_5, o_6]``; a global export of ``a_3``.

Speed: the events are built as JSON text inside DuckDB (hash-based randomness, values picked from pools
pre-encoded in Python, one ``concat`` per line), never row by row in Python; the part files are written
side by side, one single-threaded DuckDB connection each (timings in bench/README.md).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import duckdb

try:  # python-isal is a dependency (fast gzip); fall back to zlib if it is ever absent.
    from isal import igzip as _gzip
except ImportError:  # pragma: no cover
    import gzip as _gzip  # type: ignore[no-redef]

# --------------------------------------------------------------------------------------------------
# The data: reference rows and value pools, in beop_assets/demo/datasets/ (installed with the package).
# Their order is part of the output: an event draws "the n-th value of a pool", so reordering,
# adding or removing a value changes every generated day (test_generate.py's golden digests say so).
# --------------------------------------------------------------------------------------------------

_DATA = "beop_assets/demo/datasets"


def _data_file(name: str) -> dict[str, Any]:
    """One JSON file of the data folder, read through importlib.resources so that an installed wheel
    finds it as well as a source checkout."""
    text = resources.files("beop_assets.demo").joinpath("datasets", name).read_text(encoding="utf-8")
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError(f"{_DATA}/{name}: expected a JSON object of named lists, got {type(data).__name__}")
    return data


def _section(data: dict[str, Any], file: str, name: str) -> list[Any]:
    """A named list of a data file; a missing or empty one is an error that names the file to fix."""
    rows = data.get(name)
    if not isinstance(rows, list) or not rows:
        raise ValueError(f"{_DATA}/{file}: {name!r} must be a non-empty list (the generator draws from it)")
    return rows


_REFERENCE_FILE = "reference.json"
_reference = _data_file(_REFERENCE_FILE)

ACCOUNTS: list[dict[str, Any]] = _section(_reference, _REFERENCE_FILE, "accounts")
CAMPAIGNS: list[dict[str, Any]] = _section(_reference, _REFERENCE_FILE, "campaigns")
CONTENTS: list[dict[str, Any]] = _section(_reference, _REFERENCE_FILE, "contents")
OPTINS: list[dict[str, Any]] = _section(_reference, _REFERENCE_FILE, "optins")

REFERENCE: dict[str, list[dict[str, Any]]] = {
    "accounts": ACCOUNTS,
    "campaigns": CAMPAIGNS,
    "contents": CONTENTS,
    "optins": OPTINS,
}

_POOLS_FILE = "event_pools.json"
_pools = _data_file(_POOLS_FILE)

PUBLISHERS: list[dict[str, str]] = _section(_pools, _POOLS_FILE, "publishers")
FIRST_NAMES: list[dict[str, str]] = _section(_pools, _POOLS_FILE, "first_names")
LAST_NAMES: list[dict[str, str]] = _section(_pools, _POOLS_FILE, "last_names")
EMAIL_DOMAINS: list[str] = _section(_pools, _POOLS_FILE, "email_domains")
PAGE_TOPICS: list[str] = _section(_pools, _POOLS_FILE, "page_topics")
QUESTION_TEXTS: list[str] = _section(_pools, _POOLS_FILE, "question_texts")
ANSWER_TEXTS: list[str] = _section(_pools, _POOLS_FILE, "answer_texts")
FORM_NAMES: list[str] = _section(_pools, _POOLS_FILE, "form_names")
FULL_FORM: list[dict[str, str | None]] = _section(_pools, _POOLS_FILE, "full_form")
SHORT_FORM: list[dict[str, str | None]] = _section(_pools, _POOLS_FILE, "short_form")
STREETS: list[str] = _section(_pools, _POOLS_FILE, "streets")
ADDRESS_LINE_2: list[str | None] = _section(_pools, _POOLS_FILE, "address_line_2")
PLACES: list[dict[str, str]] = _section(_pools, _POOLS_FILE, "places")
COMMENTS: list[str | None] = _section(_pools, _POOLS_FILE, "comments")


@dataclass(frozen=True)
class GenerationSummary:
    day: dt.date
    participations: int  # valid events written (the bad lines of `faults` not included)
    files: tuple[Path, ...]  # the day's participation files, faults file included
    reference_files: tuple[Path, ...]
    accounts: tuple[str, ...]  # the accounts the day's events belong to
    bad_lines: int = 0


# --------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------


def _lit(value: Any) -> str:
    """A DuckDB SQL literal for a Python value (str, int, bool, None, list, dict -> struct)."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_lit(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_lit(k)}: {_lit(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"no SQL literal for {value!r}")


def _json_line(obj: dict[str, Any]) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")) + "\n"


def _write_if_changed(path: Path, text: str) -> None:
    data = text.encode("utf-8")
    if path.exists() and path.read_bytes() == data:
        return
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def write_reference(landing: Path) -> tuple[Path, ...]:
    """Write the fixed reference files under `<landing>/reference/` (unchanged files are left alone)."""
    folder = Path(landing) / "reference"
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, rows in REFERENCE.items():
        path = folder / f"{name}.ndjson"
        _write_if_changed(path, "".join(_json_line(r) for r in rows))
        paths.append(path)
    return tuple(paths)


def _file_count(participations: int) -> int:
    if participations < 100:
        return 1
    if participations < 10_000:
        return 2
    return 4


_DRAWS = 256  # independent random draws per event: event i uses the keys i * _DRAWS + k


def _hash_base(seed: int, day: dt.date) -> int:
    """A per-(seed, day) offset for the hash keys, small enough that `i * _DRAWS + k + base` fits a BIGINT.

    DuckDB's multi-argument `hash(a, b, ...)` combines its arguments too weakly (draws come out
    correlated), while the single-argument hash of a BIGINT mixes well.
    """
    digest = hashlib.blake2b(f"{seed}/{day.isoformat()}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % (1 << 60)


def _id_width(participations: int) -> int:
    return max(6, len(str(max(participations - 1, 0))))


# --------------------------------------------------------------------------------------------------
# The event query: one function per part of the event, assembled by `_events_sql`
# --------------------------------------------------------------------------------------------------


def _j(value: Any) -> str:
    """The JSON text of a value, as `to_json` would write it (UTF-8 kept raw)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _jpool(values: list[Any]) -> str:
    """A SQL list literal of the JSON texts of `values`: picked per row, they need no escaping at run time."""
    return _lit([_j(v) for v in values])


def _pick(pool_sql: str, draw: str) -> str:
    """`pool[draw + 1]` for a 0-based draw."""
    return f"{pool_sql}[{draw} + 1]"


def _cat(*parts: str) -> str:
    """One variadic `concat(...)`: a single allocation per row, where a chain of `||` copies the
    growing line again at every step (quadratic in the number of pieces)."""
    return "concat(" + ", ".join(parts) + ")"


def _s(text: str) -> str:
    """A SQL string literal holding `text` verbatim (JSON punctuation, pre-encoded keys...)."""
    return _lit(text)


@dataclass(frozen=True)
class _Draws:
    """The pseudo-random draws of event `i` for one (seed, day): draw `k` hashes `i * _DRAWS + k + base`.

    Hashing a key per (event, draw), rather than running a random generator along the rows, makes an
    event depend on its number only: the part files are written in parallel and still hold exactly the
    events one file would. Each part of the event owns its draw numbers, so a new draw in one part never
    shifts another part's values: 1-6 the shared columns (content, names, publisher, place, email
    suffix), 7 the content version, 8-20 the respondent, 21 the timestamp, 22-26 page URL and TC string,
    27 and 100+ the questions, 28-30 and 200+ the optins, 31 the forms, 40-45 which optional fields
    are there.
    """

    base: int

    def key(self, k: int) -> str:
        return f"i * {_DRAWS} + {k} + {self.base}"

    def __call__(self, k: int, n: int) -> str:
        """A deterministic pseudo-random INTEGER in [0, n) for event `i` and draw `k`."""
        return f"(hash({self.key(k)}) % {n})::INTEGER"


_CONTENT_DRAW = 1  # also read by `generate_day` to tell which accounts a day's events belong to


def _identity_sql(day: dt.date, participations: int, draw: _Draws) -> list[str]:
    """The fields every event has: id, timestamp, account, content and version, publisher.

    The id is the event's number zero-padded to one width for the day, so ids sort like the events. Each
    event gets its own slot of the day and a drawn instant inside it: timestamps increase with the id
    and stay inside the day whatever the count, as the landing zone promises. One event in ten is on
    an older version of its content, because real participations straddle a content's edits.
    """
    slot = max(1, 86_400_000 // max(participations, 1))  # milliseconds per event
    timestamp = (
        f"strftime(DATE '{day.isoformat()}' + to_milliseconds((i * {slot} + {draw(21, slot)}) % 86400000), "
        "'%Y-%m-%dT%H:%M:%S.%gZ')"
    )
    versions = _lit([c["version"] for c in CONTENTS])
    return [
        _s(f'{{"participation_id":"p_{day:%Y%m%d}_'),
        f"lpad(i::VARCHAR, {_id_width(participations)}, '0')",
        _s('","timestamp":"'),
        timestamp,
        _s('","account_id":'),
        f"{_jpool([a['account_id'] for a in ACCOUNTS])}[ai]",
        _s(',"content_id":'),
        f"{_jpool([c['content_id'] for c in CONTENTS])}[ci]",
        _s(',"content_version":'),
        f"(CASE WHEN {draw(7, 10)} = 0 THEN greatest(1, {versions}[ci] - 1) ELSE {versions}[ci] END)::VARCHAR",
        _s(',"publisher_id":'),
        f"{_jpool([p['publisher_id'] for p in PUBLISHERS])}[pi + 1]",
        _s(',"publisher_name":'),
        f"{_jpool([p['name'] for p in PUBLISHERS])}[pi + 1]",
    ]


def _listing(count: str, item: Callable[[int], list[str]], most: int) -> str:
    """`[item(0),...,item(count-1)]` for a count in 0..most: one CASE branch per length, because SQL has
    no loop to build a JSON list as text."""
    branches = []
    for n in range(1, most + 1):
        parts = [_s("[")]
        for k in range(n):
            parts += ([_s(",")] if k else []) + item(k)
        branches.append(f"WHEN {n} THEN {_cat(*parts, _s(']'))}")
    return f"CASE {count} WHEN 0 THEN '[]' {' '.join(branches)} END"


def _questions_sql(draw: _Draws) -> str:
    """The JSON `questions` list (0-3): the content decides which questions it asks, so every event of a
    content asks the same ones, as on the platform; the answers are the respondent's, drawn."""

    def question(k: int) -> list[str]:
        qtext = _pick(_jpool(QUESTION_TEXTS), f"((ci * 3 + {k}) % {len(QUESTION_TEXTS)})")
        answer = _pick(_jpool(ANSWER_TEXTS), draw(100 + k, len(ANSWER_TEXTS)))
        return [
            _s(f'{{"question_id":"q_{k + 1}","question_text":'),
            qtext,
            _s(',"answer_text":'),
            answer,
            _s("}"),
        ]

    return _listing(draw(27, 4), question, 3)


def _optins_sql(draw: _Draws) -> str:
    """The JSON `optins` list (0-3): consecutive optins of the event's account from a drawn start, so
    they are distinct and never another account's (the exports rely on both); each accepted or refused,
    its email the event's or null (optin_email_j)."""

    def optin(k: int) -> list[str]:
        optin_id = f"acc_optins[((optin_start + {k}) % len(acc_optins)) + 1]"
        value = f"CASE WHEN {draw(200 + k, 100)} < 62 THEN 'true' ELSE 'false' END"
        return [
            _s('{"optin_id":'),
            optin_id,
            _s(',"optin_email":'),
            "optin_email_j",
            _s(',"optin_value":'),
            value,
            _s("}"),
        ]

    return _listing(f"least({draw(28, 4)}, len(acc_optins))", optin, 3)


# What a form field may hold: the respondent's columns of `_rows_sql` (each `<value>_j`, JSON text).
_FIELD_VALUES = (
    "gender",
    "firstname",
    "lastname",
    "mail",
    "phone",
    "birthdate",
    "address1",
    "address2",
    "zip",
    "city",
    "country",
    "comment",
)


def _field_value_sql(field: dict[str, str | None]) -> str:
    """The column holding a form field's JSON value; a data file naming an unknown one fails here, with
    the file and the field to fix, rather than as a DuckDB binder error about a missing column."""
    value = field.get("value")
    if value not in _FIELD_VALUES:
        raise ValueError(
            f"{_DATA}/{_POOLS_FILE}: form field {field.get('field_id')!r} has value {value!r}; "
            f"use one of {', '.join(_FIELD_VALUES)}"
        )
    return f"{value}_j"


def _form_sql(form_id: str, form_name: str, fields: list[dict[str, str | None]]) -> str:
    """SQL building the JSON text of a one-form `forms` list; `form_id`/`form_name` are SQL expressions."""
    parts = [_s('[{"form_id":'), form_id, _s(',"form_name":'), form_name, _s(',"form_data":[')]
    for n, field in enumerate(fields):
        static = ("," if n else "") + (
            f'{{"field_id":{_j(field["field_id"])},"field_name":{_j(field["field_name"])},'
            f'"field_type":{_j(field["field_type"])},"field_value":'
        )
        parts += [_s(static), _field_value_sql(field), _s("}")]
    parts.append(_s("]}]"))
    return _cat(*parts)


def _forms_sql(draw: _Draws) -> str:
    """The JSON `forms` list: the full form (four events in ten), the short one (three) or none. The
    field values are the event's respondent, so a form's email is the event's email: the CRM export
    falls back to it when the event has none."""
    form_names = _jpool(FORM_NAMES)
    full_form = _form_sql(
        _cat(_s('"f_'), "ci::VARCHAR", _s('"')), _pick(form_names, f"(ci % {len(FORM_NAMES)})"), FULL_FORM
    )
    short_form = _form_sql(
        _cat(_s('"f_'), "ci::VARCHAR", _s('_s"')),
        _pick(form_names, f"((ci + 1) % {len(FORM_NAMES)})"),
        SHORT_FORM,
    )
    return f"CASE WHEN {draw(31, 10)} < 4 THEN {full_form} WHEN {draw(31, 10)} < 7 THEN {short_form} ELSE '[]' END"


def _page_url_sql(draw: _Draws) -> str:
    """The JSON text of a publisher's article URL, sometimes with a query string holding commas."""
    return _cat(
        _s('"'),
        f"{_lit([p['site'] for p in PUBLISHERS])}[pi + 1]",
        _s("/article/"),
        f"(1000 + {draw(22, 9000)})::VARCHAR",
        _s("-"),
        _pick(_lit(PAGE_TOPICS), draw(23, len(PAGE_TOPICS))),
        f"CASE WHEN {draw(24, 4)} = 0 THEN '?utm_source=beop&utm_medium=embed&tags=a,b' ELSE '' END",
        _s('"'),
    )


def _tc_string_sql(draw: _Draws) -> str:
    """The JSON text of a consent string shaped like a TCF one (its content is never decoded)."""
    return _cat(
        _s('"CP'),
        f"upper(to_hex(hash({draw.key(25)})))",
        _s("AAAAA"),
        f"upper(to_hex(hash({draw.key(26)})))",
        _s('.YAAAAAAAAAAA"'),
    )


def _optional(key: str, value: str, draw: str, absent_pct: int, null_pct: int) -> str:
    """`,"key":<value>` usually; sometimes `,"key":null`; sometimes nothing at all."""
    return (
        f"CASE WHEN {draw} < {absent_pct} THEN '' "
        f"WHEN {draw} < {absent_pct + null_pct} THEN {_s(f',{_j(key)}:null')} "
        f"ELSE {_cat(_s(f',{_j(key)}:'), value)} END"
    )


def _optional_fields_sql(draw: _Draws) -> list[str]:
    """The fields an event may lack. Each is missing a few events in a hundred and null a few others,
    because the landing zone allows both and the exports must treat them alike."""
    return [
        _optional("page_url", _page_url_sql(draw), draw(40, 100), 5, 5),
        _optional("tc_string", _tc_string_sql(draw), draw(41, 100), 8, 7),
        _optional("email", "mail_j", draw(42, 100), 6, 9),
        _optional("questions", _questions_sql(draw), draw(43, 100), 10, 5),
        _optional("optins", _optins_sql(draw), draw(44, 100), 5, 5),
        _optional("forms", _forms_sql(draw), draw(45, 100), 5, 5),
    ]


def _mail_sql(draw: _Draws) -> str:
    """The respondent's address, built from the ASCII forms of the names: generated values stay free of
    quotes and backslashes, so they go into the JSON text unescaped."""
    return _cat(
        _pick(_lit([f["email_form"] for f in FIRST_NAMES]), "fi"),
        _s("."),
        _pick(_lit([n["email_form"] for n in LAST_NAMES]), "li"),
        "CASE WHEN pct < 50 THEN '' ELSE (pct % 97)::VARCHAR END",
        _s("@"),
        _pick(_lit(EMAIL_DOMAINS), draw(8, len(EMAIL_DOMAINS))),
    )


def _rows_sql(draw: _Draws, start: int, stop: int) -> str:
    """The CTE `ev`: events start..stop-1 with the values several parts of the event share.

    The content (hence the account and its optins), the publisher and the respondent are drawn once per
    event, here, so that the event's email, its optins' email and its form's fields describe the same
    person. Columns ending in `_j` already hold JSON text.
    """
    accounts = [a["account_id"] for a in ACCOUNTS]
    content_account_idx = [accounts.index(c["account_id"]) + 1 for c in CONTENTS]
    account_optins = [[_j(o["optin_id"]) for o in OPTINS if o["account_id"] == a] for a in accounts]
    phone = (
        f"printf('\"+33 %d %02d %02d %02d %02d\"', 6 + {draw(9, 2)}, {draw(10, 100)}, {draw(11, 100)}, "
        f"{draw(12, 100)}, {draw(13, 100)})"
    )
    birthdate = f"printf('\"%04d-%02d-%02d\"', 1950 + {draw(14, 56)}, 1 + {draw(15, 12)}, 1 + {draw(16, 28)})"
    address1 = _cat(
        _s('"'),
        f"(1 + {draw(17, 180)})::VARCHAR",
        _s(", "),
        _pick(_lit([_j(s)[1:-1] for s in STREETS]), draw(18, len(STREETS))),
        _s('"'),
    )
    return f"""
WITH b AS (
    SELECT
        i,
        {draw(_CONTENT_DRAW, len(CONTENTS))} + 1 AS ci,
        {draw(2, len(FIRST_NAMES))} AS fi,
        {draw(3, len(LAST_NAMES))} AS li,
        {draw(4, len(PUBLISHERS))} AS pi,
        {draw(5, len(PLACES))} AS place,
        {draw(6, 100)} AS pct
    FROM range({start}, {stop}) t(i)
), e AS (
    SELECT
        i, ci, pi, place,
        {_lit(content_account_idx)}[ci] AS ai,
        {_pick(_jpool([f["name"] for f in FIRST_NAMES]), "fi")} AS firstname_j,
        {_pick(_jpool([f["gender"] for f in FIRST_NAMES]), "fi")} AS gender_j,
        {_pick(_jpool([n["name"] for n in LAST_NAMES]), "li")} AS lastname_j,
        {_mail_sql(draw)} AS mail
    FROM b
), ev AS (
    SELECT
        *,
        concat('"', mail, '"') AS mail_j,
        CASE WHEN {draw(30, 10)} < 7 THEN concat('"', mail, '"') ELSE 'null' END AS optin_email_j,
        {_lit(account_optins)}[ai] AS acc_optins,
        {draw(29, 16)} AS optin_start,
        {phone} AS phone_j,
        {birthdate} AS birthdate_j,
        {address1} AS address1_j,
        {_pick(_jpool(ADDRESS_LINE_2), draw(19, len(ADDRESS_LINE_2)))} AS address2_j,
        {_pick(_jpool([p["zip_code"] for p in PLACES]), "place")} AS zip_j,
        {_pick(_jpool([p["city"] for p in PLACES]), "place")} AS city_j,
        {_pick(_jpool([p["country"] for p in PLACES]), "place")} AS country_j,
        {_pick(_jpool(COMMENTS), draw(20, len(COMMENTS)))} AS comment_j
    FROM e
)
"""


def _events_sql(day: dt.date, participations: int, seed: int, start: int, stop: int) -> str:
    """A query of one VARCHAR column `line`: the JSON text of events start..stop-1 of the day.

    The JSON is assembled as text: every value picked from a pool is pre-encoded in Python (`_jpool`),
    generated values are ASCII without quotes or backslashes, so nothing needs escaping per row
    (several times faster than building structs and calling `to_json`).
    """
    draw = _Draws(_hash_base(seed, day))
    line = _cat(*_identity_sql(day, participations, draw), *_optional_fields_sql(draw), _s("}"))
    return f"{_rows_sql(draw, start, stop)}SELECT {line} AS line\nFROM ev\n"


def _copy_lines(con: duckdb.DuckDBPyConnection, query: str, path: Path) -> None:
    """Write the `line` column of `query` as raw text lines (DuckDB's CSV writer with quoting off).

    The lines are JSON texts from `to_json`: no raw newline, quote-free CSV is exactly the text.
    """
    escaped = str(path).replace("'", "''")
    con.execute(
        f"COPY ({query}) TO '{escaped}' "
        "(FORMAT CSV, HEADER false, QUOTE '', ESCAPE '', DELIMITER E'\\x01', NEW_LINE E'\\n')"
    )


def _write_part(query: str, path: Path, gz: bool) -> Path:
    """Write one part file (its own single-threaded in-memory DuckDB connection)."""
    with duckdb.connect(config={"threads": 1}) as con:
        if not gz:
            _copy_lines(con, query, path)
            return path
        # DuckDB's own gzip COPY is slow: write plain text, then compress it with isal at level 1.
        # The temporary name matches neither `*.ndjson` nor `*.ndjson.gz`, but `part-*` (cleaned up).
        tmp = path.with_name(path.name + ".plain-tmp")
        try:
            _copy_lines(con, query, tmp)
            _gzip_file(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
        return path


def _gzip_file(src: Path, dst: Path) -> None:
    """Compress `src` into `dst` (level 1; mtime 0 and no file name in the header: reproducible bytes)."""
    with (
        open(src, "rb") as fin,
        open(dst, "wb") as raw,
        _gzip.GzipFile(filename="", mode="wb", compresslevel=1, fileobj=raw, mtime=0) as fout,
    ):
        shutil.copyfileobj(fin, fout, 4 * 1024 * 1024)


# --------------------------------------------------------------------------------------------------
# Faults
# --------------------------------------------------------------------------------------------------


def _fault_lines(day: dt.date, first_line: str | None) -> list[str]:
    """A handful of bad lines, one per rejection reason, plus an exact duplicate of the day's first event."""
    stamp = f"{day.isoformat()}T12:00:00.000Z"
    other_day = f"{(day - dt.timedelta(days=1)).isoformat()}T23:59:59.999Z"
    tag = f"{day:%Y%m%d}"

    def event(pid: str | None, ts: str, account: str, content: str) -> dict[str, Any]:
        obj: dict[str, Any] = {
            "participation_id": pid,
            "timestamp": ts,
            "account_id": account,
            "content_id": content,
            "content_version": 1,
            "publisher_id": "pub_1",
            "publisher_name": "Le Journal",
            "page_url": "https://www.lejournal.example/article/1",
            "email": "faulty@example.com",
            "questions": [],
            "optins": [],
            "forms": [],
        }
        if pid is None:
            del obj["participation_id"]
        return obj

    lines = [
        # invalid JSON (truncated line)
        '{"participation_id": "p_' + tag + '_bad_json", "timestamp": "' + stamp + '", "account_id": "a_1",',
        _json_line(event(None, stamp, "a_1", "c_1")).rstrip("\n"),  # missing participation_id
        _json_line(event(f"p_{tag}_bad_account", stamp, "a_999", "c_1")).rstrip("\n"),  # unknown account
        _json_line(event(f"p_{tag}_bad_content", stamp, "a_1", "c_999")).rstrip("\n"),  # unknown content
        _json_line(event(f"p_{tag}_foreign_content", stamp, "a_1", "c_6")).rstrip("\n"),  # content of a_2
        _json_line(event(f"p_{tag}_other_day", other_day, "a_1", "c_1")).rstrip("\n"),  # timestamp of day - 1
    ]
    if first_line is not None:
        lines.append(first_line.rstrip("\n"))  # the same participation_id twice: loaded once
    return lines


# --------------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------------


def generate_day(
    landing: Path,
    day: dt.date,
    participations: int,
    seed: int = 0,
    *,
    faults: bool = False,
) -> GenerationSummary:
    """Write the reference data and exactly `participations` events of `day` into `landing`."""
    if participations < 0:
        raise ValueError("participations must be >= 0")
    landing = Path(landing)
    reference_files = write_reference(landing)

    folder = landing / "participations" / f"date={day.isoformat()}"
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("part-*"):
        if old.is_file():
            old.unlink()

    n_files = _file_count(participations)
    bounds = [participations * k // n_files for k in range(n_files + 1)]
    tasks = []
    for k in range(n_files):
        gz = n_files > 1 and k == 1
        path = folder / (f"part-{k:05d}.ndjson.gz" if gz else f"part-{k:05d}.ndjson")
        tasks.append((_events_sql(day, participations, seed, bounds[k], bounds[k + 1]), path, gz))
    # DuckDB runs each query's `range()` pipeline on one thread: the files are written side by side,
    # one connection each, which uses both cores (and keeps every file's row order deterministic).
    workers = max(1, min(len(tasks), os.cpu_count() or 1, 4))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        files = list(pool.map(lambda task: _write_part(*task), tasks))

    used_accounts: tuple[str, ...] = ()
    if participations:
        content = _Draws(_hash_base(seed, day))(_CONTENT_DRAW, len(CONTENTS))
        with duckdb.connect() as con:
            rows = con.execute(f"SELECT DISTINCT {content} FROM range({participations}) t(i)").fetchall()
        used = {CONTENTS[row[0]]["account_id"] for row in rows}
        used_accounts = tuple(a["account_id"] for a in ACCOUNTS if a["account_id"] in used)

    bad_lines = 0
    if faults:
        first_line = None
        if participations:
            with open(files[0], encoding="utf-8") as fh:
                first_line = fh.readline()
        lines = _fault_lines(day, first_line)
        path = folder / "part-faults.ndjson"
        path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
        files.append(path)
        bad_lines = len(lines)

    return GenerationSummary(
        day=day,
        participations=participations,
        files=tuple(files),
        reference_files=reference_files,
        accounts=used_accounts,
        bad_lines=bad_lines,
    )
