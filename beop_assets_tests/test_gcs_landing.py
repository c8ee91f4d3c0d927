"""A `gs://` landing zone is read through the same GCS client rules (the emulator here) as delivery."""

from datetime import date

from google.cloud import storage

from beop_assets.landing.zone import staged_day
from beop_assets.model.day_loader import load_day

DAY = date(2026, 11, 25)


def test_a_day_is_loaded_from_a_gs_landing_zone(landing_zone, gcs_bucket, tmp_path):
    landing_zone.write_events(DAY, [landing_zone.event("p_1"), landing_zone.event("p_2")], name="a.ndjson")
    landing_zone.write_events(DAY, [landing_zone.event("p_3")], name="b.ndjson.gz")
    landing_zone.write_events(date(2026, 11, 24), [landing_zone.event("p_other", day=date(2026, 11, 24))])
    bucket = storage.Client.create_anonymous_client().bucket(gcs_bucket)
    for path in landing_zone.root.rglob("*"):
        if path.is_file():
            bucket.blob(f"landing/{path.relative_to(landing_zone.root)}").upload_from_filename(str(path))

    with staged_day(DAY, f"gs://{gcs_bucket}/landing") as staged:
        assert sorted(staged.files) == [
            "participations/date=2026-11-25/a.ndjson",
            "participations/date=2026-11-25/b.ndjson.gz",
        ]
        load = load_day(staged, tmp_path / "warehouse")
    assert (load.participations, load.rejected) == (3, 0)
    assert not staged.reference_folder.exists()  # the scratch copies are removed afterwards
