"""The model's days on GCS (`beop_assets.model.warehouse_store`) against the real GCS emulator: a day
loaded on one machine is stored, pulled into another machine's empty folder and read there as the
exports read it; a copy that is current is not downloaded again, a reloaded day is; retention removes
stored days. Through the product's jobs: test_warehouse_on_gcs.py; on Celery: test_topology_celery.py."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import duckdb
import pytest
from google.cloud import storage

from beop_assets import settings
from beop_assets.model.warehouse import MODEL_TABLES, day_file, loaded_day_file
from beop_assets.model.warehouse_store import (
    Store,
    WarehouseStoreError,
    pull_all,
    pull_day,
    purge_days,
    push_day,
    stored_days,
)

DAY = date(2026, 11, 25)


def _ids(root, day=DAY):
    rows = duckdb.sql(f"SELECT participation_id FROM '{loaded_day_file('participations', day, root)}' ORDER BY 1")
    return [r[0] for r in rows.fetchall()]


def test_a_loaded_day_travels_through_the_store(landing_zone, gcs_bucket, tmp_path):
    landing_zone.write_events(DAY, [landing_zone.event("p_1"), landing_zone.event("p_2", content_id="c_2")])
    landing_zone.load(DAY)
    client = storage.Client.create_anonymous_client()
    store = Store.parse(f"gs://{gcs_bucket}/warehouse/")

    written = push_day(DAY, landing_zone.warehouse, store, client)
    assert written == {t: f"gs://{gcs_bucket}/warehouse/{t}/date=2026-11-25/data.parquet" for t in MODEL_TABLES}
    (last, last_url), *_ = reversed(written.items())
    assert last == "participations"  # what exports read: stored last
    assert last_url.endswith("/participations/date=2026-11-25/data.parquet")
    assert pull_day(DAY, landing_zone.warehouse, store, client) == []  # the loading machine holds it already

    other = tmp_path / "other-machine"
    pulled = pull_day(DAY, other, store, client)
    assert sorted(pulled) == sorted(day_file(t, DAY, other) for t in MODEL_TABLES)
    for table in MODEL_TABLES:
        assert (
            loaded_day_file(table, DAY, other).read_bytes() == day_file(table, DAY, landing_zone.warehouse).read_bytes()
        )
    assert _ids(other) == ["p_1", "p_2"]
    assert pull_day(DAY, other, store, client) == []  # current: not downloaded again

    # The day is reloaded on the first machine: the other one's next read gets the new rows.
    landing_zone.write_events(DAY, [landing_zone.event("p_3")])
    landing_zone.load(DAY)
    push_day(DAY, landing_zone.warehouse, store, client)
    assert pull_day(DAY, other, store, client) == [day_file(t, DAY, other) for t in MODEL_TABLES]
    assert _ids(other) == _ids(landing_zone.warehouse) == ["p_3"]


def test_a_day_the_store_does_not_hold_is_left_alone(gcs_bucket, tmp_path):
    client = storage.Client.create_anonymous_client()
    assert pull_day(DAY, tmp_path, Store.parse(f"gs://{gcs_bucket}/warehouse"), client) == []
    assert not (tmp_path / "participations").exists()


def test_every_stored_day_is_pulled_and_retention_removes_the_expired_ones(landing_zone, gcs_bucket, tmp_path):
    client = storage.Client.create_anonymous_client()
    store = Store.parse(f"gs://{gcs_bucket}")  # no prefix: the bucket's root
    days = [date(2026, 11, 23), date(2026, 11, 24), DAY]
    for i, day in enumerate(days):
        landing_zone.write_events(day, [landing_zone.event(f"p_{i}", day)])
        landing_zone.load(day)
        push_day(day, landing_zone.warehouse, store, client)
    client.bucket(gcs_bucket).blob("notes/readme.txt").upload_from_string("not a day")
    assert stored_days(store, client) == {t: days for t in MODEL_TABLES}

    fresh = tmp_path / "fresh-machine"
    assert len(pull_all(fresh, store, client)) == 3 * len(MODEL_TABLES)
    assert [_ids(fresh, d) for d in days] == [["p_0"], ["p_1"], ["p_2"]]
    assert pull_all(fresh, store, client) == []

    removed = purge_days(store, client, keep_from=DAY)
    assert removed == {t: ["2026-11-23", "2026-11-24"] for t in MODEL_TABLES}
    assert stored_days(store, client) == {t: [DAY] for t in MODEL_TABLES}
    assert [b.name for b in client.list_blobs(gcs_bucket) if b.name.startswith("notes/")] == ["notes/readme.txt"]


@pytest.mark.parametrize("url", ["gs://", "gs:///prefix", "s3://bucket/x"])
def test_a_warehouse_url_that_names_no_bucket_is_refused(url, monkeypatch):
    with pytest.raises(WarehouseStoreError, match="BEOP_WAREHOUSE="):
        Store.parse(url)
    monkeypatch.setenv("BEOP_WAREHOUSE", url)
    with pytest.raises(ValueError, match="expected a local folder or gs://bucket/prefix"):
        _ = settings.current().warehouse


def test_a_gs_warehouse_keeps_its_local_copy_in_the_cache_folder(monkeypatch, tmp_path):
    monkeypatch.setenv("BEOP_WAREHOUSE", "gs://model-bucket/prod")
    monkeypatch.delenv("BEOP_WAREHOUSE_CACHE", raising=False)
    assert (settings.current().warehouse, settings.current().warehouse_store) == (
        Path(settings.DEFAULT_WAREHOUSE_CACHE),
        "gs://model-bucket/prod",
    )
    monkeypatch.setenv("BEOP_WAREHOUSE_CACHE", str(tmp_path))
    assert settings.current().warehouse == tmp_path
    monkeypatch.setenv("BEOP_WAREHOUSE", str(tmp_path / "local"))
    assert (settings.current().warehouse, settings.current().warehouse_store) == (tmp_path / "local", None)
