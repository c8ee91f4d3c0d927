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


def missed_in_days(registry: Registry, days: list[date], root: ledger.Location) -> dict[date, MissedDayReport]:
    """Each day's report, from one ledger query over the days' range (not one per export or per day:
    a platform of 10,000 exports and a week's window is 70,000 (day, export) pairs)."""
    reports = {day: MissedDayReport(day=day) for day in sorted(set(days))}
    if not reports:
        return reports
    if registry.unreadable:
        fault = f"the registry {registry.path} cannot be read: {'; '.join(map(str, registry.faults))}"
        for report in reports.values():
            report.faults = [fault]
        return reports
    attempts = ledger.latest_attempts(min(reports), max(reports), root=root)
    expected = expected_exports(registry)
    for day, report in reports.items():
        for export_id, mode in expected:
            report.checked.append(export_id)
            delivered, last = attempts.get((export_id, day), (False, None))
            if delivered:
                continue
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
    return reports


def missed_deliveries(registry: Registry, day: date, root: ledger.Location) -> MissedDayReport:
    return missed_in_days(registry, [day], root)[day]


def retry_window(today: date, lookback: int) -> list[date]:
    """The data days still delivered and retried automatically, oldest first: `lookback` days before
    `today`, and today (BEOP_DELIVERY_LOOKBACK_DAYS; the delivery sensor's window). The oldest is
    retried for the last time today: from tomorrow on, nothing delivers it unless an operator does."""
    return [today - timedelta(days=n) for n in range(lookback, -1, -1)]


def retries_end(day: date, lookback: int) -> datetime:
    """When automatic retries of data day `day` stop: the day it leaves the window, at 00:00 UTC."""
    return datetime.combine(day + timedelta(days=lookback + 1), time(0, 0), tzinfo=UTC)


def due_days(today: date, lookback: int, deadline: time, now: datetime, first_day: date | None = None) -> list[date]:
    """The days of the window whose deadline has passed (from `first_day` on, the deployment's first
    data day): each enabled export must have delivered them."""
    return [
        d
        for d in retry_window(today, lookback)
        if now >= deadline_of(d, deadline) and (first_day is None or d >= first_day)
    ]


def deadline_of(day: date, deadline: time) -> datetime:
    """The moment by which the files of data day `day` must be delivered: `deadline` the next day, UTC."""
    return datetime.combine(day + timedelta(days=1), deadline, tzinfo=UTC)
