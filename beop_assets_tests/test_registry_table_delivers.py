"""Issue 21: the product delivers the same files from the platform's table as from the equivalent YAML.

The same day is delivered twice through `run_day` (Dagster, the real sshd and GCS emulator): once with
BEOP_EXPORTS naming a YAML file, once naming a real PostgreSQL table holding the same exports (written by
`beop-exports registry import`). The CSV files (their names but for the per-delivery UUID) and the gzip
objects are byte for byte the same, and each delivery's ledger row names the registry revision it used.
"""

from __future__ import annotations

import gzip
import re
from datetime import date

from click.testing import CliRunner

from beop_assets.cli import main
from beop_assets.daily_run import run_day
from beop_assets.delivery import ledger
from beop_assets.exports import registry_cache, registry_table
from beop_assets.exports.registry_source import YamlFile
from beop_assets.exports.registry_table import TableAddress

DAY = date(2026, 11, 25)
UUID = re.compile(r"_[0-9a-f-]{36}\.csv$")


def _delivered(product, client) -> tuple[dict[str, bytes], dict[str, bytes]]:
    csv = {UUID.sub(".csv", p.name): p.read_bytes() for p in product.upload_dir.glob("*.csv")}
    bucket = client.bucket(product.bucket)
    objects = {b.name: gzip.decompress(b.download_as_bytes()) for b in bucket.list_blobs()}
    return csv, objects


def _clear(product, client) -> None:
    for path in product.upload_dir.glob("*.csv"):
        path.unlink()
    for blob in client.bucket(product.bucket).list_blobs():
        blob.delete()


def test_the_table_delivers_the_same_files_as_the_equivalent_yaml(product, postgres_url, gcs_emulator, monkeypatch):
    client = gcs_emulator.client()
    product.landing.write_events(DAY, [product.landing.event(f"p_{n}", email=f"user{n}@example.com") for n in range(5)])
    exports = [
        product.crm("acme-crm", campaigns=["cmp_1"], optins=["o_1"]),
        product.crm("acme-optins", type="crm-optin", optins=["o_1"]),
        product.global_("acme-all"),
    ]
    registry_file = product.write_registry(exports)
    from_yaml = run_day(DAY, dagster_instance=product.instance)
    assert {o.status for o in from_yaml} == {"delivered"}, from_yaml
    yaml_files = _delivered(product, client)
    assert len(yaml_files[0]) == 2 and len(yaml_files[1]) == 1
    _clear(product, client)

    table = TableAddress.parse(postgres_url)
    registry_table.create(table)
    imported = CliRunner().invoke(main, ["registry", "import", str(registry_file), "--database", postgres_url])
    assert imported.exit_code == 0, imported.output
    registry_cache.clear()
    monkeypatch.setenv("BEOP_EXPORTS", postgres_url)
    from_table = run_day(DAY, dagster_instance=product.instance)
    assert {o.status for o in from_table} == {"delivered"}, from_table
    assert _delivered(product, client) == yaml_files

    revisions = {r.registry_revision for r in ledger.history(root=product.landing.warehouse)}
    assert revisions == {registry_table.read_revision(table), YamlFile(registry_file).revision()}
