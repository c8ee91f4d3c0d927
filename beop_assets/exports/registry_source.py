"""Where the registry's entries come from: a YAML file (the default, for the demo and small deployments)
or the platform's table (`BEOP_EXPORTS=postgresql://...`), behind one interface.

A source answers two questions: its revision, cheaply (the file's digest; the table's revision row), so
that an unchanged registry is never read again; and its entries, all of them or only those of named
exports, each with the revision it was read at. `str(source)` may be printed: it never holds a password.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

from beop_assets.exports import registry_table
from beop_assets.exports.registry import Entries, Fault, file_revision, read_yaml, unreadable_file
from beop_assets.exports.registry_table import RegistryTableError, TableAddress


class RegistrySourceUnavailable(Exception):
    """The revision could not be read: `entries` is the unreadable registry that says why (printable)."""

    def __init__(self, entries: Entries):
        super().__init__("; ".join(map(str, entries.faults)))
        self.entries = entries


@dataclass(frozen=True)
class YamlFile:
    path: Path

    def __str__(self) -> str:
        return str(self.path)

    @property
    def key(self) -> str:
        return f"file:{self.path.resolve()}"

    def revision(self) -> str:
        try:
            return file_revision(self.path.read_bytes())
        except OSError as exc:
            raise RegistrySourceUnavailable(unreadable_file(self.path, exc)) from None

    def read(self, ids: Collection[str] | None = None) -> Entries:
        return read_yaml(self.path, ids)


@dataclass(frozen=True)
class Table:
    address: TableAddress

    def __str__(self) -> str:
        return str(self.address)

    @property
    def key(self) -> str:
        a = self.address
        return f"table:{a.host}:{a.port}/{a.database}/{a.table}"

    def revision(self) -> str:
        try:
            return registry_table.read_revision(self.address)
        except RegistryTableError as exc:
            raise RegistrySourceUnavailable(_unreachable(exc)) from None

    def read(self, ids: Collection[str] | None = None) -> Entries:
        try:
            return registry_table.read_entries(self.address, ids)
        except RegistryTableError as exc:
            return _unreachable(exc)


def _unreachable(exc: RegistryTableError) -> Entries:
    return Entries("", faults=[Fault(None, "table", str(exc))], unreadable=True)


RegistrySource = YamlFile | Table


def open_source(value: str | Path) -> RegistrySource:
    """The source `BEOP_EXPORTS` names: a PostgreSQL URL, else a file path (ValueError: printable)."""
    text = str(value)
    if registry_table.is_table_url(text):
        return Table(TableAddress.parse(text))
    return YamlFile(Path(text))
