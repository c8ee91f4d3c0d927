"""A snapshot of what operators and the instance depend on: asset keys, groups, owners, partitions
definitions, checks, jobs, schedules and sensors. A change to any of them (a renamed asset orphans
its history; a renamed dynamic partition set loses every export's status) must be deliberate: this
test fails on it, and `BEOP_UPDATE_SNAPSHOT=1 pytest beop_assets_tests/test_definitions_snapshot.py`
rewrites the snapshot, for the diff to be reviewed with the change.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from dagster import DailyPartitionsDefinition, DynamicPartitionsDefinition, MultiPartitionsDefinition

from beop_assets.definitions import defs as load_definitions

SNAPSHOT = Path(__file__).with_name("definitions_snapshot.json")


def _partitions(partitions_def) -> object:
    if partitions_def is None:
        return None
    if isinstance(partitions_def, MultiPartitionsDefinition):
        return {d.name: _partitions(d.partitions_def) for d in partitions_def.partitions_defs}
    if isinstance(partitions_def, DynamicPartitionsDefinition):
        return f"dynamic:{partitions_def.name}"
    if isinstance(partitions_def, DailyPartitionsDefinition):
        # The start date is a setting (and moves with the calendar); the cadence and zone are not.
        return f"daily:{partitions_def.timezone}:{partitions_def.minute_offset}:{partitions_def.hour_offset}"
    return type(partitions_def).__name__


def current_snapshot() -> dict:
    graph = load_definitions().resolve_asset_graph()
    repository = load_definitions().get_repository_def()
    assets = {}
    for key in sorted(graph.get_all_asset_keys(), key=lambda k: k.to_user_string()):
        node = graph.get(key)
        assets[key.to_user_string()] = {
            "group": node.group_name,
            "owners": sorted(node.owners),
            "tags": dict(sorted(node.tags.items())),
            "partitions": _partitions(node.partitions_def),
            "deps": sorted(k.to_user_string() for k in node.parent_keys),
        }
    return {
        "assets": assets,
        "checks": sorted(f"{k.asset_key.to_user_string()}:{k.name}" for k in graph.asset_check_keys),
        "jobs": sorted(j.name for j in load_definitions().resolve_all_job_defs() if not j.name.startswith("__")),
        "schedules": {
            s.name: {"cron": s.cron_schedule, "job": s.job_name, "default_status": s.default_status.value}
            for s in sorted(repository.schedule_defs, key=lambda s: s.name)
        },
        "sensors": {
            s.name: {"default_status": s.default_status.value}
            for s in sorted(repository.sensor_defs, key=lambda s: s.name)
        },
    }


def test_definitions_match_the_reviewed_snapshot():
    snapshot = current_snapshot()
    if os.environ.get("BEOP_UPDATE_SNAPSHOT") == "1":
        SNAPSHOT.write_text(json.dumps(snapshot, indent=2, sort_keys=True) + "\n")
    expected = json.loads(SNAPSHOT.read_text())
    assert snapshot == expected, (
        "the Definitions changed; if deliberate, rerun with BEOP_UPDATE_SNAPSHOT=1 and review the diff of "
        f"{SNAPSHOT.name}"
    )
