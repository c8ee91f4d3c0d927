"""The daily job as the CLI runs it: load the day, then the night's batched delivery runs.

Every run is recorded in the Dagster instance ($DAGSTER_HOME), exactly as the nightly schedule and
its delivery sensor would record it, so the UI shows CLI runs and scheduled runs alike.

The exports are delivered by the same runs as the night's (exports/batch.py): ranges of contiguous
exports, each export reported on its own partition, so a failing export fails only itself. A couple of
ranges run side by side in worker processes ($BEOP_DELIVERY_WORKERS, default one per core): Dagster's
own work in a run is Python that one process cannot spread over two cores. A worker that dies fails
the exports of its range, by name. An ephemeral (in-memory) instance cannot be shared between
processes: its runs execute one by one. `run` re-delivers what it is asked for, delivered or not.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from datetime import date
from pathlib import Path

from dagster import DagsterEventType, DagsterInstance, Definitions, ExecuteInProcessResult

from beop_assets import settings
from beop_assets.defs.exports.batch import REDELIVER_TAG
from beop_assets.defs.exports.jobs import EXPORT_MODES
from beop_assets.defs.exports.sensors import RANGE_END, RANGE_START
from beop_assets.defs.model.jobs import LOAD_JOB
from beop_assets.defs.partitions import Partitions, export_day_key
from beop_assets.defs.step_errors import product_message
from beop_assets.exports.delivery_runs import DEFAULT_BATCH_SIZE, contiguous_ranges

DEFAULT_DAGSTER_HOME = ".dagster_home"
# Written into a new DAGSTER_HOME (an existing dagster.yaml is never touched):
# - the model's pool runs one load at a time (its writes to the DuckDB file are also serialized by a
#   file lock, so an instance without this is still safe);
# - every run's events go into one SQLite file ($DAGSTER_HOME/event_log.db, WAL, shared by concurrent
#   runs through SQLite's busy timeout) instead of a new database per run: creating and migrating that
#   database was a large part of a small export's run (bench/README.md, "Per-export cost");
# - sensors are evaluated side by side (threads), so the delivery sensor never holds up the others;
# - steps' stdout/stderr are not captured to files (two tailing threads per step): the product logs
#   through Dagster's structured log, which the UI shows; put a `compute_logs` section back to capture.
INSTANCE_YAML = """\
concurrency:
  pools:
    default_limit: 1
  runs:
    max_concurrent_runs: 4
sensors:
  use_threads: true
  num_workers: 4
  num_submit_workers: 4
telemetry:
  enabled: false
event_log_storage:
  module: beop_assets.defs.event_log
  class: SqliteEventLog
  config:
    base_dir:
      env: DAGSTER_HOME
compute_logs:
  module: dagster._core.storage.noop_compute_log_manager
  class: NoOpComputeLogManager
"""


# The CLI prints one line per export (the product's own message, no stack trace); the full event log, with
# every step's error and trace, is in the instance (and the UI).
QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}


@dataclass
class Outcome:
    export_id: str
    mode: str | None
    status: str  # delivered | failed | unverified (delivered, but a delivery check failed)
    file_name: str | None = None
    rows: int | None = None
    error: str | None = None
    run_id: str | None = None


def instance() -> DagsterInstance:
    """The Dagster instance of $DAGSTER_HOME; without one, a persistent `.dagster_home` here, so that
    `dagster dev` started with DAGSTER_HOME=$PWD/.dagster_home shows the same runs."""
    home = Path(os.environ.get("DAGSTER_HOME") or DEFAULT_DAGSTER_HOME).resolve()
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "dagster.yaml").exists():
        (home / "dagster.yaml").write_text(INSTANCE_YAML)
    os.environ["DAGSTER_HOME"] = str(home)
    return DagsterInstance.get()


def _root_error(result: ExecuteInProcessResult) -> str:
    for event in result.all_events:
        if event.event_type in (DagsterEventType.STEP_FAILURE, DagsterEventType.RUN_FAILURE):
            message = product_message(getattr(event.event_specific_data, "error", None))
            if message:
                return message.splitlines()[0]
    return "run failed"


def _targets(registry, export_ids: list[str] | None) -> tuple[list[tuple[str, str]], list[Outcome]]:
    from beop_assets.exports.registry import is_export_id

    known = {e.id: e.mode for e in registry.exports.values()} | {i: m for i, m in registry.broken.items()}
    if export_ids is None:
        targets = [(i, m) for m in ("specific", "global") for i in registry.scheduled_ids(m)]
        # A broken entry that cannot be scheduled (an id that is not a slug cannot be a partition key:
        # `a|b` would crash the run and stop the exports after it; a mode that is unreadable has no
        # job) fails here, with its faults, and the others still run.
        scheduled = {i for i, _ in targets}
        return targets, [
            Outcome(i, m, "failed", error="; ".join(map(str, registry.faults_of(i))))
            for i, m in sorted(registry.broken.items())
            if i not in scheduled
        ]
    targets, unknown = [], []
    for export_id in export_ids:
        mode = known.get(export_id)
        if mode is None or not is_export_id(export_id):
            faults = "; ".join(map(str, registry.faults_of(export_id))) or f"not in the registry {registry.path}"
            unknown.append(Outcome(export_id, None, "failed", error=faults))
        else:
            targets.append((export_id, mode))
    return targets, unknown


def run_day(
    day: date,
    export_ids: list[str] | None = None,
    echo: Callable[[str], None] = print,
    dagster_instance: DagsterInstance | None = None,
    config: settings.Settings | None = None,
) -> list[Outcome]:
    from beop_assets.definitions import build_definitions, build_resources

    config = config or settings.current()  # the CLI's edge: the settings of this command
    data_days = Partitions.starting(config.start_date).data_days
    if not data_days.has_partition_key(day.isoformat()):
        raise SystemExit(
            f"{day} is outside the data days Dagster offers (from {data_days.start:%Y-%m-%d} to today, UTC; "
            "set BEOP_START_DATE for older days)"
        )
    dagster_instance = dagster_instance or instance()
    # Named exports: only their entries are read and validated, so a run of one export pays for that
    # export, not for a registry of 10,000 (issue 24). The faults printed are then theirs and the
    # registry's own; the other exports' faults are `validate`'s to print. Every enabled export: all of it.
    registry_resource = build_resources(config)["registry"]
    registry = registry_resource.load() if export_ids is None else registry_resource.exports_for(export_ids)
    for fault in registry.faults:
        echo(f"registry fault: {fault}")
    targets, outcomes = _targets(registry, export_ids)
    if registry.unreadable and export_ids is None:
        return [Outcome("(registry)", None, "failed", error="; ".join(map(str, registry.faults)))]

    for mode, spec in EXPORT_MODES.items():
        wanted = {i for i, m in targets if m == mode}
        missing = sorted(wanted - set(dagster_instance.get_dynamic_partitions(spec.partitions_name)))
        if missing:
            dagster_instance.add_dynamic_partitions(spec.partitions_name, missing)

    echo(f"loading participations of {day} ...")
    defs = build_definitions(config)
    load = defs.resolve_job_def(LOAD_JOB).execute_in_process(
        partition_key=day.isoformat(),
        instance=dagster_instance,
        raise_on_error=False,
        tags={"beop/trigger": "cli"},
        run_config=QUIET,
    )
    if not load.success:
        error = f"loading {day} failed: {_root_error(load)}"
        echo(error)
        return outcomes + [Outcome(i, m, "failed", error=error) for i, m in targets]
    for mat in load.asset_materializations_for_node("participation_model"):
        if mat.asset_key.to_user_string() == "participations":
            meta = {k: v.value for k, v in mat.metadata.items()}
            echo(f"loaded {day}: {meta.get('rows')} participations, {meta.get('rejected')} rejected lines")

    return outcomes + deliver(
        day, targets, dagster_instance, config.delivery_workers, defs, batch_size=config.delivery_batch_size
    )


def deliver(
    day: date,
    targets: list[tuple[str, str]],
    dagster_instance: DagsterInstance,
    workers: int,
    defs: Definitions | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> list[Outcome]:
    """Every (export, mode) of `targets` through the night's batched runs (ranges of contiguous exports,
    a few side by side); outcomes in the order of `targets`."""
    ranges = _ranges(day, targets, dagster_instance, max(1, workers), batch_size)
    done: dict[str, Outcome] = {}
    if max(1, workers) == 1 or len(ranges) == 1 or dagster_instance.is_ephemeral:
        from beop_assets.definitions import defs as load_definitions

        defs = defs or load_definitions()
        for mode, ids in ranges:
            done.update((o.export_id, o) for o in _deliver_range(day, mode, ids, dagster_instance, defs))
        return [done[export_id] for export_id, _ in targets]
    # spawn, not fork: the parent holds Dagster's and gRPC's threads, which a fork would copy mid-state.
    context = multiprocessing.get_context("spawn")
    home = dagster_instance.root_directory
    with ProcessPoolExecutor(
        min(workers, len(ranges)), mp_context=context, initializer=_worker_start, initargs=(home,)
    ) as pool:
        futures: dict[Future, tuple[str, list[str]]] = {
            pool.submit(_worker_deliver, day, mode, ids): (mode, ids) for mode, ids in ranges
        }
        for future in futures:
            mode, ids = futures[future]
            try:
                done.update((o.export_id, o) for o in future.result())
            except Exception as exc:  # a worker that died (BrokenProcessPool) or could not start the run
                for export_id in ids:
                    done[export_id] = Outcome(
                        export_id, mode, "failed", error=f"the process delivering this export failed: {exc}"
                    )
    return [done[export_id] for export_id, _ in targets]


def _ranges(
    day: date, targets: list[tuple[str, str]], dagster_instance: DagsterInstance, workers: int, batch_size: int
) -> list[tuple[str, list[str]]]:
    """(mode, export ids) of each run: contiguous in the partitions' insertion order (what a range is),
    at most `batch_size`, and cut so that `workers` processes share the work."""
    ranges: list[tuple[str, list[str]]] = []
    for mode, spec in EXPORT_MODES.items():
        wanted = {export_id for export_id, m in targets if m == mode}
        if not wanted:
            continue
        size = max(1, min(batch_size, -(-len(wanted) // workers)))
        order = dagster_instance.get_dynamic_partitions(spec.partitions_name)
        ranges += [(mode, ids) for ids in contiguous_ranges(order, dict.fromkeys(wanted, mode), size)]
    return ranges


# A worker process's instance and definitions: made once by `_worker_start`, used by each run it executes.
_worker: tuple[DagsterInstance, Definitions] | None = None


def _worker_start(home: str) -> None:
    global _worker
    from beop_assets.definitions import defs

    _worker = (DagsterInstance.from_config(home), defs())


def _worker_deliver(day: date, mode: str, export_ids: list[str]) -> list[Outcome]:
    assert _worker is not None
    return _deliver_range(day, mode, export_ids, *_worker)


def _deliver_range(
    day: date, mode: str, export_ids: list[str], dagster_instance: DagsterInstance, defs: Definitions
) -> list[Outcome]:
    """One batched run delivering the contiguous range `export_ids`, again even if delivered (the operator asked)."""
    job = defs.resolve_job_def(EXPORT_MODES[mode].job_name)
    result = job.execute_in_process(
        instance=dagster_instance,
        raise_on_error=False,
        tags={
            RANGE_START: str(export_day_key(day, export_ids[0])),
            RANGE_END: str(export_day_key(day, export_ids[-1])),
            "beop/trigger": "cli",
            REDELIVER_TAG: "true",
        },
        run_config=QUIET,
    )
    return _outcomes(day, mode, export_ids, result)


def _outcomes(day: date, mode: str, export_ids: list[str], result: ExecuteInProcessResult) -> list[Outcome]:
    """Each export's outcome from its own events: its materialization, its checks, else its failed attempt."""
    by_key = {str(export_day_key(day, e)): Outcome(e, mode, "failed", run_id=result.run_id) for e in export_ids}
    for event in result.all_events:
        if event.event_type == DagsterEventType.ASSET_MATERIALIZATION:
            materialization = event.step_materialization_data.materialization
            outcome = by_key.get(str(materialization.partition))
            if outcome is None:
                continue
            meta = materialization.metadata
            file_name, rows = meta.get("file_name"), meta.get("rows")
            outcome.status = "delivered" if outcome.status == "failed" else outcome.status
            outcome.file_name = str(file_name.value) if file_name is not None else None
            outcome.rows = int(rows.value) if rows is not None and isinstance(rows.value, int) else None
        elif event.event_type == DagsterEventType.ASSET_CHECK_EVALUATION:
            evaluation = event.asset_check_evaluation_data
            outcome = by_key.get(str(evaluation.partition))
            if outcome is not None and not evaluation.passed:
                outcome.status = "unverified"
                outcome.error = (
                    (outcome.error + "; ") if outcome.error else ""
                ) + f"check {evaluation.check_name} failed"
    failed = [o for o in by_key.values() if o.status == "failed"]
    if failed:
        attempts = _attempts_of_run(day, result.run_id)
        for outcome in failed:
            outcome.error = attempts.get(outcome.export_id) or _root_error(result)
    return list(by_key.values())


def _attempts_of_run(day: date, run_id: str) -> dict[str, str]:
    """The error of each export's failed attempt in this run, from the delivery ledger."""
    from beop_assets.delivery import ledger

    config = settings.current()
    rows = ledger.history(day=day, root=config.ledger, status="failed", limit=1_000_000)
    return {r.export_id: _first_line(r.error) for r in reversed(rows) if r.run_id == run_id and r.error}


def _first_line(error: str) -> str:
    message = error.split(": ", 1)[1] if error.split(": ", 1)[0].endswith("Error") else error
    return message.splitlines()[0]
