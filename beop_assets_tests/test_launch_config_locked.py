"""Issue 20: nobody who can reach the UI redirects data at launch.

Through the real `dagster dev` and GraphQL's `launchRun` (what the launchpad sends), a run whose config
tries to change where data is read from or delivered to — the registry, the landing zone, the warehouse,
a delivery IO manager, the default IO manager's folder — is refused before it starts, with an error that
names the deployment settings; no run is created and nothing reaches the customer's server. The same
launch without that config is accepted (so the refusal is the config's, not the launch's).
"""

from __future__ import annotations

import time
from datetime import date, timedelta

import pytest

from beop_assets_tests.fixtures.dagster_dev import LOCATION, DagsterDev
from beop_assets_tests.test_e2e_dagster_daemon import CRM_ID, World, dagster_dev, world  # noqa: F401

pytestmark = pytest.mark.e2e

LAUNCH = """mutation Launch($params: ExecutionParams!) { launchRun(executionParams: $params) { __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on RunConfigValidationInvalid { errors { message } }
    ... on Error { message } } }"""
RUNS = """query { runsOrError { ... on Runs { results { runId jobName } } } }"""
DAY = (date.today() - timedelta(days=1)).isoformat()

# Every resource of the product's jobs that decides where data comes from or goes to, with a config that
# would redirect it.
REDIRECTS = {
    "registry": {"path": "/tmp/another-registry.yaml", "landing": "gs://another-bucket/x"},
    "landing": {"url": "gs://another-bucket/x"},
    "warehouse": {"root": "/tmp/elsewhere", "store": "gs://another-bucket/model"},
    "sftp_delivery": {"sftp_read_back": True},
    "io_manager": {"base_dir": "/tmp/elsewhere"},
}


def _launch(server: DagsterDev, job: str, run_config: dict, tags: dict[str, str]) -> dict:
    selector = {"repositoryLocationName": LOCATION, "repositoryName": server.repository, "jobName": job}
    params = {
        "selector": selector,
        "runConfigData": run_config,
        "executionMetadata": {"tags": [{"key": k, "value": v} for k, v in tags.items()]},
    }
    return server.gql(LAUNCH, {"params": params})["launchRun"]


def test_run_config_that_redirects_data_is_refused_before_the_run_starts(
    world: World,  # noqa: F811 (the e2e module's fixture)
    dagster_dev: DagsterDev,  # noqa: F811
):
    world.write_registry(world.exports())
    server = dagster_dev
    for job, tags in [
        ("load_participations", {"dagster/partition": DAY}),
        ("deliver_specific_exports", {"dagster/partition": f"{DAY}|{CRM_ID}"}),
    ]:
        for key, config in REDIRECTS.items():
            if job == "load_participations" and key == "sftp_delivery":
                continue  # not a resource of the load job
            result = _launch(server, job, {"resources": {key: {"config": config}}}, tags)
            assert result["__typename"] == "RunConfigValidationInvalid", (job, key, result)
            messages = " ".join(e["message"] for e in result["errors"])
            assert "deployment_settings_only" in messages, messages
    assert server.gql(RUNS)["runsOrError"]["results"] == []
    assert not any(world.sshd.upload_dir.iterdir())

    # The same launch without the redirecting config is accepted: the refusal was the config's.
    accepted = _launch(server, "load_participations", {}, {"dagster/partition": DAY})
    assert accepted["__typename"] == "LaunchRunSuccess", accepted
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not server.gql(RUNS)["runsOrError"]["results"]:
        time.sleep(0.5)
    assert [r["jobName"] for r in server.gql(RUNS)["runsOrError"]["results"]] == ["load_participations"]
