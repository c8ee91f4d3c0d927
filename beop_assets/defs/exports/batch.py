"""A batched export run: one Dagster run delivers many (day, export) partitions of one mode.

A run per (day, export) costs Dagster far more than the work (a process, the code's import, a dozen
events), so the nightly sensor, `beop-exports run` and UI backfills ask for ranges of exports instead
(`BEOP_DELIVERY_BATCH_SIZE`). Inside the run each export is built, delivered through the delivery IO manager
(`DeliveryIOManager.deliver`: the one delivery path, with its ledger rows) and read back for its checks,
several side by side: a delivery mostly waits for the customer's server, so a few threads keep the
round trips overlapping while `BUILD_SLOTS` bounds the CPU-heavy building.

Each export is still reported on its own, as if it had had its run: its materialization (file, rows,
bytes, sha256, attempt, duration...) and each of its checks, linked to that materialization so that the
UI shows them as current. An export that fails fails alone: the step raises at the end, naming the
failed exports, so the UI shows its batchmates materialized and only those failed.

An export delivered before is never sent again by the night: a run started by a sensor skips the keys
that the ledger already shows delivered (a queued batch may overlap an operator's re-run). A run that a
person launched (the UI's Materialize or backfill, `beop-exports run`, or any run tagged
`beop/redeliver=true`) delivers every key it names again: that is what was asked for.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from dagster import (
    AssetCheckEvaluation,
    AssetExecutionContext,
    AssetKey,
    AssetMaterialization,
    AssetRecordsFilter,
    MetadataValue,
)
from dagster._core.definitions.asset_checks.asset_check_evaluation import AssetCheckEvaluationTargetMaterializationData

from beop_assets.defs.exports.checks import Check, evaluate_checks
from beop_assets.defs.exports.io_managers import DeliveryIOManager
from beop_assets.defs.partitions import split_export_day_key
from beop_assets.defs.resources import ExportRegistry, Warehouse
from beop_assets.delivery import ledger
from beop_assets.delivery.sftp_connection import SessionPool
from beop_assets.exports.export_file import ExportFile
from beop_assets.exports.registry import Registry, RegistryError

# Exports of a run in flight at once: most of a delivery is waiting for the customer's server.
DELIVERY_THREADS = 8
# Exports of a run being built at once (DuckDB and compression: CPU), whatever the delivery threads.
BUILD_SLOTS = 2

# Exports named in one ledger query (a run of a larger BEOP_DELIVERY_BATCH_SIZE makes several).
LEDGER_CHUNK = 500

REDELIVER_TAG = "beop/redeliver"
SENSOR_TAG = "dagster/sensor_name"
ATTEMPT_TAG = "beop/attempt"

# Builds one export's file: (registry, day, export id, run id, partition key) -> the file and its
# materialization metadata (row count, column schema).
Builder = Callable[[Registry, date, str, str, str], tuple[ExportFile, dict[str, Any]]]


class ExportsFailed(Exception):
    """Some exports of a batched run failed; the message names each one and why."""


@dataclass
class _Result:
    key: str
    day: date
    export_id: str
    metadata: dict[str, Any] = field(default_factory=dict)
    checks: list = field(default_factory=list)
    error: str | None = None  # the export failed: what happened
    delivered: bool = False
    skipped: str | None = None


def redelivers(tags: dict[str, str]) -> bool:
    """A run that delivers its keys again even if delivered: any run not started by a sensor, or tagged so."""
    return tags.get(REDELIVER_TAG) == "true" or SENSOR_TAG not in tags


def _past_attempts(
    root: ledger.Location, keys: list[tuple[date, str]]
) -> dict[tuple[date, str], list[ledger.Delivery]]:
    """The ledger rows of these (day, export) keys: a few queries whatever the batch's size, and only the
    batch's rows, whatever else the day holds (10,000 exports' rows, for a run of one)."""
    rows: dict[tuple[date, str], list[ledger.Delivery]] = {}
    by_day: dict[date, list[str]] = {}
    for day, export_id in keys:
        by_day.setdefault(day, []).append(export_id)
    for day, export_ids in by_day.items():
        for start in range(0, len(export_ids), LEDGER_CHUNK):
            chunk = export_ids[start : start + LEDGER_CHUNK]
            for row in ledger.history(day=day, root=root, limit=1_000_000, export_ids=chunk):
                rows.setdefault((day, row.export_id), []).append(row)
    return rows


def yield_cpu(nice: int) -> bool:
    """Lower this thread's priority to `nice` (and the threads it then starts), when the run executes in
    a process of its own: the default launcher's run worker and `beop-exports run`'s workers are children
    of the code server and of the CLI. On a box the night keeps busy (four runs of eight delivery threads,
    on two cores), the daemon and the code server otherwise got a few tenths of a core: a sensor's second
    of work took 5 to 19 s. The runs still take every cycle the control plane leaves. A run executed
    in the caller's own process (tests, Celery workers, `execute_in_process`) is left as it is.
    True if the priority was lowered."""
    if nice <= 0 or multiprocessing.parent_process() is None:
        return False
    try:
        if os.getpriority(os.PRIO_PROCESS, 0) >= nice:
            return False
        os.setpriority(os.PRIO_PROCESS, 0, nice)  # Linux: this thread, inherited by the ones it starts
    except OSError:
        return False
    return True


def deliver_partitions(
    context: AssetExecutionContext,
    *,
    asset_key: AssetKey,
    mode: str,
    kind: type,
    checks: list[Check],
    build: Builder,
    registry: ExportRegistry,
    warehouse: Warehouse,
    delivery: DeliveryIOManager,
) -> Iterator[AssetMaterialization | AssetCheckEvaluation]:
    """Build, deliver and verify every (day, export) of the run; one materialization and its checks per export."""
    if yield_cpu(delivery.run_nice):
        context.log.info(f"delivery run at nice {delivery.run_nice} (BEOP_RUN_NICE): the daemon goes first")
    keys = [str(k) for k in context.partition_keys]
    split = {key: split_export_day_key(key) for key in keys}
    run_tags = dict(context.run.tags)
    past = _past_attempts(warehouse.ledger(), list(split.values()))
    wanted = keys
    if not redelivers(run_tags):
        done = [k for k in keys if any(r.status == "delivered" for r in past.get(split[k], []))]
        for key in done:
            context.log.info(f"{split[key][1]} {split[key][0]}: already delivered, not sent again")
        wanted = [k for k in keys if k not in set(done)]
    loaded = registry.exports_for(sorted({export_id for _, export_id in (split[k] for k in wanted)}))
    build_slots = threading.BoundedSemaphore(BUILD_SLOTS)
    # The run's SFTP exports to one server share a few logins instead of two each (upload, read-back).
    sessions = SessionPool()

    def one(key: str) -> _Result:
        day, export_id = split[key]
        result = _Result(key, day, export_id)
        started = time.monotonic()
        try:
            if export_id not in loaded.exports and not loaded.faults_of(export_id) and export_id not in loaded.broken:
                result.skipped = f"no longer in the registry {loaded.path}: not delivered"
                return result
            export = loaded.get_as(export_id, kind)
            with build_slots:
                built, built_metadata = build(loaded, day, export_id, context.run_id, key)
        except Exception as exc:
            result.error = f"{type(exc).__name__}: {exc}" if not isinstance(exc, RegistryError) else str(exc)
            delivery.record_failure(export_id, mode, day, context.run_id, exc)
            return result
        try:
            metadata = delivery.deliver(built, export, loaded.revision, context.run_id, sessions)
        except Exception as exc:
            result.error = str(exc) or type(exc).__name__
            return result
        result.delivered = True
        attempt = 1 + sum(1 for r in past.get((day, export_id), []) if r.status != "delivered")
        result.metadata = {
            **built_metadata,
            **metadata,
            "attempt": MetadataValue.int(attempt),
            "duration_s": MetadataValue.float(round(time.monotonic() - started, 3)),
        }
        try:
            read = delivery.read_back(day, export_id, export, sessions)
            result.checks, failure = evaluate_checks(
                checks, read, day=day, export=export, reference=loaded.checked_reference(), warehouse=warehouse
            )
        except Exception as exc:
            failure = exc
        if failure is not None:
            result.error = f"delivered, but its checks could not run: {type(failure).__name__}: {failure}"
        return result

    failed: list[_Result] = []
    threads = max(1, min(DELIVERY_THREADS, len(wanted)))
    with sessions, ThreadPoolExecutor(threads, thread_name_prefix="deliver") as pool:
        pending: dict[Future, str] = {pool.submit(one, key): key for key in wanted}
        while pending:
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            results = [f.result() for f in finished]
            for f in finished:
                pending.pop(f)
            yield from _report(context, asset_key, results)
            failed += [r for r in results if r.error]
    if sessions.opened:
        context.log.info(f"SFTP sessions: {sessions.opened} opened, {sessions.reused} reused")
    if failed:
        raise ExportsFailed(
            f"{len(failed)} of {len(wanted)} exports failed: "
            + "; ".join(f"{r.export_id} ({r.day}): {r.error}" for r in sorted(failed, key=lambda r: r.key))
        )


def _report(
    context: AssetExecutionContext, asset_key: AssetKey, results: list[_Result]
) -> Iterator[AssetMaterialization | AssetCheckEvaluation]:
    """Each delivered export's materialization, then its checks linked to it (one lookup for them all)."""
    for r in results:
        if r.skipped:
            context.log.warning(f"{r.export_id} {r.day}: {r.skipped}")
        elif r.error and not r.delivered:
            context.log.error(f"{r.export_id} {r.day}: {r.error}")
    delivered = [r for r in results if r.delivered]
    for r in delivered:
        context.log.info(f"{r.export_id} {r.day}: delivered {r.metadata['file_name'].value}")
        yield AssetMaterialization(asset_key=asset_key, partition=r.key, metadata=r.metadata)
    if not delivered:
        return
    # The materializations just yielded are stored: the checks point at them, as the UI expects.
    records = context.instance.fetch_materializations(
        AssetRecordsFilter(asset_key=asset_key, asset_partitions=[r.key for r in delivered]), limit=len(delivered) * 4
    ).records
    targets: dict[str, AssetCheckEvaluationTargetMaterializationData] = {}
    for record in records:  # newest first
        if record.partition_key not in targets and record.event_log_entry.run_id == context.run_id:
            targets[record.partition_key] = AssetCheckEvaluationTargetMaterializationData(
                storage_id=record.storage_id, run_id=context.run_id, timestamp=record.timestamp
            )
    for r in delivered:
        for name, check in r.checks:
            yield AssetCheckEvaluation(
                asset_key=asset_key,
                check_name=name,
                passed=check.passed,
                metadata=check.metadata,
                severity=check.severity,
                description=check.description,
                target_materialization_data=targets.get(r.key),
                partition=r.key,
            )
        if r.error:
            context.log.error(f"{r.export_id} {r.day}: {r.error}")
