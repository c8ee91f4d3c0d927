"""Registry scale (issue 24): what the registry costs with 10 and with 10,000 exports, side by side.

    .venv/bin/python bench/registry_scale.py [--exports 10000] [--repeat 3] [--skip-table]

For each size it writes a generated registry (tests' `fixtures/many_exports.py`: 60% crm-participation
and 20% crm-optin over 50 SFTP directories, 20% global, one account per ten exports, every selection
valid) and its reference data, as a YAML file and, unless --skip-table, in a table of a throwaway local
PostgreSQL. Each figure is measured in a fresh child process (the median of --repeat), the way an
operator or a run pays it: `beop-exports validate` (whole process, wall seconds and peak RSS), and one
export's registry read in a process of its own (`exports_for`, the call only). Needs root for the
throwaway PostgreSQL (as the tests). It reports; it never fails a build.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from beop_assets.exports import registry_table  # noqa: E402
from beop_assets.exports.registry_table import TableAddress  # noqa: E402
from beop_assets_tests.fixtures import many_exports  # noqa: E402
from beop_assets_tests.fixtures.postgres import LocalPostgres  # noqa: E402

BIN = Path(sys.executable).parent
PROBE = "x00003"
ONE_EXPORT = """
import sys, time
from beop_assets.exports import registry_cache
from beop_assets.exports.registry_source import open_source
source = open_source(sys.argv[1])
start = time.perf_counter()
registry = registry_cache.exports_for(source, sys.argv[2], [sys.argv[3]])
registry.get(sys.argv[3])
print(time.perf_counter() - start)
"""


def _child(args: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """(wall s, peak RSS MB, stdout) of one child process (its own RSS, read by `os.wait4`)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(args, env=env, stdout=out, stderr=err)
        _pid, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        text = out.read().decode()
        if proc.returncode not in (0, 1):  # validate exits 1 on faults: still a figure
            raise SystemExit(f"{' '.join(args)} failed ({proc.returncode}):\n{text}\n{err.read().decode()}")
    return wall, usage.ru_maxrss / 1024, text


def measure(source: str, landing: Path, repeat: int) -> dict[str, str]:
    env = dict(os.environ, BEOP_EXPORTS=source, BEOP_LANDING=str(landing))
    validate = [_child([str(BIN / "beop-exports"), "validate"], env) for _ in range(repeat)]
    one = [
        float(_child([sys.executable, "-c", ONE_EXPORT, source, str(landing), PROBE], env)[2]) for _ in range(repeat)
    ]
    return {
        "validate (s)": f"{statistics.median(w for w, _, _ in validate):.2f}",
        "validate peak RSS (MB)": f"{max(r for _, r, _ in validate):.0f}",
        "one export's registry read (s)": f"{statistics.median(one):.3f}",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--exports", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--skip-table", action="store_true")
    options = parser.parse_args()
    sizes = (10, options.exports)
    work = Path(tempfile.mkdtemp(prefix="beop-registry-scale-"))
    landing = work / "landing"
    many_exports.write_reference(landing, max(sizes))  # one landing zone for both sizes
    results: dict[str, dict[int, dict[str, str]]] = {}
    server = None if options.skip_table else LocalPostgres().start()
    try:
        for size in sizes:
            path = many_exports.write_registry(work / f"exports-{size}.yaml", size)
            results.setdefault("yaml", {})[size] = measure(str(path), landing, options.repeat)
            if server is not None:
                address = TableAddress.parse(server.create_database())
                registry_table.create(address)
                registry_table.replace_rows(address, many_exports.entries(size), delete_others=False)
                url = f"postgresql://{address.user}@{address.host}:{address.port}/{address.database}"
                results.setdefault("table", {})[size] = measure(url, landing, options.repeat)
    finally:
        if server is not None:
            server.stop()
    print(f"registry scale, median of {options.repeat} fresh processes, {os.cpu_count()} cores")
    print(f"{'source':<6} {'figure':<36} {sizes[0]:>10,} {sizes[1]:>10,}")
    for kind, by_size in results.items():
        for figure in by_size[sizes[0]]:
            print(f"{kind:<6} {figure:<36} {by_size[sizes[0]][figure]:>10} {by_size[sizes[1]][figure]:>10}")


if __name__ == "__main__":
    main()
