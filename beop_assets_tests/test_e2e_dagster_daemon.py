"""End to end (issue 5): the real `dagster dev` (webserver, daemon, code server) drives the product.

Nothing is mocked: a real OpenSSH sshd and the GCS emulator receive the files, the landing zone holds
two generated days, and everything is done the way an operator does it, over the webserver's GraphQL:

1. `dagster dev` starts on a fresh DAGSTER_HOME (the dagster.yaml the CLI writes) with an empty registry;
2. two exports are ADDED to the registry file while it runs, and the `export_registry_sensor` (run by
   the daemon) registers them as dynamic partitions, with no restart;
3. a partition backfill loads both days, then a second one builds and delivers both exports for both
   days (`launchPartitionBackfill`), and both backfills are waited for until complete;
4. the files are read back from the servers (CSV header and rows, ndJSON.gz lines) and the delivery
   ledger has exactly one delivery per export and day.

Who delivers (see `test_backfill_delivers_new_exports_through_the_daemon`): the delivery sensor is
stopped before the loads, so the operator's export backfill is the only trigger, and the test asserts
exactly one file per export and day. It is started again at the end, and its tick must see that every
export of the loaded day is already delivered: it launches nothing, and no second file appears.

This test never skips: a server that cannot start fails the test with that server's output.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import re
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from dagster import AssetKey

from beop_assets.daily_run import INSTANCE_YAML
from beop_assets.definitions import defs as load_definitions
from beop_assets.delivery import ledger
from beop_assets.demo.gcs_emulator import GcsEmulator
from beop_assets.demo.generate import generate_day
from beop_assets.demo.service_account import write_demo_key
from beop_assets.demo.sshd import LocalSshd
from beop_assets_tests.fixtures.dagster_dev import DagsterDev, alive, wait, wait_for_backfill

pytestmark = pytest.mark.e2e


# Recent days: inside the partitions' default range (90 days back) and the delivery sensor's look-back.
DAYS = tuple(datetime.now(UTC).date() - timedelta(days=n) for n in (2, 1))
PARTICIPATIONS_PER_DAY = 200

CRM_ID = "acme-crm-e2e"
CRM_NAME = "ACME E2E participations"
CRM_SLUG = "acme-e2e-participations"
CRM_CAMPAIGNS = ["cmp_1"]
CRM_CONTENTS = ["c_5"]
CRM_OPTINS = ["o_1", "o_3", "o_2"]  # o_1 and o_3 share the name "Newsletter ACME"
GLOBAL_ID = "globex-global-e2e"
GLOBAL_ACCOUNT, GLOBAL_USERNAME = "a_2", "globex"
BUCKET, PREFIX = "globex-e2e-exports", "daily/"
PASSWORD_ENV = "BEOP_E2E_SFTP_PASSWORD"

# docs/file-contract.md, in this order; then one column per selected optin.
SPEC_CSV_COLUMNS = [
    "email",
    "phone",
    "firstname",
    "lastname",
    "gender",
    "birthdate",
    "address-line-1",
    "address-line-2",
    "address-zip-code",
    "address-city",
    "address-country",
    "creative-id",
    "creative-name",
    "campaign-id",
    "campaign-name",
]
# docs/file-contract.md, keys of a line in exactly this order.
SPEC_JSON_KEYS = [
    "questions",
    "email",
    "optins",
    "forms",
    "page_url",
    "tc_string",
    "timestamp",
    "publisher_name",
    "publisher_id",
    "content_id",
    "content_name",
    "content_version",
]
UUID4 = r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"

# Bounded waits (seconds), together under pytest's 600 s timeout. Typical times on 2 cores: the server
# is ready in ~15 s, the registry sensor (15 s interval) syncs in ~20 s; the backfill daemon evaluates
# backfills every 30 s, so a backfill needs up to ~30 s to be picked up and ~30 s more to be marked
# complete once its runs are done. The whole test takes ~2 minutes.
REGISTRY_SYNC_TIMEOUT = 60
SENSOR_TICK_TIMEOUT = 45


# --------------------------------------------------------------------------------------------------
# The world: landing zone, warehouse, registry, real servers
# --------------------------------------------------------------------------------------------------


@dataclass
class World:
    root: Path
    landing: Path
    warehouse: Path
    registry: Path
    dagster_home: Path
    key_file: Path
    sshd: LocalSshd
    emulator: GcsEmulator

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("BEOP_", "DAGSTER_", "STORAGE_EMULATOR"))}
        env.update(
            {
                "BEOP_LANDING": str(self.landing),
                "BEOP_WAREHOUSE": str(self.warehouse),
                "BEOP_EXPORTS": str(self.registry),
                "DAGSTER_HOME": str(self.dagster_home),
                "STORAGE_EMULATOR_HOST": self.emulator.url,
                PASSWORD_ENV: self.sshd.password,
                "PYTHONUNBUFFERED": "1",
            }
        )
        return env

    def write_registry(self, exports: list[dict]) -> None:
        """Replace the registry atomically: the sensor never reads a half-written file."""
        partial = self.registry.with_suffix(".partial")
        partial.write_text(yaml.safe_dump({"exports": exports}, sort_keys=False, allow_unicode=True), encoding="utf-8")
        os.replace(partial, self.registry)

    def exports(self) -> list[dict]:
        return [
            {
                "id": CRM_ID,
                "account_id": "a_1",
                "mode": "specific",
                "type": "crm-participation",
                "name": CRM_NAME,
                "campaigns": CRM_CAMPAIGNS,
                "contents": CRM_CONTENTS,
                "optins": CRM_OPTINS,
                "sftp": {
                    "host": self.sshd.host,
                    "port": self.sshd.port,
                    "username": self.sshd.username,
                    "directory": str(self.sshd.upload_dir),
                    "password_env": PASSWORD_ENV,
                    "known_hosts_file": str(self.sshd.known_hosts_path),
                },
            },
            {
                "id": GLOBAL_ID,
                "account_id": GLOBAL_ACCOUNT,
                "mode": "global",
                "gcs": {"bucket": BUCKET, "prefix": PREFIX, "credentials_file": str(self.key_file)},
            },
        ]


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    landing = tmp_path / "landing"
    for seed, day in enumerate(DAYS, start=1):
        generate_day(landing, day, PARTICIPATIONS_PER_DAY, seed=seed)
    dagster_home = tmp_path / "dagster_home"
    dagster_home.mkdir()
    (dagster_home / "dagster.yaml").write_text(INSTANCE_YAML)  # what `daily_run.instance()` writes
    key_file = write_demo_key(tmp_path / "keys" / "globex-service-account.json")
    registry = tmp_path / "exports.yaml"
    registry.write_text("exports: []\n")
    servers: set[int] = set()
    with LocalSshd() as sshd, GcsEmulator(backend="memory") as emulator:
        emulator.create_bucket(BUCKET)
        servers |= {sshd.pid, emulator.pid}
        yield World(tmp_path, landing, tmp_path / "warehouse", registry, dagster_home, key_file, sshd, emulator)
        servers |= set(sshd.session_pids())
    time.sleep(0.2)
    assert not alive(servers), f"sshd or emulator processes survived: {sorted(alive(servers))}"


@pytest.fixture
def dagster_dev(world: World) -> Iterator[DagsterDev]:
    server = DagsterDev(world.env(), world.root / "dagster-dev.log")
    try:
        server.start()
        yield server
    finally:
        server.stop()


# --------------------------------------------------------------------------------------------------
# What the landing zone says the files must contain (an oracle independent of the product)
# --------------------------------------------------------------------------------------------------


def _reference(landing: Path, table: str) -> list[dict]:
    return [json.loads(line) for line in (landing / "reference" / f"{table}.ndjson").read_text().splitlines() if line]


def _events(landing: Path, day: date) -> list[dict]:
    events = []
    for path in sorted((landing / "participations" / f"date={day.isoformat()}").glob("*.ndjson*")):
        opener = gzip.open if path.name.endswith(".gz") else open
        with opener(path, "rt", encoding="utf-8") as handle:
            events += [json.loads(line) for line in handle if line.strip()]
    return events


def _expected_crm_contents(landing: Path, day: date) -> Counter:
    campaign_of = {c["content_id"]: c["campaign_id"] for c in _reference(landing, "contents")}
    return Counter(
        e["content_id"]
        for e in _events(landing, day)
        if e["account_id"] == "a_1"
        and (campaign_of[e["content_id"]] in CRM_CAMPAIGNS or e["content_id"] in CRM_CONTENTS)
    )


def _expected_optin_headers(landing: Path) -> list[str]:
    names = {o["optin_id"]: o["name"] for o in _reference(landing, "optins")}
    headers: list[str] = []
    for optin_id in CRM_OPTINS:
        name = names[optin_id]
        headers.append(f"{name} ({optin_id})" if name in headers else name)
    return headers


# --------------------------------------------------------------------------------------------------
# The test
# --------------------------------------------------------------------------------------------------


def test_backfill_delivers_new_exports_through_the_daemon(world: World, dagster_dev: DagsterDev):
    server = dagster_dev
    crm_keys = [f"{day.isoformat()}|{CRM_ID}" for day in DAYS]
    global_keys = [f"{day.isoformat()}|{GLOBAL_ID}" for day in DAYS]
    assert server.export_partitions() == {"crm_export_file": set(), "global_export_file": set()}

    # Who delivers. The delivery sensor and an operator's export backfill are two independent triggers
    # for the same (day, export) partition: the sensor skips partitions already materialized, but a
    # backfill does not know about runs the sensor has just launched, and every CSV delivery gets a new
    # UUID, so both firing would leave the customer two files for one day. The operator who backfills
    # exports therefore stops the delivery sensor first; so does this test, which makes the backfill the
    # only trigger and lets it assert exactly one file per export and day. The sensor is started again
    # at the end and must then deliver nothing more.
    server.stop_sensor("deliver_loaded_days_sensor")
    server.mark("delivery sensor stopped")

    # 1. Add two exports to the registry while everything runs; the daemon's registry sensor registers them.
    world.write_registry(world.exports())
    # The loads do not depend on the export partitions: launch them while the registry sensor catches up.
    load_backfill = server.launch_backfill(
        {
            "assetSelection": [
                {"path": ["participations"]},
                {"path": ["optins"]},
                {"path": ["rejected_participations"]},
            ],
            "partitionNames": [day.isoformat() for day in DAYS],
            "title": "e2e: load two days",
        }
    )
    wait(
        "the export_registry_sensor to register the new exports",
        REGISTRY_SYNC_TIMEOUT,
        server.export_partitions,
        server,
        done=lambda parts: parts == {"crm_export_file": {CRM_ID}, "global_export_file": {GLOBAL_ID}},
    )
    server.mark("new exports registered as partitions")

    # 2. Wait for the loads, then backfill both exports over both days.
    wait_for_backfill(server, load_backfill, expected_runs=len(DAYS), runs_only=True)
    server.mark("both days loaded")
    export_backfill = server.launch_backfill(
        {
            "partitionsByAssets": [
                {
                    "assetKey": {"path": ["crm_export_file"]},
                    "partitions": {"ranges": [{"start": k, "end": k} for k in crm_keys]},
                },
                {
                    "assetKey": {"path": ["global_export_file"]},
                    "partitions": {"ranges": [{"start": k, "end": k} for k in global_keys]},
                },
            ],
            "title": "e2e: deliver the new exports for two days",
        }
    )
    load = wait_for_backfill(server, load_backfill, expected_runs=len(DAYS))
    server.mark("load backfill complete")
    # Batched (the export assets' backfill policy): a run may cover several (day, export) keys.
    exports = wait_for_backfill(server, export_backfill, expected_runs=None)
    server.mark("export backfill complete")
    assert len(exports["runs"]) <= len(crm_keys) + len(global_keys)
    assert sorted(k for r in exports["runs"] for k in _keys(r)) == sorted(crm_keys + global_keys)
    # No run other than the backfills' ones: nothing else delivered.
    backfill_run_ids = {r["runId"] for r in load["runs"] + exports["runs"]}
    assert {r["runId"] for r in server.runs()} == backfill_run_ids

    # 3. What the customers received.
    delivered_csv = _assert_sftp_files(world)
    _assert_gcs_objects(world)
    _assert_ledger(world, delivered_csv, {r["runId"] for r in exports["runs"]})
    _assert_delivery_checks_passed(server, exports["runs"])
    server.mark("files, objects and ledger checked")

    # 4. The delivery sensor, started again, sees the loaded day already delivered: no run, no second file.
    started = time.time()
    server.start_sensor("deliver_loaded_days_sensor")
    tick = wait(
        "a tick of the restarted deliver_loaded_days_sensor",
        SENSOR_TICK_TIMEOUT,
        lambda: next(
            (
                t
                for t in server.sensor("deliver_loaded_days_sensor")["sensorState"]["ticks"]
                if t["timestamp"] >= started and t["status"] != "STARTED"
            ),
            None,
        ),
        server,
    )
    server.mark("restarted delivery sensor ticked")
    assert tick["status"] == "SKIPPED", tick
    assert "already delivered" in (tick["skipReason"] or ""), tick
    assert tick["runIds"] == []
    assert {r["runId"] for r in server.runs()} == backfill_run_ids
    assert sorted(p.name for p in world.sshd.upload_dir.iterdir()) == sorted(delivered_csv.values())


def _keys(run: dict) -> list[str]:
    """The (day, export) keys a delivery run covers: its partition, or its range (days x one export here)."""
    tags = {t["key"]: t["value"] for t in run["tags"]}
    if "dagster/partition" in tags:
        return [tags["dagster/partition"]]
    start = tags["dagster/asset_partition_range_start"].split("|")
    end = tags["dagster/asset_partition_range_end"].split("|")
    assert start[1] == end[1], tags  # one export per range in this test
    return [f"{d.isoformat()}|{start[1]}" for d in DAYS if start[0] <= d.isoformat() <= end[0]]


def _assert_sftp_files(world: World) -> dict[date, str]:
    """Exactly one CSV per day on the SFTP server, named and shaped as docs/file-contract.md says."""
    names = sorted(p.name for p in world.sshd.upload_dir.iterdir())
    pattern = re.compile(rf"^(\d{{8}})_crm-participation_{CRM_SLUG}_{UUID4}\.csv$")
    assert len(names) == len(DAYS) and all(pattern.match(n) for n in names), names
    by_day: dict[date, str] = {}
    for day in DAYS:
        stamp = (day + timedelta(days=1)).strftime("%Y%m%d")  # the run date: the data day + 1
        matching = [n for n in names if n.startswith(f"{stamp}_")]
        assert len(matching) == 1, (day, names)
        by_day[day] = matching[0]

        raw = (world.sshd.upload_dir / matching[0]).read_bytes()
        assert not raw.startswith(b"\xef\xbb\xbf"), "UTF-8 without BOM"
        rows = list(csv.reader(io.StringIO(raw.decode("utf-8"), newline="")))
        assert rows[0] == SPEC_CSV_COLUMNS + _expected_optin_headers(world.landing)
        records = [dict(zip(rows[0], row, strict=False)) for row in rows[1:]]
        assert all(len(row) == len(rows[0]) for row in rows[1:])
        expected = _expected_crm_contents(world.landing, day)
        assert sum(expected.values()) > 0, "the generated day should select some participations"
        assert Counter(r["creative-id"] for r in records) == expected
        for record in records:
            for optin_column in rows[0][len(SPEC_CSV_COLUMNS) :]:
                assert record[optin_column] in ("true", "false", ""), record
    return by_day


def _assert_gcs_objects(world: World) -> None:
    """Exactly one gzip ndJSON object per day in the bucket, named and shaped as docs/file-contract.md says."""
    client = world.emulator.client()
    blobs = {blob.name: blob for blob in client.list_blobs(BUCKET)}
    expected_names = {
        f"{PREFIX}{(day + timedelta(days=1)).isoformat()}_{GLOBAL_USERNAME}.ndjson.gz": day for day in DAYS
    }
    assert set(blobs) == set(expected_names), sorted(blobs)
    contents = {c["content_id"]: c for c in _reference(world.landing, "contents")}
    for name, day in expected_names.items():
        data = blobs[name].download_as_bytes(raw_download=True)
        assert data[:2] == b"\x1f\x8b", f"{name} is not gzip"
        lines = gzip.decompress(data).decode("utf-8").splitlines()
        records = [json.loads(line) for line in lines]
        events = [e for e in _events(world.landing, day) if e["account_id"] == GLOBAL_ACCOUNT]
        assert len(records) == len(events) > 0
        assert Counter(r["content_id"] for r in records) == Counter(e["content_id"] for e in events)
        for record in records:
            assert list(record) == SPEC_JSON_KEYS
            assert contents[record["content_id"]]["account_id"] == GLOBAL_ACCOUNT
            assert record["content_name"] == contents[record["content_id"]]["name"]
            assert record["timestamp"].startswith(day.isoformat()) and record["timestamp"].endswith("Z")


def _assert_delivery_checks_passed(server: DagsterDev, runs: list[dict]) -> None:
    """Each export run also ran every delivery check of its asset on what it delivered, and all passed."""
    graph = load_definitions().resolve_asset_graph()
    checks_of = {
        asset: {k.name for k in graph.asset_check_keys if k.asset_key == AssetKey(asset)}
        for asset in ("crm_export_file", "global_export_file")
    }
    for run in runs:
        evaluations = [
            e["evaluation"] for e in server.run_events(run["runId"]) if e["__typename"] == "AssetCheckEvaluationEvent"
        ]
        for key in _keys(run):
            asset = "crm_export_file" if key.endswith(f"|{CRM_ID}") else "global_export_file"
            of_key = [e for e in evaluations if e["partition"] == key]
            assert checks_of[asset] and {e["checkName"] for e in of_key} == checks_of[asset], (run, key, evaluations)
            assert all(e["success"] for e in of_key), (run, key, of_key)


def _assert_ledger(world: World, delivered_csv: dict[date, str], export_run_ids: set[str]) -> None:
    """One `delivered` entry per export and day, naming the file the customer has; nothing else."""
    entries = ledger.history(root=world.warehouse)
    assert sorted((e.export_id, e.data_day, e.status) for e in entries) == sorted(
        (export_id, day.isoformat(), "delivered") for export_id in (CRM_ID, GLOBAL_ID) for day in DAYS
    ), entries
    for entry in entries:
        day = date.fromisoformat(entry.data_day)
        assert entry.run_id in export_run_ids
        assert entry.error is None and entry.rows is not None and entry.sha256
        if entry.export_id == CRM_ID:
            assert entry.mode == "specific" and entry.file_name == delivered_csv[day]
            csv_rows = sum(_expected_crm_contents(world.landing, day).values())
            assert entry.rows == csv_rows
        else:
            assert entry.mode == "global"
            assert entry.file_name == f"{(day + timedelta(days=1)).isoformat()}_{GLOBAL_USERNAME}.ndjson.gz"
            assert entry.destination.startswith(f"gs://{BUCKET}/{PREFIX}")
