"""The four delivery checks of a mode are evaluated together for each delivered export
(`checks.evaluate_checks`): a check that raises must not hide the others' results, and must still fail
the export (so its run fails and alerts as before).
A unit test of that one function; the checks themselves run against real servers in
test_daily_run.py, test_gcs_least_privilege.py and test_sftp_field_servers.py."""

from __future__ import annotations

from datetime import date
from types import SimpleNamespace

from dagster import AssetCheckResult, AssetKey

from beop_assets.defs.exports import checks
from beop_assets.defs.partitions import Partitions


def _boom(delivered, **_):
    raise RuntimeError("the model's day is gone")


def test_a_check_that_raises_lets_the_others_report_then_fails_the_export(tmp_path):
    seen = []
    folder = tmp_path / "read-back"
    folder.mkdir()

    def passing(delivered, *, day, export, reference, warehouse):
        seen.append((delivered, day, export, reference, warehouse))
        return AssetCheckResult(passed=True, metadata={"rows": 3})

    the_file = SimpleNamespace(folder=folder)
    results, failure = checks.evaluate_checks(
        [("first", "", passing), ("broken", "", _boom), ("last", "", lambda d, **_: AssetCheckResult(passed=False))],
        the_file,
        day=date(2026, 11, 25),
        export="export acme",
        reference="reference",
        warehouse="the warehouse",
    )
    assert [(name, r.passed) for name, r in results] == [("first", True), ("last", False)]
    assert results[0][1].metadata["rows"].value == 3
    assert seen == [(the_file, date(2026, 11, 25), "export acme", "reference", "the warehouse")]
    assert isinstance(failure, RuntimeError) and "the model's day is gone" in str(failure)
    assert not folder.exists()  # the copy read back is removed, checked or not


def test_every_check_of_a_mode_has_its_own_name_on_its_asset():
    partitions = Partitions.starting("2025-01-01")
    crm = checks.check_specs("crm_export_file", checks.CRM_CHECKS, partitions.specific_export_days)
    global_ = checks.check_specs("global_export_file", checks.GLOBAL_CHECKS, partitions.global_export_days)
    assert [c.name for c in crm] == [n for n, _, _ in checks.CRM_CHECKS]
    assert [c.name for c in global_] == [n for n, _, _ in checks.GLOBAL_CHECKS]
    assert len(checks.CRM_CHECKS) == len(checks.GLOBAL_CHECKS) == 4
    assert {c.asset_key for c in crm} == {AssetKey("crm_export_file")}
