"""The product's own message inside Dagster's report of a failed step.

Dagster wraps the exception a step raised (`DagsterExecution...Error`); that exception is the product's
message (export, destination, what to fix). Its own causes are the library errors it translated
(paramiko, google-cloud-storage), which say none of that: the message is the first error that is not
Dagster's wrapper. Used by the failure alerts and by the CLI's one line per export.
"""

from __future__ import annotations

from dagster._utils.error import SerializableErrorInfo


def product_message(error: SerializableErrorInfo | None) -> str | None:
    while error is not None and error.cause is not None and (error.cls_name or "").startswith("Dagster"):
        error = error.cause
    if error is None:
        return None
    return (error.message or error.cls_name or "").strip()
