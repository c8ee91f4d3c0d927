"""The one `Definitions` object loads, and shows operators what they expect in the UI."""

import os
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from dagster import AssetKey, DailyPartitionsDefinition, MultiPartitionKey, MultiPartitionsDefinition

from beop_assets.definitions import defs as load_definitions

REPO = Path(__file__).resolve().parents[1]


def test_definitions_load_with_every_asset_group_job_schedule_and_sensor():
    graph = load_definitions().resolve_asset_graph()
    groups = {key.to_user_string(): graph.get(key).group_name for key in graph.get_all_asset_keys()}
    assert groups == {
        "participations": "participation_model",
        "optins": "participation_model",
        "rejected_participations": "participation_model",
        "crm_export_file": "specific_exports",
        "global_export_file": "global_exports",
        "missed_deliveries": "operations",
    }
    assert {j.name for j in load_definitions().resolve_all_job_defs()} >= {
        "load_participations",
        "deliver_specific_exports",
        "deliver_global_exports",
        "missed_deliveries_job",
        "retention_job",
    }
    repository = load_definitions().get_repository_def()
    assert sorted(s.name for s in repository.schedule_defs) == [
        "missed_deliveries_schedule",
        "nightly_participations_schedule",
        "retention_schedule",
    ]
    assert sorted(s.name for s in repository.sensor_defs) == [
        "alert_on_run_failure",
        "deliver_loaded_days_sensor",
        "export_registry_sensor",
        "missed_deliveries_sensor",
    ]
    # four delivery checks per export asset, and the missed-day check
    assert len(list(graph.asset_check_keys)) == 9


def test_every_asset_has_an_owner_and_tags():
    graph = load_definitions().resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        assert node.owners == ["team:data-platform"], key
        assert node.tags.get("domain"), key


def test_partitions_start_90_days_back_unless_beop_start_date_says_otherwise():
    """Issue 15: from 2020-01-01 the UI showed 5,054 partitions for two exports: unreadable."""
    code = (
        "from beop_assets import settings; from beop_assets.defs.partitions import Partitions; "
        "print(Partitions.starting(settings.current().start_date).data_days.start.date())"
    )
    env = {k: v for k, v in os.environ.items() if k != "BEOP_START_DATE"}
    default = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert default.returncode == 0, default.stderr
    assert default.stdout.strip() == (datetime.now(UTC).date() - timedelta(days=90)).isoformat()
    older = subprocess.run(
        [sys.executable, "-c", code], env={**env, "BEOP_START_DATE": "2021-03-01"}, capture_output=True, text=True
    )
    assert older.stdout.strip() == "2021-03-01", older.stderr


def test_model_is_daily_and_exports_are_date_by_export():
    graph = load_definitions().resolve_asset_graph()
    assert isinstance(graph.get(AssetKey("participations")).partitions_def, DailyPartitionsDefinition)
    for key, dynamic in (("crm_export_file", "specific_exports"), ("global_export_file", "global_exports")):
        partitions = graph.get(AssetKey(key)).partitions_def
        assert isinstance(partitions, MultiPartitionsDefinition)
        assert {d.name: getattr(d.partitions_def, "name", None) for d in partitions.partitions_defs} == {
            "date": None,
            "export": dynamic,
        }
        assert graph.get(AssetKey(key)).parent_keys == {AssetKey("participations")}


def test_a_multi_partition_key_materializes_in_process_through_the_sftp_io_manager(product):
    """Time x dynamic multi-partitions have regressed in Dagster before: keep this path proven."""
    day = date(2026, 11, 25)
    product.landing.write_events(day, [product.landing.event("p_1")])
    product.write_registry([product.crm("acme-crm")])
    product.instance.add_dynamic_partitions("specific_exports", ["acme-crm"])
    load = (
        load_definitions()
        .resolve_job_def("load_participations")
        .execute_in_process(partition_key="2026-11-25", instance=product.instance)
    )
    assert load.success
    key = MultiPartitionKey({"date": day.isoformat(), "export": "acme-crm"})
    result = (
        load_definitions()
        .resolve_job_def("deliver_specific_exports")
        .execute_in_process(partition_key=key, instance=product.instance)
    )
    assert result.success
    (materialization,) = result.asset_materializations_for_node("crm_export_file")
    assert materialization.partition == "2026-11-25|acme-crm"
    delivered = [p.name for p in product.upload_dir.iterdir()]
    assert delivered == [materialization.metadata["file_name"].value]


def test_dagster_loads_the_workspace_file():
    done = subprocess.run(
        [str(Path(sys.executable).parent / "dagster"), "definitions", "validate", "-w", "workspace.yaml"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
