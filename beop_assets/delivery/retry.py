"""How a delivery is retried: exponential backoff on transient errors only, bounded in time.

One policy for every transport, so that "an upload is retried within a minute" is decided here.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any, TypeVar

from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, stop_after_delay, wait_exponential

from beop_assets.delivery.errors import DeliveryError, TransientDeliveryError

T = TypeVar("T")
log = logging.getLogger(__name__)


def attempts() -> int:
    return int(os.environ.get("BEOP_DELIVERY_ATTEMPTS", "4"))


def retrying(max_attempts: int | None = None, max_seconds: float = 60.0, initial_wait: float | None = None) -> Retrying:
    """Retries `TransientDeliveryError` with 1 s, 2 s, 4 s... waits, at most `max_attempts` tries and
    `max_seconds` in all; any other exception is raised at once."""
    first = initial_wait if initial_wait is not None else float(os.environ.get("BEOP_DELIVERY_BACKOFF", "1.0"))
    return Retrying(
        retry=retry_if_exception_type(TransientDeliveryError),
        stop=stop_after_attempt(max_attempts or attempts()) | stop_after_delay(max_seconds),
        wait=wait_exponential(multiplier=first, min=first, max=max(first, 16.0)),
        reraise=True,
        before_sleep=lambda state: log.warning(
            "delivery attempt %d failed (%s); retrying",
            state.attempt_number,
            state.outcome.exception() if state.outcome else None,
        ),
    )


def call_with_retries(fn: Callable[[], T], **kwargs: Any) -> tuple[T, int]:
    """Run `fn` under the policy; return its result and the number of attempts it took. A
    `DeliveryError` that ends the loop carries that number too (`error.attempts`)."""
    attempt = 0
    try:
        for attempt_state in retrying(**kwargs):
            with attempt_state:
                attempt = attempt_state.retry_state.attempt_number
                result = fn()
    except DeliveryError as error:
        error.attempts = attempt
        raise
    return result, attempt
