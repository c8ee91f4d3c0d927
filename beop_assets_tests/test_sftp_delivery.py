"""SFTP delivery against a real OpenSSH sshd on loopback (fixtures/sshd.py): what the customer sees.

The SFTP user is not chrooted, so the remote directory is also a local path: tests look at what
landed on the server directly, and through `download_file`/`list_files` as well.
"""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import threading
import time
import traceback
from contextlib import contextmanager, suppress
from dataclasses import replace
from pathlib import Path

import pytest

from beop_assets.delivery import ledger, sftp_protocol
from beop_assets.delivery import sftp as sftp_module
from beop_assets.delivery.errors import DeliveryError, PermanentDeliveryError, TransientDeliveryError
from beop_assets.delivery.retry import RetryPolicy
from beop_assets.delivery.transport import Receipt
from beop_assets_tests.fixtures.sshd import SFTP_KEY_ENV, SFTP_PASSPHRASE_ENV, SFTP_PASSWORD_ENV
from beop_assets_tests.transports import QUICK, check_target, deliver_file, download_file, list_files

pytestmark = pytest.mark.timeout(120)

CSV = (
    "email,firstname,creative-name\r\n"
    'jane@example.com,"Jane ""JJ""","Concours, été 🎉\nligne 2"\r\n'
    "zoé@example.fr,Zoé,\t tab\r\n"
).encode()


@pytest.fixture
def csv_file(tmp_path: Path) -> Path:
    path = tmp_path / "export.csv"
    path.write_bytes(CSV)
    return path


@pytest.fixture
def quick_retries() -> int:
    return QUICK.attempts


def _names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def _full_text(error: BaseException) -> str:
    return "".join(traceback.format_exception(error))


# -- successful deliveries -----------------------------------------------------------------------


@pytest.mark.parametrize("auth", ["password", "key_file", "key_env"])
def test_delivers_the_file_byte_identical_under_its_final_name(auth, sftp_target, upload_dir, csv_file, tmp_path):
    target = sftp_target(auth)
    receipt = deliver_file("acme-crm", target, csv_file, "20261126_crm-participation_x_1.csv")

    remote_path = f"{upload_dir}/20261126_crm-participation_x_1.csv"
    assert receipt == Receipt(
        destination=f"sftp://{target.username}@{target.address}{remote_path}",
        file_name="20261126_crm-participation_x_1.csv",
        bytes=len(CSV),
        duration_s=receipt.duration_s,
        attempts=1,
        verified_from="acks+size",  # OpenSSH offers no hash extension
        temp_name=".20261126_crm-participation_x_1.csv.part",
        leftovers_removed=(),
        facts={"remote_path": remote_path, "host": target.address, "rename": "posix-rename"},
    )
    assert _names(upload_dir) == ["20261126_crm-participation_x_1.csv"]  # no .part left behind
    assert (upload_dir / "20261126_crm-participation_x_1.csv").read_bytes() == CSV
    back = tmp_path / "back.csv"
    assert download_file("acme-crm", target, "20261126_crm-participation_x_1.csv", back) == len(CSV)
    assert back.read_bytes() == CSV
    assert list_files("acme-crm", target) == ["20261126_crm-participation_x_1.csv"]


@pytest.mark.parametrize(
    "key_type, source, passphrase",
    [
        ("rsa", "file", None),
        ("ecdsa", "env", None),
        ("ed25519", "file", "beop-key-passphrase-42"),
    ],
)
def test_key_types_and_passphrase(
    key_type, source, passphrase, sshd, sftp_target, upload_dir, csv_file, tmp_path, monkeypatch
):
    key = tmp_path / f"id_{key_type}"
    subprocess.run(["ssh-keygen", "-q", "-t", key_type, "-N", passphrase or "", "-f", str(key)], check=True)
    sshd.authorize_key(key.with_suffix(".pub").read_text())
    extra = {}
    if passphrase:
        monkeypatch.setenv(SFTP_PASSPHRASE_ENV, passphrase)
        extra["private_key_passphrase_env"] = SFTP_PASSPHRASE_ENV
    if source == "file":
        target = sftp_target("key_file", private_key_file=str(key), **extra)
    else:
        monkeypatch.setenv("BEOP_TEST_OTHER_KEY", key.read_text())
        target = sftp_target("key_file", private_key_file=None, private_key_env="BEOP_TEST_OTHER_KEY", **extra)

    deliver_file("acme-crm", target, csv_file, "k.csv")
    assert (upload_dir / "k.csv").read_bytes() == CSV


def test_two_exports_into_one_directory_both_land(sftp_target, upload_dir, csv_file, tmp_path):
    other = tmp_path / "other.csv"
    other.write_bytes(b"email\r\nother@example.com\r\n")
    deliver_file("export-a", sftp_target(), csv_file, "20261126_crm-optin_a_1.csv")
    deliver_file("export-b", sftp_target("key_file"), other, "20261126_crm-optin_b_2.csv")
    assert _names(upload_dir) == ["20261126_crm-optin_a_1.csv", "20261126_crm-optin_b_2.csv"]
    assert (upload_dir / "20261126_crm-optin_b_2.csv").read_bytes() == other.read_bytes()


def test_redelivery_of_the_same_name_replaces_it(sftp_target, upload_dir, csv_file, tmp_path):
    deliver_file("acme-crm", sftp_target(), csv_file, "same.csv")
    newer = tmp_path / "newer.csv"
    newer.write_bytes(b"email\r\nnewer@example.com\r\n")
    deliver_file("acme-crm", sftp_target(), newer, "same.csv")
    assert _names(upload_dir) == ["same.csv"]
    assert (upload_dir / "same.csv").read_bytes() == newer.read_bytes()


def test_an_empty_file_is_delivered(sftp_target, upload_dir, tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    assert deliver_file("acme-crm", sftp_target(), empty, "empty.csv").bytes == 0
    assert (upload_dir / "empty.csv").read_bytes() == b""


def test_insecure_opt_out_connects_without_known_hosts_and_warns(sftp_target, upload_dir, csv_file, caplog):
    target = sftp_target(insecure_skip_host_key_check=True)
    assert target.known_hosts_file is None
    deliver_file("acme-crm", target, csv_file, "f.csv")
    assert (upload_dir / "f.csv").read_bytes() == CSV
    assert "NOT verified" in caplog.text


def test_read_back_verification_is_offered_and_named_in_the_receipt(sftp_target, upload_dir, big_file):
    receipt = deliver_file("acme-crm", sftp_target(), big_file, "big.csv", read_back=True)
    assert receipt.verified_from == "read-back"
    assert (upload_dir / "big.csv").read_bytes() == big_file.read_bytes()


OWN = "20261126_crm-participation_my-export_{}.csv"


def test_leftovers_named_by_the_caller_are_removed_only_after_success_and_nothing_else(
    sshd_renames_denied, sftp_target, upload_dir, csv_file
):
    """A crash leaves `.part` files; the caller (the IO manager, from the ledger) names the earlier
    attempts' temporary names. They go once a delivery has succeeded, never on a failed one; a
    `.part` nobody named (another delivery under way) and the customer's files stay; a named file
    that is not there is no error. The directory is never listed for it."""
    named = f".{OWN.format('0b6f3c1e-8d2a-4f4b-9a51-3c2d1e0f9a8b')}.part"
    concurrent = f".{OWN.format('1c7f3c1e-8d2a-4f4b-9a51-3c2d1e0f9a8c')}.part"  # another delivery, under way
    theirs = {".report.csv.part": b"customer's", "20261126_crm-participation_x.csv": b"customer's too"}
    leftovers = [named, f".{OWN.format('2d7f3c1e-8d2a-4f4b-9a51-3c2d1e0f9a8d')}.part", "notes.txt"]

    failing = sftp_target(server=sshd_renames_denied, directory=sshd_renames_denied.make_dir())
    failing_dir = Path(failing.directory)
    for directory in (upload_dir, failing_dir):
        for name, content in [(named, b"partial"), (concurrent, b"being written"), *theirs.items()]:
            (directory / name).write_bytes(content)
    with pytest.raises(PermanentDeliveryError):  # every rename refused: not delivered, nothing removed
        deliver_file("acme-crm", failing, csv_file, "f.csv", leftovers=leftovers)
    assert _names(failing_dir) == sorted([named, concurrent, *theirs])

    receipt = deliver_file("acme-crm", sftp_target(), csv_file, "f.csv", leftovers=leftovers)
    assert receipt.leftovers_removed == (named,)
    assert _names(upload_dir) == sorted(["f.csv", concurrent, *theirs])
    for name, content in theirs.items():
        assert (upload_dir / name).read_bytes() == content
    assert (upload_dir / concurrent).read_bytes() == b"being written"


def test_removed_temp_files_are_recorded_in_the_ledger(tmp_path):
    ledger.record_removed_temp_files("acme-crm", "sftp://u@h:22/in", (".a.part", ".b.part"), run_id="r1", root=tmp_path)
    ledger.record_removed_temp_files("acme-crm", "sftp://u@h:22/in", (), root=tmp_path)  # nothing: no row
    with sqlite3.connect(ledger.ledger_file(tmp_path)) as con:
        rows = con.execute("SELECT export_id, destination, name, run_id FROM removed_temp_files ORDER BY id").fetchall()
    assert rows == [
        ("acme-crm", "sftp://u@h:22/in", ".a.part", "r1"),
        ("acme-crm", "sftp://u@h:22/in", ".b.part", "r1"),
    ]


# -- permanent failures: fail at once, say what to fix, leave nothing --------------------------------


def test_wrong_password_fails_at_once_without_revealing_it(sshd, sftp_target, upload_dir, csv_file, monkeypatch):
    target = sftp_target()
    monkeypatch.setenv(SFTP_PASSWORD_ENV, "WRONG-pw-Zq81-distinctive")
    with pytest.raises(PermanentDeliveryError) as caught:
        deliver_file("acme-crm", target, csv_file, "f.csv")
    message = str(caught.value)
    assert "acme-crm" in message and f"127.0.0.1:{sshd.port}" in message
    assert "authentication" in message and SFTP_PASSWORD_ENV in message
    assert caught.value.attempts == 1 and caught.value.step == "auth"
    for secret in ("WRONG-pw-Zq81-distinctive", sshd.password):
        assert secret not in _full_text(caught.value)
    assert _names(upload_dir) == []


def test_unauthorized_key_fails_at_once(sftp_target, csv_file, tmp_path, monkeypatch):
    key = tmp_path / "stranger"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    target = sftp_target("key_env")
    monkeypatch.setenv(SFTP_KEY_ENV, key.read_text())
    with pytest.raises(PermanentDeliveryError, match="authentication") as caught:
        deliver_file("acme-crm", target, csv_file, "f.csv")
    assert caught.value.attempts == 1
    assert "PRIVATE KEY" not in _full_text(caught.value)
    assert key.read_text().splitlines()[1] not in _full_text(caught.value)


def test_missing_credentials_are_named(sftp_target, csv_file, monkeypatch, tmp_path):
    target = sftp_target()
    monkeypatch.delenv(SFTP_PASSWORD_ENV)
    with pytest.raises(PermanentDeliveryError, match=SFTP_PASSWORD_ENV):
        deliver_file("acme-crm", target, csv_file, "f.csv")
    missing_key = sftp_target("key_file", private_key_file=str(tmp_path / "nope"))
    with pytest.raises(PermanentDeliveryError, match="cannot load the private key file .*nope"):
        deliver_file("acme-crm", missing_key, csv_file, "f.csv")
    garbage = tmp_path / "garbage"
    garbage.write_text("not a key\n")
    with pytest.raises(PermanentDeliveryError, match="cannot load"):
        deliver_file("acme-crm", sftp_target("key_file", private_key_file=str(garbage)), csv_file, "f.csv")


def test_unknown_host_key_is_rejected(sshd, sftp_target, upload_dir, csv_file, tmp_path):
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    with pytest.raises(PermanentDeliveryError, match="not in known_hosts") as caught:
        deliver_file("acme-crm", sftp_target(known_hosts_file=str(empty)), csv_file, "f.csv")
    assert f"127.0.0.1:{sshd.port}" in str(caught.value) and caught.value.attempts == 1
    assert caught.value.step == "host key"
    assert _names(upload_dir) == []


def test_changed_host_key_is_rejected(sshd, sftp_target, upload_dir, csv_file, tmp_path):
    changed = sshd.write_known_hosts(tmp_path / "known_hosts", changed=True)
    with pytest.raises(PermanentDeliveryError, match="does not match") as caught:
        deliver_file("acme-crm", sftp_target(known_hosts_file=str(changed)), csv_file, "f.csv")
    assert "acme-crm" in str(caught.value) and caught.value.attempts == 1
    assert _names(upload_dir) == []


def test_missing_known_hosts_file_is_named(sftp_target, csv_file, tmp_path):
    with pytest.raises(PermanentDeliveryError, match="known_hosts_file .*absent"):
        deliver_file("acme-crm", sftp_target(known_hosts_file=str(tmp_path / "absent")), csv_file, "f.csv")


def test_missing_directory_is_named_and_never_created(sshd, sftp_target, upload_dir, csv_file):
    missing = upload_dir / "not" / "there"
    with pytest.raises(PermanentDeliveryError) as caught:
        deliver_file("acme-crm", sftp_target(directory=missing), csv_file, "f.csv")
    message = str(caught.value)
    assert f"127.0.0.1:{sshd.port}" in message and str(missing) in message and "does not exist" in message
    assert caught.value.attempts == 1 and caught.value.step == "stat directory"
    assert not (upload_dir / "not").exists()


def test_directory_without_write_permission(sshd, sftp_target, csv_file):
    read_only = sshd.make_dir(writable=False)
    with pytest.raises(PermanentDeliveryError, match="permission denied") as caught:
        deliver_file("acme-crm", sftp_target(directory=read_only), csv_file, "f.csv")
    assert str(read_only) in str(caught.value) and caught.value.attempts == 1
    assert caught.value.step == "open" and "write access" in str(caught.value)  # creating the file is refused
    assert _names(read_only) == []


def test_bad_inputs_fail_before_connecting(sftp_target, csv_file, tmp_path):
    with pytest.raises(PermanentDeliveryError, match="invalid file name"):
        deliver_file("acme-crm", sftp_target(), csv_file, "../escape.csv")
    with pytest.raises(PermanentDeliveryError, match="cannot read the local file"):
        deliver_file("acme-crm", sftp_target(), tmp_path / "never-built.csv", "f.csv")


def test_download_and_list_report_missing_things(sftp_target, upload_dir, tmp_path):
    with pytest.raises(PermanentDeliveryError, match="no such file"):
        download_file("acme-crm", sftp_target(), "absent.csv", tmp_path / "x")
    with pytest.raises(PermanentDeliveryError, match="does not exist"):
        list_files("acme-crm", sftp_target(directory=upload_dir / "absent"))


# -- transient failures: retried, bounded ------------------------------------------------------------


def test_server_down_is_retried_then_reported(private_sshd, sftp_target, csv_file, quick_retries):
    target = sftp_target(server=private_sshd)
    private_sshd.stop()
    with pytest.raises(TransientDeliveryError, match="connection refused") as caught:
        deliver_file("acme-crm", target, csv_file, "f.csv")
    assert caught.value.attempts == quick_retries and caught.value.step == "connect"
    assert f"127.0.0.1:{private_sshd.port}" in str(caught.value)


def test_server_back_during_retries_delivers(private_sshd, sftp_target, csv_file, monkeypatch):
    retry = RetryPolicy(attempts=6, backoff_s=0.3)
    target = sftp_target(server=private_sshd)
    private_sshd.stop()
    restart = threading.Timer(0.1, private_sshd.start)
    restart.start()
    try:
        receipt = deliver_file("acme-crm", target, csv_file, "f.csv", retry=retry)
    finally:
        restart.join()
    assert receipt.attempts >= 2
    assert (Path(target.directory) / "f.csv").read_bytes() == CSV


@contextmanager
def _when_upload_under_way(directory: Path, action, min_bytes: int = 1 << 20):
    """Run `action` once, in a thread, as soon as a `.part` file in `directory` holds `min_bytes`."""
    fired, stop = threading.Event(), threading.Event()

    def watch() -> None:
        while not stop.is_set():
            for part in directory.glob(".*.part"):
                try:
                    if part.stat().st_size >= min_bytes:
                        action()
                        fired.set()
                        return
                except FileNotFoundError:
                    pass
            time.sleep(0.001)

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    try:
        yield fired
    finally:
        stop.set()
        thread.join(30)


@pytest.fixture
def big_file(tmp_path: Path) -> Path:
    path = tmp_path / "big.csv"
    path.write_bytes(os.urandom(1 << 20) * 64)
    return path


def test_server_killed_mid_upload_is_retried_and_nothing_partial_is_left(
    private_sshd, sftp_target, big_file, monkeypatch
):
    retry = RetryPolicy(attempts=5, backoff_s=0.1)
    target = sftp_target(server=private_sshd)
    directory = Path(target.directory)

    def restart() -> None:
        private_sshd.stop()
        private_sshd.start()

    with _when_upload_under_way(directory, restart) as fired:
        receipt = deliver_file("acme-crm", target, big_file, "big.csv", retry=retry)
    assert fired.is_set() and receipt.attempts >= 2
    assert _names(directory) == ["big.csv"]
    assert (directory / "big.csv").read_bytes() == big_file.read_bytes()


def test_server_stalled_mid_upload_times_out_and_is_retried(private_sshd, sftp_target, big_file, monkeypatch):
    """The connection's sshd processes are frozen (SIGSTOP) during the upload: the channel timeout
    fails that attempt, and the retry, on a new connection, delivers the whole file."""
    retry = RetryPolicy(attempts=3, backoff_s=0.1)
    target = sftp_target(server=private_sshd)
    directory = Path(target.directory)
    frozen: list[int] = []

    def freeze() -> None:
        frozen.extend(private_sshd.session_pids())
        for pid in frozen:
            os.kill(pid, signal.SIGSTOP)

    try:
        with _when_upload_under_way(directory, freeze) as fired:
            receipt = deliver_file("acme-crm", target, big_file, "big.csv", timeout=2.0, retry=retry)
    finally:
        for pid in frozen:  # never let a stale session resume
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    assert fired.is_set() and frozen and receipt.attempts >= 2
    assert _names(directory) == ["big.csv"]
    assert (directory / "big.csv").read_bytes() == big_file.read_bytes()


@pytest.mark.parametrize("banner", [b"", b"SSH-2.0-OpenSSH_9.2\r\n"], ids=["silent", "banner-then-silent"])
def test_server_that_accepts_and_stalls_times_out(banner, csv_file, sftp_target, monkeypatch):
    retry = RetryPolicy(attempts=2, backoff_s=0.01)
    held: list[socket.socket] = []
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]

        def accept_forever() -> None:
            try:
                while True:
                    conn, _ = listener.accept()
                    held.append(conn)
                    conn.sendall(banner)
            except OSError:
                return  # the listener was closed

        threading.Thread(target=accept_forever, daemon=True).start()
        target = sftp_target(port=port, known_hosts_file=None, insecure_skip_host_key_check=True)
        with pytest.raises(TransientDeliveryError, match="within 1 s") as caught:
            deliver_file("acme-crm", target, csv_file, "f.csv", timeout=1.0, retry=retry)
    for conn in held:
        conn.close()
    assert caught.value.attempts == 2 and len(held) == 2
    assert f"127.0.0.1:{port}" in str(caught.value)


# -- pre-flight ---------------------------------------------------------------------------------------


def test_check_target_reports_what_it_checked(sshd, sftp_target, upload_dir):
    reported: list[str] = []
    lines = check_target("acme-crm", sftp_target("key_file"), report=reported.append)
    assert reported == lines[:-1]  # each step as it was done; the last line sums up
    steps = [line.split(":", 1)[0] for line in lines[:-1]]
    assert steps == [
        "connect",
        "host key",
        "auth",
        "stat directory",
        "write",
        "verify",
        "rename",
        "remove temp",
    ]
    assert "write: 4 MiB probe" in lines[4] and "every one acknowledged OK" in lines[4]
    assert "rename: deliveries use posix-rename" in lines[6]
    text = "\n".join(lines)
    assert "host key ssh-ed25519" in text and "matches" in text
    assert "authenticated as 'beoptest'" in text
    assert f"directory {upload_dir} exists" in text and "writable" in text
    assert _names(upload_dir) == []  # the probe is gone


def test_check_target_failures(sshd, sftp_target, upload_dir, monkeypatch, tmp_path):
    with pytest.raises(PermanentDeliveryError, match="does not exist"):
        check_target("acme-crm", sftp_target(directory=upload_dir / "absent"))
    read_only = sshd.make_dir(writable=False)
    with pytest.raises(PermanentDeliveryError, match="permission denied"):
        check_target("acme-crm", sftp_target(directory=read_only))
    assert _names(read_only) == []
    target = sftp_target()
    monkeypatch.setenv(SFTP_PASSWORD_ENV, "WRONG-pw-Zq81-distinctive")
    with pytest.raises(PermanentDeliveryError, match="authentication") as caught:
        check_target("acme-crm", target)
    assert "WRONG-pw-Zq81-distinctive" not in _full_text(caught.value)
    changed = sshd.write_known_hosts(tmp_path / "kh", changed=True)
    with pytest.raises(DeliveryError, match="does not match"):
        check_target("acme-crm", sftp_target(known_hosts_file=str(changed)))


# -- write request size: what the server announces, what it is known for, and the fall-back -------------


def test_request_sizes_follow_the_server(sshd, proftpd, sftp_target, monkeypatch):
    """OpenSSH announces 261,120 bytes (limits@openssh.com): 252 KiB; ProFTPD announces nothing but
    takes 512 KiB packets: 128 KiB."""
    lines = check_target("acme-crm", sftp_target())
    assert "requests of 252 KiB" in lines[4]
    monkeypatch.setenv("BEOP_TEST_PROFTPD_PASSWORD", proftpd.password)
    on_proftpd = sftp_target(
        server=proftpd, directory=str(proftpd.make_dir()), password_env="BEOP_TEST_PROFTPD_PASSWORD"
    )
    lines = check_target("acme-crm", on_proftpd)
    assert "requests of 128 KiB" in lines[4] and "sha256 check-file" in lines[5]


def test_a_failed_write_of_an_unannounced_size_falls_back_to_32_kib(
    faulty_sftp, sftp_target, big_file, quick_retries, monkeypatch, caplog
):
    """A server that takes no 128 KiB writes (here: its first refused write) gets 32 KiB on the next
    attempt. Only the size the server is "known for" is forced here; the server and its fault are real."""
    real = sftp_module.server_features
    sizes: list[int] = []

    def known_for_128_kib(client, *args):
        features = replace(real(client, *args), write_request=128 * 1024, write_request_announced=False)
        return features

    class Recording(sftp_protocol.Writes):
        def __init__(self, sftp, handle, request_size, *args):
            sizes.append(request_size)
            super().__init__(sftp, handle, request_size, *args)

    monkeypatch.setattr(sftp_module, "server_features", known_for_128_kib)
    monkeypatch.setattr(sftp_module, "Writes", Recording)
    directory = faulty_sftp.make_dir()
    monkeypatch.setenv("BEOP_TEST_FAULTY_PASSWORD", faulty_sftp.password)
    target = sftp_target(server=faulty_sftp, directory=str(directory), password_env="BEOP_TEST_FAULTY_PASSWORD")
    faulty_sftp.fail_write_at(2**20, times=1)
    receipt = deliver_file("acme-crm", target, big_file, "big.csv")
    assert receipt.attempts == 2 and sizes == [128 * 1024, 32 * 1024]
    assert "the next attempt uses 32 KiB" in caplog.text
    assert (directory / "big.csv").read_bytes() == big_file.read_bytes()


def test_a_server_hash_that_differs_from_the_file_built_fails_at_verify(
    proftpd, sftp_target, big_file, quick_retries, monkeypatch
):
    """ProFTPD's sha256 of the temporary file is really compared: if the file built hashed otherwise
    (here its local hash is made wrong), no attempt renames, and nothing is left."""
    monkeypatch.setattr(sftp_protocol._BackgroundHash, "hexdigest", lambda self: "0" * 64)
    monkeypatch.setenv("BEOP_TEST_PROFTPD_PASSWORD", proftpd.password)
    directory = proftpd.make_dir()
    target = sftp_target(server=proftpd, directory=str(directory), password_env="BEOP_TEST_PROFTPD_PASSWORD")
    with pytest.raises(TransientDeliveryError) as caught:
        deliver_file("acme-crm", target, big_file, "big.csv")
    assert caught.value.step == "verify" and caught.value.attempts == quick_retries
    assert "the server's sha256" in str(caught.value) and "differs from the file built" in str(caught.value)
    assert _names(directory) == []
