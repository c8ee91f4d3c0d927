"""The model's Parquet days on GCS (`BEOP_WAREHOUSE=gs://bucket/prefix`): no disk shared between runs.

Every machine that loads a day or builds an export keeps a local folder (`BEOP_WAREHOUSE_CACHE`)
that the model reads and writes exactly as on one box; the bucket is where the days live. A load
publishes its day (`push_day`) before the load is reported materialized, so an export launched after
it always finds the day. An export, before it reads a day, makes sure its folder holds the version
the bucket holds (`pull_day`): the object's generation is compared with the one this folder last
pushed or pulled, so a day is downloaded once per machine, and again only after a reload.

Why a download rather than DuckDB reading `gs://` through gcsfs: both measured equal against the
emulator (bench/warehouse_on_gcs.py, docs/deployment.md); a local copy lets DuckDB open the file the
several times a read needs without a request each, keeps the model's immutable-version publication
(`replace_file`) unchanged, and lets a reader finish a day that is being reloaded meanwhile.

Only the model's public layout is used (`MODEL_TABLES`, `day_file`): the objects are
`<prefix>/<table>/date=DAY/data.parquet`, the local layout under the bucket's prefix.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from google.api_core.exceptions import GoogleAPICallError, NotFound
from google.cloud import storage

from beop_assets.cloud_storage import GsUrl
from beop_assets.model.warehouse import MODEL_TABLES, day_file, replace_file

GENERATION_FILE = ".generation"  # next to a local day: the object generation it holds
_DAY_OBJECT = re.compile(r"^(?P<table>[a-z_]+)/date=(?P<day>\d{4}-\d{2}-\d{2})/data\.parquet$")


class WarehouseStoreError(ValueError):
    """A `BEOP_WAREHOUSE=gs://...` that names no usable place, or that this machine may not use."""


@contextlib.contextmanager
def _answered(action: str, url: str) -> Iterator[None]:
    """GCS's refusal, with what the warehouse needs: the platform's own identity (application default
    credentials, not a customer's key) reading and writing the warehouse bucket."""
    try:
        yield
    except NotFound:
        raise
    except GoogleAPICallError as exc:
        raise WarehouseStoreError(
            f"{action} {url} failed: {exc.message or exc}. The warehouse (BEOP_WAREHOUSE) is read and written "
            "with this machine's own Google identity: grant it roles/storage.objectAdmin on that bucket "
            "(objects get, list, create and delete), or fix BEOP_WAREHOUSE"
        ) from exc


@dataclass(frozen=True)
class Store:
    bucket: str
    prefix: str  # without a leading or trailing slash; may be empty

    @classmethod
    def parse(cls, url: str) -> Store:
        try:
            where = GsUrl.parse(url, "BEOP_WAREHOUSE")
        except ValueError as exc:
            raise WarehouseStoreError(f"{exc} (a warehouse is a local folder or gs://bucket/prefix)") from None
        return cls(where.bucket, where.prefix)

    def object_name(self, table: str, day: date) -> str:
        return GsUrl(self.bucket, self.prefix).object_name(f"{table}/date={day.isoformat()}/data.parquet")

    def url(self, name: str) -> str:
        return f"gs://{self.bucket}/{name}"

    def relative(self, name: str) -> str | None:
        base = f"{self.prefix}/" if self.prefix else ""
        return name[len(base) :] if name.startswith(base) else None


def _generation_file(table: str, day: date, root: Path) -> Path:
    return day_file(table, day, root).parent / GENERATION_FILE


def _held_generation(table: str, day: date, root: Path) -> int | None:
    if not day_file(table, day, root).exists():
        return None
    with contextlib.suppress(OSError, ValueError):
        return int(_generation_file(table, day, root).read_text().strip())
    return None


def _remember_generation(table: str, day: date, root: Path, generation: int | None) -> None:
    target = _generation_file(table, day, root)
    if generation is None:
        target.unlink(missing_ok=True)
        return
    fd, partial = tempfile.mkstemp(dir=target.parent, prefix=".generation-")
    with os.fdopen(fd, "w") as out:
        out.write(str(generation))
    os.replace(partial, target)


def push_day(day: date, root: Path, store: Store, client: storage.Client) -> dict[str, str]:
    """Upload the day's Parquet file of every model table (participations last); the object written
    for each table, in that order."""
    bucket = client.bucket(store.bucket)
    written = {}
    for table in (*[t for t in MODEL_TABLES if t != "participations"], "participations"):
        local = day_file(table, day, root)
        if not local.exists():
            raise FileNotFoundError(f"the load of {day} left no {table} Parquet at {local}: nothing to store")
        blob = bucket.blob(store.object_name(table, day))
        with _answered(f"storing the {day} {table} day as", store.url(blob.name)):
            blob.upload_from_filename(str(local.resolve()), content_type="application/vnd.apache.parquet")
        _remember_generation(table, day, root, blob.generation)
        written[table] = store.url(blob.name)
    return written


def pull_day(
    day: date, root: Path, store: Store, client: storage.Client, tables: tuple[str, ...] = MODEL_TABLES
) -> list[Path]:
    """Bring this folder's copy of the day's `tables` to the bucket's version; the files downloaded
    (none when the copy is current). A table the bucket does not hold is left alone: reading it then
    fails as on one box, with the model's "day not loaded" error."""
    bucket = client.bucket(store.bucket)
    pulled = []
    for table in tables:
        name = store.object_name(table, day)
        with _answered(f"reading the {day} {table} day at", store.url(name)):
            blob = bucket.get_blob(name)
        if blob is not None and _pull(blob, table, day, root):
            pulled.append(day_file(table, day, root))
    return pulled


def _pull(blob: storage.Blob, table: str, day: date, root: Path) -> bool:
    if blob.generation == _held_generation(table, day, root):
        return False
    local = day_file(table, day, root)
    local.parent.mkdir(parents=True, exist_ok=True)
    fd, partial = tempfile.mkstemp(dir=local.parent, prefix=".pull-", suffix=".parquet")
    os.close(fd)
    try:
        with _answered(f"downloading the {day} {table} day from", f"gs://{blob.bucket.name}/{blob.name}"):
            blob.download_to_filename(partial)  # this generation, whatever happens to the object meanwhile
        replace_file(Path(partial), local)
    finally:
        Path(partial).unlink(missing_ok=True)
    _remember_generation(table, day, root, blob.generation)
    return True


def _stored(store: Store, client: storage.Client) -> list[tuple[str, date, storage.Blob]]:
    found = []
    with _answered("listing the days stored at", store.url(f"{store.prefix}/" if store.prefix else "")):
        blobs = list(client.list_blobs(store.bucket, prefix=f"{store.prefix}/" if store.prefix else None))
    for blob in blobs:
        match = _DAY_OBJECT.match(store.relative(blob.name) or "")
        if match and match["table"] in MODEL_TABLES:
            found.append((match["table"], date.fromisoformat(match["day"]), blob))
    return found


def stored_days(store: Store, client: storage.Client) -> dict[str, list[date]]:
    """Every day the bucket holds, by table."""
    days: dict[str, list[date]] = {table: [] for table in MODEL_TABLES}
    for table, day, _blob in _stored(store, client):
        days[table].append(day)
    return {table: sorted(found) for table, found in days.items()}


def pull_all(root: Path, store: Store, client: storage.Client) -> list[Path]:
    """Every stored day into this folder, one listing and a download per day not already current:
    the DuckDB file's views serve the days of this folder, so a loading machine holds them all."""
    return [
        day_file(t, d, root)
        for t, d, blob in sorted(_stored(store, client), key=lambda f: f[:2])
        if _pull(blob, t, d, root)
    ]


def purge_days(store: Store, client: storage.Client, keep_from: date) -> dict[str, list[str]]:
    """Delete the stored days older than `keep_from` (retention); the days removed, by table."""
    removed: dict[str, list[str]] = {}
    bucket = client.bucket(store.bucket)
    for table, days in stored_days(store, client).items():
        removed[table] = []
        for day in days:
            if day < keep_from:
                with contextlib.suppress(NotFound):  # gone meanwhile: what retention wants anyway
                    bucket.blob(store.object_name(table, day)).delete()
                removed[table].append(day.isoformat())
    return removed
