"""Missed days (issue 15): every enabled export without a successful delivery of yesterday is flagged
in the UI (the `missed_deliveries` partition's check fails, and the alert channels are told) and by
`beop-exports history --missing` (exit 1, naming export and day)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from click.testing import CliRunner
from dagster import AssetCheckKey, AssetKey

from beop_assets.cli import main
from beop_assets.definitions import defs as load_definitions
from beop_assets.delivery import ledger
from beop_assets_tests.fixtures.alerts import body_of
from beop_assets_tests.fixtures.definitions import ledger_at

YESTERDAY = datetime.now(UTC).date() - timedelta(days=1)


def invoke(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def record(product, export_id: str, mode: str, *, error: str | None = None, day=YESTERDAY) -> None:
    delivery = ledger.start(
        export_id, mode, day, "f.csv", 1, 10, "0" * 64, "dest", "run-" + export_id, root=ledger_at()
    )
    ledger.finish(delivery, error=error, root=ledger_at())


def registry(product) -> None:
    product.write_registry(
        [
            product.crm("acme-crm"),
            product.crm("acme-crm-broken-dir"),
            product.crm("acme-off", enabled=False),
            product.global_("acme-all"),
        ]
    )


def test_history_missing_names_each_missing_export_and_day_and_exits_1(product):
    registry(product)
    record(product, "acme-crm", "specific")
    record(product, "acme-crm-broken-dir", "specific", error="PermanentDeliveryError: /nope does not exist")
    record(product, "acme-all", "global", day=YESTERDAY - timedelta(days=1))  # another day: does not count

    result = invoke("history", "--missing")
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("MISSING")]
    assert len(lines) == 2, result.output
    assert lines[0].startswith(f"MISSING acme-crm-broken-dir  {YESTERDAY}")
    assert "last attempt failed (run run-acme-crm-broken-dir): PermanentDeliveryError: /nope" in lines[0]
    assert lines[1].startswith(f"MISSING acme-all  {YESTERDAY}") and "no delivery attempted" in lines[1]
    assert "acme-off" not in result.output  # disabled: never expected
    assert f"{YESTERDAY}: 1 of 3 enabled export(s) delivered, 2 missing" in result.output

    record(product, "acme-crm-broken-dir", "specific")
    record(product, "acme-all", "global")
    fixed = invoke("history", "--missing")
    assert fixed.exit_code == 0, fixed.output
    assert "MISSING" not in fixed.output and "3 of 3 enabled export(s) delivered, 0 missing" in fixed.output


def test_history_missing_for_another_day_and_one_export(product):
    registry(product)
    day = YESTERDAY - timedelta(days=3)
    record(product, "acme-crm", "specific", day=day)
    only = invoke("history", "--missing", "--date", day.isoformat(), "--export", "acme-crm")
    assert only.exit_code == 0, only.output
    other = invoke("history", "--missing", "--date", day.isoformat(), "--export", "acme-all")
    assert other.exit_code == 1 and f"MISSING acme-all  {day}" in other.output


def test_history_missing_fails_when_the_registry_cannot_be_read(product):
    product.write_registry("exports: [unterminated\n")
    result = invoke("history", "--missing")
    assert result.exit_code == 1
    assert "FAULT the registry" in result.output and "cannot be read" in result.output


def test_the_missed_deliveries_check_fails_in_the_ui_and_alerts(product, monkeypatch, webhook, smtp_server):
    monkeypatch.setenv("BEOP_MISSED_DAY_DEADLINE", "00:00")  # passed, whatever time the test runs
    monkeypatch.setenv("BEOP_ALERT_WEBHOOK_URL", webhook.url)
    monkeypatch.setenv("BEOP_ALERT_SMTP_HOST", smtp_server.host)
    monkeypatch.setenv("BEOP_ALERT_SMTP_PORT", str(smtp_server.port))
    monkeypatch.setenv("BEOP_ALERT_SMTP_TO", "ops@example.com")
    registry(product)
    record(product, "acme-crm", "specific")
    record(product, "acme-all", "global")
    record(product, "acme-crm-broken-dir", "specific", error="PermanentDeliveryError: directory /nope missing")

    result = (
        load_definitions()
        .resolve_job_def("missed_deliveries_job")
        .execute_in_process(partition_key=YESTERDAY.isoformat(), instance=product.instance, raise_on_error=False)
    )
    assert result.success  # the run did its job: the finding is the check's
    (evaluation,) = result.get_asset_check_evaluations()
    assert evaluation.asset_check_key == AssetCheckKey(AssetKey("missed_deliveries"), "every_enabled_export_delivered")
    assert not evaluation.passed
    assert evaluation.severity.value == "ERROR"
    assert f"acme-crm-broken-dir (specific): {YESTERDAY} not delivered" in evaluation.description
    (materialization,) = result.asset_materializations_for_node("missed_deliveries")
    assert materialization.partition == YESTERDAY.isoformat()
    assert materialization.metadata["missed_exports"].value == ["acme-crm-broken-dir"]
    assert materialization.metadata["alert"].value.startswith("sent: webhook")

    (post,) = webhook.posts
    text = post["json"]["text"]
    assert f"1 export(s) missed the delivery of {YESTERDAY}" in text
    assert "acme-crm-broken-dir" in text and "directory /nope missing" in text and "run-acme-crm-broken-dir" in text
    assert "acme-crm-broken-dir" in body_of(smtp_server.messages[0])

    # Delivered later: the same partition, checked again, passes and announces nothing.
    record(product, "acme-crm-broken-dir", "specific")
    again = (
        load_definitions()
        .resolve_job_def("missed_deliveries_job")
        .execute_in_process(partition_key=YESTERDAY.isoformat(), instance=product.instance)
    )
    assert again.get_asset_check_evaluations()[0].passed
    assert len(webhook.posts) == 1
