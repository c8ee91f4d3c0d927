"""OpenSSH's sshd run as the current (non-root) user: the demo's SFTP server when it is not root.

A non-root sshd can only log in the user it runs as, and cannot read /etc/shadow, so it serves that
one user with key authentication only: its own host key, a client key written for the demo, a config
and a pid file in one `tempfile.mkdtemp()` folder, a high free port on 127.0.0.1. The files land in
`upload_dir`, owned by the user. Same server software as customers run, so the demo shows the real
thing; the tests keep the root variant (`sshd.LocalSshd`, a separate SFTP user, password auth too).

An account that sshd sees as locked (systemd's synthesized `nobody`, whose shadow entry reads `!*`)
is refused at login; any ordinary account works.
"""

from __future__ import annotations

import getpass
import shutil
import subprocess
import tempfile
from pathlib import Path

from beop_assets.demo.server_process import stop_tree, wait_until_listening
from beop_assets.demo.sshd import SSHD, SshdError, _keygen, _openssh_version, free_port


class UserSshd:
    """sshd as the current user, key authentication only. Use as a context manager."""

    def __init__(self, port: int | None = None, start_timeout: float = 10.0):
        if not Path(SSHD).exists():
            raise SshdError(f"{SSHD} not found: install openssh-server (apt-get install openssh-server)")
        self.host = "127.0.0.1"
        self.username = getpass.getuser()
        self.port = port or free_port()
        self.start_timeout = start_timeout
        self.folder = Path(tempfile.mkdtemp(prefix="beop-user-sshd-"))
        self._process: subprocess.Popen | None = None
        try:
            self.host_key_path = self.folder / "ssh_host_ed25519_key"
            self.host_public_key = _keygen(self.host_key_path, comment="beop-demo-host")
            self.client_key_path = self.folder / "client_ed25519"
            self.client_public_key = _keygen(self.client_key_path, comment="beop-demo-client")
            self.authorized_keys_path = self.folder / "authorized_keys"
            self.authorized_keys_path.write_text(self.client_public_key + "\n")
            key_type, key_data = self.host_public_key.split()[:2]
            self.known_hosts_path = self.folder / "known_hosts"
            self.known_hosts_path.write_text(f"[{self.host}]:{self.port} {key_type} {key_data}\n")
            self.upload_dir = self.folder / "incoming"
            self.upload_dir.mkdir()
            self.log_path = self.folder / "sshd.log"
            self.config_path = self.folder / "sshd_config"
            self.config_path.write_text(self._config())
        except BaseException:
            shutil.rmtree(self.folder, ignore_errors=True)
            raise

    def _config(self) -> str:
        lines = [
            "ListenAddress 127.0.0.1",
            f"Port {self.port}",
            f"HostKey {self.host_key_path}",
            f"PidFile {self.folder / 'sshd.pid'}",
            f"AuthorizedKeysFile {self.authorized_keys_path}",
            f"AllowUsers {self.username}",
            "StrictModes no",
            "UsePAM no",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "UseDNS no",
            "PrintMotd no",
            "X11Forwarding no",
            "AllowTcpForwarding no",
            "PermitTTY no",
            "Subsystem sftp internal-sftp",
            "ForceCommand internal-sftp",
            "LogLevel VERBOSE",
        ]
        if _openssh_version() >= (9, 8):
            lines.append("PerSourcePenalties no")
        return "\n".join(lines) + "\n"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process and self._process.poll() is None else None

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def start(self) -> UserSshd:
        if self.pid:
            return self
        with self.log_path.open("ab") as log_file:
            self._process = subprocess.Popen(
                [SSHD, "-D", "-e", "-f", str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=log_file,
                start_new_session=True,  # the demo's Ctrl-C is handled by the demo, which stops it by pid
            )
        if wait_until_listening(self._process, self.host, self.port, self.start_timeout):
            return self
        code = self._process.poll()
        self.stop()
        raise SshdError(
            f"sshd (as user {self.username}) did not accept connections on {self.host}:{self.port} "
            f"(exit code {code}); its log:\n{self.log_text()[-4000:]}"
        )

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        stop_tree(process)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> UserSshd:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
