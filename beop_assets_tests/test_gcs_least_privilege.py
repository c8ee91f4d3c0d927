"""GCS delivery with the keys customers really grant, and the faults their buckets really have.

Every test runs the production client code unchanged against the real emulator (fake-gcs-server)
behind the fault-injecting proxy of `fixtures/gcs_proxy.py` (STORAGE_EMULATOR_HOST points at the
proxy): roles as IAM grants them, GCS's preconditions, 429/503 bursts, connections reset mid-upload
or after the object was committed. Set-up and inspection go straight to the emulator.
"""

from __future__ import annotations

import gzip
import logging
import os
from datetime import date
from pathlib import Path

import pytest
from dagster import AssetKey, DagsterEventType, EventRecordsFilter

from beop_assets.daily_run import run_day
from beop_assets.delivery import gcs, ledger
from beop_assets.delivery.errors import PermanentDeliveryError
from beop_assets.delivery.retry import RetryPolicy
from beop_assets_tests.fixtures.definitions import ledger_at
from beop_assets_tests.fixtures.gcs_proxy import GcsFaultProxy
from beop_assets_tests.transports import check_target, deliver_file

# Resumable uploads are sent in chunks of CHUNK here (the product's are larger), so that files of a
# few chunks stay small enough for a test.
CHUNK = 8 * 2**20


@pytest.fixture(autouse=True)
def _small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gcs, "CHUNK_SIZE", CHUNK)


EXPORT = "acme-global"
FILE = "2026-11-26_acme.ndjson.gz"
BUCKET = "acme-beop"
CREATOR = "roles/storage.objectCreator"
VIEWER = "roles/storage.objectViewer"
USER = "roles/storage.objectUser"
ADMIN = "roles/storage.objectAdmin"


@pytest.fixture
def bucket(gcs_proxy: GcsFaultProxy) -> str:
    gcs_proxy.emulator.create_bucket(BUCKET)
    return BUCKET


RETRY = RetryPolicy(attempts=5, backoff_s=0.05)


def built_file(tmp_path: Path, size: int = 200_000, name: str = FILE) -> bytes:
    """A valid gzip file of about `size` bytes (random payload: gzip cannot shrink it)."""
    data = gzip.compress(os.urandom(size), compresslevel=1)
    (tmp_path / name).write_bytes(data)
    return data


def stored(proxy: GcsFaultProxy, name: str = FILE) -> bytes:
    blob = proxy.emulator.client().bucket(BUCKET).get_blob(name)
    assert blob is not None, f"gs://{BUCKET}/{name} is missing"
    return blob.download_as_bytes(raw_download=True)


def objects(proxy: GcsFaultProxy) -> list[str]:
    return sorted(b.name for b in proxy.emulator.client().list_blobs(BUCKET))


def preconditions(proxy: GcsFaultProxy) -> list[str | None]:
    """The ifGenerationMatch of every upload request that starts an upload (multipart or resumable)."""
    return [s.query.get("ifGenerationMatch") for s in proxy.uploads() if s.method == "POST"]


# -- Storage Object Creator: create only --------------------------------------------------------


@pytest.mark.parametrize("size", [200_000, gcs.SINGLE_REQUEST_MAX + 1_000_000], ids=["multipart", "resumable"])
def test_creator_only_key_delivers_and_verifies_from_the_upload_receipt(gcs_proxy, bucket, gcs_target, tmp_path, size):
    gcs_proxy.grant(CREATOR)
    data = built_file(tmp_path, size)

    receipt = deliver_file(EXPORT, gcs_target(bucket), tmp_path / FILE, FILE, retry=RETRY)

    assert receipt.verified_from == "upload receipt"
    assert gcs.Checksums(
        receipt.stored_bytes or 0, receipt.stored_crc32c or "", receipt.stored_md5
    ) == gcs.local_checksums(tmp_path / FILE)
    assert (receipt.stored_bytes, receipt.attempts) == (len(data), 1)
    assert stored(gcs_proxy) == data and objects(gcs_proxy) == [FILE]
    assert preconditions(gcs_proxy) == ["0"]  # "only if no object exists": nothing replaced blindly
    denied = [s for s in gcs_proxy.seen if s.outcome == 403]
    assert denied and all(s.method == "GET" for s in denied)  # the read was tried, refused, and not fatal


@pytest.mark.parametrize("roles", [[CREATOR], [CREATOR, VIEWER]], ids=["creator", "creator+viewer"])
def test_rerun_with_a_key_that_cannot_replace_fails_naming_storage_objects_delete(
    gcs_proxy, bucket, gcs_target, tmp_path, roles, caplog
):
    gcs_proxy.grant(*roles)
    first = built_file(tmp_path, name="first.gz")
    built_file(tmp_path, name="second.gz")
    one = deliver_file(EXPORT, gcs_target(bucket), tmp_path / "first.gz", FILE, retry=RETRY)
    assert one.verified_from == ("read-back" if VIEWER in roles else "upload receipt")

    with caplog.at_level(logging.WARNING), pytest.raises(PermanentDeliveryError) as raised:
        deliver_file(EXPORT, gcs_target(bucket), tmp_path / "second.gz", FILE, retry=RETRY)

    message = str(raised.value)
    for part in (
        "storage.objects.delete",
        "Storage Object User (roles/storage.objectUser)",
        "Storage Object Admin (roles/storage.objectAdmin)",
        f"gs://{BUCKET}/{FILE}",
        f"bucket {BUCKET}",
        EXPORT,
        "The existing object was left as it was.",
    ):
        assert part in message, (part, message)
    assert "retrying" not in caplog.text  # permanent: one attempt
    assert stored(gcs_proxy) == first and len(gcs_proxy.commits()) == 1


@pytest.mark.parametrize("role", [USER, ADMIN])
def test_rerun_with_object_user_or_admin_replaces_exactly_the_generation_it_saw(
    gcs_proxy, bucket, gcs_target, tmp_path, role
):
    gcs_proxy.grant(role)
    built_file(tmp_path, name="first.gz")
    second = built_file(tmp_path, name="second.gz")
    one = deliver_file(EXPORT, gcs_target(bucket), tmp_path / "first.gz", FILE, retry=RETRY)
    two = deliver_file(EXPORT, gcs_target(bucket), tmp_path / "second.gz", FILE, retry=RETRY)

    assert (one.verified_from, two.verified_from) == ("read-back", "read-back")
    assert two.generation != one.generation
    assert preconditions(gcs_proxy) == ["0", str(one.generation)]
    assert stored(gcs_proxy) == second and objects(gcs_proxy) == [FILE]


def test_a_key_that_cannot_create_fails_at_once_naming_storage_objects_create(
    gcs_proxy, bucket, gcs_target, tmp_path, caplog
):
    gcs_proxy.grant(VIEWER)
    built_file(tmp_path)
    with caplog.at_level(logging.WARNING), pytest.raises(PermanentDeliveryError) as raised:
        deliver_file(EXPORT, gcs_target(bucket), tmp_path / FILE, FILE, retry=RETRY)
    message = str(raised.value)
    assert "storage.objects.create" in message and "Storage Object Creator (roles/storage.objectCreator)" in message
    assert f"gs://{BUCKET}/{FILE}" in message and EXPORT in message
    assert len(gcs_proxy.uploads()) == 1 and "retrying" not in caplog.text
    assert objects(gcs_proxy) == []


# -- bursts and resets: retried, safely ---------------------------------------------------------


@pytest.mark.parametrize("role", [CREATOR, ADMIN])
@pytest.mark.parametrize("status", [429, 503])
def test_burst_of_errors_is_retried_with_backoff_then_delivered_once(
    gcs_proxy, bucket, gcs_target, tmp_path, status, role, caplog
):
    gcs_proxy.grant(role)
    data = built_file(tmp_path)
    gcs_proxy.fail_next_uploads(status, times=3)

    with caplog.at_level(logging.WARNING, logger="beop_assets.delivery.retry"):
        receipt = deliver_file(EXPORT, gcs_target(bucket), tmp_path / FILE, FILE, retry=RETRY)

    assert receipt.attempts == 4 and caplog.text.count("retrying") == 3
    assert f"HTTP {status}" in caplog.text
    assert [s.outcome for s in gcs_proxy.uploads()] == [status, status, status, 200]
    assert preconditions(gcs_proxy) == ["0"] * 4  # every retry is conditional
    assert len(gcs_proxy.commits()) == 1 and objects(gcs_proxy) == [FILE] and stored(gcs_proxy) == data
    assert receipt.verified_from == ("upload receipt" if role == CREATOR else "read-back")


@pytest.mark.parametrize(
    "size, method",
    [(200_000, "POST"), (2 * CHUNK, "PUT")],
    ids=["multipart", "resumable-chunk"],
)
@pytest.mark.parametrize("role", [CREATOR, ADMIN])
def test_connection_reset_mid_upload_is_retried_then_delivered_once(
    gcs_proxy, bucket, gcs_target, tmp_path, size, method, role
):
    gcs_proxy.grant(role)
    data = built_file(tmp_path, size)
    gcs_proxy.reset_next_upload(after_bytes=64 * 1024, method=method)

    receipt = deliver_file(EXPORT, gcs_target(bucket), tmp_path / FILE, FILE, retry=RETRY)

    assert receipt.attempts == 2
    assert [s.outcome for s in gcs_proxy.uploads()].count("reset mid-upload") == 1
    assert set(preconditions(gcs_proxy)) == {"0"}
    assert len(gcs_proxy.commits()) == 1 and objects(gcs_proxy) == [FILE] and stored(gcs_proxy) == data


def test_reset_after_the_object_was_committed_is_recognised_as_our_own_upload(gcs_proxy, bucket, gcs_target, tmp_path):
    """The ambiguous failure: GCS stored the object, the client never heard. The retry's
    precondition gets a 412 instead of a second generation; the checksums show it is ours."""
    gcs_proxy.grant(USER)
    data = built_file(tmp_path)
    gcs_proxy.reset_after_next_commit()

    receipt = deliver_file(EXPORT, gcs_target(bucket), tmp_path / FILE, FILE, retry=RETRY)

    assert len(gcs_proxy.commits()) == 1  # never uploaded twice
    assert [s.outcome for s in gcs_proxy.uploads()] == ["reset after commit", 412]
    assert receipt.attempts == 2 and receipt.verified_from == "read-back"
    generation = gcs_proxy.emulator.client().bucket(BUCKET).get_blob(FILE).generation
    assert receipt.generation == generation and stored(gcs_proxy) == data


def test_reset_after_commit_with_a_key_that_cannot_read_is_reported_not_guessed(
    gcs_proxy, bucket, gcs_target, tmp_path
):
    gcs_proxy.grant(CREATOR)
    data = built_file(tmp_path)
    gcs_proxy.reset_after_next_commit()

    with pytest.raises(PermanentDeliveryError) as raised:
        deliver_file(EXPORT, gcs_target(bucket), tmp_path / FILE, FILE, retry=RETRY)

    message = str(raised.value)
    built = gcs.local_checksums(tmp_path / FILE)
    for part in (f"gs://{BUCKET}/{FILE} exists now", "storage.objects.get", built.crc32c, built.md5, "left as it is"):
        assert part in message, (part, message)
    assert len(gcs_proxy.commits()) == 1 and stored(gcs_proxy) == data  # nothing replaced


@pytest.mark.parametrize(
    "size, method",
    [(200_000, "POST"), (2 * CHUNK, "PUT")],
    ids=["multipart", "resumable-between-chunks"],
)
def test_a_newer_object_written_during_the_delivery_is_never_replaced(
    gcs_proxy, bucket, gcs_target, tmp_path, size, method
):
    gcs_proxy.grant(ADMIN)
    built_file(tmp_path, size)
    theirs = gzip.compress(b'{"someone": "else"}\n')
    gcs_proxy.before_next_upload(
        lambda: gcs_proxy.emulator.client().bucket(BUCKET).blob(FILE).upload_from_string(theirs, retry=None),
        method=method,
    )
    with pytest.raises(PermanentDeliveryError) as raised:
        deliver_file(EXPORT, gcs_target(bucket), tmp_path / FILE, FILE, retry=RETRY)
    assert "was replaced by someone else during the delivery" in str(raised.value)
    assert "left as it is" in str(raised.value)
    assert stored(gcs_proxy) == theirs
    assert gcs_proxy.uploads()[-1].outcome == 412  # refused by the precondition, at the start or the last chunk


# -- through Dagster: ledger, materialization metadata, delivery checks --------------------------

DAY = date(2026, 11, 25)


def _checks(product) -> dict:
    records = product.instance.get_event_records(EventRecordsFilter(event_type=DagsterEventType.ASSET_CHECK_EVALUATION))
    return {
        r.event_log_entry.dagster_event.event_specific_data.check_name: r.event_log_entry.dagster_event.event_specific_data
        for r in records
    }


def test_creator_only_daily_run_is_delivered_and_its_checks_say_they_verified_from_the_receipt(
    product, gcs_proxy, bucket
):
    product.landing.write_events(DAY, [product.landing.event("p_1"), product.landing.event("p_2", content_id="c_2")])
    product.write_registry([product.global_("acme-all", gcs={"bucket": bucket})])
    gcs_proxy.grant(CREATOR)

    (outcome,) = run_day(DAY, dagster_instance=product.instance, export_ids=["acme-all"])

    assert (outcome.status, outcome.rows) == ("delivered", 2), outcome
    (delivery,) = ledger.history("acme-all", status="delivered", root=ledger_at())
    assert delivery.verified_from == "upload receipt"
    assert (delivery.stored_bytes, delivery.stored_crc32c, delivery.stored_md5) == (
        delivery.bytes,
        delivery.built_crc32c,
        delivery.built_md5,
    )
    assert delivery.generation and delivery.built_md5
    record = product.instance.get_latest_materialization_event(AssetKey("global_export_file")).asset_materialization
    assert record.metadata["verified_from"].value == "upload receipt"
    assert record.metadata["md5"].value == delivery.built_md5

    checks = _checks(product)
    assert sorted(checks) == [
        "global_file_delivered_intact",
        "global_lines_follow_contract",
        "global_only_own_account",
        "global_rows_match_model",
    ]
    for name, check in checks.items():
        assert check.passed, (name, check.description)
        assert check.metadata["verified_from"].value == "upload receipt", name
        assert "denied" in check.description and "Verified from the upload receipt" in check.description, name
    assert "storage.objects.get" in checks["global_file_delivered_intact"].description
    assert checks["global_rows_match_model"].metadata["file_rows"].value == 2
    downloads = [s for s in gcs_proxy.seen if s.path.startswith("/download/")]
    assert downloads and {s.outcome for s in downloads} == {403}  # the checks did try to read it back


def test_with_a_key_that_may_read_the_checks_verify_the_downloaded_file(product, gcs_proxy, bucket):
    product.landing.write_events(DAY, [product.landing.event("p_1")])
    product.write_registry([product.global_("acme-all", gcs={"bucket": bucket})])
    gcs_proxy.grant(USER)

    (outcome,) = run_day(DAY, dagster_instance=product.instance, export_ids=["acme-all"])

    assert outcome.status == "delivered", outcome
    assert ledger.history("acme-all", status="delivered", root=ledger_at())[0].verified_from == "read-back"
    checks = _checks(product)
    assert len(checks) == 4
    assert all(c.passed and c.metadata["verified_from"].value == "read-back" for c in checks.values())
    assert {s.outcome for s in gcs_proxy.seen if s.path.startswith("/download/")} == {200}


def test_creator_only_rerun_of_a_day_fails_naming_the_permission_and_keeps_the_first_file(product, gcs_proxy, bucket):
    product.landing.write_events(DAY, [product.landing.event("p_1")])
    product.write_registry([product.global_("acme-all", gcs={"bucket": bucket})])
    gcs_proxy.grant(CREATOR)
    (first,) = run_day(DAY, dagster_instance=product.instance, export_ids=["acme-all"])
    assert first.status == "delivered", first
    before = stored(gcs_proxy, first.file_name)

    (second,) = run_day(DAY, dagster_instance=product.instance, export_ids=["acme-all"])

    assert second.status == "failed"
    assert "storage.objects.delete" in second.error and "Storage Object User" in second.error, second.error
    assert stored(gcs_proxy, first.file_name) == before
    failed = ledger.history("acme-all", status="failed", root=ledger_at())
    assert len(failed) == 1 and "storage.objects.delete" in failed[0].error


# -- pre-flight (`beop-exports check`) ------------------------------------------------------------


def test_check_with_a_creator_only_key_says_what_deliveries_will_do_and_writes_nothing(gcs_proxy, bucket, gcs_target):
    gcs_proxy.grant(CREATOR)
    lines = check_target(EXPORT, gcs_target(bucket, prefix="exports"))
    text = "\n".join(lines)
    assert f"gs://{BUCKET}/exports/ accepts new objects (storage.objects.create granted" in text
    assert "no storage.objects.get: deliveries are verified from the upload receipt" in text
    assert "no storage.objects.delete: re-running a day cannot replace its object" in text
    assert gcs_proxy.uploads() == [] and objects(gcs_proxy) == []  # no probe left in the customer's bucket


def test_check_with_a_key_that_cannot_create_fails_naming_the_permission(gcs_proxy, bucket, gcs_target):
    gcs_proxy.grant(VIEWER)
    with pytest.raises(PermanentDeliveryError) as raised:
        check_target(EXPORT, gcs_target(bucket))
    assert "lacks storage.objects.create" in str(raised.value) and "Storage Object Creator" in str(raised.value)


def test_check_with_object_user_writes_reads_and_deletes_a_probe(gcs_proxy, bucket, gcs_target):
    gcs_proxy.grant(USER)
    lines = check_target(EXPORT, gcs_target(bucket))
    assert lines[-1] == f"gs://{BUCKET}/ is writable (probe object written, read back and deleted)"
    assert len(gcs_proxy.commits()) == 1 and objects(gcs_proxy) == []


# -- the checks' receipt logic, one function at a time ------------------------------------------


def _delivery(**proof) -> ledger.Delivery:
    base = dict(
        id=1, export_id="acme-all", mode="global", data_day="2026-11-25", file_name=FILE, rows=2, bytes=100,
        sha256="x", destination=f"gs://{BUCKET}/{FILE}", run_id="r", status="delivered", error=None, attempts=1,
        started_at="t", finished_at="t", verified_from="upload receipt", built_crc32c="AAAAAA==", built_md5="md5==",
        stored_bytes=100, stored_crc32c="AAAAAA==", stored_md5="md5==", generation=7,
    )  # fmt: skip
    return ledger.Delivery(**{**base, **proof})


DENIED = "download of gs://acme-beop/x denied …: the key's service account lacks storage.objects.get"


@pytest.mark.parametrize(
    "proof, passed",
    [({}, True), ({"stored_crc32c": "BBBBBB=="}, False), ({"stored_md5": None}, False), ({"stored_bytes": 99}, False)],
    ids=["equal", "crc32c differs", "md5 missing", "size differs"],
)
def test_the_intact_check_from_the_receipt_passes_only_when_every_checksum_is_recorded_and_equal(proof, passed):
    from beop_assets.defs.exports import checks
    from beop_assets.defs.exports.io_managers import DeliveredFile

    result = checks._intact(DeliveredFile(delivery=_delivery(**proof), local_path=None, read_back_denied=DENIED))
    assert result.passed is passed
    assert result.metadata["verified_from"].value == "upload receipt"
    assert ("do NOT equal" in result.description) is not passed and DENIED in result.description


def test_content_checks_fail_and_say_why_when_neither_the_object_nor_the_built_copy_can_be_read():
    from beop_assets.defs.exports import checks
    from beop_assets.defs.exports.io_managers import DeliveredFile

    result = checks._unreadable(DeliveredFile(delivery=_delivery(), local_path=None, read_back_denied=DENIED))
    assert result is not None and result.passed is False
    assert "built copy kept for the checks (one day) is gone" in result.description


def test_a_ledger_written_before_the_proof_columns_existed_is_extended_in_place(tmp_path):
    import sqlite3

    old = sqlite3.connect(tmp_path / "deliveries.sqlite")
    old.executescript(
        "CREATE TABLE deliveries (id INTEGER PRIMARY KEY AUTOINCREMENT, export_id TEXT NOT NULL, mode TEXT NOT NULL,"
        " data_day TEXT NOT NULL, file_name TEXT, rows INTEGER, bytes INTEGER, sha256 TEXT, destination TEXT,"
        " run_id TEXT, status TEXT NOT NULL, error TEXT, attempts INTEGER, started_at TEXT NOT NULL, finished_at TEXT);"
        " INSERT INTO deliveries (export_id, mode, data_day, status, started_at) VALUES"
        " ('acme-all', 'global', '2026-11-24', 'delivered', 't');"
    )
    old.close()
    new_id = ledger.start("acme-all", "global", DAY, FILE, 2, 100, "x", "gs://b/", "run", root=tmp_path)
    proof = ledger.Verification("upload receipt", "c==", "m==", 100, "c==", "m==", 42)
    ledger.finish(new_id, attempts=1, verification=proof, root=tmp_path)

    latest, older = ledger.history("acme-all", root=tmp_path)
    assert (latest.verified_from, latest.stored_crc32c, latest.generation) == ("upload receipt", "c==", 42)
    assert (older.data_day, older.verified_from) == ("2026-11-24", None)
