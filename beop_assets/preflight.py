"""`beop-exports check`: prove, before the night, that every export's destination accepts a file.

For SFTP: connect, verify the host key, authenticate, check the directory exists and is writable
(a probe file written, renamed and removed). For GCS: read and check the key, check the bucket
exists and accepts a write (a probe object written and deleted). Says exactly what is wrong.
"""

from __future__ import annotations

from collections.abc import Callable

from beop_assets.delivery import gcs, sftp
from beop_assets.delivery.errors import DeliveryError
from beop_assets.exports.registry import RegistryError, SpecificExport
from beop_assets.resources import ExportRegistry


def preflight(export_ids: list[str] | None = None, echo: Callable[[str], None] = print) -> list[str]:
    """Check each export's destination; return the problems found (empty when all is well)."""
    registry = ExportRegistry().load()
    problems: list[str] = []
    if registry.unreadable:
        for fault in registry.faults:
            problems.append(str(fault))
            echo(f"FAIL  {fault}")
    if export_ids is None:
        export_ids = [e.id for e in registry.enabled()] + sorted(registry.broken)
    checked_ok = 0
    for export_id in export_ids:
        try:
            export = registry.get(export_id)
            if isinstance(export, SpecificExport):
                lines = sftp.check_target(export.id, export.sftp)
            else:
                lines = gcs.check_target(export.id, export.gcs)
        except (RegistryError, DeliveryError) as exc:
            problems.append(f"{export_id}: {exc}")
            echo(f"FAIL  {export_id}: {exc}")
            continue
        checked_ok += 1
        echo(f"ok    {export_id}: " + "; ".join(lines))
    echo(f"{checked_ok} ok, {len(problems)} problem(s)")
    return problems
