"""The one-box instance's event log (defs/event_log.py): the planned events Dagster stores when it creates
a run of a range of exports are written in one transaction, not two per (day, export). They are written
inside the delivery sensor's tick, competing with the running runs for SQLite's one writer.

Counted (commits on the storage's engine), never timed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from dagster import DagsterEventType, DagsterInstance, EventRecordsFilter

from beop_assets.daily_run import INSTANCE_YAML
from beop_assets.defs.event_log import SqliteEventLog
from beop_assets.defs.exports.sensors import RANGE_END, RANGE_START
from beop_assets_tests.fixtures.definitions import definitions

DAY = datetime.now(UTC).date() - timedelta(days=1)
EXPORTS = [f"e{n:03d}" for n in range(60)]


@pytest.fixture
def one_box(tmp_path, monkeypatch):
    monkeypatch.delenv("DAGSTER_EVENT_BATCH_SIZE", raising=False)  # restored (unset) after the test
    (tmp_path / "dagster.yaml").write_text(INSTANCE_YAML)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    with DagsterInstance.from_config(str(tmp_path)) as instance:
        yield instance


def test_creating_a_run_of_a_range_commits_its_planned_events_at_once(one_box):
    storage = one_box.event_log_storage
    assert isinstance(storage, SqliteEventLog)
    one_box.add_dynamic_partitions("specific_exports", EXPORTS)
    commits: list[int] = []
    sa.event.listen(storage._engine, "commit", lambda conn: commits.append(1))

    job = definitions().resolve_job_def("deliver_specific_exports")
    run = one_box.create_run_for_job(
        job,
        tags={RANGE_START: f"{DAY}|{EXPORTS[0]}", RANGE_END: f"{DAY}|{EXPORTS[-1]}"},
    )

    planned = one_box.get_event_records(EventRecordsFilter(event_type=DagsterEventType.ASSET_MATERIALIZATION_PLANNED))
    assert {r.event_log_entry.dagster_event.event_specific_data.partition for r in planned} == {
        f"{DAY}|{e}" for e in EXPORTS
    }
    assert all(r.run_id == run.run_id for r in planned)
    assert len(commits) < 30, f"{len(commits)} commits for the planned events of {len(EXPORTS)} keys"


def test_the_storage_turns_dagster_batches_on_for_its_process_unless_told_otherwise(tmp_path, monkeypatch):
    import os

    monkeypatch.delenv("DAGSTER_EVENT_BATCH_SIZE", raising=False)
    SqliteEventLog(str(tmp_path / "a"))
    assert os.environ["DAGSTER_EVENT_BATCH_SIZE"] == "1000"
    monkeypatch.setenv("DAGSTER_EVENT_BATCH_SIZE", "0")  # an operator who turns it off is obeyed
    SqliteEventLog(str(tmp_path / "b"))
    assert os.environ["DAGSTER_EVENT_BATCH_SIZE"] == "0"
