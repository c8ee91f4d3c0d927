"""A built export file, waiting in the local spool for its delivery.

The export asset builds the file and returns this small value; the delivery IO manager uploads it.
Nothing about a day's rows travels between them but this description.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import date
from pathlib import Path


@dataclass(frozen=True)
class ExportFile:
    export_id: str
    day: date  # the data day (the partition)
    path: Path  # the local spool file
    file_name: str  # the final name at the destination
    rows: int
    bytes: int
    sha256: str

    @classmethod
    def written(cls, export_id: str, day: date, path: Path, file_name: str, rows: int) -> ExportFile:
        """Describe a file the builder has just finished writing (size and checksum read from disk)."""
        return cls(
            export_id=export_id,
            day=day,
            path=path,
            file_name=file_name,
            rows=rows,
            bytes=path.stat().st_size,
            sha256=sha256_of(path),
        )


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(4 * 1024 * 1024), b""):
            digest.update(chunk)
    return digest.hexdigest()
