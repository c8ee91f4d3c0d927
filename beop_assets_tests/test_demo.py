"""The demo, as a newcomer runs it (issue 15): as a non-root user it delivers both export kinds, and
`demo --ui` keeps its servers running with `dagster dev` so that a backfill launched from the UI
delivers, until Ctrl-C stops everything it started.

The non-root run uses a throwaway system user (`useradd`, like the sshd fixture's SFTP user) and the
system's Python 3.11 with this checkout and the venv's packages on PYTHONPATH: the venv's own
interpreter lives under /root here, which another user cannot execute. What runs is the same code.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests
import yaml

from beop_assets.demo.sshd import ensure_system_user
from beop_assets_tests.fixtures.dagster_dev import free_port, process_family

REPO = Path(__file__).resolve().parents[1]
SITE_PACKAGES = next((REPO / ".venv" / "lib").glob("python3.11/site-packages"), None)
NON_ROOT_USER = "beopdemo"
SYSTEM_PYTHON = "/usr/bin/python3.11"


def _non_root_user() -> pwd.struct_passwd:
    return ensure_system_user(NON_ROOT_USER)


def _clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BEOP_", "DAGSTER_", "STORAGE_EMULATOR"))}
    env.update(extra)
    return env


def _processes_of(uid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if entry.stat().st_uid == uid and "Z" not in (entry / "stat").read_text().rsplit(")", 1)[1][:3]:
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def test_demo_as_a_non_root_user_delivers_both_export_kinds():
    assert os.geteuid() == 0, "this test creates a throwaway user: run the suite as root (as CI does)"
    assert Path(SYSTEM_PYTHON).exists() and SITE_PACKAGES, "needs the system python3.11 and the venv's packages"
    user = _non_root_user()
    workdir = Path(tempfile.mkdtemp(prefix="beop-demo-nonroot-"))
    workdir.chmod(0o755)
    os.chown(workdir, user.pw_uid, user.pw_gid)
    env = _clean_env(
        HOME=str(workdir),
        DAGSTER_HOME=str(workdir / ".dagster_home"),
        PYTHONPATH=f"{REPO}:{SITE_PACKAGES}",
    )
    done = subprocess.run(
        [
            "runuser",
            "-u",
            NON_ROOT_USER,
            "--",
            SYSTEM_PYTHON,
            "-m",
            "beop_assets.cli",
            "demo",
            "--participations",
            "60",
        ],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert f"(user {NON_ROOT_USER})" in output, output  # sshd ran as that user, not as root
    assert "left out" not in output, output
    for export_id in ("acme-crm-participation", "acme-crm-optin", "acme-global", "globex-global"):
        assert re.search(rf"^\s+{export_id}\s+delivered\s", output, re.M), output
    delivered = workdir / "data" / "demo" / "delivered"
    csv_files = sorted((delivered / "sftp").glob("*.csv"))
    gz_files = sorted((delivered / "gcs").rglob("*.ndjson.gz"))
    assert len(csv_files) == 2 and len(gz_files) == 2, (csv_files, gz_files)
    assert all(p.stat().st_uid == user.pw_uid for p in csv_files)
    time.sleep(0.3)
    assert _processes_of(user.pw_uid) == [], "the demo left processes of its user running"


# --------------------------------------------------------------------------------------------------
# demo --ui
# --------------------------------------------------------------------------------------------------


def _gql(url: str, query: str, variables: dict | None = None) -> dict:
    response = requests.post(f"{url}/graphql", json={"query": query, "variables": variables or {}}, timeout=60)
    response.raise_for_status()
    body = response.json()
    assert not body.get("errors"), body["errors"]
    return body["data"]


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _wait(what: str, timeout: float, probe, output) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(1)
    pytest.fail(f"timed out waiting for {what}; demo output:\n{output()[-6000:]}", pytrace=False)


def _stop_and_wait(demo: subprocess.Popen, family: set[int], stop: signal.Signals, output) -> None:
    """Send `stop` to the demo alone, then assert it exited 0 and left none of `family` running (by pid)."""
    family = family | process_family(demo.pid)
    demo.send_signal(stop)
    try:
        demo.wait(timeout=90)
    except subprocess.TimeoutExpired:
        for pid in family:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        pytest.fail(f"demo --ui did not stop on {stop.name}; output:\n{output()[-6000:]}")
    assert demo.returncode == 0, output()
    time.sleep(0.5)
    survivors = {pid for pid in family if Path(f"/proc/{pid}").exists()} - {demo.pid}
    survivors = {p for p in survivors if "Z" not in Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1][:3]}
    assert not survivors, f"processes started by the demo survived {stop.name}: {sorted(survivors)}"


@pytest.mark.e2e
def test_demo_ui_serves_a_backfill_that_delivers_and_ctrl_c_stops_everything(tmp_path):
    workdir = tmp_path / "clone"
    workdir.mkdir()
    port = free_port()
    log = tmp_path / "demo.log"
    env = _clean_env(DAGSTER_HOME=str(workdir / ".dagster_home"), PYTHONUNBUFFERED="1")
    beop = str(Path(sys.executable).with_name("beop-exports"))
    with open(log, "wb") as out:
        demo = subprocess.Popen(
            [beop, "demo", "--ui", "--port", str(port), "--participations", "60"],
            cwd=workdir,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    output = lambda: log.read_text(errors="replace")  # noqa: E731
    family: set[int] = set()
    try:
        _wait("the UI", 240, lambda: "the UI is up" in output(), output)
        family = process_family(demo.pid)
        registry = yaml.safe_load((workdir / "data" / "demo" / "exports.yaml").read_text())["exports"]
        crm = next(e for e in registry if e["id"] == "acme-crm-participation")
        upload = Path(crm["sftp"]["directory"])
        assert len(list(upload.glob("*.csv"))) == 2  # the demo's own run delivered both CSV exports
        day = (datetime.now(UTC) - timedelta(days=1)).date().isoformat()

        # A backfill launched as from the UI: the demo's servers are still up, so it delivers.
        _wait(
            "the export partitions",
            90,
            lambda: (
                "acme-crm-participation"
                in json.dumps(
                    _gql(
                        url,
                        'query { assetNodes(assetKeys: [{path: ["crm_export_file"]}]) { partitionKeysByDimension '
                        "{ name partitionKeys } } }",
                    )
                )
            ),
            output,
        )
        key = f"{day}|acme-crm-participation"
        launched = _gql(
            url,
            """mutation B($p: LaunchBackfillParams!) { launchPartitionBackfill(backfillParams: $p) {
                 __typename ... on LaunchBackfillSuccess { backfillId } ... on PythonError { message } } }""",
            {
                "p": {
                    "partitionsByAssets": [
                        {
                            "assetKey": {"path": ["crm_export_file"]},
                            "partitions": {"ranges": [{"start": key, "end": key}]},
                        }
                    ],
                    "title": "demo UI backfill",
                }
            },
        )["launchPartitionBackfill"]
        assert launched["__typename"] == "LaunchBackfillSuccess", launched
        _wait("the backfill's CSV on the demo's sshd", 240, lambda: len(list(upload.glob("*.csv"))) == 3, output)
        family |= process_family(demo.pid)
        assert len(family) > 3  # dagster dev, its webserver/daemon, sshd, the emulator
    finally:
        _stop_and_wait(demo, family, signal.SIGINT, output)  # what Ctrl-C does in the demo's terminal
    assert not _port_open(port) and not _port_open(int(crm["sftp"]["port"]))
    assert len(list((workdir / "data" / "demo" / "delivered" / "sftp").glob("*.csv"))) == 3


@pytest.mark.e2e
@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP-closed-terminal"])
def test_demo_ui_stopped_by_a_signal_stops_everything_and_its_partitions_start_at_its_day(tmp_path, stop):
    """Issue 19: SIGTERM (a service manager, `kill`) and SIGHUP (a closed terminal) used to kill the demo
    on the spot, leaving sshd, the emulator and `dagster dev` behind; and a fresh demo's UI showed 180
    "missing" days for a demo of one."""
    workdir = tmp_path / "clone"
    workdir.mkdir()
    port = free_port()
    log = tmp_path / "demo.log"
    day = (datetime.now(UTC) - timedelta(days=3)).date().isoformat()
    env = _clean_env(DAGSTER_HOME=str(workdir / ".dagster_home"), PYTHONUNBUFFERED="1")
    beop = str(Path(sys.executable).with_name("beop-exports"))
    command = [beop, "demo", "--ui", "--skip-run", "--date", day, "--port", str(port), "--participations", "30"]
    with open(log, "wb") as out:
        demo = subprocess.Popen(
            command, cwd=workdir, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    url = f"http://127.0.0.1:{port}"
    output = lambda: log.read_text(errors="replace")  # noqa: E731
    try:
        _wait("the UI", 240, lambda: "the UI is up" in output(), output)
        partitions = _gql(
            url,
            'query { assetNodes(assetKeys: [{path: ["participations"]}]) { partitionKeysByDimension '
            "{ partitionKeys } } }",
        )["assetNodes"][0]["partitionKeysByDimension"][0]["partitionKeys"]
        assert partitions[0] == day, partitions[:3]  # not BEOP_START_DATE's default, 180 days back
        registry = yaml.safe_load((workdir / "data" / "demo" / "exports.yaml").read_text())["exports"]
        sftp_port = int(next(e for e in registry if "sftp" in e)["sftp"]["port"])
        family = process_family(demo.pid)
        assert len(family) > 3, family  # dagster dev, its webserver/daemon, sshd, the emulator
    except BaseException:
        for pid in process_family(demo.pid):  # every process it started, whatever session it is in
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        raise
    _stop_and_wait(demo, family, stop, output)  # to the demo alone, as `kill` or the terminal's hangup does
    assert f"{stop.name}: stopping dagster dev and the demo servers" in output()
    assert not _port_open(port) and not _port_open(sftp_port)
