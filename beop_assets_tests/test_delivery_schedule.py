"""The self-healing schedule (exports/delivery_schedule.py): plain code, given a key's past attempts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from beop_assets.exports.delivery_schedule import NEVER, PastAttempt, RetrySchedule, is_permanent, next_attempt

T0 = datetime(2026, 11, 26, 1, 0, tzinfo=UTC)
REFUSED = "TransientDeliveryError: export 'acme': SFTP 127.0.0.1:2222: connect: connection refused"
AUTH = "PermanentDeliveryError: export 'acme': SFTP 127.0.0.1:2222: auth: the server refused the password"


def failures(*minutes: float, error: str = REFUSED) -> list[PastAttempt]:
    return [PastAttempt(T0 + timedelta(minutes=m), error) for m in minutes]


def test_a_first_attempt_is_due_at_once():
    first = next_attempt([], RetrySchedule())
    assert (first.number, first.due_at, first.permanent) == (1, NEVER, False)
    assert first.is_due(T0)


def test_transient_failures_wait_5_minutes_doubling_up_to_an_hour():
    schedule = RetrySchedule()
    waits = []
    past: list[PastAttempt] = []
    for n in range(1, 9):
        past.append(PastAttempt(T0 + timedelta(hours=n * 2), REFUSED))
        due = next_attempt(past, schedule)
        assert due.number == n + 1 and not due.permanent and due.last_error == REFUSED
        waits.append((due.due_at - past[-1].at).total_seconds() / 60)
    assert waits == [5, 10, 20, 40, 60, 60, 60, 60]


def test_the_wait_counts_from_the_last_failure_whatever_the_order_given():
    due = next_attempt(failures(30, 0), RetrySchedule())
    assert due.due_at == T0 + timedelta(minutes=30 + 10)
    assert not due.is_due(T0 + timedelta(minutes=39)) and due.is_due(T0 + timedelta(minutes=40))


def test_a_permanent_failure_is_retried_every_three_hours():
    due = next_attempt(failures(0, 10, error=AUTH), RetrySchedule())
    assert due.permanent and due.due_at == T0 + timedelta(minutes=10 + 180)
    assert is_permanent("RegistryError: export 'x' is misconfigured") and not is_permanent(REFUSED)
    assert not is_permanent(None)


def test_the_schedule_is_configurable():
    schedule = RetrySchedule(first_minutes=1, max_minutes=3, permanent_minutes=30)
    assert [schedule.wait_after(n, False) for n in (1, 2, 3, 4)] == [timedelta(minutes=m) for m in (1, 2, 3, 3)]
    assert schedule.wait_after(1, True) == timedelta(minutes=30)


def test_a_server_back_within_the_first_hour_gets_its_next_attempt_within_15_minutes():
    """The issue's promise with the defaults: whenever in the first hour the server comes back, the
    sensor asks again within a quarter of an hour (attempts every 5, 10, then 15 minutes), and only
    later do the waits grow to an hour."""
    schedule = RetrySchedule()
    for back_after in range(1, 61):
        back = T0 + timedelta(minutes=back_after)
        past = [PastAttempt(T0, REFUSED)]
        due = next_attempt(past, schedule)
        while due.due_at < back:  # every attempt before the server's return fails
            past.append(PastAttempt(due.due_at, REFUSED))
            due = next_attempt(past, schedule)
        assert due.due_at - back <= timedelta(minutes=15), (back_after, due)
    attempts = [T0]
    for _ in range(7):
        attempts.append(next_attempt([PastAttempt(t, REFUSED) for t in attempts], schedule).due_at)
    assert [int((t - T0).total_seconds() // 60) for t in attempts] == [0, 5, 15, 30, 45, 60, 120, 180]
