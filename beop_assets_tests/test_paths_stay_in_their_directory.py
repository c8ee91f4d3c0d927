"""Export names, export ids and account usernames cannot steer a file outside its configured place.

- A specific export's `name` is slugified into its CSV file name (docs/file-contract.md); an account's
  `username` (reference data) is part of its global file name (docs/file-contract.md). Whatever they hold
  (`../../etc/passwd`, slashes, backslashes, dots, only emoji), the file name is one path segment:
  no `/`, no `\\`, no leading dot, never `.` or `..`.
- A real delivery with hostile names lands inside the configured SFTP directory and under the
  configured GCS prefix, and nowhere else.
- An export id that is not a slug is rejected by the registry (it would otherwise become a Dagster
  partition key and a spool folder name).
"""

from __future__ import annotations

import re
import uuid
from datetime import date
from pathlib import Path

import pytest
import yaml
from google.cloud import storage
from hypothesis import given, settings
from hypothesis import strategies as st

from beop_assets.daily_run import run_day
from beop_assets.delivery import gcs
from beop_assets.exports.file_names import crm_file_name, global_file_name
from beop_assets.exports.registry import GcsTarget, is_export_id, load_registry
from beop_assets.landing.reference import Reference
from beop_assets_tests.fixtures.landing import DEFAULT_REFERENCE

pytestmark = pytest.mark.timeout(300)

DAY = date(2026, 11, 25)
DELIVERY = uuid.UUID("12345678-1234-4234-8234-123456789abc")
HOSTILE = [
    "../../etc/passwd",
    "a/b\\c",
    "..",
    ".",
    "...",
    "/",
    "\\",
    ".hidden",
    "😀🎉",
    "",
    " ",
    "\x00",
    "C:\\Windows\\system32",
    "~/.ssh/authorized_keys",
    "%2e%2e%2f",
    "..%2F..%2F",
    "name\nwith newline",
    "\u202etxt.exe",
    "ＡＢ／ＣＤ",
    "․․／",
    "a" * 300,
]
CSV_NAME = re.compile(r"^20261126_crm-participation_[a-z0-9-]+_12345678-1234-4234-8234-123456789abc\.csv$")


def one_segment(name: str) -> bool:
    return bool(name) and "/" not in name and "\\" not in name and not name.startswith(".") and name not in (".", "..")


@pytest.mark.parametrize("name", HOSTILE)
def test_a_crm_file_name_is_one_safe_segment_whatever_the_export_name(name):
    file_name = crm_file_name("crm-participation", name, DAY, DELIVERY)
    assert one_segment(file_name) and CSV_NAME.match(file_name), file_name


@pytest.mark.parametrize("username", HOSTILE + ["../evil", "a/b", "..\\..\\evil"])
def test_a_global_file_name_is_one_safe_segment_whatever_the_username(username):
    file_name = global_file_name(username, DAY)
    assert one_segment(file_name) and file_name.startswith("2026-11-26_") and file_name.endswith(".ndjson.gz")


@settings(max_examples=300, deadline=None, database=None)
@given(name=st.text(max_size=60), username=st.text(max_size=60))
def test_no_name_or_username_ever_makes_a_path(name, username):
    crm = crm_file_name("crm-optin", name, DAY, DELIVERY)
    assert one_segment(crm) and re.fullmatch(r"20261126_crm-optin_[a-z0-9-]+_[0-9a-f-]{36}\.csv", crm), crm
    glob = global_file_name(username, DAY)
    assert one_segment(glob), glob


@pytest.mark.parametrize("prefix", ["../up", "/abs", "a/../../b", ".."])
def test_a_gcs_prefix_cannot_climb_or_be_absolute(prefix):
    with pytest.raises(ValueError, match="prefix must be relative"):
        GcsTarget(bucket="acme-beop", prefix=prefix, credentials_env="KEY")


SFTP = {
    "host": "sftp.example.com",
    "username": "beop",
    "directory": "/incoming",
    "password_env": "PW",
    "known_hosts_file": "/etc/beop/known_hosts",
}


@pytest.mark.parametrize(
    "export_id",
    [
        "../../etc",
        "a/b",
        "a\\b",
        "..",
        ".",
        "😀",
        "a\nb",
        "a b",
        "",
        "a|b",
        "a,b",
        "-x",
        "X",
        "a" * 101,
        "/abs",
        "acme_crm",
    ],
)
def test_export_ids_that_are_not_slugs_are_rejected_by_the_registry(landing_zone, tmp_path, export_id):
    entry = {
        "account_id": "a_1",
        "mode": "specific",
        "type": "crm-participation",
        "name": "Export",
        "campaigns": ["cmp_1"],
        "sftp": SFTP,
    }
    path = tmp_path / "exports.yaml"
    path.write_text(yaml.safe_dump({"exports": [{"id": "good-crm", **entry}, {"id": export_id, **entry}]}))
    registry = load_registry(path, Reference.read(landing_zone.reference_folder))
    assert list(registry.exports) == ["good-crm"]
    assert [f.field for f in registry.faults] == ["id"], registry.faults
    assert registry.scheduled_ids("specific") == ["good-crm"]  # never a partition key, nor a spool folder
    assert not is_export_id(export_id)


def _all_files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*")}


def test_a_real_delivery_with_hostile_names_lands_inside_the_configured_places(product, sshd):
    accounts = [{"account_id": "a_1", "username": "../evil"}, {"account_id": "a_2", "username": "a/b"}]
    product.landing.write_reference(accounts=accounts)
    product.landing.write_events(
        DAY, [product.landing.event("p_1"), product.landing.event("p_2", account_id="a_2", content_id="c_9")]
    )
    before = _all_files(sshd.home)
    product.write_registry(
        [
            product.crm("dots", name="../../etc/passwd"),
            product.crm("slashes", name="a/b\\c/../../.."),
            product.crm("emoji", name="😀🎉"),
            product.global_("evil-username", gcs={"prefix": "exports/acme"}),
            product.global_("backslash-username", account_id="a_2", gcs={"prefix": "exports/globex/"}),
        ]
    )
    outcomes = {o.export_id: o for o in run_day(DAY, dagster_instance=product.instance, echo=lambda _: None)}
    assert {o.status for o in outcomes.values()} == {"delivered"}, outcomes

    # SFTP: exactly three new files, all directly inside the configured directory.
    added = _all_files(sshd.home) - before
    assert {p.parent for p in added} == {product.upload_dir}, added
    assert sorted(p.name for p in added) == sorted(outcomes[i].file_name for i in ("dots", "slashes", "emoji"))
    assert re.match(r"^20261126_crm-participation_etc-passwd_[0-9a-f-]{36}\.csv$", outcomes["dots"].file_name)
    assert re.match(r"^20261126_crm-participation_a-b-c_[0-9a-f-]{36}\.csv$", outcomes["slashes"].file_name)
    assert re.match(r"^20261126_crm-participation_export_[0-9a-f-]{36}\.csv$", outcomes["emoji"].file_name)

    # GCS: exactly two objects, each directly under its export's prefix.
    names = sorted(b.name for b in storage.Client.create_anonymous_client().list_blobs(product.bucket))
    assert names == ["exports/acme/2026-11-26__evil.ndjson.gz", "exports/globex/2026-11-26_a_b.ndjson.gz"]
    assert (
        gcs.object_name(
            GcsTarget(bucket=product.bucket, prefix="exports/acme", credentials_env="K"),
            global_file_name(accounts[0]["username"], DAY),
        )
        == names[0]
    )
    # The reference data was hostile, the default one untouched for other tests.
    assert DEFAULT_REFERENCE["accounts"][0]["username"] == "acme"
