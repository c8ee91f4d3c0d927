"""Reading a Parquet day of the model from GCS, two ways, against the local path (docs/deployment.md,
"What is not distributed yet"): what an export would pay if the warehouse were `gs://`.

    .venv/bin/python bench/warehouse_on_gcs.py                       # a 200,000-participation day
    .venv/bin/python bench/warehouse_on_gcs.py --participations 1000000

One day is generated and loaded with the product's loader into a local warehouse; its participations
Parquet file is uploaded to the GCS emulator. Each way then streams every row of it as Arrow record
batches, as the exports do (`con.sql(...).to_arrow_reader(batch_size)`), through a fresh in-memory
DuckDB connection:

- local: `read_parquet('<warehouse>/participations/date=D/data.parquet')` (the anchor);
- gcsfs: `con.register_filesystem(gcsfs.GCSFileSystem(...))`, then `read_parquet('gs://...')`;
- download: google-cloud-storage `download_to_filename` into a temporary file, then the local read.

gcsfs >= 2026 exports an "extended" filesystem by default (`GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT`, on)
that first asks the bucket's type over the gRPC storage-control API: the emulator has none, and every
new filesystem then waits 60 s before falling back. `gcsfs.core.GCSFileSystem` is the plain one.

The emulator is a local Go process, not Google's network: the figures compare the client paths'
overheads, not GCS's throughput. Best of `--repeat` runs; nothing is asserted.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import duckdb  # noqa: E402
from gcsfs.core import GCSFileSystem  # noqa: E402
from google.cloud import storage  # noqa: E402

from beop_assets.demo.gcs_emulator import GcsEmulator  # noqa: E402
from beop_assets.demo.generate import generate_day  # noqa: E402
from beop_assets.landing.zone import staged_day  # noqa: E402
from beop_assets.model.day_loader import load_day  # noqa: E402
from beop_assets.model.warehouse import day_file  # noqa: E402

DAY = date(2026, 11, 25)
BATCH = 10_000


def _stream(con: duckdb.DuckDBPyConnection, path: str) -> int:
    rows = 0
    reader = con.sql(f"SELECT * FROM read_parquet('{path}')").to_arrow_reader(BATCH)
    for batch in reader:
        rows += batch.num_rows
    return rows


def _best(repeat: int, fn: Callable[[], int]) -> tuple[float, int]:
    best, rows = float("inf"), 0
    for _ in range(repeat):
        started = time.perf_counter()
        rows = fn()
        best = min(best, time.perf_counter() - started)
    return best, rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--participations", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="beop-bench-gcs-warehouse-"))
    landing, warehouse = work / "landing", work / "warehouse"
    generate_day(landing, DAY, args.participations, seed=1)
    with staged_day(DAY, str(landing)) as staged:
        load_day(staged, warehouse)
    local = day_file("participations", DAY, warehouse).resolve()
    size = local.stat().st_size

    emulator = GcsEmulator(backend="memory").start()
    try:
        os.environ["STORAGE_EMULATOR_HOST"] = emulator.url  # google-cloud-storage finds the emulator here
        client = storage.Client.create_anonymous_client()
        bucket = emulator.create_bucket("bench-warehouse").name
        name = f"warehouse/participations/date={DAY}/data.parquet"
        client.bucket(bucket).blob(name).upload_from_filename(str(local))

        def local_read() -> int:
            return _stream(duckdb.connect(), str(local))

        def gcsfs_read() -> int:
            con = duckdb.connect()
            con.register_filesystem(GCSFileSystem(endpoint_url=emulator.url, token="anon"))
            return _stream(con, f"gs://{bucket}/{name}")

        def download_read() -> int:
            with tempfile.NamedTemporaryFile(suffix=".parquet") as copy:
                client.bucket(bucket).blob(name).download_to_filename(copy.name)
                return _stream(duckdb.connect(), copy.name)

        results = [
            (label, *_best(args.repeat, fn))
            for label, fn in (
                ("local path (anchor)", local_read),
                ("gcsfs registered in DuckDB", gcsfs_read),
                ("google-cloud-storage download, then local", download_read),
            )
        ]
    finally:
        emulator.close()

    anchor = results[0][1]
    print(f"participations Parquet of a {args.participations:,}-participation day: {size / 1e6:.1f} MB")
    print(f"{'path':44} {'seconds':>8} {'x anchor':>9} {'MB/s':>8} {'rows':>9}")
    for label, seconds, rows in results:
        print(f"{label:44} {seconds:8.2f} {seconds / anchor:9.2f} {size / 1e6 / seconds:8.1f} {rows:9}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
