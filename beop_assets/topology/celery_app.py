"""The Celery app that the product's workers run: `celery -A beop_assets.topology.celery_app worker`.

Runs reach the workers through dagster-celery's `CeleryRunLauncher` (deploy/celery/dagster.yaml):
each launched run is one `execute_job` task, executed whole inside a long-lived worker process, which
reads the run from the Dagster instance of its own $DAGSTER_HOME (the same Postgres as everyone).
dagster-celery's stock `dagster_celery.app` takes its broker from a generated config module or
defaults to AMQP on localhost; this one takes it from the environment like every other setting, so
a worker is configured exactly as the webserver and the daemon are:

    DAGSTER_CELERY_BROKER_URL   redis://host:6379/0 (or amqp://...): the broker, also the result backend
    BEOP_WAREHOUSE_MIRROR       gs://bucket/prefix: where the model's Parquet days live when workers
                                share no disk (`warehouse_mirror`); unset: BEOP_WAREHOUSE is shared

The module has to build the app at import time: that is what Celery's `-A` loads.
"""

from __future__ import annotations

import logging
import os
from datetime import date
from typing import Any

from celery.signals import task_postrun, task_prerun  # type: ignore[import-untyped]
from dagster import DagsterInstance, DagsterRunStatus
from dagster._grpc.types import ExecuteRunArgs
from dagster._serdes import unpack_value
from dagster_celery.config import DEFAULT_CONFIG, TASK_EXECUTE_JOB_NAME
from dagster_celery.make_app import make_app
from dagster_celery.tasks import create_execute_job_task, create_resume_job_task, create_task


def _broker() -> str:
    url = os.environ.get("DAGSTER_CELERY_BROKER_URL")
    if not url:
        raise RuntimeError(
            "DAGSTER_CELERY_BROKER_URL is not set: a Celery worker needs the broker URL the run launcher "
            "uses (deploy/celery/dagster.yaml), e.g. redis://broker-host:6379/0"
        )
    return url


app = make_app(
    {
        "broker": _broker(),
        "backend": _broker(),
        "include": [],
        "config_source": dict(DEFAULT_CONFIG),
        "task_default_queue": "dagster",  # the only queue dagster-celery's app declares
    }
)

execute_plan = create_task(app)
execute_job = create_execute_job_task(app)
resume_job = create_resume_job_task(app)


# -- the warehouse mirror, around each run ------------------------------------------------------------

log = logging.getLogger(__name__)
LOAD_JOB = "load_participations"
# How long an export waits for a day whose load has just been reported successful to reach the mirror.
MIRROR_WAIT_S = 60.0


def _run_of(task: Any, kwargs: dict[str, Any]) -> tuple[str, date] | None:
    """(job name, data day) of the run an `execute_job` task carries; None for anything else."""
    if getattr(task, "name", None) != TASK_EXECUTE_JOB_NAME or not os.environ.get("BEOP_WAREHOUSE_MIRROR"):
        return None
    args = unpack_value(kwargs["execute_job_args_packed"], as_type=ExecuteRunArgs)
    with DagsterInstance.get() as instance:
        run = instance.get_run_by_id(args.run_id)
    key = run.tags.get("dagster/partition") if run is not None else None
    if run is None or not key:
        return None
    return run.job_name, date.fromisoformat(key.split("|", 1)[0])


def _mirror_client():
    from beop_assets.cloud_storage import landing_client  # the platform's own identity, or the emulator

    return landing_client()


@task_prerun.connect
def _pull_the_day(task: Any = None, kwargs: dict[str, Any] | None = None, **_: Any) -> None:
    found = _run_of(task, kwargs or {})
    if found is None or found[0] == LOAD_JOB:
        return
    from beop_assets import settings
    from beop_assets.topology.warehouse_mirror import pull_day

    mirror = os.environ["BEOP_WAREHOUSE_MIRROR"]
    pulled = pull_day(found[1], settings.current().warehouse, mirror, _mirror_client(), wait_s=MIRROR_WAIT_S)
    log.info("pulled %d Parquet file(s) of %s from the warehouse mirror", len(pulled), found[1])


@task_postrun.connect
def _push_a_loaded_day(task: Any = None, kwargs: dict[str, Any] | None = None, **_: Any) -> None:
    found = _run_of(task, kwargs or {})
    if found is None or found[0] != LOAD_JOB:
        return
    args = unpack_value((kwargs or {})["execute_job_args_packed"], as_type=ExecuteRunArgs)
    with DagsterInstance.get() as instance:
        run = instance.get_run_by_id(args.run_id)
    if run is None or run.status != DagsterRunStatus.SUCCESS:
        return
    from beop_assets import settings
    from beop_assets.topology.warehouse_mirror import push_day

    written = push_day(found[1], settings.current().warehouse, os.environ["BEOP_WAREHOUSE_MIRROR"], _mirror_client())
    log.info("pushed %s to the warehouse mirror", ", ".join(written))
