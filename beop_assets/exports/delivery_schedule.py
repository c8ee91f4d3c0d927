"""When a (day, export) that is not delivered is asked again: the night's self-healing schedule.

A failed delivery is asked again by the delivery sensor, not inside its run: a run that slept between
attempts would hold its slot (and its batchmates) for nothing, and Dagster's own run retries re-plan a
whole batch with no delay. The schedule is decided here, from the key's past attempts as the delivery
ledger records them, so that it survives restarts and is the same on every machine:

- a failure that waiting can fix (a server down, a timeout) is retried after `first` (5 minutes by
  default), then twice as long after each further failure, never longer than `ceiling` (60 minutes);
  during the first hour after the first failure no wait is longer than 15 minutes, so that a server
  back within that hour gets its file within a quarter of an hour of its return (attempts 5, 15, 30,
  45 and 60 minutes after the first failure, then 2 h, 3 h, ... with the defaults);
- a failure that waiting cannot fix (refused credentials, a changed host key, a missing directory or
  bucket, a denied write, a misconfigured export: `PermanentDeliveryError`, `RegistryError`) is still
  retried, every `permanent` (3 hours), because customers fix these in the morning, and it is announced
  once: its retries are marked so that the failure alert does not repeat it.

The key is asked until it is delivered or its day leaves the look-back window (the sensor's concern).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

DEFAULT_FIRST_MINUTES = 5.0
DEFAULT_MAX_MINUTES = 60.0
DEFAULT_PERMANENT_MINUTES = 180.0

# A server back within QUICK_WINDOW of the first failure gets its next attempt within QUICK_MAX_MINUTES.
QUICK_WINDOW = timedelta(hours=1)
QUICK_MAX_MINUTES = 15.0

# How the ledger names an error that waiting cannot fix (its error text starts with the error's class).
PERMANENT_ERRORS = ("PermanentDeliveryError", "RegistryError")
NEVER = datetime.min.replace(tzinfo=UTC)


@dataclass(frozen=True)
class RetrySchedule:
    first_minutes: float = DEFAULT_FIRST_MINUTES
    max_minutes: float = DEFAULT_MAX_MINUTES
    permanent_minutes: float = DEFAULT_PERMANENT_MINUTES

    def wait_after(self, failures: int, permanent: bool, since_first: timedelta = timedelta(0)) -> timedelta:
        """How long to wait after the `failures`-th failure in a row (1 = the first one), the first of
        them `since_first` ago."""
        if permanent:
            return timedelta(minutes=self.permanent_minutes)
        growing = self.first_minutes * 2 ** max(0, failures - 1)
        ceiling = max(self.max_minutes, self.first_minutes)
        if since_first < QUICK_WINDOW:
            ceiling = min(ceiling, max(QUICK_MAX_MINUTES, self.first_minutes))
        return timedelta(minutes=min(growing, ceiling))


@dataclass(frozen=True)
class PastAttempt:
    """One attempt of a (day, export) that did not end delivered, when it ended, and its error."""

    at: datetime
    error: str | None


@dataclass(frozen=True)
class NextAttempt:
    number: int  # 1 for the first attempt
    due_at: datetime  # NEVER (always due) for a first attempt
    permanent: bool  # the last failure was one that waiting cannot fix (announced already)
    last_error: str | None = None

    def is_due(self, now: datetime) -> bool:
        return self.due_at <= now


def is_permanent(error: str | None) -> bool:
    return bool(error) and str(error).startswith(PERMANENT_ERRORS)


def next_attempt(failures: Sequence[PastAttempt], schedule: RetrySchedule) -> NextAttempt:
    """The next attempt of a key that failed `failures` times (none: its first attempt, due now)."""
    if not failures:
        return NextAttempt(1, NEVER, False)
    last = max(failures, key=lambda a: a.at)
    permanent = is_permanent(last.error)
    since_first = last.at - min(a.at for a in failures)
    due = last.at + schedule.wait_after(len(failures), permanent, since_first)
    return NextAttempt(len(failures) + 1, due, permanent, last.error)
