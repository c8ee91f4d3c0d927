"""Benchmark of the whole daily path on one machine, against DuckDB's own anchors (see bench/README.md).

    .venv/bin/python bench/run.py                          # 1,000,000 participations
    .venv/bin/python bench/run.py --participations 5000000 --repeat 1 --skip-dagster

One day of N participations is generated with the project's generator, then, on that same data, each
stage runs in a child process of its own (`bench/stages.py`), so that the peak RSS read from
`wait4()` for that child is the stage's own: loading the day (vs DuckDB's `read_json`), the
crm-participation CSV and the global ndJSON.gz of the account `a_1` (vs DuckDB's `COPY ... TO` of the
same rows), their delivery to a loopback OpenSSH sshd and to the GCS emulator, and a Dagster batch of
`--exports` small exports through `run_day`, sequential and concurrent. Prints one table; no stage
asserts anything: a target that is missed says MISS.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from common import ACCOUNT, SFTP_PASSWORD_ENV  # noqa: E402

MB = 1_000_000
RSS_LIMIT_MB = 512  # an export
LOAD_RSS_LIMIT_MB = 1536  # a day load, whatever the day's size


# -- running a stage in its own process ------------------------------------------------------------


class StageFailed(RuntimeError):
    pass


def _launch(stage: str, cfg: dict, env: dict, work: Path, tag: str) -> tuple[subprocess.Popen, Path, Path, float]:
    logs = work / "logs"
    logs.mkdir(exist_ok=True)
    cfg_file = logs / f"{tag}.json"
    cfg_file.write_text(json.dumps(cfg))
    out, err = logs / f"{tag}.out", logs / f"{tag}.err"
    with open(out, "w") as o, open(err, "w") as e:
        proc = subprocess.Popen(
            [sys.executable, str(BENCH / "stages.py"), stage, str(cfg_file)],
            stdout=o,
            stderr=e,
            env={**os.environ, **env},
            cwd=str(work),
        )
    return proc, out, err, time.perf_counter()


def _reap(proc: subprocess.Popen, out: Path, err: Path, started: float) -> dict:
    # wait4 on this pid: the rusage of this child (and of what it waited for) only
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - started
    lines = [line for line in out.read_text().splitlines() if line.startswith("BENCH-RESULT ")]
    if proc.returncode != 0 or not lines:
        raise StageFailed(f"stage failed (exit {proc.returncode}); stderr tail:\n{err.read_text()[-3000:]}")
    result = json.loads(lines[-1][len("BENCH-RESULT ") :])
    result["peak_rss_mb"] = usage.ru_maxrss / 1024  # Linux: KiB
    result["process_wall_s"] = wall
    result["process_cpu_s"] = usage.ru_utime + usage.ru_stime
    return result


def run_stage(stage: str, cfg: dict, env: dict, work: Path, tag: str | None = None) -> dict:
    return _reap(*_launch(stage, cfg, env, work, tag or stage))


def run_repeated(stage: str, cfg: dict, env: dict, work: Path, repeat: int) -> dict:
    """Median seconds over `repeat` runs, and the largest peak RSS any of them reached."""
    results = [run_stage(stage, cfg, env, work, f"{stage}-{n}") for n in range(repeat)]
    best = sorted(results, key=lambda r: r["seconds"])[len(results) // 2]
    best = dict(best)
    best["peak_rss_mb"] = max(r["peak_rss_mb"] for r in results)
    best["all_seconds"] = [round(r["seconds"], 3) for r in results]
    best["cpu_s"] = statistics.median(r["cpu_s"] for r in results)
    return best


# -- the table ---------------------------------------------------------------------------------------


class Table:
    def __init__(self) -> None:
        self.rows: list[dict] = []

    def add(
        self,
        name: str,
        result: dict | None,
        *,
        anchor: dict | None = None,
        target: str = "",
        verdict: bool | None = None,
        mb_bytes: int | None = None,
        note: str = "",
        seconds_key: str = "seconds",
        cpu_key: str = "cpu_s",
    ) -> None:
        if result is None:
            self.rows.append({"stage": name, "note": note})
            return
        seconds = result[seconds_key]
        size = result["bytes"] if mb_bytes is None else mb_bytes
        self.rows.append(
            {
                "stage": name,
                "seconds": seconds,
                "cpu": result.get(cpu_key),
                "rows": result["rows"],
                "rows_s": result["rows"] / seconds if seconds else 0,
                "mb_s": size / MB / seconds if seconds and size else None,
                "rss": result["peak_rss_mb"],
                "base": result.get("baseline_rss_mb"),
                "ratio": seconds / anchor["seconds"] if anchor else None,
                "target": target,
                "verdict": "" if verdict is None else ("PASS" if verdict else "MISS"),
                "note": note,
            }
        )

    def render(self) -> str:
        head = (
            f"{'stage':<46} {'seconds':>8} {'cpu s':>6} {'rows':>9} {'rows/s':>10} {'MB/s':>7} {'peak RSS MB':>11} "
            f"{'(base)':>6} {'x anchor':>8}  {'target':<28} {'':4}"
        )
        lines = [head, "-" * len(head)]
        for r in self.rows:
            if "seconds" not in r:
                lines.append(f"{r['stage']:<46} {r['note']}")
                continue
            mb_s = f"{r['mb_s']:.1f}" if r["mb_s"] is not None else "-"
            ratio = f"{r['ratio']:.2f}" if r["ratio"] is not None else "-"
            base = f"{r['base']:.0f}" if r["base"] is not None else "-"
            cpu = f"{r['cpu']:.1f}" if r["cpu"] is not None else "-"
            lines.append(
                f"{r['stage']:<46} {r['seconds']:>8.2f} {cpu:>6} {r['rows']:>9} {r['rows_s']:>10,.{0 if r['rows_s'] >= 100 else 2}f} {mb_s:>7} "
                f"{r['rss']:>11.0f} {base:>6} {ratio:>8}  {r['target']:<28} {r['verdict']:4}"
                + (f"  {r['note']}" if r["note"] else "")
            )
        return "\n".join(lines)


# -- servers and registries --------------------------------------------------------------------------


def start_servers(work: Path):
    from beop_assets.demo.gcs_emulator import GcsEmulator
    from beop_assets.demo.service_account import write_demo_key
    from beop_assets.demo.sshd import LocalSshd

    sshd = LocalSshd().start()
    emulator = GcsEmulator(backend="memory").start()
    emulator.create_bucket("bench-bucket")
    key_file = write_demo_key(work / "keys" / "bench-service-account.json")
    sftp = {
        "host": sshd.host,
        "port": sshd.port,
        "username": sshd.username,
        "directory": str(sshd.make_dir("bench")),
        "password_env": SFTP_PASSWORD_ENV,
        "known_hosts_file": str(sshd.known_hosts_path),
    }
    gcs = {"bucket": "bench-bucket", "prefix": "bench/", "credentials_file": str(key_file)}
    env = {SFTP_PASSWORD_ENV: sshd.password, "STORAGE_EMULATOR_HOST": emulator.url}
    return sshd, emulator, sftp, gcs, env


def batch_registry(count: int, sftp: dict, gcs: dict) -> dict:
    """`count` exports of the account a_1: half crm-participation over SFTP, half global to GCS."""
    exports = []
    for n in range(count):
        if n % 2 == 0:
            exports.append(
                {
                    "id": f"batch-crm-{n:03d}",
                    "account_id": ACCOUNT,
                    "mode": "specific",
                    "type": "crm-participation",
                    "name": f"Batch CRM {n}",
                    "campaigns": ["cmp_1"],
                    "optins": ["o_1", "o_3"],
                    "sftp": sftp,
                }
            )
        else:
            exports.append(
                {
                    "id": f"batch-global-{n:03d}",
                    "account_id": ACCOUNT,
                    "mode": "global",
                    "gcs": {**gcs, "prefix": f"batch/{n:03d}/"},
                }
            )
    return {"exports": exports}


# -- the benchmark -----------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--participations", type=int, default=1_000_000, help="participations of the day (default 1,000,000)"
    )
    parser.add_argument(
        "--work-dir", type=Path, default=None, help="where data and files go (default: a temp dir, removed)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary work dir")
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="generate the day once into DIR/landing and reuse it on later runs (big days: keep it outside the repo)",
    )
    parser.add_argument("--skip-dagster", action="store_true", help="skip the Dagster batch")
    parser.add_argument("--exports", type=int, default=100, help="exports in the Dagster batch (default 100)")
    parser.add_argument(
        "--batch-participations",
        type=int,
        default=2_000,
        help="participations of the small day the Dagster batch exports (default 2,000)",
    )
    parser.add_argument(
        "--batch-concurrency",
        type=int,
        default=2,
        help="processes running run_day side by side in the concurrent variant (default 2)",
    )
    parser.add_argument(
        "--gzip-level",
        type=int,
        default=int(os.environ.get("BEOP_GZIP_LEVEL", "5")),
        help="zlib-ng level of the global export, 0-9 (default $BEOP_GZIP_LEVEL or 5)",
    )
    parser.add_argument(
        "--json-anchor-unordered",
        action="store_true",
        help="run DuckDB's JSON anchors with preserve_insertion_order=false (ordered, they hold the whole "
        "output in memory: ~8 GB at 5M); lines are then compared as a multiset",
    )
    parser.add_argument("--repeat", type=int, default=1, help="runs of each build/delivery stage; the median is shown")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--output", type=Path, default=None, help="also write the report to this file")
    args = parser.parse_args(argv)

    temporary = args.work_dir is None
    work = Path(tempfile.mkdtemp(prefix="beop-bench-")) if temporary else args.work_dir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    os.chmod(work, 0o755)
    day = (datetime.now(UTC) - timedelta(days=1)).date().isoformat()
    landing = work / "landing"
    reused = None
    if args.data_dir is not None:
        args.data_dir.mkdir(parents=True, exist_ok=True)
        landing = args.data_dir.resolve() / "landing"
        marker = args.data_dir / "generated.json"
        wanted = {"participations": args.participations, "seed": args.seed}
        if marker.exists() and {k: json.loads(marker.read_text()).get(k) for k in wanted} == wanted:
            reused = json.loads(marker.read_text())
            day = reused["day"]
    report: list[str] = []

    def say(line: str = "") -> None:
        print(line, flush=True)
        report.append(line)

    sshd = emulator = None
    try:
        sshd, emulator, sftp, gcs, env = start_servers(work)
        env["BEOP_GZIP_LEVEL"] = str(args.gzip_level)
        out = work / "out"
        out.mkdir(exist_ok=True)
        cfg = {
            "landing": str(landing),
            "warehouse": str(work / "warehouse"),
            "out": str(out),
            "day": day,
            "participations": args.participations,
            "seed": args.seed,
            "gzip_level": args.gzip_level,
            "sftp": sftp,
            "gcs": gcs,
            "client_key": str(sshd.client_key_path),
            "json_anchor_unordered": args.json_anchor_unordered,
        }
        table = Table()
        say(
            f"beop-exports benchmark: {args.participations:,} participations on {day}, account {ACCOUNT}, "
            f"gzip level {args.gzip_level}, repeat {args.repeat}, {os.cpu_count()} CPUs, work dir {work}"
        )

        say(
            "load average at the start: "
            + " ".join(f"{x:.2f}" for x in os.getloadavg())
            + " (other work on this machine slows every stage alike; the ratios are interleaved runs)"
        )
        if reused:
            say(
                f"reusing the day generated in {landing} ({reused['participations']:,} participations, seed {reused['seed']})"
            )
        else:
            gen = run_stage("generate", cfg, env, work)
            table.add("generate the day (project generator)", gen, note=f"{gen['bytes'] / MB:.0f} MB of landing files")
            print(f"  generated in {gen['seconds']:.1f} s", flush=True)
            if args.data_dir is not None:
                (args.data_dir / "generated.json").write_text(
                    json.dumps({"participations": args.participations, "seed": args.seed, "day": day})
                )

        # 4. loading the day: the anchor first, then the product (which leaves the Parquet day the exports read)
        load_anchor = run_stage("load_anchor", cfg, env, work)
        table.add("load anchor: DuckDB read_json -> Parquet", load_anchor)
        load = run_stage("load", cfg, env, work)
        table.add(
            "load_day: landing -> model (Parquet + views)",
            load,
            anchor=load_anchor,
            target=f"<= 2.0 x, RSS <= {LOAD_RSS_LIMIT_MB}",
            verdict=load["seconds"] <= 2.0 * load_anchor["seconds"] and load["peak_rss_mb"] <= LOAD_RSS_LIMIT_MB,
            note=f"{load['extra']['rejected']} rejected; aim 1.5 x",
        )

        # 1-2. the builds, anchor and product interleaved, `repeat` times each
        csv_a = run_repeated("csv_anchor", cfg, env, work, args.repeat)
        csv_b = run_repeated("csv", cfg, env, work, args.repeat)
        csv_d = run_repeated("csv_derived", cfg, env, work, args.repeat)
        table.add("CSV anchor: DuckDB COPY (crm_select) TO csv", csv_a)
        table.add(
            "build_crm_csv (crm-participation)",
            csv_b,
            anchor=csv_a,
            target=f"<= 1.0 x, RSS <= {RSS_LIMIT_MB}",
            verdict=csv_b["seconds"] <= csv_a["seconds"] and csv_b["peak_rss_mb"] <= RSS_LIMIT_MB,
        )
        same_csv = csv_d["extra"]["sha256"] == csv_b["extra"]["sha256"]
        table.add(
            "  (before) build_crm_csv deriving the columns",
            csv_d,
            anchor=csv_b,
            target=">= 2.5 x the stored build",
            verdict=csv_d["seconds"] >= 2.5 * csv_b["seconds"] and same_csv,
            note=f"x anchor = vs the stored build; same bytes: {same_csv}",
        )
        json_a = run_repeated("json_anchor", cfg, env, work, args.repeat)
        json_plain = run_stage("json_plain_anchor", cfg, env, work)
        json_b = run_repeated("json", cfg, env, work, args.repeat)
        table.add("JSON anchor: DuckDB COPY (FORMAT JSON, GZIP)", json_a)
        table.add("  (info) DuckDB COPY (FORMAT JSON), no gzip", json_plain, anchor=json_a)
        size_ratio = json_b["bytes"] / json_a["bytes"]
        table.add(
            f"build_global_ndjson (zlib-ng level {args.gzip_level})",
            json_b,
            anchor=json_a,
            target=f"<= 0.5 x, RSS <= {RSS_LIMIT_MB}",
            verdict=json_b["seconds"] <= 0.5 * json_a["seconds"] and json_b["peak_rss_mb"] <= RSS_LIMIT_MB,
        )
        check = run_stage("verify_gzip", cfg, env, work)["extra"]
        table.add(
            f"  gz size {json_b['bytes'] / MB:.1f} MB vs anchor {json_a['bytes'] / MB:.1f} MB = {size_ratio:.3f} x"
            f"  (target <= 1.10 x: {'PASS' if size_ratio <= 1.10 else 'MISS'})",
            None,
        )
        same = check["lines_ours"] == check["lines_anchor"] == json_b["rows"]
        identical = check["same_line_set"] if args.json_anchor_unordered else check["same_lines"]
        table.add(
            f"  Python gzip reads {check['lines_ours']} lines (anchor {check['lines_anchor']}, built "
            f"{json_b['rows']}); identical lines"
            + (" (as a multiset: unordered anchor)" if args.json_anchor_unordered else "")
            + f": {identical}; gzip -t: "
            f"{'ok' if check['gzip_t_ok'] else 'FAILED'}  ({'PASS' if same and identical and check['gzip_t_ok'] else 'MISS'})",
            None,
        )
        if "first_difference" in check and not args.json_anchor_unordered:
            table.add(f"  first different line: {check['first_difference']}", None)

        # 3. delivery of the files just built
        rows_cfg = {**cfg, "rows": csv_b["rows"]}
        sftp_a = run_repeated("sftp_anchor", rows_cfg, env, work, args.repeat)
        sftp_b = run_repeated("sftp", rows_cfg, env, work, args.repeat)
        table.add("SFTP anchor: OpenSSH sftp put (same file)", sftp_a)
        setup = sftp_b["extra"]["setup_s"]
        table.add(
            "sftp.deliver_file (CSV, loopback sshd)",
            sftp_b,
            anchor=sftp_a,
            target=">= 100 MB/s",
            verdict=sftp_b["bytes"] / MB / sftp_b["seconds"] >= 100,
            note=f"session set-up {setup:.2f} s; {sftp_b['bytes'] / MB / max(sftp_b['seconds'] - setup, 1e-9):.0f} MB/s without it",
        )
        rows_cfg = {**cfg, "rows": json_b["rows"]}
        gcs_a = run_repeated("gcs_anchor", rows_cfg, env, work, args.repeat)
        gcs_b = run_repeated("gcs", rows_cfg, env, work, args.repeat)
        table.add("GCS anchor: bare blob.upload_from_filename", gcs_a)
        table.add("gcs.deliver_file (ndJSON.gz, emulator)", gcs_b, anchor=gcs_a, note="(no target)")

        if not args.skip_dagster:
            dagster_batch(args, work, sftp, gcs, env, day, table, say)

        say()
        say(table.render())
        say("load average at the end: " + " ".join(f"{x:.2f}" for x in os.getloadavg()))
        say()
        say(
            "seconds: the stage's own work in its child process (imports excluded); Dagster rows: the whole "
            "child process(es), imports included."
        )
        say(
            "MB/s: bytes written by the stage (the .gz bytes for the JSON files; landing bytes read for the loads; "
            "bytes sent for the deliveries). peak RSS: wait4() ru_maxrss of the stage's process; (base): its RSS "
            "after imports, before the work."
        )
        if args.repeat > 1:
            say(
                "per-run seconds: "
                + ", ".join(
                    f"{name} {r['all_seconds']}"
                    for name, r in (
                        ("csv anchor", csv_a),
                        ("csv", csv_b),
                        ("csv derived", csv_d),
                        ("json anchor", json_a),
                        ("json", json_b),
                        ("sftp anchor", sftp_a),
                        ("sftp", sftp_b),
                        ("gcs anchor", gcs_a),
                        ("gcs", gcs_b),
                    )
                )
            )
        if args.output:
            args.output.write_text("\n".join(report) + "\n")
        return 0
    except StageFailed as exc:
        say(f"benchmark stopped: {exc}")
        return 1
    finally:
        if sshd:
            sshd.close()
        if emulator:
            emulator.close()
        if temporary and not args.keep:
            shutil.rmtree(work, ignore_errors=True)


def dagster_batch(args, work: Path, sftp: dict, gcs: dict, env: dict, day: str, table: Table, say) -> None:
    """The Dagster overhead: `run_day` on a small day, `args.exports` exports, then the same batch split
    over `args.batch_concurrency` processes running side by side (as `max_concurrent_runs` would)."""
    batch = work / "batch"
    (batch / "landing").mkdir(parents=True, exist_ok=True)
    registry = batch / "exports.yaml"
    registry.write_text(yaml.safe_dump(batch_registry(args.exports, sftp, gcs), sort_keys=False))
    base_cfg = {
        "landing": str(batch / "landing"),
        "day": day,
        "participations": args.batch_participations,
        "seed": args.seed,
    }
    run_stage("generate", base_cfg, env, work, "batch-generate")
    ids = yaml.safe_load(registry.read_text())["exports"]
    ids = [e["id"] for e in ids]

    def batch_env(home: str) -> dict:
        (batch / home).mkdir(exist_ok=True)
        return {
            **env,
            "BEOP_LANDING": str(batch / "landing"),
            "BEOP_WAREHOUSE": str(batch / "warehouse"),
            "BEOP_EXPORTS": str(registry),
            "DAGSTER_HOME": str(batch / home),
        }

    def summary(results: list[dict]) -> str:
        statuses: dict[str, int] = {}
        for r in results:
            for k, v in r["extra"]["statuses"].items():
                statuses[k] = statuses.get(k, 0) + v
        failed = [f for r in results for f in r["extra"]["failed"]][:2]
        return " ".join(f"{k}={v}" for k, v in sorted(statuses.items())) + (f" e.g. {failed}" if failed else "")

    # A: the CLI's daily job, as it is: one process, one in-process run to load, then one per export
    seq = run_stage("dagster", {**base_cfg, "export_ids": ids}, batch_env("home-sequential"), work, "dagster-seq")
    extra = seq["extra"]
    table.add(
        f"Dagster: run_day, {args.exports} exports, sequential",
        seq,
        seconds_key="process_wall_s",
        cpu_key="process_cpu_s",
        note=f"{summary([seq])}; run_day {extra['run_day_s']:.1f} s, per run {extra['mean_run_s']:.2f} s "
        f"of which steps {extra['mean_steps_s']:.2f} s",
    )
    # B: the same exports over K processes at once (each loads the day first: the pool serializes the loads)
    k = max(1, args.batch_concurrency)
    slices = [ids[n::k] for n in range(k)]
    started = time.perf_counter()
    launched = [
        _launch("dagster", {**base_cfg, "export_ids": part}, batch_env("home-concurrent"), work, f"dagster-c{n}")
        for n, part in enumerate(slices)
    ]
    results = [_reap(*item) for item in launched]
    wall = time.perf_counter() - started
    combined = {
        "seconds": wall,
        "cpu_s": sum(r["process_cpu_s"] for r in results),
        "rows": sum(r["rows"] for r in results),
        "bytes": 0,
        "peak_rss_mb": max(r["peak_rss_mb"] for r in results),
        "baseline_rss_mb": None,
    }
    table.add(
        f"Dagster: {k} x run_day side by side",
        combined,
        anchor={"seconds": seq["process_wall_s"]},
        note=f"{summary(results)}; x anchor = vs sequential; per run "
        f"{statistics.mean(r['extra']['mean_run_s'] for r in results):.2f} s",
    )


if __name__ == "__main__":
    sys.exit(main())
