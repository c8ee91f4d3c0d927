"""Deliveries in the tests, made the way the IO manager makes them: through `transport_for`, with a
retry policy passed in (quick by default, so that a test that exhausts its retries does not wait)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from beop_assets.delivery.gcs import GcsOptions
from beop_assets.delivery.gcs_target import GcsTarget
from beop_assets.delivery.retry import RetryPolicy
from beop_assets.delivery.sftp import SftpOptions
from beop_assets.delivery.sftp_target import SftpTarget
from beop_assets.delivery.transport import Receipt, Transport, transport_for

QUICK = RetryPolicy(attempts=3, backoff_s=0.05)


def _transport(export_id: str, target: SftpTarget | GcsTarget, retry: RetryPolicy, **options: Any) -> Transport:
    if isinstance(target, SftpTarget):
        return transport_for(export_id, target, SftpOptions(retry=retry, **options))
    return transport_for(export_id, target, GcsOptions(retry=retry, **options))


def deliver_file(
    export_id: str,
    target: SftpTarget | GcsTarget,
    path: Path,
    file_name: str,
    *,
    retry: RetryPolicy = QUICK,
    leftovers: Iterable[str] = (),
    **options: Any,
) -> Receipt:
    return _transport(export_id, target, retry, **options).deliver(path, file_name, leftovers=leftovers)


def download_file(
    export_id: str, target: SftpTarget | GcsTarget, file_name: str, local_path: Path, *, retry: RetryPolicy = QUICK
) -> int:
    return _transport(export_id, target, retry).download(file_name, local_path)


def list_files(export_id: str, target: SftpTarget | GcsTarget, *, retry: RetryPolicy = QUICK) -> list[str]:
    return _transport(export_id, target, retry).list_files()


def check_target(
    export_id: str,
    target: SftpTarget | GcsTarget,
    *,
    timeout: float | None = None,
    report: Callable[[str], None] | None = None,
) -> list[str]:
    options = {} if timeout is None else {"check_timeout": timeout}
    return _transport(export_id, target, QUICK, **options).check(report)
