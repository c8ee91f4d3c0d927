"""The export registry as a table of the platform's PostgreSQL database (`BEOP_EXPORTS=postgresql://...`).

Customers create and change their exports in the platform's settings; the platform writes them to this
table, one row per export with the fields a YAML entry has, and every machine of the product reads the
same rows (no file to copy). The rows are validated exactly as YAML entries are (`registry.py`).

- A change is found with one cheap query: every insert, update or delete bumps the one-row revision
  table from a sequence (statement triggers), so `SELECT revision FROM <table>_revision` tells whether
  anything changed; the 10,000 rows are read and validated only when it did.
- A reader sees committed rows only, all from one snapshot (one REPEATABLE READ transaction that reads
  the revision and the rows): a row the platform is writing is never seen half-written, and the revision
  read names exactly the rows read.
- The URL's password never leaves this module: every message names the host, port, database and table
  (`TableAddress.__str__`), and a driver's error text is scrubbed of it before it is repeated.
"""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from beop_assets.exports.registry import Entries, Fault

DEFAULT_TABLE = "beop_periodic_exports"
URL_SCHEMES = ("postgresql", "postgres")
_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,40}(\.[a-z_][a-z0-9_]{0,40})?$")
ARRAY_COLUMNS = ("campaigns", "contents", "optins")
# The columns a row shares with a YAML entry, in the order an entry is written.
ENTRY_COLUMNS = ("id", "account_id", "mode", "type", "name", *ARRAY_COLUMNS, "neutralize_formulas", "enabled")
TARGET_COLUMNS = ("sftp", "gcs")
CONNECT_TIMEOUT_S = 10


class RegistryTableError(Exception):
    """The table cannot be reached or read; the message names host, database and table, never a password."""


def is_table_url(value: str) -> bool:
    return value.split("://", 1)[0].lower() in URL_SCHEMES and "://" in value


@dataclass(frozen=True)
class TableAddress:
    """Where the registry table is. `str()` is what may be printed: no user name, no password."""

    host: str
    port: int
    database: str
    table: str = DEFAULT_TABLE
    user: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)

    @classmethod
    def parse(cls, url: str) -> TableAddress:
        """`postgresql://user:pass@host:port/db?table=schema.name` (a ValueError that repeats no password)."""
        try:
            parts = urlsplit(url)
            port = parts.port or 5432
        except ValueError:
            raise ValueError(
                "BEOP_EXPORTS: malformed PostgreSQL URL (expected postgresql://user@host:port/db)"
            ) from None
        query = parse_qs(parts.query)
        table = (query.pop("table", [DEFAULT_TABLE]) or [DEFAULT_TABLE])[-1]
        database = unquote(parts.path.lstrip("/"))
        where = f"{parts.hostname or 'localhost'}:{port}/{database or '?'}"
        if not database:
            raise ValueError(f"BEOP_EXPORTS: PostgreSQL URL of {where} names no database (postgresql://host/DB)")
        if not _IDENTIFIER.match(table):
            raise ValueError(
                f"BEOP_EXPORTS: table={table!r} on {where} is not a plain table name (lower case, [schema.]name)"
            )
        if query:
            raise ValueError(f"BEOP_EXPORTS: unknown URL parameter(s) {sorted(query)} on {where} (only table=)")
        return cls(
            host=parts.hostname or "localhost",
            port=port,
            database=database,
            table=table,
            user=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
        )

    def __str__(self) -> str:
        return f"table {self.table} in database {self.database} on {self.host}:{self.port}"

    @property
    def revision_table(self) -> str:
        return f"{self.table}_revision"

    def scrub(self, text: str) -> str:
        """A driver's message, safe to repeat: the password (and its URL-encoded form) replaced."""
        if self.password:
            for secret in {self.password, _quoted(self.password)}:
                text = text.replace(secret, "***")
        return text


def _quoted(text: str) -> str:
    from urllib.parse import quote

    return quote(text, safe="")


def _ident(name: str):
    from psycopg2 import sql

    return sql.SQL(".").join(sql.Identifier(part) for part in name.split("."))


def ddl(address: TableAddress) -> str:
    """The table, its revision and the triggers that keep the revision, for `registry init` or the
    platform's own migrations."""
    table, revision = address.table, address.revision_table
    func, bump = f"{table}_touch", f"{table}_bump"
    seq = f"{revision}_seq"
    short = table.rsplit(".", 1)[-1]
    return f"""-- The export registry of beop-exports: one row per periodic export (docs/registry.md).
CREATE SEQUENCE IF NOT EXISTS {seq};

CREATE TABLE IF NOT EXISTS {table} (
    id                  text PRIMARY KEY,
    account_id          text NOT NULL,
    mode                text NOT NULL,            -- 'specific' (CSV over SFTP) or 'global' (ndJSON to GCS)
    type                text,                     -- specific: 'crm-participation' or 'crm-optin'
    name                text,                     -- specific: the name in the file name
    campaigns           text[] NOT NULL DEFAULT '{{}}',
    contents            text[] NOT NULL DEFAULT '{{}}',
    optins              text[] NOT NULL DEFAULT '{{}}',
    neutralize_formulas boolean NOT NULL DEFAULT false,
    enabled             boolean NOT NULL DEFAULT true,
    sftp                jsonb,                    -- specific: host, port, username, directory, *_env / *_file references
    gcs                 jsonb,                    -- global: bucket, prefix, credentials_env / credentials_file
    created_at          timestamptz NOT NULL DEFAULT now(),
    updated_at          timestamptz NOT NULL DEFAULT now(),
    revision            bigint NOT NULL DEFAULT nextval('{seq}')
);

-- One row: bumped by every statement that changes the registry, deletes included.
CREATE TABLE IF NOT EXISTS {revision} (
    single   boolean PRIMARY KEY DEFAULT true CHECK (single),
    revision bigint NOT NULL
);
INSERT INTO {revision} (single, revision) VALUES (true, nextval('{seq}')) ON CONFLICT DO NOTHING;

CREATE OR REPLACE FUNCTION {func}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    NEW.revision := nextval('{seq}');
    NEW.updated_at := now();
    IF TG_OP = 'UPDATE' THEN NEW.created_at := OLD.created_at; END IF;
    RETURN NEW;
END $$;

CREATE OR REPLACE FUNCTION {bump}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE {revision} SET revision = nextval('{seq}');
    RETURN NULL;
END $$;

DROP TRIGGER IF EXISTS {short}_touch ON {table};
CREATE TRIGGER {short}_touch BEFORE INSERT OR UPDATE ON {table}
    FOR EACH ROW EXECUTE FUNCTION {func}();
DROP TRIGGER IF EXISTS {short}_bump ON {table};
CREATE TRIGGER {short}_bump AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON {table}
    FOR EACH STATEMENT EXECUTE FUNCTION {bump}();
"""


def grant(address: TableAddress, role: str = "beop_exports") -> str:
    """What the product's own database user needs: reading the two tables, nothing else."""
    return f"GRANT SELECT ON {address.table}, {address.revision_table} TO {role};"


@contextmanager
def _connection(address: TableAddress, *, readonly: bool) -> Iterator[Any]:
    import psycopg2
    import psycopg2.extensions

    try:
        con = psycopg2.connect(
            host=address.host,
            port=address.port,
            dbname=address.database,
            user=address.user,
            password=address.password,
            connect_timeout=CONNECT_TIMEOUT_S,
            application_name="beop-exports registry",
        )
    except psycopg2.Error as exc:
        raise RegistryTableError(f"cannot connect to the export registry, {address}: {_reason(exc, address)}") from None
    try:
        con.set_session(
            isolation_level=psycopg2.extensions.ISOLATION_LEVEL_REPEATABLE_READ, readonly=readonly, autocommit=False
        )
        yield con
    finally:
        con.close()


def _reason(exc: Exception, address: TableAddress) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return address.scrub(text)


def _failure(address: TableAddress, exc: Exception, what: str) -> RegistryTableError:
    import psycopg2.errors

    hint = ""
    if isinstance(exc, psycopg2.errors.UndefinedTable):
        hint = " (create it with `beop-exports registry init`, or apply its DDL: `registry init --print`)"
    elif isinstance(exc, psycopg2.errors.InsufficientPrivilege):
        hint = f" (the product's user needs: {grant(address)})"
    return RegistryTableError(f"cannot {what} the export registry, {address}: {_reason(exc, address)}{hint}")


def _entry(row: dict[str, Any]) -> dict[str, Any]:
    """A row as the YAML entry it stands for: unset columns are left out, as an entry would omit them."""
    entry: dict[str, Any] = {}
    for column in ENTRY_COLUMNS + TARGET_COLUMNS:
        value = row.get(column)
        if value is None or (column in ARRAY_COLUMNS and not value):
            continue
        if (column, value) in (("neutralize_formulas", False), ("enabled", True)):  # the defaults
            continue
        entry[column] = list(value) if column in ARRAY_COLUMNS else value
    return entry


def _snapshot(address: TableAddress, rows: bool, ids: Collection[str] | None = None) -> tuple[str, list[dict]]:
    """The revision and (with `rows`) the committed rows of `ids` or all, in one REPEATABLE READ
    transaction: the rows are exactly those of that revision, none of them half-written."""
    import psycopg2
    import psycopg2.extras
    from psycopg2 import sql

    columns = sql.SQL(", ").join(sql.Identifier(c) for c in ENTRY_COLUMNS + TARGET_COLUMNS)
    query = sql.SQL("SELECT {} FROM {}").format(columns, _ident(address.table))
    params: tuple = ()
    if ids is not None:
        query = sql.SQL("{} WHERE id = ANY(%s)").format(query)
        params = (list(ids),)
    found: list[dict] = []
    with _connection(address, readonly=True) as con:
        try:
            with con.cursor(cursor_factory=psycopg2.extras.RealDictCursor) as cur:
                cur.execute(sql.SQL("SELECT revision FROM {}").format(_ident(address.revision_table)))
                revision = cur.fetchone()
                if rows:
                    cur.execute(sql.SQL("{} ORDER BY id").format(query), params)
                    found = [dict(r) for r in cur.fetchall()]
            con.rollback()
        except psycopg2.Error as exc:
            raise _failure(address, exc, "read") from None
    if revision is None:
        raise RegistryTableError(f"the revision row of the export registry is missing, {address}: run `registry init`")
    return str(revision["revision"]), found


def read_revision(address: TableAddress) -> str:
    """The registry's revision, in one query: it changes with every committed change of a row."""
    return _snapshot(address, rows=False)[0]


def read_entries(address: TableAddress, ids: Collection[str] | None = None) -> Entries:
    """The committed rows (only those of `ids`, when given) and their revision, from one snapshot."""
    revision, rows = _snapshot(address, rows=True, ids=ids)
    return Entries(revision=revision, items=[(_entry(r), None) for r in rows])


def create(address: TableAddress) -> None:
    """`registry init`: the table, its revision and triggers (idempotent)."""
    import psycopg2

    with _connection(address, readonly=False) as con:
        try:
            with con.cursor() as cur:
                cur.execute(ddl(address))
            con.commit()
        except psycopg2.Error as exc:
            raise _failure(address, exc, "create") from None


def _row(entry: dict[str, Any]) -> tuple:
    values = []
    for column in ENTRY_COLUMNS + TARGET_COLUMNS:
        value = entry.get(column)
        if column in ARRAY_COLUMNS:
            value = list(value or [])
        elif column == "neutralize_formulas":
            value = bool(value)
        elif column == "enabled":
            value = True if value is None else bool(value)
        elif column in TARGET_COLUMNS and value is not None:
            value = json.dumps(value)
        values.append(value)
    return tuple(values)


def replace_rows(address: TableAddress, entries: Iterable[dict[str, Any]], *, delete_others: bool) -> int:
    """`registry import`: every entry inserted or updated by id in ONE transaction (all or nothing);
    with `delete_others`, the rows of ids not among them are deleted in the same transaction."""
    import psycopg2
    import psycopg2.extras
    from psycopg2 import sql

    rows = [_row(e) for e in entries]
    names = ENTRY_COLUMNS + TARGET_COLUMNS
    updates = sql.SQL(", ").join(sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(c)) for c in names if c != "id")
    insert = sql.SQL("INSERT INTO {} ({}) VALUES %s ON CONFLICT (id) DO UPDATE SET {}").format(
        _ident(address.table), sql.SQL(", ").join(map(sql.Identifier, names)), updates
    )
    with _connection(address, readonly=False) as con:
        try:
            with con.cursor() as cur:
                if delete_others:
                    cur.execute(
                        sql.SQL("DELETE FROM {} WHERE NOT (id = ANY(%s))").format(_ident(address.table)),
                        ([r[0] for r in rows],),
                    )
                if rows:
                    psycopg2.extras.execute_values(cur, insert.as_string(cur), rows, page_size=1000)
            con.commit()
        except psycopg2.Error as exc:
            con.rollback()
            raise _failure(address, exc, "write") from None
    return len(rows)


def inline_credentials(entry: dict[str, Any]) -> list[Fault]:
    """The inline secrets of a row (a fault each, naming the field): `registry export` never copies them."""
    export_id = entry.get("id") if isinstance(entry.get("id"), str) else None
    found = []
    from beop_assets.exports.registry import INLINE_CREDENTIAL_KEYS

    for target in TARGET_COLUMNS:
        block = entry.get(target)
        if isinstance(block, dict):
            found += [
                Fault(export_id, f"{target}.{key}", "an inline credential is not exported; name its variable or file")
                for key in sorted(block)
                if key in INLINE_CREDENTIAL_KEYS
            ]
    return found
