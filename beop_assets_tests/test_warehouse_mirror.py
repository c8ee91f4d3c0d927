"""The warehouse mirror (`beop_assets.topology.warehouse_mirror`) against the real GCS emulator: a day
loaded on one machine is pushed, pulled into another machine's empty warehouse, and read there as the
exports read it; a day the mirror does not hold is left alone. End to end: test_topology_celery.py."""

from __future__ import annotations

from datetime import date

import duckdb
from google.cloud import storage

from beop_assets.model.warehouse import MODEL_TABLES, day_file, loaded_day_file
from beop_assets.topology.warehouse_mirror import pull_day, push_day

DAY = date(2026, 11, 25)


def test_a_loaded_day_travels_through_the_mirror(landing_zone, gcs_bucket, tmp_path):
    landing_zone.write_events(DAY, [landing_zone.event("p_1"), landing_zone.event("p_2", content_id="c_2")])
    landing_zone.load(DAY)
    client = storage.Client.create_anonymous_client()
    mirror = f"gs://{gcs_bucket}/warehouse"

    written = push_day(DAY, landing_zone.warehouse, mirror, client)
    assert sorted(written) == sorted(f"{mirror}/{t}/date=2026-11-25/data.parquet" for t in MODEL_TABLES)

    other = tmp_path / "other-machine"
    pulled = pull_day(DAY, other, mirror, client)
    assert sorted(pulled) == sorted(day_file(t, DAY, other) for t in MODEL_TABLES)
    for table in MODEL_TABLES:
        assert (
            loaded_day_file(table, DAY, other).read_bytes() == day_file(table, DAY, landing_zone.warehouse).read_bytes()
        )
    ids = duckdb.sql(f"SELECT participation_id FROM '{loaded_day_file('participations', DAY, other)}' ORDER BY 1")
    assert [r[0] for r in ids.fetchall()] == ["p_1", "p_2"]

    pull_day(DAY, other, mirror, client)  # a second pull (a reloaded day) replaces the local copy in place
    assert (
        loaded_day_file("participations", DAY, other).read_bytes()
        == day_file("participations", DAY, landing_zone.warehouse).read_bytes()
    )


def test_a_day_the_mirror_does_not_hold_is_left_alone(gcs_bucket, tmp_path):
    client = storage.Client.create_anonymous_client()
    assert pull_day(DAY, tmp_path, f"gs://{gcs_bucket}/warehouse", client, wait_s=0.5) == []
    assert not (tmp_path / "participations").exists()
