"""The day loader keeps every valid participation once and every rejected line with its reason."""

import json
from datetime import date

import duckdb
import pytest

from beop_assets.model import warehouse

DAY = date(2026, 11, 25)


def rows(path, sql="SELECT * FROM t"):
    con = duckdb.connect()
    con.execute(f"CREATE VIEW t AS SELECT * FROM read_parquet('{path}')")
    cur = con.execute(sql)
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r, strict=False)) for r in cur.fetchall()]


def rejected(zone):
    return {r["line_number"]: r for r in rows(zone.parquet("rejected_participations", DAY))}


@pytest.mark.parametrize(
    "line, reason",
    [
        ("{not json", "invalid_json"),
        ("[1, 2, 3]", "not_an_object"),
        (
            json.dumps({"timestamp": "2026-11-25T10:00:00Z", "account_id": "a_1", "content_id": "c_1"}),
            "missing_participation_id",
        ),
        (json.dumps({"participation_id": "p", "account_id": "a_1", "content_id": "c_1"}), "missing_timestamp"),
        (
            json.dumps({"participation_id": "p", "timestamp": "2026-11-25T10:00:00Z", "content_id": "c_1"}),
            "missing_account_id",
        ),
        (
            json.dumps({"participation_id": "p", "timestamp": "2026-11-25T10:00:00Z", "account_id": "a_1"}),
            "missing_content_id",
        ),
        (
            json.dumps({"participation_id": "p", "timestamp": "yesterday", "account_id": "a_1", "content_id": "c_1"}),
            "invalid_timestamp",
        ),
        (
            json.dumps(
                {
                    "participation_id": "p",
                    "timestamp": "2026-11-26T00:00:00.000Z",
                    "account_id": "a_1",
                    "content_id": "c_1",
                }
            ),
            "timestamp_outside_day",
        ),
        (
            json.dumps(
                {
                    "participation_id": "p",
                    "timestamp": "2026-11-25T10:00:00Z",
                    "account_id": "a_404",
                    "content_id": "c_1",
                }
            ),
            "unknown_account",
        ),
        (
            json.dumps(
                {
                    "participation_id": "p",
                    "timestamp": "2026-11-25T10:00:00Z",
                    "account_id": "a_1",
                    "content_id": "c_404",
                }
            ),
            "unknown_content",
        ),
        (
            json.dumps(
                {"participation_id": "p", "timestamp": "2026-11-25T10:00:00Z", "account_id": "a_1", "content_id": "c_9"}
            ),
            "content_of_another_account",
        ),
    ],
)
def test_each_rejection_reason_is_kept_with_file_and_line(landing_zone, line, reason):
    landing_zone.write_events(DAY, [landing_zone.event("p_ok_1"), line, landing_zone.event("p_ok_2")])
    load = landing_zone.load(DAY)
    assert load.participations == 2  # the bad line never stops the rest of the day
    assert load.rejected_by_reason == {reason: 1}
    kept = rejected(landing_zone)[2]
    assert kept["reason"] == reason
    assert kept["line"] == line
    assert kept["source_file"] == "participations/date=2026-11-25/events.ndjson"
    assert kept["detail"]


def test_timestamp_with_offset_is_converted_to_utc_before_the_day_check(landing_zone):
    landing_zone.write_events(
        DAY,
        [
            landing_zone.event("p_late", timestamp="2026-11-26T00:30:00+01:00"),  # 23:30 UTC on the 25th
            landing_zone.event("p_early", timestamp="2026-11-25T00:30:00+01:00"),  # 23:30 UTC on the 24th
        ],
    )
    load = landing_zone.load(DAY)
    assert load.participations == 1
    (row,) = rows(landing_zone.parquet("participations", DAY))
    assert row["participation_id"] == "p_late"
    assert row["timestamp"].isoformat() == "2026-11-25T23:30:00"


def test_duplicate_participation_id_is_loaded_once_and_the_copy_kept_as_rejected(landing_zone):
    landing_zone.write_events(DAY, [landing_zone.event("p_1", email="first@example.com")], name="a.ndjson")
    landing_zone.write_events(DAY, [landing_zone.event("p_1", email="second@example.com")], name="b.ndjson")
    load = landing_zone.load(DAY)
    assert load.participations == 1
    (row,) = rows(landing_zone.parquet("participations", DAY))
    assert row["email"] == "first@example.com"  # files in name order: the first one seen wins
    (dup,) = rows(landing_zone.parquet("rejected_participations", DAY))
    assert dup["reason"] == "duplicate_participation_id"
    assert "a.ndjson:1" in dup["detail"]


def test_plain_and_gzipped_files_of_a_day_are_both_loaded(landing_zone):
    landing_zone.write_events(DAY, [landing_zone.event("p_plain")], name="part-0.ndjson")
    landing_zone.write_events(DAY, [landing_zone.event("p_gz")], name="part-1.ndjson.gz")
    load = landing_zone.load(DAY)
    assert sorted(r["participation_id"] for r in rows(landing_zone.parquet("participations", DAY))) == [
        "p_gz",
        "p_plain",
    ]
    assert load.lines_by_file == {
        "participations/date=2026-11-25/part-0.ndjson": 1,
        "participations/date=2026-11-25/part-1.ndjson.gz": 1,
    }


def test_rerunning_a_day_replaces_it_in_parquet_and_in_the_duckdb_file(landing_zone):
    landing_zone.write_events(DAY, [landing_zone.event("p_1"), landing_zone.event("p_2")])
    landing_zone.load(DAY)
    landing_zone.write_events(DAY, [landing_zone.event("p_3")])  # the day's file was replaced upstream
    load = landing_zone.load(DAY)
    assert load.participations == 1
    con = duckdb.connect(str(warehouse.database_file(landing_zone.warehouse)), read_only=True)
    assert con.execute("SELECT participation_id FROM participations WHERE day = ?", [DAY]).fetchall() == [("p_3",)]
    assert con.execute("SELECT count(*) FROM optins").fetchone()[0] == 0
    con.close()


def test_other_days_are_untouched_by_a_reload(landing_zone):
    other = date(2026, 11, 24)
    landing_zone.write_events(other, [landing_zone.event("p_old", day=other)])
    landing_zone.write_events(DAY, [landing_zone.event("p_new")])
    landing_zone.load(other)
    landing_zone.load(DAY)
    landing_zone.load(DAY)
    con = duckdb.connect(str(warehouse.database_file(landing_zone.warehouse)), read_only=True)
    assert con.execute("SELECT day, count(*) FROM participations GROUP BY 1 ORDER BY 1").fetchall() == [
        (other, 1),
        (DAY, 1),
    ]
    con.close()


def test_an_empty_day_loads_as_an_empty_but_existing_day(landing_zone):
    load = landing_zone.load(DAY)  # no folder at all for that day
    assert (load.participations, load.rejected, load.files) == (0, 0, [])
    assert rows(landing_zone.parquet("participations", DAY)) == []
    assert warehouse.loaded_day_file("participations", DAY, landing_zone.warehouse).exists()


def test_a_day_never_loaded_is_an_error_for_exports_not_an_empty_file(landing_zone):
    with pytest.raises(warehouse.DayNotLoadedError, match="2026-11-25"):
        warehouse.loaded_day_file("participations", DAY, landing_zone.warehouse)


def test_optins_are_flattened_with_their_reference_name_and_text_of_the_same_account(landing_zone):
    landing_zone.write_events(
        DAY,
        [
            landing_zone.event(
                "p_1",
                optins=[
                    {"optin_id": "o_1", "optin_email": "j@example.com", "optin_value": True},
                    {"optin_id": "o_9", "optin_value": False},  # an optin of account a_2: its text must not leak
                ],
            )
        ],
    )
    landing_zone.load(DAY)
    optins = {r["optin_id"]: r for r in rows(landing_zone.parquet("optins", DAY))}
    assert optins["o_1"]["optin_text"] == "Get our news" and optins["o_1"]["optin_value"] is True
    assert optins["o_9"]["optin_text"] is None and optins["o_9"]["optin_name"] is None


def test_reference_names_are_attached_to_each_participation(landing_zone):
    landing_zone.write_events(DAY, [landing_zone.event("p_1"), landing_zone.event("p_2", content_id="c_2")])
    landing_zone.load(DAY)
    by_id = {r["participation_id"]: r for r in rows(landing_zone.parquet("participations", DAY))}
    assert (by_id["p_1"]["username"], by_id["p_1"]["content_name"], by_id["p_1"]["campaign_name"]) == (
        "acme",
        "Quiz",
        "Winter contest",
    )
    assert by_id["p_2"]["campaign_id"] is None and by_id["p_2"]["campaign_name"] is None


def test_blank_lines_and_crlf_line_ends_are_not_rejections(landing_zone):
    path = landing_zone.day_folder(DAY) / "crlf.ndjson"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"\r\n".join(json.dumps(landing_zone.event(f"p_{i}")).encode() for i in range(3)) + b"\r\n\n")
    load = landing_zone.load(DAY)
    assert (load.participations, load.rejected) == (3, 0)


def _day_rows(zone, table):
    return rows(zone.parquet(table, DAY))


def test_landing_files_in_time_order_are_written_as_they_stream_and_equal_the_sorted_day(landing_zone, monkeypatch):
    """In-order landing files skip the sort; the day must be exactly the one the sort would give."""
    from beop_assets.model import day_loader

    events = [
        landing_zone.event(
            f"p_{i:03d}",
            timestamp=f"2026-11-25T{i // 60:02d}:{i % 60:02d}:00.000Z",
            optins=[{"optin_id": "o_2", "optin_value": i % 2 == 0}, {"optin_id": "o_1"}],
        )
        for i in range(300)
    ]
    landing_zone.write_events(DAY, events[:150], name="a.ndjson")
    landing_zone.write_events(DAY, events[150:], name="b.ndjson.gz")
    checked = []
    real = day_loader._in_order
    monkeypatch.setattr(day_loader, "_in_order", lambda path: checked.append(real(path)) or checked[-1])
    landing_zone.load(DAY)
    assert checked == [True]  # already in order: written as streamed
    streamed = {t: _day_rows(landing_zone, t) for t in warehouse.MODEL_TABLES}
    monkeypatch.setattr(day_loader, "_in_order", lambda path: False)  # force the sort
    landing_zone.load(DAY)
    assert {t: _day_rows(landing_zone, t) for t in warehouse.MODEL_TABLES} == streamed
    assert [r["participation_id"] for r in streamed["participations"]] == [f"p_{i:03d}" for i in range(300)]
    assert len(streamed["optins"]) == 600


def test_the_duckdb_file_serves_views_over_the_parquet_days_not_a_copy(landing_zone):
    landing_zone.write_events(DAY, [landing_zone.event("p_1")])
    db_file = warehouse.database_file(landing_zone.warehouse)
    db_file.parent.mkdir(parents=True, exist_ok=True)
    with duckdb.connect(str(db_file)) as old:  # a DuckDB file written by an earlier release: a copy of the rows
        old.execute("CREATE TABLE participations AS SELECT 1 AS stale")
    landing_zone.load(DAY)
    con = duckdb.connect(str(db_file), read_only=True)
    kinds = dict(con.execute("SELECT table_name, table_type FROM information_schema.tables").fetchall())
    assert kinds == {t: "VIEW" for t in warehouse.MODEL_TABLES}
    assert con.execute("SELECT participation_id, crm_email FROM participations").fetchall() == [("p_1", None)]
    con.close()
