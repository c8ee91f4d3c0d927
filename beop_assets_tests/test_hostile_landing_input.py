"""Hostile and broken landing files: each bad line is rejected (kept with its reason) or loaded as
docs/landing-zone.md says, every line is counted, and nothing stops the rest of the day from loading.

Every test loads with the real loader (`landing_zone.load`) and asserts the exact counts of the load
(`DayLoad`): lines read, participations loaded, rejections by reason. The per-reason rules themselves
(invalid JSON, missing fields, unknown account...) are in `test_day_loader.py`.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import random
import zlib
from datetime import date

import duckdb
import pytest

from beop_assets.exports.crm_csv import build_crm_csv
from beop_assets.exports.global_ndjson import NDJSON_KEYS, build_global_ndjson
from beop_assets.exports.registry import (
    GcsTarget,
    GlobalExport,
    SftpTarget,
    SpecificExport,
)

pytestmark = pytest.mark.timeout(180)

DAY = date(2026, 11, 25)
FOLDER = "participations/date=2026-11-25"
TEN_MB = 10 * 1024 * 1024


def table(zone, name: str, sql: str = "SELECT * FROM t ORDER BY ALL") -> list[dict]:
    con = duckdb.connect()
    try:
        con.execute(f"CREATE VIEW t AS SELECT * FROM read_parquet('{zone.parquet(name, DAY)}')")
        cursor = con.execute(sql)
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=False)) for row in cursor.fetchall()]
    finally:
        con.close()


def loaded_ids(zone) -> list[str]:
    return [r["participation_id"] for r in table(zone, "participations", "SELECT participation_id FROM t")]


def rejected(zone) -> list[dict]:
    return table(
        zone,
        "rejected_participations",
        "SELECT source_file, line_number, reason, detail FROM t ORDER BY source_file, line_number",
    )


def good_lines(zone, count: int, prefix: str = "p") -> list[str]:
    return [
        json.dumps(zone.event(f"{prefix}_{i:04d}", page_url=f"https://journal.example/{i}/" + "x" * 200))
        for i in range(count)
    ]


# -- files that cannot be read whole ---------------------------------------------------------------


def test_truncated_gzip_keeps_every_line_before_the_cut_and_counts_the_cut(landing_zone):
    lines = good_lines(landing_zone, 200)
    data = gzip.compress("".join(line + "\n" for line in lines).encode(), mtime=0)
    cut = data[: len(data) // 2]  # the middle of the deflate stream: a download that stopped
    folder = landing_zone.day_folder(DAY)
    folder.mkdir(parents=True)
    (folder / "cut.ndjson.gz").write_bytes(cut)
    landing_zone.write_events(DAY, [landing_zone.event("p_other_file")], name="other.ndjson")
    # Every complete line that the bytes before the cut hold, decompressed independently.
    complete = zlib.decompressobj(wbits=31).decompress(cut).count(b"\n")
    assert 0 < complete < 200

    load = landing_zone.load(DAY)

    assert load.participations == complete + 1
    assert load.rejected_by_reason == {"unreadable_line": 1}
    assert load.lines == complete + 1 + 1
    assert load.lines_by_file == {f"{FOLDER}/cut.ndjson.gz": complete + 1, f"{FOLDER}/other.ndjson": 1}
    assert loaded_ids(landing_zone) == [f"p_{i:04d}" for i in range(complete)] + ["p_other_file"]
    (fault,) = rejected(landing_zone)
    assert (fault["source_file"], fault["line_number"]) == (f"{FOLDER}/cut.ndjson.gz", complete + 1)
    assert f"file unreadable after line {complete}" in fault["detail"]


def _python_verdict(raw: bytes) -> str:
    """What docs/landing-zone.md says of one line, decided here without the product's code."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return "unreadable_line"
    try:
        value = json.loads(text)
    except ValueError:
        return "invalid_json"
    return "not_an_object" if not isinstance(value, dict) else "accepted?"


def test_binary_garbage_file_is_rejected_line_by_line_and_the_good_file_next_to_it_loads(landing_zone):
    garbage = random.Random(20261125).randbytes(64 * 1024)
    folder = landing_zone.day_folder(DAY)
    folder.mkdir(parents=True)
    (folder / "garbage.ndjson").write_bytes(garbage)
    landing_zone.write_events(DAY, [landing_zone.event(f"p_{i}") for i in range(3)], name="good.ndjson")
    lines = [raw.rstrip(b"\r\n") for raw in garbage.split(b"\n")]
    expected: dict[str, int] = {}
    for raw in lines:
        if raw.strip():  # blank lines are not records
            verdict = _python_verdict(raw)
            expected[verdict] = expected.get(verdict, 0) + 1
    garbage_lines = sum(expected.values())
    assert garbage_lines > 200 and "accepted?" not in expected

    load = landing_zone.load(DAY)

    assert load.participations == 3
    assert load.rejected_by_reason == expected
    assert load.rejected == garbage_lines
    assert load.lines_by_file == {f"{FOLDER}/garbage.ndjson": garbage_lines, f"{FOLDER}/good.ndjson": 3}


def test_an_invalid_utf8_line_among_good_ones_is_rejected_alone_with_its_line_number(landing_zone):
    good = good_lines(landing_zone, 4)
    bad = b'{"participation_id": "p_bad", "email": "caf\xe9@example.com"}'  # latin-1, not UTF-8
    body = (
        b"".join(line.encode() + b"\n" for line in good[:2])
        + bad
        + b"\n"
        + b"".join(line.encode() + b"\n" for line in good[2:])
    )
    folder = landing_zone.day_folder(DAY)
    folder.mkdir(parents=True)
    (folder / "mixed.ndjson").write_bytes(body)

    load = landing_zone.load(DAY)

    assert (load.lines, load.participations, load.rejected_by_reason) == (5, 4, {"unreadable_line": 1})
    assert loaded_ids(landing_zone) == ["p_0000", "p_0001", "p_0002", "p_0003"]
    (fault,) = rejected(landing_zone)
    assert fault["line_number"] == 3 and "invalid UTF-8" in fault["detail"]


def test_text_that_looks_like_an_escape_is_loaded_whole(landing_zone):
    """A value holding backslash-zero as text (JSON `"\\\\0"`) once cut its line short, which was then
    rejected as invalid JSON: every such line is loaded, with its value as it was."""
    texts = ["\\0", "a\\0b", "\\x01", "\\n", "\\\\0"]
    events = [landing_zone.event(f"p_{i}", email=text) for i, text in enumerate(texts)]
    folder = landing_zone.day_folder(DAY)
    folder.mkdir(parents=True)
    (folder / "escapes.ndjson").write_text("".join(json.dumps(e) + "\n" for e in events))

    load = landing_zone.load(DAY)

    assert (load.lines, load.participations, load.rejected_by_reason) == (5, 5, {})
    emails = table(landing_zone, "participations", "SELECT email FROM t ORDER BY participation_id")
    assert [r["email"] for r in emails] == texts


# -- lines that are too much -----------------------------------------------------------------------


def test_a_10_mb_valid_line_is_loaded_and_a_10_mb_invalid_one_is_rejected(landing_zone):
    answer = "y" * TEN_MB
    big = landing_zone.event(
        "p_big", questions=[{"question_id": "q_1", "question_text": "Why?", "answer_text": answer}]
    )
    landing_zone.write_events(
        DAY,
        [
            landing_zone.event("p_before"),
            big,
            "{" + "z" * TEN_MB,  # 10 MB that is not JSON
            landing_zone.event("p_after"),
        ],
    )

    load = landing_zone.load(DAY)

    assert (load.lines, load.participations, load.rejected_by_reason) == (4, 3, {"invalid_json": 1})
    assert sorted(loaded_ids(landing_zone)) == ["p_after", "p_before", "p_big"]
    (stored,) = table(
        landing_zone,
        "participations",
        "SELECT length(questions[1].answer_text) AS n FROM t WHERE participation_id = 'p_big'",
    )
    assert stored["n"] == TEN_MB
    (fault,) = rejected(landing_zone)
    assert fault["line_number"] == 3


def test_deeply_nested_json_is_loaded_without_crashing(landing_zone):
    deep = "[" * 10_000 + "]" * 10_000
    deep_object = '{"a":' * 10_000 + "1" + "}" * 10_000
    extra = json.dumps(landing_zone.event("p_deep_extra"))[:-1] + f', "extra": {deep}, "more": {deep_object}}}'
    in_questions = json.dumps(landing_zone.event("p_deep_questions"))[:-1] + f', "questions": {deep}}}'
    landing_zone.write_events(DAY, [landing_zone.event("p_plain"), extra, in_questions])

    load = landing_zone.load(DAY)

    # Unknown keys are ignored whatever their depth; a known list field of the wrong shape is read
    # leniently (events.py): the participation is loaded, the malformed value does not reject it.
    assert (load.lines, load.participations, load.rejected) == (3, 3, 0)
    rows = {r["participation_id"]: r for r in table(landing_zone, "participations")}
    assert sorted(rows) == ["p_deep_extra", "p_deep_questions", "p_plain"]
    assert rows["p_deep_extra"]["content_id"] == "c_1" and rows["p_deep_extra"]["questions"] == []
    # And the export of that day is still well-formed JSON, one line each.
    lines = _ndjson(landing_zone)
    assert len(lines) == 3 and all(list(record) == NDJSON_KEYS for record in lines)


# -- lines of another day --------------------------------------------------------------------------


def test_timestamps_outside_the_folders_utc_day_are_rejected(landing_zone):
    landing_zone.write_events(
        DAY,
        [
            landing_zone.event("p_first_ms", timestamp="2026-11-25T00:00:00.000Z"),
            landing_zone.event("p_last_ms", timestamp="2026-11-25T23:59:59.999Z"),
            landing_zone.event("p_day_before", timestamp="2026-11-24T23:59:59.999Z"),
            landing_zone.event("p_day_after", timestamp="2026-11-26T00:00:00.000Z"),
            landing_zone.event("p_local_evening", timestamp="2026-11-25T23:30:00-02:00"),  # 01:30 UTC the 26th
            landing_zone.event("p_epoch", timestamp="1970-01-01T00:00:00Z"),
            landing_zone.event("p_far_future", timestamp="9999-12-31T23:59:59Z"),
        ],
    )

    load = landing_zone.load(DAY)

    assert (load.lines, load.participations, load.rejected_by_reason) == (7, 2, {"timestamp_outside_day": 5})
    assert sorted(loaded_ids(landing_zone)) == ["p_first_ms", "p_last_ms"]
    assert all("is not in the folder's UTC day 2026-11-25" in r["detail"] for r in rejected(landing_zone))


# -- every control character, loaded and written back ------------------------------------------------

CONTROL = "<" + "".join(chr(c) for c in range(0x20)) + "\x7f\u2028\u2029\u0085>"


def _ndjson(zone) -> list[dict]:
    export = GlobalExport(
        id="acme-all", account_id="a_1", mode="global", gcs=GcsTarget(bucket="acme-beop", credentials_env="UNUSED")
    )
    out = zone.root.parent / "spool" / "acme-all.ndjson.gz"
    build_global_ndjson(export, DAY, out, out.name, root=zone.warehouse)
    data = gzip.decompress(out.read_bytes())
    assert data == b"" or data.endswith(b"\n")
    return [json.loads(line) for line in data.split(b"\n")[:-1]]  # split on \n only, as SPEC 4 promises


def test_every_control_character_is_loaded_and_written_back_exactly(landing_zone):
    event = landing_zone.event(
        "p_ctrl",
        email=CONTROL,
        publisher_name=CONTROL,
        page_url=CONTROL,
        tc_string=CONTROL,
        questions=[{"question_id": "q_1", "question_text": CONTROL, "answer_text": CONTROL}],
        forms=[
            {
                "form_id": "f_1",
                "form_name": CONTROL,
                "form_data": [
                    {"field_id": "fd_1", "field_name": CONTROL, "field_type": "firstname", "field_value": CONTROL},
                    {"field_id": "fd_2", "field_name": "City", "field_type": "address-city", "field_value": CONTROL},
                ],
            }
        ],
    )
    source = json.dumps(event)  # every control character is \u-escaped in the landing file
    assert all(chr(c) not in source for c in range(0x20))
    landing_zone.write_events(DAY, [source, landing_zone.event("p_plain")])

    load = landing_zone.load(DAY)
    assert (load.lines, load.participations, load.rejected) == (2, 2, 0)

    # CSV, read back as a customer reads RFC 4180 (Python's csv module).
    export = SpecificExport(
        id="acme-crm",
        account_id="a_1",
        mode="specific",
        type="crm-participation",
        name="Control",
        campaigns=["cmp_1"],
        sftp=SftpTarget(
            host="sftp.example.com",
            username="u",
            directory="/in",
            password_env="UNUSED",
            insecure_skip_host_key_check=True,
        ),
    )
    out = landing_zone.root.parent / "spool" / "control.csv"
    built = build_crm_csv(export, DAY, {}, out, out.name, root=landing_zone.warehouse)
    header, *records = list(csv.reader(io.StringIO(out.read_bytes().decode("utf-8"), newline="")))
    assert built.rows == 2 and len(records) == 2
    by_id = {row[header.index("email")]: dict(zip(header, row, strict=False)) for row in records}
    row = by_id[CONTROL]
    assert (row["firstname"], row["address-city"], row["creative-id"]) == (CONTROL, CONTROL, "c_1")

    # ndJSON: each record one line, every value back exactly.
    records = {r["email"]: r for r in _ndjson(landing_zone)}
    assert len(records) == 2
    record = records[CONTROL]
    assert record["publisher_name"] == record["page_url"] == record["tc_string"] == CONTROL
    assert record["questions"] == [{"question_id": "q_1", "question_text": CONTROL, "anwser_text": CONTROL}]
    assert record["forms"][0]["form_name"] == CONTROL
    assert [d["field_value"] for d in record["forms"][0]["form_data"]] == [CONTROL, CONTROL]


# -- odd but harmless files ------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [False, True])
def test_a_file_with_a_utf8_bom_loads_every_line(landing_zone, gz):
    body = b"\xef\xbb\xbf" + "".join(line + "\n" for line in good_lines(landing_zone, 3)).encode()
    folder = landing_zone.day_folder(DAY)
    folder.mkdir(parents=True)
    name = "bom.ndjson.gz" if gz else "bom.ndjson"
    (folder / name).write_bytes(gzip.compress(body) if gz else body)

    load = landing_zone.load(DAY)

    assert (load.lines, load.participations, load.rejected) == (3, 3, 0)
    assert loaded_ids(landing_zone) == ["p_0000", "p_0001", "p_0002"]


def test_a_day_whose_only_file_is_empty_loads_as_an_empty_day(landing_zone):
    folder = landing_zone.day_folder(DAY)
    folder.mkdir(parents=True)
    (folder / "empty.ndjson").write_bytes(b"")

    load = landing_zone.load(DAY)

    assert (load.files, load.lines, load.participations, load.optins, load.rejected) == (
        [f"{FOLDER}/empty.ndjson"],
        0,
        0,
        0,
        0,
    )
    assert load.lines_by_file == {f"{FOLDER}/empty.ndjson": 0}
    assert loaded_ids(landing_zone) == [] and rejected(landing_zone) == []
    assert _ndjson(landing_zone) == []  # the day exists: exports deliver an empty file, not an error
