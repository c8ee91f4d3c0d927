"""What the SFTP IO manager records of a delivery: how its content was proven, and the crash
leftovers it removed from the customer's directory (docs/file-contract.md), in the materialization and
in the ledger, through a real run against the real sshd."""

from __future__ import annotations

import os
import sqlite3
import time
from datetime import date

from dagster import MultiPartitionKey

from beop_assets.definitions import defs as load_definitions

DAY = date(2026, 11, 25)
STALE = ".20261120_crm-participation_old-export_0b8f0f8e-5f43-4b43-9a53-2f1d1b7a1c11.csv.part"


def _deliver(product):
    product.instance.add_dynamic_partitions("specific_exports", ["acme-crm"])
    load = (
        load_definitions()
        .resolve_job_def("load_participations")
        .execute_in_process(partition_key=DAY.isoformat(), instance=product.instance)
    )
    assert load.success
    key = MultiPartitionKey({"date": DAY.isoformat(), "export": "acme-crm"})
    result = (
        load_definitions()
        .resolve_job_def("deliver_specific_exports")
        .execute_in_process(partition_key=key, instance=product.instance)
    )
    assert result.success
    (materialization,) = result.asset_materializations_for_node("crm_export_file")
    return materialization.metadata


def test_a_delivery_records_its_proof_and_the_leftovers_it_removed(product, monkeypatch):
    product.landing.write_events(DAY, [product.landing.event("p_1")])
    product.write_registry([product.crm("acme-crm")])
    stale = product.upload_dir / STALE
    stale.write_bytes(b"half a file from a crashed night")
    customer = product.upload_dir / ".customer.part"
    customer.write_bytes(b"theirs")
    two_hours_ago = time.time() - 7200
    for path in (stale, customer):
        os.utime(path, (two_hours_ago, two_hours_ago))

    metadata = _deliver(product)

    assert metadata["verified_from"].value == "acks+size"  # OpenSSH offers no hash extension
    assert metadata["removed_temp_files"].value == [STALE]
    assert not stale.exists() and customer.exists()
    warehouse = os.environ["BEOP_WAREHOUSE"]
    with sqlite3.connect(f"{warehouse}/deliveries.sqlite") as con:
        removed = con.execute("SELECT export_id, name FROM removed_temp_files").fetchall()
        proof = con.execute("SELECT verified_from FROM deliveries WHERE status = 'delivered'").fetchall()
    assert removed == [("acme-crm", STALE)]
    assert proof == [("acks+size",)]


def test_read_back_is_an_operator_setting(product, monkeypatch):
    product.landing.write_events(DAY, [product.landing.event("p_1")])
    product.write_registry([product.crm("acme-crm")])
    monkeypatch.setenv("BEOP_SFTP_READ_BACK", "1")
    assert _deliver(product)["verified_from"].value == "read-back"
