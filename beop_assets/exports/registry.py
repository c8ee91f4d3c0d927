"""The export registry: the YAML file operators edit at runtime (SPEC section 6).

Each entry is validated on its own, so that one broken export never hides the others: a fault names
the export id, the field and the YAML line. Tenancy is checked here, against the reference data:
an export that selects another account's campaign, content or optin is rejected when it is loaded.
Credentials are never part of an entry: it only names the variable or file that holds them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal, TypeVar

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    model_validator,
)

from beop_assets.delivery.gcs_target import GcsTarget
from beop_assets.delivery.sftp_target import SftpTarget
from beop_assets.landing.reference import Reference

EXPORT_ID_PATTERN = r"^[a-z0-9][a-z0-9-]*$"
# libyaml's safe loader when present (several times faster than the pure-Python one).
_YamlLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
EXPORT_ID_MAX_LENGTH = 100


def is_export_id(value: object) -> bool:
    """A well-formed export id: a slug, the only kind of id that can be a Dagster partition key
    (`|` and `,` split multi-partition keys; `/` and `..` would reach into paths)."""
    return (
        isinstance(value, str)
        and len(value) <= EXPORT_ID_MAX_LENGTH
        and re.fullmatch(EXPORT_ID_PATTERN, value) is not None
    )


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# The transports own their target types; the registry names them (and re-exports them for callers).
__all__ = ["GcsTarget", "SftpTarget"]


class _ExportBase(_Strict):
    id: str = Field(pattern=EXPORT_ID_PATTERN, max_length=EXPORT_ID_MAX_LENGTH)
    account_id: str = Field(min_length=1)
    enabled: bool = True


class SpecificExport(_ExportBase):
    mode: Literal["specific"]
    type: Literal["crm-participation", "crm-optin"]
    name: str = Field(min_length=1)
    campaigns: list[str] = Field(default_factory=list)
    contents: list[str] = Field(default_factory=list)
    optins: list[str] = Field(default_factory=list)
    # Spreadsheet users can ask for cells starting with = + - @ to be neutralized (a leading ').
    # Off by default: it would change phone numbers such as +33...
    neutralize_formulas: bool = False
    sftp: SftpTarget

    @model_validator(mode="after")
    def _selection(self) -> SpecificExport:
        if self.type == "crm-participation" and not (self.campaigns or self.contents):
            raise ValueError("crm-participation needs at least one campaign or content")
        if self.type == "crm-optin" and not self.optins:
            raise ValueError("crm-optin needs at least one optin")
        return self


class GlobalExport(_ExportBase):
    mode: Literal["global"]
    gcs: GcsTarget


Export = Annotated[SpecificExport | GlobalExport, Field(discriminator="mode")]
_export_adapter: TypeAdapter[SpecificExport | GlobalExport] = TypeAdapter(Export)


ExportT = TypeVar("ExportT", "SpecificExport", "GlobalExport")


@dataclass(frozen=True)
class Fault:
    export_id: str | None
    field: str
    message: str
    line: int | None = None

    def __str__(self) -> str:
        where = f"line {self.line}: " if self.line else ""
        who = f"export {self.export_id!r}" if self.export_id else "registry"
        return f"{where}{who}: {self.field}: {self.message}"


@dataclass
class Registry:
    """The valid exports, and every fault found, keyed so that a run can report each export."""

    path: Path
    exports: dict[str, SpecificExport | GlobalExport] = field(default_factory=dict)
    faults: list[Fault] = field(default_factory=list)
    # enabled entries that are invalid: id -> mode (None when even the mode is unreadable). They are
    # still scheduled, so that each fails loudly with its own message instead of silently missing a day.
    broken: dict[str, str | None] = field(default_factory=dict)
    unreadable: bool = False
    # The reference data the registry was checked against (None when it could not be read).
    reference: Reference | None = None

    def faults_of(self, export_id: str) -> list[Fault]:
        return [f for f in self.faults if f.export_id == export_id]

    def enabled(self, mode: str | None = None) -> list[SpecificExport | GlobalExport]:
        return [e for e in self.exports.values() if e.enabled and (mode is None or e.mode == mode)]

    def scheduled_ids(self, mode: str) -> list[str]:
        """Ids that get a partition and a nightly run: enabled exports, valid or not (a broken one
        fails its run with its fault, visibly, rather than silently missing the day). An id that is not
        a slug can never be a partition key: it is reported by `validate` and `run`, never scheduled."""
        ids = {e.id for e in self.enabled(mode)} | {i for i, m in self.broken.items() if m == mode}
        return sorted(i for i in ids if is_export_id(i))

    def checked_reference(self) -> Reference:
        """The reference data the exports were checked against; an export cannot be built without it."""
        if self.reference is None:
            raise RegistryError(f"the reference data could not be read, so no export of {self.path} can run")
        return self.reference

    def get_as(self, export_id: str, kind: type[ExportT]) -> ExportT:
        """`get`, for an asset of one mode: an export of the other mode is a clear error."""
        export = self.get(export_id)
        if not isinstance(export, kind):
            wanted = "specific" if kind is SpecificExport else "global"
            raise RegistryError(f"export {export_id!r} is a {export.mode} export, not a {wanted} one")
        return export

    def get(self, export_id: str) -> SpecificExport | GlobalExport:
        """The export with that id, or a `RegistryError` that says exactly why it cannot run."""
        if export_id in self.exports:
            return self.exports[export_id]
        faults = self.faults_of(export_id) or [f for f in self.faults if f.export_id is None]
        if faults:
            raise RegistryError(f"export {export_id!r} is misconfigured in {self.path}: " + "; ".join(map(str, faults)))
        raise RegistryError(f"export {export_id!r} is not in the registry {self.path}")


class RegistryError(Exception):
    """An export cannot run because of its configuration; the message says what to fix."""


def _field_path(loc: tuple) -> str:
    parts = [str(p) for p in loc if p not in ("specific", "global")]
    out = ""
    for p in parts:
        out += f"[{p}]" if p.isdigit() else (f".{p}" if out else p)
    return out or "(entry)"


def _entry_lines(text: str) -> list[int | None]:
    try:
        root = yaml.compose(text, Loader=_YamlLoader)
    except yaml.YAMLError:
        return []
    if not isinstance(root, yaml.MappingNode):
        return []
    for key, value in root.value:
        if key.value == "exports" and isinstance(value, yaml.SequenceNode):
            return [item.start_mark.line + 1 for item in value.value]
    return []


def check_tenancy(export: SpecificExport | GlobalExport, reference: Reference) -> list[Fault]:
    """Every selected id must exist and belong to the export's own account."""
    faults: list[Fault] = []
    if export.account_id not in reference.accounts:
        faults.append(Fault(export.id, "account_id", f"unknown account {export.account_id!r}"))
        return faults
    if isinstance(export, GlobalExport):
        return faults
    owners = {
        "campaigns": {k: v for k, v in reference.campaigns.items()},
        "contents": reference.contents,
        "optins": {k: o.account_id for k, o in reference.optins.items()},
    }
    for kind, owner_of in owners.items():
        for index, item in enumerate(getattr(export, kind)):
            owner = owner_of.get(item)
            if owner is None:
                faults.append(Fault(export.id, f"{kind}[{index}]", f"unknown {kind[:-1]} {item!r}"))
            elif owner != export.account_id:
                faults.append(
                    Fault(
                        export.id,
                        f"{kind}[{index}]",
                        f"{kind[:-1]} {item!r} belongs to another account, not to {export.account_id!r}",
                    )
                )
    return faults


def load_registry(path: Path, reference: Reference | None) -> Registry:
    """Parse and validate the registry. Never raises for bad content: faults are collected."""
    registry = Registry(path=path, reference=reference)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        registry.faults.append(Fault(None, "file", f"registry file not found: {path}"))
        registry.unreadable = True
        return registry
    except (OSError, UnicodeDecodeError) as exc:
        registry.faults.append(Fault(None, "file", f"registry file unreadable: {path}: {exc}"))
        registry.unreadable = True
        return registry
    try:
        document = yaml.load(text, Loader=_YamlLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        registry.faults.append(
            Fault(
                None,
                "yaml",
                f"malformed YAML in {path}: {getattr(exc, 'problem', exc)}",
                line=mark.line + 1 if mark else None,
            )
        )
        registry.unreadable = True
        return registry
    if document is None:
        document = {"exports": []}
    if not isinstance(document, dict) or not isinstance(document.get("exports", []), list):
        registry.faults.append(Fault(None, "exports", "the registry must be a mapping with an 'exports' list"))
        registry.unreadable = True
        return registry
    unknown_top = sorted(set(document) - {"exports"})
    if unknown_top:
        registry.faults.append(Fault(None, unknown_top[0], "unknown top-level key (only 'exports' is allowed)"))

    lines = _entry_lines(text)
    entries = document.get("exports") or []
    seen: dict[str, int] = {}
    parsed: list[tuple[int, str | None, SpecificExport | GlobalExport | None]] = []
    for index, entry in enumerate(entries):
        line = lines[index] if index < len(lines) else None
        export_id = entry.get("id") if isinstance(entry, dict) and isinstance(entry.get("id"), str) else None
        label = export_id or f"exports[{index}]"
        if not isinstance(entry, dict):
            registry.faults.append(Fault(label, "(entry)", "each export must be a mapping", line))
            parsed.append((index, export_id, None))
            continue
        try:
            export = _export_adapter.validate_python(entry)
        except ValidationError as exc:
            for err in exc.errors():
                message = err["msg"].removeprefix("Value error, ")
                where = "mode" if err["type"].startswith("union_tag") else _field_path(err["loc"])
                registry.faults.append(Fault(label, where, message, line))
            parsed.append((index, export_id, None))
            if export_id and entry.get("enabled", True) is not False:
                mode = entry.get("mode")
                registry.broken[export_id] = mode if mode in ("specific", "global") else None
            continue
        parsed.append((index, export_id, export))

    for _index, export_id, _export in parsed:
        if export_id:
            seen[export_id] = seen.get(export_id, 0) + 1
    duplicates = {i for i, n in seen.items() if n > 1}
    for export_id in sorted(duplicates):
        registry.faults.append(
            Fault(
                export_id,
                "id",
                f"duplicate export id {export_id!r} ({seen[export_id]} entries): ids must be unique; "
                "none of them runs until it is fixed",
            )
        )
        modes = {e.get("mode") for e in entries if isinstance(e, dict) and e.get("id") == export_id}
        mode = modes.pop() if len(modes) == 1 else None
        registry.broken[export_id] = mode if mode in ("specific", "global") else None

    for index, _export_id, valid in parsed:
        if valid is None or valid.id in duplicates:
            continue
        if reference is not None:
            tenancy = check_tenancy(valid, reference)
            if tenancy:
                line = lines[index] if index < len(lines) else None
                registry.faults.extend(Fault(f.export_id, f.field, f.message, line) for f in tenancy)
                if valid.enabled:
                    registry.broken[valid.id] = valid.mode
                continue
        registry.exports[valid.id] = valid
    return registry
