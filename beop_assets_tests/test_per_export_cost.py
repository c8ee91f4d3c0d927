"""What makes a night of many small exports cheap must not make it wrong (README, "Per-export cost").

- The validated registry is kept between reads, but an edit of the registry file or of the
  reference data is seen by the very next read in the same process, even an edit that keeps the
  file's size and timestamp.
- `beop-exports run` delivers with several worker processes at once; one export pointing at a dead
  server fails alone (its run, its partition), the others are delivered, the CLI exits 1 and names it,
  and its output keeps the same lines in the same order.
"""

from __future__ import annotations

import os
import re
from datetime import date

from click.testing import CliRunner
from dagster import DagsterInstance, DagsterRunStatus, RunsFilter

from beop_assets.cli import main
from beop_assets.delivery import ledger
from beop_assets.demo.sshd import free_port
from beop_assets.exports import registry_cache
from beop_assets_tests.fixtures.definitions import ledger_at, resource

DAY = date(2026, 11, 25)


def _same_stat_rewrite(path, text: str) -> None:
    """Rewrite `path` with `text` (same length) and put its timestamps back: what a fast edit within
    one clock tick of the filesystem looks like to `stat`."""
    before = path.stat()
    assert len(text.encode()) == before.st_size
    path.write_text(text, encoding="utf-8")
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = path.stat()
    assert (after.st_size, after.st_mtime_ns, after.st_ino) == (before.st_size, before.st_mtime_ns, before.st_ino)


def test_the_registry_is_parsed_once_while_its_files_are_unchanged(product, monkeypatch):
    product.write_registry([product.crm("acme-crm"), product.global_("acme-all")])
    parses = []
    real = registry_cache.validate_entries
    monkeypatch.setattr(registry_cache, "validate_entries", lambda *a, **k: parses.append(a) or real(*a, **k))

    first = resource("registry").load()
    for _ in range(5):
        again = resource("registry").load()
    assert len(parses) == 1
    assert sorted(again.exports) == sorted(first.exports) == ["acme-all", "acme-crm"]

    # each caller gets a registry of its own: what one caller changes, the next read does not see
    again.exports.clear()
    again.faults.append("not a fault")
    fresh = resource("registry").load()
    assert sorted(fresh.exports) == ["acme-all", "acme-crm"] and fresh.faults == []
    assert len(parses) == 1


def test_an_edit_of_the_registry_is_seen_by_the_next_read_even_within_one_clock_tick(product):
    path = product.write_registry([product.crm("acme-crm"), product.global_("acme-all")])
    assert resource("registry").load().exports["acme-crm"].enabled is True

    text = path.read_text(encoding="utf-8")
    edited = text.replace("id: acme-crm", "id: acme-crx", 1)
    _same_stat_rewrite(path, edited)
    assert sorted(resource("registry").load().exports) == ["acme-all", "acme-crx"]

    path.write_text(text.replace("mode: global", "mode: globul", 1), encoding="utf-8")  # now broken
    registry = resource("registry").load()
    assert "acme-all" not in registry.exports and registry.faults_of("acme-all")


def test_an_edit_of_the_reference_data_is_seen_by_the_next_read(product):
    product.write_registry([product.crm("acme-crm", campaigns=["cmp_1"], optins=["o_1"])])
    registry = resource("registry").load()
    assert registry.reference.optins["o_1"].name == "Newsletter" and "acme-crm" in registry.exports

    optins = product.landing.reference_folder / "optins.ndjson"
    _same_stat_rewrite(optins, optins.read_text(encoding="utf-8").replace("Newsletter", "NewsLetter"))
    assert resource("registry").load().reference.optins["o_1"].name == "NewsLetter"

    # cmp_1 now belongs to the other account: tenancy rejects the export at the next read
    campaigns = product.landing.reference_folder / "campaigns.ndjson"
    campaigns.write_text(campaigns.read_text(encoding="utf-8").replace('"a_1"', '"a_2"'), encoding="utf-8")
    registry = resource("registry").load()
    assert "acme-crm" not in registry.exports
    assert any("another account" in str(f) for f in registry.faults_of("acme-crm"))


def test_parallel_deliveries_isolate_the_export_whose_server_is_dead(product, monkeypatch):
    product.landing.write_events(DAY, [product.landing.event("p_1"), product.landing.event("p_2", content_id="c_2")])
    dead_port = free_port()  # nothing listens there
    good = [f"crm-{n}" for n in range(3)] + [f"global-{n}" for n in range(3)]
    product.write_registry(
        [product.crm(i) for i in good if i.startswith("crm")]
        + [product.crm("dead-server", sftp={"port": dead_port})]
        + [product.global_(i, gcs={"prefix": f"{i}/"}) for i in good if i.startswith("global")]
    )
    monkeypatch.setenv("BEOP_DELIVERY_WORKERS", "2")
    result = CliRunner().invoke(main, ["run", "--date", DAY.isoformat()], catch_exceptions=False)

    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.split() and line.split()[0] in {*good, "dead-server"}]
    # one line per export, specific exports first, then global ones, each sorted: the sequential order
    assert [line.split()[0] for line in lines] == ["crm-0", "crm-1", "crm-2", "dead-server", *good[3:]]
    by_id = {line.split()[0]: line for line in lines}
    for export_id in good:
        assert re.match(rf"{export_id}\s+delivered\s+\S+\s+rows=\d+$", by_id[export_id]), by_id[export_id]
    assert re.match(r"dead-server\s+failed\s+-\s+rows=-\s+error: .*", by_id["dead-server"])
    assert f"127.0.0.1:{dead_port}" in by_id["dead-server"]
    assert "6 delivered, 1 failed" in result.output

    files = sorted(p.name for p in product.upload_dir.iterdir())
    assert len(files) == 3 and not [f for f in files if f.startswith(".")]
    assert {d.export_id for d in ledger.history(status="delivered", root=ledger_at())} == set(good)
    assert {d.export_id for d in ledger.history(status="failed", root=ledger_at())} == {"dead-server"}

    # the runs are in the instance the CLI used, batched ranges: only the one holding the dead server
    # failed (its batchmates delivered, above), and they were executed side by side (two worker
    # processes): some runs overlap in time
    instance = DagsterInstance.from_config(os.environ["DAGSTER_HOME"])
    records = instance.get_run_records(RunsFilter(tags={"beop/trigger": "cli"}))
    exports = [r for r in records if r.dagster_run.job_name.startswith("deliver_")]
    assert 2 <= len(exports) < 7
    failed = [r for r in exports if r.dagster_run.status == DagsterRunStatus.FAILURE]
    assert len(failed) == 1
    assert all(r.dagster_run.status == DagsterRunStatus.SUCCESS for r in exports if r not in failed)
    spans = sorted((r.start_time, r.end_time) for r in exports)
    assert any(later[0] < earlier[1] for earlier, later in zip(spans, spans[1:], strict=False)), spans


def test_a_gs_landing_zone_is_read_once_until_a_reference_object_changes(product, monkeypatch):
    """For `gs://`, the reference files' identity is their objects' generation and checksum (one listing)."""
    from google.cloud import storage

    bucket = storage.Client.create_anonymous_client().bucket(product.bucket)
    for path in product.landing.reference_folder.iterdir():
        bucket.blob(f"landing/reference/{path.name}").upload_from_filename(str(path))
    monkeypatch.setenv("BEOP_LANDING", f"gs://{product.bucket}/landing")
    product.write_registry([product.crm("acme-crm", optins=["o_1"])])
    downloads = []
    real = registry_cache.read_reference
    monkeypatch.setattr(registry_cache, "read_reference", lambda landing: downloads.append(1) or real(landing))

    assert resource("registry").load().reference.optins["o_1"].name == "Newsletter"
    assert resource("registry").load().reference.optins["o_1"].name == "Newsletter"
    assert len(downloads) == 1

    optins = (product.landing.reference_folder / "optins.ndjson").read_text(encoding="utf-8")
    bucket.blob("landing/reference/optins.ndjson").upload_from_string(optins.replace("Newsletter", "NewsLetter"))
    assert resource("registry").load().reference.optins["o_1"].name == "NewsLetter"
    assert len(downloads) == 2
