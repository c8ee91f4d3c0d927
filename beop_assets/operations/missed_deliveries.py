"""Missed days: enabled exports without a successful delivery of a data day, by its deadline.

The delivery ledger is the truth here (not Dagster's event log): it records what reached each
customer, whichever way the run was started (schedule, sensor, backfill, CLI). A registry that cannot
be read is a fault of its own, never "nothing missing": an operator must not be told all is well
when the exports cannot even be listed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta

from beop_assets.delivery import ledger
from beop_assets.exports.registry import Registry, is_export_id


@dataclass(frozen=True)
class MissedDelivery:
    export_id: str
    mode: str | None
    day: date
    last_status: str | None = None  # the latest attempt's status (failed | started), None if never tried
    last_error: str | None = None
    last_run_id: str | None = None

    def describe(self) -> str:
        if self.last_status is None:
            why = "no delivery attempted"
        elif self.last_status == "started":
            why = f"a delivery started but never finished (run {self.last_run_id})"
        else:
            why = f"last attempt {self.last_status} (run {self.last_run_id}): {self.last_error or 'no error recorded'}"
        return f"{self.export_id} ({self.mode or 'unknown mode'}): {self.day} not delivered: {why}"


@dataclass
class MissedDayReport:
    day: date
    checked: list[str] = field(default_factory=list)  # the enabled export ids looked at
    missed: list[MissedDelivery] = field(default_factory=list)
    faults: list[str] = field(default_factory=list)  # why some exports could not be listed

    @property
    def ok(self) -> bool:
        return not self.missed and not self.faults


def expected_exports(registry: Registry) -> list[tuple[str, str | None]]:
    """Every enabled export, valid or broken (a broken one delivers nothing: that is a missed day too)."""
    ids: list[tuple[str, str | None]] = [(i, m) for m in ("specific", "global") for i in registry.scheduled_ids(m)]
    seen = {i for i, _ in ids}
    ids += [(i, m) for i, m in sorted(registry.broken.items()) if m is None and i not in seen and is_export_id(i)]
    return ids


def missed_deliveries(registry: Registry, day: date, root: ledger.Location) -> MissedDayReport:
    report = MissedDayReport(day=day)
    if registry.unreadable:
        report.faults = [f"the registry {registry.path} cannot be read: {'; '.join(map(str, registry.faults))}"]
        return report
    for export_id, mode in expected_exports(registry):
        report.checked.append(export_id)
        if ledger.last_delivered(export_id, day, root=root) is not None:
            continue
        attempts = ledger.history(export_id, day, root=root, limit=1)
        last = attempts[0] if attempts else None
        report.missed.append(
            MissedDelivery(
                export_id,
                mode,
                day,
                last_status=last.status if last else None,
                last_error=last.error if last else None,
                last_run_id=last.run_id if last else None,
            )
        )
    return report


def deadline_of(day: date, deadline: time) -> datetime:
    """The moment by which the files of data day `day` must be delivered: `deadline` the next day, UTC."""
    return datetime.combine(day + timedelta(days=1), deadline, tzinfo=UTC)
