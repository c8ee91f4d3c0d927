"""Misconfiguration is isolated: one broken export fails alone, with one clear message that names the
export and what to fix, and every other export of the registry still delivers.

One registry holds a good specific export, a good global export and one broken export per kind of
mistake an operator (or a customer) makes; the whole day runs through `run_day`, as `beop-exports run`
and the schedule run it, against the real OpenSSH sshd and the GCS emulator.

The same faults, one transport call at a time, are covered in `test_sftp_delivery.py`
(test_wrong_password_fails_at_once_without_revealing_it, test_unauthorized_key_fails_at_once,
test_unknown_host_key_is_rejected, test_changed_host_key_is_rejected,
test_missing_directory_is_named_and_never_created, test_directory_without_write_permission) and
`test_gcs_delivery.py` (test_missing_bucket_fails_at_once_naming_bucket_and_export,
test_malformed_key_fails_clearly_without_showing_it, test_missing_key_file_and_unset_variable):
this module proves that, inside a day with many exports, each fault stays with its own export.
"""

from __future__ import annotations

import json
import re
import subprocess
import uuid
from datetime import date

import pytest
from click.testing import CliRunner
from dagster import DagsterInstance
from google.cloud import storage

from beop_assets.cli import main
from beop_assets.daily_run import run_day
from beop_assets.delivery import ledger
from beop_assets.demo.service_account import service_account_info
from beop_assets.exports.registry import GcsTarget, SftpTarget, load_registry
from beop_assets.landing.reference import Reference
from beop_assets_tests.fixtures.landing import DEFAULT_REFERENCE, LandingZone
from beop_assets_tests.fixtures.product import Product
from beop_assets_tests.fixtures.sshd import SFTP_PASSWORD_ENV

pytestmark = pytest.mark.timeout(300)

DAY = date(2026, 11, 25)
WRONG_PASSWORD_ENV = "BEOP_TEST_MISCONF_WRONG_PASSWORD"


def _day(zone) -> None:
    zone.write_events(
        DAY,
        [
            zone.event("p_1", email="jane@example.com"),
            zone.event("p_2", content_id="c_2"),
            zone.event("p_3", account_id="a_2", content_id="c_9"),
        ],
    )


def _stranger_key(tmp_path):
    """A valid ed25519 private key that the server has never been told about."""
    path = tmp_path / "stranger_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "stranger", "-f", str(path)], check=True)
    return path


@pytest.fixture(scope="module")
def whole_product(sshd, gcs_emulator, _rsa_private_key_pem, tmp_path_factory):
    """The `product` fixture's environment, built once for the module: the day of faults below runs
    ~15 exports through Dagster, so every test of this module reads the same run."""
    root = tmp_path_factory.mktemp("misconfiguration")
    landing = LandingZone(root=root / "landing", warehouse=root / "warehouse")
    landing.write_reference(**DEFAULT_REFERENCE)
    key = root / "customer-key.json"
    key.write_text(json.dumps(service_account_info(_rsa_private_key_pem, project_id="beop-test-project")))
    bucket = f"beop-misconf-{uuid.uuid4().hex[:10]}"
    gcs_emulator.create_bucket(bucket, exist_ok=False)
    upload_dir = sshd.make_dir()
    home = root / "dagster_home"
    home.mkdir()
    with pytest.MonkeyPatch.context() as env, DagsterInstance.ephemeral() as instance:
        for name, value in {
            "BEOP_LANDING": landing.root,
            "BEOP_WAREHOUSE": landing.warehouse,
            "BEOP_EXPORTS": root / "exports.yaml",
            "DAGSTER_HOME": home,
            SFTP_PASSWORD_ENV: sshd.password,
            WRONG_PASSWORD_ENV: "WRONG-pw-Zq81x",
            "BEOP_DELIVERY_BACKOFF": "0.05",
        }.items():  # nothing here is transient anyway
            env.setenv(name, str(value))
        yield Product(
            landing=landing,
            registry_file=root / "exports.yaml",
            bucket=bucket,
            upload_dir=upload_dir,
            sftp=lambda: SftpTarget(
                host=sshd.host,
                port=sshd.port,
                username=sshd.username,
                directory=str(upload_dir),
                password_env=SFTP_PASSWORD_ENV,
                known_hosts_file=str(sshd.known_hosts_path),
            ),
            gcs=lambda bucket: GcsTarget(bucket=bucket, credentials_file=str(key)),
            instance=instance,
        )


@pytest.fixture(scope="module")
def broken_day(whole_product, sshd, tmp_path_factory):
    """Runs the day once with the registry of every fault: (outcomes by id, what each broken export
    points at, the lines `run_day` printed)."""
    product = whole_product
    tmp_path = tmp_path_factory.mktemp("faults")
    _day(product.landing)
    empty_known_hosts = tmp_path / "empty_known_hosts"
    empty_known_hosts.write_text("")
    where = {
        "address": f"127.0.0.1:{sshd.port}",
        "stranger_key": _stranger_key(tmp_path),
        "empty_known_hosts": empty_known_hosts,
        "changed_known_hosts": sshd.write_known_hosts(tmp_path / "changed_known_hosts", changed=True),
        "missing_directory": product.upload_dir / "never-created",
        "read_only_directory": sshd.make_dir(writable=False),
        "malformed_key": tmp_path / "malformed-key.json",
        "missing_key": tmp_path / "no-such-key.json",
    }
    where["malformed_key"].write_text('{"type": "service_account", "private_key": "-----BEGIN')  # cut short
    product.write_registry(
        [
            product.crm("good-crm"),
            product.global_("good-global"),
            product.crm("wrong-password", sftp={"password_env": WRONG_PASSWORD_ENV}),
            product.crm("wrong-key", sftp={"password_env": None, "private_key_file": str(where["stranger_key"])}),
            product.crm("unknown-host-key", sftp={"known_hosts_file": str(where["empty_known_hosts"])}),
            product.crm("changed-host-key", sftp={"known_hosts_file": str(where["changed_known_hosts"])}),
            product.crm("missing-directory", sftp={"directory": str(where["missing_directory"])}),
            product.crm("read-only-directory", sftp={"directory": str(where["read_only_directory"])}),
            product.global_("missing-bucket", gcs={"bucket": "no-such-bucket-misconf"}),
            product.global_("malformed-key", gcs={"credentials_file": str(where["malformed_key"])}),
            product.global_("missing-key", gcs={"credentials_file": str(where["missing_key"])}),
            product.global_("unknown-account", account_id="a_404"),
            product.crm("foreign-campaign", campaigns=["cmp_2"]),  # a campaign of account a_2
            product.crm("twice"),
            product.crm("twice", name="Twice again"),
        ]
    )
    echoed: list[str] = []
    outcomes = {o.export_id: o for o in run_day(DAY, dagster_instance=product.instance, echo=echoed.append)}
    return outcomes, where, echoed


BROKEN = [
    "wrong-password",
    "wrong-key",
    "unknown-host-key",
    "changed-host-key",
    "missing-directory",
    "read-only-directory",
    "missing-bucket",
    "malformed-key",
    "missing-key",
    "unknown-account",
    "foreign-campaign",
    "twice",
]


def test_the_good_exports_deliver_whatever_the_others_get_wrong(broken_day, whole_product):
    product = whole_product
    outcomes, _, _ = broken_day
    assert sorted(outcomes) == sorted(["good-crm", "good-global", *BROKEN])
    assert (outcomes["good-crm"].status, outcomes["good-crm"].rows) == ("delivered", 1), outcomes["good-crm"]
    assert (outcomes["good-global"].status, outcomes["good-global"].rows) == ("delivered", 2), outcomes["good-global"]
    # Only the good export's file is in the shared upload directory: no broken export left anything.
    assert sorted(p.name for p in product.upload_dir.iterdir()) == [outcomes["good-crm"].file_name]
    blobs = [b.name for b in storage.Client.create_anonymous_client().list_blobs(product.bucket)]
    assert blobs == ["2026-11-26_acme.ndjson.gz"]
    delivered = ledger.history(status="delivered", root=product.landing.warehouse)
    assert sorted(d.export_id for d in delivered) == ["good-crm", "good-global"]


def test_every_broken_export_fails_on_its_own_with_one_line_that_names_it(broken_day):
    outcomes, _, _ = broken_day
    for export_id in BROKEN:
        outcome = outcomes[export_id]
        assert outcome.status == "failed", outcome
        assert export_id in outcome.error, outcome
        assert "\n" not in outcome.error and "Traceback" not in outcome.error, outcome


@pytest.mark.parametrize(
    "export_id, expected",
    [
        # SFTP: each message names user@host:port, the path, and what to fix.
        (
            "wrong-password",
            [
                r"beoptest@{address}",
                r"authentication as 'beoptest' failed",
                rf"password from \${WRONG_PASSWORD_ENV}",
                r"check the username and the credential",
            ],
        ),
        (
            "wrong-key",
            [r"beoptest@{address}", r"authentication as 'beoptest' failed", r"private key file {stranger_key}"],
        ),
        ("unknown-host-key", [r"{address}", r"is not in known_hosts", r"{empty_known_hosts}", r"ssh-keyscan -p \d+"]),
        (
            "changed-host-key",
            [
                r"{address}",
                r"does not match known_hosts_file {changed_known_hosts}",
                r"confirm the new key with the customer",
            ],
        ),
        ("missing-directory", [r"{address}", r"{missing_directory}", r"does not exist", r"fix `directory`"]),
        (
            "read-only-directory",
            [r"{address}", r"{read_only_directory}", r"permission denied", r"write access to {read_only_directory}"],
        ),
        # GCS: bucket, or where the key is read from.
        ("missing-bucket", [r"bucket no-such-bucket-misconf does not exist \(export missing-bucket\)"]),
        ("malformed-key", [r"credentials file {malformed_key} is not a valid service-account key: not valid JSON"]),
        ("missing-key", [r"credentials file {missing_key} does not exist \(export missing-key\)"]),
        # The registry: the field at fault.
        ("unknown-account", [r"export 'unknown-account': account_id: unknown account 'a_404'"]),
        (
            "foreign-campaign",
            [r"export 'foreign-campaign': campaigns\[0\]: campaign 'cmp_2' belongs to another account"],
        ),
        ("twice", [r"export 'twice': id: duplicate export id 'twice' \(2 entries\): ids must be unique"]),
    ],
)
def test_each_message_says_what_to_fix(broken_day, export_id, expected):
    outcomes, where, _ = broken_day
    error = outcomes[export_id].error
    for pattern in expected:
        pattern = pattern.format(**{k: re.escape(str(v)) for k, v in where.items()})
        assert re.search(pattern, error), f"{export_id}: {pattern!r} not in {error!r}"


def test_delivery_faults_are_in_the_ledger_and_registry_faults_never_reach_a_server(broken_day, whole_product):
    outcomes, _, echoed = broken_day
    attempts = ledger.history(status="failed", root=whole_product.landing.warehouse)
    # An export the registry rejected is recorded as a failed attempt (for the retry schedule) that never
    # reached a server: no file, no destination.
    refused = {d.export_id for d in attempts if not d.file_name}
    assert all(not d.destination and not d.attempts for d in attempts if d.export_id in refused)
    failed = {d.export_id: d for d in attempts if d.export_id not in refused}
    assert sorted(failed) == sorted(
        [
            "wrong-password",
            "wrong-key",
            "unknown-host-key",
            "changed-host-key",
            "missing-directory",
            "read-only-directory",
            "missing-bucket",
            "malformed-key",
            "missing-key",
        ]
    )
    for export_id, delivery in failed.items():
        assert delivery.error and outcomes[export_id].error.split(": ", 1)[-1] in delivery.error
    # The registry's own faults are printed once each before the day runs.
    faults = [line for line in echoed if line.startswith("registry fault:")]
    assert len(faults) == 3, echoed
    assert any("'unknown-account'" in f for f in faults) and any("'foreign-campaign'" in f for f in faults)
    assert any("'twice'" in f and "duplicate" in f for f in faults)


# -- faults of the registry file itself ------------------------------------------------------------


def test_load_registry_reports_duplicates_unknown_accounts_and_foreign_selections_by_id_and_field(product):
    product.write_registry(
        [
            product.crm("good-crm"),
            product.crm("twice"),
            product.crm("twice"),
            product.global_("unknown-account", account_id="a_404"),
            product.crm("foreign-optin", optins=["o_9"]),
            product.crm("bad-port", sftp={"port": 70000}),
        ]
    )
    registry = load_registry(product.registry_file, Reference.read(product.landing.reference_folder))
    assert sorted((f.export_id, f.field) for f in registry.faults) == [
        ("bad-port", "sftp.port"),
        ("foreign-optin", "optins[0]"),
        ("twice", "id"),
        ("unknown-account", "account_id"),
    ]
    assert list(registry.exports) == ["good-crm"]
    assert all(f.line for f in registry.faults if f.export_id != "twice")


def test_validate_prints_each_fault_with_export_and_field_and_exits_1(product):
    product.write_registry(
        [
            product.crm("good-crm"),
            product.crm("twice"),
            product.crm("twice"),
            product.global_("unknown-account", account_id="a_404"),
            product.crm("foreign-campaign", campaigns=["cmp_2"]),
            product.crm("no-host-key-policy", sftp={"known_hosts_file": None}),
            product.global_("Not A Slug"),
        ]
    )
    result = CliRunner().invoke(main, ["validate"], catch_exceptions=False)
    assert result.exit_code == 1, result.output
    faults = [line for line in result.output.splitlines() if line.startswith("FAULT")]
    assert len(faults) == 5, result.output
    for export_id, field, words in [
        ("twice", "id", "duplicate export id"),
        ("unknown-account", "account_id", "unknown account 'a_404'"),
        ("foreign-campaign", r"campaigns\[0\]", "belongs to another account"),
        ("no-host-key-policy", "sftp", "known_hosts_file is required"),
        ("Not A Slug", "id", "should match pattern"),
    ]:
        assert any(re.search(rf"export '{export_id}': {field}: .*{words}", f) for f in faults), (export_id, faults)
    assert "ok    good-crm (specific, enabled)" in result.output
    assert "1 valid export(s), 5 fault(s)" in result.output


MALFORMED_YAML = "exports:\n  - id: acme-crm\n    mode: [specific\n    account_id: a_1\n"


def test_malformed_yaml_is_named_by_load_registry_with_its_line(product):
    product.write_registry(MALFORMED_YAML)
    registry = load_registry(product.registry_file, Reference.read(product.landing.reference_folder))
    (fault,) = registry.faults
    assert registry.unreadable and registry.exports == {}
    assert fault.field == "yaml" and fault.line == 4 and str(product.registry_file) in fault.message


def test_malformed_yaml_fails_the_day_clearly_without_crashing(product):
    _day(product.landing)
    product.write_registry(MALFORMED_YAML)
    echoed: list[str] = []
    (outcome,) = run_day(DAY, dagster_instance=product.instance, echo=echoed.append)
    assert (outcome.export_id, outcome.status) == ("(registry)", "failed")
    assert "malformed YAML" in outcome.error and str(product.registry_file) in outcome.error
    assert "line 4" in outcome.error
    assert list(product.upload_dir.iterdir()) == []


def test_malformed_yaml_makes_validate_and_run_exit_1_with_the_reason(product):
    product.write_registry(MALFORMED_YAML)
    validate = CliRunner().invoke(main, ["validate"], catch_exceptions=False)
    assert validate.exit_code == 1
    assert re.search(r"FAULT line 4: registry: yaml: malformed YAML in .*exports\.yaml", validate.output), (
        validate.output
    )
    run = CliRunner().invoke(main, ["run", "--date", DAY.isoformat()], catch_exceptions=False)
    assert run.exit_code == 1 and "malformed YAML" in run.output and "Traceback" not in run.output, run.output


def test_entries_that_cannot_be_scheduled_fail_alone_and_never_become_partitions(product):
    """An id that is not a slug (`a|b` in a Dagster multi-partition key used to crash the day before the
    exports after it ran), or one id used by a specific and a global entry (no job to run it in)."""
    _day(product.landing)
    product.write_registry(
        [
            product.crm("a|b"),
            product.global_("c,d"),
            product.crm("../up"),
            product.crm("mixed"),
            product.global_("mixed"),
            product.crm("good-crm"),
        ]
    )
    echoed: list[str] = []
    outcomes = {o.export_id: o for o in run_day(DAY, dagster_instance=product.instance, echo=echoed.append)}
    assert sorted(outcomes) == ["../up", "a|b", "c,d", "good-crm", "mixed"]
    assert outcomes["good-crm"].status == "delivered"
    for export_id in ("a|b", "c,d", "../up"):
        assert outcomes[export_id].status == "failed"
        assert f"export '{export_id}': id: String should match pattern" in outcomes[export_id].error
    assert outcomes["mixed"].status == "failed"
    assert "export 'mixed': id: duplicate export id 'mixed' (2 entries)" in outcomes["mixed"].error
    assert product.instance.get_dynamic_partitions("specific_exports") == ["good-crm"]
    assert product.instance.get_dynamic_partitions("global_exports") == []
    assert sorted(p.name for p in product.upload_dir.iterdir()) == [outcomes["good-crm"].file_name]
    named = {o.export_id: o for o in run_day(DAY, ["a|b"], dagster_instance=product.instance, echo=echoed.append)}
    assert named["a|b"].status == "failed" and "id: String should match pattern" in named["a|b"].error
