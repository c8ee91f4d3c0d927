"""`beop-exports demo`: real deliveries on one machine, with no account anywhere.

Generates a day of demo data, writes a demo registry (data/demo/exports.yaml, so an operator's own
exports.yaml is never touched), starts the GCS emulator and a local OpenSSH sshd (as root: a server
with its own SFTP user, as in the tests; as any other user: sshd run as that user with key
authentication, `user_sshd.py`), runs the daily job through Dagster, then copies what the servers
received into data/demo/delivered/ and prints where it is.

With `--ui` the servers stay up and `dagster dev` runs on the same instance and registry, so that a
run or a backfill launched from the UI delivers for real; Ctrl-C, SIGTERM or SIGHUP (a closed terminal)
stops `dagster dev` and both servers (each by its own pid) and copies what they received. The demo's
partitions start at its first data day (BEOP_START_DATE, unless the operator set one), so a fresh
demo's UI shows the days it has, not months of "missing" ones. The emulator keeps its objects under
data/demo/gcs/, so `make ui` after `make demo` still shows the bucket's earlier files.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import yaml

from beop_assets.demo.gcs_emulator import GcsEmulator
from beop_assets.demo.generate import generate_day
from beop_assets.demo.service_account import write_demo_key

DEMO_DIR = Path("data/demo")
DEMO_BUCKET = "acme-beop-exports"
PASSWORD_ENV = "BEOP_DEMO_SFTP_PASSWORD"
UI_READY_TIMEOUT_S = 120


class Stopped(KeyboardInterrupt):
    """SIGTERM or SIGHUP: stopped like Ctrl-C, through every `finally` that stops what the demo started."""


def _stop_on_signal(signum: int, _frame: object) -> None:
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # a second signal must not cut the clean-up short
        signal.signal(sig, signal.SIG_IGN)
    raise Stopped(signal.Signals(signum).name)


@contextlib.contextmanager
def _signals_stop_the_demo():
    """While the demo runs, SIGTERM and SIGHUP unwind it as Ctrl-C does (Python's default for them is
    to die on the spot, leaving sshd, the emulator and `dagster dev` running)."""
    previous = {sig: signal.signal(sig, _stop_on_signal) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        signal.signal(signal.SIGINT, signal.default_int_handler)


def first_demo_day(landing: Path, day: date) -> date:
    """The demo's first data day: `day`, or an earlier day the landing zone already holds."""
    days = [day]
    for folder in (landing / "participations").glob("date=*"):
        with contextlib.suppress(ValueError):
            days.append(date.fromisoformat(folder.name.removeprefix("date=")))
    return min(days)


def _registry(sftp: dict | None, key_file: Path) -> dict:
    exports = []
    if sftp:
        exports += [
            {
                "id": "acme-crm-participation",
                "account_id": "a_1",
                "mode": "specific",
                "type": "crm-participation",
                "name": "ACME daily participations",
                "campaigns": ["cmp_1"],
                "contents": ["c_5"],
                "optins": ["o_1", "o_3", "o_2"],
                "sftp": sftp,
            },
            {
                "id": "acme-crm-optin",
                "account_id": "a_1",
                "mode": "specific",
                "type": "crm-optin",
                "name": "ACME optins",
                "optins": ["o_1", "o_2"],
                "sftp": sftp,
            },
        ]
    for account, user in (("a_1", "acme"), ("a_2", "globex")):
        exports.append(
            {
                "id": f"{user}-global",
                "account_id": account,
                "mode": "global",
                "gcs": {"bucket": DEMO_BUCKET, "prefix": f"{user}/", "credentials_file": str(key_file)},
            }
        )
    return {"exports": exports}


def _start_sftp(echo: Callable[[str], None]):
    """The demo's SFTP server and the registry's `sftp` block for it, or (None, None) with the reason."""
    from beop_assets.demo.sshd import LocalSshd, SshdError
    from beop_assets.demo.user_sshd import UserSshd

    server: LocalSshd | UserSshd
    try:
        if os.geteuid() == 0:
            server = LocalSshd().start()
            os.environ[PASSWORD_ENV] = server.password
            auth = {"password_env": PASSWORD_ENV}
        else:
            server = UserSshd().start()
            auth = {"private_key_file": str(server.client_key_path)}
    except SshdError as exc:
        echo(f"   no local SFTP server ({exc}): the SFTP exports are left out of this demo")
        return None, None
    echo(f"   OpenSSH sshd on {server.host}:{server.port} (user {server.username}), files land in {server.upload_dir}")
    sftp = {
        "host": server.host,
        "port": server.port,
        "username": server.username,
        "directory": str(server.upload_dir),
        **auth,
        "known_hosts_file": str(server.known_hosts_path),
    }
    return server, sftp


def _copy_delivered(delivered: Path, sshd, emulator: GcsEmulator) -> None:
    shutil.rmtree(delivered, ignore_errors=True)
    delivered.mkdir(parents=True)
    if sshd:
        (delivered / "sftp").mkdir(parents=True)
        for path in sorted(sshd.upload_dir.iterdir()):
            if path.is_file():
                shutil.copy(path, delivered / "sftp" / path.name)
    client = emulator.client()
    for blob in client.list_blobs(DEMO_BUCKET):
        target = delivered / "gcs" / DEMO_BUCKET / blob.name
        target.parent.mkdir(parents=True, exist_ok=True)
        blob.download_to_filename(str(target), raw_download=True)


def _dagster_dev_command(port: int) -> list[str]:
    dagster = str(Path(sys.executable).with_name("dagster"))
    target = ["-w", "workspace.yaml"] if Path("workspace.yaml").exists() else ["-m", "beop_assets.definitions"]
    return [dagster, "dev", *target, "-h", "127.0.0.1", "-p", str(port)]


def _process_group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _stop_dagster_dev(process: subprocess.Popen) -> None:
    """SIGTERM first (dagster dev shuts its webserver, daemon and code servers down), then SIGKILL to
    its process group: it was started in a session of its own, so that group is only what it started."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=30)
    deadline = time.monotonic() + 10
    while _process_group_alive(process.pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=10)


def _location_state(url: str) -> str | None:
    """ "loaded", the load error, or None while the webserver or the code location is still starting."""
    query = (
        "{ workspaceOrError { ... on Workspace { locationEntries { loadStatus "
        "locationOrLoadError { __typename ... on PythonError { message } } } } } }"
    )
    request = urllib.request.Request(
        f"{url}/graphql", data=json.dumps({"query": query}).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            entries = json.load(response)["data"]["workspaceOrError"]["locationEntries"]
    except (OSError, KeyError, TypeError, ValueError):
        return None
    for entry in entries:
        loaded = entry.get("locationOrLoadError") or {}
        if loaded.get("__typename") == "PythonError":
            return loaded.get("message", "load error").strip().splitlines()[0]
        if entry.get("loadStatus") == "LOADED" and loaded.get("__typename") == "RepositoryLocation":
            return "loaded"
    return None


def serve_ui(port: int, echo: Callable[[str], None]) -> int:
    """`dagster dev` on 127.0.0.1:`port` until Ctrl-C (or until it exits); returns its exit code."""
    command = _dagster_dev_command(port)
    echo(f"   starting: {' '.join(command)}")
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + UI_READY_TIMEOUT_S
        state = None
        while time.monotonic() < deadline and process.poll() is None and state is None:
            state = _location_state(url)
            if state is None:
                time.sleep(0.5)
        if process.poll() is None and state == "loaded":
            echo(f"   the UI is up: {url}  (Ctrl-C stops the UI and the demo servers)")
            echo("   try: Assets > crm_export_file > Materialize > pick days and one export, or all exports of a day")
        elif process.poll() is None:
            echo(f"   the UI is up at {url}, but the code did not load: {state or 'not loaded in time'}")
        process.wait()
        return process.returncode or 0
    except KeyboardInterrupt as exc:
        echo(f"   {exc or 'Ctrl-C'}: stopping dagster dev and the demo servers")
        return 0
    finally:
        _stop_dagster_dev(process)


def run_demo(
    day: date | None,
    count: int,
    echo: Callable[[str], None] = print,
    *,
    ui: bool = False,
    skip_run: bool = False,
    ui_port: int = 3000,
    landing: Path = Path("data/landing"),
) -> int:
    with _signals_stop_the_demo():
        return _run_demo(day, count, echo, ui=ui, skip_run=skip_run, ui_port=ui_port, landing=landing)


def _run_demo(
    day: date | None, count: int, echo: Callable[[str], None], *, ui: bool, skip_run: bool, ui_port: int, landing: Path
) -> int:
    from beop_assets.daily_run import instance, run_day

    day = day or (datetime.now(UTC) - timedelta(days=1)).date()
    demo = DEMO_DIR.resolve()
    # Always the demo's own registry: an operator's BEOP_EXPORTS file is never overwritten.
    os.environ["BEOP_EXPORTS"] = str(demo / "exports.yaml")
    if not skip_run or not (landing / "participations" / f"date={day.isoformat()}").exists():
        echo(f"1. generating {count} participations for {day} into {landing}/")
        generate_day(landing, day, count, seed=1, faults=True)
    # For the run below and `dagster dev`: the partitions start at the demo's first day.
    os.environ.setdefault("BEOP_START_DATE", first_demo_day(landing, day).isoformat())

    echo("2. starting the GCS emulator and a local OpenSSH sshd on 127.0.0.1")
    outcomes = []
    delivered = demo / "delivered"
    code = 0
    with contextlib.ExitStack() as started:  # each server is stopped on every exit path, signals included
        emulator = GcsEmulator(backend="filesystem", root=demo / "gcs").start()
        started.callback(emulator.close)
        os.environ["STORAGE_EMULATOR_HOST"] = emulator.url
        emulator.create_bucket(DEMO_BUCKET)
        key_file = write_demo_key(demo / "keys" / "acme-service-account.json")
        sshd, sftp = _start_sftp(echo)
        if sshd:
            started.callback(sshd.close)
        registry_file = Path(os.environ["BEOP_EXPORTS"])
        registry_file.parent.mkdir(parents=True, exist_ok=True)
        partial = registry_file.with_suffix(".partial")
        partial.write_text(
            "# Written by `beop-exports demo`.\n" + yaml.safe_dump(_registry(sftp, key_file), sort_keys=False)
        )
        os.replace(partial, registry_file)  # a running UI never reads a half-written registry
        echo(f"3. demo registry: {registry_file}")
        if not skip_run:
            echo(
                f"4. running the daily job for {day} through Dagster "
                f"(DAGSTER_HOME={os.environ.get('DAGSTER_HOME', '.dagster_home')})"
            )
            outcomes = run_day(day, echo=lambda line: echo(f"   {line}"))
            _copy_delivered(delivered, sshd, emulator)
            _print_outcomes(outcomes, delivered, echo)
        if ui:
            instance()  # the same DAGSTER_HOME as the CLI runs, created if needed
            echo(f"{'5' if skip_run else '6'}. the UI, with the demo servers kept running:")
            code = serve_ui(ui_port, echo)
            _copy_delivered(delivered, sshd, emulator)
            echo(f"   what the servers received, copied to {delivered}/")
    if not ui:
        echo("6. open the UI on the same data, with the demo servers running (Ctrl-C stops all):")
        echo("   make ui      # or: .venv/bin/beop-exports demo --ui --skip-run")
    failed = any(o.status != "delivered" for o in outcomes)
    return 1 if failed or code else 0


def _print_outcomes(outcomes, delivered: Path, echo: Callable[[str], None]) -> None:
    echo("5. outcome, one line per export:")
    for o in outcomes:
        echo(
            f"   {o.export_id:<24} {o.status:<10} {o.file_name or '-'} rows={o.rows if o.rows is not None else '-'}"
            + (f" error: {o.error}" if o.error else "")
        )
    echo(f"   the files the servers received, copied to {delivered}/:")
    for path in sorted(p for p in delivered.rglob("*") if p.is_file()):
        echo(f"     {path.relative_to(delivered)} ({path.stat().st_size} bytes)")
