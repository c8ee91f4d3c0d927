"""The spool: where export files are built before delivery, and where a delivered file is read back for
its checks.

Everything in it is personal data. It is filed by data day (`spool/date=DAY/<export>/<run>/`) so that
retention removes a day's copies with the day, whatever run, backfill or switched-off export left them;
a copy whose delivery is verified is removed right away (it has no further use: the ledger and the run's
metadata keep its size and sha256).
"""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path

SPOOL = "spool"


def day_folder(root: Path, day: date) -> Path:
    return root / SPOOL / f"date={day.isoformat()}"


def run_folder(root: Path, day: date, export_id: str, run_id: str) -> Path:
    """A folder of its own for each run of an export and day: concurrent runs never share a file."""
    folder = day_folder(root, day) / export_id / run_id
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def remove(folder: Path) -> None:
    """A run's folder of an export and day, once nothing in it is needed any more."""
    shutil.rmtree(folder, ignore_errors=True)


def stored_days(root: Path) -> dict[date, Path]:
    """Every data day with something in the spool, and its folder."""
    days = {}
    for folder in (root / SPOOL).glob("date=*"):
        try:
            days[date.fromisoformat(folder.name.removeprefix("date="))] = folder
        except ValueError:
            continue
    return days


def purge_before(root: Path, keep_from: date) -> dict[str, int]:
    """Remove the spool of every data day before `keep_from`; the files removed, by day."""
    removed = {}
    for day, folder in sorted(stored_days(root).items()):
        if day < keep_from:
            removed[day.isoformat()] = sum(1 for p in folder.rglob("*") if not p.is_dir())
            shutil.rmtree(folder, ignore_errors=True)
    return removed
