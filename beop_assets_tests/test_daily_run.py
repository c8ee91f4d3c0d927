"""The daily job, end to end in-process: load a day, deliver every export, record it, verify it.

Runs go through Dagster (the same jobs the schedule and the UI launch) into a throwaway instance,
with the real OpenSSH sshd and the real GCS emulator as destinations.
"""

import csv
import gzip
import json
import re
from datetime import date

from dagster import AssetKey, DagsterEventType, EventRecordsFilter

from beop_assets.daily_run import run_day
from beop_assets.delivery import ledger
from beop_assets.exports.crm_columns import FIXED_COLUMNS
from beop_assets_tests.fixtures.definitions import ledger_at

DAY = date(2026, 11, 25)
CSV_NAME = re.compile(
    r"^20261126_(crm-participation|crm-optin)_[a-z0-9-]+_[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}\.csv$"
)


def _day_of_events(zone):
    zone.write_events(
        DAY,
        [
            zone.event("p_1", email="jane@example.com", optins=[{"optin_id": "o_1", "optin_value": True}]),
            zone.event("p_2", content_id="c_2"),
            zone.event("p_3", account_id="a_2", content_id="c_9"),
            "{broken json",
        ],
    )


def _by_id(outcomes):
    return {o.export_id: o for o in outcomes}


def test_every_enabled_export_is_delivered_once_and_recorded(product):
    _day_of_events(product.landing)
    product.write_registry(
        [
            product.crm("acme-participations", campaigns=["cmp_1"], optins=["o_1", "o_2"]),
            product.crm("acme-optins", type="crm-optin", optins=["o_1"]),
            product.global_("acme-all"),
            product.global_("globex-all", account_id="a_2", gcs={"prefix": "globex/"}),
            product.crm("acme-disabled", enabled=False),
        ]
    )
    outcomes = _by_id(run_day(DAY, dagster_instance=product.instance))

    assert sorted(outcomes) == ["acme-all", "acme-optins", "acme-participations", "globex-all"]
    assert {o.status for o in outcomes.values()} == {"delivered"}, outcomes
    assert (outcomes["acme-participations"].rows, outcomes["acme-optins"].rows) == (1, 1)
    assert (outcomes["acme-all"].rows, outcomes["globex-all"].rows) == (2, 1)

    files = sorted(p.name for p in product.upload_dir.iterdir())
    assert len(files) == 2 and all(CSV_NAME.match(f) for f in files), files
    assert not [f for f in files if f.startswith(".")]  # no temporary file left behind
    with open(product.upload_dir / outcomes["acme-participations"].file_name, newline="", encoding="utf-8") as f:
        header, *rows = list(csv.reader(f))
    assert header == [*FIXED_COLUMNS, "Newsletter", "Partners"]
    assert rows == [["jane@example.com"] + [""] * 10 + ["c_1", "Quiz", "cmp_1", "Winter contest", "true", ""]]

    from google.cloud import storage

    client = storage.Client.create_anonymous_client()
    blobs = {b.name: b for b in client.list_blobs(product.bucket)}
    assert sorted(blobs) == ["2026-11-26_acme.ndjson.gz", "globex/2026-11-26_globex.ndjson.gz"]
    lines = gzip.decompress(blobs["globex/2026-11-26_globex.ndjson.gz"].download_as_bytes(raw_download=True))
    assert [json.loads(line)["content_id"] for line in lines.splitlines()] == ["c_9"]

    delivered = ledger.history(status="delivered", root=ledger_at())
    assert sorted(d.export_id for d in delivered) == sorted(outcomes)
    assert all(d.data_day == "2026-11-25" and d.sha256 and d.run_id for d in delivered)


def test_delivery_checks_pass_and_metadata_reaches_the_instance(product):
    _day_of_events(product.landing)
    product.write_registry([product.crm("acme-participations"), product.global_("acme-all")])
    outcomes = _by_id(run_day(DAY, dagster_instance=product.instance))
    assert outcomes["acme-participations"].status == "delivered"

    checks = [
        r.event_log_entry.dagster_event.event_specific_data
        for r in product.instance.get_event_records(
            EventRecordsFilter(event_type=DagsterEventType.ASSET_CHECK_EVALUATION)
        )
    ]
    assert len(checks) == 8 and all(c.passed for c in checks), [(c.check_name, c.passed) for c in checks]

    record = product.instance.get_latest_materialization_event(AssetKey("crm_export_file"))
    metadata = record.asset_materialization.metadata
    assert set(metadata) >= {"remote_path", "file_name", "rows", "bytes", "sha256", "duration_s", "destination"}
    assert metadata["remote_path"].value == str(product.upload_dir / outcomes["acme-participations"].file_name)
    assert record.asset_materialization.partition == "2026-11-25|acme-participations"


def test_a_failing_export_never_stops_the_others(product):
    _day_of_events(product.landing)
    product.write_registry(
        [
            product.crm("missing-dir", sftp={"directory": "/no/such/dir"}),
            product.global_("missing-bucket", gcs={"bucket": "no-such-bucket-anywhere"}),
            product.crm("foreign-campaign", campaigns=["cmp_2"]),  # a campaign of account a_2
            product.crm("good-one"),
            product.global_("good-global"),
        ]
    )
    outcomes = _by_id(run_day(DAY, dagster_instance=product.instance))

    assert outcomes["good-one"].status == outcomes["good-global"].status == "delivered"
    assert outcomes["missing-dir"].status == "failed"
    assert "/no/such/dir" in outcomes["missing-dir"].error and "127.0.0.1" in outcomes["missing-dir"].error
    assert outcomes["missing-bucket"].status == "failed"
    assert "no-such-bucket-anywhere" in outcomes["missing-bucket"].error
    assert outcomes["foreign-campaign"].status == "failed"
    assert "cmp_2" in outcomes["foreign-campaign"].error and "another account" in outcomes["foreign-campaign"].error
    failed = {d.export_id: d for d in ledger.history(status="failed", root=ledger_at())}
    assert set(failed) == {"missing-dir", "missing-bucket", "foreign-campaign"}  # each attempt is on record
    assert "/no/such/dir" in failed["missing-dir"].error
    # A config fault fails before any delivery: its attempt has no file and names its fault (the retry
    # schedule reads it as one that waiting cannot fix).
    assert failed["foreign-campaign"].file_name == "" and failed["foreign-campaign"].error.startswith("RegistryError")


def test_an_empty_day_still_delivers_a_header_and_an_empty_gzip(product):
    product.write_registry([product.crm("acme-participations"), product.global_("acme-all")])
    outcomes = _by_id(run_day(DAY, dagster_instance=product.instance))
    assert {o.status for o in outcomes.values()} == {"delivered"}
    (csv_file,) = product.upload_dir.iterdir()
    assert csv_file.read_bytes().count(b"\r\n") == 1 and csv_file.read_bytes().endswith(b"\r\n")  # the header alone
    from google.cloud import storage

    (blob,) = storage.Client.create_anonymous_client().list_blobs(product.bucket)
    assert gzip.decompress(blob.download_as_bytes(raw_download=True)) == b""


def test_rerunning_a_day_adds_a_new_csv_and_replaces_the_gcs_object(product):
    _day_of_events(product.landing)
    product.write_registry([product.crm("acme-participations"), product.global_("acme-all")])
    first = _by_id(run_day(DAY, dagster_instance=product.instance))
    second = _by_id(run_day(DAY, dagster_instance=product.instance))
    assert first["acme-participations"].file_name != second["acme-participations"].file_name  # new UUID per run
    assert len(list(product.upload_dir.iterdir())) == 2
    from google.cloud import storage

    assert [b.name for b in storage.Client.create_anonymous_client().list_blobs(product.bucket)] == [
        "2026-11-26_acme.ndjson.gz"
    ]


def test_named_exports_only_and_unknown_names_fail_clearly(product):
    _day_of_events(product.landing)
    product.write_registry([product.crm("acme-participations"), product.global_("acme-all")])
    outcomes = _by_id(run_day(DAY, ["acme-all", "nope"], dagster_instance=product.instance))
    assert sorted(outcomes) == ["acme-all", "nope"]
    assert outcomes["acme-all"].status == "delivered"
    assert outcomes["nope"].status == "failed" and "not in the registry" in outcomes["nope"].error
    assert list(product.upload_dir.iterdir()) == []


def test_a_run_of_named_exports_validates_those_exports_only(product, monkeypatch):
    """Issue 24: `run --export X` with a registry of 10,000 spent 3 s validating the other 9,999 before
    its run. Only the named entries are validated; their faults are printed, the others' are left to
    `validate`."""
    from beop_assets.exports import registry, registry_cache

    _day_of_events(product.landing)
    product.write_registry(
        [
            product.crm("acme-participations"),
            product.global_("acme-all"),
            product.global_("unknown-account", account_id="a_404"),
            product.global_("globex-all", account_id="a_2", gcs={"prefix": "globex/"}),
        ]
    )
    registry_cache.clear()
    seen: list[str] = []
    real = registry.validate_entry
    monkeypatch.setattr(registry, "validate_entry", lambda e, label, line: seen.append(label) or real(e, label, line))
    echoed: list[str] = []
    outcomes = _by_id(
        run_day(DAY, ["acme-all", "unknown-account"], dagster_instance=product.instance, echo=echoed.append)
    )
    assert set(seen) == {"acme-all", "unknown-account"}  # (again by the run's steps, each for its own ids)
    assert outcomes["acme-all"].status == "delivered"
    assert outcomes["unknown-account"].status == "failed"
    assert "unknown account 'a_404'" in outcomes["unknown-account"].error
    assert [line for line in echoed if line.startswith("registry fault:")] == [
        "registry fault: line 22: export 'unknown-account': account_id: unknown account 'a_404'"
    ]
