"""End to end (issue 21): an export the platform adds to the registry table while `dagster dev` runs is
delivered by the product alone.

Real PostgreSQL (the registry table), the real `dagster dev` (webserver, daemon, code server) started
with BEOP_EXPORTS naming that table, a real OpenSSH sshd. Yesterday is loaded through a partition
backfill, as an operator (or the load schedule) would, while the table is still empty. Then one row is
written into the table by the platform's statement (`replace_rows`, what `registry import` runs), and
the test only waits: the registry sensor registers the export as a partition, the delivery sensor
requests its run, the file lands in the customer's directory, once, and its ledger row names the
table's revision.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from beop_assets.daily_run import INSTANCE_YAML
from beop_assets.delivery import ledger
from beop_assets.demo.generate import generate_day
from beop_assets.demo.sshd import LocalSshd
from beop_assets.exports import registry_table
from beop_assets.exports.registry_table import TableAddress
from beop_assets_tests.fixtures.dagster_dev import DagsterDev, wait, wait_for_backfill

pytestmark = pytest.mark.e2e

DAY = datetime.now(UTC).date() - timedelta(days=1)  # inside the delivery sensor's look-back
EXPORT_ID = "acme-table-e2e"
PASSWORD_ENV = "BEOP_E2E_TABLE_SFTP_PASSWORD"
DELIVERY_SENSOR = "deliver_loaded_days_sensor"
REGISTRY_SYNC_TIMEOUT = 60  # the registry sensor ticks every 15 s
DELIVERY_TIMEOUT = 120  # a delivery sensor tick (15 s), the run's process start, the run


@pytest.fixture
def directory(sshd: LocalSshd) -> Path:
    """The customer's SFTP directory, of this test alone on the session's sshd."""
    return sshd.make_dir()


@pytest.fixture
def dagster_dev(tmp_path: Path, sshd: LocalSshd, postgres_url: str) -> Iterator[DagsterDev]:
    generate_day(tmp_path / "landing", DAY, 200, seed=21)
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(INSTANCE_YAML)  # what `daily_run.instance()` writes
    registry_table.create(TableAddress.parse(postgres_url))  # `registry init`: an empty registry
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BEOP_", "DAGSTER_", "STORAGE_EMULATOR"))}
    env.update(
        {
            "BEOP_LANDING": str(tmp_path / "landing"),
            "BEOP_WAREHOUSE": str(tmp_path / "warehouse"),
            "BEOP_EXPORTS": postgres_url,
            "DAGSTER_HOME": str(home),
            PASSWORD_ENV: sshd.password,
            "PYTHONUNBUFFERED": "1",
        }
    )
    server = DagsterDev(env, tmp_path / "dagster-dev.log")
    try:
        server.start()
        yield server
    finally:
        server.stop()


def test_a_row_added_to_the_table_is_delivered_by_the_sensors_alone(
    dagster_dev: DagsterDev, sshd: LocalSshd, directory: Path, postgres_url: str, tmp_path: Path
):
    server = dagster_dev
    table = TableAddress.parse(postgres_url)
    assert server.export_partitions() == {"crm_export_file": set(), "global_export_file": set()}

    load = server.launch_backfill(
        {
            "assetSelection": [
                {"path": ["participations"]},
                {"path": ["optins"]},
                {"path": ["rejected_participations"]},
            ],
            "partitionNames": [DAY.isoformat()],
            "title": "e2e: load yesterday",
        }
    )
    wait_for_backfill(server, load, expected_runs=1, runs_only=True)
    server.mark("yesterday loaded, the table still empty")

    # The platform adds a row (its id, account, selection and SFTP target; the password by variable).
    registry_table.replace_rows(
        table,
        [
            {
                "id": EXPORT_ID,
                "account_id": "a_1",
                "mode": "specific",
                "type": "crm-participation",
                "name": "ACME from the table",
                "campaigns": ["cmp_1"],
                "optins": ["o_1"],
                "sftp": {
                    "host": sshd.host,
                    "port": sshd.port,
                    "username": sshd.username,
                    "directory": str(directory),
                    "password_env": PASSWORD_ENV,
                    "known_hosts_file": str(sshd.known_hosts_path),
                },
            }
        ],
        delete_others=False,
    )
    revision = registry_table.read_revision(table)
    server.mark("row added to the table")

    wait(
        "the registry sensor to register the table's new row",
        REGISTRY_SYNC_TIMEOUT,
        server.export_partitions,
        server,
        done=lambda parts: parts["crm_export_file"] == {EXPORT_ID},
    )
    server.mark("partition registered")

    def delivered() -> list[Path]:
        # Named after the run date, the data day + 1 (docs/file-contract.md).
        return sorted(directory.glob(f"{DAY + timedelta(days=1):%Y%m%d}_crm-participation_*.csv"))

    (file,) = wait("the delivery sensor's run to deliver the file", DELIVERY_TIMEOUT, delivered, server)
    server.mark(f"delivered {file.name}")
    wait(
        "the delivery run to finish",
        DELIVERY_TIMEOUT,
        lambda: [r["status"] for r in server.runs() if r["jobName"] == "deliver_specific_exports"],
        server,
        done=lambda statuses: statuses and all(s == "SUCCESS" for s in statuses),
    )
    runs = [r for r in server.runs() if r["jobName"] == "deliver_specific_exports"]
    assert len(runs) == 1, runs
    tags = {t["key"]: t["value"] for t in runs[0]["tags"]}
    assert tags["dagster/sensor_name"] == DELIVERY_SENSOR  # nobody but the sensor launched it
    assert file.read_text(encoding="utf-8").startswith('"email","phone",')
    assert [p.name for p in directory.iterdir()] == [file.name]  # no temporary file left beside it

    (row,) = ledger.history(export_id=EXPORT_ID, root=tmp_path / "warehouse")
    assert (row.status, row.data_day, row.file_name) == ("delivered", DAY.isoformat(), file.name)
    assert row.registry_revision == revision

    time.sleep(20)  # a later delivery tick (every 15 s) finds the day delivered: no second file
    assert delivered() == [file]
