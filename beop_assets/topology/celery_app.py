"""The Celery app that the product's workers run: `celery -A beop_assets.topology.celery_app worker`.

Runs reach the workers through dagster-celery's `CeleryRunLauncher` (deploy/celery/dagster.yaml):
each launched run is one `execute_job` task, executed whole inside a long-lived worker process, which
reads the run from the Dagster instance of its own $DAGSTER_HOME (the same Postgres as everyone).
dagster-celery's stock `dagster_celery.app` takes its broker from a generated config module or
defaults to AMQP on localhost; this one takes it from the environment like every other setting, so
a worker is configured exactly as the webserver and the daemon are:

    DAGSTER_CELERY_BROKER_URL   redis://host:6379/0 (or amqp://...): the broker, also the result backend

Workers that share no disk set BEOP_WAREHOUSE=gs://bucket/prefix: the model's assets then store and
fetch the days themselves (`model/warehouse_store.py`), whatever runs them.

The module has to build the app at import time: that is what Celery's `-A` loads.
"""

from __future__ import annotations

import os

from dagster_celery.config import DEFAULT_CONFIG
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
        # Celery would swap sys.stdout/stderr for proxies into its own log: Dagster's step-log capture
        # (compute logs, on GCS in deploy/celery) would then receive nothing from the run.
        "config_source": {**DEFAULT_CONFIG, "worker_redirect_stdouts": False},
        "task_default_queue": "dagster",  # the only queue dagster-celery's app declares
    }
)

execute_plan = create_task(app)
execute_job = create_execute_job_task(app)
resume_job = create_resume_job_task(app)
