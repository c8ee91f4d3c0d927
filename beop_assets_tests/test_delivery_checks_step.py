"""The four delivery checks of a mode run as one step (`checks._run_checks`): a check that raises must
not hide the others' results, and must still fail the step (so the run fails and alerts as before).
A unit test of that one function; the checks themselves run against real servers in
test_daily_run.py, test_gcs_least_privilege.py and test_sftp_field_servers.py."""

from __future__ import annotations

from datetime import date
from types import SimpleNamespace

import pytest
from dagster import AssetCheckResult, AssetKey

from beop_assets.defs.exports import checks
from beop_assets.defs.partitions import Partitions


class _Registry:
    def load(self):
        return SimpleNamespace(get=lambda export_id: f"export {export_id}", checked_reference=lambda: "reference")


THE_FILE = SimpleNamespace(folder=None)


def _boom(delivered, **_):
    raise RuntimeError("the model's day is gone")


def test_a_check_that_raises_lets_the_others_report_then_fails_the_step():
    seen = []

    def passing(delivered, *, day, export, reference, warehouse):
        seen.append((delivered, day, export, reference, warehouse))
        return AssetCheckResult(passed=True, metadata={"rows": 3})

    results = checks._run_checks(
        "crm_export_file",
        [("first", "", passing), ("broken", "", _boom), ("last", "", lambda d, **_: AssetCheckResult(passed=False))],
        SimpleNamespace(partition_key="2026-11-25|acme"),
        THE_FILE,
        _Registry(),
        "the warehouse",
    )
    first = next(results)
    assert (first.check_name, first.asset_key, first.passed, first.metadata["rows"].value) == (
        "first",
        AssetKey("crm_export_file"),
        True,
        3,
    )
    assert seen == [(THE_FILE, date(2026, 11, 25), "export acme", "reference", "the warehouse")]
    last = next(results)
    assert (last.check_name, last.passed) == ("last", False)
    with pytest.raises(RuntimeError, match="the model's day is gone"):
        next(results)


def test_every_check_of_a_mode_is_one_step_with_its_own_name():
    crm_checks, global_checks = checks.build_delivery_checks(Partitions.starting("2025-01-01"))
    assert [c.name for c in crm_checks.check_specs] == [n for n, _, _ in checks.CRM_CHECKS]
    assert [c.name for c in global_checks.check_specs] == [n for n, _, _ in checks.GLOBAL_CHECKS]
    assert len(checks.CRM_CHECKS) == len(checks.GLOBAL_CHECKS) == 4
    assert {c.asset_key for c in crm_checks.check_specs} == {AssetKey("crm_export_file")}
