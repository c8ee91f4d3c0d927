"""`beop-exports run --date D --export PROBE` with 10 and with 10,000 exports, without the daemon's night
(issue 24: the probe of `exports_night.py --daemon`, which takes a 15-minute night to reach).

    .venv/bin/python bench/run_probe_scale.py time [--sizes 10 10000] [--repeat 3]
    .venv/bin/python bench/run_probe_scale.py hold --base DIR   # set up, keep the servers until DIR/STOP exists

For each size: `exports_night.export_entry`'s registry (the probe is export 0, a CSV to the loopback sshd),
one day of 2,000 participations (seed 1), a DAGSTER_HOME with the CLI's dagster.yaml and the dynamic
partitions added as the registry sensor adds them (`registry_partition_requests`). Each run is a fresh
process of this tree (`-m beop_assets.cli`, PYTHONPATH), timed from start to exit, the day's load
included. `hold` writes DIR/n<size>/env.sh and DIR/command.sh to run (or profile) the command by hand.
Needs root (the loopback sshd). It reports; it never fails a build.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml

WT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(WT))
sys.path.insert(0, str(WT / "bench"))

from exports_night import BUCKET, export_entry, product_env, server_targets  # noqa: E402


def setup(size: int, base: Path, day, sshd, emulator, directories, sftp, gcs, key_file) -> dict:
    from dagster import AddDynamicPartitionsRequest, DagsterInstance

    from beop_assets.daily_run import INSTANCE_YAML

    work = base / f"n{size}"
    work.mkdir()
    registry_file = work / "exports.yaml"
    registry_file.write_text(
        yaml.safe_dump({"exports": [export_entry(n, directories, sftp, gcs) for n in range(size)]}, sort_keys=False)
    )
    (work / "dagster_home").mkdir()
    (work / "dagster_home" / "dagster.yaml").write_text(INSTANCE_YAML)
    env = {
        **product_env(sshd, emulator, base / "landing", work / "warehouse", registry_file, work / "dagster_home"),
        "PYTHONPATH": str(WT),
    }
    old = dict(os.environ)
    os.environ.update(env)
    try:
        from beop_assets import settings
        from beop_assets.definitions import build_resources
        from beop_assets.defs.exports.sensors import registry_partition_requests

        config = settings.current()
        instance = DagsterInstance.from_config(str(work / "dagster_home"))
        requests, _ = registry_partition_requests(build_resources(config)["registry"], instance)
        for r in requests:
            assert isinstance(r, AddDynamicPartitionsRequest)
            instance.add_dynamic_partitions(r.partitions_def_name, list(r.partition_keys))
        print(
            f"n={size}: partitions",
            {n: len(instance.get_dynamic_partitions(n)) for n in ("specific_exports", "global_exports")},
        )
    finally:
        os.environ.clear()
        os.environ.update(old)
    (work / "env.sh").write_text("".join(f"export {k}={shlex.quote(v)}\n" for k, v in env.items()))
    return env


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["hold", "time"])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 10000])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--base", type=Path, default=None)
    args = parser.parse_args()

    from beop_assets.demo.gcs_emulator import GcsEmulator
    from beop_assets.demo.generate import generate_day
    from beop_assets.demo.service_account import write_demo_key
    from beop_assets.demo.sshd import LocalSshd

    base = args.base or Path(tempfile.mkdtemp(prefix="probe-"))
    base.mkdir(parents=True, exist_ok=True)
    day = (datetime.now(UTC) - timedelta(days=1)).date()
    sshd = LocalSshd().start()
    emulator = GcsEmulator(backend="memory").start()
    try:
        emulator.create_bucket(BUCKET)
        key_file = write_demo_key(base / "keys" / "sa.json")
        directories = [str(sshd.make_dir(f"night-{n:02d}")) for n in range(10)]
        sftp, gcs = server_targets(sshd, key_file)
        generate_day(base / "landing", day, 2000, seed=1)
        envs = {size: setup(size, base, day, sshd, emulator, directories, sftp, gcs, key_file) for size in args.sizes}
        probe = export_entry(0, directories, sftp, gcs)["id"]
        command = [sys.executable, "-m", "beop_assets.cli", "run", "--date", day.isoformat(), "--export", probe]
        (base / "command.sh").write_text(shlex.join(command) + "\n")
        print(f"base {base}\ncommand: {shlex.join(command)}", flush=True)
        if args.mode == "hold":
            (base / "READY").write_text("")
            while not (base / "STOP").exists():
                time.sleep(1)
            return 0
        for size, env in envs.items():
            walls = []
            for _ in range(args.repeat):
                start = time.perf_counter()
                done = subprocess.run(command, env={**os.environ, **env}, capture_output=True, text=True, cwd=base)
                walls.append(time.perf_counter() - start)
                tail = done.stdout.strip().splitlines()[-1:]
                print(f"  n={size}: {walls[-1]:.2f} s exit {done.returncode} {tail}", flush=True)
                if done.returncode not in (0, 1):
                    print(done.stderr[-2000:])
            print(f"n={size}: median {statistics.median(walls):.2f} s of {[round(w, 2) for w in walls]}", flush=True)
        return 0
    finally:
        sshd.close()
        emulator.close()
        if args.base is None:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
