"""The delivery sensor's evaluation with a full look-back window (issue 24), side by side with 10 exports.

    .venv/bin/python bench/delivery_tick.py [--exports 10000] [--days 8] [--repeat 3]

The worst tick the night can meet: every export of every day of the look-back window loaded (with the
default BEOP_DELIVERY_LOOKBACK_DAYS=7: yesterday and the 6 days before; today is not loaded yet) and none
delivered, so every key is due. The registry is the tests' generated
platform (`fixtures/many_exports.py`: 60 % crm-participation, 20 % crm-optin, 20 % global), registered as
partitions in an on-disk SQLite instance (as the one-box deployment's); the loads are materializations
of `participations`; the ledger is empty. The sensor is evaluated in this process as the daemon's code
server evaluates it (`evaluate_tick`, median of --repeat, wall seconds). Dagster's own creation of the
runs it asks is not in this figure: that is bounded by BEOP_DELIVERY_KEYS_PER_TICK and measured in
`exports_night.py --daemon`'s tick records. It reports; it never fails a build.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def measure(exports: int, days: int, repeat: int, work: Path) -> tuple[float, int, int]:
    """(median seconds of one evaluation, keys asked by the tick, keys due in all)."""
    from dagster import AssetMaterialization, DagsterInstance, build_sensor_context, partition_loading_context

    from beop_assets.defs.exports.jobs import EXPORT_MODES
    from beop_assets.defs.exports.sensors import registry_partition_requests
    from beop_assets.exports import registry_cache
    from beop_assets_tests.fixtures import many_exports
    from beop_assets_tests.fixtures.definitions import definitions, resources, sensor

    folder = work / str(exports)
    landing = folder / "landing"
    many_exports.write_reference(landing, exports)
    registry_path = many_exports.write_registry(folder / "exports.yaml", exports)
    os.environ.update(
        BEOP_LANDING=str(landing), BEOP_EXPORTS=str(registry_path), BEOP_WAREHOUSE=str(folder / "warehouse")
    )
    registry_cache.clear()
    (folder / "home").mkdir()
    with DagsterInstance.from_config(str(folder / "home")) as instance:
        requests, _ = registry_partition_requests(resources()["registry"], instance)
        for request in requests:
            instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
        yesterday = datetime.now(UTC).date() - timedelta(days=1)
        for n in range(days):
            day = yesterday - timedelta(days=n)
            instance.report_runless_asset_event(AssetMaterialization("participations", partition=day.isoformat()))
        registered = sum(len(instance.get_dynamic_partitions(s.partitions_name)) for s in EXPORT_MODES.values())
        due = days * registered
        deliver = sensor("deliver_loaded_days_sensor")
        seconds: list[float] = []
        asked = 0
        for _ in range(repeat):
            with (
                build_sensor_context(instance=instance, definitions=definitions(), resources=resources()) as context,
                partition_loading_context(dynamic_partitions_store=instance),
            ):
                started = time.perf_counter()
                result = deliver.evaluate_tick(context)
                seconds.append(time.perf_counter() - started)
            asked = sum(_range_size(r, instance) for r in result.run_requests or [])
    return statistics.median(seconds), asked, due


def _range_size(request, instance) -> int:
    from beop_assets.defs.exports.jobs import EXPORT_MODES
    from beop_assets.defs.exports.sensors import RANGE_END, RANGE_START

    spec = next(s for s in EXPORT_MODES.values() if s.job_name == request.job_name)
    order = instance.get_dynamic_partitions(spec.partitions_name)
    first, last = (request.tags[t].split("|")[1] for t in (RANGE_START, RANGE_END))
    return order.index(last) - order.index(first) + 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--exports", type=int, default=10_000)
    parser.add_argument("--days", type=int, default=7, help="loaded days: yesterday and the days before it")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="beop-tick-") as work:
        rows = [(n, *measure(n, args.days, args.repeat, Path(work))) for n in (10, args.exports)]
    print(f"delivery sensor evaluation, {args.days} loaded days, nothing delivered (median of {args.repeat})")
    for exports, seconds, asked, due in rows:
        print(f"  {exports:>6} exports  {seconds:6.2f} s  asked {asked} of {due} due keys  target < 10 s")


if __name__ == "__main__":
    main()
