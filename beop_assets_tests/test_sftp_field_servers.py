"""SFTP delivery on the server kinds and faults customers have, each a real server started by a fixture.

- ProFTPD mod_sftp with its defaults (`AllowOverwrite off`: an existing file cannot be reopened).
- A fault server (fixtures/faulty_sftp.py): asyncssh in front of OpenSSH's real `sftp-server`, which
  refuses one write mid-file ("No space left on device"), answers out of order, stalls, or drops the
  connection mid-upload.
- Debian's gesftpserver (behind the same asyncssh front, no fault): another SFTP implementation.
- OpenSSH sshd, for what a crash of the exporting process leaves behind.

Each server's directory is a local folder, so the tests read what landed straight from the disk.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
import traceback
import uuid
from datetime import date
from pathlib import Path
from typing import Protocol

import pytest

import beop_assets
from beop_assets.delivery import ledger
from beop_assets.delivery.errors import DeliveryError, TransientDeliveryError
from beop_assets.delivery.retry import RetryPolicy
from beop_assets.delivery.sftp import temp_name
from beop_assets.demo.sshd import LocalSshd
from beop_assets.exports.file_names import crm_file_name
from beop_assets.exports.registry import SftpTarget
from beop_assets_tests.fixtures.faulty_sftp import NO_SPACE, FaultySftpServer
from beop_assets_tests.fixtures.proftpd import LocalProftpd
from beop_assets_tests.transports import QUICK, check_target, deliver_file

pytestmark = pytest.mark.timeout(180)

PASSWORD_ENV = "BEOP_TEST_FIELD_SFTP_PASSWORD"
HOLE_FILE_SIZE = 5_000_000
HOLE_OFFSET = 4_587_520  # the write refused in the field: 140 requests of 32 KiB in
LARGE_FILE_SIZE = 32 * 2**20  # out-of-order servers hung uploads from ~24 MB on


class SftpServer(Protocol):
    host: str
    port: int
    username: str
    password: str
    client_key_path: Path
    known_hosts_path: Path

    def make_dir(self, name: str | None = None) -> Path: ...


@pytest.fixture
def quick_retries() -> int:
    return QUICK.attempts


def _target(server: SftpServer, directory: Path, monkeypatch: pytest.MonkeyPatch, auth: str = "password") -> SftpTarget:
    if auth == "password":
        monkeypatch.setenv(PASSWORD_ENV, server.password)
        credential = {"password_env": PASSWORD_ENV}
    elif auth == "key_file":
        credential = {"private_key_file": str(server.client_key_path)}
    else:
        raise ValueError(auth)
    return SftpTarget.model_validate(
        dict(
            host=server.host,
            port=server.port,
            username=server.username,
            directory=str(directory),
            known_hosts_file=str(server.known_hosts_path),
            **credential,
        )
    )


def _file_name(name: str = "Field test") -> str:
    return crm_file_name("crm-participation", name, date(2026, 11, 25), uuid.uuid4())


def _built_file(tmp_path: Path, size: int, name: str = "built.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(os.urandom(size))
    return path


def _names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def _no_temp_files(directory: Path) -> bool:
    return not any(name.endswith(".part") for name in _names(directory))


def _full_text(error: BaseException) -> str:
    return "".join(traceback.format_exception(error))


# -- finding 1: a write refused mid-file must never become a holed file under the final name ----------


def test_one_refused_write_fails_the_attempt_and_the_retry_delivers_the_exact_bytes(
    faulty_sftp: FaultySftpServer, monkeypatch, tmp_path, quick_retries, caplog
):
    directory = faulty_sftp.make_dir()
    built = _built_file(tmp_path, HOLE_FILE_SIZE)
    name = _file_name()
    faulty_sftp.fail_write_at(HOLE_OFFSET, times=1)  # a momentary storage error: once

    with caplog.at_level(logging.WARNING):
        receipt = deliver_file("acme-crm", _target(faulty_sftp, directory, monkeypatch), built, name)

    assert len(faulty_sftp.injected) == 1 and "refused the WRITE" in faulty_sftp.injected[0]
    assert receipt.attempts == 2, "the attempt whose write was refused must fail and be retried"
    assert (directory / name).read_bytes() == built.read_bytes()  # no hole of zeros at 4,587,520
    assert _names(directory) == [name] and _no_temp_files(directory)
    first_failure = [
        r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING and NO_SPACE in r.getMessage()
    ]
    assert first_failure, "the failed attempt is logged with the server's own message"
    assert all(": write: " in message for message in first_failure), "and names the step: write"


def test_a_write_refused_on_every_attempt_fails_at_step_write_and_leaves_nothing(
    faulty_sftp: FaultySftpServer, monkeypatch, tmp_path, quick_retries
):
    directory = faulty_sftp.make_dir()
    built = _built_file(tmp_path, HOLE_FILE_SIZE)
    name = _file_name()
    faulty_sftp.fail_write_at(HOLE_OFFSET, times=None)  # the disk stays full

    with pytest.raises(DeliveryError) as caught:
        deliver_file("acme-crm", _target(faulty_sftp, directory, monkeypatch), built, name)

    error = caught.value
    assert isinstance(error, TransientDeliveryError)  # a full disk may be freed: worth the retries
    assert error.step == "write"
    assert NO_SPACE in str(error), str(error)
    assert "acme-crm" in str(error) and faulty_sftp.host in str(error)
    assert error.attempts == quick_retries
    assert len(faulty_sftp.injected) == quick_retries
    assert _names(directory) == [], "neither the final name nor a .part may stay"


def test_check_fails_where_a_delivery_would_a_refused_write(faulty_sftp: FaultySftpServer, monkeypatch):
    """`beop-exports check` writes a multi-megabyte probe, so a server refusing writes fails the check."""
    directory = faulty_sftp.make_dir()
    faulty_sftp.fail_write_at(2 * 2**20, times=None)

    with pytest.raises(DeliveryError) as caught:
        check_target("acme-crm", _target(faulty_sftp, directory, monkeypatch))

    assert caught.value.step == "write" and NO_SPACE in str(caught.value)
    assert faulty_sftp.injected
    assert _names(directory) == []


# -- finding 2: replies out of order (legal in SFTP v3) --------------------------------------------


def test_out_of_order_replies_a_large_upload_completes_at_once(
    faulty_sftp: FaultySftpServer, monkeypatch, tmp_path, quick_retries
):
    directory = faulty_sftp.make_dir()
    built = _built_file(tmp_path, LARGE_FILE_SIZE)
    name = _file_name()
    faulty_sftp.reply_out_of_order(group=16)
    retry = RetryPolicy(attempts=2, backoff_s=0.05)
    target = _target(faulty_sftp, directory, monkeypatch)

    receipt = deliver_file("acme-crm", target, built, name, timeout=10.0, retry=retry)

    assert any("out of order" in line for line in faulty_sftp.injected)
    assert receipt.attempts == 1, "no attempt may time out waiting for a reply it already got"
    assert receipt.duration_s < 10.0
    assert (directory / name).read_bytes() == built.read_bytes()
    assert _names(directory) == [name]

    lines = check_target("acme-crm", target, timeout=10.0)
    assert lines and _names(directory) == [name]  # the probe is gone again


def test_green_end_sftp_server_delivers_and_checks(green_end_sftp: FaultySftpServer, monkeypatch, tmp_path):
    """Debian's gesftpserver: another SFTP implementation. It serves requests on several threads, so some
    replies come out of request order, now and then (the fault server's reordering is the one that
    always does); the front passes them on in the order gesftpserver sent them."""
    directory = green_end_sftp.make_dir()
    built = _built_file(tmp_path, LARGE_FILE_SIZE)
    name = _file_name()
    target = _target(green_end_sftp, directory, monkeypatch, auth="key_file")

    check_target("acme-crm", target, timeout=10.0)
    receipt = deliver_file("acme-crm", target, built, name, timeout=10.0)

    assert receipt.attempts == 1
    assert (directory / name).read_bytes() == built.read_bytes()
    assert _names(directory) == [name]


# -- stalls and drops on the fault server ----------------------------------------------------------


def test_a_server_that_stalls_mid_upload_fails_the_attempt_within_the_timeout(
    faulty_sftp: FaultySftpServer, monkeypatch, tmp_path, quick_retries
):
    directory = faulty_sftp.make_dir()
    built = _built_file(tmp_path, HOLE_FILE_SIZE)
    name = _file_name()
    faulty_sftp.stall_after(2**20, times=None)
    retry = RetryPolicy(attempts=2, backoff_s=0.05)

    started = time.monotonic()
    with pytest.raises(DeliveryError) as caught:
        deliver_file("acme-crm", _target(faulty_sftp, directory, monkeypatch), built, name, timeout=3.0, retry=retry)
    elapsed = time.monotonic() - started

    error = caught.value
    assert isinstance(error, TransientDeliveryError), _full_text(error)
    assert error.step == "write", _full_text(error)
    assert "3 s" in str(error)  # says how long it waited
    assert error.attempts == 2 and len(faulty_sftp.injected) == 2
    # Each attempt gives up once the timeout has passed without an answer (plus connecting, on loopback),
    # not after waiting again for a cleanup on the stalled connection.
    assert elapsed < 2 * (3.0 + 1.5), f"2 attempts with a 3 s timeout took {elapsed:.1f} s"
    assert name not in _names(directory)


def test_a_stall_on_the_first_attempt_is_retried_and_delivers(
    faulty_sftp: FaultySftpServer, monkeypatch, tmp_path, quick_retries
):
    directory = faulty_sftp.make_dir()
    built = _built_file(tmp_path, HOLE_FILE_SIZE)
    name = _file_name()
    faulty_sftp.stall_after(2**20, times=1)

    receipt = deliver_file("acme-crm", _target(faulty_sftp, directory, monkeypatch), built, name, timeout=3.0)

    assert receipt.attempts == 2 and len(faulty_sftp.injected) == 1
    assert (directory / name).read_bytes() == built.read_bytes()
    assert _names(directory) == [name]


def test_a_connection_dropped_mid_upload_is_retried_and_leaves_nothing(
    faulty_sftp: FaultySftpServer, monkeypatch, tmp_path, quick_retries
):
    directory = faulty_sftp.make_dir()
    built = _built_file(tmp_path, HOLE_FILE_SIZE)
    name = _file_name()
    faulty_sftp.drop_after(2**20, times=1)

    receipt = deliver_file("acme-crm", _target(faulty_sftp, directory, monkeypatch), built, name)

    assert receipt.attempts == 2 and len(faulty_sftp.injected) == 1
    assert (directory / name).read_bytes() == built.read_bytes()
    assert _names(directory) == [name]


def test_leftover_of_a_final_failure_on_a_dead_connection_is_removed_by_the_next_delivery(
    faulty_sftp: FaultySftpServer, monkeypatch, tmp_path, quick_retries
):
    """Finding 5, second half: every attempt dies mid-upload, the temporary file cannot be removed on a
    dead connection; the next delivery of that export and day, told its name, removes it."""
    directory = faulty_sftp.make_dir()
    built = _built_file(tmp_path, HOLE_FILE_SIZE)
    target = _target(faulty_sftp, directory, monkeypatch)
    failed_name = _file_name()
    faulty_sftp.drop_after(2**20, times=None)
    with pytest.raises(TransientDeliveryError):
        deliver_file("acme-crm", target, built, failed_name)
    leftovers = [n for n in _names(directory) if n.endswith(".part")]
    assert leftovers == [temp_name(failed_name)], "precondition: the dead connection left the temporary file"

    faulty_sftp.clear_fault()
    name = _file_name()
    receipt = deliver_file("acme-crm", target, built, name, leftovers=[temp_name(failed_name)])

    assert _names(directory) == [name]
    assert sorted(receipt.leftovers_removed) == leftovers


def test_a_lost_rename_reply_is_retried_and_leaves_exactly_one_file(
    faulty_sftp: FaultySftpServer, monkeypatch, tmp_path, quick_retries
):
    """The rename went through but its reply never came: the retry must neither fail on the missing
    `.part` nor leave a second file."""
    directory = faulty_sftp.make_dir()
    built = _built_file(tmp_path, HOLE_FILE_SIZE)
    name = _file_name()
    faulty_sftp.lose_rename_reply(times=1)

    receipt = deliver_file("acme-crm", _target(faulty_sftp, directory, monkeypatch), built, name)

    assert len(faulty_sftp.injected) == 1 and "rename was done" in faulty_sftp.injected[0]
    assert receipt.attempts == 2
    assert _names(directory) == [name]
    assert (directory / name).read_bytes() == built.read_bytes()


def test_a_server_storing_other_bytes_than_it_acknowledged_is_caught_by_read_back(
    faulty_sftp: FaultySftpServer, monkeypatch, tmp_path, quick_retries
):
    """Every write answered OK, the size right, one byte wrong on disk: only a hash sees it. OpenSSH
    offers none, so `read_back=True` hashes the temporary file as the server stored it."""
    directory = faulty_sftp.make_dir()
    built = _built_file(tmp_path, HOLE_FILE_SIZE)
    name = _file_name()
    faulty_sftp.corrupt_write_at(HOLE_OFFSET, times=None)

    with pytest.raises(DeliveryError) as caught:
        deliver_file("acme-crm", _target(faulty_sftp, directory, monkeypatch), built, name, read_back=True)

    assert caught.value.step == "verify", _full_text(caught.value)
    assert len(faulty_sftp.injected) == quick_retries
    assert _names(directory) == [], "a file whose content is not proven never gets its final name"


# -- ProFTPD mod_sftp with its defaults (AllowOverwrite off) -----------------------------------------


@pytest.mark.parametrize("auth", ["password", "key_file"])
def test_proftpd_delivers_the_exact_bytes(proftpd: LocalProftpd, auth, monkeypatch, tmp_path):
    directory = proftpd.make_dir()
    built = _built_file(tmp_path, HOLE_FILE_SIZE)
    name = _file_name()

    receipt = deliver_file("acme-crm", _target(proftpd, directory, monkeypatch, auth=auth), built, name)

    assert receipt.attempts == 1
    assert receipt.facts["remote_path"] == f"{directory}/{name}"
    assert receipt.verified_from == "sha256 check-file"  # ProFTPD hashes the temporary file itself
    assert (directory / name).read_bytes() == built.read_bytes()
    assert _names(directory) == [name]
    assert (directory / name).stat().st_uid == proftpd.user.pw_uid  # written as the SFTP user


def test_proftpd_check_passes_and_leaves_nothing(proftpd: LocalProftpd, monkeypatch):
    directory = proftpd.make_dir()
    lines = check_target("acme-crm", _target(proftpd, directory, monkeypatch))
    assert lines
    assert _names(directory) == []


def test_proftpd_two_exports_into_one_directory_both_land(proftpd: LocalProftpd, monkeypatch, tmp_path):
    directory = proftpd.make_dir()
    target = _target(proftpd, directory, monkeypatch)
    first, second = _built_file(tmp_path, 300_000, "a.csv"), _built_file(tmp_path, 400_000, "b.csv")
    first_name, second_name = _file_name("Export A"), _file_name("Export B")

    deliver_file("acme-a", target, first, first_name)
    deliver_file("acme-b", target, second, second_name)

    assert _names(directory) == sorted([first_name, second_name])
    assert (directory / first_name).read_bytes() == first.read_bytes()
    assert (directory / second_name).read_bytes() == second.read_bytes()


def test_proftpd_redelivery_of_the_same_name_replaces_it(proftpd: LocalProftpd, monkeypatch, tmp_path):
    """A retry inside one run reuses its file name; with AllowOverwrite off the rename must still replace."""
    directory = proftpd.make_dir()
    target = _target(proftpd, directory, monkeypatch)
    name = _file_name()
    deliver_file("acme-crm", target, _built_file(tmp_path, 300_000, "first.csv"), name)
    again = _built_file(tmp_path, 200_000, "again.csv")

    deliver_file("acme-crm", target, again, name)

    assert _names(directory) == [name]
    assert (directory / name).read_bytes() == again.read_bytes()


def test_proftpd_stale_temporary_file_of_an_earlier_attempt_is_replaced(proftpd: LocalProftpd, monkeypatch, tmp_path):
    """The earlier attempt's `.part` is still there: with AllowOverwrite off it cannot be reopened."""
    directory = proftpd.make_dir()
    built = _built_file(tmp_path, HOLE_FILE_SIZE)
    name = _file_name()
    target = _target(proftpd, directory, monkeypatch)
    deliver_file("acme-crm", target, _built_file(tmp_path, 1000, "probe.csv"), name)  # learn the temp name
    (directory / name).rename(directory / f".{name}.part")  # what a dropped first attempt leaves behind

    receipt = deliver_file("acme-crm", target, built, name)

    assert receipt.attempts == 1
    assert (directory / name).read_bytes() == built.read_bytes()
    assert _names(directory) == [name]


def test_proftpd_leftover_temporary_files_of_the_product_are_removed_and_nothing_else(
    proftpd: LocalProftpd, monkeypatch, tmp_path
):
    """The cleanup on ProFTPD: the named leftover goes; the customer's files and another export's upload
    in flight stay."""
    directory = proftpd.make_dir()
    stale = f".{_file_name('Crashed')}.part"
    in_flight = f".{_file_name('Other export')}.part"
    files = {stale: b"half a file", in_flight: b"being written", ".customer.part": b"theirs", "notes.txt": b"keep"}
    for file_name, content in files.items():
        (directory / file_name).write_bytes(content)
        os.chown(directory / file_name, proftpd.user.pw_uid, proftpd.user.pw_gid)
    name = _file_name()

    target = _target(proftpd, directory, monkeypatch)
    receipt = deliver_file("acme-crm", target, _built_file(tmp_path, 1000), name, leftovers=[stale])

    assert receipt.leftovers_removed == (stale,)
    assert _names(directory) == sorted([name, in_flight, ".customer.part", "notes.txt"])
    for file_name in (in_flight, ".customer.part", "notes.txt"):
        assert (directory / file_name).read_bytes() == files[file_name]


def test_proftpd_connection_killed_mid_upload_is_retried_and_delivers(
    private_proftpd: LocalProftpd, monkeypatch, tmp_path, quick_retries
):
    """Finding 4: the session's process dies mid-upload (a crash, a dropped connection); the retry must
    not trip over its own `.part`, which ProFTPD will not let it overwrite."""
    server = private_proftpd
    directory = server.make_dir()
    built = _built_file(tmp_path, LARGE_FILE_SIZE)
    name = _file_name()
    killed: list[int] = []
    stop = threading.Event()

    def kill_once_the_upload_is_under_way() -> None:
        while not stop.is_set():
            for path in directory.glob("*.part"):
                try:
                    if path.stat().st_size >= 2**20:
                        killed.extend(server.kill_sessions())
                        return
                except FileNotFoundError:
                    pass
            time.sleep(0.002)

    watcher = threading.Thread(target=kill_once_the_upload_is_under_way, daemon=True)
    watcher.start()
    try:
        receipt = deliver_file("acme-crm", _target(server, directory, monkeypatch), built, name)
    finally:
        stop.set()
        watcher.join(5)

    assert killed, f"precondition: the first attempt's connection was killed mid-upload\n{server.log_text()}"
    assert receipt.attempts == 2
    assert (directory / name).read_bytes() == built.read_bytes()
    assert _names(directory) == [name], "the first attempt's .part is gone"


# -- finding 5: a kill -9 of the exporting process mid-upload ---------------------------------------

_EXPORTER = """
import sys
from datetime import date
from pathlib import Path
from beop_assets.delivery import ledger
from beop_assets.delivery.transport import transport_for
from beop_assets.exports.registry import SftpTarget
transport = transport_for("acme-crm", SftpTarget.model_validate_json(sys.argv[1]))
built, name, root = Path(sys.argv[2]), sys.argv[3], Path(sys.argv[4])
# As the IO manager does: the attempt and its temporary name are in the ledger before the upload.
ledger.start("acme-crm", "specific", date(2026, 11, 26), name, 0, built.stat().st_size, "", transport.destination(),
             "killed-run", root=root, temp_name=transport.temp_name(name))
transport.deliver(built, name)
"""


def test_leftover_of_a_killed_exporter_is_removed_by_the_next_delivery_and_nothing_else(
    sshd: LocalSshd, monkeypatch, tmp_path
):
    directory = sshd.make_dir()
    target = _target(sshd, directory, monkeypatch)
    built = _built_file(tmp_path, 200 * 2**20)
    killed_name = _file_name()
    code_root = Path(beop_assets.__file__).resolve().parents[1]  # the code under test, old or new
    env = {**os.environ, "PYTHONPATH": str(code_root)}
    env.pop("BEOP_LEDGER_URL", None)
    exporter = subprocess.Popen(
        [sys.executable, "-c", _EXPORTER, target.model_dump_json(), str(built), killed_name, str(tmp_path)],
        env=env,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 30
    leftovers: list[str] = []
    while time.monotonic() < deadline and exporter.poll() is None:
        leftovers = [n for n in _names(directory) if n.endswith(".part")]
        if leftovers and (directory / leftovers[0]).stat().st_size > 0:
            exporter.send_signal(signal.SIGKILL)
            break
        time.sleep(0.002)
    exporter.wait(10)
    assert exporter.returncode == -signal.SIGKILL, (
        f"precondition: the exporter was killed mid-upload ({exporter.returncode}): {exporter.communicate()[1]!r}"
    )
    assert leftovers and killed_name not in _names(directory)

    # A crash minutes ago (younger than any age bound); beside it the customer's own files, and another
    # export's upload in flight.
    night_ago = time.time() - 12 * 3600
    in_flight = f".{_file_name('Other export')}.part"
    foreign = {".customer.part": b"theirs", "notes.txt": b"keep me", in_flight: b"being written"}
    for foreign_name, content in foreign.items():
        (directory / foreign_name).write_bytes(content)
        os.chown(directory / foreign_name, sshd.user.pw_uid, sshd.user.pw_gid)
    for old_name in [".customer.part", "notes.txt"]:
        os.utime(directory / old_name, (night_ago, night_ago))
    foreign_mtimes = {n: (directory / n).stat().st_mtime for n in foreign}

    name = _file_name()
    small = _built_file(tmp_path, 100_000, "tonight.csv")
    named = ledger.leftover_temps("acme-crm", date(2026, 11, 26), root=tmp_path)
    assert named == [temp_name(killed_name)] == leftovers, "the ledger names the killed attempt's temporary file"
    receipt = deliver_file("acme-crm", target, small, name, leftovers=named)

    remaining = _names(directory)
    assert not set(leftovers) & set(remaining), "the killed exporter's temporary file is removed"
    assert sorted(remaining) == sorted([name, *foreign]), "nothing else is ever touched"
    for foreign_name, content in foreign.items():
        assert (directory / foreign_name).read_bytes() == content
        assert (directory / foreign_name).stat().st_mtime == foreign_mtimes[foreign_name]
    assert (directory / name).read_bytes() == small.read_bytes()
    assert sorted(receipt.leftovers_removed) == sorted(leftovers)
