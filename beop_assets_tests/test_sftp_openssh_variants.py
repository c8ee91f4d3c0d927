"""SFTP delivery on OpenSSH set-ups customers have: requests denied by the SFTP server's `-P` list,
a write-only drop directory, a chroot. Each is a real sshd (fixtures/sshd.py), never a mock.

Each set-up either delivers the built bytes under the final name with nothing else left behind, or
fails naming the step that cannot work and what to fix (and `beop-exports check` says the same).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from beop_assets.delivery.errors import PermanentDeliveryError
from beop_assets_tests.transports import check_target, deliver_file, list_files

pytestmark = pytest.mark.timeout(120)

NAME = "20261126_crm-participation_my-export_0b6f3c1e-8d2a-4f4b-9a51-3c2d1e0f9a8b.csv"


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 6 MB built file: several hundred pipelined write requests."""
    path = tmp_path_factory.mktemp("built") / "export.csv"
    path.write_bytes(os.urandom(6 * 10**6 + 12345))
    return path


def _names(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


# -- finding 3: posix-rename denied, rename allowed ----------------------------------------------------


def test_posix_rename_denied_delivers_with_plain_rename(sshd_posix_rename_denied, sftp_target, built):
    server = sshd_posix_rename_denied
    directory = server.make_dir()
    receipt = deliver_file("acme-crm", sftp_target(server=server, directory=directory), built, NAME)
    assert receipt.attempts == 1 and receipt.bytes == built.stat().st_size
    assert _names(directory) == [NAME]
    assert (directory / NAME).read_bytes() == built.read_bytes()


def test_posix_rename_denied_redelivery_of_a_name_replaces_it(sshd_posix_rename_denied, sftp_target, built, tmp_path):
    server = sshd_posix_rename_denied
    directory = server.make_dir()
    target = sftp_target(server=server, directory=directory)
    deliver_file("acme-crm", target, built, NAME)
    newer = tmp_path / "newer.csv"
    newer.write_bytes(b"email\r\nnewer@example.com\r\n")
    deliver_file("acme-crm", target, newer, NAME)
    assert _names(directory) == [NAME]
    assert (directory / NAME).read_bytes() == newer.read_bytes()


def test_posix_rename_denied_check_passes_and_says_which_rename(sshd_posix_rename_denied, sftp_target):
    server = sshd_posix_rename_denied
    directory = server.make_dir()
    lines = check_target("acme-crm", sftp_target(server=server, directory=directory))
    text = "\n".join(lines)
    # OpenSSH leaves a denied request out of its extension list; another server may list it and refuse it.
    assert "posix-rename is not offered by this server; deliveries use plain rename" in text
    assert "write: 4 MiB probe" in text and "acknowledged OK" in text
    assert _names(directory) == []


# -- every rename denied -------------------------------------------------------------------------------


def test_all_renames_denied_fails_at_the_rename_step_and_leaves_nothing(sshd_renames_denied, sftp_target, built):
    server = sshd_renames_denied
    directory = server.make_dir()
    with pytest.raises(PermanentDeliveryError) as caught:
        deliver_file("acme-crm", sftp_target(server=server, directory=directory), built, NAME)
    error = caught.value
    assert error.step == "rename" and error.attempts == 1
    message = str(error)
    assert "rename refused by the server" in message and "Permission denied" in message
    assert f"127.0.0.1:{server.port}" in message and str(directory) in message
    assert "allow 'beoptest' to rename" in message  # what to fix
    assert "write access" not in message  # writing was allowed: the message must not send anyone there
    assert _names(directory) == []  # the temporary file was removed


def test_all_renames_denied_check_fails_naming_the_rename_step(sshd_renames_denied, sftp_target):
    server = sshd_renames_denied
    directory = server.make_dir()
    reported: list[str] = []
    with pytest.raises(PermanentDeliveryError) as caught:
        check_target("acme-crm", sftp_target(server=server, directory=directory), report=reported.append)
    assert caught.value.step == "rename" and "rename refused by the server" in str(caught.value)
    assert any(line.startswith("write: ") for line in reported)  # it got that far: the write works
    assert _names(directory) == []


# -- finding 6: a write-only drop directory (0733) -----------------------------------------------------


def test_write_only_directory_listing_is_refused_with_a_message_about_listing(sshd, sftp_target):
    """Finding 6: the listing is what is refused, so the message is about read (list) access, not write."""
    drop = sshd.make_dir(writable=False, mode=0o733)
    with pytest.raises(PermanentDeliveryError) as caught:
        list_files("acme-crm", sftp_target(directory=drop))
    message = str(caught.value)
    assert "listing" in message and "read (list) access" in message and str(drop) in message
    assert "write access" not in message
    assert caught.value.step == "list"


def test_write_only_directory_delivers_and_removes_named_leftovers_without_listing(sshd, sftp_target, built):
    """Leftovers are removed by the names the caller gives, so a directory that may not be listed is
    cleaned up like any other."""
    drop = sshd.make_dir(writable=False, mode=0o733)
    leftover = ".20261126_crm-participation_x_crashed.csv.part"
    (drop / leftover).write_bytes(b"half")
    os.chown(drop / leftover, sshd.user.pw_uid, sshd.user.pw_gid)
    receipt = deliver_file("acme-crm", sftp_target(directory=drop), built, NAME, leftovers=[leftover])
    assert (drop / NAME).read_bytes() == built.read_bytes()
    assert _names(drop) == [NAME] and receipt.leftovers_removed == (leftover,)


def test_write_only_directory_check_passes(sshd, sftp_target):
    drop = sshd.make_dir(writable=False, mode=0o733)
    lines = check_target("acme-crm", sftp_target(directory=drop))
    assert not any(line.startswith("list:") for line in lines), lines  # a delivery never lists
    assert lines[-1].startswith("a delivery would succeed")
    assert _names(drop) == []


# -- a chroot ------------------------------------------------------------------------------------------


def test_chroot_delivers_under_the_path_the_user_sees(sshd_chroot, sftp_target, built, tmp_path):
    server = sshd_chroot
    directory = server.make_dir()
    target = sftp_target(server=server, directory=directory)
    assert target.directory == f"/home/{server.username}/{directory.name}"  # inside the chroot
    receipt = deliver_file("acme-crm", target, built, NAME)
    assert receipt.facts["remote_path"] == f"{target.directory}/{NAME}"
    assert _names(directory) == [NAME]
    assert (directory / NAME).read_bytes() == built.read_bytes()
    assert list_files("acme-crm", target) == [NAME]
    assert check_target("acme-crm", target)[-1].startswith("a delivery would succeed")
