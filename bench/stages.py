"""One benchmark stage, run in a child process of its own (`bench/run.py` starts it), so that the
peak RSS the parent reads from `wait4()` is this stage's alone.

    python bench/stages.py STAGE CONFIG.json

Imports happen before the clock starts; the stage prints one line `BENCH-RESULT {json}` with its
wall seconds, rows, bytes and the RSS it had before the work began (the interpreter and its imports).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import duckdb
from common import (
    OPTIN_NAMES,
    crm_anchor,
    crm_export,
    dump,
    global_export,
    json_anchor,
    load_anchor,
    openssh_put,
    parse_day,
)

from beop_assets.model import warehouse


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _cpu_s() -> float:
    """CPU seconds of this process and of the children it waited for (the `sftp` client)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _day_files(cfg: dict) -> list[Path]:
    folder = Path(cfg["landing"]) / "participations" / f"date={cfg['day']}"
    return sorted(p for p in folder.iterdir() if p.name.endswith((".ndjson", ".ndjson.gz")))


def _parquet(cfg: dict) -> Path:
    return warehouse.day_file("participations", parse_day(cfg["day"]), Path(cfg["warehouse"]))


# -- stages: each returns (rows, bytes, extra) and is timed by `main` ------------------------------


def generate(cfg: dict):
    from beop_assets.demo.generate import generate_day

    summary = generate_day(Path(cfg["landing"]), parse_day(cfg["day"]), cfg["participations"], seed=cfg["seed"])
    return summary.participations, sum(p.stat().st_size for p in summary.files), {}


def load_anchor_stage(cfg: dict):
    files = _day_files(cfg)
    out = Path(cfg["out"]) / "anchor-load.parquet"
    with duckdb.connect() as con:
        con.execute(load_anchor(files, out))
        rows = con.execute(f"SELECT count(*) FROM read_parquet('{out}')").fetchone()[0]
    return rows, sum(p.stat().st_size for p in files), {"parquet_bytes": out.stat().st_size}


def load(cfg: dict):
    from beop_assets.landing.zone import staged_day
    from beop_assets.model.day_loader import load_day

    with staged_day(parse_day(cfg["day"]), cfg["landing"]) as staged:
        done = load_day(staged, Path(cfg["warehouse"]))
    return (
        done.participations,
        sum(p.stat().st_size for p in _day_files(cfg)),
        {"rejected": done.rejected, "optins": done.optins, "parquet_bytes": _parquet(cfg).stat().st_size},
    )


def _copy(sql: str, params, out: Path, unordered: bool = False):
    """Run an anchor COPY with the product's reader settings (threads, preserve_insertion_order; with
    `unordered`, DuckDB may write the rows in any order, which it needs to keep its memory flat)."""
    con = warehouse.reader()
    if unordered:
        con.execute("SET preserve_insertion_order = false")
    try:
        con.execute(sql, params)
        rows = con.fetchone()[0]
    finally:
        con.close()
    return rows, out.stat().st_size, {"path": str(out)}


def csv_anchor(cfg: dict):
    out = Path(cfg["out"]) / "anchor.csv"
    return _copy(*crm_anchor(crm_export(cfg["sftp"]), _parquet(cfg), out), out)


def csv_build(cfg: dict, variant: str = ""):
    from beop_assets.exports.crm_csv import build_crm_csv

    out = Path(cfg["out"]) / ("bench-crm.csv" if not variant else f"bench-crm-{variant}.csv")
    built = build_crm_csv(
        crm_export(cfg["sftp"]),
        parse_day(cfg["day"]),
        OPTIN_NAMES,
        out,
        out.name,
        root=Path(cfg["warehouse"]),
        **cfg.get("csv_kwargs", {}),
    )
    return built.rows, built.bytes, {"path": str(out), "sha256": built.sha256}


def csv_derived(cfg: dict):
    """The CSV build as it was before the loader stored the typed columns: derived per export."""
    return csv_build({**cfg, "csv_kwargs": {**cfg.get("csv_kwargs", {}), "derive_typed_columns": True}}, "derived")


def json_anchor_stage(cfg: dict, compression: str = "GZIP"):
    out = Path(cfg["out"]) / ("anchor.ndjson.gz" if compression == "GZIP" else "anchor.ndjson")
    return _copy(*json_anchor(_parquet(cfg), out, compression), out, cfg.get("json_anchor_unordered", False))


def json_plain_anchor(cfg: dict):
    return json_anchor_stage(cfg, "NONE")


def json_build(cfg: dict):
    from beop_assets.exports.global_ndjson import build_global_ndjson

    out = Path(cfg["out"]) / "bench-global.ndjson.gz"
    built = build_global_ndjson(
        global_export(cfg["gcs"]),
        parse_day(cfg["day"]),
        out,
        out.name,
        root=Path(cfg["warehouse"]),
        level=cfg["gzip_level"],
        **cfg.get("json_kwargs", {}),
    )
    return built.rows, built.bytes, {"path": str(out)}


def verify_gzip(cfg: dict):
    """Python's gzip module (zlib) reads both files; the lines must match one for one. `gzip -t` too."""
    ours, anchor = Path(cfg["out"]) / "bench-global.ndjson.gz", Path(cfg["out"]) / "anchor.ndjson.gz"
    counts, digests, plain, multisets = {}, {}, {}, {}
    for name, path in (("ours", ours), ("anchor", anchor)):
        digest, count, size, multiset = hashlib.sha256(), 0, 0, 0
        with gzip.open(path, "rb") as handle:
            for line in handle:
                digest.update(line)
                # order-independent: the same lines in any order give the same sum
                multiset = (multiset + int.from_bytes(hashlib.blake2b(line, digest_size=8).digest(), "big")) % (1 << 64)
                count += 1
                size += len(line)
        counts[name], digests[name], plain[name], multisets[name] = count, digest.hexdigest(), size, multiset
    gzip_t = subprocess.run(["gzip", "-t", str(ours)], capture_output=True, text=True)
    extra = {
        "lines_ours": counts["ours"],
        "lines_anchor": counts["anchor"],
        "same_lines": digests["ours"] == digests["anchor"],
        "same_line_set": multisets["ours"] == multisets["anchor"],
        "plain_bytes": plain["ours"],
        "plain_bytes_anchor": plain["anchor"],
        "gzip_t_ok": gzip_t.returncode == 0,
        "gz_bytes": ours.stat().st_size,
        "gz_bytes_anchor": anchor.stat().st_size,
    }
    if not extra["same_lines"]:  # say where they first differ (both are in the same row order)
        with gzip.open(ours, "rb") as a, gzip.open(anchor, "rb") as b:
            for number, (x, y) in enumerate(zip(a, b, strict=False), 1):
                if x != y:
                    extra["first_difference"] = {
                        "line": number,
                        "ours": x[:300].decode(errors="replace"),
                        "anchor": y[:300].decode(errors="replace"),
                    }
                    break
    return counts["ours"], ours.stat().st_size, extra


def sftp_delivery(cfg: dict):
    from beop_assets.delivery.sftp_connection import load_credentials, sftp_session
    from beop_assets.delivery.transport import transport_for

    path = Path(cfg["out"]) / "bench-crm.csv"
    target = crm_export(cfg["sftp"]).sftp
    receipt = transport_for("bench-crm", target).deliver(path, "bench-crm.csv")
    # What every delivery pays whatever the size: connect, key exchange, authentication, directory check.
    started = time.perf_counter()
    with sftp_session(
        "bench-crm", target, load_credentials("bench-crm", target), timeout=30, path=target.directory
    ) as s:
        s.stat(target.directory)
    return cfg["rows"], receipt.bytes, {"attempts": receipt.attempts, "setup_s": time.perf_counter() - started}


def sftp_anchor(cfg: dict):
    """OpenSSH's own `sftp` client putting the same file on the same server (key authentication)."""
    path = Path(cfg["out"]) / "bench-crm.csv"
    target = cfg["sftp"]
    openssh_put(
        path,
        f"{target['directory']}/openssh-anchor.csv",
        host=target["host"],
        port=target["port"],
        username=target["username"],
        key=cfg["client_key"],
        known_hosts=target["known_hosts_file"],
        scratch=Path(cfg["out"]),
    )
    return cfg["rows"], path.stat().st_size, {}


def gcs_delivery(cfg: dict):
    from beop_assets.delivery.transport import transport_for

    path = Path(cfg["out"]) / "bench-global.ndjson.gz"
    receipt = transport_for("bench-global", global_export(cfg["gcs"]).gcs).deliver(path, "bench-global.ndjson.gz")
    return cfg["rows"], receipt.bytes, {"attempts": receipt.attempts}


def gcs_anchor(cfg: dict):
    """The bare google-cloud-storage upload of the same file (no crc32c, no read-back, library defaults)."""
    from beop_assets.cloud_storage import emulator_client

    path = Path(cfg["out"]) / "bench-global.ndjson.gz"
    blob = emulator_client().bucket(cfg["gcs"]["bucket"]).blob("anchor/bench-global.ndjson.gz")
    blob.upload_from_filename(str(path))
    return cfg["rows"], path.stat().st_size, {}


def dagster_batch(cfg: dict):
    """`run_day` (the CLI's daily job) for the small day, on the exports of `cfg['export_ids']` (all by
    default): one in-process Dagster run to load the day, then one per export."""
    from beop_assets.daily_run import instance, run_day

    dagster_instance = instance()
    started = time.perf_counter()
    outcomes = run_day(
        parse_day(cfg["day"]), cfg.get("export_ids"), echo=lambda _line: None, dagster_instance=dagster_instance
    )
    wall = time.perf_counter() - started
    durations, steps = [], []
    for outcome in outcomes:
        record = dagster_instance.get_run_record_by_id(outcome.run_id) if outcome.run_id else None
        if record and record.start_time and record.end_time:
            durations.append(record.end_time - record.start_time)
        if outcome.run_id:
            steps.append(
                sum(
                    (s.end_time or 0) - (s.start_time or 0) for s in dagster_instance.get_run_step_stats(outcome.run_id)
                )
            )
    statuses: dict[str, int] = {}
    for outcome in outcomes:
        statuses[outcome.status] = statuses.get(outcome.status, 0) + 1
    failed = [f"{o.export_id}: {o.error}" for o in outcomes if o.status != "delivered"][:3]
    return (
        len(outcomes),
        0,
        {
            "statuses": statuses,
            "failed": failed,
            "run_day_s": wall,
            "mean_run_s": sum(durations) / len(durations) if durations else None,
            "mean_steps_s": sum(steps) / len(steps) if steps else None,
        },
    )


STAGES = {
    "generate": generate,
    "load_anchor": load_anchor_stage,
    "load": load,
    "csv_anchor": csv_anchor,
    "csv": csv_build,
    "csv_derived": csv_derived,
    "json_anchor": json_anchor_stage,
    "json_plain_anchor": json_plain_anchor,
    "json": json_build,
    "verify_gzip": verify_gzip,
    "sftp": sftp_delivery,
    "sftp_anchor": sftp_anchor,
    "gcs": gcs_delivery,
    "gcs_anchor": gcs_anchor,
    "dagster": dagster_batch,
}


def main() -> None:
    stage, config_file = sys.argv[1], sys.argv[2]
    cfg = json.loads(Path(config_file).read_text())
    os.environ.update(cfg.get("env", {}))
    baseline = _rss_mb()
    cpu = _cpu_s()
    started = time.perf_counter()
    rows, size, extra = STAGES[stage](cfg)
    seconds = time.perf_counter() - started
    print(
        "BENCH-RESULT "
        + dump(
            {
                "stage": stage,
                "seconds": seconds,
                "cpu_s": _cpu_s() - cpu,
                "rows": rows,
                "bytes": size,
                "baseline_rss_mb": baseline,
                "extra": extra,
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
