"""The door of the UI (issue 20), as the deployment guide builds it on one box: two real
`dagster-webserver`s on 127.0.0.1 (the operators' one, and a `--read-only` one for people who only
watch), on the product's workspace and a throwaway DAGSTER_HOME, behind Debian's nginx configured by
the shipped `deploy/nginx/render.sh` (fixtures/ui_door.py). Over HTTPS, as a browser would:

- without credentials (or with the wrong ones, or the watchers' at the operators' door) nginx answers
  401 and no GraphQL reaches a webserver;
- with the operators' credentials a GraphQL query is answered through the door;
- the read-only webserver, reached through the watchers' door, refuses `launchRun` and
  `launchPartitionBackfill` with Dagster's `UnauthorizedError`, and no run or backfill exists afterwards;
- the webservers themselves listen on 127.0.0.1 only (from the kernel's socket table).

Nothing is skipped: a webserver or nginx that cannot start fails the test with its output.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from beop_assets.daily_run import INSTANCE_YAML
from beop_assets.demo.sshd import free_port
from beop_assets_tests.fixtures.dagster_dev import alive, process_family
from beop_assets_tests.fixtures.topology import BIN, REPO_ROOT, Service, Webserver
from beop_assets_tests.fixtures.ui_door import Account, LocalDoor, open_door

pytestmark = pytest.mark.e2e

OPERATORS = Account("operator", "correct horse battery staple")
WATCHERS = Account("watcher", "seen but not touched")
REPOSITORIES = """query { repositoriesOrError { __typename
    ... on RepositoryConnection { nodes { name location { name } jobs { name } } } } }"""
LAUNCH_RUN = """mutation Launch($params: ExecutionParams!) { launchRun(executionParams: $params) {
    __typename ... on Error { message } } }"""
LAUNCH_BACKFILL = """mutation Backfill($params: LaunchBackfillParams!) { launchPartitionBackfill(backfillParams: $params) {
    __typename ... on Error { message } } }"""


@dataclass
class Box:
    """One machine as the guide installs it: two webservers on loopback, nginx in front."""

    operators: Webserver
    watchers: Webserver
    door: LocalDoor

    def post(self, url: str, query: str, variables: dict | None = None, auth: Account | None = None):
        return requests.post(
            f"{url}/graphql",
            json={"query": query, "variables": variables or {}},
            auth=auth.auth if auth else None,
            verify=str(self.door.cert),
            timeout=60,
        )

    def gql(self, url: str, auth: Account, query: str, variables: dict | None = None) -> dict:
        response = self.post(url, query, variables, auth)
        assert response.status_code == 200, f"{url}: HTTP {response.status_code} {response.text[:2000]}"
        body = response.json()
        assert not body.get("errors"), f"{url}: GraphQL errors {body['errors']}"
        return body["data"]


def _webserver(folder: Path, name: str, env: dict[str, str], *extra: str) -> Webserver:
    port = free_port()
    command = [str(BIN / "dagster-webserver"), "-w", str(REPO_ROOT / "workspace.yaml")]
    command += ["-h", "127.0.0.1", "-p", str(port), *extra]
    return Webserver(Service(name, folder, command, env), port)


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Box]:
    folder = tmp_path_factory.mktemp("one-box")
    home = folder / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(INSTANCE_YAML)  # the one-box instance the CLI writes
    (folder / "exports.yaml").write_text("exports: []\n")
    (folder / "landing").mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BEOP_", "DAGSTER_"))}
    env |= {
        "DAGSTER_HOME": str(home),
        "BEOP_LANDING": str(folder / "landing"),
        "BEOP_WAREHOUSE": str(folder / "warehouse"),
        "BEOP_EXPORTS": str(folder / "exports.yaml"),
        "PYTHONUNBUFFERED": "1",
    }
    operators = _webserver(folder, "webserver", env)
    watchers = _webserver(folder, "webserver-read-only", env, "--read-only")
    started: list[Service] = []
    families: set[int] = set()
    try:
        # One after the other, as the units order them: the first creates the SQLite instance's tables,
        # which two webservers starting at once would both try to create.
        for web in (operators, watchers):
            started.append(web.service.start())
            web.wait_ready()
            assert web.service.process is not None
            families |= process_family(web.service.process.pid)
        with open_door(f"127.0.0.1:{operators.port}", f"127.0.0.1:{watchers.port}", OPERATORS, WATCHERS) as door:
            yield Box(operators, watchers, door)
    finally:
        for service in reversed(started):
            service.stop()
        # The group got SIGTERM and its leader has exited; its code server may need a moment more.
        deadline = time.monotonic() + 10
        while alive(families) and time.monotonic() < deadline:
            time.sleep(0.2)
    assert not alive(families), f"webserver processes survived their stop: {sorted(alive(families))}"


def _listening_addresses(port: int) -> set[str]:
    """The local IPv4/IPv6 addresses with a listening TCP socket on `port` (/proc/net/tcp{,6})."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not Path(table).exists():
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            address, hex_port = fields[1].split(":")
            if fields[3] == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                found.add(address)
    return found


def test_the_webservers_listen_on_loopback_only(box: Box):
    for web in (box.operators, box.watchers):
        # 127.0.0.1, little-endian hex as the kernel writes it; 0.0.0.0 would be 00000000.
        assert _listening_addresses(web.port) == {"0100007F"}, f"{web.service.name} on port {web.port}"


def test_without_credentials_the_door_answers_401_and_no_graphql(box: Box):
    operators, watchers = box.door.operators_url, box.door.watchers_url
    attempts = {
        "operators' door, no credentials": (operators, None),
        "operators' door, wrong password": (operators, Account(OPERATORS.user, "guess")),
        "operators' door, the watchers' account": (operators, WATCHERS),
        "watchers' door, no credentials": (watchers, None),
        "watchers' door, the operators' account": (watchers, OPERATORS),
    }
    for what, (url, account) in attempts.items():
        response = box.post(url, REPOSITORIES, auth=account)
        assert response.status_code == 401, f"{what}: HTTP {response.status_code} {response.text[:500]}"
        assert response.headers.get("WWW-Authenticate", "").startswith("Basic"), what
        assert "repositoriesOrError" not in response.text and "beop" not in response.text, what
        page = requests.get(url, verify=str(box.door.cert), timeout=30)
        assert page.status_code == 401, f"{what}: the UI page answered HTTP {page.status_code}"
    # And the mutation that matters most is refused at the door too, before any webserver sees it.
    refused = box.post(operators, LAUNCH_RUN, {"params": {"selector": {}}})
    assert refused.status_code == 401 and "launchRun" not in refused.text


def test_with_credentials_graphql_answers_through_the_door(box: Box):
    for url, account in ((box.door.operators_url, OPERATORS), (box.door.watchers_url, WATCHERS)):
        data = box.gql(url, account, REPOSITORIES)["repositoriesOrError"]
        assert data["__typename"] == "RepositoryConnection", data
        jobs = {job["name"] for node in data["nodes"] for job in node["jobs"]}
        assert jobs, f"{url}: the product's jobs are not visible through the door: {data}"
        page = requests.get(url, auth=account.auth, verify=str(box.door.cert), timeout=30)
        assert page.status_code == 200 and "<html" in page.text.lower(), f"{url}: UI page HTTP {page.status_code}"


def _a_job_and_a_daily_asset(box: Box) -> tuple[dict, str, list[str], str]:
    """A real job's selector, and a real partitioned asset with one of its partition keys."""
    data = box.gql(box.door.watchers_url, WATCHERS, REPOSITORIES)["repositoriesOrError"]["nodes"][0]
    job = next(j["name"] for j in data["jobs"] if not j["name"].startswith("__"))
    selector = {"repositoryLocationName": data["location"]["name"], "repositoryName": data["name"], "jobName": job}
    nodes = box.gql(
        box.door.watchers_url,
        WATCHERS,
        "query { assetNodes { assetKey { path } partitionKeysByDimension { name partitionKeys } } }",
    )["assetNodes"]
    for node in nodes:
        dimensions = node["partitionKeysByDimension"]
        if len(dimensions) == 1 and dimensions[0]["partitionKeys"]:
            return selector, job, node["assetKey"]["path"], dimensions[0]["partitionKeys"][-1]
    raise AssertionError(f"no single-dimension partitioned asset with partitions: {nodes}")


def test_the_read_only_webserver_refuses_launches(box: Box):
    selector, job, asset, partition = _a_job_and_a_daily_asset(box)
    watchers = box.door.watchers_url

    launch = box.gql(watchers, WATCHERS, LAUNCH_RUN, {"params": {"selector": selector, "mode": "default"}})
    assert launch["launchRun"]["__typename"] == "UnauthorizedError", f"launchRun {job}: {launch}"

    backfill = box.gql(
        watchers,
        WATCHERS,
        LAUNCH_BACKFILL,
        {"params": {"assetSelection": [{"path": asset}], "partitionNames": [partition]}},
    )
    assert backfill["launchPartitionBackfill"]["__typename"] == "UnauthorizedError", f"backfill {asset}: {backfill}"

    nothing = box.gql(
        watchers,
        WATCHERS,
        """query { runsOrError { __typename ... on Runs { results { runId } } }
                   partitionBackfillsOrError { __typename ... on PartitionBackfills { results { id } } } }""",
    )
    assert nothing["runsOrError"]["results"] == [], nothing
    assert nothing["partitionBackfillsOrError"]["results"] == [], nothing

    # The refusal is the read-only mode's, not a bad request: the operators' webserver takes the same
    # mutation past the permission check (to a job that does not exist, so that nothing runs).
    missing = {**selector, "jobName": "no_such_job_in_the_door_test"}
    other = box.gql(box.door.operators_url, OPERATORS, LAUNCH_RUN, {"params": {"selector": missing, "mode": "default"}})
    assert other["launchRun"]["__typename"] == "PipelineNotFoundError", other
