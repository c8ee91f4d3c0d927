"""Alerts on failed runs: every failed run (export, data day, error, run id) goes to the alert channels."""

from dagster import DefaultSensorStatus, RunFailureSensorContext, run_failure_sensor

from beop_assets.defs.resources import Alerts, ExportRegistry
from beop_assets.defs.step_errors import product_message
from beop_assets.operations import alerts


def _step_error(context: RunFailureSensorContext) -> str:
    """The product's message of the first failed step (not Dagster's wrapper around it)."""
    for event in context.get_step_failure_events():
        message = product_message(getattr(event.event_specific_data, "error", None))
        if message:
            return message
    return context.failure_event.message or "run failed"


def run_failure_alert_of(context: RunFailureSensorContext) -> alerts.Alert:
    run = context.dagster_run
    # A batched run names its day in its range; the step's error names each failed export.
    partition = (
        run.tags.get("dagster/partition") or run.tags.get("dagster/asset_partition_range_start", "").split("|")[0]
    )
    export_id = day = None
    if partition and "|" in partition:
        day, _, export_id = partition.partition("|")
    elif partition:
        day = partition
    return alerts.run_failure_alert(run.job_name, run.run_id, _step_error(context), export_id=export_id, day=day)


@run_failure_sensor(
    name="alert_on_run_failure",
    default_status=DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
    description="Sends every failed run (export, data day, error, run id) to BEOP_ALERT_WEBHOOK_URL "
    "and/or by e-mail (BEOP_ALERT_SMTP_*).",
)
def alert_on_run_failure(context: RunFailureSensorContext, alert_channels: Alerts, registry: ExportRegistry):
    if context.dagster_run.tags.get("beop/announce") == "false":  # a retry of an announced permanent failure
        context.log.info(f"run {context.dagster_run.run_id}: a retry of a failure already announced; not sent again")
        return
    config = alert_channels.channels()
    alert = run_failure_alert_of(context)
    if not config.enabled:
        context.log.warning(f"no alert channel configured; not sent: {alert.subject}")
        return
    try:
        secrets = alerts.registry_secrets(registry.load().exports.values())
    except Exception:  # an unreadable registry must not stop the alert; its masks are then lost
        secrets = []
    sent = alerts.send_alert(alert, config, secrets)
    context.log.info(f"alert sent ({', '.join(sent)}): {alert.subject}")
