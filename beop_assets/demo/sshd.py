"""A throwaway, real OpenSSH sshd on 127.0.0.1, for the demo command and the tests.

Why real OpenSSH rather than an in-process server: the product talks to customers' OpenSSH servers,
whose behaviour (posix-rename, errno mapping, auth failures, host keys) is what must be tested.

Everything the server needs lives in one `tempfile.mkdtemp()` folder chmod 0755 (sshd reads
`AuthorizedKeysFile` as the logged-in user, so pytest's 0700 tmp dirs would not do). sshd needs root
(privilege separation, switching to the SFTP user), a non-root system user with a password
(`useradd`, `chpasswd`) and `/run/sshd`. The server is stopped by its own pid, and the per-connection
sshd processes it forked (which call setsid(), so they are not in its process group) are killed too,
so that "the server is down" really means no connection survives.

Set-ups customers have, as options (`sftp_flags`, `chroot`, `make_dir(mode=...)`):
- `sftp_flags=["-P", "posix-rename"]`: `Subsystem sftp internal-sftp -P posix-rename`, the server's
  request deny list (names as `sftp-server -Q requests` prints them; an unknown name blocks nothing);
  `["-P", "rename,posix-rename"]` refuses every rename.
- `chroot=True`: `ChrootDirectory`, which OpenSSH only accepts on a root-owned path without a
  group- or world-writable component, so never under /tmp: the root lives under `CHROOT_BASE`
  (root-owned, 0755); the user's directories are inside it and their SFTP paths start at the chroot
  (`remote_path()`).
- `make_dir(writable=False, mode=0o733)`: a write-only drop directory (the user may create files in
  it but not list it).
"""

from __future__ import annotations

import logging
import os
import pwd
import re
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

from beop_assets.demo.server_process import descendants, stop_tree, wait_until_listening

log = logging.getLogger(__name__)

SSHD = "/usr/sbin/sshd"
DEFAULT_USER = "beoptest"
# The SFTP user's password is shared by every LocalSshd of that user on this machine (one /etc/shadow),
# so it is generated once and kept here (root-only), instead of racing concurrent test runs on chpasswd.
SECRETS_DIR = Path("/var/lib/beop-exports-demo")
CHROOT_BASE = Path("/var/lib/beop-exports-test")


class SshdError(RuntimeError):
    """The local sshd could not be set up or started; the message says why (with sshd's own log)."""


class SshdNeedsRoot(SshdError):
    """Running OpenSSH sshd with its own SFTP user needs root."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _run(*args: str, stdin: str | None = None) -> str:
    done = subprocess.run(args, input=stdin, capture_output=True, text=True)
    if done.returncode != 0:
        raise SshdError(f"{' '.join(args[:2])} failed ({done.returncode}): {done.stderr.strip()}")
    return done.stdout


def _keygen(path: Path, key_type: str = "ed25519", comment: str = "beop-demo") -> str:
    """Create a key pair without passphrase; return the public key line."""
    _run("ssh-keygen", "-q", "-t", key_type, "-N", "", "-C", comment, "-f", str(path))
    return path.with_name(path.name + ".pub").read_text().strip()


def _stable_password(username: str) -> str:
    SECRETS_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = SECRETS_DIR / f"{username}.password"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        for _ in range(50):  # another process may be writing it right now
            text = path.read_text().strip()
            if text:
                return text
            time.sleep(0.02)
        raise SshdError(f"empty password file {path}") from None
    password = f"beop-sftp-{secrets.token_urlsafe(12)}"
    with os.fdopen(fd, "w") as out:
        out.write(password + "\n")
    return password


def ensure_system_user(username: str) -> pwd.struct_passwd:
    """A throwaway system user without home or login shell, created if missing (races tolerated)."""
    try:
        return pwd.getpwnam(username)
    except KeyError:
        done = subprocess.run(
            [
                "useradd",
                "--system",
                "--no-create-home",
                "--home-dir",
                "/nonexistent",
                "--shell",
                "/usr/sbin/nologin",
                username,
            ],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0 and done.returncode != 9:  # 9: created meanwhile by another process
            raise SshdError(f"useradd {username} failed: {done.stderr.strip()}") from None
    return pwd.getpwnam(username)


def _ensure_user(username: str, password: str) -> pwd.struct_passwd:
    ensure_system_user(username)
    _run("chpasswd", stdin=f"{username}:{password}\n")
    return pwd.getpwnam(username)


def _openssh_version() -> tuple[int, int]:
    done = subprocess.run([SSHD, "-V"], capture_output=True, text=True)
    match = re.search(r"OpenSSH_(\d+)\.(\d+)", done.stderr + done.stdout)
    return (int(match.group(1)), int(match.group(2))) if match else (0, 0)


class LocalSshd:
    """An OpenSSH sshd on 127.0.0.1 with one SFTP user (password and key auth). Use as a context manager.

    By default the SFTP user lands in the real filesystem (no chroot), so remote paths are absolute local
    paths: `upload_dir` is where files show up, and tests can look at them directly. With `chroot=True`,
    `remote_path(local)` gives the path the user sees.
    """

    def __init__(
        self,
        username: str = DEFAULT_USER,
        port: int | None = None,
        start_timeout: float = 10.0,
        *,
        sftp_flags: Sequence[str] = (),
        chroot: bool = False,
    ):
        if os.geteuid() != 0:
            raise SshdNeedsRoot(
                "starting a local OpenSSH sshd needs root (it switches to its own SFTP user); "
                "run as root, or use a server that does not need it"
            )
        if not Path(SSHD).exists():
            raise SshdError(f"{SSHD} not found: apt-get install -y openssh-server openssh-sftp-server")
        self.host = "127.0.0.1"
        self.username = username
        self.port = port or free_port()
        self.start_timeout = start_timeout
        self.sftp_flags = tuple(sftp_flags)
        self.folder = Path(tempfile.mkdtemp(prefix="beop-sshd-"))
        self.folder.chmod(0o755)
        self.chroot: Path | None = None
        self._process: subprocess.Popen | None = None
        try:
            if chroot:
                CHROOT_BASE.mkdir(mode=0o755, parents=True, exist_ok=True)
                os.chown(CHROOT_BASE, 0, 0)
                CHROOT_BASE.chmod(0o755)
                self.chroot = Path(tempfile.mkdtemp(prefix="chroot-", dir=CHROOT_BASE))
                self.chroot.chmod(0o755)
            self._prepare()
        except BaseException:
            self._remove_folders()
            raise

    # -- setup -------------------------------------------------------------------------------------

    def _prepare(self) -> None:
        self.password = _stable_password(self.username)
        self.user = _ensure_user(self.username, self.password)
        Path("/run/sshd").mkdir(mode=0o755, parents=True, exist_ok=True)

        self.host_key_path = self.folder / "ssh_host_ed25519_key"
        self.host_public_key = _keygen(self.host_key_path, comment="beop-demo-host")
        self.client_key_path = self.folder / "client_ed25519"
        self.client_public_key = _keygen(self.client_key_path, comment="beop-demo-client")
        self.client_key_text = self.client_key_path.read_text()
        self.authorized_keys_path = self.folder / "authorized_keys"
        self.authorized_keys_path.write_text(self.client_public_key + "\n")
        self.authorized_keys_path.chmod(0o644)
        self.known_hosts_path = self.write_known_hosts(self.folder / "known_hosts")

        root = self.chroot or self.folder
        self.home = root / "home" / self.username
        self.home.mkdir(parents=True)
        (root / "home").chmod(0o755)
        self._give(self.home)
        self.upload_dir = self.make_dir("incoming")
        self.second_dir = self.make_dir("second")
        self.log_path = self.folder / "sshd.log"
        self.config_path = self.folder / "sshd_config"
        self.config_path.write_text(self._config())

    def _config(self) -> str:
        sftp = " ".join(["internal-sftp", *self.sftp_flags])
        lines = [
            "ListenAddress 127.0.0.1",
            f"Port {self.port}",
            f"HostKey {self.host_key_path}",
            f"PidFile {self.folder / 'sshd.pid'}",
            f"AuthorizedKeysFile {self.authorized_keys_path}",
            f"AllowUsers {self.username}",
            "StrictModes no",
            "UsePAM no",
            "PermitRootLogin no",
            "PubkeyAuthentication yes",
            "PasswordAuthentication yes",
            "KbdInteractiveAuthentication no",
            "UseDNS no",
            "PrintMotd no",
            "X11Forwarding no",
            "AllowTcpForwarding no",
            "PermitTTY no",
            f"Subsystem sftp {sftp}",
            f"ForceCommand {sftp}",  # an SFTP-only user, whatever the client asks for
            "LogLevel VERBOSE",
            "MaxStartups 200:30:400",
            "MaxSessions 100",
            "MaxAuthTries 10",
            "LoginGraceTime 30",
        ]
        if self.chroot is not None:
            lines.append(f"ChrootDirectory {self.chroot}")
        if _openssh_version() >= (9, 8):
            lines.append("PerSourcePenalties no")  # tests fail auth on purpose; do not lock 127.0.0.1 out
        return "\n".join(lines) + "\n"

    def _give(self, path: Path) -> None:
        os.chown(path, self.user.pw_uid, self.user.pw_gid)
        path.chmod(0o755)

    # -- helpers for tests and the demo ------------------------------------------------------------

    def make_dir(self, name: str | None = None, *, writable: bool = True, mode: int | None = None) -> Path:
        """A new directory in the SFTP user's home, owned by that user (or by root: read-only to the user,
        or, with `mode=0o733`, write-only: the user may create files but not list them)."""
        path = self.home / (name or f"dir-{uuid.uuid4().hex[:12]}")
        path.mkdir()
        if writable:
            self._give(path)
        else:
            path.chmod(0o755)
        if mode is not None:
            path.chmod(mode)
        return path

    def remote_path(self, local: Path) -> str:
        """The path the SFTP user sees for a local path (they differ only under a chroot)."""
        if self.chroot is None:
            return str(local)
        return "/" + str(Path(local).relative_to(self.chroot))

    def write_known_hosts(self, path: Path, *, changed: bool = False) -> Path:
        """A known_hosts file for this server; `changed=True` lists another key for it (a changed key)."""
        key = self.host_public_key
        if changed:
            other = self.folder / f"other_host_key_{uuid.uuid4().hex[:8]}"
            key = _keygen(other, comment="not-this-server")
        key_type, key_data = key.split()[:2]
        path.write_text(f"[{self.host}]:{self.port} {key_type} {key_data}\n")
        return path

    def authorize_key(self, public_key_line: str) -> None:
        with self.authorized_keys_path.open("a") as out:
            out.write(public_key_line.strip() + "\n")

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process and self._process.poll() is None else None

    def session_pids(self) -> list[int]:
        """The per-connection sshd processes currently forked by this server."""
        return descendants(self._process.pid) if self._process else []

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> LocalSshd:
        if self.pid:
            return self
        with self.log_path.open("ab") as log_file:
            self._process = subprocess.Popen(
                [SSHD, "-D", "-e", "-f", str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=log_file,
                start_new_session=True,
            )
        if wait_until_listening(self._process, self.host, self.port, self.start_timeout):
            log.info("sshd listening on %s:%d (pid %d)", self.host, self.port, self._process.pid)
            return self
        code = self._process.poll()
        self.stop()
        raise SshdError(
            f"sshd did not accept connections on {self.host}:{self.port} within {self.start_timeout:.0f} s "
            f"(exit code {code}); its log:\n{self.log_text()[-4000:]}"
        )

    def stop(self) -> None:
        """Stop the server and every connection it serves (by pid: terminate, then kill)."""
        process, self._process = self._process, None
        if process is None:
            return
        stop_tree(process)

    def _remove_folders(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)
        if self.chroot is not None:
            shutil.rmtree(self.chroot, ignore_errors=True)

    def close(self) -> None:
        self.stop()
        self._remove_folders()

    def __enter__(self) -> LocalSshd:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()
