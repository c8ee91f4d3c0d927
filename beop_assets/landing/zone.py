"""The landing zone's layout, and finding the files of one data day in it, local or on GCS.

The one module that knows where things are in the landing zone (`day_folder`, `reference_file`): the
loader, the registry's reference data and retention all ask it.

Everything downstream reads local files with DuckDB, so a `gs://` landing zone is first copied to a
scratch folder (the day's files and the reference files). DuckDB's httpfs extension is not used: it
would be downloaded at run time, and machines here reach no network but the package registries.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from beop_assets.cloud_storage import GsUrl, is_gs
from beop_assets.landing.reference import REFERENCE_TABLES

DAY_FILE_SUFFIXES = (".ndjson", ".ndjson.gz")
PARTICIPATIONS = "participations"
REFERENCE = "reference"
# A `gs://` day's scratch copy, in the system's temporary folder: named after its data day, so that
# retention removes what a killed load left there with the day (the reference alone has no day).
STAGING_PREFIX = "beop-landing-"
_REFERENCE_ONLY = date(1970, 1, 1)


@dataclass(frozen=True)
class StagedDay:
    """The local copies of one day: `files` maps the name an operator knows (landing path) to a local path."""

    day: date
    files: dict[str, Path]
    reference_folder: Path


def day_folder_name(day: date) -> str:
    return f"date={day.isoformat()}"


def _is_day_file(name: str) -> bool:
    return name.endswith(DAY_FILE_SUFFIXES) and not name.rsplit("/", 1)[-1].startswith(".")


def day_folder(day: date) -> str:
    """Where a day's participation files are, relative to the landing zone's root."""
    return f"{PARTICIPATIONS}/{day_folder_name(day)}"


def reference_file(table: str) -> str:
    """Where a reference table is, relative to the landing zone's root."""
    return f"{REFERENCE}/{table}.ndjson"


def day_of_folder(name: str) -> date | None:
    """The data day a `date=YYYY-MM-DD` folder holds, or None for any other name."""
    if not name.startswith("date="):
        return None
    try:
        return date.fromisoformat(name.removeprefix("date="))
    except ValueError:
        return None


@contextmanager
def staged_day(day: date, landing: str) -> Iterator[StagedDay]:
    """Yield the day's participation files and the reference folder as local paths."""
    if not is_gs(landing):
        root = Path(landing)
        folder = root / day_folder(day)
        files = {}
        if folder.is_dir():
            files = {
                f"{day_folder(day)}/{p.name}": p
                for p in sorted(folder.iterdir())
                if p.is_file() and _is_day_file(p.name)
            }
        yield StagedDay(day=day, files=files, reference_folder=root / REFERENCE)
        return

    from beop_assets.cloud_storage import platform_client

    where = GsUrl.parse(landing, "BEOP_LANDING")
    client = platform_client()
    bucket = client.bucket(where.bucket)
    name = REFERENCE if day == _REFERENCE_ONLY else day_folder_name(day)
    scratch = Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{name}-"))
    try:
        (scratch / REFERENCE).mkdir()
        for name in REFERENCE_TABLES:
            blob = bucket.blob(where.object_name(reference_file(name)))
            if blob.exists():
                blob.download_to_filename(str(scratch / reference_file(name)))
        files = {}
        day_prefix = where.object_name(day_folder(day)) + "/"
        (scratch / "day").mkdir()
        for blob in client.list_blobs(where.bucket, prefix=day_prefix):
            relative = blob.name[len(day_prefix) :]
            if "/" in relative or not _is_day_file(relative):
                continue
            local = scratch / "day" / relative
            blob.download_to_filename(str(local))
            files[f"{day_folder(day)}/{relative}"] = local
        yield StagedDay(day=day, files=dict(sorted(files.items())), reference_folder=scratch / REFERENCE)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


@contextmanager
def staged_reference(landing: str) -> Iterator[Path]:
    """The reference folder as a local path (downloaded for a `gs://` landing zone)."""
    with staged_day(_REFERENCE_ONLY, landing) as staged:
        yield staged.reference_folder
