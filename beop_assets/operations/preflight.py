"""`beop-exports check`: prove, before the night, that every export's destination accepts a file.

For SFTP it does what a delivery does (`SftpTransport.check`): connect, verify the host key,
authenticate, check the directory, write a multi-megabyte probe with the same pipelined writer,
verify it the way a delivery would, rename it with the rename a delivery would use, and remove it,
so that it fails where a delivery would. Each step is printed on its own line as it is done, so a failure shows how far it
got. For GCS: read and check the key, check the bucket exists and accepts a write (a probe object
written and deleted). Says exactly what is wrong.
"""

from __future__ import annotations

from collections.abc import Callable

from beop_assets.delivery.errors import DeliveryError
from beop_assets.delivery.transport import transport_for
from beop_assets.exports.registry import Registry, RegistryError, SpecificExport


def preflight(
    registry: Registry, export_ids: list[str] | None = None, echo: Callable[[str], None] = print
) -> list[str]:
    """Check each export's destination; return the problems found (empty when all is well)."""
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

                def progress(line: str, export_id: str = export_id) -> None:
                    echo(f"      {export_id}: {line}")

                steps = transport_for(export.id, export.sftp).check(progress)
                summary = steps[-1]  # the others were printed as they were done
            else:
                summary = "; ".join(transport_for(export.id, export.gcs).check())
        except (RegistryError, DeliveryError) as exc:
            problems.append(f"{export_id}: {exc}")
            echo(f"FAIL  {export_id}: {exc}")
            continue
        checked_ok += 1
        echo(f"ok    {export_id}: {summary}")
    echo(f"{checked_ok} ok, {len(problems)} problem(s)")
    return problems
