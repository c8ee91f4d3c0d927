"""End to end, the nightly path on Celery workers: the daemon's sensors, not a person, deliver the day.

The same loopback topology as test_topology_celery.py (Postgres, Redis, the GCS emulator holding the
landing zone, the `gs://` warehouse and the compute logs, OpenSSH sshd), with the Dagster daemon on a
machine of its own next to the webserver and two Celery workers. Yesterday's load is submitted as
the load schedule submits it; from there nothing is done by the test: the registry sensor registers
every export as a partition, the delivery sensor sees the loaded day and requests runs of contiguous
exports (BEOP_DELIVERY_BATCH_SIZE, lowered here as a deployment with many workers lowers it to spread a
small night over them), and `CeleryRunLauncher` puts each on the broker for the workers. Asserted:
every export is delivered exactly once (the ledger, in Postgres), by a run the delivery sensor
requested, executed on a worker; both workers ran some; a later sensor tick requests nothing more.
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
import yaml
from dagster import DagsterInstance, DagsterRunStatus
from dagster_graphql import DagsterGraphQLClient
from google.cloud import storage

from beop_assets.demo.generate import generate_day
from beop_assets_tests.fixtures.definitions import range_keys
from beop_assets_tests.fixtures.postgres import dagster_pg_env
from beop_assets_tests.fixtures.topology import (
    KEY_ENV,
    PASSWORD_ENV,
    TERMINAL,
    TopologyError,
    base_env,
    celery_worker,
    daemon,
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

CRM_EXPORTS = 6
GLOBAL_EXPORTS = 4
DELIVERY_SENSOR = "deliver_loaded_days_sensor"
TIMEOUT = float(os.environ.get("BEOP_TOPOLOGY_RUN_TIMEOUT", "420"))
BATCH_SIZE = 2  # 6 + 4 exports: 5 delivery runs for the two workers
RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"


def keys_of(instance: DagsterInstance, run) -> list[str]:
    """The (day, export) keys a batched delivery run covers: its range, in the partitions' order."""
    start, end = run.tags[RANGE_START], run.tags[RANGE_END]
    name = "specific_exports" if start.split("|")[1].startswith("crm-") else "global_exports"
    return range_keys(start, end, list(instance.get_dynamic_partitions(name)))


def test_the_daemon_delivers_a_loaded_day_through_celery_workers(
    tmp_path, sshd, gcs_emulator, gcs_key, postgres_url, redis_broker, topology_services, monkeypatch
):
    day = datetime.now(UTC).date() - timedelta(days=1)  # the delivery sensor looks back from today
    generated = tmp_path / "generated-landing"
    generate_day(generated, day, 300, seed=15)
    client = storage.Client.create_anonymous_client()
    buckets = {
        name: gcs_emulator.create_bucket(f"nightly-{name}-{time.time_ns()}", exist_ok=False).name
        for name in ("landing", "customer", "warehouse", "logs")
    }
    upload_folder(client, buckets["landing"], "landing", generated)
    registry = day_registry(CRM_EXPORTS, GLOBAL_EXPORTS, [sshd.make_dir()], sshd, buckets["customer"])
    export_ids = [e["id"] for e in yaml.safe_load(registry)["exports"]]
    env = {
        **base_env(),
        **dagster_pg_env(postgres_url),
        "BEOP_LEDGER_URL": postgres_url,
        "BEOP_DELIVERY_BATCH_SIZE": str(BATCH_SIZE),
        "DAGSTER_CELERY_BROKER_URL": redis_broker.url,
        "BEOP_LANDING": f"gs://{buckets['landing']}/landing",
        "BEOP_WAREHOUSE": f"gs://{buckets['warehouse']}/warehouse",
        "DAGSTER_COMPUTE_LOGS_BUCKET": buckets["logs"],
        "STORAGE_EMULATOR_HOST": gcs_emulator.url,
        PASSWORD_ENV: sshd.password,
        KEY_ENV: gcs_key.text,
    }
    machines = tmp_path / "machines"
    workers = [celery_worker(machines, name, registry, env) for name in ("worker-a", "worker-b")]
    web = webserver(machines, registry, env)
    sensors = daemon(machines, registry, env)
    start_machines(topology_services, workers, web, sensors)

    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with DagsterInstance.from_config(str(instance_home_like(web, tmp_path / "test-process-home"))) as instance:
        # What the load schedule submits at night (its cron is not waited for here).
        gql = DagsterGraphQLClient("127.0.0.1", port_number=web.port)
        load_id = gql.submit_job_execution("load_participations", tags={"dagster/partition": day.isoformat()})
        (load,) = wait_for_runs(instance, [load_id], topology_services, TIMEOUT)
        assert load.status == DagsterRunStatus.SUCCESS, run_errors(instance, load_id)

        # From here on, only the daemon acts.
        deadline = time.monotonic() + TIMEOUT
        while True:
            runs = [r for r in instance.get_runs() if r.job_name.startswith("deliver_")]
            finished = [r for r in runs if r.status in TERMINAL]
            covered = sum(len(keys_of(instance, r)) for r in finished)
            if covered >= len(export_ids) and len(finished) == len(runs):
                break
            for service in topology_services:
                service.check_alive()
            if time.monotonic() > deadline:
                raise TopologyError(
                    f"{covered}/{len(export_ids)} exports' delivery runs finished within {TIMEOUT} s:\n"
                    + "\n".join(f"--- {s.name} ---\n{s.log_text(4000)}" for s in topology_services)
                )
            time.sleep(1)
        failed = {r.run_id: run_errors(instance, r.run_id) for r in runs if r.status != DagsterRunStatus.SUCCESS}
        assert not failed, failed
        assert sorted(k for r in runs for k in keys_of(instance, r)) == sorted(f"{day}|{i}" for i in export_ids)
        assert max(len(keys_of(instance, r)) for r in runs) == BATCH_SIZE  # ranges, cut at the batch size
        assert len(runs) == 5
        assert {r.tags.get("dagster/sensor_name") for r in runs} == {DELIVERY_SENSOR}
        assert sorted(instance.get_dynamic_partitions("specific_exports")) == sorted(
            i for i in export_ids if i.startswith("crm-")
        )  # registered by the registry sensor, not by the test

        task_of = {r.run_id: r.tags["dagster-celery/task_id"] for r in [load, *runs]}
        ran_on = workers_of_runs(workers, task_of)
        assert all(len(names) == 1 for names in ran_on.values()), ran_on
        assert all(any(names == [w.name] for names in ran_on.values()) for w in workers), ran_on

        # A later tick of the delivery sensor finds the day delivered and requests nothing.
        time.sleep(20)  # the sensor ticks every 15 s
        again = [r for r in instance.get_runs() if r.job_name.startswith("deliver_")]
        assert len(again) == len(runs)

    engine = sa.create_engine(postgres_url.replace("postgresql://", "postgresql+psycopg2://"))
    with engine.connect() as con:
        rows = con.execute(sa.text("SELECT export_id, run_id, status FROM deliveries")).all()
    engine.dispose()
    assert sorted(r.export_id for r in rows) == sorted(export_ids)  # exactly one delivery each
    assert {r.status for r in rows} == {"delivered"}
    assert {r.run_id for r in rows} == {r.run_id for r in runs}
