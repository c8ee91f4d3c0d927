"""The operator's settings (SPEC section 6), read from the environment at the moment they are needed.

Nothing here is cached in module globals: the same process (a test, `dagster dev`) may see the
settings change, and the registry file is re-read on every use so that edits need no restart.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import date
from pathlib import Path

DEFAULT_LANDING = "data/landing"
DEFAULT_WAREHOUSE = "data/warehouse"
DEFAULT_EXPORTS = "exports.yaml"
# The first data day that Dagster offers as a partition. Early enough for any history a customer
# could ask to backfill; override with BEOP_START_DATE.
DEFAULT_START_DATE = "2020-01-01"


@dataclass(frozen=True)
class Settings:
    landing: str
    warehouse: Path
    exports_file: Path
    start_date: str
    gzip_level: int  # deflate level of global exports, zlib-ng 0-9
    load_memory_limit: str  # DuckDB's memory limit for a day load (it spills past it)

    @property
    def landing_is_gcs(self) -> bool:
        return self.landing.startswith("gs://")


def current() -> Settings:
    return Settings(
        landing=os.environ.get("BEOP_LANDING", DEFAULT_LANDING),
        warehouse=Path(os.environ.get("BEOP_WAREHOUSE", DEFAULT_WAREHOUSE)),
        exports_file=Path(os.environ.get("BEOP_EXPORTS", DEFAULT_EXPORTS)),
        start_date=os.environ.get("BEOP_START_DATE", DEFAULT_START_DATE),
        gzip_level=int(os.environ.get("BEOP_GZIP_LEVEL", "5")),
        load_memory_limit=os.environ.get("BEOP_LOAD_MEMORY_LIMIT", "1GB"),
    )


def parse_day(text: str) -> date:
    """A data day as operators type it (YYYY-MM-DD), with an error that says what was expected."""
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ValueError(f"invalid date {text!r}: expected YYYY-MM-DD") from None
