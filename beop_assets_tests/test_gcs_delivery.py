"""The GCS transport against the real emulator (fake-gcs-server): what a customer finds in the
bucket, what an operator reads when it goes wrong, and that no key ever shows up in a message."""

from __future__ import annotations

import gzip
import json
import logging
import os
import socket
import threading
from pathlib import Path

import pytest
import requests
from google.api_core import exceptions as api_exceptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage
from google.oauth2 import service_account

from beop_assets.cloud_storage import platform_client
from beop_assets.delivery import gcs
from beop_assets.delivery.errors import PermanentDeliveryError, TransientDeliveryError
from beop_assets.delivery.gcs_credentials import client_for_export, read_service_account_key
from beop_assets.delivery.retry import RetryPolicy
from beop_assets.demo.service_account import rsa_private_key_pem, service_account_info
from beop_assets.exports.registry import GcsTarget
from beop_assets_tests.transports import QUICK, check_target, deliver_file, download_file, list_files

# Resumable uploads are sent in chunks of CHUNK here (the product's are larger), so that files of a
# few chunks stay small enough for a test.
CHUNK = 8 * 2**20


@pytest.fixture(autouse=True)
def _small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gcs, "CHUNK_SIZE", CHUNK)


EXPORT = "acme-global"
FILE = "2026-11-26_acme.ndjson.gz"


def write_gzip(path: Path, lines: list[dict]) -> bytes:
    data = gzip.compress("".join(json.dumps(line) + "\n" for line in lines).encode(), compresslevel=1)
    path.write_bytes(data)
    return data


def write_big_gzip(path: Path, size: int) -> bytes:
    """A valid gzip file larger than `size` (random payload: gzip cannot shrink it)."""
    data = gzip.compress(os.urandom(size), compresslevel=1)
    path.write_bytes(data)
    return data


@pytest.fixture
def fast_retries() -> int:
    return QUICK.attempts


def stored_blob(emulator, bucket: str, name: str) -> storage.Blob:
    blob = emulator.client().bucket(bucket).get_blob(name)
    assert blob is not None, f"gs://{bucket}/{name} not found"
    return blob


def test_small_file_is_delivered_byte_for_byte(gcs_emulator, gcs_bucket, gcs_target, tmp_path):
    local = tmp_path / FILE
    data = write_gzip(local, [{"participation_id": "p_1", "text": "é\n🎉"}, {"participation_id": "p_2"}])

    receipt = deliver_file(EXPORT, gcs_target(gcs_bucket), local, FILE)

    assert receipt.destination == f"gs://{gcs_bucket}/{FILE}"
    assert (receipt.facts["object"], receipt.bytes, receipt.attempts) == (FILE, len(data), 1)
    assert receipt.built_crc32c == gcs.local_crc32c(local)[1]
    assert receipt.generation
    blob = stored_blob(gcs_emulator, gcs_bucket, FILE)
    assert blob.content_type == "application/gzip"
    assert blob.content_encoding is None
    assert (blob.crc32c, blob.size) == (receipt.built_crc32c, len(data))

    copy = tmp_path / "copy.gz"
    assert download_file(EXPORT, gcs_target(gcs_bucket), FILE, copy) == len(data)
    assert copy.read_bytes() == data
    lines = gzip.decompress(copy.read_bytes()).splitlines()
    assert [json.loads(line)["participation_id"] for line in lines] == ["p_1", "p_2"]


def test_empty_day_delivers_a_valid_empty_gzip(gcs_bucket, gcs_target, tmp_path):
    local = tmp_path / FILE
    data = write_gzip(local, [])
    deliver_file(EXPORT, gcs_target(gcs_bucket), local, FILE)
    copy = tmp_path / "copy.gz"
    download_file(EXPORT, gcs_target(gcs_bucket), FILE, copy)
    assert copy.read_bytes() == data and gzip.decompress(data) == b""


def test_large_file_goes_through_a_chunked_resumable_upload(
    gcs_emulator, gcs_bucket, gcs_target, tmp_path, monkeypatch
):
    calls = {"resumable": [], "multipart": 0}
    resumable, multipart = storage.Blob._do_resumable_upload, storage.Blob._do_multipart_upload

    def spy_resumable(self, *args, **kwargs):
        calls["resumable"].append(self.chunk_size)
        return resumable(self, *args, **kwargs)

    def spy_multipart(self, *args, **kwargs):
        calls["multipart"] += 1
        return multipart(self, *args, **kwargs)

    monkeypatch.setattr(storage.Blob, "_do_resumable_upload", spy_resumable)
    monkeypatch.setattr(storage.Blob, "_do_multipart_upload", spy_multipart)
    local = tmp_path / FILE
    data = write_big_gzip(local, CHUNK + 1024 * 1024)
    assert len(data) > gcs.SINGLE_REQUEST_MAX

    receipt = deliver_file(EXPORT, gcs_target(gcs_bucket, prefix="exports/"), local, FILE)

    assert calls == {"resumable": [CHUNK], "multipart": 0}
    assert receipt.bytes == len(data)
    blob = stored_blob(gcs_emulator, gcs_bucket, f"exports/{FILE}")
    assert (blob.content_type, blob.content_encoding) == ("application/gzip", None)
    assert blob.crc32c == receipt.built_crc32c
    copy = tmp_path / "copy.gz"
    download_file(EXPORT, gcs_target(gcs_bucket, prefix="exports/"), FILE, copy)
    assert copy.read_bytes() == data
    assert len(gzip.decompress(copy.read_bytes())) == CHUNK + 1024 * 1024


@pytest.mark.parametrize(
    "prefix, expected",
    [
        ("exports/", f"exports/{FILE}"),
        ("exports", f"exports/{FILE}"),
        ("", FILE),
        ("a/b/c", f"a/b/c/{FILE}"),
    ],
)
def test_object_name_joins_the_prefix(prefix, expected, gcs_bucket, gcs_target, tmp_path):
    target = gcs_target(gcs_bucket, prefix=prefix)
    assert gcs.object_name(target, FILE) == expected
    write_gzip(tmp_path / FILE, [{"participation_id": "p_1"}])
    assert deliver_file(EXPORT, target, tmp_path / FILE, FILE).facts["object"] == expected
    assert list_files(EXPORT, target) == [expected]


def test_redelivery_replaces_the_days_object(gcs_bucket, gcs_target, tmp_path):
    target = gcs_target(gcs_bucket, prefix="exports")
    first, second = tmp_path / "first.gz", tmp_path / "second.gz"
    write_gzip(first, [{"participation_id": "p_old"}])
    new = write_gzip(second, [{"participation_id": "p_new"}, {"participation_id": "p_new_2"}])

    one = deliver_file(EXPORT, target, first, FILE)
    two = deliver_file(EXPORT, target, second, FILE)

    assert two.generation != one.generation
    assert list_files(EXPORT, target) == [f"exports/{FILE}"]
    copy = tmp_path / "copy.gz"
    download_file(EXPORT, target, FILE, copy)
    assert copy.read_bytes() == new


@pytest.mark.parametrize("via", ["file", "env"])
def test_missing_bucket_fails_at_once_naming_bucket_and_export(
    via, gcs_emulator, gcs_target, tmp_path, caplog, fast_retries
):
    write_gzip(tmp_path / FILE, [])
    with pytest.raises(PermanentDeliveryError) as raised:
        deliver_file(EXPORT, gcs_target("no-such-bucket", via=via), tmp_path / FILE, FILE)
    assert str(raised.value) == f"bucket no-such-bucket does not exist (export {EXPORT})"
    assert "retrying" not in caplog.text


def _bad_keys(good: dict) -> dict[str, str]:
    bad_pem = "-----BEGIN PRIVATE KEY-----\nBEOPSECRETMARKER0123456789abcdef\n-----END PRIVATE KEY-----\n"
    return {
        "not json": "BEOPSECRETMARKER {not json",
        "json list": json.dumps(["BEOPSECRETMARKER"]),
        "wrong type": json.dumps({**good, "type": "authorized_user"}),
        "missing client_email": json.dumps({k: v for k, v in good.items() if k != "client_email"}),
        "private key not PEM": json.dumps({**good, "private_key": "BEOPSECRETMARKER"}),
        "private key not a string": json.dumps({**good, "private_key": 12345678}),
        "corrupt private key": json.dumps({**good, "private_key": bad_pem}),
        "truncated private key": json.dumps(
            {**good, "private_key": good["private_key"][:400] + "\n-----END PRIVATE KEY-----\n"}
        ),
    }


@pytest.mark.parametrize("via", ["file", "env"])
@pytest.mark.parametrize("case", list(_bad_keys({"private_key": "", "client_email": ""})))
def test_malformed_key_fails_clearly_without_showing_it(case, via, gcs_bucket, gcs_key, gcs_target, tmp_path, caplog):
    key_text = _bad_keys(gcs_key.info)[case]
    target = gcs_target(gcs_bucket, via=via, key_text=key_text)
    where = target.credentials_file or target.credentials_env
    write_gzip(tmp_path / FILE, [])
    with caplog.at_level(logging.DEBUG):
        with pytest.raises(PermanentDeliveryError) as raised:
            deliver_file(EXPORT, target, tmp_path / FILE, FILE)
        with pytest.raises(PermanentDeliveryError) as raised_by_check:
            check_target(EXPORT, target)
    message = str(raised.value)
    assert EXPORT in message and where in message and "not a valid service-account key" in message
    assert str(raised_by_check.value) == message
    for secret in ["BEOPSECRETMARKER", "12345678", *gcs_key.secrets]:
        assert secret not in message and secret not in caplog.text
    assert list_files(EXPORT, gcs_target(gcs_bucket)) == []


def test_missing_key_file_and_unset_variable(gcs_bucket, gcs_target, tmp_path):
    write_gzip(tmp_path / FILE, [])
    missing = tmp_path / "nowhere" / "key.json"
    with pytest.raises(
        PermanentDeliveryError, match=f"credentials file {missing} does not exist \\(export {EXPORT}\\)"
    ):
        deliver_file(EXPORT, gcs_target(gcs_bucket, key_file=missing), tmp_path / FILE, FILE)
    with pytest.raises(PermanentDeliveryError, match="is a directory"):
        deliver_file(EXPORT, gcs_target(gcs_bucket, key_file=tmp_path), tmp_path / FILE, FILE)
    unset = gcs_target(gcs_bucket, via="env", unset=True)
    expected = f"environment variable {unset.credentials_env} is not set or empty \\(export {EXPORT}\\)"
    with pytest.raises(PermanentDeliveryError, match=expected):
        deliver_file(EXPORT, unset, tmp_path / FILE, FILE)
    with pytest.raises(PermanentDeliveryError, match="is not set or empty"):
        read_service_account_key(EXPORT, gcs_target(gcs_bucket, via="env", key_text="  \n"))


def test_good_key_is_read_from_file_and_from_env(gcs_bucket, gcs_key, gcs_target):
    assert read_service_account_key(EXPORT, gcs_target(gcs_bucket)) == gcs_key.info
    assert read_service_account_key(EXPORT, gcs_target(gcs_bucket, via="env")) == gcs_key.info


def test_clients_use_the_emulator_anonymously_when_it_is_set(gcs_emulator, gcs_bucket, gcs_target):
    for client in (client_for_export(EXPORT, gcs_target(gcs_bucket)), platform_client()):
        assert client.api_endpoint == gcs_emulator.url
        assert isinstance(client._credentials, AnonymousCredentials)


def test_production_client_uses_the_customer_key(monkeypatch, gcs_key, gcs_target):
    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
    client = client_for_export(EXPORT, gcs_target("acme-beop"))  # builds credentials; no network call
    assert isinstance(client._credentials, service_account.Credentials)
    assert client._credentials.service_account_email == gcs_key.info["client_email"]
    assert client.project == gcs_key.info["project_id"]
    assert client.api_endpoint == "https://storage.googleapis.com"


def test_a_rotated_key_is_used_at_once(monkeypatch, gcs_key, gcs_target, tmp_path):
    """Credentials are built once per key, not once per process: the customer's new key, written over
    the old file, is the one the next delivery signs with (and a broken one is refused again)."""
    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
    key_file = tmp_path / "rotating-key.json"
    key_file.write_text(gcs_key.text, encoding="utf-8")
    target = gcs_target("acme-beop", key_file=key_file)
    assert client_for_export(EXPORT, target)._credentials.service_account_email == gcs_key.info["client_email"]

    rotated = service_account_info(rsa_private_key_pem())
    rotated["client_email"] = "rotated@beop-demo-project.iam.gserviceaccount.com"
    key_file.write_text(json.dumps(rotated), encoding="utf-8")
    assert client_for_export(EXPORT, target)._credentials.service_account_email == rotated["client_email"]

    key_file.write_text(json.dumps({**rotated, "private_key": "-----BEGIN PRIVATE KEY-----\nbroken"}), "utf-8")
    with pytest.raises(PermanentDeliveryError, match="cannot be loaded"):
        client_for_export(EXPORT, target)


def test_emulator_down_is_retried_then_transient(private_gcs_emulator, gcs_target, tmp_path, caplog, fast_retries):
    emulator = private_gcs_emulator()
    emulator.create_bucket("acme-beop")
    emulator.stop()
    write_gzip(tmp_path / FILE, [])
    with (
        caplog.at_level(logging.WARNING, logger="beop_assets.delivery.retry"),
        pytest.raises(TransientDeliveryError) as raised,
    ):
        deliver_file(EXPORT, gcs_target("acme-beop"), tmp_path / FILE, FILE)
    assert f"gs://acme-beop/{FILE}" in str(raised.value) and EXPORT in str(raised.value)
    assert caplog.text.count("retrying") == 2  # 3 attempts


@pytest.mark.parametrize("big", [False, True], ids=["multipart", "resumable"])
def test_emulator_restarted_during_retries_delivers_exactly_one_object(
    big, private_gcs_emulator, gcs_target, tmp_path, monkeypatch
):
    """The server is down at the first attempt and comes back (filesystem backend: the bucket
    survives) from a timer thread started by the first retry."""
    retry = RetryPolicy(attempts=8, backoff_s=0.2)
    emulator = private_gcs_emulator(backend="filesystem")
    emulator.create_bucket("acme-beop")
    emulator.stop()
    local = tmp_path / FILE
    data = write_big_gzip(local, CHUNK + 1) if big else write_gzip(local, [{"participation_id": "p_1"}])

    timers: list[threading.Timer] = []

    class RestartOnFirstRetry(logging.Handler):
        def emit(self, record):
            if "retrying" in record.getMessage() and not timers:
                timers.append(threading.Timer(0.05, emulator.start))
                timers[0].start()

    handler = RestartOnFirstRetry()
    logging.getLogger("beop_assets.delivery.retry").addHandler(handler)
    try:
        receipt = deliver_file(EXPORT, gcs_target("acme-beop"), local, FILE, retry=retry)
    finally:
        logging.getLogger("beop_assets.delivery.retry").removeHandler(handler)
        for timer in timers:
            timer.join()

    assert receipt.attempts >= 2
    target = gcs_target("acme-beop")
    assert list_files(EXPORT, target) == [FILE]
    copy = tmp_path / "copy.gz"
    download_file(EXPORT, target, FILE, copy)
    assert copy.read_bytes() == data


def test_server_restarted_mid_upload_restarts_the_upload_and_no_partial_object_is_visible(
    private_gcs_emulator, gcs_target, tmp_path, monkeypatch
):
    """After the first chunk of a resumable upload, nothing is visible under any name; then the
    server restarts (the session is lost: 404 on the upload id) and the whole upload is redone."""
    from google.cloud.storage._media.requests import upload as media_upload

    retry = RetryPolicy(attempts=3, backoff_s=0.05)
    emulator = private_gcs_emulator(backend="filesystem")
    emulator.create_bucket("acme-beop")
    local = tmp_path / FILE
    data = write_big_gzip(local, 2 * CHUNK)
    seen_mid_upload: list[list[str]] = []
    transmit = media_upload.ResumableUpload.transmit_next_chunk

    def restart_after_first_chunk(self, *args, **kwargs):
        if self.bytes_uploaded and not seen_mid_upload:
            seen_mid_upload.append([b.name for b in emulator.client().list_blobs("acme-beop")])
            emulator.stop()
            emulator.start()
        return transmit(self, *args, **kwargs)

    monkeypatch.setattr(media_upload.ResumableUpload, "transmit_next_chunk", restart_after_first_chunk)
    receipt = deliver_file(EXPORT, gcs_target("acme-beop"), local, FILE, retry=retry)

    assert seen_mid_upload == [[]]
    assert receipt.attempts == 2
    assert list_files(EXPORT, gcs_target("acme-beop")) == [FILE]
    copy = tmp_path / "copy.gz"
    download_file(EXPORT, gcs_target("acme-beop"), FILE, copy)
    assert copy.read_bytes() == data


def test_check_target_passes_and_leaves_nothing_behind(gcs_bucket, gcs_key, gcs_target):
    target = gcs_target(gcs_bucket, prefix="exports")
    lines = check_target(EXPORT, target)
    assert lines[0].startswith(
        f"credentials file {gcs_key.path} is a valid service-account key for {gcs_key.info['client_email']}"
    )
    assert lines[1:] == [
        f"bucket {gcs_bucket} exists",
        f"gs://{gcs_bucket}/exports/ is writable (probe object written, read back and deleted)",
    ]
    assert list_files(EXPORT, target) == []
    assert not any(secret in "\n".join(lines) for secret in gcs_key.secrets)


def test_check_target_reads_the_key_once(gcs_bucket, gcs_target, monkeypatch):
    """What the pre-flight says of the key and the client it probes with come from the same read."""
    from beop_assets.delivery import gcs_credentials

    reads: list[int] = []
    real = gcs_credentials._key_text
    monkeypatch.setattr(gcs_credentials, "_key_text", lambda *a: reads.append(1) or real(*a))
    check_target(EXPORT, gcs_target(gcs_bucket))
    assert len(reads) == 1


def test_check_target_reports_missing_bucket_and_down_server(gcs_target, private_gcs_emulator, caplog):
    private_gcs_emulator()
    with pytest.raises(PermanentDeliveryError) as raised:
        check_target(EXPORT, gcs_target("no-such-bucket"))
    assert str(raised.value) == f"bucket no-such-bucket does not exist (export {EXPORT})"
    private_gcs_emulator().stop()
    with pytest.raises(TransientDeliveryError) as raised:
        check_target(EXPORT, gcs_target("acme-beop"))
    assert EXPORT in str(raised.value) and "acme-beop" in str(raised.value)
    assert "retrying" not in caplog.text  # one attempt: an operator is waiting


@pytest.mark.parametrize(
    "exc, kind, text",
    [
        (
            api_exceptions.Forbidden("nope"),
            PermanentDeliveryError,
            f"write of gs://b-1/o.gz denied for export {EXPORT}: the key's service account lacks "
            "storage.objects.create on bucket b-1; Storage Object Creator (roles/storage.objectCreator)",
        ),
        (
            api_exceptions.Forbidden("x does not have storage.objects.list access"),
            PermanentDeliveryError,
            "lacks storage.objects.list on bucket b-1; Storage Object Viewer (roles/storage.objectViewer)",
        ),
        (api_exceptions.Unauthorized("nope"), PermanentDeliveryError, "did not accept the export's credentials"),
        (
            api_exceptions.NotFound("POST /b/b-1/o"),
            PermanentDeliveryError,
            f"bucket b-1 does not exist (export {EXPORT})",
        ),
        (api_exceptions.NotFound("PUT /o?upload_id=SESSIONSECRET"), TransientDeliveryError, "upload session"),
        (api_exceptions.TooManyRequests("slow down"), TransientDeliveryError, "HTTP 429"),
        (api_exceptions.ServiceUnavailable("later"), TransientDeliveryError, "HTTP 503"),
        (api_exceptions.BadRequest("bad"), PermanentDeliveryError, "refused"),
        (requests.ConnectionError("refused ?upload_id=SESSIONSECRET"), TransientDeliveryError, "gs://b-1/o.gz"),
        (requests.Timeout("slow"), TransientDeliveryError, EXPORT),
    ],
)
def test_error_classification(exc, kind, text):
    error = gcs.translate(exc, EXPORT, "b-1", "o.gz")
    assert type(error) is kind
    assert text in str(error) and "SESSIONSECRET" not in str(error)


def test_target_model_requires_one_credentials_source():
    with pytest.raises(ValueError):
        GcsTarget(bucket="acme-beop")


def test_download_of_a_missing_object_names_it(gcs_bucket, gcs_target, tmp_path):
    with pytest.raises(PermanentDeliveryError) as raised:
        download_file(EXPORT, gcs_target(gcs_bucket, prefix="exports"), FILE, tmp_path / "copy.gz")
    assert str(raised.value) == f"gs://{gcs_bucket}/exports/{FILE} does not exist (export {EXPORT})"


def test_emulator_that_cannot_start_fails_loudly_with_its_output():
    from beop_assets.demo.gcs_emulator import GcsEmulator

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        emulator = GcsEmulator(port=taken.getsockname()[1])
        with pytest.raises(RuntimeError, match="address already in use"):
            emulator.start()
        emulator.close()
