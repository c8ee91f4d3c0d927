"""The CSV file of a specific export, built from a day loaded by the real loader and read back the way a
customer reads it (Python's `csv` module, RFC 4180): header, rows, values, tenancy and bytes on disk."""

from __future__ import annotations

import csv
import hashlib
import io
from datetime import date

import duckdb
import pytest

from beop_assets.exports.crm_columns import FIXED_COLUMNS, has_stored_crm_columns, optin_headers
from beop_assets.exports.crm_csv import build_crm_csv
from beop_assets.exports.registry import SftpTarget, SpecificExport
from beop_assets.model import warehouse
from beop_assets.model.warehouse import DayNotLoadedError

DAY = date(2026, 11, 25)
EMPTY_DAY = date(2026, 11, 26)
SFTP = SftpTarget(
    host="sftp.example.com", username="beop", directory="/in", password_env="PW", insecure_skip_host_key_check=True
)

REFERENCE = {
    "accounts": [{"account_id": "a_1", "username": "acme"}, {"account_id": "a_2", "username": "globex"}],
    "campaigns": [
        {"campaign_id": "cmp_1", "account_id": "a_1", "name": 'Winter, "contest"'},
        {"campaign_id": "cmp_2", "account_id": "a_2", "name": "Globex campaign"},
    ],
    "contents": [
        {"content_id": "c_1", "account_id": "a_1", "campaign_id": "cmp_1", "name": "Quiz", "version": 3},
        {"content_id": "c_2", "account_id": "a_1", "campaign_id": None, "name": "Poll", "version": 1},
        {"content_id": "c_3", "account_id": "a_1", "campaign_id": None, "name": "Unselected", "version": 1},
        {"content_id": "c_9", "account_id": "a_2", "campaign_id": "cmp_2", "name": "Globex quiz", "version": 2},
    ],
    "optins": [
        {"optin_id": "o_1", "account_id": "a_1", "content_id": "c_1", "name": "Newsletter", "text": "News"},
        {"optin_id": "o_2", "account_id": "a_1", "content_id": "c_2", "name": "Newsletter", "text": "Also news"},
        {"optin_id": "o_3", "account_id": "a_1", "content_id": "c_3", "name": 'Partners, "best" é\n2', "text": "P"},
        {"optin_id": "o_9", "account_id": "a_2", "content_id": "c_9", "name": "Globex news", "text": "G"},
    ],
}
OPTIN_NAMES = {o["optin_id"]: o["name"] for o in REFERENCE["optins"]}


def field(field_type: str, value: str | None, field_id: str = "fd") -> dict:
    return {"field_id": field_id, "field_name": field_type.title(), "field_type": field_type, "field_value": value}


def events(zone) -> list[dict]:
    """Written in this order; the timestamps order them p_2, p_1, p_3, p_4 (and p_5 of account a_2)."""
    return [
        zone.event(
            "p_1",
            timestamp="2026-11-25T10:00:00.000Z",
            content_id="c_1",
            email="jane@example.com",
            forms=[
                {
                    "form_id": "f_1",
                    "form_name": "Contest",
                    "form_data": [
                        field("text", "not a CRM column"),
                        field("firstname", "Jane"),
                        field("lastname", 'O"Neil, Jr.'),
                        field("phone", "+33 6 12 34 56 78"),
                        field("gender", "f"),
                        field("birthdate", "1990-01-02"),
                        field("address-line-1", "1 rue X\nBât. B"),
                        field("address-line-2", "\tTab start"),
                        field("address-zip-code", "42000"),
                        field("address-city", "Saint-Étienne 😀"),
                        field("address-country", "FR"),
                        field("email", "form-ignored@example.com"),
                    ],
                },
                {"form_id": "f_2", "form_name": "Second", "form_data": [field("firstname", "Other")]},
            ],
            optins=[
                {"optin_id": "o_1", "optin_email": "jane@example.com", "optin_value": True},
                {"optin_id": "o_2", "optin_email": "jane@example.com", "optin_value": False},
            ],
        ),
        zone.event(
            "p_2",
            timestamp="2026-11-25T09:00:00.000Z",
            content_id="c_2",  # no email: the form's email
            forms=[
                {
                    "form_id": "f_1",
                    "form_name": "A",
                    "form_data": [field("email", ""), field("firstname", ""), field("phone", '=HYPERLINK("http://x")')],
                },
                {
                    "form_id": "f_2",
                    "form_name": "B",
                    "form_data": [field("email", "form@example.com"), field("firstname", "Bob")],
                },
            ],
            optins=[{"optin_id": "o_2", "optin_value": True}, {"optin_id": "o_2", "optin_value": False}],
        ),
        zone.event(
            "p_3",
            timestamp="2026-11-25T11:00:00.000Z",
            content_id="c_3",
            email="-minus@example.com",
            optins=[{"optin_id": "o_3", "optin_value": True}],
        ),
        zone.event(
            "p_4",
            timestamp="2026-11-25T12:00:00.000Z",
            content_id="c_1",
            email="",
            forms=None,
            optins=[{"optin_id": "o_1", "optin_value": False}, {"optin_id": "o_2", "optin_value": False}],
        ),
        zone.event(
            "p_5",
            timestamp="2026-11-25T08:00:00.000Z",
            account_id="a_2",
            content_id="c_9",
            email="globex-user@example.com",
            optins=[{"optin_id": "o_9", "optin_value": True}, {"optin_id": "o_1", "optin_value": True}],
        ),
    ]


EMPTY = dict.fromkeys(FIXED_COLUMNS, "")
ROW_P1 = {
    **EMPTY,
    "email": "jane@example.com",
    "phone": "+33 6 12 34 56 78",
    "firstname": "Jane",
    "lastname": 'O"Neil, Jr.',
    "gender": "f",
    "birthdate": "1990-01-02",
    "address-line-1": "1 rue X\nBât. B",
    "address-line-2": "\tTab start",
    "address-zip-code": "42000",
    "address-city": "Saint-Étienne 😀",
    "address-country": "FR",
    "creative-id": "c_1",
    "creative-name": "Quiz",
    "campaign-id": "cmp_1",
    "campaign-name": 'Winter, "contest"',
}
ROW_P2 = {
    **EMPTY,
    "email": "form@example.com",
    "phone": '=HYPERLINK("http://x")',
    "firstname": "Bob",
    "creative-id": "c_2",
    "creative-name": "Poll",
}
ROW_P3 = {**EMPTY, "email": "-minus@example.com", "creative-id": "c_3", "creative-name": "Unselected"}
ROW_P4 = {
    **EMPTY,
    "creative-id": "c_1",
    "creative-name": "Quiz",
    "campaign-id": "cmp_1",
    "campaign-name": 'Winter, "contest"',
}


@pytest.fixture
def zone(landing_zone):
    landing_zone.write_reference(**REFERENCE)
    landing_zone.write_events(DAY, events(landing_zone))
    load = landing_zone.load(DAY)
    assert (load.participations, load.rejected) == (5, 0)
    landing_zone.load(EMPTY_DAY)  # loaded, but nobody participated
    return landing_zone


def export(**fields) -> SpecificExport:
    """Built directly, without the registry's tenancy check: the SQL filter alone must hold."""
    values = {
        "id": "acme-crm",
        "account_id": "a_1",
        "mode": "specific",
        "type": "crm-participation",
        "name": "My export",
        "sftp": SFTP,
    }
    values.update(fields)
    return SpecificExport(**values)


def build(zone, spec: SpecificExport, day: date = DAY, **kwargs):
    out = zone.root.parent / "spool" / f"{spec.id}-{day}.csv"
    built = build_crm_csv(spec, day, OPTIN_NAMES, out, "final.csv", root=zone.warehouse, **kwargs)
    raw = out.read_bytes()
    rows = list(csv.reader(io.StringIO(raw.decode("utf-8"), newline="")))
    return built, raw, rows[0], [dict(zip(rows[0], r, strict=True)) for r in rows[1:]]


def test_optin_headers_rule():
    names = {"o_1": "News", "o_2": "News", "o_3": "Partners", "o_4": "News", "o_5": ""}
    assert optin_headers(["o_1", "o_2", "o_3", "o_4", "o_5", "o_6"], names) == [
        "News",
        "News (o_2)",
        "Partners",
        "News (o_4)",
        "o_5",
        "o_6",
    ]
    assert optin_headers(["o_2", "o_1"], names) == ["News", "News (o_1)"]  # the export's order decides


def test_crm_participation_file(zone):
    spec = export(contents=["c_2"], campaigns=["cmp_1"], optins=["o_1", "o_2", "o_3"])
    built, raw, header, rows = build(zone, spec)

    assert header == list(FIXED_COLUMNS) + ["Newsletter", "Newsletter (o_2)", 'Partners, "best" é\n2']
    # c_2 (no campaign) by content, c_1 by its campaign; c_3 is not selected; Parquet (timestamp) order.
    opt = ("Newsletter", "Newsletter (o_2)", 'Partners, "best" é\n2')
    assert rows == [
        {**ROW_P2, **dict(zip(opt, ("", "true", ""), strict=False))},  # o_2 twice: the first (true) wins
        {**ROW_P1, **dict(zip(opt, ("true", "false", ""), strict=False))},
        {**ROW_P4, **dict(zip(opt, ("false", "false", ""), strict=False))},
    ]
    assert (built.rows, built.bytes, built.file_name) == (3, len(raw), "final.csv")
    assert built.sha256 == hashlib.sha256(raw).hexdigest()
    assert built.export_id == "acme-crm" and built.day == DAY


def test_bytes_on_disk_utf8_no_bom_crlf_and_quoting(zone):
    spec = export(contents=["c_2"], campaigns=["cmp_1"], optins=["o_1", "o_2", "o_3"])
    _, raw, _, rows = build(zone, spec)

    assert not raw.startswith(b"\xef\xbb\xbf") and raw.startswith(b'"email","phone",')
    raw.decode("utf-8")  # strict
    # Every record ends with CRLF; the two newlines inside values (one header, one address) stay bare LF
    # inside their quoted fields.
    assert raw.endswith(b"\r\n") and raw.count(b"\r\n") == 1 + len(rows)
    assert raw.replace(b"\r\n", b"").count(b"\n") == 2
    assert b'"Partners, ""best"" \xc3\xa9\n2"' in raw
    assert '"1 rue X\nBât. B"'.encode() in raw and b'"O""Neil, Jr."' in raw
    # Bare booleans; an absent optin is an empty field.
    assert raw.split(b"\r\n")[1].endswith(b",true,") and b",false,false," in raw


def test_crm_optin_selects_participations_that_opted_in(zone):
    _, _, header, rows = build(zone, export(type="crm-optin", optins=["o_1", "o_3"]))
    assert header == list(FIXED_COLUMNS) + ["Newsletter", 'Partners, "best" é\n2']
    # p_1 said yes to o_1, p_3 yes to o_3; p_2 only to o_2 (not selected); p_4 said no; p_5 is a_2's.
    assert [(r["email"], r["Newsletter"], r['Partners, "best" é\n2']) for r in rows] == [
        ("jane@example.com", "true", ""),
        ("-minus@example.com", "", "true"),
    ]
    assert rows[1] == {**ROW_P3, "Newsletter": "", 'Partners, "best" é\n2': "true"}


def test_crm_optin_narrowed_by_campaigns_and_contents(zone):
    _, _, _, rows = build(zone, export(type="crm-optin", optins=["o_1", "o_3"], campaigns=["cmp_1"]))
    assert [r["email"] for r in rows] == ["jane@example.com"]  # p_3 (c_3, no campaign) is left out
    _, _, _, rows = build(zone, export(type="crm-optin", optins=["o_1", "o_3"], contents=["c_3"]))
    assert [r["email"] for r in rows] == ["-minus@example.com"]


def test_another_accounts_ids_never_bring_its_rows(zone):
    # An a_1 export that (bypassing the registry) names a_2's content, campaign and optin.
    _, raw, header, rows = build(zone, export(contents=["c_9"], campaigns=["cmp_2"], optins=["o_9"]))
    assert rows == [] and header[-1] == "Globex news"
    _, _, _, rows = build(zone, export(type="crm-optin", optins=["o_9", "o_1"]))
    assert "globex-user@example.com" not in [r["email"] for r in rows]
    assert [r["email"] for r in rows] == ["jane@example.com"]
    # Positive control: the same selection for its own account does deliver the row.
    _, _, _, rows = build(zone, export(account_id="a_2", contents=["c_9"], optins=["o_9"]))
    assert [(r["email"], r["campaign-name"], r["Globex news"]) for r in rows] == [
        ("globex-user@example.com", "Globex campaign", "true")
    ]


def test_empty_day_is_the_header_alone(zone):
    spec = export(campaigns=["cmp_1"], optins=["o_1"])
    built, raw, header, rows = build(zone, spec, EMPTY_DAY)
    assert rows == [] and built.rows == 0
    assert raw == (",".join(f'"{c}"' for c in header) + "\r\n").encode()
    assert header == list(FIXED_COLUMNS) + ["Newsletter"]


def test_day_not_loaded_is_an_error_not_an_empty_file(zone):
    spec = export(campaigns=["cmp_1"])
    with pytest.raises(DayNotLoadedError):
        build_crm_csv(spec, date(2026, 11, 20), OPTIN_NAMES, zone.root.parent / "x.csv", "x.csv", root=zone.warehouse)
    assert not (zone.root.parent / "x.csv").exists()


def test_formula_neutralization_is_opt_in(zone):
    selection = dict(contents=["c_2", "c_3"], campaigns=["cmp_1"], optins=["o_1"])
    _, _, _, plain = build(zone, export(**selection))
    assert [r["phone"] for r in plain] == ['=HYPERLINK("http://x")', "+33 6 12 34 56 78", "", ""]
    assert plain[1]["address-line-2"] == "\tTab start" and plain[2]["email"] == "-minus@example.com"

    _, _, header, safe = build(zone, export(neutralize_formulas=True, **selection))
    assert [r["phone"] for r in safe] == ['\'=HYPERLINK("http://x")', "'+33 6 12 34 56 78", "", ""]
    assert safe[1]["address-line-2"] == "'\tTab start" and safe[2]["email"] == "'-minus@example.com"
    assert safe[1]["email"] == "jane@example.com" and safe[1]["Newsletter"] == "true"
    assert header[-1] == "Newsletter"


def test_small_batches_write_the_same_file(zone):
    spec = export(contents=["c_2", "c_3"], campaigns=["cmp_1"], optins=["o_1", "o_2"])
    one, raw_one, _, _ = build(zone, spec, batch_size=1)
    many, raw_many, _, _ = build(zone, spec)
    assert raw_one == raw_many and one.rows == many.rows == 4


@pytest.mark.parametrize("neutralize", [False, True])
def test_stored_typed_columns_give_the_bytes_of_the_derivation(zone, neutralize):
    """The loader stores the typed columns once; reading them gives the file deriving them would give."""
    spec = export(
        contents=["c_2", "c_3"], campaigns=["cmp_1"], optins=["o_1", "o_2", "o_3"], neutralize_formulas=neutralize
    )
    stored, raw_stored, _, _ = build(zone, spec)
    derived, raw_derived, _, _ = build(zone, spec, derive_typed_columns=True)
    assert raw_stored == raw_derived and stored.rows == derived.rows == 4


def test_a_day_loaded_without_the_stored_columns_is_still_exported(zone, tmp_path):
    """A day loaded by an earlier release has no `crm_*` columns: the export derives them, same bytes."""
    spec = export(contents=["c_2"], campaigns=["cmp_1"], optins=["o_1"])
    _, before, _, _ = build(zone, spec)
    day_file = warehouse.loaded_day_file("participations", DAY, zone.warehouse)
    old = tmp_path / "old.parquet"
    con = duckdb.connect()
    con.execute(
        f"COPY (SELECT COLUMNS(lambda c: NOT starts_with(c, 'crm_')) FROM read_parquet('{day_file}', hive_partitioning = false)) "
        f"TO '{old}' (FORMAT parquet)"
    )
    con.close()
    warehouse.replace_file(old, warehouse.day_file("participations", DAY, zone.warehouse))
    assert not has_stored_crm_columns(warehouse.loaded_day_file("participations", DAY, zone.warehouse))
    _, after, _, _ = build(zone, spec)
    assert after == before
