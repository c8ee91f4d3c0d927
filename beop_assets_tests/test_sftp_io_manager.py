"""What the SFTP IO manager records of a delivery: how its content was proven, and the crash
leftovers it removed from the customer's directory, in the materialization and in the ledger,
through a real run against the real sshd."""

from __future__ import annotations

import os
import sqlite3
from datetime import date
from pathlib import Path

from dagster import MultiPartitionKey

from beop_assets.definitions import defs as load_definitions
from beop_assets.delivery import ledger

DAY = date(2026, 11, 25)
CRASHED = "20261125_crm-participation_acme-crm_0b8f0f8e-5f43-4b43-9a53-2f1d1b7a1c11.csv"
STALE = f".{CRASHED}.part"
CONCURRENT = ".20261125_crm-participation_acme-crm_1c8f0f8e-5f43-4b43-9a53-2f1d1b7a1c12.csv.part"


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


def test_a_delivery_records_its_proof_and_removes_the_crashed_attempts_leftover(product, monkeypatch):
    """A crash (kill -9) minutes ago left its `.part`; the ledger holds that attempt, still "started",
    with its temporary name. The next delivery of that export and day removes it, however young, once
    delivered; a `.part` no attempt of this export and day recorded (another one in flight) and the
    customer's files stay."""
    product.landing.write_events(DAY, [product.landing.event("p_1")])
    product.write_registry([product.crm("acme-crm")])
    warehouse = os.environ["BEOP_WAREHOUSE"]
    ledger.start(
        "acme-crm",
        "specific",
        DAY,
        CRASHED,
        1,
        10,
        "",
        "sftp://x",
        "crashed-run",
        root=Path(warehouse),
        temp_name=STALE,
    )
    stale = product.upload_dir / STALE
    stale.write_bytes(b"half a file from a crash minutes ago")
    concurrent = product.upload_dir / CONCURRENT
    concurrent.write_bytes(b"being written")
    customer = product.upload_dir / ".customer.part"
    customer.write_bytes(b"theirs")

    metadata = _deliver(product)

    assert metadata["verified_from"].value == "acks+size"  # OpenSSH offers no hash extension
    assert metadata["removed_temp_files"].value == [STALE]
    assert not stale.exists() and customer.exists() and concurrent.read_bytes() == b"being written"
    with sqlite3.connect(f"{warehouse}/deliveries.sqlite") as con:
        removed = con.execute("SELECT export_id, name FROM removed_temp_files").fetchall()
        proof = con.execute("SELECT verified_from FROM deliveries WHERE status = 'delivered'").fetchall()
        temp_names = con.execute("SELECT status, temp_name FROM deliveries ORDER BY id").fetchall()
    assert removed == [("acme-crm", STALE)]
    assert proof == [("acks+size",)]
    assert temp_names[0] == ("started", STALE) and temp_names[1][0] == "delivered"
    assert temp_names[1][1].startswith(".2026112") and temp_names[1][1].endswith(".part")


def test_read_back_is_an_operator_setting(product, monkeypatch):
    product.landing.write_events(DAY, [product.landing.event("p_1")])
    product.write_registry([product.crm("acme-crm")])
    monkeypatch.setenv("BEOP_SFTP_READ_BACK", "1")
    assert _deliver(product)["verified_from"].value == "read-back"
