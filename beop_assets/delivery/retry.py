"""How a delivery is retried: exponential backoff on transient errors only, bounded in time.

One policy for every transport, so that "an upload is retried within a minute" is decided here. The
policy is a value built at the edge (settings: BEOP_DELIVERY_ATTEMPTS, BEOP_DELIVERY_BACKOFF) and
handed to a transport; nothing here reads the environment.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, stop_after_delay, wait_exponential

from beop_assets.delivery.errors import DeliveryError, TransientDeliveryError

T = TypeVar("T")
log = logging.getLogger(__name__)

DEFAULT_ATTEMPTS = 4
DEFAULT_BACKOFF_S = 1.0


@dataclass(frozen=True)
class RetryPolicy:
    """At most `attempts` tries and `max_seconds` in all, waiting `backoff_s`, then twice as long each
    time (capped at 16 s), between tries that failed with a `TransientDeliveryError`."""

    attempts: int = DEFAULT_ATTEMPTS
    backoff_s: float = DEFAULT_BACKOFF_S
    max_seconds: float = 60.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"a delivery needs at least one attempt (got {self.attempts})")
        if self.backoff_s < 0:
            raise ValueError(f"the backoff cannot be negative (got {self.backoff_s})")

    def retrying(self) -> Retrying:
        first = self.backoff_s
        return Retrying(
            retry=retry_if_exception_type(TransientDeliveryError),
            stop=stop_after_attempt(self.attempts) | stop_after_delay(self.max_seconds),
            wait=wait_exponential(multiplier=first, min=first, max=max(first, 16.0)),
            reraise=True,
            before_sleep=lambda state: log.warning(
                "delivery attempt %d failed (%s); retrying",
                state.attempt_number,
                state.outcome.exception() if state.outcome else None,
            ),
        )

    def call(self, fn: Callable[[], T]) -> tuple[T, int]:
        """Run `fn` under the policy; return its result and the number of attempts it took. A
        `DeliveryError` that ends the loop carries that number too (`error.attempts`)."""
        attempt = 0
        try:
            for attempt_state in self.retrying():
                with attempt_state:
                    attempt = attempt_state.retry_state.attempt_number
                    result = fn()
        except DeliveryError as error:
            error.attempts = attempt
            raise
        return result, attempt
