"""THE place where the columns of a specific (CRM) export are decided (docs/file-contract.md).

Everything a customer sees in a CSV file is chosen here, and only here:

- `FIXED_COLUMNS`: the fifteen columns every CRM file starts with, in the contract's order;
- `optin_headers`: the header of each selected optin column (its name; a later optin that shares a name
  with an earlier one gets ` (OPTIN_ID)` appended; an optin without a name is headed by its id);
- `crm_select`: the DuckDB query that reads one day's participations Parquet and returns those columns,
  one row per selected participation, in the Parquet's order (timestamp, participation_id).

`crm_csv.py` only streams the result of that query into a file.

Choices, and why:

- Tenancy does not rest on the registry alone: the query ALWAYS filters `account_id = $account_id`, so
  that an export configured (or built in code) with another account's content id still only ever sees its
  own account's participations (docs/file-contract.md).
- Every id (account, campaigns, contents, optins) is a bound parameter; no customer value is ever
  formatted into the SQL text. The optin columns carry neutral aliases (`optin_0`, `optin_1`, ...) in SQL
  and get their customer-facing header (any Unicode, commas, quotes) only as Arrow field names, so an
  optin name never reaches the SQL parser and cannot clash with a fixed column name in DuckDB's
  case-insensitive namespace.
- crm-optin: the participations of the account in which the user said yes (`optin_value = true`) to at
  least one selected optin. If the export also lists campaigns or contents, the participation must in
  addition belong to one of them (content in `contents` OR campaign in `campaigns`): an operator who
  narrows an optin export to a campaign expects exactly that, and with no campaigns/contents listed the
  export covers every creative of the account, as docs/file-contract.md describes.
- `email` is the participation's own email (an empty string counts as missing), else the first non-empty
  form field of type `email`. Every other typed column is the first non-empty value of that
  `field_type` across the participation's forms, in form order then field order. `field_type` is matched
  exactly, as the contract spells the types.
- An optin column is the optin's `optin_value` in the participation (true / false), empty when the optin is
  not part of the participation (or its value is null); when one optin appears twice the first one wins.
- The typed columns are computed once per participation, by the loader, and stored in the participations
  day (`STORED_CRM_COLUMNS`, `crm_email` already holding the email fallback): an export is then a filtered
  projection. A day loaded before those columns existed is read with the same derivation
  (`form_field_sql`), at export time.
- Row order: no ORDER BY (it would make DuckDB hold the whole day to sort it). The loader writes the
  Parquet sorted by (timestamp, participation_id) and the reader connection keeps
  `preserve_insertion_order = true`, so a filter-and-project query streams the rows in file order.
- `neutralize_formulas` (off by default: `+33 6 ...` phone numbers must stay intact): a data cell that
  starts with `=`, `+`, `-`, `@`, a tab or a carriage return gets a leading `'` (OWASP "CSV injection").
  Headers are not altered: they are the contract's column names and the account's own optin names.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from beop_assets.exports.registry import SpecificExport
from beop_assets.landing.reference import Reference
from beop_assets.model.typed_fields import (
    CRM_FIELDS_SQL,
    FORM_FIELD_COLUMNS,
    STORED_CRM_COLUMNS,
    form_field_sql,
    has_stored_crm_columns,
    stored_crm_columns_sql,
    typed_fields_sql,
)

# The fixed columns of every CRM file, in the contract's order (docs/file-contract.md).
FIXED_COLUMNS: tuple[str, ...] = FORM_FIELD_COLUMNS + (
    "creative-id",
    "creative-name",
    "campaign-id",
    "campaign-name",
)

# The participation's columns an export reads as they are.
_PASSED_ON = "content_id, content_name, campaign_id, campaign_name, optins"

__all__ = [
    "CRM_FIELDS_SQL",
    "FORM_FIELD_COLUMNS",
    "STORED_CRM_COLUMNS",
    "form_field_sql",
    "has_stored_crm_columns",
    "stored_crm_columns_sql",
    "typed_fields_sql",
]

# OWASP CSV injection: a cell starting with one of these is read as a formula by spreadsheets.
FORMULA_TRIGGERS: tuple[str, ...] = ("=", "+", "-", "@", "\t", "\r")


def optin_names(export: SpecificExport, reference: Reference) -> dict[str, str]:
    """The reference name of each optin the export selects (an optin the reference lacks has none)."""
    return {o: reference.optins[o].name for o in export.optins if o in reference.optins}


def optin_headers(optin_ids: list[str], optin_names: dict[str, str]) -> list[str]:
    """The header of each selected optin column, in the export's order.

    The header is the optin's name (its id when the name is unknown or empty). When several selected
    optins share a name, the first keeps it and every later one gets ` (OPTIN_ID)` appended, so that a
    customer can tell the columns apart.
    """
    headers: list[str] = []
    seen: set[str] = set()
    for optin_id in optin_ids:
        name = optin_names.get(optin_id) or optin_id
        headers.append(f"{name} ({optin_id})" if name in seen else name)
        seen.add(name)
    return headers


def crm_headers(export: SpecificExport, optin_names: dict[str, str]) -> list[str]:
    """Every header of the export's CSV file, in order: the fixed columns, then the optin columns."""
    return list(FIXED_COLUMNS) + optin_headers(list(export.optins), optin_names)


@dataclass(frozen=True)
class CrmQuery:
    """The SQL text (no customer value in it), its bound parameters, and the header of each column."""

    sql: str
    params: dict[str, object]
    headers: list[str]


def _quoted(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _neutralized(expression: str) -> str:
    triggers = ", ".join(f"chr({ord(c)})" for c in FORMULA_TRIGGERS)
    return f"CASE WHEN left({expression}, 1) IN ({triggers}) THEN '''' || {expression} ELSE {expression} END"


def _selection(export: SpecificExport) -> str:
    """The participations the export type selects (the tenant filter is applied separately, always)."""
    in_creatives = (
        "(list_contains(CAST($contents AS VARCHAR[]), content_id) "
        "OR list_contains(CAST($campaigns AS VARCHAR[]), campaign_id))"
    )
    if export.type == "crm-participation":
        return in_creatives
    if export.type == "crm-optin":
        opted_in = (
            "len(list_filter(optins, lambda o: o.optin_value "
            "AND list_contains(CAST($optins AS VARCHAR[]), o.optin_id))) > 0"
        )
        return f"{opted_in} AND {in_creatives}" if (export.campaigns or export.contents) else opted_in
    raise ValueError(f"unknown specific export type {export.type!r}")


def crm_select(
    export: SpecificExport, optin_names: dict[str, str], participations: Path, *, derive_typed_columns: bool = False
) -> CrmQuery:
    """The query producing the export's CSV columns from one day's participations Parquet file.

    The typed columns are read from the day as the loader stored them; `derive_typed_columns` (or a day
    loaded without them) derives them here instead, from the forms: the same values, at a higher cost.
    """
    # DuckDB refuses a parameter the SQL does not use: bind exactly those `_selection` refers to.
    params: dict[str, object] = {"parquet": str(participations), "account_id": export.account_id}
    if export.type == "crm-participation" or export.campaigns or export.contents:
        params.update(contents=list(export.contents), campaigns=list(export.campaigns))
    if export.type == "crm-optin":
        params["optins"] = list(export.optins)

    stored = not derive_typed_columns and has_stored_crm_columns(participations)
    columns: list[tuple[str, str, bool]] = []  # (alias, expression, is_text)
    for name in FORM_FIELD_COLUMNS:
        columns.append((name, STORED_CRM_COLUMNS[name] if stored else form_field_sql(name), True))
    columns += [
        ("creative-id", "content_id", True),
        ("creative-name", "content_name", True),
        ("campaign-id", "campaign_id", True),
        ("campaign-name", "campaign_name", True),
    ]
    for index, optin_id in enumerate(export.optins):
        params[f"optin_{index}"] = optin_id
        columns.append(
            (f"optin_{index}", f"list_filter(optins, lambda o: o.optin_id = $optin_{index})[1].optin_value", False)
        )

    inner = ",\n           ".join(f"{expression} AS {_quoted(alias)}" for alias, expression, _ in columns)
    if export.neutralize_formulas:
        outer = ",\n       ".join(
            (_neutralized(_quoted(alias)) if is_text else _quoted(alias)) + f" AS {_quoted(alias)}"
            for alias, _, is_text in columns
        )
    else:
        outer = "*"
    day = f"""read_parquet($parquet, hive_partitioning = false)
        WHERE account_id = $account_id
          AND {_selection(export)}"""
    if stored:
        rows = f"SELECT {', '.join(STORED_CRM_COLUMNS.values())}, {_PASSED_ON} FROM {day}"
    else:  # a day loaded before the typed columns were stored: derive them here
        rows = (
            f"SELECT email, {typed_fields_sql('fields')}, {_PASSED_ON} "
            f"FROM (SELECT email, {CRM_FIELDS_SQL} AS fields, {_PASSED_ON} FROM {day})"
        )
    sql = f"""
SELECT {outer}
FROM (
    SELECT {inner}
    FROM ({rows})
)
"""
    return CrmQuery(sql=sql, params=params, headers=crm_headers(export, optin_names))
