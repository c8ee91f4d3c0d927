"""Batched delivery runs (issue 19): one Dagster run delivers a range of (day, export) partitions, to the
real OpenSSH sshd, and reports each export on its own in the instance the UI reads: a failing export
fails only its partition, its batchmates are materialized with their checks (linked to their
materialization), an export removed while its batch is queued fails nothing else, and a sensor's run
never sends a delivered key again.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from dagster import AssetCheckKey, AssetKey, AssetRecordsFilter, DagsterEventType

from beop_assets.defs.partitions import export_day_key
from beop_assets.defs.step_errors import product_message
from beop_assets.delivery import ledger
from beop_assets_tests.fixtures.definitions import definitions
from beop_assets_tests.test_nightly_delivery import load_days, register_exports

DAY = datetime.now(UTC).date() - timedelta(days=1)
CRM = AssetKey("crm_export_file")
CHECKS = ["crm_file_delivered_intact", "crm_header_is_contract", "crm_rows_match_model", "crm_only_own_account"]


def range_tags(first: str, last: str, **extra: str) -> dict[str, str]:
    return {
        "dagster/asset_partition_range_start": str(export_day_key(DAY, first)),
        "dagster/asset_partition_range_end": str(export_day_key(DAY, last)),
        **extra,
    }


def run_range(instance, first: str, last: str, **tags: str):
    job = definitions().resolve_job_def("deliver_specific_exports")
    return job.execute_in_process(instance=instance, tags=range_tags(first, last, **tags), raise_on_error=False)


def _setup(product, ids: list[str], broken: str | None = None):
    product.landing.write_events(DAY, [product.landing.event(f"p_{i}", day=DAY) for i in range(3)])
    exports = [
        product.crm(i, sftp={"directory": "/no/such/dir"} if i == broken else None, name=f"Export {i}") for i in ids
    ]
    product.write_registry(exports)
    register_exports(product.instance)
    load_days(product.instance, [DAY])


def test_one_failing_export_fails_only_its_partition_and_its_batchmates_have_their_checks(product):
    ids = [f"e{n:02d}" for n in range(8)]
    _setup(product, ids, broken="e03")
    instance = product.instance

    result = run_range(instance, "e00", "e07")

    assert not result.success
    failure = next(e for e in result.all_events if e.event_type == DagsterEventType.STEP_FAILURE)
    assert "ExportsFailed: 1 of 8 exports failed: e03" in (product_message(failure.event_specific_data.error) or "")
    for export_id in ids:
        key = str(export_day_key(DAY, export_id))
        records = instance.fetch_materializations(AssetRecordsFilter(asset_key=CRM, asset_partitions=[key]), limit=1)
        if export_id == "e03":
            assert not records.records
            continue
        event = records.records[0].event_log_entry
        assert event.run_id == result.run_id
        metadata = event.asset_materialization.metadata
        assert metadata["rows"].value == 3 and metadata["attempt"].value == 1
        assert {"file_name", "bytes", "sha256", "duration_s", "dagster/row_count", "delivery_attempts"} <= set(metadata)
        infos = instance.event_log_storage.get_asset_check_partition_info(
            [AssetCheckKey(CRM, check) for check in CHECKS], partition_keys=[key]
        )
        # What the UI shows: each check passed, and is current (it targets this materialization).
        assert sorted(i.check_key.name for i in infos) == sorted(CHECKS)
        assert all(i.latest_execution_status.value == "SUCCEEDED" and i.is_current for i in infos), infos
    failed = ledger.history("e03", DAY, root=product.landing.warehouse)
    assert [d.status for d in failed] == ["failed"] and "/no/such/dir" in (failed[0].error or "")
    assert len(list(product.upload_dir.iterdir())) == 7
    assert not list((product.landing.warehouse / "spool").rglob("*.csv"))  # copies read back are removed


def test_an_export_removed_while_its_batch_is_queued_breaks_nothing_else(product):
    ids = ["e00", "e01", "e02"]
    _setup(product, ids)
    product.write_registry([product.crm(i, name=f"Export {i}") for i in ("e00", "e02")])  # e01 removed

    result = run_range(product.instance, "e00", "e02")

    assert result.success
    delivered = {d.export_id for d in ledger.history(day=DAY, root=product.landing.warehouse, status="delivered")}
    assert delivered == {"e00", "e02"}
    assert len(list(product.upload_dir.iterdir())) == 2


def test_a_sensor_run_never_sends_a_delivered_key_again_but_an_operator_run_does(product):
    ids = ["e00", "e01"]
    _setup(product, ids)
    assert run_range(product.instance, "e00", "e01").success  # an operator's run (no sensor tag)
    assert len(list(product.upload_dir.iterdir())) == 2

    again = run_range(product.instance, "e00", "e01", **{"dagster/sensor_name": "deliver_loaded_days_sensor"})
    assert again.success
    assert len(ledger.history(day=DAY, root=product.landing.warehouse, status="delivered")) == 2

    redelivered = run_range(product.instance, "e00", "e01", **{"beop/redeliver": "true"})
    assert redelivered.success
    assert len(ledger.history(day=DAY, root=product.landing.warehouse, status="delivered")) == 4


def test_a_batch_reads_the_registry_once_whatever_its_size(product, monkeypatch):
    """A run of many exports reads its exports from the registry once, not once per export: with the
    platform's registry of thousands of entries, every extra read costs in proportion to all of them."""
    from beop_assets.exports import registry_cache, registry_source

    ids = [f"e{n:02d}" for n in range(6)]
    _setup(product, ids)
    registry_cache.clear()  # as in a run's fresh process: nothing read yet
    reads: list[int] = []
    real = registry_source.YamlFile.read
    monkeypatch.setattr(registry_source.YamlFile, "read", lambda self, *a, **k: reads.append(1) or real(self, *a, **k))

    result = run_range(product.instance, "e00", "e05")

    assert result.success
    assert len(list(product.upload_dir.iterdir())) == 6
    assert len(reads) <= 1, f"{len(reads)} registry reads for a batch of {len(ids)}"


def test_a_batch_of_exports_to_one_server_logs_in_less_than_once_per_export(product, sshd):
    """Each export used to log in twice (its upload, its read-back): 10,000 exports made 10,000 logins a night.
    The run's exports to one server with the same credentials share their sessions."""
    ids = [f"e{n:02d}" for n in range(6)]
    _setup(product, ids)
    before = sshd.log_text().count("Accepted ")

    result = run_range(product.instance, "e00", "e05")

    assert result.success
    assert len(list(product.upload_dir.iterdir())) == 6
    assert sshd.log_text().count("Accepted ") - before <= len(ids)
    logged = [e.user_message for e in product.instance.all_logs(result.run_id) if "SFTP sessions:" in e.user_message]
    assert logged and logged[0].endswith("reused")


def test_a_batch_reads_only_its_own_exports_rows_of_the_ledger(product, monkeypatch):
    """A run of two exports on a day the ledger holds thousands of other exports' rows for reads the two's
    rows only: one export's run costs the same whatever the platform's size."""
    ids = ["e00", "e01"]
    _setup(product, ids)
    where = product.landing.warehouse
    for n in range(50):  # the rest of the platform's night
        row = ledger.start(f"other-{n}", "specific", DAY, "f.csv", 1, 1, "x", "sftp://h/d", "run", root=where)
        ledger.finish(row, attempts=1, root=where)
    seen: set[str] = set()
    real = ledger.history
    monkeypatch.setattr(ledger, "history", lambda *a, **k: [r for r in real(*a, **k) if not seen.add(r.export_id)])

    result = run_range(product.instance, "e00", "e01", **{"dagster/sensor_name": "deliver_loaded_days_sensor"})

    assert result.success
    assert seen and seen <= set(ids), f"the run read other exports' rows: {sorted(seen - set(ids))[:5]}"


def _priority_in_child(nice: int) -> tuple[bool, int, int]:
    import os
    import threading

    from beop_assets.defs.exports.batch import yield_cpu

    lowered = yield_cpu(nice)
    seen: list[int] = []
    worker = threading.Thread(target=lambda: seen.append(os.getpriority(os.PRIO_PROCESS, 0)))
    worker.start()
    worker.join()
    return lowered, os.getpriority(os.PRIO_PROCESS, 0), seen[0]


def test_a_run_in_a_process_of_its_own_yields_the_cpu_to_the_daemon_and_the_code_server():
    """The night's runs (children of the code server) take the CPU the control plane leaves: a sensor's
    tick no longer waits behind four runs' threads. The process that runs a step itself is left alone."""
    import multiprocessing
    import os

    from beop_assets.defs.exports.batch import yield_cpu

    with multiprocessing.get_context("spawn").Pool(1) as pool:
        lowered, main_thread, delivery_thread = pool.apply(_priority_in_child, (10,))
        assert (lowered, main_thread, delivery_thread) == (True, 10, 10)
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        assert pool.apply(_priority_in_child, (0,))[:2] == (False, 0)  # BEOP_RUN_NICE=0: as before
    before = os.getpriority(os.PRIO_PROCESS, 0)
    assert yield_cpu(10) is False and os.getpriority(os.PRIO_PROCESS, 0) == before
