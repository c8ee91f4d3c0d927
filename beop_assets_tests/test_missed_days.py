"""Missed days (issues 15, 19): every (day, enabled export) of the look-back window without a successful
delivery is flagged in the UI (the `missed_deliveries` partition's check fails until it is delivered,
and the alert channels are told once) and by `beop-exports history --missing` (exit 1, naming export
and day); a day about to leave the window undelivered gets a last alert."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from click.testing import CliRunner
from dagster import AssetCheckKey, AssetKey, build_schedule_context, build_sensor_context

from beop_assets.cli import main
from beop_assets.definitions import defs as load_definitions
from beop_assets.delivery import ledger
from beop_assets_tests.fixtures.alerts import body_of
from beop_assets_tests.fixtures.definitions import ledger_at, resources, schedule, sensor

TODAY = datetime.now(UTC).date()
YESTERDAY = TODAY - timedelta(days=1)


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

    result = invoke("history", "--missing", "--date", YESTERDAY.isoformat())
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
    fixed = invoke("history", "--missing", "--date", YESTERDAY.isoformat())
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


# --------------------------------------------------------------------------------------------------
# The whole look-back window (issue 19)
# --------------------------------------------------------------------------------------------------


def two_exports(product) -> None:
    product.write_registry([product.crm("acme-crm"), product.global_("acme-all")])


def test_history_missing_covers_the_lookback_window_by_default_and_takes_a_range(product, monkeypatch):
    monkeypatch.setenv("BEOP_DELIVERY_LOOKBACK_DAYS", "3")
    two_exports(product)
    window = [TODAY - timedelta(days=n) for n in (3, 2, 1)]
    for day in window:
        record(product, "acme-crm", "specific", day=day)
    record(product, "acme-all", "global", day=window[0], error="TransientDeliveryError: bucket unreachable")
    for day in window[1:]:
        record(product, "acme-all", "global", day=day)
    # TODAY - 4 has nothing delivered: outside the default window, listed only when asked for.

    result = invoke("history", "--missing")
    assert result.exit_code == 1, result.output
    missing = [line for line in result.output.splitlines() if line.startswith("MISSING")]
    assert missing == [
        f"MISSING acme-all  {window[0]}  acme-all (global): {window[0]} not delivered: last attempt failed "
        "(run run-acme-all): TransientDeliveryError: bucket unreachable"
    ], result.output
    assert f"{window[0]} to {window[-1]}: 1 undelivered (day, export) pair(s)" in result.output

    older = TODAY - timedelta(days=4)
    ranged = invoke("history", "--missing", "--from", older.isoformat(), "--to", older.isoformat())
    assert (
        ranged.exit_code == 1
        and f"MISSING acme-crm  {older}" in ranged.output
        and f"MISSING acme-all  {older}" in ranged.output
    )
    assert invoke("history", "--missing", "--from", window[1].isoformat()).exit_code == 0  # --to: yesterday

    record(product, "acme-all", "global", day=window[0])
    assert invoke("history", "--missing").exit_code == 0


def _deadline_runs(product, tick: datetime):
    """What the deadline schedule asks for at `tick`, each run executed as the daemon would."""
    with build_schedule_context(
        repository_def=load_definitions().get_repository_def(), scheduled_execution_time=tick, resources=resources()
    ) as context:
        requests = schedule("missed_deliveries_schedule").evaluate_tick(context).run_requests
    job = load_definitions().resolve_job_def("missed_deliveries_job")
    for request in requests:
        job.execute_in_process(partition_key=request.partition_key, instance=product.instance, tags=request.tags)
    return sorted(r.partition_key for r in requests)


def test_a_day_leaving_the_window_undelivered_gets_one_last_alert(product, monkeypatch, webhook, smtp_server):
    monkeypatch.setenv("BEOP_DELIVERY_LOOKBACK_DAYS", "3")
    monkeypatch.setenv("BEOP_MISSED_DAY_DEADLINE", "00:00")
    monkeypatch.setenv("BEOP_ALERT_WEBHOOK_URL", webhook.url)
    monkeypatch.setenv("BEOP_ALERT_SMTP_HOST", smtp_server.host)
    monkeypatch.setenv("BEOP_ALERT_SMTP_PORT", str(smtp_server.port))
    monkeypatch.setenv("BEOP_ALERT_SMTP_TO", "ops@example.com")
    two_exports(product)
    edge, middle = TODAY - timedelta(days=3), TODAY - timedelta(days=2)  # edge: its last day of retries
    for day in (edge, middle, YESTERDAY):
        record(product, "acme-all", "global", day=day)
    record(
        product, "acme-crm", "specific", day=edge, error="PermanentDeliveryError: /upload does not exist on sftp.acme"
    )
    record(product, "acme-crm", "specific", day=middle, error="TransientDeliveryError: connection refused")
    record(product, "acme-crm", "specific", day=YESTERDAY)

    tick = datetime.now(UTC)
    assert _deadline_runs(product, tick) == [edge.isoformat(), middle.isoformat(), YESTERDAY.isoformat()]
    texts = [post["json"]["text"] for post in webhook.posts]
    last = [t for t in texts if "will no longer be retried" in t]
    assert len(last) == 1, texts
    assert f"never delivered {edge}" in last[0] and "acme-crm" in last[0] and "acme-all" not in last[0]
    assert "last error: PermanentDeliveryError: /upload does not exist on sftp.acme" in last[0]
    assert f"automatic retries stop: {TODAY + timedelta(days=1)} 00:00 UTC" in last[0]
    assert f"beop-exports run --date {edge} --export acme-crm" in last[0]
    mailed = [m for m in smtp_server.messages if "will no longer be retried" in " ".join(m["Subject"].split())]
    assert len(mailed) == 1 and "PermanentDeliveryError" in body_of(mailed[0])
    # The missed-day alerts: the edge day and the middle one, each once; yesterday was delivered.
    assert sum(f"missed the delivery of {edge}" in t for t in texts) == 1
    assert sum(f"missed the delivery of {middle}" in t for t in texts) == 1
    assert not any(f"of {YESTERDAY}" in t for t in texts)

    # The next evaluation (another tick the same day, or a re-run by hand) announces nothing again.
    posts, mails = len(webhook.posts), len(smtp_server.messages)
    _deadline_runs(product, tick + timedelta(minutes=1))
    assert (len(webhook.posts), len(smtp_server.messages)) == (posts, mails)


def test_a_flagged_day_stays_flagged_until_delivered_then_the_sensor_clears_it(product, monkeypatch):
    monkeypatch.setenv("BEOP_MISSED_DAY_DEADLINE", "00:00")
    two_exports(product)
    day = TODAY - timedelta(days=4)  # not yesterday: the deadline schedule alone would not look again
    record(product, "acme-crm", "specific", day=day)
    for other in (TODAY - timedelta(days=n) for n in range(1, 8)):
        if other != day:
            record(product, "acme-crm", "specific", day=other)
            record(product, "acme-all", "global", day=other)
    job = load_definitions().resolve_job_def("missed_deliveries_job")

    def tick(cursor: str | None):
        """One sensor tick, its runs executed; (days requested, each run's check result, new cursor)."""
        with build_sensor_context(
            instance=product.instance,
            cursor=cursor,
            resources=resources(),
            repository_def=load_definitions().get_repository_def(),
        ) as context:
            result = sensor("missed_deliveries_sensor").evaluate_tick(context)
        checks = [
            job.execute_in_process(partition_key=r.partition_key, instance=product.instance)
            .get_asset_check_evaluations()[0]
            .passed
            for r in result.run_requests
        ]
        return [r.partition_key for r in result.run_requests], checks, result.cursor

    requested, checks, cursor = tick(None)
    assert (requested, checks) == ([day.isoformat()], [False])
    assert tick(cursor)[0] == []  # nothing changed: nothing re-checked, the check stays failed
    record(product, "acme-all", "global", day=day)
    requested, checks, cursor = tick(cursor)
    assert (requested, checks) == ([day.isoformat()], [True])  # delivered: the day's check clears
    assert tick(cursor)[0] == []
