"""Model writes and many export runs at once never fail on the DuckDB lock (DESIGN.md, "Data flow").

Every run here is its own OS process, sharing one on-disk Dagster instance ($DAGSTER_HOME, SQLite),
one warehouse folder and one landing zone, as runs launched by the daemon or by two operators would:
processes, not threads, are what contend for the DuckDB file's lock.

- While the test itself holds the model's write lock (`<warehouse>/.model.lock`) *and* an open
  read-write DuckDB connection to `beop.duckdb` (DuckDB's own exclusive file lock), every export of
  day A runs to a verified delivery, side by side with two loads of day B. So exports never need
  either lock, and a load's long part (reading the landing files, writing Parquet) runs beside them.
  Both loads are then seen blocked on the model lock (`/proc/locks`), are released, and serialize on
  it: both succeed and day B is in the Parquet and in the DuckDB file exactly once.
- A Parquet day replaced (by a reload with other contents) while another process streams it, as an
  export does, is read whole: each read sees the old day or the new one, never a mix or an error.

No timing assertion: every wait is bounded, and only outcomes are checked.
"""

from __future__ import annotations

import csv
import fcntl
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path

import duckdb
import pytest

from beop_assets import daily_run, settings
from beop_assets.definitions import defs as load_definitions
from beop_assets.defs.exports.jobs import EXPORT_MODES
from beop_assets.defs.model.jobs import LOAD_JOB
from beop_assets.delivery import ledger
from beop_assets.demo.generate import generate_day
from beop_assets.model import warehouse
from beop_assets_tests.fixtures.definitions import ledger_at

REPO = Path(__file__).resolve().parents[1]

DAY_A = date(2026, 11, 20)  # loaded first; its exports run while day B is being loaded
DAY_B = date(2026, 11, 21)  # loaded twice at once, by two processes
A_ROWS = 4_000
B_ROWS = 25_000  # a few seconds of loading on a 2-core machine

DAY_C = date(2026, 11, 22)  # the day replaced while it is read
C_OLD_ROWS, C_NEW_ROWS = 15_000, 9_000

RUN_TIMEOUT_S = 240  # generous bound for any one process on a loaded 2-core machine

# One run, in a process of its own. argv: what, day[, export_id]. Prints one JSON line last.
_RUN = r"""
import json, sys, warnings
warnings.filterwarnings("ignore")
from dataclasses import asdict
from datetime import date

what, day = sys.argv[1], date.fromisoformat(sys.argv[2])
if what == "direct-load":  # a writer outside Dagster's pools (e.g. a second `beop-exports run`)
    from beop_assets import settings
    from beop_assets.landing.zone import staged_day
    from beop_assets.model.day_loader import load_day
    config = settings.current()
    with staged_day(day, config.landing) as staged:
        load = load_day(staged, config.warehouse)
    print(json.dumps({"success": True, "participations": load.participations, "optins": load.optins,
                      "rejected": load.rejected}))
    sys.exit(0)

from beop_assets.daily_run import QUIET, _deliver_range, _root_error, instance
from beop_assets.definitions import defs as load_definitions
from beop_assets.defs.model.jobs import LOAD_JOB

with instance() as dagster_instance:
    if what == "dagster-load":
        result = load_definitions().resolve_job_def(LOAD_JOB).execute_in_process(
            partition_key=day.isoformat(), instance=dagster_instance, raise_on_error=False, run_config=QUIET)
        rows = {m.asset_key.to_user_string(): m.metadata["rows"].value
                for m in result.asset_materializations_for_node("participation_model")} if result.success else {}
        print(json.dumps({"success": result.success, "run_id": result.run_id, "rows": rows,
                          "error": None if result.success else _root_error(result)}))
    else:
        export_id = sys.argv[3]
        (outcome,) = _deliver_range(day, what, [export_id], dagster_instance, load_definitions())
        success = outcome.status == "delivered"
        print(json.dumps({"success": success, **asdict(outcome)}))
        sys.exit(0 if success else 1)
sys.exit(0 if result.success else 1)
"""

# Streams the day's participations Parquet as an export does (fresh in-memory connection, whole rows
# as Arrow batches), over and over, one JSON line per read: until the stop file exists, then once more.
# A small streaming buffer makes the scan of this small day advance only as batches are consumed, as
# the scan of a day of real size does: each read spans time, and reloads land in the middle of reads.
_READ_LOOP = r"""
import json, sys, time
from datetime import date
from pathlib import Path
import pyarrow.compute as pc
from beop_assets import settings
from beop_assets.model import warehouse

day, stop, deadline = date.fromisoformat(sys.argv[1]), Path(sys.argv[2]), time.monotonic() + float(sys.argv[3])
while time.monotonic() < deadline:
    last = stop.exists()
    path = warehouse.loaded_day_file("participations", day, settings.current().warehouse)  # once per read, as exports do
    con = warehouse.reader()
    try:
        con.execute("SET streaming_buffer_size = '256KiB'")
        reader = con.sql(
            "SELECT hash(participation_id || '|' || coalesce(email, '') || '|' || CAST(timestamp AS VARCHAR))"
            f" % 1000003 AS h, * FROM read_parquet({warehouse.sql_path(path)})").to_arrow_reader(1_000)
        rows = total = 0
        for batch in reader:
            rows += batch.num_rows
            total += pc.sum(batch.column(0)).as_py() or 0
        print(json.dumps({"rows": rows, "fingerprint": total}), flush=True)
    except Exception as exc:
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}"}), flush=True)
    finally:
        con.close()
    if last:
        sys.exit(0)
sys.exit(3)  # the deadline passed before the stop file appeared
"""

# Reloads the day from each landing zone in turn (each load replaces the day's Parquet files).
_RELOADS = r"""
import sys
from datetime import date
from beop_assets.landing.zone import staged_day
from beop_assets.model.day_loader import load_day
day = date.fromisoformat(sys.argv[1])
from beop_assets import settings
for landing in sys.argv[2:]:
    with staged_day(day, landing) as staged:
        load_day(staged, settings.current().warehouse)
"""


class Processes:
    """Processes started by a test: each is waited for with a bound, and killed (by its own pid) if a
    test ends with it still running."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.started: list[subprocess.Popen] = []
        self.names: dict[int, str] = {}

    def start(
        self, name: str, script: str, *args: str, env: dict[str, str] | None = None, stdout: Path | None = None
    ) -> subprocess.Popen:
        out = stdout or self.folder / f"{name}.out"
        with open(out, "w") as out_file, open(self.folder / f"{name}.err", "w") as err_file:
            proc = subprocess.Popen(
                [sys.executable, "-c", script, *args],
                cwd=REPO,
                stdout=out_file,
                stderr=err_file,
                env={**os.environ, **(env or {})},
            )
        proc.out_path, proc.err_path = out, self.folder / f"{name}.err"  # type: ignore[attr-defined]
        self.started.append(proc)
        self.names[proc.pid] = name
        return proc

    def describe(self, proc: subprocess.Popen) -> str:
        return (
            f"{self.names[proc.pid]} (pid {proc.pid}, exit {proc.returncode}):\n"
            f"stdout: {proc.out_path.read_text()[-3000:]}\nstderr: {proc.err_path.read_text()[-3000:]}"
        )

    def wait(self, proc: subprocess.Popen, timeout: float = RUN_TIMEOUT_S) -> dict:
        """Wait (bounded) for a run process; its last stdout line, a JSON object."""
        self.wait_exit(proc, timeout)
        lines = proc.out_path.read_text().strip().splitlines()
        assert proc.returncode == 0 and lines, self.describe(proc)
        return json.loads(lines[-1])

    def wait_exit(self, proc: subprocess.Popen, timeout: float = RUN_TIMEOUT_S) -> int:
        try:
            return proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
        pytest.fail(f"still running after {timeout} s: {self.describe(proc)}")

    def stop_all(self) -> None:
        for proc in self.started:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)


@pytest.fixture
def processes(tmp_path) -> Processes:
    folder = tmp_path / "processes"
    folder.mkdir()
    procs = Processes(folder)
    yield procs
    procs.stop_all()


def _wait_until(condition: Callable[[], bool], timeout: float, what: Callable[[], str]) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"not after {timeout} s: {what()}")
        time.sleep(0.05)


def _blocked_on(lock_file: Path) -> set[int]:
    """Pids of the processes waiting for a flock on `lock_file` (Linux /proc/locks: `N: -> FLOCK ...`)."""
    inode = os.stat(lock_file).st_ino
    waiting = set()
    for line in Path("/proc/locks").read_text().splitlines():
        fields = line.split()
        if len(fields) > 5 and fields[1] == "->" and fields[2] == "FLOCK" and int(fields[6].rsplit(":", 1)[1]) == inode:
            waiting.add(int(fields[5]))
    return waiting


def _scalar(sql: str, *params) -> object:
    con = warehouse.reader()
    try:
        return con.execute(sql, list(params)).fetchone()[0]
    finally:
        con.close()


def test_export_runs_never_wait_for_the_model_writers_and_two_loads_serialize(product, sshd, processes):
    landing, wh = product.landing, product.landing.warehouse
    # The demo generator's reference data (it replaces the fixture's), and the registry against its ids.
    generate_day(landing.root, DAY_A, A_ROWS, seed=1)
    generate_day(landing.root, DAY_B, B_ROWS, seed=2)
    specific = {
        "acme-noel": dict(campaigns=["cmp_1"], optins=["o_1", "o_2"]),
        "acme-newsletter": dict(campaigns=["cmp_3"], contents=["c_5"], optins=["o_1", "o_3"]),
        "acme-rentree": dict(campaigns=["cmp_2"]),
        "acme-optins": dict(type="crm-optin", optins=["o_1", "o_3", "o_4"]),
    }
    folders = {export_id: sshd.make_dir() for export_id in specific}
    global_prefixes = {"acme-all": "all/", "acme-archive": "archive/"}
    product.write_registry(
        [product.crm(i, sftp={"directory": str(folders[i])}, **fields) for i, fields in specific.items()]
        + [product.global_(i, gcs={"prefix": prefix}) for i, prefix in global_prefixes.items()]
    )
    modes = {**{i: "specific" for i in specific}, **{i: "global" for i in global_prefixes}}

    # The on-disk instance every process shares, as `beop-exports run` creates it in $DAGSTER_HOME.
    with daily_run.instance() as instance:
        assert instance.is_persistent and Path(instance.root_directory) == Path(os.environ["DAGSTER_HOME"])
        for mode, spec in EXPORT_MODES.items():
            instance.add_dynamic_partitions(spec.partitions_name, [i for i, m in modes.items() if m == mode])
        loaded_a = (
            load_definitions()
            .resolve_job_def(LOAD_JOB)
            .execute_in_process(
                partition_key=DAY_A.isoformat(), instance=instance, raise_on_error=False, run_config=daily_run.QUIET
            )
        )
        assert loaded_a.success, daily_run._root_error(loaded_a)

        lock_file = wh / ".model.lock"
        with open(lock_file, "w") as model_lock:
            fcntl.flock(model_lock, fcntl.LOCK_EX)
            # DuckDB's own lock too: a process opening beop.duckdb in any mode would now fail.
            held = duckdb.connect(str(warehouse.database_file(wh)))
            try:
                loaders = [
                    processes.start("load-dagster", _RUN, "dagster-load", DAY_B.isoformat()),
                    processes.start("load-direct", _RUN, "direct-load", DAY_B.isoformat()),
                ]
                exporters = {
                    i: processes.start(f"export-{i}", _RUN, m, DAY_A.isoformat(), i, env={"BEOP_EXPORT_THREADS": "1"})
                    for i, m in modes.items()
                }
                outcomes = {i: processes.wait(p) for i, p in exporters.items()}
                # Both writers reach the model lock and wait for it; none has failed on it.
                _wait_until(
                    lambda: (
                        {p.pid for p in loaders} <= _blocked_on(lock_file) or any(p.poll() is not None for p in loaders)
                    ),
                    RUN_TIMEOUT_S,
                    lambda: "loaders never blocked on the model lock",
                )
                assert all(p.poll() is None for p in loaders), "\n".join(map(processes.describe, loaders))
                assert {p.pid for p in loaders} <= _blocked_on(lock_file)
            finally:
                held.close()
                fcntl.flock(model_lock, fcntl.LOCK_UN)
        loads = [processes.wait(p) for p in loaders]

        # Every export run succeeded and its delivery checks passed, under the held locks.
        assert {i: (o["success"], o["status"]) for i, o in outcomes.items()} == {
            i: (True, "delivered") for i in modes
        }, outcomes
        runs = instance.get_runs()
        assert len(runs) == 2 + len(modes)  # load A, the Dagster load of B, the exports
        assert {r.status.value for r in runs} == {"SUCCESS"}

    # Every export of day A delivered exactly one file or object, holding the rows it reported.
    for export_id, folder in folders.items():
        files = sorted(p.name for p in folder.iterdir())
        assert files == [outcomes[export_id]["file_name"]], (export_id, files)
        with open(folder / files[0], newline="", encoding="utf-8") as handle:
            records = sum(1 for _ in csv.reader(handle)) - 1  # the header
        assert records == outcomes[export_id]["rows"] > 0, export_id
    from google.cloud import storage

    objects = sorted(b.name for b in storage.Client.create_anonymous_client().list_blobs(product.bucket))
    assert objects == sorted(f"{prefix}{outcomes[i]['file_name']}" for i, prefix in global_prefixes.items())
    account_rows = _scalar(
        f"SELECT count(*) FROM read_parquet({warehouse.sql_path(landing.parquet('participations', DAY_A))})"
        " WHERE account_id = 'a_1'"
    )
    assert all(outcomes[i]["rows"] == account_rows for i in global_prefixes)
    delivered = ledger.history(day=DAY_A, root=ledger_at())
    assert sorted((d.export_id, d.status) for d in delivered) == sorted((i, "delivered") for i in modes)

    # Day B: both loads succeeded with the right counts; the day is in the Parquet and the DuckDB file once.
    dagster_load, direct_load = loads
    assert dagster_load["success"] and dagster_load["rows"]["participations"] == B_ROWS, dagster_load
    assert direct_load["participations"] == B_ROWS and direct_load["rejected"] == 0, direct_load
    optins_b = direct_load["optins"]
    assert dagster_load["rows"]["optins"] == optins_b > 0
    parquet = {t: warehouse.sql_path(landing.parquet(t, DAY_B)) for t in warehouse.MODEL_TABLES}
    assert _scalar(f"SELECT count(DISTINCT participation_id) FROM read_parquet({parquet['participations']})") == B_ROWS
    assert _scalar(f"SELECT count(*) FROM read_parquet({parquet['participations']})") == B_ROWS
    assert _scalar(f"SELECT count(*) FROM read_parquet({parquet['optins']})") == optins_b
    assert _scalar(f"SELECT count(*) FROM read_parquet({parquet['rejected_participations']})") == 0
    assert not [p for p in wh.rglob("*.tmp")]  # no temporary Parquet left behind
    with duckdb.connect(str(warehouse.database_file(wh)), read_only=True) as db:
        by_day = db.execute(
            "SELECT day, count(*), count(DISTINCT participation_id) FROM participations GROUP BY day ORDER BY day"
        ).fetchall()
        assert by_day == [(DAY_A, A_ROWS, A_ROWS), (DAY_B, B_ROWS, B_ROWS)]
        assert db.execute("SELECT count(*) FROM optins WHERE day = ?", [DAY_B]).fetchone()[0] == optins_b
        assert db.execute("SELECT count(*) FROM rejected_participations").fetchone()[0] == 0


def _fingerprint(day: date) -> dict:
    """What a whole read of the day's participations gives (the reader loop's figures, in one query)."""
    path = warehouse.sql_path(warehouse.loaded_day_file("participations", day, settings.current().warehouse))
    con = warehouse.reader()
    try:
        rows, total = con.execute(
            "SELECT count(*), coalesce(sum(hash(participation_id || '|' || coalesce(email, '') || '|' || "
            f"CAST(timestamp AS VARCHAR)) % 1000003), 0) FROM read_parquet({path})"
        ).fetchone()
    finally:
        con.close()
    return {"rows": rows, "fingerprint": int(total)}


def test_a_parquet_day_replaced_while_it_is_read_is_seen_whole(landing_env, tmp_path, processes):
    old_landing, new_landing = tmp_path / "landing-old", tmp_path / "landing-new"
    generate_day(old_landing, DAY_C, C_OLD_ROWS, seed=11)
    generate_day(new_landing, DAY_C, C_NEW_ROWS, seed=12)
    from beop_assets.landing.zone import staged_day
    from beop_assets.model.day_loader import load_day

    with staged_day(DAY_C, str(old_landing)) as staged:
        load_day(staged, settings.current().warehouse)
    old = _fingerprint(DAY_C)
    assert old["rows"] == C_OLD_ROWS

    stop = tmp_path / "stop-reading"
    observations = tmp_path / "observations.jsonl"
    reader = processes.start(
        "reader", _READ_LOOP, DAY_C.isoformat(), str(stop), str(RUN_TIMEOUT_S), stdout=observations
    )
    _wait_until(
        lambda: observations.read_text().count("\n") >= 1 or reader.poll() is not None,
        RUN_TIMEOUT_S,
        lambda: processes.describe(reader),
    )
    # Reloads with other contents, then back, then other again: three replacements of every Parquet file.
    reloads = processes.start(
        "reloads", _RELOADS, DAY_C.isoformat(), str(new_landing), str(old_landing), str(new_landing)
    )
    assert processes.wait_exit(reloads) == 0, processes.describe(reloads)
    stop.touch()
    assert processes.wait_exit(reader) == 0, processes.describe(reader)

    new = _fingerprint(DAY_C)
    assert new["rows"] == C_NEW_ROWS and new != old
    seen = [json.loads(line) for line in observations.read_text().splitlines()]
    assert [s for s in seen if s not in (old, new)] == []  # never a partial, mixed or failed read
    assert seen[0] == old and seen[-1] == new  # the first read before any reload, the last after them all
