"""Finding the files of one data day in the landing zone, local or on GCS.

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

DAY_FILE_SUFFIXES = (".ndjson", ".ndjson.gz")
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


def _split_gs(uri: str) -> tuple[str, str]:
    bucket, _, prefix = uri.removeprefix("gs://").partition("/")
    return bucket, prefix.strip("/")


@contextmanager
def staged_day(day: date, landing: str) -> Iterator[StagedDay]:
    """Yield the day's participation files and the reference folder as local paths."""
    if not landing.startswith("gs://"):
        root = Path(landing)
        folder = root / "participations" / day_folder_name(day)
        files = {}
        if folder.is_dir():
            files = {
                f"participations/{day_folder_name(day)}/{p.name}": p
                for p in sorted(folder.iterdir())
                if p.is_file() and _is_day_file(p.name)
            }
        yield StagedDay(day=day, files=files, reference_folder=root / "reference")
        return

    from beop_assets.cloud_storage import platform_client

    bucket_name, prefix = _split_gs(landing)
    client = platform_client()
    bucket = client.bucket(bucket_name)
    name = "reference" if day == _REFERENCE_ONLY else day_folder_name(day)
    scratch = Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{name}-"))
    try:
        base = f"{prefix}/" if prefix else ""
        (scratch / "reference").mkdir()
        for name in ("accounts", "campaigns", "contents", "optins"):
            blob = bucket.blob(f"{base}reference/{name}.ndjson")
            if blob.exists():
                blob.download_to_filename(str(scratch / "reference" / f"{name}.ndjson"))
        files = {}
        day_prefix = f"{base}participations/{day_folder_name(day)}/"
        (scratch / "day").mkdir()
        for blob in client.list_blobs(bucket_name, prefix=day_prefix):
            relative = blob.name[len(day_prefix) :]
            if "/" in relative or not _is_day_file(relative):
                continue
            local = scratch / "day" / relative
            blob.download_to_filename(str(local))
            files[f"participations/{day_folder_name(day)}/{relative}"] = local
        yield StagedDay(day=day, files=dict(sorted(files.items())), reference_folder=scratch / "reference")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


@contextmanager
def staged_reference(landing: str) -> Iterator[Path]:
    """The reference folder as a local path (downloaded for a `gs://` landing zone)."""
    with staged_day(_REFERENCE_ONLY, landing) as staged:
        yield staged.reference_folder
