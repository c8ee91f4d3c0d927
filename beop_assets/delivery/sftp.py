"""Delivering a built export file to the customer's SFTP server: whole, proven, once, or not at all.

The contract (SPEC sections 3 and 5) and how it is met:

- The directory must already exist; it is never created, and a missing one fails the export with
  an error naming host and path (a customer's folder layout is theirs to decide).
- A customer never sees a partial file under a final name: the file is written as
  `.{file_name}.part` in the same directory (hidden, and on the same filesystem so the rename is
  atomic) and only gets its final name once it is proven to hold the built bytes.
- Proven how: every WRITE request's status is read and matched to its request by id (in whatever
  order the server answers: SFTP v3 allows any), and a single refused write (a full disk, a storage
  hiccup) fails the attempt at step "write" with the server's message. paramiko's `SFTPFile` cannot
  be trusted with this: it drops the acknowledgements that arrive while the file is being closed and
  waits for replies in request order, so the writer here sits on paramiko's request/response layer
  (`_async_request` / `_read_response`, as `SFTPFile` itself does) with its own reply object. The
  CLOSE status is checked too. Then the temporary file's size is checked (stat), and where the
  server offers a hash extension (`check-file-handle`, e.g. ProFTPD mod_sftp) its hash of the
  temporary file is compared with the local file's, computed while uploading. Without one (OpenSSH)
  the proof is acknowledgement tracking + size; `read_back=True` reads the temporary file back and
  compares hashes instead, at the cost of a download. The receipt says which (`verified`).
- Rename: `posix-rename@openssh.com` where the server lists it (it replaces a file of the same name
  atomically); if the server refuses it (OpenSSH `-P posix-rename`) or lacks it, plain SFTP `rename`
  (file names are unique per delivery, so there is normally nothing to replace; a re-delivery of the
  same name removes the old file first). A server that refuses every rename fails the delivery at
  step "rename", saying so: without a rename nothing can be delivered safely.
- Temporary files: a stale `.{file_name}.part` (an earlier attempt's) is removed before opening, since
  some servers (ProFTPD's default `AllowOverwrite off`) refuse to reopen an existing file. After each
  delivery the directory is listed and the product's OWN leftover temporary files (its naming pattern
  only, older than `stale_temp_age_s` by the server's clock, i.e. compared with the mtime of the file
  just written) are removed and named in the receipt, so that a crash (kill -9, a dead connection)
  leaves nothing behind for longer than one night. A directory that may be written but not listed
  (mode 0733) still gets its file; the cleanup is skipped with a warning.
- Network trouble and refused writes are retried with exponential backoff (`delivery.retry`); what
  retrying cannot fix (credentials, host key, missing directory, denied access, refused renames)
  fails at once. A retry in the same run reuses the file name; if an earlier attempt's rename went
  through but its reply was lost, the file already under its final name (right size, and hash where
  the server offers one) counts as delivered.
- Errors name the step (`DeliveryError.step`): connect, host key, auth, stat directory, remove temp,
  open, write, close, verify, rename, list.
- Throughput: write requests of the size the server announces (`limits@openssh.com` max-write-length:
  ~255 KiB on OpenSSH), 128 KiB on ProFTPD (known to take up to 512 KiB; 32 KiB again after a failed
  write), else 32 KiB (what every server accepts), with `REQUESTS_IN_FLIGHT` requests outstanding,
  several framed per SSH packet (bench/sftp_throughput.py; figures in bench/README.md).

Connection, authentication, timeouts and error classification live in `sftp_connection`.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import logging
import os
import posixpath
import queue
import re
import stat
import struct
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, TypeVar

import paramiko
from paramiko.sftp import (
    CMD_CLOSE,
    CMD_DATA,
    CMD_EXTENDED,
    CMD_EXTENDED_REPLY,
    CMD_HANDLE,
    CMD_OPEN,
    CMD_READ,
    CMD_STATUS,
    CMD_WRITE,
    SFTP_DESC,
    SFTP_EOF,
    SFTP_FLAG_CREATE,
    SFTP_FLAG_READ,
    SFTP_FLAG_TRUNC,
    SFTP_FLAG_WRITE,
    SFTP_OK,
    int64,
)

from beop_assets.delivery.errors import PermanentDeliveryError, TransientDeliveryError
from beop_assets.delivery.retry import call_with_retries
from beop_assets.delivery.sftp_connection import Credentials, SftpClient, load_credentials, sftp_session
from beop_assets.delivery.sftp_target import SftpTarget

log = logging.getLogger(__name__)
T = TypeVar("T")

# Bytes per WRITE request. The SFTP drafts only promise 32,768 (every server takes it); a server that
# announces `limits@openssh.com` says how much more it takes (OpenSSH: 261,120). Capped, because a
# request far larger than the SSH packets it travels in only delays the first acknowledgement.
SAFE_WRITE_REQUEST = 32 * 1024
MAX_WRITE_REQUEST = 252 * 1024
# ProFTPD's mod_sftp (banner "mod_sftp") announces no limits but takes SFTP packets of up to 512 KiB
# (FXP_MAX_PACKET_LEN in its fxp.c); at 32 KiB per request its single session process, not the
# network, is the bottleneck, and 128 KiB requests more than double its rate (bench/README.md). Should
# a server refuse them, the next attempt of the delivery falls back to 32 KiB.
PROFTPD_WRITE_REQUEST = 128 * 1024
# WRITE requests outstanding at once: enough to cover the loopback round trip many times over at
# full speed; the server's channel window bounds the bytes really in flight anyway.
REQUESTS_IN_FLIGHT = 64
READ_CHUNK = 1024 * 1024
STALE_TEMP_AGE_S = 3600.0
PROBE_SIZE = 4 * 2**20

# Hash algorithms of the `check-file` extension, in preference order, with their hashlib names.
CHECK_FILE_ALGORITHMS = ("sha256", "sha512", "sha384", "sha224", "sha1", "md5")

# The product's own temporary files: `.{file_name}.part` for its file names
# (`YYYYMMDD_TYPE_NAME_UUID.csv`, exports/file_names.py) and the check command's probes. Nothing else in
# a customer's directory is ever touched.
_UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
OWN_TEMP_FILE = re.compile(
    rf"\.\d{{8}}_(?:crm-participation|crm-optin)_[a-z0-9-]+_{_UUID}\.csv\.part|\.beop-probe-[0-9a-f]{{32}}(?:\.part)?"
)


@dataclass(frozen=True)
class SftpReceipt:
    """What was delivered: the final remote path, its size, what it took, how its content was proven
    (`verified`: "sha256 check-file", "acks+size" or "read-back"), and which leftover temporary files
    of the product's were removed from the directory on the way."""

    remote_path: str
    file_name: str
    bytes: int
    duration_s: float
    attempts: int
    verified: str = ""
    removed_temp_files: tuple[str, ...] = ()


@dataclass(frozen=True)
class ServerFeatures:
    """What the server announced (or is known for) that changes how a file is written, proven and renamed."""

    posix_rename: bool
    write_request: int
    write_request_announced: bool  # False: a size the server is known for, not one it announced
    # The check-file algorithm to hash the local file with while uploading; None: no server hash to
    # compare with. `hash_announced` False means it is asked for without having been announced:
    # ProFTPD's mod_sftp answers check-file-handle on SFTP v3 but only lists it from v5 on.
    hash_algorithm: str | None
    hash_announced: bool
    software: str


def server_features(sftp: SftpClient) -> ServerFeatures:
    ext = sftp.extensions
    software = sftp.transport.remote_version or "unknown server"
    write_request = SAFE_WRITE_REQUEST
    write_request_announced = False
    if "mod_sftp" in software:
        write_request = PROFTPD_WRITE_REQUEST
    if "limits@openssh.com" in ext:
        with contextlib.suppress(OSError, paramiko.SFTPError, struct.error):
            kind, msg = sftp._request(CMD_EXTENDED, "limits@openssh.com")
            if kind == CMD_EXTENDED_REPLY:
                msg.get_int64()  # max packet length
                msg.get_int64()  # max read length
                max_write = msg.get_int64()
                if max_write:
                    write_request = max(SAFE_WRITE_REQUEST, min(MAX_WRITE_REQUEST, max_write))
                    write_request_announced = True
    algorithm: str | None = None
    announced = "check-file-handle" in ext or "check-file" in ext
    if announced:
        offered = ext.get("check-file-handle") or ext.get("check-file") or b""
        names = {n.strip().lower() for n in offered.decode("ascii", "replace").split(",") if n.strip()}
        # Some servers list the extension with no algorithms: ask for the preferred one, it will choose.
        algorithm = next((a for a in CHECK_FILE_ALGORITHMS if a in names), None) if names else "sha256"
    elif "OpenSSH" not in software:
        # Unannounced but worth one request: a server without it answers "unsupported" (OpenSSH, which
        # never implements it, is not asked, and its uploads pay no local hashing).
        algorithm = "sha256"
    return ServerFeatures(
        "posix-rename@openssh.com" in ext, write_request, write_request_announced, algorithm, announced, software
    )


# -- errors ------------------------------------------------------------------------------------------


def _where(export_id: str, target: SftpTarget, path: str) -> str:
    return f"export {export_id!r}: SFTP {target.username}@{target.address} {path}"


def _remote(export_id: str, target: SftpTarget, file_name: str) -> str:
    if not file_name or "/" in file_name or file_name in (".", ".."):
        where = _where(export_id, target, target.directory)
        raise PermanentDeliveryError(f"{where}: invalid file name {file_name!r}")
    return posixpath.join(target.directory, file_name)


def _status_name(code: int) -> str:
    return SFTP_DESC[code] if 0 <= code < len(SFTP_DESC) else f"status {code}"


# -- the pipelined writer ------------------------------------------------------------------------------


class _WriteReplies:
    """Receives the replies to one file's WRITE requests, by request id, in any order, and keeps the
    status of every one (paramiko's `_read_response` calls `_async_response` for each)."""

    def __init__(self) -> None:
        self.pending: dict[int, tuple[int, int]] = {}  # request id -> (offset, length)
        self.acknowledged = 0
        self.refused: list[tuple[int, int, str]] = []  # (offset, length, the server's answer)

    def _async_response(self, kind: int, msg: paramiko.Message, num: int) -> None:
        offset, length = self.pending.pop(num)
        if kind != CMD_STATUS:
            self.refused.append((offset, length, f"unexpected reply type {kind}"))
            return
        code = msg.get_int()
        text = msg.get_text()
        if code == SFTP_OK:
            self.acknowledged += length
        else:
            self.refused.append((offset, length, f"{_status_name(code)}: {text}" if text else _status_name(code)))


@dataclass
class _Written:
    requests: int
    acknowledged: int
    digest: str | None  # hex, of the algorithm asked for


def _open_handle(sftp: SftpClient, path: str, flags: int) -> bytes:
    kind, msg = sftp._request(CMD_OPEN, path, flags, paramiko.SFTPAttributes())
    if kind != CMD_HANDLE:
        raise paramiko.SFTPError(f"expected a handle, got reply type {kind}")
    return msg.get_binary()


def _close_handle(sftp: SftpClient, handle: bytes) -> None:
    sftp._request(CMD_CLOSE, handle)  # raises on a non-OK status


class _BackgroundHash:
    """The local file's hash, computed on another thread while the upload goes on (hashlib releases
    the GIL), so that verifying by the server's hash costs the upload no time of its own where a core
    is free."""

    def __init__(self, algorithm: str) -> None:
        self._digest = hashlib.new(algorithm)
        self._chunks: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="sftp-local-hash", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (chunk := self._chunks.get()) is not None:
            self._digest.update(chunk)

    def update(self, chunk: bytes) -> None:
        self._chunks.put(chunk)

    def hexdigest(self) -> str:
        self._chunks.put(None)
        self._thread.join()
        return self._digest.hexdigest()

    def abandon(self) -> None:
        self._chunks.put(None)


class _Outbox:
    """WRITE requests framed here and handed to the channel in pieces of its maximum packet size.

    Why not `_async_request` per request: it sends each request on its own, so every 32 KiB request
    costs a full SSH packet plus a tiny one for its last few bytes (paramiko packs at most the peer's
    packet size less 64 bytes), and paramiko's `sendall` copies the unsent rest on every packet.
    Framing several requests into one buffer and slicing it into full packets halves the packets.
    Request ids and reply routing stay paramiko's (`request_number`, `_expecting`, `_read_response`).
    """

    def __init__(self, sftp: SftpClient, replies: _WriteReplies, handle: bytes) -> None:
        self.sftp = sftp
        self.replies = replies
        self.handle_field = struct.pack(">I", len(handle)) + handle
        channel = sftp.channel
        self.piece = max(1024, channel.out_max_packet_size - 64)
        self.flush_at = 4 * self.piece
        self.parts: list[bytes] = []
        self.size = 0

    def add(self, offset: int, data: bytes) -> None:
        sftp = self.sftp
        with sftp._lock:
            num = sftp.request_number
            sftp.request_number += 1
            sftp._expecting[num] = self.replies
        self.replies.pending[num] = (offset, len(data))
        body = 4 + len(self.handle_field) + 8 + 4 + len(data)  # id, handle, offset, data
        header = (
            struct.pack(">IBI", 1 + body, CMD_WRITE, num) + self.handle_field + struct.pack(">QI", offset, len(data))
        )
        self.parts += (header, data)
        self.size += len(header) + len(data)
        if self.size >= self.flush_at:
            self.flush()

    def flush(self) -> None:
        if not self.parts:
            return
        data = b"".join(self.parts)
        self.parts.clear()
        self.size = 0
        channel = self.sftp.channel
        view = memoryview(data)
        at = 0
        while at < len(data):
            sent = channel.send(bytes(view[at : at + self.piece]))
            if sent <= 0:
                raise EOFError("the channel is closed")
            at += sent


def _write_all(
    sftp: SftpClient,
    handle: bytes,
    source: IO[bytes],
    request_size: int,
    in_flight: int,
    algorithm: str | None,
    where: str,
    temp_path: str,
) -> _Written:
    """Send `source` as WRITE requests, about `in_flight` outstanding at once; every reply is accounted
    for before returning. Any refused write raises a TransientDeliveryError at step "write"."""
    replies = _WriteReplies()
    outbox = _Outbox(sftp, replies, handle)
    digest = _BackgroundHash(algorithm) if algorithm else None
    try:
        return _write_requests(sftp, source, request_size, in_flight, where, temp_path, replies, outbox, digest)
    except BaseException:
        if digest is not None:
            digest.abandon()
        raise


def _write_requests(
    sftp: SftpClient,
    source: IO[bytes],
    request_size: int,
    in_flight: int,
    where: str,
    temp_path: str,
    replies: _WriteReplies,
    outbox: _Outbox,
    digest: _BackgroundHash | None,
) -> _Written:
    # Read replies in batches, so that the requests sent next fill whole SSH packets.
    refill = max(1, min(in_flight // 2, outbox.flush_at // request_size))
    offset = requests = 0
    while not replies.refused:
        data = source.read(request_size)
        if not data:
            break
        if digest is not None:
            digest.update(data)
        if len(replies.pending) >= in_flight:
            outbox.flush()
            while len(replies.pending) > in_flight - refill:
                sftp._read_response()  # one reply, handed to its owner by request id
        outbox.add(offset, data)
        offset += len(data)
        requests += 1
    outbox.flush()
    while replies.pending:
        sftp._read_response()
    if replies.refused:
        first, length, answer = min(replies.refused)
        more = f" (and {len(replies.refused) - 1} more refused)" if len(replies.refused) > 1 else ""
        raise TransientDeliveryError(
            f"{where}: write: the server refused the write of bytes {first}-{first + length - 1} of {temp_path} "
            f"({answer}){more}; the file was not given its final name",
            step="write",
        )
    if replies.acknowledged != offset:
        raise TransientDeliveryError(
            f"{where}: write: {replies.acknowledged} of {offset} bytes acknowledged for {temp_path}", step="write"
        )
    return _Written(requests, replies.acknowledged, digest.hexdigest() if digest else None)


def _server_hash(sftp: SftpClient, path: str, algorithm: str) -> tuple[str, str]:
    """(algorithm used, hex digest) of `path` from the server's check-file-handle extension."""
    handle = _open_handle(sftp, path, SFTP_FLAG_READ)
    try:
        kind, msg = sftp._request(CMD_EXTENDED, "check-file-handle", handle, algorithm, int64(0), int64(0), 0)
    finally:
        _close_handle(sftp, handle)
    if kind != CMD_EXTENDED_REPLY:
        raise paramiko.SFTPError(f"check-file-handle: unexpected reply type {kind}")
    # The draft's reply is `string hash-algo-used, byte[] hash` (ProFTPD); paramiko's own server puts
    # the extension name ("check-file") first.
    used = msg.get_string().decode("ascii", "replace").lower()
    if used == "check-file":
        used = msg.get_string().decode("ascii", "replace").lower()
    return used, msg.get_remainder().hex()


class _ReadReplies:
    """Receives the replies to one file's READ requests, by request id, in any order."""

    def __init__(self) -> None:
        self.pending: dict[int, tuple[int, int]] = {}  # request id -> (offset, length)
        self.arrived: dict[int, tuple[int, bytes]] = {}  # offset -> (length asked, data; b"" at EOF)
        self.failed: list[str] = []

    def _async_response(self, kind: int, msg: paramiko.Message, num: int) -> None:
        offset, length = self.pending.pop(num)
        if kind == CMD_DATA:
            self.arrived[offset] = (length, msg.get_string())
        elif kind == CMD_STATUS:
            code = msg.get_int()
            text = msg.get_text()
            if code == SFTP_EOF:
                self.arrived[offset] = (length, b"")
            else:
                self.failed.append(f"{_status_name(code)}: {text}" if text else _status_name(code))
        else:
            self.failed.append(f"unexpected reply type {kind}")


def _read_back_hash(sftp: SftpClient, path: str, algorithm: str, size: int, request_size: int, in_flight: int) -> str:
    """Hash of `path` as read back from the server, with pipelined READ requests (paramiko's prefetch
    is several times slower), taken in file order whatever the order of the replies."""
    digest = hashlib.new(algorithm)
    handle = _open_handle(sftp, path, SFTP_FLAG_READ)
    replies = _ReadReplies()
    try:
        asked = hashed = 0
        while hashed < size and not replies.failed:
            while len(replies.pending) < in_flight and asked < size:
                length = min(request_size, size - asked)
                num = sftp._async_request(replies, CMD_READ, handle, int64(asked), length)
                replies.pending[num] = (asked, length)
                asked += length
            if hashed not in replies.arrived:
                sftp._read_response()
                continue
            length, data = replies.arrived.pop(hashed)
            if not data:
                break  # end of file before `size`: the hash will differ
            digest.update(data)
            if len(data) < length:  # a short read: ask for the rest of that range
                num = sftp._async_request(replies, CMD_READ, handle, int64(hashed + len(data)), length - len(data))
                replies.pending[num] = (hashed + len(data), length - len(data))
            hashed += len(data)
        while replies.pending:
            sftp._read_response()
    finally:
        _close_handle(sftp, handle)
    if replies.failed:
        raise OSError(f"reading {path} back failed: {replies.failed[0]}")  # a server answer, as paramiko gives it
    return digest.hexdigest()


@dataclass
class _Attempts:
    """What one delivery's attempts learn from each other."""

    posix_rename_refused: bool = False
    small_writes: bool = False  # a write of an unannounced size failed: 32 KiB requests from now on
    rename_sent: bool = False  # a rename request went out: the file may already be under its final name
    verified: str = ""


@dataclass
class _Uploaded:
    written: _Written
    verified: str
    mtime: int | None
    rename: str = ""
    removed: tuple[str, ...] = field(default_factory=tuple)


def _remove_if_there(sftp: SftpClient, path: str) -> bool:
    """Remove `path`; False when it was not there. Other refusals are left to the next step to report."""
    try:
        sftp.remove(path)
    except FileNotFoundError:
        return False
    except OSError as exc:
        if exc.errno is not None and exc.errno not in (errno.EACCES, errno.EPERM):
            raise
        log.debug("could not remove %s first (%s); opening it anyway", path, exc)
        return False
    return True


def _upload_verified(
    sftp: SftpClient,
    features: ServerFeatures,
    where: str,
    source: IO[bytes],
    size: int,
    temp_path: str,
    *,
    in_flight: int,
    read_back: bool,
    local_hash: Callable[[str], str] | None = None,
) -> _Uploaded:
    """remove temp -> open -> write -> close -> verify. Leaves a proven temporary file, or raises."""
    sftp.step = "remove temp"
    if _remove_if_there(sftp, temp_path):
        log.info("%s: removed the stale temporary file %s of an earlier attempt", where, temp_path)
    sftp.step = "open"
    handle = _open_handle(sftp, temp_path, SFTP_FLAG_WRITE | SFTP_FLAG_CREATE | SFTP_FLAG_TRUNC)
    algorithm = "sha256" if read_back else features.hash_algorithm
    try:
        sftp.step = "write"
        written = _write_all(sftp, handle, source, features.write_request, in_flight, algorithm, where, temp_path)
    except BaseException as exc:
        if not _dead_connection(exc):  # on a stalled connection, closing would only wait again
            with contextlib.suppress(Exception):
                _close_handle(sftp, handle)
        raise
    sftp.step = "close"
    _close_handle(sftp, handle)

    sftp.step = "verify"
    attributes = sftp.stat(temp_path)
    if attributes.st_size != size or written.acknowledged != size:
        raise TransientDeliveryError(
            f"{where}: verify: {temp_path} holds {attributes.st_size} of {size} bytes "
            f"({written.acknowledged} acknowledged)",
            step="verify",
        )
    verified = "acks+size"
    if read_back:
        theirs = _read_back_hash(sftp, temp_path, "sha256", size, features.write_request, in_flight)
        if theirs != written.digest:
            raise TransientDeliveryError(
                f"{where}: verify: the bytes read back from {temp_path} differ from the file built "
                f"(sha256 {theirs} != {written.digest})",
                step="verify",
            )
        verified = "read-back"
    elif features.hash_algorithm is not None and written.digest is not None:
        try:
            used, theirs = _server_hash(sftp, temp_path, features.hash_algorithm)
        except (OSError, paramiko.SFTPError) as exc:
            if isinstance(exc, OSError) and exc.errno in (errno.ENOENT,):
                raise
            log.log(
                logging.WARNING if features.hash_announced else logging.INFO,
                "%s: no hash from the server's check-file-handle (%s); verified by acknowledgements and size",
                where,
                exc,
            )
        else:
            ours = written.digest if used == features.hash_algorithm else None
            if ours is None and local_hash is not None and used in hashlib.algorithms_available:
                ours = local_hash(used)
            if ours is None:
                log.warning("%s: the server hashed with %s, which cannot be compared here", where, used)
            elif ours != theirs:
                raise TransientDeliveryError(
                    f"{where}: verify: the server's {used} of {temp_path} ({theirs}) differs from the file "
                    f"built ({ours})",
                    step="verify",
                )
            else:
                verified = f"{used} check-file"
    return _Uploaded(written, verified, attributes.st_mtime)


def _rename(
    sftp: SftpClient,
    features: ServerFeatures,
    state: _Attempts,
    where: str,
    target: SftpTarget,
    temp_path: str,
    final_path: str,
) -> str:
    """Give the proven temporary file its final name; returns which rename did it."""
    sftp.step = "rename"
    posix_answer = "not offered by the server"
    if features.posix_rename and not state.posix_rename_refused:
        state.rename_sent = True
        try:
            sftp.posix_rename(temp_path, final_path)
            return "posix-rename"
        except OSError as exc:
            if exc.errno == errno.ENOENT:
                raise
            # Refused (EACCES: OpenSSH `-P posix-rename`) or unsupported: plain rename will do.
            state.posix_rename_refused = True
            posix_answer = f"refused: {exc.strerror or exc}"
            log.info("%s: posix-rename %s; using plain rename", where, posix_answer)
    state.rename_sent = True
    try:
        sftp.rename(temp_path, final_path)
        return "rename"
    except OSError as exc:
        if exc.errno in (errno.EACCES, errno.EPERM):
            raise PermanentDeliveryError(
                f"{where}: rename refused by the server: posix-rename ({posix_answer}) and rename "
                f"({exc.strerror or exc}) of {temp_path}: the customer must allow {target.username!r} to rename "
                f"files in {target.directory} (OpenSSH: remove `rename` from sftp-server's -P deny list); "
                "files are only ever delivered by renaming a proven temporary file",
                step="rename",
            ) from None
        if exc.errno == errno.ENOENT:
            raise
        # Plain rename refuses to replace: a re-delivery of the same name. Remove the old file, retry.
        try:
            sftp.stat(final_path)
        except FileNotFoundError:
            raise exc from None
        sftp.remove(final_path)
        sftp.rename(temp_path, final_path)
        return "rename (replaced the earlier file)"


def _remove_stale_temps(
    sftp: SftpClient, where: str, directory: str, reference_mtime: int | None, max_age_s: float, keep: str
) -> tuple[str, ...]:
    """Remove the product's own temporary files in `directory` older than `max_age_s` by the server's
    clock. Never fails the delivery: a refusal is a warning (the file is already delivered)."""
    if reference_mtime is None:
        return ()
    sftp.step = "list"
    try:
        entries = sftp.listdir_attr(directory)
    except PermissionError as exc:
        log.warning(
            "%s: list: listing %s is refused (%s): leftover temporary files cannot be found and removed; "
            "the customer may give this user read (list) access to the directory",
            where,
            directory,
            exc.strerror or exc,
        )
        return ()
    except (OSError, EOFError, paramiko.SSHException) as exc:
        log.warning("%s: list: cannot list %s to remove leftovers (%s)", where, directory, exc)
        return ()
    removed = []
    for entry in entries:
        name = entry.filename
        if name == keep or not OWN_TEMP_FILE.fullmatch(name) or entry.st_mtime is None:
            continue
        if stat.S_ISDIR(entry.st_mode or 0) or entry.st_mtime > reference_mtime - max_age_s:
            continue
        sftp.step = "remove temp"
        try:
            sftp.remove(posixpath.join(directory, name))
        except FileNotFoundError:
            continue  # another delivery removed it first
        except (OSError, EOFError, paramiko.SSHException) as exc:
            log.warning("%s: remove temp: cannot remove the leftover %s (%s)", where, name, exc)
            continue
        log.info("%s: removed the leftover temporary file %s", where, name)
        removed.append(name)
    return tuple(removed)


def _require_directory(sftp: SftpClient, export_id: str, target: SftpTarget) -> None:
    """The configured directory must exist (and be a directory): checked, never created."""
    sftp.step = "stat directory"
    where = _where(export_id, target, target.directory)
    try:
        mode = sftp.stat(target.directory).st_mode
    except FileNotFoundError:
        raise PermanentDeliveryError(
            f"{where}: stat directory: the directory does not exist on {target.address}; it is never created by "
            "the export: ask the customer to create it, or fix `directory` in the export configuration",
            step="stat directory",
        ) from None
    if mode is not None and not stat.S_ISDIR(mode):
        raise PermanentDeliveryError(
            f"{where}: stat directory: exists but is not a directory: fix `directory`", step="stat directory"
        )


def _remove_quietly(sftp: SftpClient, path: str) -> None:
    if not sftp.transport.is_active():
        return
    with contextlib.suppress(Exception):  # cleanup must never hide the real error
        sftp.remove(path)


def _dead_connection(exc: BaseException) -> bool:
    """A stalled or dropped connection: waiting on it again for a cleanup would only stall again."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, (TimeoutError, EOFError)) or "connection dropped" in str(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _file_hash(path: Path, algorithm: str) -> str:
    digest = hashlib.new(algorithm)
    with path.open("rb") as source:
        for block in iter(lambda: source.read(READ_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def _already_delivered(
    sftp: SftpClient,
    features: ServerFeatures,
    state: _Attempts,
    local_path: Path,
    size: int,
    temp_path: str,
    final_path: str,
) -> bool:
    """After an attempt whose rename request went out: is the file under its final name already? Not
    if the temporary file is still there (the rename did not happen), nor with another size or hash."""
    sftp.step = "verify"
    try:
        sftp.stat(temp_path)
    except FileNotFoundError:
        pass
    else:
        return False
    try:
        attributes = sftp.stat(final_path)
    except FileNotFoundError:
        return False
    if attributes.st_size != size:
        return False
    if features.hash_algorithm is not None:
        try:
            used, theirs = _server_hash(sftp, final_path, features.hash_algorithm)
        except (OSError, paramiko.SFTPError):
            return False
        if used not in hashlib.algorithms_available or _file_hash(local_path, used) != theirs:
            return False
        state.verified = f"{used} check-file"
    return True


def deliver_file(
    export_id: str,
    target: SftpTarget,
    local_path: Path,
    file_name: str,
    *,
    timeout: float = 30.0,
    stale_temp_age_s: float = STALE_TEMP_AGE_S,
    read_back: bool = False,
    requests_in_flight: int = REQUESTS_IN_FLIGHT,
) -> SftpReceipt:
    """Upload `local_path` as `target.directory/file_name`, proven and atomically, retrying transient
    failures; remove the product's leftover temporary files there older than `stale_temp_age_s`.

    Raises `PermanentDeliveryError` (fix something, then re-run) or `TransientDeliveryError` (still
    failing after the retries); either has `.step` and `.attempts`.
    """
    remote_path = _remote(export_id, target, file_name)
    temp_path = posixpath.join(target.directory, f".{file_name}.part")
    local_path = Path(local_path)
    where = _where(export_id, target, remote_path)
    try:
        size = local_path.stat().st_size
    except OSError as exc:
        raise PermanentDeliveryError(f"{where}: cannot read the local file {local_path}: {exc}") from None
    credentials = load_credentials(export_id, target)
    state = _Attempts()
    started = time.monotonic()

    def attempt() -> _Uploaded:
        with sftp_session(export_id, target, credentials, timeout=timeout, path=remote_path) as sftp:
            _require_directory(sftp, export_id, target)
            features = server_features(sftp)
            if state.small_writes:
                features = replace(features, write_request=SAFE_WRITE_REQUEST)
            if state.rename_sent and _already_delivered(
                sftp, features, state, local_path, size, temp_path, remote_path
            ):
                log.info("%s: an earlier attempt's rename went through; nothing to redo", where)
                _remove_quietly(sftp, temp_path)
                done = _Uploaded(_Written(0, size, None), state.verified, None, "earlier attempt")
            else:
                try:
                    with local_path.open("rb") as source:
                        done = _upload_verified(
                            sftp,
                            features,
                            where,
                            source,
                            size,
                            temp_path,
                            in_flight=requests_in_flight,
                            read_back=read_back,
                            local_hash=lambda algorithm: _file_hash(local_path, algorithm),
                        )
                    state.verified = done.verified
                    done.rename = _rename(sftp, features, state, where, target, temp_path, remote_path)
                except BaseException as exc:
                    if (
                        sftp.step == "write"
                        and not features.write_request_announced
                        and features.write_request > SAFE_WRITE_REQUEST
                    ):
                        log.warning(
                            "%s: writes of %d KiB failed on %s; the next attempt uses %d KiB",
                            where,
                            features.write_request // 1024,
                            features.software,
                            SAFE_WRITE_REQUEST // 1024,
                        )
                        state.small_writes = True
                    if not _dead_connection(exc):
                        _remove_quietly(sftp, temp_path)
                    raise
            done.removed = _remove_stale_temps(
                sftp, where, target.directory, done.mtime, stale_temp_age_s, keep=f".{file_name}.part"
            )
            return done

    done, attempts = call_with_retries(attempt)
    duration = time.monotonic() - started
    log.info(
        "export %r: delivered %s (%d bytes) to %s in %.2f s, %d attempt(s), verified by %s, %s",
        export_id,
        remote_path,
        size,
        target.address,
        duration,
        attempts,
        done.verified,
        done.rename,
    )
    return SftpReceipt(remote_path, file_name, size, duration, attempts, done.verified, done.removed)


def check_target(
    export_id: str, target: SftpTarget, *, timeout: float = 15.0, report: Callable[[str], None] | None = None
) -> list[str]:
    """Pre-flight, in one attempt, doing what a delivery does: connect, host key, authentication,
    directory, a multi-megabyte pipelined write of a probe, its verification, the rename a delivery
    would use, the probe's removal, and the directory listing the cleanup needs.

    Returns one line per step (each also passed to `report` as it is done), then a line that sums up.
    Raises the same errors as `deliver_file` (with `.step`) where a delivery would fail.
    """
    credentials: Credentials = load_credentials(export_id, target)
    probe = posixpath.join(target.directory, f".beop-probe-{uuid.uuid4().hex}")
    where = _where(export_id, target, probe)
    lines: list[str] = []

    def say(line: str) -> None:
        lines.append(line)
        if report is not None:
            report(line)

    with sftp_session(export_id, target, credentials, timeout=timeout, path=target.directory) as sftp:
        transport = sftp.transport
        key = transport.get_remote_server_key()
        say(f"connect: connected to {target.address} ({transport.remote_version})")
        if target.insecure_skip_host_key_check:
            host_key = f"host key {key.get_name()} {key.fingerprint} NOT verified (insecure_skip_host_key_check)"
        else:
            host_key = f"host key {key.get_name()} {key.fingerprint} matches {target.known_hosts_file}"
        say(f"host key: {host_key}")
        say(f"auth: authenticated as {target.username!r} with the {credentials.source}")
        _require_directory(sftp, export_id, target)
        say(f"stat directory: directory {target.directory} exists")
        features = server_features(sftp)
        data = os.urandom(PROBE_SIZE)
        state = _Attempts()
        try:
            done = _upload_verified(
                sftp,
                features,
                where,
                io.BytesIO(data),
                len(data),
                probe + ".part",
                in_flight=REQUESTS_IN_FLIGHT,
                read_back=False,
                local_hash=lambda algorithm: hashlib.new(algorithm, data).hexdigest(),
            )
            say(
                f"write: {len(data) // 2**20} MiB probe {probe}.part written in {done.written.requests} requests of "
                f"{features.write_request // 1024} KiB, every one acknowledged OK; closed OK"
            )
            say(f"verify: {_describe_verification(done.verified)}")
            rename = _rename(sftp, features, state, where, target, probe + ".part", probe)
            if rename == "posix-rename":
                say("rename: deliveries use posix-rename (an atomic replace; the probe was renamed with it)")
            else:
                why = "is refused by" if state.posix_rename_refused else "is not offered by"
                say(f"rename: posix-rename {why} this server; deliveries use plain rename (the probe was renamed)")
            sftp.step = "remove temp"
            sftp.remove(probe)
            say("remove temp: probe removed")
        except BaseException as exc:
            if not _dead_connection(exc):
                _remove_quietly(sftp, probe + ".part")
                _remove_quietly(sftp, probe)
            raise
        sftp.step = "list"
        try:
            sftp.listdir(target.directory)
            say(f"list: {target.directory} can be listed (leftover temporary files are cleaned up)")
        except PermissionError as exc:
            say(
                f"list: WARNING listing {target.directory} is refused ({exc.strerror or exc}): deliveries work, "
                "but leftover temporary files after a crash cannot be found and removed; give this user read "
                "(list) access to clean them up"
            )
        lines.append(  # the summary: not a step, so not reported as one
            f"a delivery would succeed: {host_key}; {target.directory} writable, verified by {done.verified}, "
            f"renamed with {rename}"
        )
    return lines


def _describe_verification(verified: str) -> str:
    if verified == "acks+size":
        return (
            "the server offers no hash extension: content proven by every write acknowledged OK and the size "
            "(acks+size)"
        )
    return f"the server's hash of the probe matches ({verified})"


def download_file(
    export_id: str, target: SftpTarget, file_name: str, local_path: Path, *, timeout: float = 30.0
) -> int:
    """Read a delivered file back (verification checks, tests); returns its size in bytes."""
    remote_path = _remote(export_id, target, file_name)
    credentials = load_credentials(export_id, target)
    local_path = Path(local_path)

    def attempt() -> int:
        with (
            sftp_session(export_id, target, credentials, timeout=timeout, path=remote_path) as sftp,
            local_path.open("wb") as out,
        ):
            sftp.step = "open"
            return sftp.getfo(remote_path, out)

    return call_with_retries(attempt)[0]


def list_files(export_id: str, target: SftpTarget, *, timeout: float = 30.0) -> list[str]:
    """The names in the export's directory, sorted (temporary `.part` files included, so they can be seen)."""
    credentials = load_credentials(export_id, target)

    def attempt() -> list[str]:
        with sftp_session(export_id, target, credentials, timeout=timeout, path=target.directory) as sftp:
            _require_directory(sftp, export_id, target)
            sftp.step = "list"
            return sorted(sftp.listdir(target.directory))

    return call_with_retries(attempt)[0]
