"""The per-export cost of a night of many small exports, through `beop-exports run` (see bench/README.md).

    .venv/bin/python bench/exports_night.py --exports 200            # 100 CSV to 10 SFTP dirs + 100 global
    .venv/bin/python bench/exports_night.py --exports 1000
    .venv/bin/python bench/exports_night.py --exports 200 --profile night.prof   # cProfile of the CLI

One small day (`--participations`, default 2,000) is generated with the project's generator; a real
OpenSSH sshd on 127.0.0.1 (`LocalSshd`) serves `--directories` upload directories and the GCS
emulator one bucket. The registry holds `--exports` exports of the account a_1: half specific
(crm-participation and crm-optin in turn, spread over the directories), half global (one prefix each).
Then the operator's command runs in a child process, in a fresh Dagster instance, exactly as an
operator types it: `beop-exports run --date DAY`. Its wall time (import included) is divided by the
number of exports and printed next to the targets. Every file is counted on the servers afterwards:
a run that does not deliver everything is reported as such, not timed as a success.

Needs root (the loopback sshd, as the tests). Nothing here asserts: it prints PASS or MISS.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
SFTP_PASSWORD_ENV = "BEOP_BENCH_SFTP_PASSWORD"
ACCOUNT = "a_1"
BUCKET = "night-bucket"
# Per small export, through `beop-exports run` (issue 13): 0.4 s; and 1,000 exports in 10 minutes.
TARGETS_S = {"cli": 0.4, "night-1000": 0.6}


# `beop-exports run ...` as the console script runs it; `--source` puts another tree first (the
# editable install's finder would otherwise always win).
LAUNCHER = """\
import sys
source = {source}
if source:
    sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in repr(f)]
    sys.path.insert(0, source)
if __name__ == "__main__":
    from beop_assets.cli import main
    sys.argv[0] = "beop-exports"
    main()
"""


def _tree_cpu(pid: int | None) -> float:
    """CPU seconds of a server process and of the children it reaped (sshd's per-connection processes)."""
    if not pid:
        return 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(v) for v in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def registry(count: int, directories: list[str], sftp: dict, gcs: dict) -> dict:
    exports = []
    for n in range(count):
        if n % 2 == 0:
            kind = "crm-participation" if (n // 2) % 2 == 0 else "crm-optin"
            entry = {
                "id": f"night-crm-{n:04d}",
                "account_id": ACCOUNT,
                "mode": "specific",
                "type": kind,
                "name": f"Night CRM {n}",
                "optins": ["o_1", "o_3"],
                "sftp": {**sftp, "directory": directories[(n // 2) % len(directories)]},
            }
            if kind == "crm-participation":
                entry["campaigns"] = ["cmp_1"]
            exports.append(entry)
        else:
            exports.append(
                {
                    "id": f"night-global-{n:04d}",
                    "account_id": ACCOUNT,
                    "mode": "global",
                    "gcs": {**gcs, "prefix": f"night/{n:04d}/"},
                }
            )
    return {"exports": exports}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--exports", type=int, default=200)
    parser.add_argument("--directories", type=int, default=10)
    parser.add_argument("--participations", type=int, default=2000)
    parser.add_argument("--profile", type=Path, default=None, help="write a cProfile of the CLI process here")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument(
        "--daemon",
        action="store_true",
        help="the nightly path instead: dagster-daemon, the day loaded, the delivery sensor, runs launched by the daemon",
    )
    parser.add_argument("--env", action="append", default=[], help="extra VAR=VALUE for the CLI (repeatable)")
    parser.add_argument(
        "--dagster-yaml", type=Path, default=None, help="the instance's dagster.yaml (default: the CLI's)"
    )
    parser.add_argument(
        "--source", type=Path, default=None, help="run the product from this folder (e.g. an older commit's tree)"
    )
    args = parser.parse_args(argv)

    sys.path.insert(0, str(REPO))
    from beop_assets.demo.gcs_emulator import GcsEmulator
    from beop_assets.demo.generate import generate_day
    from beop_assets.demo.service_account import write_demo_key
    from beop_assets.demo.sshd import LocalSshd

    work = Path(tempfile.mkdtemp(prefix="beop-night-"))
    day = (datetime.now(UTC) - timedelta(days=1)).date()
    sshd = LocalSshd().start()
    emulator = GcsEmulator(backend="memory").start()
    try:
        emulator.create_bucket(BUCKET)
        key_file = write_demo_key(work / "keys" / "night-service-account.json")
        directories = [str(sshd.make_dir(f"night-{n:02d}")) for n in range(args.directories)]
        sftp = {
            "host": sshd.host,
            "port": sshd.port,
            "username": sshd.username,
            "password_env": SFTP_PASSWORD_ENV,
            "known_hosts_file": str(sshd.known_hosts_path),
        }
        gcs = {"bucket": BUCKET, "credentials_file": str(key_file)}
        registry_file = work / "exports.yaml"
        registry_file.write_text(yaml.safe_dump(registry(args.exports, directories, sftp, gcs), sort_keys=False))
        generate_day(work / "landing", day, args.participations, seed=1)
        (work / "dagster_home").mkdir()
        if args.dagster_yaml:
            shutil.copy(args.dagster_yaml, work / "dagster_home" / "dagster.yaml")
        env = {
            **os.environ,
            SFTP_PASSWORD_ENV: sshd.password,
            "STORAGE_EMULATOR_HOST": emulator.url,
            "BEOP_LANDING": str(work / "landing"),
            "BEOP_WAREHOUSE": str(work / "warehouse"),
            "BEOP_EXPORTS": str(registry_file),
            "DAGSTER_HOME": str(work / "dagster_home"),
        }
        env.update(dict(item.split("=", 1) for item in args.env))
        if args.daemon:
            return nightly_path(args, work, env, day, directories, emulator)
        launcher = work / "beop_exports_cli.py"
        launcher.write_text(LAUNCHER.format(source=repr(str(args.source.resolve()) if args.source else None)))
        command = [sys.executable, str(launcher), "run", "--date", day.isoformat()]
        if args.profile:
            command[1:1] = ["-m", "cProfile", "-o", str(args.profile.resolve())]
        servers_cpu_before = _tree_cpu(sshd.pid) + _tree_cpu(emulator.pid)
        load_before = os.getloadavg()
        started = time.perf_counter()
        cpu_before = os.times()
        done = subprocess.run(command, env=env, capture_output=True, text=True, cwd=work)
        wall = time.perf_counter() - started
        cpu_after = os.times()
        cpu = (cpu_after.children_user - cpu_before.children_user) + (
            cpu_after.children_system - cpu_before.children_system
        )
        load_after = os.getloadavg()
        servers_cpu = _tree_cpu(sshd.pid) + _tree_cpu(emulator.pid) - servers_cpu_before
        summary = re.search(r"(\d+) delivered, (\d+) failed", done.stdout)
        delivered, failed = (int(summary.group(1)), int(summary.group(2))) if summary else (0, args.exports)
        on_sftp = sum(len([p for p in Path(d).iterdir() if not p.name.startswith(".")]) for d in directories)
        on_gcs = len(list(emulator.client().list_blobs(BUCKET)))
        per_export = wall / args.exports
        target = TARGETS_S["cli"] if args.exports <= 200 else TARGETS_S["night-1000"]
        verdict = "PASS" if per_export <= target and failed == 0 else "MISS"
        print(
            f"exports              {args.exports} ({args.exports // 2 + args.exports % 2} CSV over SFTP to "
            f"{args.directories} directories, {args.exports // 2} ndJSON.gz to GCS), {args.participations} "
            f"participations on {day}"
        )
        print(f"command              {' '.join(command[-4:])} (exit {done.returncode})")
        print(f"outcome              {delivered} delivered, {failed} failed; files on SFTP {on_sftp}, on GCS {on_gcs}")
        print(
            f"wall                 {wall:.1f} s   (CPU: CLI process {cpu:.1f} s, sshd + GCS emulator {servers_cpu:.1f} s)"
        )
        print(f"per export           {per_export:.3f} s   target {target:.1f} s   {verdict}")
        if args.exports >= 1000:
            print(f"1,000 in 10 minutes  {wall / args.exports * 1000 / 60:.1f} min per 1,000")
        print(f"load average         {load_before[0]:.2f} before, {load_after[0]:.2f} after (2 shared cores)")
        if done.returncode not in (0, 1) or failed:
            print("--- CLI output (tail) ---")
            print(done.stdout[-3000:])
            print(done.stderr[-3000:])
        return 0
    finally:
        sshd.close()
        emulator.close()
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def nightly_path(args, work: Path, env: dict, day, directories: list[str], emulator) -> int:
    """`dagster-daemon run` on the repository's workspace, with the instance the CLI writes. The sensors
    are on by default: the registry sensor adds the partitions; once they are in, the day is loaded
    (the run the nightly schedule would launch, executed here so that the clock is not waited for);
    the delivery sensor then requests one run per export, and the daemon's run queue launches them.
    Timed from the end of the load to the end of the last delivery run."""
    from dagster import DagsterInstance, DagsterRunStatus, RunsFilter

    from beop_assets.daily_run import INSTANCE_YAML, QUIET

    home = Path(env["DAGSTER_HOME"])
    if not (home / "dagster.yaml").exists():
        (home / "dagster.yaml").write_text(INSTANCE_YAML)
    os.environ.update(env)
    from beop_assets.definitions import defs as load_definitions

    instance = DagsterInstance.from_config(str(home))
    log = open(work / "daemon.log", "ab")  # noqa: SIM115 (closed in `finally`, after the daemon)
    daemon = subprocess.Popen(
        [str(REPO / ".venv" / "bin" / "dagster-daemon"), "run", "-w", str(REPO / "workspace.yaml")],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            partitions = len(instance.get_dynamic_partitions("specific_exports")) + len(
                instance.get_dynamic_partitions("global_exports")
            )
            if partitions >= args.exports:
                break
            time.sleep(1)
        else:
            print("the registry sensor did not add the partitions in 300 s; see", work / "daemon.log")
            return 1
        load = (
            load_definitions()
            .resolve_job_def("load_participations")
            .execute_in_process(
                partition_key=day.isoformat(), instance=instance, tags={"beop/trigger": "nightly"}, run_config=QUIET
            )
        )
        loaded_at = time.perf_counter()
        load_before = os.getloadavg()
        print(f"loaded {day} ({'ok' if load.success else 'FAILED'}); waiting for {args.exports} delivery runs")
        finished = {DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED}
        records = []
        while time.perf_counter() - loaded_at < 3600:
            records = instance.get_run_records(RunsFilter(tags={"beop/trigger": "day-loaded"}))
            if len(records) >= args.exports and all(r.dagster_run.status in finished for r in records):
                break
            time.sleep(2)
        last_end = max((r.end_time or 0) for r in records) if records else 0
        first_start = min((r.create_timestamp.timestamp()) for r in records) if records else 0
        wall = time.perf_counter() - loaded_at
        ok = sum(r.dagster_run.status == DagsterRunStatus.SUCCESS for r in records)
        durations = sorted((r.end_time or 0) - (r.start_time or 0) for r in records if r.start_time)
        per_export = wall / args.exports
        target = TARGETS_S["night-1000"]
        print(f"nightly path         {len(records)} runs launched by the daemon, {ok} succeeded")
        print(
            f"wall                 {wall:.1f} s from the load's end to the last run's end "
            f"(first run queued {first_start - time.time() + wall:+.1f} s after the load; last ended at "
            f"{last_end - time.time() + wall:.1f} s)"
        )
        if durations:
            print(f"run duration         median {durations[len(durations) // 2]:.2f} s (process start to end)")
        print(
            f"per export           {per_export:.3f} s   target {target:.1f} s (1,000 in 10 min)   "
            f"{'PASS' if per_export <= target and ok == args.exports else 'MISS'}"
        )
        print(f"1,000 exports        {per_export * 1000 / 60:.1f} min at this rate")
        print(f"load average         {load_before[0]:.2f} at the load, {os.getloadavg()[0]:.2f} at the end")
        return 0
    finally:
        os.killpg(daemon.pid, signal.SIGTERM)
        try:
            daemon.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(daemon.pid, signal.SIGKILL)
            daemon.wait()
        log.close()


if __name__ == "__main__":
    sys.exit(main())
