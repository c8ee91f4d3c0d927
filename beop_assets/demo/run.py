"""`beop-exports demo`: real deliveries on one machine, with no account anywhere.

Generates a day of demo data, writes a demo registry (data/demo/exports.yaml, so an operator's own
exports.yaml is never touched), starts the GCS emulator and a local OpenSSH sshd (root only; as
another user the SFTP exports are left out and the reason printed), runs the daily job through
Dagster, then copies what the servers received into data/demo/delivered/ and prints where it is.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import yaml

from beop_assets import settings
from beop_assets.demo.gcs_emulator import GcsEmulator
from beop_assets.demo.generate import generate_day
from beop_assets.demo.service_account import write_demo_key

DEMO_DIR = Path("data/demo")
DEMO_BUCKET = "acme-beop-exports"
PASSWORD_ENV = "BEOP_DEMO_SFTP_PASSWORD"


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


def run_demo(day: date | None, count: int, echo: Callable[[str], None] = print) -> int:
    from beop_assets.daily_run import run_day

    day = day or (datetime.now(UTC) - timedelta(days=1)).date()
    current = settings.current()
    landing = Path(current.landing)
    demo = DEMO_DIR.resolve()
    os.environ.setdefault("BEOP_EXPORTS", str(demo / "exports.yaml"))
    echo(f"1. generating {count} participations for {day} into {landing}/")
    generate_day(landing, day, count, seed=1, faults=True)

    echo("2. starting the GCS emulator and a local OpenSSH sshd on 127.0.0.1")
    emulator = GcsEmulator().start()
    os.environ["STORAGE_EMULATOR_HOST"] = emulator.url
    emulator.create_bucket(DEMO_BUCKET)
    key_file = write_demo_key(demo / "keys" / "acme-service-account.json")
    sshd, sftp = None, None
    try:
        from beop_assets.demo.sshd import LocalSshd, SshdError

        sshd = LocalSshd().start()
        os.environ[PASSWORD_ENV] = sshd.password
        sftp = {
            "host": sshd.host,
            "port": sshd.port,
            "username": sshd.username,
            "directory": str(sshd.upload_dir),
            "password_env": PASSWORD_ENV,
            "known_hosts_file": str(sshd.known_hosts_path),
        }
    except SshdError as exc:
        echo(f"   no local SFTP server ({exc}): the SFTP exports are left out of this demo")
    try:
        registry_file = Path(os.environ["BEOP_EXPORTS"])
        registry_file.parent.mkdir(parents=True, exist_ok=True)
        registry_file.write_text(
            "# Written by `beop-exports demo`.\n" + yaml.safe_dump(_registry(sftp, key_file), sort_keys=False)
        )
        echo(f"3. demo registry: {registry_file}")
        echo(
            f"4. running the daily job for {day} through Dagster (DAGSTER_HOME={os.environ.get('DAGSTER_HOME', '.dagster_home')})"
        )
        outcomes = run_day(day, echo=lambda line: echo(f"   {line}"))
        delivered = demo / "delivered"
        shutil.rmtree(delivered, ignore_errors=True)
        if sshd:
            (delivered / "sftp").mkdir(parents=True)
            for path in sorted(sshd.upload_dir.iterdir()):
                shutil.copy(path, delivered / "sftp" / path.name)
        client = emulator.client()
        for blob in client.list_blobs(DEMO_BUCKET):
            target = delivered / "gcs" / DEMO_BUCKET / blob.name
            target.parent.mkdir(parents=True, exist_ok=True)
            blob.download_to_filename(str(target), raw_download=True)
    finally:
        if sshd:
            sshd.close()
        emulator.close()
    echo("5. outcome, one line per export:")
    for o in outcomes:
        echo(
            f"   {o.export_id:<24} {o.status:<10} {o.file_name or '-'} rows={o.rows if o.rows is not None else '-'}"
            + (f" error: {o.error}" if o.error else "")
        )
    echo(f"   the files the servers received, copied to {delivered}/:")
    for path in sorted(p for p in delivered.rglob("*") if p.is_file()):
        echo(f"     {path.relative_to(delivered)} ({path.stat().st_size} bytes)")
    echo("6. open the UI on the same data:")
    echo(
        f"   BEOP_EXPORTS={os.environ['BEOP_EXPORTS']} DAGSTER_HOME={os.environ.get('DAGSTER_HOME')} "
        ".venv/bin/dagster dev   # then http://127.0.0.1:3000"
    )
    echo("   the demo servers are stopped now: runs started from the UI will fail to deliver (as they should)")
    return 0 if all(o.status == "delivered" for o in outcomes) else 1
