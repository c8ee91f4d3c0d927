"""The validated registry, kept in this process for as long as its source and the reference data are
unchanged, and read only as far as the caller needs (SPEC section 6; issue 24, "pay for what you touch").

Every step of an export run (the asset, the IO manager, each check) and every sensor tick reads the
registry; validating 10,000 entries against the reference data costs more than a small export itself.
So a validated registry is kept under (source, source revision, landing zone, reference identity): the
revision is the registry file's digest or the table's revision row, the reference identity each
reference file's digest (local) or generation and checksum (`gs://`). A timestamp alone would not do:
Linux stamps files with a coarse clock tick, so two same-size edits within one tick would look alike.
Nothing is kept that a changed source could make stale: an edit is seen by the very next read.

`load` validates the whole registry (the `validate` command, the registry sensor); `exports_for(ids)`
reads and validates only the named exports (a run of one export), unless the whole registry of that
revision is already at hand. The reference data is read once per identity and shared by both.
"""

from __future__ import annotations

import dataclasses
import hashlib
import threading
from collections import OrderedDict
from collections.abc import Collection, Hashable
from pathlib import Path

from beop_assets.exports.registry import Fault, Registry, validate_entries
from beop_assets.exports.registry_source import RegistrySource, RegistrySourceUnavailable
from beop_assets.landing.reference import REFERENCE_TABLES, Reference, ReferenceDataError
from beop_assets.landing.zone import staged_reference

# Registries kept per process: one per (source, landing zone) in use, a few versions, and the subsets
# that runs of single exports asked for.
CACHE_SIZE = 32
REFERENCE_CACHE_SIZE = 4


class _Uncacheable(Exception):
    pass


class _Lru:
    def __init__(self, size: int):
        self.size = size
        self.items: OrderedDict[Hashable, object] = OrderedDict()
        self.lock = threading.Lock()

    def get(self, key: Hashable):
        with self.lock:
            value = self.items.get(key)
            if value is not None:
                self.items.move_to_end(key)
            return value

    def put(self, key: Hashable, value: object) -> None:
        with self.lock:
            self.items[key] = value
            while len(self.items) > self.size:
                self.items.popitem(last=False)

    def clear(self) -> None:
        with self.lock:
            self.items.clear()


_registries = _Lru(CACHE_SIZE)
_references = _Lru(REFERENCE_CACHE_SIZE)


def clear() -> None:
    """Forget every kept registry and reference (tests that change what a source is)."""
    _registries.clear()
    _references.clear()


def _digest(path: Path) -> str | None:
    try:
        return hashlib.blake2b(path.read_bytes(), digest_size=16).hexdigest()
    except FileNotFoundError:
        return None
    except OSError as exc:  # unreadable: never cached, so the real read reports it
        raise _Uncacheable from exc


def reference_identity(landing: str) -> tuple:
    """What changes whenever a reference file changes, without reading it into DuckDB."""
    if not landing.startswith("gs://"):
        folder = Path(landing) / "reference"
        return tuple((name, _digest(folder / f"{name}.ndjson")) for name in REFERENCE_TABLES)
    from beop_assets.cloud_storage import platform_client

    bucket, _, prefix = landing.removeprefix("gs://").partition("/")
    base = f"{prefix.strip('/')}/" if prefix.strip("/") else ""
    names = {f"{base}reference/{name}.ndjson" for name in REFERENCE_TABLES}
    try:
        blobs = platform_client().list_blobs(bucket, prefix=f"{base}reference/")
        return tuple(sorted((b.name, b.generation, b.size, b.crc32c) for b in blobs if b.name in names))
    except Exception as exc:  # the real read names the problem
        raise _Uncacheable from exc


def read_reference(landing: str) -> Reference:
    with staged_reference(landing) as folder:
        return Reference.read(folder)


def _reference(landing: str, identity: tuple | None) -> Reference:
    if identity is None:
        return read_reference(landing)
    key = (landing, identity)
    cached = _references.get(key)
    if cached is None:
        cached = read_reference(landing)
        _references.put(key, cached)
    return cached


def _read(source: RegistrySource, landing: str, ids: frozenset[str] | None, identity: tuple | None) -> Registry:
    entries = source.read(ids)
    try:
        reference = _reference(landing, identity)
    except ReferenceDataError as exc:
        fault = Fault(None, "reference", f"{exc}: exports cannot be checked against their account")
        return validate_entries(entries, None, str(source), reference_fault=fault)
    return validate_entries(entries, reference, str(source))


def _copy(registry: Registry) -> Registry:
    """A registry of the caller's own: callers may add faults or drop exports from what they got."""
    return dataclasses.replace(
        registry, exports=dict(registry.exports), faults=list(registry.faults), broken=dict(registry.broken)
    )


def _subset(registry: Registry, ids: frozenset[str]) -> Registry:
    return dataclasses.replace(
        registry,
        exports={i: e for i, e in registry.exports.items() if i in ids},
        faults=[f for f in registry.faults if f.export_id is None or f.export_id in ids],
        broken={i: m for i, m in registry.broken.items() if i in ids},
    )


def _load(source: RegistrySource, landing: str, ids: frozenset[str] | None) -> Registry:
    try:
        revision = source.revision()
    except RegistrySourceUnavailable as exc:
        return validate_entries(exc.entries, None, str(source))
    try:
        identity: tuple | None = reference_identity(landing)
    except _Uncacheable:
        return _read(source, landing, ids, None)
    key = (source.key, revision, landing, identity)
    whole = _registries.get((*key, None))
    if whole is not None:
        return _copy(whole) if ids is None else _subset(whole, ids)
    if ids is not None:
        part = _registries.get((*key, ids))
        if part is not None:
            return _copy(part)
    registry = _read(source, landing, ids, identity)
    try:
        unchanged = registry.revision == revision and reference_identity(landing) == identity
    except _Uncacheable:
        unchanged = False
    if unchanged:  # an edit during the read: keep nothing
        _registries.put((*key, ids), registry)
    return _copy(registry)


def fingerprint(source: RegistrySource, landing: str) -> str | None:
    """A short string that changes whenever the registry or the reference data changes (one revision
    query or file digest, and the reference files' identities): what a sensor compares to know, cheaply,
    that nothing changed. None when it cannot be told (a source or a reference file unreadable)."""
    try:
        parts = (source.key, source.revision(), landing, reference_identity(landing))
    except (RegistrySourceUnavailable, _Uncacheable):
        return None
    return hashlib.blake2b(repr(parts).encode(), digest_size=12).hexdigest()


def load(source: RegistrySource, landing: str) -> Registry:
    """The whole registry, validated against the landing zone's reference data (once per revision)."""
    return _load(source, landing, None)


def exports_for(source: RegistrySource, landing: str, ids: Collection[str]) -> Registry:
    """Only the exports `ids`, read and validated alone: what a run of those exports pays, whatever the
    size of the registry. Faults of the registry as a whole (reference data, file) are kept."""
    return _load(source, landing, frozenset(ids))
