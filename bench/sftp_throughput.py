"""SFTP delivery throughput against OpenSSH's own `sftp` client, on loopback OpenSSH and ProFTPD.

    .venv/bin/python bench/sftp_throughput.py [--size-mb 77] [--repeats 5] [--in-flight 64]

For each server (LocalSshd: OpenSSH sshd with internal-sftp; LocalProftpd: ProFTPD mod_sftp with its
defaults) and the same incompressible file, alternately:
- `SftpTransport.deliver` (the product's delivery: connect, host key, key auth, directory check, pipelined
  write, verification, rename, leftover cleanup), and, once per repetition, with `read_back=True`;
- OpenSSH's `sftp -b batch -P port -i key ... put FILE DEST` (the anchor), started as a process.
Both are timed wall-clock INCLUDING login. Prints the median MB/s of each (MB = 10**6 bytes), the
ratio (target: >= 1.0x the sftp client on both servers) and what the read-back costs. Every run's
file is compared with the source file on disk afterwards (a fast upload of wrong bytes is no result).
Needs root (both servers switch to their SFTP user).
"""

from __future__ import annotations

import argparse
import logging
import os
import resource
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import openssh_put  # noqa: E402

from beop_assets.delivery.sftp import SftpOptions, SftpTransport  # noqa: E402
from beop_assets.delivery.sftp_protocol import REQUESTS_IN_FLIGHT  # noqa: E402
from beop_assets.demo.sshd import LocalSshd  # noqa: E402
from beop_assets.exports.registry import SftpTarget  # noqa: E402
from beop_assets_tests.fixtures.proftpd import LocalProftpd  # noqa: E402


def _file_name() -> str:
    return f"20261126_crm-participation_bench_{uuid.uuid4()}.csv"


def _same(a: Path, b: Path) -> bool:
    if a.stat().st_size != b.stat().st_size:
        return False
    with a.open("rb") as x, b.open("rb") as y:
        while True:
            left, right = x.read(1 << 22), y.read(1 << 22)
            if left != right:
                return False
            if not left:
                return True


CPU: dict[str, list[float]] = {}


def _timed(fn: Callable[[], object], what: str) -> float:
    """Wall seconds of `fn`; its CPU seconds (this process, all threads, plus child processes) go to CPU."""
    own, children = time.process_time(), resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    fn()
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    child_cpu = (after.ru_utime - children.ru_utime) + (after.ru_stime - children.ru_stime)
    CPU.setdefault(what, []).append(time.process_time() - own + child_cpu)
    return wall


def _sftp_client(server: LocalSshd | LocalProftpd, source: Path, destination: str, scratch: Path) -> None:
    openssh_put(
        source,
        destination,
        host=server.host,
        port=server.port,
        username=server.username,
        key=server.client_key_path,
        known_hosts=server.known_hosts_path,
        scratch=scratch,
    )


def bench_server(
    label: str, server: LocalSshd | LocalProftpd, source: Path, repeats: int, in_flight: int, scratch: Path
) -> dict[str, list[float]]:
    directory = server.make_dir()
    target = SftpTarget(
        host=server.host,
        port=server.port,
        username=server.username,
        directory=str(directory),
        private_key_file=str(server.client_key_path),
        known_hosts_file=str(server.known_hosts_path),
    )
    size = source.stat().st_size
    rates: dict[str, list[float]] = {"product": [], "product read-back": [], "sftp client": []}
    verified = ""

    def ours(read_back: bool) -> None:
        nonlocal verified
        name = _file_name()
        options = SftpOptions(read_back=read_back, requests_in_flight=in_flight)
        receipt = SftpTransport("bench", target, options).deliver(source, name)
        verified = verified or receipt.verified_from
        assert _same(source, directory / name), f"{label}: delivered bytes differ"
        (directory / name).unlink()

    def theirs() -> None:
        name = f"anchor-{uuid.uuid4().hex}.csv"
        _sftp_client(server, source, f"{directory}/{name}", scratch)
        assert _same(source, directory / name), f"{label}: sftp client's bytes differ"
        (directory / name).unlink()

    ours(False)  # warm-up: page cache, first connection
    for _ in range(repeats):
        rates["product"].append(size / 1e6 / _timed(lambda: ours(False), f"{label} product"))
        rates["sftp client"].append(size / 1e6 / _timed(theirs, f"{label} sftp client"))
        rates["product read-back"].append(size / 1e6 / _timed(lambda: ours(True), f"{label} product read-back"))
    rates["verified"] = []  # printed from `verified`
    print(f"{label}: default verification {verified!r}", flush=True)
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=float, default=77.0)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--in-flight", type=int, default=REQUESTS_IN_FLIGHT)
    parser.add_argument("--servers", default="openssh,proftpd")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    scratch = Path(tempfile.mkdtemp(prefix="beop-sftp-bench-"))
    source = scratch / "built.csv"
    size = int(args.size_mb * 1e6)
    with source.open("wb") as out:  # incompressible: SSH compression is off anyway, but be sure
        for done in range(0, size, 1 << 22):
            out.write(os.urandom(min(1 << 22, size - done)))
    print(
        f"file: {size / 1e6:.1f} MB of random bytes; {args.repeats} runs each, alternating; "
        f"requests in flight: {args.in_flight}; load average {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    results = {}
    servers = {"OpenSSH (internal-sftp)": LocalSshd, "ProFTPD mod_sftp": LocalProftpd}
    wanted = {"openssh": "OpenSSH (internal-sftp)", "proftpd": "ProFTPD mod_sftp"}
    try:
        for key in args.servers.split(","):
            label = wanted[key]
            with servers[label]() as server:
                results[label] = bench_server(label, server, source, args.repeats, args.in_flight, scratch)
    finally:
        source.unlink(missing_ok=True)

    print()
    print("median MB/s (best run), and the client's CPU seconds per upload (median; the comparison with the")
    print("sftp client's own CPU time says how a loaded machine will tilt the ratio):")
    print(f"{'server':<26} {'product MB/s':>13} {'sftp client MB/s':>17} {'ratio':>7} {'read-back MB/s':>15}")
    for label, rates in results.items():
        ours = statistics.median(rates["product"])
        theirs = statistics.median(rates["sftp client"])
        back = statistics.median(rates["product read-back"])
        best = f"({max(rates['product']):.0f})"
        print(
            f"{label:<26} {ours:>7.1f} {best:>5} {theirs:>10.1f} ({max(rates['sftp client']):.0f})"
            f" {ours / theirs:>6.2f}x {back:>9.1f} ({max(rates['product read-back']):.0f})"
        )
        cpu = {
            what: statistics.median(CPU[f"{label} {what}"]) for what in ("product", "sftp client", "product read-back")
        }
        print(
            f"{'':<26} CPU s: product {cpu['product']:.2f}, sftp client {cpu['sftp client']:.2f}, "
            f"product read-back {cpu['product read-back']:.2f}"
        )
        print(
            f"{'':<26} runs: product {', '.join(f'{r:.0f}' for r in rates['product'])}; "
            f"sftp {', '.join(f'{r:.0f}' for r in rates['sftp client'])}; "
            f"read-back {', '.join(f'{r:.0f}' for r in rates['product read-back'])}"
        )
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
