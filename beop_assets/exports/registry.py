"""The export registry: what each export is, validated entry by entry (SPEC section 6).

The entries come from a YAML file operators edit, or from the platform's table (`registry_table`);
both are validated here, the same way. Each entry is validated on its own, so that one broken export
never hides the others: a fault names the export id, the field and, for YAML, the line. Tenancy is
checked here, against the reference data: an export that selects another account's campaign, content
or optin is rejected when it is loaded. Credentials are never part of an entry: it only names the
variable or file that holds them.
"""

from __future__ import annotations

import gc
import hashlib
import re
import threading
from collections import Counter
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import yaml
from pydantic import (
    Field,
    TypeAdapter,
    ValidationError,
    model_validator,
)

from beop_assets.delivery.gcs_target import GcsTarget
from beop_assets.delivery.sftp_target import SftpTarget
from beop_assets.delivery.target import StrictModel
from beop_assets.landing.reference import Reference

EXPORT_ID_PATTERN = r"^[a-z0-9][a-z0-9-]*$"


class _YamlLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """libyaml's safe loader when present (several times faster than the pure-Python one), with the tag
    of each plain scalar resolved once per distinct text: a registry repeats the same keys and values
    thousands of times, and the resolver's regular expressions are most of a large file's parse."""

    def __init__(self, stream: str):
        super().__init__(stream)
        self._plain_tags: dict[str, str] = {}

    def resolve(self, kind, value, implicit):
        if kind is yaml.ScalarNode and implicit[0]:
            tag = self._plain_tags.get(value)
            if tag is None:
                tag = self._plain_tags[value] = super().resolve(kind, value, implicit)
            return tag
        return super().resolve(kind, value, implicit)


EXPORT_ID_MAX_LENGTH = 100


def is_export_id(value: object) -> bool:
    """A well-formed export id: a slug, the only kind of id that can be a Dagster partition key
    (`|` and `,` split multi-partition keys; `/` and `..` would reach into paths)."""
    return (
        isinstance(value, str)
        and len(value) <= EXPORT_ID_MAX_LENGTH
        and re.fullmatch(EXPORT_ID_PATTERN, value) is not None
    )


# The transports own their target types; the registry names them (and re-exports them for callers).
__all__ = ["GcsTarget", "SftpTarget"]


class _ExportBase(StrictModel):
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

    # Where the registry came from, as it may be printed: the file, or the table's host, database and
    # table (never a password).
    path: Path | str
    exports: dict[str, SpecificExport | GlobalExport] = field(default_factory=dict)
    faults: list[Fault] = field(default_factory=list)
    # enabled entries that are invalid: id -> mode (None when even the mode is unreadable). They are
    # still scheduled, so that each fails loudly with its own message instead of silently missing a day.
    broken: dict[str, str | None] = field(default_factory=dict)
    unreadable: bool = False
    # The reference data the registry was checked against (None when it could not be read).
    reference: Reference | None = None
    # A short string that changes whenever the source's content does (the file's digest, the table's
    # revision): what a delivery names so that an operator can tell which configuration produced a file.
    revision: str = ""

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


# Keys that would hold a secret itself rather than a reference to it: a fault that says so, by name.
INLINE_CREDENTIAL_KEYS = frozenset(
    {"password", "passphrase", "private_key", "private_key_passphrase", "key", "credentials", "service_account"}
)
_REFERENCE_HINT = {
    "sftp": "password_env, private_key_env or private_key_file",
    "gcs": "credentials_env or credentials_file",
}


@dataclass
class Entries:
    """What a source read, before validation: each entry with its YAML line (None for a table row),
    and the faults of the document as a whole."""

    revision: str
    items: list[tuple[object, int | None]] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    unreadable: bool = False


def _field_path(loc: tuple) -> str:
    parts = [str(p) for p in loc if p not in ("specific", "global")]
    out = ""
    for p in parts:
        out += f"[{p}]" if p.isdigit() else (f".{p}" if out else p)
    return out or "(entry)"


def _message(err) -> str:
    message = err["msg"].removeprefix("Value error, ")
    loc = err["loc"]
    target = next((str(p) for p in loc if p in _REFERENCE_HINT), None)
    if err["type"] == "extra_forbidden" and target and str(loc[-1]) in INLINE_CREDENTIAL_KEYS:
        message += (
            f": a credential is never given inline; name the variable or file that holds it ({_REFERENCE_HINT[target]})"
        )
    return message


def validate_entry(
    entry: object, label: str, line: int | None
) -> tuple[SpecificExport | GlobalExport | None, list[Fault]]:
    """One entry's own validation (shape, fields, references to credentials), with no other entry in view:
    the unit of work that a run of one export pays for."""
    if not isinstance(entry, dict):
        return None, [Fault(label, "(entry)", "each export must be a mapping", line)]
    try:
        return _export_adapter.validate_python(entry), []
    except ValidationError as exc:
        faults = []
        for err in exc.errors():
            where = "mode" if err["type"].startswith("union_tag") else _field_path(err["loc"])
            faults.append(Fault(label, where, _message(err), line))
        return None, faults


def check_tenancy(export: SpecificExport | GlobalExport, reference: Reference) -> list[Fault]:
    """Every selected id must exist and belong to the export's own account (indexed lookups only: the
    cost is the size of the export's selections, never of the reference data)."""
    faults: list[Fault] = []
    if export.account_id not in reference.accounts:
        faults.append(Fault(export.id, "account_id", f"unknown account {export.account_id!r}"))
        return faults
    if isinstance(export, GlobalExport):
        return faults
    for kind in ("campaigns", "contents", "optins"):
        owner_of = reference.owners(kind)
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


def _entry_id(entry: object) -> str | None:
    return entry.get("id") if isinstance(entry, dict) and isinstance(entry.get("id"), str) else None


def validate_entries(
    entries: Entries, reference: Reference | None, path: Path | str, *, reference_fault: Fault | None = None
) -> Registry:
    """The registry of `entries`, each validated on its own. Never raises for bad content: faults are
    collected. Without reference data (`reference_fault` says why) tenancy cannot be proven: no export
    may run, each enabled one is reported broken."""
    registry = Registry(path=path, reference=reference, revision=entries.revision)
    registry.faults.extend(entries.faults)
    if entries.unreadable:
        registry.unreadable = True
        return registry
    parsed: list[tuple[str | None, SpecificExport | GlobalExport | None, int | None]] = []
    for index, (entry, line) in enumerate(entries.items):
        export_id = _entry_id(entry)
        export, faults = validate_entry(entry, export_id or f"exports[{index}]", line)
        registry.faults.extend(faults)
        parsed.append((export_id, export, line))
        if export is None and export_id and isinstance(entry, dict) and entry.get("enabled", True) is not False:
            mode = entry.get("mode")
            registry.broken[export_id] = mode if mode in ("specific", "global") else None

    seen = Counter(export_id for export_id, _, _ in parsed if export_id)
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
        modes = {e.get("mode") for e, _ in entries.items if _entry_id(e) == export_id and isinstance(e, dict)}
        mode = modes.pop() if len(modes) == 1 else None
        registry.broken[export_id] = mode if mode in ("specific", "global") else None

    for _export_id, valid, line in parsed:
        if valid is None or valid.id in duplicates:
            continue
        if reference is not None:
            tenancy = check_tenancy(valid, reference)
            if tenancy:
                registry.faults.extend(Fault(f.export_id, f.field, f.message, line) for f in tenancy)
                if valid.enabled:
                    registry.broken[valid.id] = valid.mode
                continue
        registry.exports[valid.id] = valid
    if reference_fault is not None:
        registry.faults.insert(0, reference_fault)
        registry.broken.update({e.id: e.mode for e in registry.enabled()})
        registry.exports.clear()
    return registry


def _yaml_fault(exc: yaml.YAMLError, path: Path | str) -> Fault:
    mark = getattr(exc, "problem_mark", None)
    return Fault(
        None, "yaml", f"malformed YAML in {path}: {getattr(exc, 'problem', exc)}", line=mark.line + 1 if mark else None
    )


def _scalar_id(node: yaml.Node) -> str | None:
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if key.value == "id" and isinstance(value, yaml.ScalarNode):
                return value.value
    return None


_HEADER = re.compile(r"\A(?:[ \t]*(?:#[^\n]*)?\n)*exports:[ \t]*\n")
_FIRST_ENTRY = re.compile(r"^( *)- ", re.MULTILINE)


def _entry_chunks(text: str) -> list[tuple[int, str]] | None:
    """The entries of a plainly laid out registry file (`exports:`, then a block sequence and nothing
    else) as (offset, text) pairs, cut at each entry's dash; None for any other layout. Regular
    expressions do the scan: a run of one export must not pay a Python loop over every line."""
    header = _HEADER.match(text)
    if header is None:
        return None
    body_start = header.end()
    first = _FIRST_ENTRY.search(text, body_start)
    if (
        first is None
        or text[body_start : first.start()].strip(" \t\n")
        and not _only_comments(text[body_start : first.start()])
    ):
        return None
    dash = len(first.group(1))
    other = re.compile(rf"^(?! {{{dash}}}- | {{{dash + 1},}}\S|[ \t]*(?:#.*)?$)", re.MULTILINE)
    if other.search(text, first.start()):
        return None
    starts = [m.start() for m in re.finditer(rf"^ {{{dash}}}- ", text[first.start() :], re.MULTILINE)]
    bounds = [first.start() + s for s in starts] + [len(text)]
    return [(bounds[i], text[bounds[i] : bounds[i + 1]]) for i in range(len(starts))]


def _only_comments(text: str) -> bool:
    return all(not ln.strip() or ln.lstrip().startswith("#") for ln in text.splitlines())


def _parse_named(text: str, ids: Collection[str]) -> list[tuple[object, int | None]] | None:
    """The entries of `ids` alone, each parsed from its own slice of the file; None when the file is not
    laid out plainly or a slice does not parse alone (an alias to another entry's anchor, say): the
    caller then parses the whole file, which names any real fault."""
    chunks = _entry_chunks(text)
    if chunks is None:
        return None
    items: list[tuple[object, int | None]] = []
    for offset, chunk in chunks:
        if not any(export_id in chunk for export_id in ids):
            continue
        loader = _YamlLoader(chunk)
        try:
            node = loader.get_single_node()
            if not isinstance(node, yaml.SequenceNode) or len(node.value) != 1:
                return None
            (entry,) = node.value
            if _scalar_id(entry) in ids:
                line = text.count("\n", 0, offset) + entry.start_mark.line + 1
                items.append((loader.construct_document(entry), line))
        except yaml.YAMLError:
            return None
        finally:
            loader.dispose()
    return items


_collector_lock = threading.Lock()
_collector_pauses = 0
_collector_was_enabled = False


@contextmanager
def _collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector paused while a whole registry file becomes Python objects.

    A file of 10,000 entries is some million nodes, marks and values, all alive until the parse ends and
    none of them cyclic garbage; every allocation threshold they crossed made the collector traverse them
    (and the rest of the heap) again: 2/3 of the parse, ~1.5 s of 2.3 s. Reference counting frees as
    usual meanwhile (the node tree is gone before the collector resumes, see `_build`), and the collector
    resumes when the parse ends, also when it fails. The collector is
    the process's: parses in several threads are counted, the last one out resumes it, and one that
    something else had switched off stays off."""
    global _collector_pauses, _collector_was_enabled
    with _collector_lock:
        if _collector_pauses == 0:
            _collector_was_enabled = gc.isenabled()
            gc.disable()
        _collector_pauses += 1
    try:
        yield
    finally:
        with _collector_lock:
            _collector_pauses -= 1
            if _collector_pauses == 0 and _collector_was_enabled:
                gc.enable()


def parse_yaml(text: str, path: Path | str, revision: str, ids: Collection[str] | None = None) -> Entries:
    """The entries of a registry file, parsed once (libyaml composes the node tree, with each entry's
    line); with `ids`, only the entries of those ids are parsed when the file is laid out plainly (as
    `registry export` and the demo write it), else only they are built into Python values."""
    entries = Entries(revision=revision)
    named = None if ids is None else _parse_named(text, ids)
    if named is not None:
        entries.items = named
        return entries
    loader = _YamlLoader(text)
    with _collector_paused():
        try:
            document, lines = _build(loader, ids)
        except yaml.YAMLError as exc:
            entries.faults = [_yaml_fault(exc, path)]
            entries.unreadable = True
            return entries
        finally:
            loader.dispose()
    if not isinstance(document, dict) or not isinstance(document.get("exports", []), list):
        entries.faults.append(Fault(None, "exports", "the registry must be a mapping with an 'exports' list"))
        entries.unreadable = True
        return entries
    unknown_top = sorted(str(k) for k in document if k != "exports")
    if unknown_top:
        entries.faults.append(Fault(None, unknown_top[0], "unknown top-level key (only 'exports' is allowed)"))
    entries.items = list(zip(document.get("exports") or [], lines, strict=True))
    return entries


def _build(loader: _YamlLoader, ids: Collection[str] | None) -> tuple[Any, list[int | None]]:
    """The document of a whole file (of its entries, only those of `ids` when given, are built) and each
    built entry's line. The node tree goes with this call's frame, before the collector resumes: nodes
    still referenced then would be traversed by its next passes (`_collector_paused`)."""
    root = loader.get_single_node()
    document: Any = None
    selected: list[yaml.Node] = []
    if root is None:
        document = {"exports": []}
    elif isinstance(root, yaml.MappingNode):
        sequence = next((v for k, v in root.value if k.value == "exports"), None)
        if sequence is None or isinstance(sequence, yaml.SequenceNode) or _is_null(sequence):
            nodes = list(sequence.value) if isinstance(sequence, yaml.SequenceNode) else []
            selected = nodes if ids is None else [n for n in nodes if _scalar_id(n) in ids]
            document = dict.fromkeys((str(k.value) for k, _ in root.value), None)  # named, never built
            document["exports"] = [loader.construct_document(n) for n in selected]
    if document is None:
        document = loader.construct_document(root)
    return document, [node.start_mark.line + 1 for node in selected]


def _is_null(node: yaml.Node) -> bool:
    return isinstance(node, yaml.ScalarNode) and node.tag.endswith(":null")


def unreadable_file(path: Path, exc: OSError | UnicodeDecodeError) -> Entries:
    """A registry file that cannot be read, as the one fault of its registry."""
    if isinstance(exc, FileNotFoundError):
        return Entries("", faults=[Fault(None, "file", f"registry file not found: {path}")], unreadable=True)
    return Entries("", faults=[Fault(None, "file", f"registry file unreadable: {path}: {exc}")], unreadable=True)


def read_yaml(path: Path, ids: Collection[str] | None = None) -> Entries:
    """Read and parse a registry file; its revision is a digest of exactly the bytes parsed."""
    try:
        data = path.read_bytes()
        text = data.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return unreadable_file(path, exc)
    return parse_yaml(text, path, file_revision(data), ids)


def file_revision(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=6).hexdigest()


def load_registry(path: Path, reference: Reference | None, ids: Collection[str] | None = None) -> Registry:
    """Parse and validate a registry file (only the entries of `ids`, when given)."""
    return validate_entries(read_yaml(path, ids), reference, path)


def dump_yaml(entries: Sequence[dict]) -> str:
    """Entries as a registry file (what `registry export` writes)."""
    return yaml.safe_dump({"exports": list(entries)}, sort_keys=False, allow_unicode=True)
