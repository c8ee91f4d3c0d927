"""File names customers see (docs/file-contract.md).

The date in a name is the day the export of that data runs: the data day plus one. A backfill of
2026-11-25 is named 20261126_... as the nightly run was, so that a customer's import treats it alike.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import date, timedelta

from slugify import slugify


def export_run_date(data_day: date) -> date:
    return data_day + timedelta(days=1)


def delivery_uuid(run_id: str, partition_key: str) -> uuid.UUID:
    """A UUID4-formatted id that is the same for every retry of a step inside one run, and new for
    each run: retrying a failed upload replaces its own file instead of leaving a second one."""
    seed = hashlib.sha256(f"{run_id}|{partition_key}".encode()).digest()[:16]
    return uuid.UUID(bytes=seed, version=4)


def crm_file_name(export_type: str, name: str, data_day: date, delivery_id: uuid.UUID) -> str:
    slug = slugify(name) or "export"
    return f"{export_run_date(data_day):%Y%m%d}_{export_type}_{slug}_{delivery_id}.csv"


def global_file_name(username: str, data_day: date) -> str:
    # A username is the account's handle, kept as it is except what could leave the prefix (a slash,
    # a leading dot) or that GCS refuses in an object name (control characters): each becomes "_".
    safe = "".join("_" if c in "/\\" or ord(c) < 32 or ord(c) == 127 else c for c in username).strip(".")
    safe = safe or "account"
    return f"{export_run_date(data_day).isoformat()}_{safe}.ndjson.gz"
