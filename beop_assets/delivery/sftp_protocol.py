"""SFTP protocol mechanics under a delivery: what a server announced, requests sent back to back and
their replies matched by id, pipelined writes and reads, and the server's hash of a file.

Why it sits on paramiko's request/response layer (`_async_request` / `_read_response`, as paramiko's
own `SFTPFile` does) with reply objects of its own: paramiko's `SFTPFile` drops the acknowledgements
that arrive while a file is being closed and waits for replies in request order, and its synchronous
calls wait one round trip per request. Customers' servers are 20-200 ms away, so every wait counts:
requests that do not depend on each other's answer are sent together (`Pipeline`), and replies are
read in whatever order the server sends them (SFTP v3 allows any).

Nothing here decides what a delivery is (temporary name, proof, rename, leftovers): that is
`delivery.sftp`, written in terms of these pieces. Write sizes and the figures behind them:
docs/sftp-delivery.md and bench/README.md.
"""

from __future__ import annotations

import contextlib
import hashlib
import queue
import struct
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import paramiko
from paramiko.sftp import (
    CMD_ATTRS,
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
    SFTP_FLAG_READ,
    SFTP_OK,
    int64,
)

from beop_assets.delivery.sftp_connection import SftpClient

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

# Hash algorithms of the `check-file` extension, in preference order, with their hashlib names.
CHECK_FILE_ALGORITHMS = ("sha256", "sha512", "sha384", "sha224", "sha1", "md5")


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


class Pipeline:
    """Requests sent back to back without waiting, their replies kept by request id: n independent
    requests cost one round trip, not n. The server processes requests in the order sent (what every
    server here does, and what the drafts require for requests on the same file), so a request may
    depend on the *effect* of an earlier one in the same pipeline, never on its answer."""

    def __init__(self, sftp: SftpClient) -> None:
        self.sftp = sftp
        self._replies: dict[int, tuple[int, paramiko.Message]] = {}

    def send(self, kind: int, *args: object) -> int:
        return self.sftp._async_request(self, kind, *args)

    def _async_response(self, kind: int, msg: paramiko.Message, num: int) -> None:
        self._replies[num] = (kind, msg)

    def reply(self, num: int) -> tuple[int, paramiko.Message]:
        while num not in self._replies:
            self.sftp._read_response()
        return self._replies.pop(num)

    def status(self, num: int) -> None:
        """The reply must be an OK status; any other raises what paramiko raises (ENOENT, EACCES, ...)."""
        kind, msg = self.reply(num)
        if kind != CMD_STATUS:
            raise paramiko.SFTPError(f"expected a status, got reply type {kind}")
        self.sftp._convert_status(msg)

    def handle(self, num: int) -> bytes:
        kind, msg = self.reply(num)
        if kind == CMD_STATUS:
            self.sftp._convert_status(msg)
        if kind != CMD_HANDLE:
            raise paramiko.SFTPError(f"expected a handle, got reply type {kind}")
        return msg.get_binary()

    def attributes(self, num: int) -> paramiko.SFTPAttributes:
        kind, msg = self.reply(num)
        if kind == CMD_STATUS:
            self.sftp._convert_status(msg)
        if kind != CMD_ATTRS:
            raise paramiko.SFTPError(f"expected attributes, got reply type {kind}")
        return paramiko.SFTPAttributes._from_msg(msg)  # type: ignore[attr-defined]  # paramiko's own parser

    def extended(self, num: int) -> paramiko.Message:
        kind, msg = self.reply(num)
        if kind == CMD_STATUS:
            self.sftp._convert_status(msg)
        if kind != CMD_EXTENDED_REPLY:
            raise paramiko.SFTPError(f"unexpected reply type {kind}")
        return msg


def ask_limits(sftp: SftpClient, pipeline: Pipeline) -> int | None:
    """Send the `limits@openssh.com` request where the server lists it (its answer is read by
    `server_features`, so that it travels with the requests that open the file)."""
    return pipeline.send(CMD_EXTENDED, "limits@openssh.com") if "limits@openssh.com" in sftp.extensions else None


def server_features(sftp: SftpClient, pipeline: Pipeline | None = None, limits: int | None = None) -> ServerFeatures:
    """What the server announced (or is known for); `limits` is the id of an `ask_limits` request."""
    ext = sftp.extensions
    software = sftp.transport.remote_version or "unknown server"
    write_request = SAFE_WRITE_REQUEST
    write_request_announced = False
    if "mod_sftp" in software:
        write_request = PROFTPD_WRITE_REQUEST
    if pipeline is None:
        pipeline = Pipeline(sftp)
        limits = ask_limits(sftp, pipeline)
    if limits is not None:
        with contextlib.suppress(OSError, paramiko.SFTPError, struct.error):
            msg = pipeline.extended(limits)
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


def status_name(code: int) -> str:
    return SFTP_DESC[code] if 0 <= code < len(SFTP_DESC) else f"status {code}"


# -- pipelined writes ----------------------------------------------------------------------------------


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
            self.refused.append((offset, length, f"{status_name(code)}: {text}" if text else status_name(code)))


@dataclass(frozen=True)
class Written:
    """What became of one file's WRITE requests."""

    requests: int
    sent: int
    acknowledged: int
    refused: list[tuple[int, int, str]] = field(default_factory=list)  # (offset, length, the server's answer)
    digest: str | None = None  # hex, of the algorithm asked for; None when a write was refused


def open_handle(sftp: SftpClient, path: str, flags: int) -> bytes:
    kind, msg = sftp._request(CMD_OPEN, path, flags, paramiko.SFTPAttributes())
    if kind != CMD_HANDLE:
        raise paramiko.SFTPError(f"expected a handle, got reply type {kind}")
    return msg.get_binary()


def close_handle(sftp: SftpClient, handle: bytes) -> None:
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


class Writes:
    """One file's WRITE requests, about `in_flight` outstanding at once, and what became of each.
    `send` returns once every request is sent, without waiting for the last replies: the caller sends
    the requests that follow (close, stat) behind them and then `settle`s, one round trip for all."""

    def __init__(self, sftp: SftpClient, handle: bytes, request_size: int, in_flight: int, algorithm: str | None):
        self.sftp = sftp
        self.request_size = request_size
        self.in_flight = in_flight
        self.replies = _WriteReplies()
        self.outbox = _Outbox(sftp, self.replies, handle)
        self.digest = _BackgroundHash(algorithm) if algorithm else None
        self.sent = self.requests = 0

    def send(self, source: IO[bytes]) -> None:
        replies, outbox = self.replies, self.outbox
        # Read replies in batches, so that the requests sent next fill whole SSH packets.
        refill = max(1, min(self.in_flight // 2, outbox.flush_at // self.request_size))
        try:
            while not replies.refused:
                data = source.read(self.request_size)
                if not data:
                    break
                if self.digest is not None:
                    self.digest.update(data)
                if len(replies.pending) >= self.in_flight:
                    outbox.flush()
                    while len(replies.pending) > self.in_flight - refill:
                        self.sftp._read_response()  # one reply, handed to its owner by request id
                outbox.add(self.sent, data)
                self.sent += len(data)
                self.requests += 1
            outbox.flush()
        except BaseException:
            self.abandon()
            raise

    def settle(self) -> Written:
        """Wait for every reply; what was acknowledged and refused, and the local hash of what was sent."""
        try:
            while self.replies.pending:
                self.sftp._read_response()
        except BaseException:
            self.abandon()
            raise
        digest = self.digest.hexdigest() if self.digest is not None and not self.replies.refused else None
        if self.replies.refused:
            self.abandon()
        return Written(self.requests, self.sent, self.replies.acknowledged, sorted(self.replies.refused), digest)

    def abandon(self) -> None:
        if self.digest is not None:
            self.digest.abandon()
            self.digest = None


# -- the server's hash, and reading back -----------------------------------------------------------------


def server_hash(sftp: SftpClient, path: str, algorithm: str, handle: bytes | None = None) -> tuple[str, str]:
    """(algorithm used, hex digest) of `path` from the server's check-file-handle extension. `handle`:
    `path` already opened for reading (in an earlier pipeline); it is closed here, in the same round
    trip as the hash is asked for."""
    if handle is None:
        handle = open_handle(sftp, path, SFTP_FLAG_READ)
    pipeline = Pipeline(sftp)
    ask = pipeline.send(CMD_EXTENDED, "check-file-handle", handle, algorithm, int64(0), int64(0), 0)
    close = pipeline.send(CMD_CLOSE, handle)
    try:
        msg = pipeline.extended(ask)
    finally:
        with contextlib.suppress(OSError, paramiko.SFTPError):
            pipeline.status(close)
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
                self.failed.append(f"{status_name(code)}: {text}" if text else status_name(code))
        else:
            self.failed.append(f"unexpected reply type {kind}")


def read_back_hash(
    sftp: SftpClient,
    path: str,
    algorithm: str,
    size: int,
    request_size: int,
    in_flight: int,
    handle: bytes | None = None,
) -> str:
    """Hash of `path` as read back from the server, with pipelined READ requests (paramiko's prefetch
    is several times slower), taken in file order whatever the order of the replies. `handle`: `path`
    already opened for reading."""
    digest = hashlib.new(algorithm)
    if handle is None:
        handle = open_handle(sftp, path, SFTP_FLAG_READ)
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
        close_handle(sftp, handle)
    if replies.failed:
        raise OSError(f"reading {path} back failed: {replies.failed[0]}")  # a server answer, as paramiko gives it
    return digest.hexdigest()


def file_hash(path: Path, algorithm: str) -> str:
    digest = hashlib.new(algorithm)
    with path.open("rb") as source:
        for block in iter(lambda: source.read(READ_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()
