"""Reference data (accounts, campaigns, contents, optins) as the registry and the model need it.

The reference files are small (one line per account, campaign, content, optin), so they are read
whole with DuckDB. The export registry checks tenancy against them: an export may only select
campaigns, contents and optins of its own account.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

REFERENCE_TABLES: dict[str, dict[str, str]] = {
    "accounts": {"account_id": "VARCHAR", "username": "VARCHAR"},
    "campaigns": {"campaign_id": "VARCHAR", "account_id": "VARCHAR", "name": "VARCHAR"},
    "contents": {
        "content_id": "VARCHAR",
        "account_id": "VARCHAR",
        "campaign_id": "VARCHAR",
        "name": "VARCHAR",
        "version": "BIGINT",
    },
    "optins": {
        "optin_id": "VARCHAR",
        "account_id": "VARCHAR",
        "content_id": "VARCHAR",
        "name": "VARCHAR",
        "text": "VARCHAR",
    },
}


class ReferenceDataError(Exception):
    """The reference files are missing or unreadable: nothing can be checked or loaded without them."""


def read_reference_sql(name: str, path: Path) -> str:
    """A DuckDB query reading one reference file with its declared column types."""
    columns = ", ".join(f"'{col}': '{typ}'" for col, typ in REFERENCE_TABLES[name].items())
    escaped = str(path).replace("'", "''")
    return (
        f"SELECT * FROM read_json('{escaped}', format='newline_delimited', "
        f"columns={{{columns}}}, maximum_object_size=16777216)"
    )


@dataclass(frozen=True)
class Optin:
    optin_id: str
    account_id: str
    content_id: str | None
    name: str
    text: str | None


@dataclass
class Reference:
    accounts: dict[str, str] = field(default_factory=dict)  # account_id -> username
    campaigns: dict[str, str] = field(default_factory=dict)  # campaign_id -> account_id
    contents: dict[str, str] = field(default_factory=dict)  # content_id -> account_id
    optins: dict[str, Optin] = field(default_factory=dict)
    _optin_owners: dict[str, str] | None = field(default=None, init=False, repr=False, compare=False)

    def owners(self, kind: str) -> Mapping[str, str]:
        """id -> account_id of the campaigns, contents or optins: the index a tenancy check looks
        selections up in (built once, never per export)."""
        if kind == "optins":
            if self._optin_owners is None or len(self._optin_owners) != len(self.optins):
                self._optin_owners = {k: o.account_id for k, o in self.optins.items()}
            return self._optin_owners
        return self.campaigns if kind == "campaigns" else self.contents

    @classmethod
    def read(cls, folder: Path) -> Reference:
        """Read `<landing>/reference/*.ndjson` (already local: see `landing.zone`)."""
        con = duckdb.connect()
        ref = cls()
        try:
            for name in REFERENCE_TABLES:
                path = folder / f"{name}.ndjson"
                if not path.exists():
                    raise ReferenceDataError(f"reference file missing: {path}")
                try:
                    rows = con.sql(read_reference_sql(name, path)).fetchall()
                except duckdb.Error as exc:
                    raise ReferenceDataError(f"reference file unreadable: {path}: {exc}") from exc
                if name == "accounts":
                    ref.accounts = {r[0]: r[1] for r in rows if r[0]}
                elif name == "campaigns":
                    ref.campaigns = {r[0]: r[1] for r in rows if r[0]}
                elif name == "contents":
                    ref.contents = {r[0]: r[1] for r in rows if r[0]}
                else:
                    ref.optins = {r[0]: Optin(*r) for r in rows if r[0]}
        finally:
            con.close()
        return ref
