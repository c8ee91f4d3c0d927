"""What the run launcher does to a night: a day of N exports submitted, in batched runs of `--batch`
exports as the delivery sensor asks them, to a real `dagster-webserver` on a Postgres instance, with

- Dagster's default run launcher (a new process per run, started through the code server), and
- dagster-celery's `CeleryRunLauncher` with one and with two long-lived workers (Redis broker),

against the anchor of the same exports run in-process by `run_day` (what `beop-exports run` does).

    .venv/bin/python bench/run_launchers.py                  # 20 exports of a 1,000-participation day
    .venv/bin/python bench/run_launchers.py --exports 40 --participations 5000
    .venv/bin/python bench/run_launchers.py --exports 1000 --launchers celery   # the 1,000-export night

Celery workers run as documented for machines that share no disk: `BEOP_WAREHOUSE=gs://...` (the
model's days in the emulator, each worker's copy in its own folder) and step logs on GCS. The other
rows share one local warehouse folder.

The same real servers as the tests (Postgres, Redis, OpenSSH sshd, the GCS emulator) are started in
temporary folders and stopped at the end; needs root (sshd). Prints one table: wall time from the first
submission to the last run finished, divided by the exports (`s / export`), and the median of each
run's own duration (start to end, as the instance records it). Nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import yaml  # noqa: E402
from dagster import DagsterInstance, DagsterRunStatus  # noqa: E402
from dagster_graphql import DagsterGraphQLClient  # noqa: E402

from beop_assets.demo.gcs_emulator import GcsEmulator  # noqa: E402
from beop_assets.demo.generate import generate_day  # noqa: E402
from beop_assets.demo.service_account import rsa_private_key_pem, service_account_info  # noqa: E402
from beop_assets.demo.sshd import LocalSshd  # noqa: E402
from beop_assets_tests.fixtures.postgres import LocalPostgres, dagster_pg_env  # noqa: E402
from beop_assets_tests.fixtures.redis import LocalRedis  # noqa: E402
from beop_assets_tests.fixtures.topology import (  # noqa: E402
    DEPLOY,
    KEY_ENV,
    PASSWORD_ENV,
    Service,
    base_env,
    celery_worker,
    day_registry,
    instance_home_like,
    start_machines,
    wait_for_runs,
    webserver,
)

DAY = date(2026, 11, 25)
# The default launcher, with runs launched as soon as submitted (as the Celery instance does), so that
# the launcher is the only difference between the rows.
DEFAULT_LAUNCHER_YAML = (DEPLOY / "postgres" / "dagster.yaml").read_text().replace(
    "  runs:\n    max_concurrent_runs: 4\n", ""
) + "run_coordinator:\n  module: dagster._core.run_coordinator\n  class: DefaultRunCoordinator\n"


RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"


def _ranges(exports: list[dict], batch: int) -> list[tuple[str, str, str]]:
    """(job, first export, last export) of the night's batched runs: contiguous ranges of `batch`
    exports of one mode, as the delivery sensor asks them."""
    ranges = []
    for mode, job in (("specific", "deliver_specific_exports"), ("global", "deliver_global_exports")):
        ids = [e["id"] for e in exports if e["mode"] == mode]
        ranges += [(job, ids[i], ids[min(i + batch, len(ids)) - 1]) for i in range(0, len(ids), batch)]
    return ranges


def _submit_day(
    gql: DagsterGraphQLClient, instance: DagsterInstance, exports: list[dict], services: list[Service], batch: int
):
    """The day's load (not timed), then every export in batched runs; returns (wall seconds, run durations)."""
    instance.add_dynamic_partitions("specific_exports", [e["id"] for e in exports if e["mode"] == "specific"])
    instance.add_dynamic_partitions("global_exports", [e["id"] for e in exports if e["mode"] == "global"])
    load = gql.submit_job_execution("load_participations", tags={"dagster/partition": DAY.isoformat()})
    wait_for_runs(instance, [load], services, 600)
    started = time.perf_counter()
    run_ids = []
    for job, first, last in _ranges(exports, batch):
        tags = {RANGE_START: f"{DAY}|{first}", RANGE_END: f"{DAY}|{last}"}
        run_ids.append(gql.submit_job_execution(job, tags=tags))
    runs = wait_for_runs(instance, run_ids, services, max(1800.0, 15.0 * len(run_ids)))
    wall = time.perf_counter() - started
    failed = [r.run_id for r in runs if r.status != DagsterRunStatus.SUCCESS]
    if failed:
        raise RuntimeError(f"{len(failed)} export run(s) failed, e.g. {failed[0]}")
    records = instance.get_run_records()
    durations = [r.end_time - r.start_time for r in records if r.dagster_run.run_id in run_ids and r.end_time]
    return wall, durations


def _topology(kind: str, workers: int, args, servers, work: Path, registry: str, env: dict[str, str]):
    postgres_url = servers["postgres"].create_database()
    env = {**env, **dagster_pg_env(postgres_url), "BEOP_LEDGER_URL": postgres_url}
    env["BEOP_WAREHOUSE"] = str(work / "warehouse")
    services: list[Service] = []
    if kind == "celery":
        emulator = servers["gcs"]
        env["BEOP_WAREHOUSE"] = f"gs://{emulator.create_bucket(f'bench-model-{time.time_ns()}').name}/warehouse"
        env["DAGSTER_COMPUTE_LOGS_BUCKET"] = emulator.create_bucket(f"bench-logs-{time.time_ns()}").name
        env["DAGSTER_CELERY_BROKER_URL"] = servers["redis"].url
        services = [celery_worker(work, f"worker-{i}", registry, env) for i in range(workers)]
        web = webserver(work, registry, env)
    else:
        yaml_path = work / "default-launcher.yaml"
        yaml_path.write_text(DEFAULT_LAUNCHER_YAML)
        web = webserver(work, registry, env, instance_yaml=yaml_path)
    started: list[Service] = []
    try:
        start_machines(started, services, web)
        home = instance_home_like(web, work / "bench-home")
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            with DagsterInstance.from_config(str(home)) as instance:
                exports = yaml.safe_load(registry)["exports"]
                gql = DagsterGraphQLClient("127.0.0.1", port_number=web.port)
                return _submit_day(gql, instance, exports, [*services, web.service], args.batch)
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
    finally:
        for service in reversed(started):
            service.stop()


def _in_process(registry: str, landing: Path, work: Path, env: dict[str, str]):
    from beop_assets.daily_run import run_day

    (work / "exports.yaml").write_text(registry)
    os.environ.update({**env, "BEOP_LANDING": str(landing), "BEOP_WAREHOUSE": str(work / "warehouse")})
    os.environ["BEOP_EXPORTS"] = str(work / "exports.yaml")
    os.environ.pop("BEOP_LEDGER_URL", None)
    with DagsterInstance.ephemeral() as instance:
        run_day(DAY, dagster_instance=instance, echo=lambda _l: None, export_ids=["crm-00"])  # warm-up
        ids = [e["id"] for e in yaml.safe_load(registry)["exports"]]
        started = time.perf_counter()
        run_day(DAY, dagster_instance=instance, echo=lambda _l: None, export_ids=[])  # the load alone
        load = time.perf_counter() - started
        started = time.perf_counter()
        outcomes = run_day(DAY, dagster_instance=instance, echo=lambda _l: None, export_ids=ids)
        wall = time.perf_counter() - started - load  # run_day loads the day first: not an export's cost
    assert {o.status for o in outcomes} == {"delivered"}, outcomes
    return wall, []


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--exports", type=int, default=20)
    parser.add_argument("--participations", type=int, default=1000)
    parser.add_argument(
        "--batch", type=int, default=125, help="exports per run (BEOP_DELIVERY_BATCH_SIZE; the sensor's default is 250)"
    )
    parser.add_argument(
        "--launchers",
        default="in-process,default,celery",
        help="comma-separated rows to run: in-process (the anchor), default, celery (1 and 2 workers)",
    )
    args = parser.parse_args()
    crm, global_ = args.exports * 3 // 4, args.exports - args.exports * 3 // 4

    root = Path(tempfile.mkdtemp(prefix="beop-bench-launchers-"))
    landing = root / "landing"
    generate_day(landing, DAY, args.participations, seed=1)
    key = service_account_info(rsa_private_key_pem(), project_id="beop-bench")
    with LocalPostgres() as pg, LocalRedis() as redis, LocalSshd() as sshd:
        emulator = GcsEmulator(backend="memory").start()
        try:
            servers = {"postgres": pg, "redis": redis, "gcs": emulator}
            wanted = set(args.launchers.split(","))
            env = {
                **base_env(),
                "BEOP_LANDING": str(landing),
                "STORAGE_EMULATOR_HOST": emulator.url,
                PASSWORD_ENV: sshd.password,
                KEY_ENV: json.dumps(key),
            }
            rows = []
            for label, kind, workers in (
                ("in-process run_day (anchor)", "in-process", 0),
                ("default run launcher (process per run)", "default", 0),
                ("CeleryRunLauncher, 1 worker", "celery", 1),
                ("CeleryRunLauncher, 2 workers", "celery", 2),
            ):
                if kind not in wanted:
                    continue
                work = root / kind / str(workers)
                work.mkdir(parents=True)
                bucket = emulator.create_bucket(f"bench-{kind}-{workers}-{time.time_ns()}").name
                registry = day_registry(crm, global_, [sshd.make_dir()], sshd, bucket)
                if kind == "in-process":
                    wall, durations = _in_process(registry, landing, work, env)
                else:
                    wall, durations = _topology(kind, workers, args, servers, work, registry, env)
                median = statistics.median(durations) if durations else float("nan")
                rows.append((label, wall, wall / args.exports, median))
                print(f"{label}: {wall:.1f} s", flush=True)
        finally:
            emulator.close()

    print(
        f"\n{args.exports} exports ({crm} CSV over SFTP, {global_} ndJSON.gz to GCS), {args.participations} participations"
    )
    print(f"{'launcher':42} {'wall s':>8} {'s / export':>11} {'median run s':>13}")
    for label, wall, per_export, median in rows:
        print(f"{label:42} {wall:8.1f} {per_export:11.2f} {median:13.2f}")
    shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
