"""Opening an authenticated, host-key-verified, time-bounded SFTP session with paramiko, and turning
whatever paramiko or the socket raises into a `DeliveryError` an operator can act on.

Why it is separate from `sftp.py`: this is the part where security and hangs are decided, and it
reads better on its own.

- Credentials are read from where the export configuration points (an environment variable or a
  key file), once per delivery, and never appear in a message: messages only name where they came from.
- Host keys are checked against the export's known_hosts file with a rejecting policy; the opt-out
  (`insecure_skip_host_key_check`) accepts any key and says so in the log every time.
- Every blocking step has a bound: TCP connect, SSH banner, key exchange, authentication, channel
  open, and every SFTP request (the channel timeout), so a server that accepts and then stalls fails
  the attempt instead of hanging the run.
- Throughput: a large window and AES-GCM first; uploads are pipelined on top of this (sftp.py).
- Every failure names the step it happened in (`DeliveryError.step`): "connect", "host key" and
  "auth" are decided here; the session object carries the step the caller is in (`client.step`), so
  that a timeout or a dropped connection in the middle of an upload says "write", not "connect".
- paramiko reads the server's SFTP version packet but throws its extension list away; the client
  here keeps it (`client.extensions`), because which rename, which hash check and which write size
  a server offers is announced there.
"""

from __future__ import annotations

import errno
import io
import logging
import os
import socket
import struct
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import paramiko
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from beop_assets.delivery.errors import DeliveryError, PermanentDeliveryError, TransientDeliveryError
from beop_assets.delivery.secrets import mask, secret_values
from beop_assets.delivery.sftp_target import SftpTarget

log = logging.getLogger(__name__)

WINDOW_SIZE = 128 * 2**20
FAST_CIPHERS = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com")
SFTP_VERSION = 3


class SftpClient(paramiko.SFTPClient):
    """paramiko's SFTP client, plus what the server announced (`extensions`: name -> data) and the
    step of the delivery it is being used for (`step`, read when a failure is translated)."""

    extensions: dict[str, bytes]
    step: str

    if TYPE_CHECKING:
        # paramiko's request layer, used directly by the pipelined writer and reader (sftp.py);
        # its type stubs leave these private members out.
        _lock: threading.Lock
        _expecting: dict[int, Any]

        def _request(self, t: int, *args: Any) -> tuple[int, paramiko.Message]: ...
        def _async_request(self, fileobj: Any, t: int, *args: Any) -> int: ...
        def _read_response(self, waitfor: int | None = None) -> tuple[int | None, paramiko.Message | None]: ...
        def _send_packet(self, t: int, packet: paramiko.Message) -> None: ...
        def _read_packet(self) -> tuple[int, bytes]: ...
        def _convert_status(self, msg: paramiko.Message) -> None: ...

    def __init__(self, sock: paramiko.Channel) -> None:
        self.extensions = {}
        self.step = "connect"
        super().__init__(sock)

    @property
    def channel(self) -> paramiko.Channel:
        """The session's channel (always set once the client is built)."""
        channel = self.get_channel()
        if channel is None:
            raise EOFError("the SFTP channel is closed")
        return channel

    @property
    def transport(self) -> paramiko.Transport:
        return self.channel.get_transport()

    def _send_version(self) -> int:
        init = paramiko.Message()
        init.add_int(SFTP_VERSION)
        self._send_packet(paramiko.sftp.CMD_INIT, init)
        kind, data = self._read_packet()
        if kind != paramiko.sftp.CMD_VERSION:
            raise paramiko.SFTPError("Incompatible sftp protocol")
        (version,) = struct.unpack(">I", data[:4])
        self.extensions = _extension_pairs(data[4:])
        return version


def _extension_pairs(data: bytes) -> dict[str, bytes]:
    """The (name, data) string pairs after the version number of SSH_FXP_VERSION."""
    found: dict[str, bytes] = {}
    at = 0
    strings: list[bytes] = []
    while at + 4 <= len(data):
        (length,) = struct.unpack(">I", data[at : at + 4])
        if at + 4 + length > len(data):
            break  # a malformed tail: keep what was well formed
        strings.append(data[at + 4 : at + 4 + length])
        at += 4 + length
    for name, value in zip(strings[::2], strings[1::2], strict=False):
        found[name.decode("utf-8", "replace")] = value
    return found


@dataclass(frozen=True)
class Credentials:
    """What to authenticate with, where it came from (for messages), and the strings never to print."""

    source: str
    password: str | None = None
    pkey: paramiko.PKey | None = None
    secrets: tuple[str, ...] = ()


class UnknownHostKey(paramiko.SSHException):
    """The server is not listed in the export's known_hosts file."""


class _RejectUnknownHost(paramiko.RejectPolicy):
    def missing_host_key(self, client, hostname, key):
        offered = f"{key.get_name()} {key.fingerprint}"
        raise UnknownHostKey(f"{hostname} is not in known_hosts (it offers {offered})")


def _env(export_id: str, target: SftpTarget, name: str, what: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise PermanentDeliveryError(
            f"export {export_id!r}: SFTP {target.address}: auth: the {what} is read from the environment variable "
            f"{name}, which is not set (or empty) in this process: set it where the runs execute",
            step="auth",
        )
    return value


def _key_from_text(text: str, passphrase: str | None) -> paramiko.PKey:
    """Like `PKey.from_path` (which wants the passphrase as bytes here, and a file), for key text."""
    if "\\n" in text and "\n" not in text.strip():
        text = text.replace("\\n", "\n")  # a key pasted into a one-line variable
    password = passphrase.encode() if passphrase else None
    loaded: object
    try:
        loaded = serialization.load_ssh_private_key(text.encode(), password=password)
    except ValueError:
        loaded = serialization.load_pem_private_key(text.encode(), password=password)
    classes: dict[type, type[paramiko.PKey]] = {
        rsa.RSAPrivateKey: paramiko.RSAKey,
        ed25519.Ed25519PrivateKey: paramiko.Ed25519Key,
        ec.EllipticCurvePrivateKey: paramiko.ECDSAKey,
    }
    for kind, key_class in classes.items():
        if isinstance(loaded, kind):
            return key_class.from_private_key(io.StringIO(text), password=passphrase)
    raise ValueError(f"unsupported key type {type(loaded).__name__} (use ed25519, RSA or ECDSA)")


def load_credentials(export_id: str, target: SftpTarget) -> Credentials:
    """Read the password or private key the export points to. Faults here are permanent. The strings
    never to print are whatever the target's declared credential fields point at (`secrets`)."""
    declared = tuple(secret_values(target))
    if target.password_env:
        password = _env(export_id, target, target.password_env, "password")
        return Credentials(f"password from ${target.password_env}", password=password, secrets=(password, *declared))
    passphrase = None
    if target.private_key_passphrase_env:
        passphrase = _env(export_id, target, target.private_key_passphrase_env, "key passphrase")
    text: str | None = None
    if target.private_key_file:
        source = f"private key file {target.private_key_file}"
    else:
        source = f"private key from ${target.private_key_env}"
        text = _env(export_id, target, target.private_key_env or "", "private key")
    secrets = (*(s for s in (passphrase, text) if s), *declared)
    try:
        pkey = _key_from_text(text or Path(target.private_key_file or "").read_text(), passphrase)
    except (OSError, ValueError, TypeError, paramiko.SSHException, paramiko.pkey.UnknownKeyType) as exc:
        detail = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc) or type(exc).__name__
        raise PermanentDeliveryError(
            mask(
                f"export {export_id!r}: SFTP {target.address}: auth: cannot load the {source}: {detail}; check the "
                "key (ed25519, RSA or ECDSA, OpenSSH or PEM format), that it is readable, and its passphrase",
                secrets,
            ),
            step="auth",
        ) from None
    return Credentials(source, pkey=pkey, secrets=secrets)


def _transport_factory(timeout: float):
    def make(sock, **kwargs) -> paramiko.Transport:
        transport = paramiko.Transport(sock, default_window_size=WINDOW_SIZE, **kwargs)
        # `connect(timeout=)` already bounds the key exchange; this backstop fires later, because it
        # reports a plain EOFError that would read as "the server closed the connection".
        transport.handshake_timeout = 2 * timeout
        transport.clear_to_send_timeout = timeout
        options = transport.get_security_options()
        fast = [c for c in FAST_CIPHERS if c in options.ciphers]
        options.ciphers = tuple(fast + [c for c in options.ciphers if c not in fast])
        return transport

    return make


def _client(export_id: str, target: SftpTarget) -> paramiko.SSHClient:
    client = paramiko.SSHClient()
    if target.insecure_skip_host_key_check:
        log.warning(
            "export %r: the host key of %s is NOT verified (insecure_skip_host_key_check: true)",
            export_id,
            target.address,
        )
        client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
        return client
    try:
        client.get_host_keys().load(str(target.known_hosts_file))
    except OSError as exc:
        raise PermanentDeliveryError(
            f"export {export_id!r}: SFTP {target.address}: host key: cannot read known_hosts_file "
            f"{target.known_hosts_file}: {exc.strerror or exc}; create it with the server's host key",
            step="host key",
        ) from None
    client.set_missing_host_key_policy(_RejectUnknownHost())
    return client


class SessionPool:
    """SFTP sessions kept open between the deliveries of one batched run, so that a run of hundreds of
    exports to one server logs in a few times, not twice per export (an upload and its read-back).

    A session is shared only by deliveries that would have opened the very same one: same host, port,
    user, host-key policy, timeout and the same secret (password, or private key: compared by its public
    half, which the private key determines). An export whose own credentials are wrong never rides on
    another export's login. A session goes back to the pool only after a body that ended without an
    error; a session that failed, died or sat idle longer than `idle_s` is closed, never handed out.
    `opened` and `reused` count the sessions, for the run's log."""

    def __init__(self, idle_s: float = 30.0) -> None:
        self.idle_s = idle_s
        self.opened = 0
        self.reused = 0
        self._idle: dict[tuple, list[tuple[float, paramiko.SSHClient, SftpClient]]] = {}
        self._lock = threading.Lock()
        self._closed = False

    @staticmethod
    def identity(target: SftpTarget, credentials: Credentials, timeout: float) -> tuple:
        secret: object = credentials.password
        if credentials.pkey is not None:
            secret = credentials.pkey.asbytes()
        policy = (target.known_hosts_file, target.insecure_skip_host_key_check)
        return (target.host, target.port, target.username, policy, timeout, secret)

    def take(self, identity: tuple) -> tuple[paramiko.SSHClient, SftpClient] | None:
        """An open, live session of that identity, or None (then the caller connects)."""
        stale: list[paramiko.SSHClient] = []
        found = None
        with self._lock:
            idle = self._idle.get(identity, [])
            while idle:
                since, client, sftp = idle.pop()
                transport = client.get_transport()
                alive = transport is not None and transport.is_active() and not sftp.channel.closed
                if alive and time.monotonic() - since <= self.idle_s:
                    self.reused += 1
                    found = (client, sftp)
                    break
                stale.append(client)
        for client in stale:
            client.close()
        return found

    def count_opened(self) -> None:
        """A session of this pool's deliveries was opened (not taken from the pool); threads count together."""
        with self._lock:
            self.opened += 1

    def give(self, identity: tuple, client: paramiko.SSHClient, sftp: SftpClient) -> None:
        with self._lock:
            if not self._closed:
                self._idle.setdefault(identity, []).append((time.monotonic(), client, sftp))
                return
        client.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, {}
        for sessions in idle.values():
            for _, client, _ in sessions:
                client.close()

    def __enter__(self) -> SessionPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


@contextmanager
def sftp_session(
    export_id: str,
    target: SftpTarget,
    credentials: Credentials,
    *,
    timeout: float,
    path: str,
    pool: SessionPool | None = None,
) -> Iterator[SftpClient]:
    """An SFTP session for the body of the `with`; any failure inside it (connecting or in the body)
    comes out as a `DeliveryError` about `path`, naming the step the client was in (`client.step`,
    which the body moves forward). The transport is closed afterwards, unless a `pool` keeps it for the
    next body of the same identity (and only if this body ended without an error)."""
    identity = SessionPool.identity(target, credentials, timeout) if pool is not None else ()
    leased = pool.take(identity) if pool is not None else None
    client = leased[0] if leased else _client(export_id, target)
    sftp: SftpClient | None = leased[1] if leased else None
    keep = False
    try:
        if sftp is None:
            sftp = _open(client, target, credentials, timeout)
            if pool is not None:
                pool.count_opened()
        sftp.step = "connect"
        yield sftp
        keep = pool is not None
    except DeliveryError:
        raise
    except Exception as exc:
        step = sftp.step if sftp is not None else "connect"
        raise translate(exc, export_id, target, credentials, path=path, timeout=timeout, step=step) from exc
    finally:
        if keep and pool is not None and sftp is not None:
            pool.give(identity, client, sftp)
        else:
            client.close()


def _open(client: paramiko.SSHClient, target: SftpTarget, credentials: Credentials, timeout: float) -> SftpClient:
    client.connect(
        target.host,
        target.port,
        username=target.username,
        password=credentials.password,
        pkey=credentials.pkey,
        allow_agent=False,
        look_for_keys=False,
        timeout=timeout,
        banner_timeout=timeout,
        auth_timeout=timeout,
        channel_timeout=timeout,
        transport_factory=_transport_factory(timeout),
    )
    # Open the channel ourselves (not `open_sftp()`), so that the SFTP version exchange is bounded too.
    transport = client.get_transport()
    if transport is None:
        raise EOFError("no SSH transport after connecting")
    channel = transport.open_session(window_size=WINDOW_SIZE, timeout=timeout)
    channel.settimeout(timeout)
    channel.invoke_subsystem("sftp")
    return SftpClient(channel)


def _denied(step: str, target: SftpTarget, text: str) -> str:
    """What to fix when the server said "permission denied": it depends on what was refused."""
    user = target.username
    if step == "stat directory":
        return (
            f"stat directory: permission denied reading {target.directory} as {user!r} ({text}): "
            "the customer must give this user access to it"
        )
    if step == "list":
        return (
            f"list: listing {target.directory} is refused for {user!r} ({text}): the user may write there but "
            "not read the directory; the customer must give it read (list) access to it"
        )
    if step == "rename":
        return (
            f"rename refused by the server ({text}): the customer must allow {user!r} to rename files "
            f"in {target.directory}"
        )
    return (
        f"{step}: permission denied for {user!r} ({text}): the customer must give this user write access "
        f"to {target.directory}"
    )


def translate(
    exc: BaseException,
    export_id: str,
    target: SftpTarget,
    credentials: Credentials,
    *,
    path: str,
    timeout: float,
    step: str = "connect",
) -> DeliveryError:
    """Classify a failure: permanent (fix the configuration or the server) or transient (retry), and
    name its step ("host key" and "auth" are recognized here; others are the caller's `step`)."""
    where = f"export {export_id!r}: SFTP {target.username}@{target.address} {path}"
    text = str(exc)
    detail = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    # paramiko wraps a banner read timeout in an SSHException, and when the key exchange does not
    # finish in time, `connect` only finds "No existing session": both mean the server stalled.
    timed_out = (
        any(isinstance(e, TimeoutError) for e in (exc, exc.__context__, exc.__cause__))
        or "timeout" in text.lower()
        or "timed out" in text
        or text == "No existing session"
    )
    error: DeliveryError
    if isinstance(exc, paramiko.BadHostKeyException):
        step = "host key"
        error = PermanentDeliveryError(
            f"{where}: host key: the server's host key ({exc.key.get_name()} {exc.key.fingerprint}) does not "
            f"match known_hosts_file {target.known_hosts_file}: the key changed or this is another server; "
            "confirm the new key with the customer before updating the file"
        )
    elif isinstance(exc, UnknownHostKey):
        step = "host key"
        error = PermanentDeliveryError(
            f"{where}: host key: {text} ({target.known_hosts_file}): add the server's key, checked with the "
            f"customer (ssh-keyscan -p {target.port} {target.host})"
        )
    elif isinstance(exc, paramiko.AuthenticationException) and not timed_out:
        step = "auth"
        error = PermanentDeliveryError(
            f"{where}: auth: authentication as {target.username!r} failed ({credentials.source}): "
            f"check the username and the credential ({text})"
        )
    elif timed_out:
        error = TransientDeliveryError(
            f"{where}: {step}: no answer from the server within {timeout:g} s ({detail}); "
            "it accepted the connection but stalled, or the network is slow"
        )
    elif isinstance(exc, (ConnectionRefusedError, paramiko.ssh_exception.NoValidConnectionsError)):
        error = TransientDeliveryError(f"{where}: {step}: connection refused: is a server up on port {target.port}?")
    elif isinstance(exc, socket.gaierror):
        error = TransientDeliveryError(f"{where}: {step}: cannot resolve {target.host!r} ({text}): check the host")
    elif isinstance(exc, OSError) and exc.errno == errno.ENOENT:
        error = PermanentDeliveryError(f"{where}: {step}: no such file or directory on the server ({text})")
    elif isinstance(exc, OSError) and exc.errno in (errno.EACCES, errno.EPERM):
        error = PermanentDeliveryError(f"{where}: {_denied(step, target, exc.strerror or text)}")
    elif isinstance(exc, EOFError) or "connection dropped" in text:
        error = TransientDeliveryError(f"{where}: {step}: the server closed the connection ({detail})")
    elif isinstance(exc, OSError) and exc.errno is None and text:
        # An SFTP status other than "no such file" or "permission denied" (paramiko gives its text only):
        # a server-side failure such as a full disk; worth another attempt.
        error = TransientDeliveryError(f"{where}: {step}: the server answered {text!r}")
    elif isinstance(exc, (OSError, paramiko.SSHException)):
        error = TransientDeliveryError(f"{where}: {step}: the connection or the transfer failed ({detail})")
    else:
        error = DeliveryError(f"{where}: {step}: unexpected {detail}")
    error.step = step
    error.args = (mask(error.args[0], credentials.secrets),)
    return error
