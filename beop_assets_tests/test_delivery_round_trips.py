"""Round trips of an SFTP delivery, counted through a delay proxy (fixtures/delay_proxy.py): customers'
servers are 20-200 ms away, so a wait saved is worth more than CPU. Counting, not timing: the count
does not depend on the delay or the machine's load."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from beop_assets.demo.sshd import LocalSshd
from beop_assets_tests.fixtures.delay_proxy import DelayProxy, sftp_target_behind
from beop_assets_tests.transports import deliver_file

# Measured (bench/round_trips.py, bench/README.md): the SSH handshake and authentication take 6, the
# channel and the SFTP version exchange 2, the delivery itself 3 (open, writes with close and stat,
# rename). It was 20 before, and 20 more per 2,000 names in the directory. A loaded machine can split one
# reply across two turns of the proxy's count: the bound leaves room for that, far below the old 20.
SFTP_DELIVERY_ROUND_TRIPS = 11
JITTER = 2


@pytest.fixture
def proxied(sshd: LocalSshd, tmp_path: Path):
    with DelayProxy(sshd.port, 0.02) as proxy:
        yield proxy, lambda directory: sftp_target_behind(proxy, sshd, directory, tmp_path)


def _name() -> str:
    return f"20261126_crm-participation_acme_{uuid.uuid4()}.csv"


def test_an_sftp_delivery_waits_no_more_round_trips_than_measured(sshd, proxied, tmp_path):
    proxy, target = proxied
    built = tmp_path / "built.csv"
    built.write_bytes(os.urandom(1_000_000))
    directory = sshd.make_dir()
    proxy.reset()
    receipt = deliver_file("acme-crm", target(directory), built, _name())
    assert (directory / receipt.file_name).read_bytes() == built.read_bytes()
    assert proxy.turns <= SFTP_DELIVERY_ROUND_TRIPS + JITTER, f"{proxy.turns} round trips"


def test_a_full_directory_costs_no_more_round_trips(sshd, proxied, tmp_path):
    """The directory is never listed: a folder holding years of files costs nothing more."""
    proxy, target = proxied
    built = tmp_path / "built.csv"
    built.write_bytes(b"a,b\r\n1,2\r\n")
    empty, full = sshd.make_dir(), sshd.make_dir()
    for n in range(1000):
        (full / f"20250101_crm-participation_old_{n:06d}.csv").write_bytes(b"x")
    counts = []
    for directory in (empty, full):
        proxy.reset()
        deliver_file("acme-crm", target(directory), built, _name())
        counts.append(proxy.turns)
    assert abs(counts[0] - counts[1]) <= JITTER and max(counts) <= SFTP_DELIVERY_ROUND_TRIPS + JITTER, counts
