"""The typed form-field values the model stores per participation (docs/landing-zone.md): each CSV column a
form field of type email, phone, firstname, ... feeds, computed once when a day is loaded, so that
every CSV export of that day is a filtered projection instead of re-deriving them.

It belongs to the model (the loader computes these columns); the CSV exports read them
(`exports/crm_columns.py`), and derive them with the same SQL for a day loaded before they existed.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq

# The columns a typed form field feeds (docs/landing-zone.md), in the CSV's order.
FORM_FIELD_COLUMNS: tuple[str, ...] = (
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
)
# Where the loader stores each typed column in the participations day (`crm_email`: with the fallback).
STORED_CRM_COLUMNS: dict[str, str] = {name: "crm_" + name.replace("-", "_") for name in FORM_FIELD_COLUMNS}
# Every form field of a participation, in form order then field order (over the day's `forms` column).
CRM_FIELDS_SQL = "flatten(list_transform(forms, lambda f: coalesce(f.form_data, [])))"


def form_field_sql(field_type: str, fields: str = "fields") -> str:
    """The value of one typed CSV column: the first non-empty value of that `field_type` among the
    participation's form fields, in form order then field order; for `email`, the participation's own
    email first. Reads `kept` and `kinds` (see `typed_fields_sql`) and `email`."""
    # field_type is one of our own constants (FORM_FIELD_COLUMNS), never a customer value.
    if field_type not in FORM_FIELD_COLUMNS:
        raise ValueError(f"not a CRM form field type: {field_type!r}")
    expression = f"{fields}_kept[list_position({fields}_kinds, '{field_type}')].field_value"
    return f"coalesce(nullif(email, ''), {expression})" if field_type == "email" else expression


def typed_fields_sql(fields: str = "fields") -> str:
    """The two lists `form_field_sql` reads, from the flattened form fields `fields`: the non-empty
    fields (`<fields>_kept`) and their types (`<fields>_kinds`): one pass over the fields, then one
    native position lookup per column (eleven lambdas per row cost more than the rest of the export)."""
    return (
        f"list_filter({fields}, lambda d: coalesce(d.field_value, '') <> '') AS {fields}_kept, "
        f"list_transform(list_filter({fields}, lambda d: coalesce(d.field_value, '') <> ''), "
        f"lambda d: d.field_type) AS {fields}_kinds"
    )


def stored_crm_columns_sql(fields: str = "crm_fields") -> str:
    """The stored typed columns, as the loader computes them (a select list over `typed_fields_sql`)."""
    return ", ".join(f"{form_field_sql(name, fields)} AS {STORED_CRM_COLUMNS[name]}" for name in FORM_FIELD_COLUMNS)


def has_stored_crm_columns(participations: Path) -> bool:
    """Whether the day was loaded with the stored typed columns (read from the Parquet footer only)."""
    names = set(pq.read_schema(participations).names)
    return all(column in names for column in STORED_CRM_COLUMNS.values())
