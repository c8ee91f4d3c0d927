"""Delivering a built export file to the customer's SFTP server: whole, proven, once, or not at all.

This is the delivery policy; the protocol mechanics it is written in (pipelined requests and
writes, reply tracking, the hash extension, what a server announced) are `delivery.sftp_protocol`,
and connecting, authenticating and classifying errors `delivery.sftp_connection`. The contract and
its reasons, for operators: docs/sftp-delivery.md.

- The directory must already exist; it is never created. It is not looked at separately: the open
  of the temporary file answers for it, and only when that open fails is the directory examined, to
  say whether it is missing, not a directory, or refused.
- A customer never sees a partial file under a final name: the file is written as
  `.{file_name}.part` in the same directory (hidden, on the same filesystem so the rename is atomic)
  and gets its final name only once it is proven to hold the built bytes: every WRITE acknowledged OK,
  the CLOSE status OK, the size right, and where the server offers a hash extension
  (`check-file-handle`) its hash equal to the local file's (`read_back=True` reads the file back
  instead). The receipt says which (`verified_from`).
- Rename: `posix-rename@openssh.com` where the server lists it, else (or when refused) plain rename;
  a server that refuses every rename fails the delivery at step "rename", saying so.
- Round trips: customers' servers are 20-200 ms away. Requests whose answers do not decide the next
  are sent together: the server's limits, the removal of this delivery's own stale temporary file
  (ProFTPD's default `AllowOverwrite off` refuses to reopen it) and the open go in one round trip;
  the close and the stat of the temporary file follow the last write without waiting for its
  acknowledgement; the rename waits for all of them, since it is what makes the file visible.
- Leftovers: a crashed attempt (kill -9, a dead connection) leaves its `.part` file behind. The
  caller names those of earlier attempts (the ledger records every attempt's temporary name), and
  they are removed once this delivery has succeeded; a missing one is no error. The directory is
  never listed, so a delivery costs the same whatever the folder already holds, and a temporary file
  that no caller names (another delivery under way) is never touched.
- Network trouble and refused writes are retried (`RetryPolicy`); what retrying cannot fix fails at
  once. If an earlier attempt's rename went through but its reply was lost, the file already under
  its final name (right size, and hash where the server offers one) counts as delivered.
- Errors name the step (`DeliveryError.step`): connect, host key, auth, stat directory, remove temp,
  open, write, close, verify, rename, list.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import logging
import os
import posixpath
import re
import stat
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO

import paramiko
from paramiko.sftp import (
    CMD_CLOSE,
    CMD_OPEN,
    CMD_REMOVE,
    CMD_STAT,
    SFTP_FLAG_CREATE,
    SFTP_FLAG_READ,
    SFTP_FLAG_TRUNC,
    SFTP_FLAG_WRITE,
)

from beop_assets.delivery.errors import PermanentDeliveryError, TransientDeliveryError
from beop_assets.delivery.retry import RetryPolicy
from beop_assets.delivery.sftp_connection import (
    Credentials,
    SessionPool,
    SftpClient,
    load_credentials,
    sftp_session,
)
from beop_assets.delivery.sftp_protocol import (
    REQUESTS_IN_FLIGHT,
    SAFE_WRITE_REQUEST,
    Pipeline,
    ServerFeatures,
    Writes,
    Written,
    ask_limits,
    file_hash,
    read_back_hash,
    server_features,
    server_hash,
)
from beop_assets.delivery.sftp_target import SftpTarget
from beop_assets.delivery.transport import Receipt

log = logging.getLogger(__name__)

PROBE_SIZE = 4 * 2**20
# What a caller may name as a leftover: a hidden `.part` file in the export's directory, nothing else.
TEMP_NAME = re.compile(r"\.[^/]+\.part")


def temp_name(file_name: str) -> str:
    """The hidden temporary name `file_name` is written under, in the same directory."""
    return f".{file_name}.part"


@dataclass(frozen=True)
class SftpOptions:
    """How SFTP deliveries are made: `read_back` proves content by reading the temporary file back
    (a second transfer) on servers without a hash extension; `retry` is the retry policy; `timeout`
    bounds every blocking step (seconds); `requests_in_flight` the WRITE requests outstanding;
    `sessions` keeps sessions open between deliveries (a batched run's; None: one session per call)."""

    read_back: bool = False
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    timeout: float = 30.0
    check_timeout: float = 15.0
    requests_in_flight: int = REQUESTS_IN_FLIGHT
    sessions: SessionPool | None = None


def _where(export_id: str, target: SftpTarget, path: str) -> str:
    return f"export {export_id!r}: SFTP {target.username}@{target.address} {path}"


def _remote(export_id: str, target: SftpTarget, file_name: str) -> str:
    if not file_name or "/" in file_name or file_name in (".", ".."):
        where = _where(export_id, target, target.directory)
        raise PermanentDeliveryError(f"{where}: invalid file name {file_name!r}")
    return posixpath.join(target.directory, file_name)


@dataclass
class _Attempts:
    """What one delivery's attempts learn from each other."""

    posix_rename_refused: bool = False
    small_writes: bool = False  # a write of an unannounced size failed: 32 KiB requests from now on
    rename_sent: bool = False  # a rename request went out: the file may already be under its final name
    verified: str = ""


@dataclass
class _Uploaded:
    written: Written
    verified: str
    rename: str = ""


@dataclass(frozen=True)
class _Upload:
    """One file to put under `temp_path`, as a delivery or as the check's probe."""

    where: str
    source: IO[bytes]
    size: int
    temp_path: str
    in_flight: int
    read_back: bool
    local_hash: Callable[[str], str]


def _open_temp(
    sftp: SftpClient, export_id: str, target: SftpTarget, upload: _Upload, small_writes: bool
) -> tuple[ServerFeatures, bytes]:
    """One round trip: the server's limits, the removal of a stale temporary file of this name, and
    the open. A failed open has the directory examined, to say what is wrong with it."""
    pipeline = Pipeline(sftp)
    limits = ask_limits(sftp, pipeline)
    removal = pipeline.send(CMD_REMOVE, upload.temp_path)
    flags = SFTP_FLAG_WRITE | SFTP_FLAG_CREATE | SFTP_FLAG_TRUNC
    opening = pipeline.send(CMD_OPEN, upload.temp_path, flags, paramiko.SFTPAttributes())
    sftp.step = "open"
    features = server_features(sftp, pipeline, limits)
    if small_writes:
        features = replace(features, write_request=SAFE_WRITE_REQUEST)
    sftp.step = "remove temp"
    try:
        pipeline.status(removal)
        log.info("%s: removed the stale temporary file %s of an earlier attempt", upload.where, upload.temp_path)
    except OSError as exc:  # not there (the usual case), or not ours to remove: the open will tell
        if exc.errno is not None and exc.errno not in (errno.ENOENT, errno.EACCES, errno.EPERM):
            raise
    sftp.step = "open"
    try:
        return features, pipeline.handle(opening)
    except OSError:
        _require_directory(sftp, export_id, target)
        sftp.step = "open"
        raise


def _write_and_close(
    sftp: SftpClient, handle: bytes, upload: _Upload, features: ServerFeatures, algorithm: str | None
) -> tuple[Written, paramiko.SFTPAttributes, bytes | None]:
    """The writes, then close, stat (and the open for reading a proof needs) sent behind them: one wait
    for all. Returns what was written, the temporary file's attributes, and the read handle if asked."""
    writes = Writes(sftp, handle, features.write_request, upload.in_flight, algorithm)
    try:
        sftp.step = "write"
        writes.send(upload.source)
    except BaseException as exc:
        if not _dead_connection(exc):  # on a stalled connection, closing would only wait again
            with contextlib.suppress(Exception):
                Pipeline(sftp).status(Pipeline(sftp).send(CMD_CLOSE, handle))
        raise
    pipeline = Pipeline(sftp)
    closing = pipeline.send(CMD_CLOSE, handle)
    stating = pipeline.send(CMD_STAT, upload.temp_path)
    needs_read = upload.read_back or features.hash_algorithm is not None
    reading = (
        pipeline.send(CMD_OPEN, upload.temp_path, SFTP_FLAG_READ, paramiko.SFTPAttributes()) if needs_read else None
    )
    written = writes.settle()
    if written.refused:
        first, length, answer = written.refused[0]
        more = f" (and {len(written.refused) - 1} more refused)" if len(written.refused) > 1 else ""
        raise TransientDeliveryError(
            f"{upload.where}: write: the server refused the write of bytes {first}-{first + length - 1} of "
            f"{upload.temp_path} ({answer}){more}; the file was not given its final name",
            step="write",
        )
    if written.acknowledged != written.sent:
        raise TransientDeliveryError(
            f"{upload.where}: write: {written.acknowledged} of {written.sent} bytes acknowledged for "
            f"{upload.temp_path}",
            step="write",
        )
    sftp.step = "close"
    pipeline.status(closing)
    sftp.step = "verify"
    attributes = pipeline.attributes(stating)
    read_handle = pipeline.handle(reading) if reading is not None else None
    return written, attributes, read_handle


def _prove(
    sftp: SftpClient,
    upload: _Upload,
    features: ServerFeatures,
    written: Written,
    attributes: paramiko.SFTPAttributes,
    read_handle: bytes | None,
) -> str:
    """How the temporary file is proven to hold the built bytes; raises at step "verify" if it does not."""
    sftp.step = "verify"
    where, temp_path, size = upload.where, upload.temp_path, upload.size
    if attributes.st_size != size or written.acknowledged != size:
        raise TransientDeliveryError(
            f"{where}: verify: {temp_path} holds {attributes.st_size} of {size} bytes "
            f"({written.acknowledged} acknowledged)",
            step="verify",
        )
    if upload.read_back:
        theirs = read_back_hash(
            sftp, temp_path, "sha256", size, features.write_request, upload.in_flight, handle=read_handle
        )
        if theirs != written.digest:
            raise TransientDeliveryError(
                f"{where}: verify: the bytes read back from {temp_path} differ from the file built "
                f"(sha256 {theirs} != {written.digest})",
                step="verify",
            )
        return "read-back"
    if features.hash_algorithm is None or written.digest is None:
        return "acks+size"
    try:
        used, theirs = server_hash(sftp, temp_path, features.hash_algorithm, handle=read_handle)
    except (OSError, paramiko.SFTPError) as exc:
        if isinstance(exc, OSError) and exc.errno in (errno.ENOENT,):
            raise
        log.log(
            logging.WARNING if features.hash_announced else logging.INFO,
            "%s: no hash from the server's check-file-handle (%s); verified by acknowledgements and size",
            where,
            exc,
        )
        return "acks+size"
    ours = written.digest if used == features.hash_algorithm else None
    if ours is None and used in hashlib.algorithms_available:
        ours = upload.local_hash(used)
    if ours is None:
        log.warning("%s: the server hashed with %s, which cannot be compared here", where, used)
        return "acks+size"
    if ours != theirs:
        raise TransientDeliveryError(
            f"{where}: verify: the server's {used} of {temp_path} ({theirs}) differs from the file built ({ours})",
            step="verify",
        )
    return f"{used} check-file"


def _upload_verified(
    sftp: SftpClient, export_id: str, target: SftpTarget, upload: _Upload, state: _Attempts
) -> tuple[ServerFeatures, _Uploaded]:
    """open -> write -> close -> verify. Leaves a proven temporary file, or raises."""
    features, handle = _open_temp(sftp, export_id, target, upload, state.small_writes)
    algorithm = "sha256" if upload.read_back else features.hash_algorithm
    try:
        written, attributes, read_handle = _write_and_close(sftp, handle, upload, features, algorithm)
    except BaseException:
        if (
            sftp.step == "write"
            and not features.write_request_announced
            and features.write_request > SAFE_WRITE_REQUEST
        ):
            log.warning(
                "%s: writes of %d KiB failed on %s; the next attempt uses %d KiB",
                upload.where,
                features.write_request // 1024,
                features.software,
                SAFE_WRITE_REQUEST // 1024,
            )
            state.small_writes = True
        raise
    return features, _Uploaded(written, _prove(sftp, upload, features, written, attributes, read_handle))


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


def _already_delivered(
    sftp: SftpClient,
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
    features = server_features(sftp)
    if features.hash_algorithm is not None:
        try:
            used, theirs = server_hash(sftp, final_path, features.hash_algorithm)
        except (OSError, paramiko.SFTPError):
            return False
        if used not in hashlib.algorithms_available or file_hash(local_path, used) != theirs:
            return False
        state.verified = f"{used} check-file"
    return True


def _remove_leftovers(sftp: SftpClient, where: str, directory: str, names: Iterable[str]) -> tuple[str, ...]:
    """Remove the earlier attempts' temporary files the caller named, in one round trip. Never fails
    the delivery (it is done): a missing file is no error, a refusal a warning."""
    wanted = []
    for name in dict.fromkeys(names):
        if TEMP_NAME.fullmatch(name):
            wanted.append(name)
        else:
            log.warning("%s: remove temp: %r is not a temporary file's name; left alone", where, name)
    if not wanted:
        return ()
    sftp.step = "remove temp"
    pipeline = Pipeline(sftp)
    sent = [(name, pipeline.send(CMD_REMOVE, posixpath.join(directory, name))) for name in wanted]
    removed = []
    for name, num in sent:
        try:
            pipeline.status(num)
        except FileNotFoundError:
            continue  # already gone (removed by hand, or by another delivery)
        except (OSError, EOFError, paramiko.SSHException) as exc:
            log.warning("%s: remove temp: cannot remove the leftover %s (%s)", where, name, exc)
            continue
        log.info("%s: removed the leftover temporary file %s", where, name)
        removed.append(name)
    return tuple(removed)


class SftpTransport:
    """One export's SFTP destination (`Transport`)."""

    def __init__(self, export_id: str, target: SftpTarget, options: SftpOptions | None = None) -> None:
        self.export_id = export_id
        self.target = target
        self.options = options or SftpOptions()

    def destination(self) -> str:
        return f"sftp://{self.target.username}@{self.target.address}{self.target.directory}"

    def temp_name(self, file_name: str) -> str:
        return temp_name(file_name)

    def _session(self, credentials: Credentials, path: str):
        return sftp_session(
            self.export_id,
            self.target,
            credentials,
            timeout=self.options.timeout,
            path=path,
            pool=self.options.sessions,
        )

    def deliver(self, built_path: Path, file_name: str, *, leftovers: Iterable[str] = ()) -> Receipt:
        """Upload `built_path` as `directory/file_name`, proven and atomically, retrying transient
        failures; then remove the `leftovers` (earlier attempts' temporary names) that are there.

        Raises `PermanentDeliveryError` (fix something, then re-run) or `TransientDeliveryError` (still
        failing after the retries); either has `.step` and `.attempts`.
        """
        export_id, target = self.export_id, self.target
        remote_path = _remote(export_id, target, file_name)
        temp_path = posixpath.join(target.directory, temp_name(file_name))
        local_path = Path(built_path)
        where = _where(export_id, target, remote_path)
        try:
            size = local_path.stat().st_size
        except OSError as exc:
            raise PermanentDeliveryError(f"{where}: cannot read the local file {local_path}: {exc}") from None
        credentials = load_credentials(export_id, target)
        others = [name for name in leftovers if name != temp_name(file_name)]
        state = _Attempts()
        started = time.monotonic()

        def attempt() -> tuple[_Uploaded, tuple[str, ...]]:
            with self._session(credentials, remote_path) as sftp, local_path.open("rb") as source:
                upload = _Upload(
                    where,
                    source,
                    size,
                    temp_path,
                    self.options.requests_in_flight,
                    self.options.read_back,
                    lambda algorithm: file_hash(local_path, algorithm),
                )
                done = self._attempt(sftp, upload, state, local_path, remote_path)
                return done, _remove_leftovers(sftp, where, target.directory, others)

        (done, removed), attempts = self.options.retry.call(attempt)
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
        return Receipt(
            destination=f"sftp://{target.username}@{target.address}{remote_path}",
            file_name=file_name,
            bytes=size,
            attempts=attempts,
            duration_s=duration,
            verified_from=done.verified,
            temp_name=temp_name(file_name),
            leftovers_removed=removed,
            facts={"remote_path": remote_path, "host": target.address, "rename": done.rename},
        )

    def _attempt(
        self, sftp: SftpClient, upload: _Upload, state: _Attempts, local_path: Path, remote_path: str
    ) -> _Uploaded:
        if state.rename_sent and _already_delivered(
            sftp, state, local_path, upload.size, upload.temp_path, remote_path
        ):
            log.info("%s: an earlier attempt's rename went through; nothing to redo", upload.where)
            _remove_quietly(sftp, upload.temp_path)
            return _Uploaded(Written(0, upload.size, upload.size), state.verified, "earlier attempt")
        try:
            features, done = _upload_verified(sftp, self.export_id, self.target, upload, state)
            state.verified = done.verified
            done.rename = _rename(sftp, features, state, upload.where, self.target, upload.temp_path, remote_path)
        except BaseException as exc:
            if not _dead_connection(exc):
                _remove_quietly(sftp, upload.temp_path)
            raise
        return done

    def download(self, file_name: str, local_path: Path) -> int:
        """Read a delivered file back (verification checks, tests); returns its size in bytes."""
        remote_path = _remote(self.export_id, self.target, file_name)
        credentials = load_credentials(self.export_id, self.target)
        local_path = Path(local_path)

        def attempt() -> int:
            with self._session(credentials, remote_path) as sftp, local_path.open("wb") as out:
                sftp.step = "open"
                return sftp.getfo(remote_path, out)

        return self.options.retry.call(attempt)[0]

    def list_files(self) -> list[str]:
        """The names in the export's directory, sorted (temporary `.part` files included, so they can be seen)."""
        credentials = load_credentials(self.export_id, self.target)

        def attempt() -> list[str]:
            with self._session(credentials, self.target.directory) as sftp:
                _require_directory(sftp, self.export_id, self.target)
                sftp.step = "list"
                return sorted(sftp.listdir(self.target.directory))

        return self.options.retry.call(attempt)[0]

    def check(self, echo: Callable[[str], None] | None = None) -> list[str]:
        """Pre-flight, in one attempt, doing what a delivery does: connect, host key, authentication,
        directory, a multi-megabyte pipelined write of a probe, its verification, the rename a delivery
        would use, and the probe's removal.

        Returns one line per step (each also passed to `echo` as it is done), then a line that sums up.
        Raises the same errors as `deliver` (with `.step`) where a delivery would fail.
        """
        export_id, target = self.export_id, self.target
        credentials = load_credentials(export_id, target)
        probe = posixpath.join(target.directory, f".beop-probe-{uuid.uuid4().hex}")
        where = _where(export_id, target, probe)
        lines: list[str] = []

        def say(line: str) -> None:
            lines.append(line)
            if echo is not None:
                echo(line)

        # Its own session, never a pooled one: the pre-flight proves that a login works.
        with sftp_session(
            export_id, target, credentials, timeout=self.options.check_timeout, path=target.directory
        ) as sftp:
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
            data = os.urandom(PROBE_SIZE)
            upload = _Upload(
                where,
                io.BytesIO(data),
                len(data),
                probe + ".part",
                REQUESTS_IN_FLIGHT,
                False,
                lambda algorithm: hashlib.new(algorithm, data).hexdigest(),
            )
            state = _Attempts()
            try:
                features, done = _upload_verified(sftp, export_id, target, upload, state)
                say(
                    f"write: {len(data) // 2**20} MiB probe {probe}.part written in {done.written.requests} "
                    f"requests of {features.write_request // 1024} KiB, every one acknowledged OK; closed OK"
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
