"""Round trips and seconds of one delivery to a server `--delay-ms` away (each direction), through a
delay proxy on loopback (beop_assets_tests/fixtures/delay_proxy.py), side by side with an anchor:

- SFTP (OpenSSH sshd): the product's delivery (connect, host key, key auth, open, pipelined writes,
  close, proof, rename) vs OpenSSH's own `sftp` client putting the same file; and the product's again
  into a directory already holding `--folder-files` files (a delivery never lists it).
- GCS (fake-gcs-server): the product's delivery (the look at the live generation, the upload under
  its precondition, the read-back) vs a plain `blob.upload_from_filename`.

A round trip is counted when the client sends again after having received something (the proxy's
count); it does not depend on the delay, the seconds do. Figures: bench/README.md.
"""

from __future__ import annotations

import argparse
import gzip
import json
import logging
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import openssh_put  # noqa: E402
from google.auth.credentials import AnonymousCredentials  # noqa: E402
from google.cloud import storage  # noqa: E402

from beop_assets.delivery.gcs import GcsOptions  # noqa: E402
from beop_assets.delivery.gcs_target import GcsTarget  # noqa: E402
from beop_assets.delivery.sftp_target import SftpTarget  # noqa: E402
from beop_assets.delivery.transport import transport_for  # noqa: E402
from beop_assets.demo.gcs_emulator import GcsEmulator  # noqa: E402
from beop_assets.demo.service_account import rsa_private_key_pem, service_account_info  # noqa: E402
from beop_assets.demo.sshd import LocalSshd  # noqa: E402
from beop_assets_tests.fixtures.delay_proxy import DelayProxy, sftp_target_behind  # noqa: E402

EMULATOR_ENV = "STORAGE_EMULATOR_HOST"


class _EmulatorBehindProxy(GcsEmulator):
    """fake-gcs-server whose announced address (resumable session URLs) is the proxy's, so that every
    request of an upload crosses the delay."""

    external = ""

    @property
    def url(self) -> str:
        return self.external or super().url


def _measure(proxy: DelayProxy, fn: Callable[[], object], repeats: int) -> tuple[int, float]:
    turns, seconds = [], []
    for _ in range(repeats):
        proxy.reset()
        started = time.perf_counter()
        fn()
        seconds.append(time.perf_counter() - started)
        turns.append(proxy.turns)
    return max(turns), statistics.median(seconds)


def _row(what: str, turns: int, seconds: float) -> None:
    print(f"  {what:<58} {turns:>4} round trips {seconds:>7.2f} s", flush=True)


def bench_sftp(delay_s: float, size: int, folder_files: int, repeats: int, scratch: Path) -> None:
    source = scratch / "built.csv"
    source.write_bytes(os.urandom(size))
    with LocalSshd() as server, DelayProxy(server.port, delay_s) as proxy:

        def target(directory: Path) -> SftpTarget:
            return sftp_target_behind(proxy, server, directory, scratch)

        empty, full = server.make_dir(), server.make_dir()
        for n in range(folder_files):
            (full / f"20250101_crm-participation_old_{n:06d}.csv").write_bytes(b"x")

        def product(directory: Path) -> Callable[[], object]:
            transport = transport_for("bench", target(directory))
            return lambda: transport.deliver(source, f"20261126_crm-participation_bench_{uuid.uuid4()}.csv")

        def anchor() -> None:
            openssh_put(
                source,
                f"{empty}/anchor-{uuid.uuid4().hex}.csv",
                host="127.0.0.1",
                port=proxy.port,
                username=server.username,
                key=server.client_key_path,
                known_hosts=target(empty).known_hosts_file or "",
                scratch=scratch,
            )

        print(f"SFTP, {size / 1e6:g} MB file, OpenSSH sshd {delay_s * 1000:g} ms away:")
        _row("product delivery (empty directory)", *_measure(proxy, product(empty), repeats))
        _row(f"product delivery (directory of {folder_files} files)", *_measure(proxy, product(full), repeats))
        _row("OpenSSH sftp client `put` (anchor)", *_measure(proxy, anchor, repeats))


def bench_gcs(delay_s: float, sizes: list[int], repeats: int, scratch: Path) -> None:
    key = scratch / "key.json"
    key.write_text(json.dumps(service_account_info(rsa_private_key_pem(), project_id="bench")))
    emulator = _EmulatorBehindProxy()
    with DelayProxy(emulator.port, delay_s) as proxy:
        emulator.external = f"http://127.0.0.1:{proxy.port}"
        emulator.start()
        previous = os.environ.get(EMULATOR_ENV)
        os.environ[EMULATOR_ENV] = emulator.url
        try:
            emulator.create_bucket("bench")
            target = GcsTarget(bucket="bench", credentials_file=str(key))
            transport = transport_for("bench", target, GcsOptions())
            plain = storage.Client(
                project="bench", credentials=AnonymousCredentials(), client_options={"api_endpoint": emulator.url}
            ).bucket("bench")
            print(f"GCS, fake-gcs-server {delay_s * 1000:g} ms away:")
            for size in sizes:
                source = scratch / f"built-{size}.ndjson.gz"
                source.write_bytes(gzip.compress(os.urandom(size), compresslevel=1))
                mb = f"{source.stat().st_size / 1e6:.1f} MB"
                _row(
                    f"product delivery, {mb} (look, upload, read back)",
                    *_measure(
                        proxy, lambda source=source: transport.deliver(source, f"{uuid.uuid4()}.ndjson.gz"), repeats
                    ),
                )
                _row(
                    f"plain upload_from_filename, {mb} (anchor)",
                    *_measure(
                        proxy,
                        lambda source=source: plain.blob(f"{uuid.uuid4()}.ndjson.gz").upload_from_filename(str(source)),
                        repeats,
                    ),
                )
        finally:
            if previous is None:
                os.environ.pop(EMULATOR_ENV, None)
            else:
                os.environ[EMULATOR_ENV] = previous
            emulator.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--delay-ms", type=float, default=50.0, help="added in each direction")
    parser.add_argument("--sftp-size-mb", type=float, default=1.0)
    parser.add_argument("--folder-files", type=int, default=2000)
    parser.add_argument("--gcs-sizes-mb", default="1,20")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    scratch = Path(tempfile.mkdtemp(prefix="beop-round-trips-"))
    delay = args.delay_ms / 1000
    bench_sftp(delay, int(args.sftp_size_mb * 1e6), args.folder_files, args.repeats, scratch)
    bench_gcs(delay, [int(float(s) * 1e6) for s in args.gcs_sizes_mb.split(",")], args.repeats, scratch)


if __name__ == "__main__":
    main()
