"""What can go wrong during a delivery, split by what an operator (and the retry loop) should do.

Messages always name the export and the destination (host and path, or bucket and object), and
never contain a secret.
"""


class DeliveryError(Exception):
    """A delivery failed. The message names the export, the destination and what to fix."""


class PermanentDeliveryError(DeliveryError):
    """Retrying cannot help: wrong credentials, unknown or changed host key, missing directory or
    bucket, denied write, unreadable key. Fails at once."""


class TransientDeliveryError(DeliveryError):
    """The network or the server failed us (refused, reset, timed out, 5xx): worth retrying."""
