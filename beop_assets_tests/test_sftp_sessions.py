"""A batched run's SFTP deliveries share their logins (issue 24): against the real OpenSSH sshd, exports
to one server with the same credentials reuse one session for their uploads and read-backs, and sharing
never lends one export's login to another export's credentials, nor hands out a session that failed or
that the server dropped.

Logins are counted where they happen, in sshd's own log ("Accepted password/publickey for ...").
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from beop_assets.delivery.errors import PermanentDeliveryError
from beop_assets.delivery.sftp import SftpOptions, SftpTransport
from beop_assets.delivery.sftp_connection import SessionPool


def logins(server) -> int:
    return server.log_text().count("Accepted ")


@pytest.fixture
def built(tmp_path: Path) -> Path:
    path = tmp_path / "built.csv"
    path.write_bytes(b"participation_id,answer\n" + b"p_1,yes\n" * 1000)
    return path


def test_deliveries_to_one_server_share_one_login_for_uploads_and_read_backs(sshd, sftp_target, built, tmp_path):
    pool = SessionPool()
    targets = {f"x{n}": sftp_target("password", directory=sshd.make_dir()) for n in range(3)}
    before = logins(sshd)
    with pool:
        for export_id, target in targets.items():
            transport = SftpTransport(export_id, target, SftpOptions(sessions=pool))
            receipt = transport.deliver(built, f"{export_id}.csv")
            assert receipt.attempts == 1
            assert transport.download(f"{export_id}.csv", tmp_path / f"{export_id}.back") == built.stat().st_size
    assert (tmp_path / "x2.back").read_bytes() == built.read_bytes()
    assert logins(sshd) - before == 1
    assert (pool.opened, pool.reused) == (1, 5)

    # Without a pool (the pre-flight, the CLI's single deliveries) every call logs in on its own.
    before = logins(sshd)
    SftpTransport("x0", targets["x0"]).deliver(built, "again.csv")
    SftpTransport("x0", targets["x0"]).download("again.csv", tmp_path / "again.back")
    assert logins(sshd) - before == 2


def test_an_export_with_other_credentials_never_rides_on_a_pooled_login(sshd, sftp_target, built, monkeypatch):
    pool = SessionPool()
    good = sftp_target("password", directory=sshd.make_dir())
    SftpTransport("good", good, SftpOptions(sessions=pool)).deliver(built, "good.csv")
    assert pool.opened == 1

    # Same host and user, a wrong password: refused by the server, not let in on the pooled session.
    monkeypatch.setenv("BEOP_TEST_WRONG_PASSWORD", "not-the-password")
    wrong_dir = sshd.make_dir()
    wrong = good.model_copy(update={"password_env": "BEOP_TEST_WRONG_PASSWORD", "directory": str(wrong_dir)})
    with pytest.raises(PermanentDeliveryError) as refused:
        SftpTransport("wrong", wrong, SftpOptions(sessions=pool)).deliver(built, "wrong.csv")
    assert refused.value.step == "auth"
    assert not any(wrong_dir.iterdir())

    # Same server and user with a key of its own: a login of its own, and it works.
    keyed = sftp_target("key_file", directory=sshd.make_dir())
    SftpTransport("keyed", keyed, SftpOptions(sessions=pool)).deliver(built, "keyed.csv")
    assert pool.opened == 2
    pool.close()


def test_a_session_whose_delivery_failed_is_closed_not_handed_out_again(sshd, sftp_target, built):
    pool = SessionPool()
    target = sftp_target("password", directory=sshd.make_dir())
    with pytest.raises(PermanentDeliveryError):
        SftpTransport(
            "gone", target.model_copy(update={"directory": "/no/such/dir"}), SftpOptions(sessions=pool)
        ).deliver(built, "gone.csv")
    SftpTransport("next", target, SftpOptions(sessions=pool)).deliver(built, "next.csv")
    assert (pool.opened, pool.reused) == (2, 0)
    pool.close()


def test_a_pooled_session_the_server_dropped_is_replaced_without_a_failed_attempt(private_sshd, sftp_target, built):
    pool = SessionPool()
    target = sftp_target("password", server=private_sshd)
    SftpTransport("first", target, SftpOptions(sessions=pool)).deliver(built, "first.csv")
    for pid in private_sshd.session_pids():  # the server ends the idle connection
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while private_sshd.session_pids() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.2)  # paramiko's reader thread sees the EOF

    receipt = SftpTransport("second", target, SftpOptions(sessions=pool)).deliver(built, "second.csv")
    assert receipt.attempts == 1
    assert (pool.opened, pool.reused) == (2, 0)
    pool.close()


def test_a_pooled_session_idle_too_long_is_not_handed_out(sshd, sftp_target, built):
    pool = SessionPool(idle_s=0.0)
    target = sftp_target("password", directory=sshd.make_dir())
    SftpTransport("a", target, SftpOptions(sessions=pool)).deliver(built, "a.csv")
    time.sleep(0.01)
    SftpTransport("b", target, SftpOptions(sessions=pool)).deliver(built, "b.csv")
    assert (pool.opened, pool.reused) == (2, 0)
    pool.close()
