"""The GCS transport: put one built export file into the customer's bucket, whole, once.

Why it looks like this:

- **Visible only when complete** (SPEC section 5): an object upload (multipart for small files,
  resumable above RESUMABLE_THRESHOLD) creates the object only when its last byte is committed, so a
  customer never lists a partial file; there is no temporary name to rename.
- **Re-running a day replaces that day's object**: an upload to an existing name creates a new
  generation of it, which is why the customer's service account needs delete as well as create
  (roles/storage.objectAdmin or objectUser on the bucket), and `get` for the verification below.
- **Verified**: the client sends crc32c (`checksum="crc32c"`), and after the upload the object's
  crc32c and size, re-read from the server, must equal those of the local file (computed with
  google-crc32c, which google-cloud-storage depends on).
- **The .gz bytes, as bytes**: `content_type="application/gzip"` and *no* `content_encoding`.
  With `Content-Encoding: gzip` GCS would decompress on download ("decompressive transcoding")
  and customers would get ndJSON under a `.gz` name, with a size and checksum that do not match.
- **One retry policy** (`call_with_retries`): the library's own retries are switched off
  (`retry=None`), so a connection failure, timeout, 429 or 5xx retries the whole upload under our
  bounded policy, and a missing bucket, a denied write or a broken key fails at once.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import google_crc32c
import requests
from google.api_core import exceptions as api_exceptions
from google.auth import exceptions as auth_exceptions
from google.cloud.storage.exceptions import DataCorruption, InvalidResponse

from beop_assets.delivery.errors import DeliveryError, PermanentDeliveryError, TransientDeliveryError
from beop_assets.delivery.retry import call_with_retries
from beop_assets.exports.registry import GcsTarget
from beop_assets.gcs_clients import client_for_export, emulator_host, key_source, read_service_account_key

log = logging.getLogger(__name__)

CONTENT_TYPE = "application/gzip"
# google-cloud-storage switches from a multipart to a resumable upload above 8 MiB; a resumable
# upload is sent in chunks of CHUNK_SIZE (a multiple of 256 KiB), so memory stays flat.
RESUMABLE_THRESHOLD = 8 * 1024 * 1024
CHUNK_SIZE = 8 * 1024 * 1024
ROLE_HINT = "check the service account's role (roles/storage.objectAdmin or objectUser on the bucket)"


@dataclass(frozen=True)
class GcsReceipt:
    """What was delivered, as recorded in the delivery ledger."""

    uri: str
    object_name: str
    bytes: int
    crc32c: str
    generation: int | None
    duration_s: float
    attempts: int


def _prefix(target: GcsTarget) -> str:
    prefix = target.prefix.lstrip("/")
    return prefix if not prefix or prefix.endswith("/") else prefix + "/"


def object_name(target: GcsTarget, file_name: str) -> str:
    """The object's full name: "exports/" + name, "exports" + "/" + name, or just the name."""
    return _prefix(target) + file_name


def local_crc32c(path: Path) -> tuple[int, str]:
    """Size and base64 crc32c (the form GCS reports) of a local file, read in 1 MiB blocks."""
    checksum = google_crc32c.Checksum()
    size = 0
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            checksum.update(block)
            size += len(block)
    return size, base64.b64encode(checksum.digest()).decode("ascii")


def _brief(exc: BaseException) -> str:
    """A short, safe description of a library error: resumable session ids are capabilities."""
    text = re.sub(r"upload_id=[^&\s'\"]+", "upload_id=…", str(exc))
    text = " ".join(text.split())
    return f"{type(exc).__name__}: {text[:240]}" if text else type(exc).__name__


def _status(exc: BaseException) -> int | None:
    if isinstance(exc, api_exceptions.GoogleAPICallError):
        return exc.code
    response = getattr(exc, "response", None)
    return getattr(response, "status_code", None)


def translate(exc: BaseException, export_id: str, bucket: str, name: str, action: str = "write") -> DeliveryError:
    """Turn a google-cloud-storage / google-auth / requests error into what the retry loop and the
    operator need: permanent (fix something) or transient (retry), naming export, bucket, object."""
    uri = f"gs://{bucket}/{name}"
    status = _status(exc)
    if isinstance(
        exc,
        (
            requests.ConnectionError,
            requests.Timeout,
            requests.exceptions.ChunkedEncodingError,
            ConnectionError,
            TimeoutError,
            auth_exceptions.TransportError,
            DataCorruption,
        ),
    ):
        return TransientDeliveryError(f"{action} of {uri} failed for export {export_id}: {_brief(exc)}")
    if isinstance(exc, auth_exceptions.RefreshError):
        cls = TransientDeliveryError if getattr(exc, "retryable", False) else PermanentDeliveryError
        return cls(
            f"Google rejected the credentials of export {export_id} ({action} of {uri}): "
            "the service-account key may be revoked or deleted"
        )
    if status in (401, 403):
        return PermanentDeliveryError(f"{action} denied to {uri} for export {export_id}: {ROLE_HINT}")
    if status == 404:
        if "upload_id=" in str(exc):  # the resumable session is gone (server restarted, expired)
            return TransientDeliveryError(f"the upload session of {uri} was lost (export {export_id})")
        if action in ("write", "check", "list"):  # only the bucket can be missing for these
            return PermanentDeliveryError(f"bucket {bucket} does not exist (export {export_id})")
        return PermanentDeliveryError(f"{uri} does not exist (export {export_id})")
    if status is not None and (status in (408, 429) or status >= 500):
        return TransientDeliveryError(f"{action} of {uri} failed for export {export_id}: HTTP {status}")
    if isinstance(exc, (api_exceptions.GoogleAPICallError, InvalidResponse)):
        return PermanentDeliveryError(f"{action} of {uri} refused for export {export_id}: {_brief(exc)}")
    return PermanentDeliveryError(f"{action} of {uri} failed for export {export_id}: {_brief(exc)}")


@contextlib.contextmanager
def _translated(export_id: str, bucket: str, name: str, action: str = "write") -> Iterator[None]:
    try:
        yield
    except DeliveryError:
        raise
    except Exception as exc:  # noqa: BLE001 - anything else is classified, never swallowed
        raise translate(exc, export_id, bucket, name, action) from exc


def deliver_file(
    export_id: str, target: GcsTarget, local_path: Path, file_name: str, *, timeout: float = 60.0
) -> GcsReceipt:
    """Upload `local_path` as `object_name(target, file_name)` with the export's own key, replacing
    the object of that name if any, and verify it. Raises PermanentDeliveryError at once for what a
    retry cannot fix, TransientDeliveryError once the retry policy is exhausted.

    The object is stored as the gzip bytes themselves (content type application/gzip, no content
    encoding): what a customer downloads is exactly the local file."""
    local_path = Path(local_path)
    name = object_name(target, file_name)
    uri = f"gs://{target.bucket}/{name}"
    size, crc32c = local_crc32c(local_path)
    client = client_for_export(export_id, target)  # key problems: permanent, before any network call
    started = time.monotonic()

    def attempt():
        with _translated(export_id, target.bucket, name):
            blob = client.bucket(target.bucket).blob(name)
            if size > RESUMABLE_THRESHOLD:
                blob.chunk_size = CHUNK_SIZE
            blob.upload_from_filename(
                str(local_path), content_type=CONTENT_TYPE, checksum="crc32c", retry=None, timeout=timeout
            )
            generation = blob.generation
            blob.reload(retry=None, timeout=timeout)
        if blob.crc32c != crc32c or blob.size != size:
            raise TransientDeliveryError(
                f"{uri} does not match the local file after upload for export {export_id} "
                f"(crc32c {blob.crc32c} vs {crc32c}, {blob.size} vs {size} bytes)"
            )
        return generation or blob.generation

    generation, attempts = call_with_retries(attempt)
    receipt = GcsReceipt(
        uri=uri,
        object_name=name,
        bytes=size,
        crc32c=crc32c,
        generation=generation,
        duration_s=time.monotonic() - started,
        attempts=attempts,
    )
    log.info("delivered %s (%d bytes, crc32c %s, %d attempt(s)) for export %s", uri, size, crc32c, attempts, export_id)
    return receipt


def check_target(export_id: str, target: GcsTarget, *, timeout: float = 30.0) -> list[str]:
    """Pre-flight for an export's bucket, in one attempt each (an operator is waiting at a prompt).

    Checks that the key is readable and valid, that the bucket exists, and that a probe object can
    be written, read back and deleted under the export's prefix (what a delivery and a re-run need).
    Returns what was checked, one human line each; raises the same errors as `deliver_file`.
    """
    info = read_service_account_key(export_id, target)
    client = client_for_export(export_id, target)
    lines = [
        f"{key_source(target)} is a valid service-account key for {info['client_email']}"
        + (f" (emulator {emulator_host()}: anonymous)" if emulator_host() else "")
    ]
    bucket = client.bucket(target.bucket)
    try:
        exists = bucket.exists(retry=None, timeout=timeout)
    except api_exceptions.Forbidden:
        # No storage.buckets.get (objectAdmin does not grant it): the probe below tells.
        lines.append(f"bucket {target.bucket}: existence not checked (no storage.buckets.get permission)")
    except Exception as exc:  # noqa: BLE001 - classified, never swallowed
        raise translate(exc, export_id, target.bucket, "", action="check") from exc
    else:
        if not exists:
            raise PermanentDeliveryError(f"bucket {target.bucket} does not exist (export {export_id})")
        lines.append(f"bucket {target.bucket} exists")
    probe = bucket.blob(object_name(target, f".beop-check-{uuid.uuid4().hex}"))
    with _translated(export_id, target.bucket, probe.name):
        probe.upload_from_string(b"beop-exports write probe\n", content_type="text/plain", retry=None, timeout=timeout)
    try:
        with _translated(export_id, target.bucket, probe.name, action="read"):
            probe.reload(retry=None, timeout=timeout)
        with _translated(export_id, target.bucket, probe.name, action="delete"):
            probe.delete(retry=None, timeout=timeout)
    except DeliveryError:
        with contextlib.suppress(Exception):
            probe.delete(retry=None, timeout=timeout)
        raise
    lines.append(f"gs://{target.bucket}/{_prefix(target)} is writable (probe object written, read back and deleted)")
    return lines


def download_file(export_id: str, target: GcsTarget, file_name: str, local_path: Path, *, timeout: float = 60.0) -> int:
    """Download a delivered object byte for byte (`raw_download=True`: never decompressed), with the
    export's own key; returns the number of bytes written."""
    name = object_name(target, file_name)
    local_path = Path(local_path)
    client = client_for_export(export_id, target)

    def attempt() -> int:
        with _translated(export_id, target.bucket, name, action="download"):
            client.bucket(target.bucket).blob(name).download_to_filename(
                str(local_path), raw_download=True, checksum="crc32c", retry=None, timeout=timeout
            )
        return local_path.stat().st_size

    written, _ = call_with_retries(attempt)
    return written


def list_objects(export_id: str, target: GcsTarget, *, timeout: float = 60.0) -> list[str]:
    """Full names of the objects under the export's prefix, sorted."""
    client = client_for_export(export_id, target)
    prefix = _prefix(target)

    def attempt() -> list[str]:
        with _translated(export_id, target.bucket, prefix + "*", action="list"):
            return sorted(
                b.name for b in client.list_blobs(target.bucket, prefix=prefix or None, retry=None, timeout=timeout)
            )

    names, _ = call_with_retries(attempt)
    return names
