"""A local server process (sshd, ProFTPD) as the demo and the tests run them: started in its own
session, known to be up only once it answers on its port, and stopped by its own pid together with
every per-connection process it forked.

Servers like sshd fork one process per connection and those call setsid(), so they are not in the
server's process group: "the server is down" must also mean no connection survives, hence the walk
of /proc for descendants before the server itself is stopped.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from pathlib import Path


def descendants(pid: int) -> list[int]:
    """All descendants of `pid` (per-connection server processes), from /proc."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        parents.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def signal_all(pids: list[int], sig: int) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def wait_until_listening(
    process: subprocess.Popen, host: str, port: int, timeout: float, *, banner: bytes | None = None
) -> bool:
    """True once `host:port` accepts a connection (and, with `banner`, greets with it); False if the
    process exits or `timeout` passes first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        try:
            with socket.create_connection((host, port), timeout=0.5) as sock:
                if banner is None:
                    return True
                sock.settimeout(2)
                if sock.recv(64).startswith(banner):
                    return True
        except OSError:
            time.sleep(0.02)
    return False


def stop_tree(process: subprocess.Popen, *, terminate_sessions: bool = True) -> None:
    """Stop the server and its connections: SIGCONT (a test may have frozen them) and SIGTERM to the
    connections, terminate the server (kill it after 5 s), then SIGKILL any connection left."""
    sessions = descendants(process.pid)
    if terminate_sessions:
        signal_all(sessions, signal.SIGCONT)
        signal_all(sessions, signal.SIGTERM)
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)
    time.sleep(0.05)
    signal_all([pid for pid in sessions if Path(f"/proc/{pid}").exists()], signal.SIGKILL)
