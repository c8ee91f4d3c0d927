"""End to end, the distributed topology on loopback (docs/deployment.md, "Celery workers").

Real servers only: Postgres (Dagster's instance and the delivery ledger, one database), Redis (the
Celery broker), the GCS emulator (the landing zone and the customers' bucket), OpenSSH sshd (the
customers' SFTP). A Dagster webserver and two Celery workers run in working folders of their own
(their own DAGSTER_HOME, registry copy and current directory), configured by environment only.

A day of 24 exports is submitted to the webserver as the UI would (GraphQL); dagster-celery's
`CeleryRunLauncher` puts every run on the broker and the workers execute them. The test asserts that
every run succeeded, that both workers ran some (from the workers' own logs), that every file
delivered equals the one a single-machine run of the same registry delivers, and that the ledger
rows are in Postgres, one per export, naming the run that delivered it.

No directory is shared between the machines: each has its own warehouse folder, and the model's
Parquet days travel through GCS (`BEOP_WAREHOUSE_MIRROR`): the worker that loads the day pushes it, the
workers that export it pull it. (The SFTP directories and the known_hosts file are the customers'
side, on the loopback sshd.)
"""

from __future__ import annotations

import gzip
import os
import time
from datetime import date
from pathlib import Path
from urllib.parse import urlparse

import pytest
import sqlalchemy as sa
import yaml
from dagster import DagsterInstance, DagsterRunStatus
from dagster_graphql import DagsterGraphQLClient
from google.cloud import storage

from beop_assets.demo.generate import generate_day
from beop_assets.demo.sshd import LocalSshd
from beop_assets.model.warehouse import MODEL_TABLES
from beop_assets_tests.fixtures.postgres import dagster_pg_env
from beop_assets_tests.fixtures.topology import (
    KEY_ENV,
    PASSWORD_ENV,
    base_env,
    celery_worker,
    day_registry,
    instance_home_like,
    run_errors,
    start_machines,
    upload_folder,
    wait_for_runs,
    webserver,
    workers_of_runs,
)

pytestmark = pytest.mark.e2e

DAY = date(2026, 11, 25)
PARTICIPATIONS = 400
CRM_EXPORTS = 16
GLOBAL_EXPORTS = 8
RUN_TIMEOUT = float(os.environ.get("BEOP_TOPOLOGY_RUN_TIMEOUT", "420"))
CELERY_TASK_TAG = "dagster-celery/task_id"


def _single_machine_files(
    tmp_path: Path, landing: Path, registry: str, monkeypatch, sshd: LocalSshd, bucket: str
) -> tuple[dict[str, bytes], dict[str, bytes]]:
    """The same registry delivered by the one-box default (in-process runs, SQLite ledger)."""
    from beop_assets.daily_run import run_day
    from beop_assets.delivery import ledger

    folder = tmp_path / "single-machine"
    folder.mkdir()
    (folder / "exports.yaml").write_text(registry, encoding="utf-8")
    monkeypatch.setenv("BEOP_LANDING", str(landing))
    monkeypatch.setenv("BEOP_WAREHOUSE", str(folder / "warehouse"))
    monkeypatch.setenv("BEOP_EXPORTS", str(folder / "exports.yaml"))
    monkeypatch.delenv("BEOP_LEDGER_URL", raising=False)
    with DagsterInstance.ephemeral() as instance:
        outcomes = run_day(DAY, dagster_instance=instance, echo=lambda _line: None)
    assert {o.status for o in outcomes} == {"delivered"}, [o for o in outcomes if o.status != "delivered"]
    csv_files = {}
    for delivery in ledger.history(status="delivered", root=folder / "warehouse"):
        if delivery.mode == "specific":
            assert delivery.destination
            csv_files[delivery.export_id] = _sftp_file(delivery.destination).read_bytes()
    return csv_files, _objects(bucket)


def _sftp_file(destination: str) -> Path:
    """The local path of a file delivered to the loopback sshd (its SFTP paths are local paths)."""
    return Path(urlparse(destination).path)


def _objects(bucket: str) -> dict[str, bytes]:
    client = storage.Client.create_anonymous_client()
    return {blob.name: gzip.decompress(blob.download_as_bytes(raw_download=True)) for blob in client.list_blobs(bucket)}


def test_a_day_of_exports_runs_on_two_celery_workers(
    tmp_path, sshd, gcs_emulator, gcs_key, postgres_url, redis_broker, topology_services, monkeypatch
):
    # -- the data and the customers' side ----------------------------------------------------------
    generated = tmp_path / "generated-landing"
    generate_day(generated, DAY, PARTICIPATIONS, seed=14)
    landing_name = gcs_emulator.create_bucket(f"topology-landing-{time.time_ns()}", exist_ok=False).name
    upload_folder(storage.Client.create_anonymous_client(), landing_name, "landing", generated)
    customer_bucket = gcs_emulator.create_bucket(f"topology-customer-{time.time_ns()}", exist_ok=False).name
    single_bucket = gcs_emulator.create_bucket(f"topology-single-{time.time_ns()}", exist_ok=False).name
    sftp_dirs = [sshd.make_dir(), sshd.make_dir()]
    registry = day_registry(CRM_EXPORTS, GLOBAL_EXPORTS, sftp_dirs, sshd, customer_bucket)

    # -- the machines: one webserver, two workers; shared state only in Postgres, Redis and GCS ------
    broker = redis_broker
    warehouse_bucket = gcs_emulator.create_bucket(f"topology-warehouse-{time.time_ns()}", exist_ok=False).name
    logs_bucket = gcs_emulator.create_bucket(f"topology-logs-{time.time_ns()}", exist_ok=False).name
    env = {
        **base_env(),
        **dagster_pg_env(postgres_url),
        "BEOP_LEDGER_URL": postgres_url,
        "DAGSTER_CELERY_BROKER_URL": broker.url,
        "BEOP_LANDING": f"gs://{landing_name}/landing",
        "BEOP_WAREHOUSE": f"gs://{warehouse_bucket}/warehouse",  # each machine's copy: its own folder
        "DAGSTER_COMPUTE_LOGS_BUCKET": logs_bucket,
        "STORAGE_EMULATOR_HOST": gcs_emulator.url,
        PASSWORD_ENV: sshd.password,
        KEY_ENV: gcs_key.text,
    }
    machines = tmp_path / "machines"
    workers = [celery_worker(machines, name, registry, env) for name in ("worker-a", "worker-b")]
    web = webserver(machines, registry, env)
    start_machines(topology_services, workers, web)

    # -- a day's runs, submitted as the UI submits them -------------------------------------------
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    gql = DagsterGraphQLClient("127.0.0.1", port_number=web.port)
    with DagsterInstance.from_config(str(instance_home_like(web, tmp_path / "test-process-home"))) as instance:
        exports = yaml.safe_load(registry)["exports"]
        instance.add_dynamic_partitions("specific_exports", [e["id"] for e in exports if e["mode"] == "specific"])
        instance.add_dynamic_partitions("global_exports", [e["id"] for e in exports if e["mode"] == "global"])

        load_id = gql.submit_job_execution("load_participations", tags={"dagster/partition": DAY.isoformat()})
        (load,) = wait_for_runs(instance, [load_id], topology_services, RUN_TIMEOUT)
        assert load.status == DagsterRunStatus.SUCCESS, run_errors(instance, load_id)

        run_ids = {}
        for export in exports:
            job = "deliver_specific_exports" if export["mode"] == "specific" else "deliver_global_exports"
            run_ids[export["id"]] = gql.submit_job_execution(job, tags={"dagster/partition": f"{DAY}|{export['id']}"})
        runs = wait_for_runs(instance, list(run_ids.values()), topology_services, RUN_TIMEOUT)
        failed = {r.run_id: run_errors(instance, r.run_id) for r in runs if r.status != DagsterRunStatus.SUCCESS}
        assert not failed, failed

        # -- on both workers ------------------------------------------------------------------------
        task_of = {r.run_id: r.tags[CELERY_TASK_TAG] for r in [load, *runs]}
        ran_on = workers_of_runs(workers, task_of)
        assert all(len(names) == 1 for names in ran_on.values()), ran_on  # each run on exactly one worker
        per_worker = {w.name: sum(1 for names in ran_on.values() if names == [w.name]) for w in workers}
        assert all(count >= 1 for count in per_worker.values()), per_worker
        assert sum(per_worker.values()) == len(exports) + 1

    # -- every run's step logs on GCS, whichever worker ran it -----------------------------------------
    logs = {b.name: b for b in storage.Client.create_anonymous_client().list_blobs(logs_bucket)}
    for run_id in task_of:
        assert any(name.startswith(f"dagster-compute-logs/storage/{run_id}/") for name in logs), run_id
    load_err = b"".join(
        blob.download_as_bytes()
        for name, blob in logs.items()
        if name.startswith(f"dagster-compute-logs/storage/{load.run_id}/") and name.endswith(".err")
    )
    assert f"stored as gs://{warehouse_bucket}/warehouse/".encode() in load_err, load_err[-2000:]

    # -- the ledger, in Postgres --------------------------------------------------------------------
    engine = sa.create_engine(postgres_url.replace("postgresql://", "postgresql+psycopg2://"))
    with engine.connect() as con:
        rows = con.execute(sa.text("SELECT export_id, run_id, status, destination, rows FROM deliveries")).all()
    engine.dispose()
    assert sorted(r.export_id for r in rows) == sorted(run_ids)  # one attempt per export, none retried
    assert {r.export_id: r.run_id for r in rows} == run_ids
    assert {r.status for r in rows} == {"delivered"}
    assert sum(r.rows for r in rows) > 0
    # -- the model's day went through GCS, not through a shared folder -------------------------------
    mirrored = sorted(b.name for b in storage.Client.create_anonymous_client().list_blobs(warehouse_bucket))
    assert mirrored == sorted(f"warehouse/{t}/date={DAY}/data.parquet" for t in MODEL_TABLES)
    for worker in workers:
        own = worker.folder / "warehouse"
        assert (own / "participations" / f"date={DAY}" / "data.parquet").exists(), worker.name
        assert not (own / "deliveries.sqlite").exists()
    loader = [w for w in workers if ran_on[load.run_id] == [w.name]][0]
    assert (loader.folder / "warehouse" / "beop.duckdb").exists()  # the DuckDB file stays where it was built
    assert not any((w.folder / "warehouse" / "beop.duckdb").exists() for w in workers if w is not loader)

    # -- every file equal to the single-machine run's -------------------------------------------------
    delivered_csv = {
        r.export_id: _sftp_file(r.destination).read_bytes() for r in rows if r.export_id.startswith("crm-")
    }
    delivered_objects = _objects(customer_bucket)
    assert len(delivered_csv) == CRM_EXPORTS and len(delivered_objects) == GLOBAL_EXPORTS
    assert sum(len(list(d.iterdir())) for d in sftp_dirs) == CRM_EXPORTS  # nothing else left behind

    single_dirs = [sshd.make_dir(), sshd.make_dir()]
    single_csv, single_objects = _single_machine_files(
        tmp_path,
        generated,
        day_registry(CRM_EXPORTS, GLOBAL_EXPORTS, single_dirs, sshd, single_bucket),
        monkeypatch,
        sshd,
        single_bucket,
    )
    assert delivered_csv == single_csv
    assert delivered_objects == single_objects
