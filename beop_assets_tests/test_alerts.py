"""Alerts (issue 15): a failed run and a missed day reach a real webhook receiver (http.server) and a
real SMTP server (aiosmtpd) on 127.0.0.1, naming the export, the day, the error and the run, and never
a secret."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

import pytest
from dagster import DagsterEventType, build_run_status_sensor_context

from beop_assets import settings
from beop_assets.definitions import defs as load_definitions
from beop_assets.defs.operations.alerts import alert_on_run_failure
from beop_assets.operations import alerts
from beop_assets.operations.missed_deliveries import MissedDayReport, MissedDelivery
from beop_assets_tests.fixtures.alerts import body_of
from beop_assets_tests.fixtures.definitions import resource
from beop_assets_tests.fixtures.sshd import SFTP_PASSWORD_ENV

YESTERDAY = datetime.now(UTC).date() - timedelta(days=1)


@pytest.fixture
def alerting(monkeypatch, webhook, smtp_server):
    monkeypatch.setenv("BEOP_ALERT_WEBHOOK_URL", webhook.url)
    monkeypatch.setenv("BEOP_ALERT_SMTP_HOST", smtp_server.host)
    monkeypatch.setenv("BEOP_ALERT_SMTP_PORT", str(smtp_server.port))
    monkeypatch.setenv("BEOP_ALERT_SMTP_FROM", "beop@example.com")
    monkeypatch.setenv("BEOP_ALERT_SMTP_TO", "ops@example.com, oncall@example.com")
    return webhook, smtp_server


def test_an_alert_reaches_the_webhook_as_slack_json_and_the_mailbox(alerting):
    webhook, mailbox = alerting
    alert = alerts.run_failure_alert("deliver_specific_exports", "run-123", "boom", export_id="acme", day="2026-11-25")
    sent = alerts.send_alert(alert, settings.alert_settings(os.environ))
    assert sent[0].startswith("webhook http://127.0.0.1:") and "token" not in sent[0]
    assert sent[1] == "e-mail to ops@example.com, oncall@example.com"
    (post,) = webhook.posts
    assert post["content_type"].startswith("application/json")
    assert list(post["json"]) == ["text"]  # Slack-compatible: {"text": ...}
    for fragment in ("acme", "2026-11-25", "boom", "run-123"):
        assert fragment in post["json"]["text"]
    (message,) = mailbox.messages
    assert message["Subject"] == "beop-exports: export acme failed for 2026-11-25"
    assert mailbox.envelopes == [("beop@example.com", ["ops@example.com", "oncall@example.com"])]
    assert "run: run-123" in body_of(message) and "error: boom" in body_of(message)


def test_secrets_are_masked_and_the_webhook_url_never_appears(alerting, monkeypatch):
    webhook, mailbox = alerting
    monkeypatch.setenv("BEOP_ALERT_SMTP_PASSWORD", "smtp-password-very-secret")
    error = f"login failed with hunter2-sftp-password and smtp-password-very-secret via {webhook.url}"
    alert = alerts.run_failure_alert("job", "run-1", error, export_id="acme", day="2026-11-25")
    alerts.send_alert(alert, settings.alert_settings(os.environ), secrets=["hunter2-sftp-password"])
    texts = [webhook.posts[0]["json"]["text"], body_of(mailbox.messages[0]), mailbox.messages[0]["Subject"]]
    for text in texts:
        assert "hunter2-sftp-password" not in text
        assert "smtp-password-very-secret" not in text
        assert "secret-webhook-token" not in text
    assert texts[0].count(alerts.MASK) == 3


def test_an_unreachable_webhook_names_its_host_and_still_sends_the_email(alerting, monkeypatch):
    _, mailbox = alerting
    from beop_assets.demo.sshd import free_port

    dead = f"http://127.0.0.1:{free_port()}/hooks/secret-token-xyz"
    monkeypatch.setenv("BEOP_ALERT_WEBHOOK_URL", dead)
    alert = alerts.run_failure_alert("job", "run-1", "boom", export_id="acme", day="2026-11-25")
    with pytest.raises(alerts.AlertDeliveryError) as failure:
        alerts.send_alert(alert, settings.alert_settings(os.environ))
    message = str(failure.value)
    assert "unreachable" in message and dead.rsplit("/", 2)[0].split("/hooks")[0] in message
    assert "secret-token-xyz" not in message
    assert "sent: e-mail to" in message and len(mailbox.messages) == 1


def test_the_run_failure_sensor_announces_a_failed_export_run(product, alerting):
    """A real failed run (the day was never loaded), as the daemon hands it to the sensor."""
    webhook, mailbox = alerting
    product.write_registry([product.crm("acme-crm")])
    product.instance.add_dynamic_partitions("specific_exports", ["acme-crm"])
    key = f"{YESTERDAY}|acme-crm"
    result = (
        load_definitions()
        .resolve_job_def("deliver_specific_exports")
        .execute_in_process(partition_key=key, instance=product.instance, raise_on_error=False)
    )
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type == DagsterEventType.RUN_FAILURE)
    context = build_run_status_sensor_context(
        sensor_name="alert_on_run_failure",
        dagster_event=failure,
        dagster_instance=product.instance,
        dagster_run=product.instance.get_run_by_id(result.run_id),
    ).for_run_failure()
    alert_on_run_failure(context, alert_channels=resource("alert_channels"), registry=resource("registry"))

    (post,) = webhook.posts
    text = post["json"]["text"]
    assert text.startswith(f"beop-exports: export acme-crm failed for {YESTERDAY}")
    assert f"run: {result.run_id}" in text
    assert f"data day: {YESTERDAY}" in text
    assert "materialize the participations partition" in text  # the product's own error, not Dagster's
    (message,) = mailbox.messages
    assert result.run_id in body_of(message)
    assert os.environ[SFTP_PASSWORD_ENV] not in text + body_of(message)


def test_a_missed_day_alert_lists_each_export_its_day_and_last_error():
    report = MissedDayReport(
        day=YESTERDAY,
        checked=["a", "b"],
        missed=[
            MissedDelivery("a", "specific", YESTERDAY, "failed", "host down", "run-9"),
            MissedDelivery("b", "global", YESTERDAY),
        ],
    )
    alert = alerts.missed_day_alert(report, "06:00 UTC")
    text = alert.text()
    assert alert.subject == f"beop-exports: 2 export(s) missed the delivery of {YESTERDAY}"
    assert f"a (specific): {YESTERDAY} not delivered: last attempt failed (run run-9): host down" in text
    assert f"b (global): {YESTERDAY} not delivered: no delivery attempted" in text
