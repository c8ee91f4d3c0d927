"""The GCS transport: put one built export file into the customer's bucket, whole, once, and prove it.

Why it looks like this:

- **Visible only when complete**: an object upload creates the object only when its last byte is
  committed, so a customer never lists a partial file; there is no temporary name to rename.
- **Few round trips** (customers' buckets are far away): a file up to SINGLE_REQUEST_MAX goes in one
  request (a multipart upload: metadata and bytes together); a larger one in a resumable session of
  CHUNK_SIZE chunks, each of which waits for its reply, so chunks are large (memory holds one). The
  look at the live generation before the first attempt stays: it is what tells a re-run (replace
  what was there) from an object someone else writes during the delivery (never replaced).
  docs/gcs-delivery.md gives the figures.
- **Least privilege works**: a customer may grant only Storage Object Creator
  (storage.objects.create: no get, no list, no delete). The JSON API answers an upload with the
  stored object's resource, which google-cloud-storage copies onto the blob (`_set_properties` of
  the upload response): its crc32c, md5Hash and size, computed by GCS over what it stored. Equal to
  the built file's, that *upload receipt* proves the content. The object is read back (metadata
  get) only when the key may do so; a 403 there is not a failure. How each delivery was proven is
  recorded as `verified_from`: "read-back" or "upload receipt".
- **Re-running a day replaces that day's object**. GCS lets a key replace an object
  only with storage.objects.delete as well (Storage Object User or Admin). With a creator-only key
  the re-run fails, naming that permission and the roles that have it, and the object stays as it was.
- **Every retry is safe**: each upload carries a precondition, `ifGenerationMatch` = the generation
  this delivery expects to replace (0: "only if there is no object"; the key cannot read: 0 too).
  A retry after an ambiguous failure (the connection dropped after GCS committed the object) then
  gets a 412 instead of replacing anything blindly; the 412 is resolved by comparing checksums when
  the object is readable (our own earlier attempt: delivered) and reported, never guessed, when not.
- **One retry policy** (`RetryPolicy`): the library's own retries are switched off
  (`retry=None`), so a connection failure, timeout, 429 or 5xx retries the whole attempt under our
  bounded exponential backoff, and a missing bucket, a denied write or a broken key fails at once.
- **The .gz bytes, as bytes**: `content_type="application/gzip"` and *no* `content_encoding`.
  With `Content-Encoding: gzip` GCS would decompress on download ("decompressive transcoding")
  and customers would get ndJSON under a `.gz` name, with a size and checksum that do not match.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import logging
import re
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import google_crc32c
import requests
from google.api_core import exceptions as api_exceptions
from google.auth import exceptions as auth_exceptions
from google.cloud import storage
from google.cloud.storage.exceptions import DataCorruption, InvalidResponse

from beop_assets.cloud_storage import emulator_host
from beop_assets.delivery.errors import DeliveryError, PermanentDeliveryError, TransientDeliveryError
from beop_assets.delivery.gcs_credentials import client_for_export, key_and_client, key_source
from beop_assets.delivery.gcs_target import GcsTarget
from beop_assets.delivery.retry import RetryPolicy
from beop_assets.delivery.transport import Receipt

log = logging.getLogger(__name__)

CONTENT_TYPE = "application/gzip"
# Up to this size a file goes in one request (google-cloud-storage's multipart limit: the request
# body is built in memory). Above it, a resumable session: each chunk (a multiple of 256 KiB, held in
# memory) waits for its reply before the next is sent, so chunks are as large as memory allows.
SINGLE_REQUEST_MAX = 8 * 1024 * 1024
CHUNK_SIZE = 64 * 1024 * 1024

READ_BACK = "read-back"
UPLOAD_RECEIPT = "upload receipt"

CREATE = "storage.objects.create"
GET = "storage.objects.get"
LIST = "storage.objects.list"
DELETE = "storage.objects.delete"
_ADMIN = "Storage Object Admin (roles/storage.objectAdmin)"
_USER = "Storage Object User (roles/storage.objectUser)"
# Google's predefined roles that grant each permission a delivery uses.
ROLES_WITH = {
    CREATE: f"Storage Object Creator (roles/storage.objectCreator), {_USER} or {_ADMIN}",
    GET: f"Storage Object Viewer (roles/storage.objectViewer), {_USER} or {_ADMIN}",
    LIST: f"Storage Object Viewer (roles/storage.objectViewer), {_USER} or {_ADMIN}",
    DELETE: f"{_USER} or {_ADMIN}",
}


class ReadBackDenied(PermanentDeliveryError):
    """The export's key may not read objects (no storage.objects.get). Not a delivery failure: what
    was delivered is proven by its upload receipt, recorded in the ledger."""


@dataclass(frozen=True)
class Checksums:
    """Size, crc32c and md5 (base64, the form GCS reports) of a file or of a stored object."""

    size: int
    crc32c: str
    md5: str | None

    def same_content(self, other: Checksums) -> bool:
        """Equal size and crc32c, and equal md5 where both have one (composite objects have none)."""
        md5_agrees = self.md5 is None or other.md5 is None or self.md5 == other.md5
        return self.size == other.size and self.crc32c == other.crc32c and md5_agrees

    @classmethod
    def of_blob(cls, blob: storage.Blob) -> Checksums:
        return cls(size=int(blob.size or 0), crc32c=blob.crc32c or "", md5=blob.md5_hash)


@dataclass(frozen=True)
class GcsOptions:
    """How GCS deliveries are made: the retry policy, and the bound of every request (seconds)."""

    retry: RetryPolicy = field(default_factory=RetryPolicy)
    timeout: float = 60.0
    check_timeout: float = 30.0


def _prefix(target: GcsTarget) -> str:
    prefix = target.prefix.lstrip("/")
    return prefix if not prefix or prefix.endswith("/") else prefix + "/"


def object_name(target: GcsTarget, file_name: str) -> str:
    """The object's full name: "exports/" + name, "exports" + "/" + name, or just the name."""
    return _prefix(target) + file_name


def local_checksums(path: Path) -> Checksums:
    """Size, crc32c and md5 of a local file, read once in 1 MiB blocks."""
    crc32c = google_crc32c.Checksum()
    md5 = hashlib.md5(usedforsecurity=False)
    size = 0
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            crc32c.update(block)
            md5.update(block)
            size += len(block)
    return Checksums(
        size=size,
        crc32c=base64.b64encode(crc32c.digest()).decode("ascii"),
        md5=base64.b64encode(md5.digest()).decode("ascii"),
    )


def local_crc32c(path: Path) -> tuple[int, str]:
    """Size and base64 crc32c of a local file."""
    checksums = local_checksums(path)
    return checksums.size, checksums.crc32c


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


_PERMISSION_FOR = {"write": CREATE, "read": GET, "download": GET, "list": LIST, "delete": DELETE, "check": CREATE}


def denied_permission(exc: BaseException) -> str | None:
    """The permission GCS names in a 403 ("... does not have storage.objects.delete access ...")."""
    found = re.search(r"storage\.(?:objects|buckets)\.[a-zA-Z]+", str(exc))
    return found.group(0) if found else None


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
    if status == 401:
        return PermanentDeliveryError(
            f"{action} of {uri} for export {export_id}: Google did not accept the export's credentials (HTTP 401)"
        )
    if status == 403:
        permission = denied_permission(exc) or _PERMISSION_FOR.get(action, CREATE)
        denied = ReadBackDenied if permission == GET else PermanentDeliveryError
        return denied(
            f"{action} of {uri} denied for export {export_id}: the key's service account lacks {permission} "
            f"on bucket {bucket}; {ROLES_WITH.get(permission, 'a role that grants it')} grants it"
        )
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


@dataclass
class _Delivery:
    """One delivery's state across its attempts: the precondition every upload carries, and what an
    earlier attempt left uncertain."""

    export_id: str
    bucket: storage.Bucket
    name: str
    local_path: Path
    built: Checksums
    timeout: float
    looked: bool = False
    readable: bool = True  # False once GCS refused this key a metadata get (403)
    expected_generation: int = 0  # the precondition: 0 = "only if no object exists"
    existed: bool = False  # an object was there before the first attempt
    uncertain: str | None = None  # why an earlier attempt may have stored the object after all
    committed: tuple[int, Checksums] | None = None  # our upload, proven by its receipt, not yet read back

    @property
    def uri(self) -> str:
        return f"gs://{self.bucket.name}/{self.name}"

    # -- before the first attempt ------------------------------------------------------------------

    def look(self) -> None:
        """Learn the live generation (the precondition of every attempt), if the key may read it."""
        try:
            with _translated(self.export_id, self.bucket.name, self.name, action="read"):
                blob = self.bucket.get_blob(self.name, retry=None, timeout=self.timeout)
        except ReadBackDenied:
            self.readable = False  # create-only key: "only if no object exists", verified from the receipt
            log.info("export %s: the key may not read %s; the upload receipt will prove it", self.export_id, self.uri)
            return
        self.existed = blob is not None
        self.expected_generation = int(blob.generation) if blob is not None else 0

    # -- one attempt -------------------------------------------------------------------------------

    def attempt(self) -> tuple[int, Checksums, str]:
        if not self.looked:
            self.look()
            self.looked = True
        if self.committed is None:
            outcome = self._upload()
            if outcome is not None:
                return outcome
        assert self.committed is not None  # set by the upload above, or by an earlier attempt's
        generation, receipt = self.committed
        if not self.readable:
            return generation, receipt, UPLOAD_RECEIPT
        return self._read_back(generation, receipt)

    def _upload(self) -> tuple[int, Checksums, str] | None:
        """Upload under the precondition; None when the receipt proves the content (read back next)."""
        blob = self.bucket.blob(self.name)
        if self.built.size > SINGLE_REQUEST_MAX:
            blob.chunk_size = CHUNK_SIZE
        try:
            blob.upload_from_filename(
                str(self.local_path),
                content_type=CONTENT_TYPE,
                checksum="crc32c",
                if_generation_match=self.expected_generation,
                retry=None,
                timeout=self.timeout,
            )
        except api_exceptions.PreconditionFailed:
            return self._resolve_precondition_failed()
        except api_exceptions.Forbidden as exc:
            raise self._upload_denied(exc) from exc
        except DataCorruption as exc:
            # GCS stored something else than what was sent (resumable uploads: the library compares
            # the final response's crc32c). That generation is ours: the retry replaces exactly it.
            self.expected_generation = _generation_in(exc) or self.expected_generation
            self.uncertain = "the stored object's crc32c differed from the file's"
            raise TransientDeliveryError(f"upload of {self.uri} was corrupted for export {self.export_id}") from exc
        except Exception as exc:  # noqa: BLE001 - classified, never swallowed
            error = translate(exc, self.export_id, self.bucket.name, self.name)
            if isinstance(error, TransientDeliveryError):
                self.uncertain = str(error)  # it may have failed after GCS committed the object
            raise error from exc
        receipt = Checksums.of_blob(blob)
        if not receipt.same_content(self.built):
            self.expected_generation = int(blob.generation or 0)  # ours and wrong: the retry replaces it
            self.uncertain = None
            raise TransientDeliveryError(
                f"the upload receipt of {self.uri} does not match the built file for export {self.export_id} "
                f"(crc32c {receipt.crc32c} vs {self.built.crc32c}, md5 {receipt.md5} vs {self.built.md5}, "
                f"{receipt.size} vs {self.built.size} bytes)"
            )
        self.committed = (int(blob.generation or 0), receipt)
        return None

    def _read_back(self, generation: int, receipt: Checksums) -> tuple[int, Checksums, str]:
        """Read the metadata again; a key that turns out not to may rely on its receipt."""
        try:
            with _translated(self.export_id, self.bucket.name, self.name, action="read"):
                live = self.bucket.get_blob(self.name, retry=None, timeout=self.timeout)
        except ReadBackDenied:
            self.readable = False
            return generation, receipt, UPLOAD_RECEIPT
        if live is None or int(live.generation or 0) != generation:
            found = "no object" if live is None else f"generation {live.generation}"
            raise PermanentDeliveryError(
                f"{self.uri} changed right after this delivery stored generation {generation} for export "
                f"{self.export_id}: GCS now has {found}; someone else writes this name. It was left as it is."
            )
        stored = Checksums.of_blob(live)
        if not stored.same_content(self.built):
            raise PermanentDeliveryError(
                f"{self.uri} read back does not match the built file for export {self.export_id} "
                f"(crc32c {stored.crc32c} vs {self.built.crc32c}, {stored.size} vs {self.built.size} bytes)"
            )
        return generation, stored, READ_BACK

    # -- what a refusal means ----------------------------------------------------------------------

    def _resolve_precondition_failed(self) -> tuple[int, Checksums, str]:
        """A 412: an object of this name exists that is not the generation this delivery expected."""
        if self.readable:
            try:
                with _translated(self.export_id, self.bucket.name, self.name, action="read"):
                    live = self.bucket.get_blob(self.name, retry=None, timeout=self.timeout)
            except ReadBackDenied:
                self.readable = False
            else:
                if live is None:  # it went away since: the next attempt may create it
                    self.expected_generation = 0
                    raise TransientDeliveryError(
                        f"{self.uri} was deleted during the delivery of export {self.export_id}"
                    )
                stored = Checksums.of_blob(live)
                if stored.same_content(self.built):  # our own earlier attempt (or an identical run) stored it
                    log.info(
                        "export %s: %s already holds the built file (an earlier attempt)", self.export_id, self.uri
                    )
                    return int(live.generation or 0), stored, READ_BACK
                raise PermanentDeliveryError(
                    f"{self.uri} was replaced by someone else during the delivery of export {self.export_id} "
                    f"(generation {self.expected_generation} expected, {live.generation} found, and it is not the "
                    "built file): it was left as it is; re-run the day to replace it"
                )
        if self.uncertain is None:
            raise self._replace_denied()
        raise PermanentDeliveryError(
            f"{self.uri} exists now, and an earlier attempt of export {self.export_id} failed ({self.uncertain}) "
            f"possibly after GCS had stored it. The key may not read objects ({GET}), so whether it is the built "
            f"file (crc32c {self.built.crc32c}, md5 {self.built.md5}, {self.built.size} bytes) cannot be told. "
            f"It was left as it is. Compare it with those checksums, or grant {ROLES_WITH[GET]}."
        )

    def _replace_denied(self) -> PermanentDeliveryError:
        return PermanentDeliveryError(
            f"re-running export {self.export_id} must replace {self.uri}, which needs the permission {DELETE} "
            f"on bucket {self.bucket.name}: the export's key may create objects but not replace them "
            f"(as with Storage Object Creator). Grant its service account {ROLES_WITH[DELETE]} on the bucket, "
            "or have the object deleted first. The existing object was left as it was."
        )

    def _upload_denied(self, exc: api_exceptions.Forbidden) -> PermanentDeliveryError:
        permission = denied_permission(exc)
        if permission == DELETE or (permission is None and self.existed):
            return self._replace_denied()
        permission = permission or CREATE
        return PermanentDeliveryError(
            f"write of {self.uri} denied for export {self.export_id}: the key's service account lacks "
            f"{permission} on bucket {self.bucket.name}; grant it {ROLES_WITH.get(permission, 'a role with it')}"
        )


def _generation_in(exc: DataCorruption) -> int | None:
    with contextlib.suppress(Exception):
        return int(exc.response.json()["generation"])
    return None


def _granted(bucket: storage.Bucket, export_id: str, timeout: float) -> set[str] | None:
    """The object permissions IAM grants the key on the bucket (testIamPermissions itself needs
    none), or None where the server cannot tell (the emulator has no IAM: 404)."""
    try:
        return set(bucket.test_iam_permissions([CREATE, GET, DELETE], retry=None, timeout=timeout))
    except (api_exceptions.NotFound, api_exceptions.MethodNotImplemented, api_exceptions.MethodNotAllowed):
        return None
    except Exception as exc:  # noqa: BLE001 - classified, never swallowed
        raise translate(exc, export_id, bucket.name, "", action="check") from exc


def _check(export_id: str, target: GcsTarget, timeout: float) -> list[str]:
    """`GcsTransport.check`, for one export's bucket."""
    info, client = key_and_client(export_id, target)
    lines = [
        f"{key_source(target)} is a valid service-account key for {info['client_email']}"
        + (f" (emulator {emulator_host()}: anonymous)" if emulator_host() else "")
    ]
    bucket = client.bucket(target.bucket)
    where = f"gs://{target.bucket}/{_prefix(target)}"
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
    granted = _granted(bucket, export_id, timeout)
    if granted is not None and CREATE not in granted:
        raise PermanentDeliveryError(
            f"the key's service account lacks {CREATE} on bucket {target.bucket} (export {export_id}): "
            f"every delivery would be refused; grant it {ROLES_WITH[CREATE]}"
        )
    if granted is not None and not {GET, DELETE} <= granted:
        lines.append(f"{where} accepts new objects ({CREATE} granted; no probe written: this key could not remove it)")
        if GET not in granted:
            lines.append(f"no {GET}: deliveries are verified from the upload receipt (crc32c, md5, size)")
        if DELETE not in granted:
            lines.append(
                f"no {DELETE}: re-running a day cannot replace its object (grant {ROLES_WITH[DELETE]} for that)"
            )
        return lines
    probe = bucket.blob(object_name(target, f".beop-check-{uuid.uuid4().hex}"))
    with _translated(export_id, target.bucket, probe.name):
        probe.upload_from_string(
            b"beop-exports write probe\n", content_type="text/plain", if_generation_match=0, retry=None, timeout=timeout
        )
    try:
        with _translated(export_id, target.bucket, probe.name, action="read"):
            probe.reload(retry=None, timeout=timeout)
        with _translated(export_id, target.bucket, probe.name, action="delete"):
            probe.delete(retry=None, timeout=timeout)
    except DeliveryError:
        with contextlib.suppress(Exception):
            probe.delete(retry=None, timeout=timeout)
        raise
    lines.append(f"{where} is writable (probe object written, read back and deleted)")
    return lines


class GcsTransport:
    """One export's GCS destination (`Transport`)."""

    def __init__(self, export_id: str, target: GcsTarget, options: GcsOptions | None = None) -> None:
        self.export_id = export_id
        self.target = target
        self.options = options or GcsOptions()

    def destination(self) -> str:
        return f"gs://{self.target.bucket}/{self.target.prefix}"

    def temp_name(self, file_name: str) -> None:
        return None  # an object is visible only once complete: nothing to rename, nothing left behind

    def deliver(self, built_path: Path, file_name: str, *, leftovers: Iterable[str] = ()) -> Receipt:
        """Upload `built_path` as `object_name(target, file_name)` with the export's own key, replacing
        the object of that name if any (and if the key may), and prove what was stored. `leftovers`
        has no meaning here (GCS leaves no partial object behind).

        Raises PermanentDeliveryError at once for what a retry cannot fix (the message names the
        missing permission and the roles that grant it), TransientDeliveryError once the retry policy
        is exhausted. The object is stored as the gzip bytes themselves (content type
        application/gzip, no content encoding): what a customer downloads is exactly the local file."""
        export_id, target = self.export_id, self.target
        local_path = Path(built_path)
        name = object_name(target, file_name)
        built = local_checksums(local_path)
        client = client_for_export(export_id, target)  # key problems: permanent, before any network call
        started = time.monotonic()
        delivery = _Delivery(export_id, client.bucket(target.bucket), name, local_path, built, self.options.timeout)
        (generation, stored, verified_from), attempts = self.options.retry.call(delivery.attempt)
        receipt = Receipt(
            destination=delivery.uri,
            file_name=file_name,
            bytes=built.size,
            attempts=attempts,
            duration_s=time.monotonic() - started,
            verified_from=verified_from,
            stored_bytes=stored.size,
            stored_crc32c=stored.crc32c,
            stored_md5=stored.md5,
            built_crc32c=built.crc32c,
            built_md5=built.md5,
            generation=generation,
            facts={"object": name},
        )
        log.info(
            "delivered %s (%d bytes, crc32c %s, verified from the %s, %d attempt(s)) for export %s",
            delivery.uri,
            built.size,
            built.crc32c,
            verified_from,
            attempts,
            export_id,
        )
        return receipt

    def check(self, echo: Callable[[str], None] | None = None) -> list[str]:
        """Pre-flight for the export's bucket, in one attempt each (an operator is waiting at a prompt).

        Checks that the key is readable and valid, that the bucket exists, and what the key may do
        there. A key with create, get and delete gets the full proof: a probe object written, read back
        and deleted under the export's prefix. A least-privilege key (IAM grants create, but not get or
        delete) gets no probe, since it could not remove it: the lines say what its deliveries will do
        (verified from the upload receipt; a re-run cannot replace the day's object).
        Returns what was checked, one human line each; raises the same errors as `deliver`.
        """
        lines = _check(self.export_id, self.target, self.options.check_timeout)
        if echo is not None:
            for line in lines:
                echo(line)
        return lines

    def download(self, file_name: str, local_path: Path) -> int:
        """Download a delivered object byte for byte (`raw_download=True`: never decompressed), with the
        export's own key; returns the number of bytes written."""
        export_id, target = self.export_id, self.target
        name = object_name(target, file_name)
        local_path = Path(local_path)
        client = client_for_export(export_id, target)

        def attempt() -> int:
            with _translated(export_id, target.bucket, name, action="download"):
                client.bucket(target.bucket).blob(name).download_to_filename(
                    str(local_path), raw_download=True, checksum="crc32c", retry=None, timeout=self.options.timeout
                )
            return local_path.stat().st_size

        return self.options.retry.call(attempt)[0]

    def list_files(self) -> list[str]:
        """Full names of the objects under the export's prefix, sorted."""
        export_id, target = self.export_id, self.target
        client = client_for_export(export_id, target)
        prefix = _prefix(target)

        def attempt() -> list[str]:
            with _translated(export_id, target.bucket, prefix + "*", action="list"):
                return sorted(
                    b.name
                    for b in client.list_blobs(
                        target.bucket, prefix=prefix or None, retry=None, timeout=self.options.timeout
                    )
                )

        return self.options.retry.call(attempt)[0]
