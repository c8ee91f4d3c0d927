"""What can go wrong during a delivery, split by what an operator (and the retry loop) should do.

Messages always name the export and the destination (host and path, or bucket and object), the
step that failed, and never contain a secret. `step` is also an attribute, so that callers (the
retry loop, tests, the IO manager's metadata) can tell a refused rename from a refused write
without parsing text.
"""

from __future__ import annotations


class DeliveryError(Exception):
    """A delivery failed. The message names the export, the destination, the step and what to fix.

    `step` is one of the transport's step names (SFTP: "connect", "host key", "auth",
    "stat directory", "remove temp", "open", "write", "close", "verify", "rename", "list"), or None
    where the transport does not name steps. `attempts` is how many attempts the delivery made
    before giving up (set by the retry wrapper; 1 when it failed at once).
    """

    step: str | None = None
    attempts: int = 1

    def __init__(self, message: str, *, step: str | None = None) -> None:
        super().__init__(message)
        if step is not None:
            self.step = step


class PermanentDeliveryError(DeliveryError):
    """Retrying cannot help: wrong credentials, unknown or changed host key, missing directory or
    bucket, denied write, unreadable key. Fails at once."""


class TransientDeliveryError(DeliveryError):
    """The network or the server failed us (refused, reset, timed out, 5xx, a refused write): worth
    retrying."""
