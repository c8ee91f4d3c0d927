"""The one place where the product is assembled for Dagster (`dagster dev`, the CLI and the tests).

The deployment's settings are read here, once, when the code location loads (`@definitions`: not at
import), and become the resources' fields. The resources are locked: no run config can change where data
is read from or delivered to. A setting that only one job needs and that cannot be used becomes that
resource's `problem`, so it fails that job at run time instead of the whole code location.

Runs use the in-process executor: an export run is one build-and-deliver step plus its checks,
and a process per step would cost more than the work itself (see README, "Dagster overhead").
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import time
from typing import Any

from dagster import DefaultScheduleStatus, Definitions, InMemoryIOManager, definitions, in_process_executor

from beop_assets import settings
from beop_assets.defs.exports import export_definitions
from beop_assets.defs.exports.io_managers import DeliveryIOManager
from beop_assets.defs.model import model_definitions
from beop_assets.defs.operations import operations_definitions
from beop_assets.defs.partitions import Partitions
from beop_assets.defs.resources import (
    Alerts,
    DeliveryPolicy,
    ExportFiles,
    ExportRegistry,
    Landing,
    MissedDayDeadline,
    Retention,
    Warehouse,
    locked,
    locked_io_manager,
)
from beop_assets.exports.delivery_runs import DEFAULT_KEYS_PER_TICK
from beop_assets.exports.delivery_schedule import RetrySchedule

DEFAULT_DEADLINE = time(6, 0)


def _usable(read: Callable[[], Any]) -> tuple[Any, str | None]:
    """A setting's value, or (None, its error) when it cannot be used."""
    try:
        return read(), None
    except ValueError as exc:
        return None, str(exc)


def build_resources(config: settings.Settings) -> dict[str, Any]:
    """Every resource, its fields taken from the deployment's settings (unlocked: the CLI's and tests' view)."""
    registry = ExportRegistry(path=config.exports, landing=config.landing)
    warehouse = Warehouse(
        root=str(config.warehouse),
        store=config.warehouse_store,
        load_memory_limit=config.load_memory_limit,
        ledger_url=config.ledger_url,
        read_threads=config.export_threads,
    )
    gzip_level, gzip_problem = _usable(lambda: config.gzip_level)
    retention_days, retention_problem = _usable(lambda: config.retention_days)
    deadline, deadline_problem = _usable(lambda: config.missed_day_deadline)
    lookback, lookback_problem = _usable(lambda: config.delivery_lookback_days)
    keys_per_tick, keys_per_tick_problem = _usable(lambda: config.delivery_keys_per_tick)
    retry_schedule, retry_problem = _usable(lambda: config.retry_schedule)
    channels, alerts_problem = _usable(lambda: config.alerts)
    # Every delivery needs these: an unusable one stops the code location (and `validate --settings-only`).
    retry = config.delivery_retry
    delivery = DeliveryIOManager(
        registry=registry,
        warehouse=warehouse,
        sftp_read_back=config.sftp_read_back,
        retry_attempts=retry.attempts,
        retry_backoff_s=retry.backoff_s,
        run_nice=config.run_nice,
    )
    return {
        "registry": registry,
        "warehouse": warehouse,
        "landing": Landing(url=config.landing),
        "export_files": ExportFiles(
            gzip_level=gzip_level if gzip_level is not None else 5,
            read_threads=config.export_threads,
            problem=gzip_problem,
        ),
        "retention": Retention(days=retention_days or 30, problem=retention_problem),
        "deadline_setting": MissedDayDeadline(
            hour=(deadline or DEFAULT_DEADLINE).hour,
            minute=(deadline or DEFAULT_DEADLINE).minute,
            problem=deadline_problem,
        ),
        "delivery_policy": DeliveryPolicy(
            lookback_days=lookback or 7,
            keys_per_tick=keys_per_tick or DEFAULT_KEYS_PER_TICK,
            retry_first_minutes=(retry_schedule or RetrySchedule()).first_minutes,
            retry_max_minutes=(retry_schedule or RetrySchedule()).max_minutes,
            retry_permanent_minutes=(retry_schedule or RetrySchedule()).permanent_minutes,
            problem=lookback_problem or keys_per_tick_problem or retry_problem,
        ),
        "alert_channels": Alerts(
            **(
                {
                    "webhook_url": channels.webhook_url,
                    "smtp_host": channels.smtp_host,
                    "smtp_port": channels.smtp_port,
                    "smtp_from": channels.smtp_from,
                    "smtp_to": list(channels.smtp_to),
                    "smtp_user": channels.smtp_user,
                    "smtp_password": channels.smtp_password,
                    "smtp_starttls": channels.smtp_starttls,
                }
                if channels
                else {}
            ),
            problem=alerts_problem,
        ),
        "sftp_delivery": delivery,
        "gcs_delivery": delivery,
    }


def build_definitions(config: settings.Settings) -> Definitions:
    partitions = Partitions.starting(config.start_date)
    schedules = DefaultScheduleStatus.STOPPED if config.schedule_default == "stopped" else DefaultScheduleStatus.RUNNING
    deadline, _ = _usable(lambda: config.missed_day_deadline)
    resources = {
        key: locked_io_manager(value) if key.endswith("_delivery") else locked(value)
        for key, value in build_resources(config).items()
    }
    # Nothing the product stores goes through the default IO manager (assets report MaterializeResults, the
    # retention op outputs Nothing); an in-memory one leaves no folder for a launch to point elsewhere.
    resources["io_manager"] = locked_io_manager(InMemoryIOManager())
    return Definitions.merge(
        model_definitions(partitions, schedules),
        export_definitions(partitions, config.delivery_batch_size),
        operations_definitions(partitions, deadline or DEFAULT_DEADLINE, schedules),
        Definitions(resources=resources, executor=in_process_executor),
    )


@definitions
def defs() -> Definitions:
    return build_definitions(settings.current())
