"""The gzip ndJSON file of a global export, built from a day loaded by the real loader and read back the
way a customer reads it (`gzip` + `json.loads` per line): key order, values, tenancy, streaming."""

from __future__ import annotations

import gzip
import hashlib
import json
from datetime import date

import pytest

from beop_assets.exports.global_ndjson import build_global_ndjson
from beop_assets.exports.registry import GcsTarget, GlobalExport
from beop_assets.model.warehouse import DayNotLoadedError

DAY = date(2026, 11, 25)
EMPTY_DAY = date(2026, 11, 26)
KEYS = [
    "questions",
    "email",
    "optins",
    "forms",
    "page_url",
    "tc_string",
    "timestamp",
    "publisher_name",
    "publisher_id",
    "content_id",
    "content_name",
    "content_version",
]
EXPORT = GlobalExport(
    id="acme-global", account_id="a_1", mode="global", gcs=GcsTarget(bucket="acme-beop", credentials_env="KEY")
)


def build(zone, day: date = DAY, export: GlobalExport = EXPORT, **kwargs):
    out = zone.root.parent / "spool" / f"{export.id}-{day}.ndjson.gz"
    built = build_global_ndjson(export, day, out, "2026-11-26_acme.ndjson.gz", root=zone.warehouse, **kwargs)
    raw = out.read_bytes()
    text = gzip.decompress(raw).decode("utf-8")
    return built, raw, text, [json.loads(line) for line in text.splitlines()]


@pytest.fixture
def zone(landing_zone):
    z = landing_zone
    z.write_events(
        DAY,
        [
            z.event(
                "g_1",
                timestamp="2026-11-25T10:00:00.123Z",
                content_id="c_1",
                content_version=7,
                email="jane@example.com",
                page_url='https://journal.example/a?b=1&c="2"',
                tc_string="CPabc",
                publisher_id="pub_9",
                publisher_name="Le Journal — Édition 😀",
                questions=[
                    {
                        "question_id": "q_1",
                        "question_text": "Line 1\nLine 2\ttab",
                        "answer_text": 'Oui 😀 "quoted" \\ back\r\nend',
                    }
                ],
                optins=[
                    {"optin_id": "o_1", "optin_email": "jane@example.com", "optin_value": True},
                    {"optin_id": "o_2", "optin_value": False},
                    {"optin_id": "o_9", "optin_value": True},
                ],  # another account's optin: no text
                forms=[
                    {
                        "form_id": "f_1",
                        "form_name": "Contest",
                        "form_data": [
                            {
                                "field_id": "fd_1",
                                "field_name": "First name",
                                "field_type": "firstname",
                                "field_value": "Jane",
                            },
                            {"field_id": "fd_2", "field_name": "Comment", "field_type": "text", "field_value": "a\nb"},
                        ],
                    },
                    {"form_id": "f_2", "form_name": None},
                ],
            ),
            # Written after g_1 but earlier in the day; offset timestamp and microseconds, normalized to UTC ms.
            z.event(
                "g_2",
                timestamp="2026-11-25T10:30:00.987654+01:00",
                content_id="c_2",
                email=None,
                page_url=None,
                publisher_id=None,
                publisher_name=None,
                content_version=None,
            ),
            z.event(
                "g_3", timestamp="2026-11-25T11:00:00Z", account_id="a_2", content_id="c_9", email="globex@example.com"
            ),
        ],
    )
    assert z.load(DAY).participations == 3
    z.load(EMPTY_DAY)
    return z


def test_lines_keys_and_values(zone):
    built, raw, text, lines = build(zone)

    assert [list(obj) for obj in lines] == [KEYS, KEYS]  # only account a_1; exact key order
    first, second = lines[1], lines[0]  # g_2 happened first (09:30 UTC)
    assert [list(q) for q in first["questions"]] == [["question_id", "question_text", "anwser_text"]]
    assert first["questions"][0] == {
        "question_id": "q_1",
        "question_text": "Line 1\nLine 2\ttab",
        "anwser_text": 'Oui 😀 "quoted" \\ back\r\nend',
    }
    optin_keys = ["optin_email", "optin_text", "optin_id", "optin_value"]
    assert [list(o) for o in first["optins"]] == [optin_keys] * 3
    assert first["optins"] == [
        {"optin_email": "jane@example.com", "optin_text": "Get our news", "optin_id": "o_1", "optin_value": True},
        {"optin_email": None, "optin_text": "Partner offers", "optin_id": "o_2", "optin_value": False},
        {"optin_email": None, "optin_text": None, "optin_id": "o_9", "optin_value": True},
    ]
    assert [list(f) for f in first["forms"]] == [["form_id", "form_name", "form_data"]] * 2
    assert [list(d) for d in first["forms"][0]["form_data"]] == [
        ["field_id", "field_name", "field_type", "field_value"]
    ] * 2
    assert first["forms"] == [
        {
            "form_id": "f_1",
            "form_name": "Contest",
            "form_data": [
                {"field_id": "fd_1", "field_name": "First name", "field_type": "firstname", "field_value": "Jane"},
                {"field_id": "fd_2", "field_name": "Comment", "field_type": "text", "field_value": "a\nb"},
            ],
        },
        {"form_id": "f_2", "form_name": None, "form_data": []},
    ]
    assert {k: first[k] for k in KEYS[4:]} == {
        "page_url": 'https://journal.example/a?b=1&c="2"',
        "tc_string": "CPabc",
        "timestamp": "2026-11-25T10:00:00.123Z",
        "publisher_name": "Le Journal — Édition 😀",
        "publisher_id": "pub_9",
        "content_id": "c_1",
        "content_name": "Quiz",
        "content_version": 7,
    }
    assert first["email"] == "jane@example.com"

    assert second == {
        "questions": [],
        "email": None,
        "optins": [],
        "forms": [],
        "page_url": None,
        "tc_string": None,
        "timestamp": "2026-11-25T09:30:00.987Z",
        "publisher_name": None,
        "publisher_id": None,
        "content_id": "c_2",
        "content_name": "Poll",
        "content_version": None,
    }

    # One record per line: values' newlines are escaped, Unicode is written raw (not \u-escaped).
    assert text.endswith("\n") and text.count("\n") == 2
    assert "\\n" in text and "\\r\\n" in text and "😀" in text and "\\ud83d" not in text
    assert (built.rows, built.bytes, built.sha256) == (2, len(raw), hashlib.sha256(raw).hexdigest())
    assert built.file_name == "2026-11-26_acme.ndjson.gz" and built.export_id == "acme-global"


def test_only_the_exports_account(zone):
    other = GlobalExport(
        id="globex-global", account_id="a_2", mode="global", gcs=GcsTarget(bucket="globex", credentials_env="KEY")
    )
    _, _, _, lines = build(zone, export=other)
    assert [(o["email"], o["content_id"], o["content_name"]) for o in lines] == [
        ("globex@example.com", "c_9", "Globex quiz")
    ]


def test_empty_day_is_a_valid_empty_gzip(zone):
    for threads in (1, 2):
        built, raw, text, lines = build(zone, EMPTY_DAY, threads=threads)
        assert raw[:2] == b"\x1f\x8b" and text == "" and built.rows == 0
        with gzip.open(built.path, "rb") as handle:  # a streaming reader agrees
            assert handle.read() == b""


def test_day_not_loaded_is_an_error(zone):
    with pytest.raises(DayNotLoadedError):
        build(zone, date(2026, 11, 20))


def test_unsupported_level_is_refused(zone):
    with pytest.raises(ValueError, match="0 to 9"):
        build(zone, level=10)


def test_many_batches_stream_every_row_in_order(landing_zone):
    zone = landing_zone
    count = 1000
    zone.write_events(
        DAY,
        [
            zone.event(
                f"p_{i:05d}",
                timestamp=f"2026-11-25T{i // 3600:02d}:{i // 60 % 60:02d}:{i % 60:02d}.000Z",
                email=f"user{i}@example.com",
                questions=[{"question_id": "q", "question_text": "é\n" * (i % 5), "answer_text": str(i)}],
            )
            for i in reversed(range(count))
        ],
    )
    zone.load(DAY)
    outputs = {}
    for threads, level in ((1, 0), (2, 1), (2, 3), (1, 5), (2, 9)):
        built, raw, text, lines = build(zone, batch_size=7, threads=threads, level=level)
        assert built.rows == count == len(lines)
        assert [o["questions"][0]["anwser_text"] for o in lines] == [str(i) for i in range(count)]
        outputs[(threads, level)] = text
    assert len(set(outputs.values())) == 1  # levels and threads change the bytes, never the content
    _, _, default_text, _ = build(zone)
    assert default_text == outputs[(1, 0)]
