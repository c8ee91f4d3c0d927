"""Property: whatever the participations of two or three accounts hold, and whatever an export selects
(even another account's campaigns, contents and optins), every CSV and ndJSON file parses back to
exactly the values computed here in plain Python from the generated events, and never holds a record
of another account.

The exports are built directly as pydantic models, bypassing the registry's tenancy check: the SQL's
account filter alone must keep tenants apart (docs/file-contract.md). The days are loaded by the real loader
from real landing files; the files are read back as a customer reads them (Python's csv module per
RFC 4180, json.loads per line). The expected values follow docs/file-contract.md and the documented
choices of `crm_columns.py` (first non-empty form value, first occurrence of an optin).
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import tempfile
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from beop_assets.exports.crm_columns import (
    FIXED_COLUMNS,
    FORM_FIELD_COLUMNS,
    FORMULA_TRIGGERS,
)
from beop_assets.exports.crm_csv import build_crm_csv
from beop_assets.exports.global_ndjson import build_global_ndjson
from beop_assets.exports.registry import (
    GcsTarget,
    GlobalExport,
    SftpTarget,
    SpecificExport,
)
from beop_assets_tests.fixtures.landing import LandingZone

DAY = date(2026, 11, 25)
ACCOUNTS = ("a_1", "a_2", "a_3")
SFTP = SftpTarget(
    host="sftp.example.com", username="beop", directory="/in", password_env="UNUSED", insecure_skip_host_key_check=True
)
GCS = GcsTarget(bucket="tenant-bucket", credentials_env="UNUSED")


def campaign_of(account: str) -> str:
    return f"cmp_{account}"


def contents_of(account: str) -> list[str]:
    return [f"c_{account}_1", f"c_{account}_2"]  # the first in the account's campaign, the second in none


def optins_of(account: str) -> list[str]:
    return [f"o_{account}_1", f"o_{account}_2"]


ALL_CAMPAIGNS = [campaign_of(a) for a in ACCOUNTS] + ["cmp_unknown"]
ALL_CONTENTS = [c for a in ACCOUNTS for c in contents_of(a)] + ["c_unknown"]
ALL_OPTINS = [o for a in ACCOUNTS for o in optins_of(a)] + ["o_unknown"]

# -- strategies ------------------------------------------------------------------------------------

_unicode = st.text(st.characters(blacklist_categories=("Cs",)), max_size=10)
_tricky = st.sampled_from(
    [
        '"',
        ",",
        "\n",
        "\r\n",
        "\r",
        "\t",
        "😀",
        "=1+1",
        "+33 6",
        "-",
        "@",
        " ",
        "\\",
        "\x00",
        "\u2028",
        "é",
        '""',
        "\ufeff",
        "Ｗ",
    ]
)
TEXT = st.lists(st.one_of(_unicode, _tricky), max_size=4).map("".join)
MAYBE = st.one_of(st.none(), TEXT)


@st.composite
def events_of(draw, account: str) -> list[dict[str, Any]]:
    count = draw(st.integers(min_value=0, max_value=5))
    events = []
    for i in range(count):
        millis = draw(st.integers(min_value=0, max_value=86_399_999))
        when = datetime(DAY.year, DAY.month, DAY.day, tzinfo=UTC) + timedelta(milliseconds=millis)
        field = st.fixed_dictionaries(
            {
                "field_id": st.just("fd"),
                "field_name": MAYBE,
                "field_type": st.sampled_from(FORM_FIELD_COLUMNS + ("text", "Email", "")),
                "field_value": MAYBE,
            }
        )
        form = st.fixed_dictionaries({"form_id": TEXT, "form_name": MAYBE, "form_data": st.lists(field, max_size=4)})
        optin = st.fixed_dictionaries(
            {
                "optin_id": st.sampled_from(ALL_OPTINS),
                "optin_email": MAYBE,
                "optin_value": st.one_of(st.none(), st.booleans()),
            }
        )
        question = st.fixed_dictionaries({"question_id": TEXT, "question_text": MAYBE, "answer_text": MAYBE})
        events.append(
            {
                "participation_id": f"p_{account}_{i}",
                "timestamp": when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z",
                "account_id": account,
                "content_id": draw(st.sampled_from(contents_of(account))),
                "content_version": draw(st.one_of(st.none(), st.integers(-(10**12), 10**12))),
                "publisher_id": draw(MAYBE),
                "publisher_name": draw(MAYBE),
                "page_url": draw(MAYBE),
                "tc_string": draw(MAYBE),
                "email": draw(MAYBE),
                "questions": draw(st.one_of(st.none(), st.lists(question, max_size=2))),
                "optins": draw(st.one_of(st.none(), st.lists(optin, max_size=4))),
                "forms": draw(st.one_of(st.none(), st.lists(form, max_size=2))),
            }
        )
    return events


@st.composite
def scenarios(draw) -> dict[str, Any]:
    accounts = list(ACCOUNTS[: draw(st.integers(min_value=2, max_value=3))])
    names = {key: draw(TEXT) for key in ALL_CAMPAIGNS[:-1] + ALL_CONTENTS[:-1] + ALL_OPTINS[:-1]}
    texts = {optin: draw(MAYBE) for optin in ALL_OPTINS[:-1]}
    events = {account: draw(events_of(account)) for account in accounts}
    selections = []
    for account in accounts:
        creatives = draw(st.lists(st.sampled_from(ALL_CAMPAIGNS + ALL_CONTENTS), min_size=1, max_size=4, unique=True))
        selections.append(
            SpecificExport(
                id=f"{account.replace('_', '-')}-participations",
                account_id=account,
                mode="specific",
                type="crm-participation",
                name="Participations",
                sftp=SFTP,
                campaigns=[c for c in creatives if c.startswith("cmp_")],
                contents=[c for c in creatives if c.startswith("c_")],
                optins=draw(st.lists(st.sampled_from(ALL_OPTINS), max_size=3)),
                neutralize_formulas=draw(st.booleans()),
            )
        )
        narrow = draw(st.lists(st.sampled_from(ALL_CAMPAIGNS + ALL_CONTENTS), max_size=2, unique=True))
        selections.append(
            SpecificExport(
                id=f"{account.replace('_', '-')}-optins",
                account_id=account,
                mode="specific",
                type="crm-optin",
                name="Optins",
                sftp=SFTP,
                campaigns=[c for c in narrow if c.startswith("cmp_")],
                contents=[c for c in narrow if c.startswith("c_")],
                optins=draw(st.lists(st.sampled_from(ALL_OPTINS), min_size=1, max_size=3)),
                neutralize_formulas=draw(st.booleans()),
            )
        )
    return {"accounts": accounts, "names": names, "texts": texts, "events": events, "specific": selections}


# -- the landing zone of one example ---------------------------------------------------------------


def reference(scenario) -> dict[str, list[dict[str, Any]]]:
    names, texts = scenario["names"], scenario["texts"]
    return {
        "accounts": [{"account_id": a, "username": f"user-{a}"} for a in ACCOUNTS],
        "campaigns": [
            {"campaign_id": campaign_of(a), "account_id": a, "name": names[campaign_of(a)]} for a in ACCOUNTS
        ],
        "contents": [
            {
                "content_id": c,
                "account_id": a,
                "campaign_id": campaign_of(a) if c.endswith("_1") else None,
                "name": names[c],
                "version": 1,
            }
            for a in ACCOUNTS
            for c in contents_of(a)
        ],
        "optins": [
            {"optin_id": o, "account_id": a, "content_id": contents_of(a)[0], "name": names[o], "text": texts[o]}
            for a in ACCOUNTS
            for o in optins_of(a)
        ],
    }


# -- what SPEC says the files hold, in plain Python ------------------------------------------------


def owner(item_id: str) -> str | None:
    for account in ACCOUNTS:
        if item_id in (campaign_of(account), *contents_of(account), *optins_of(account)):
            return account
    return None


def own_events(scenario, account: str) -> list[dict[str, Any]]:
    events = scenario["events"].get(account, [])
    return sorted(events, key=lambda e: (e["timestamp"], e["participation_id"]))


def campaign_id(event) -> str | None:
    return campaign_of(event["account_id"]) if event["content_id"].endswith("_1") else None


def first_form_value(event, field_type: str) -> str | None:
    for form in event["forms"] or []:
        for field in form["form_data"] or []:
            if field["field_type"] == field_type and field["field_value"] not in (None, ""):
                return field["field_value"]
    return None


def optin_cell(event, optin_id: str) -> str:
    for optin in event["optins"] or []:
        if optin["optin_id"] == optin_id:
            return {True: "true", False: "false", None: ""}[optin["optin_value"]]
    return ""


def selected(export: SpecificExport, event) -> bool:
    in_creatives = event["content_id"] in export.contents or campaign_id(event) in export.campaigns
    if export.type == "crm-participation":
        return in_creatives
    opted_in = any(o["optin_value"] is True and o["optin_id"] in export.optins for o in event["optins"] or [])
    return opted_in and (in_creatives if (export.campaigns or export.contents) else True)


def expected_csv(scenario, export: SpecificExport) -> list[list[str]]:
    names = scenario["names"]
    headers, seen = [], set()
    for optin_id in export.optins:
        name = names.get(optin_id) or optin_id
        headers.append(f"{name} ({optin_id})" if name in seen else name)
        seen.add(name)
    rows = [list(FIXED_COLUMNS) + headers]
    for event in own_events(scenario, export.account_id):
        if not selected(export, event):
            continue
        cmp = campaign_id(event)
        values: list[str | None] = [
            event["email"] if event["email"] not in (None, "") else first_form_value(event, "email"),
            *(first_form_value(event, t) for t in FORM_FIELD_COLUMNS[1:]),
            event["content_id"],
            names[event["content_id"]],
            cmp,
            names[cmp] if cmp else None,
        ]
        if export.neutralize_formulas:
            values = [f"'{v}" if v and v[0] in FORMULA_TRIGGERS else v for v in values]
        rows.append(["" if v is None else v for v in values] + [optin_cell(event, o) for o in export.optins])
    return rows


def expected_ndjson(scenario, account: str) -> list[list]:
    names, texts = scenario["names"], scenario["texts"]
    records = []
    for e in own_events(scenario, account):
        records.append(
            [
                (
                    "questions",
                    [
                        [
                            ("question_id", q["question_id"]),
                            ("question_text", q["question_text"]),
                            ("anwser_text", q["answer_text"]),
                        ]
                        for q in e["questions"] or []
                    ],
                ),
                ("email", e["email"]),
                (
                    "optins",
                    [
                        [
                            ("optin_email", o["optin_email"]),
                            ("optin_text", texts[o["optin_id"]] if owner(o["optin_id"]) == account else None),
                            ("optin_id", o["optin_id"]),
                            ("optin_value", o["optin_value"]),
                        ]
                        for o in e["optins"] or []
                    ],
                ),
                (
                    "forms",
                    [
                        [
                            ("form_id", f["form_id"]),
                            ("form_name", f["form_name"]),
                            (
                                "form_data",
                                [
                                    [
                                        ("field_id", d["field_id"]),
                                        ("field_name", d["field_name"]),
                                        ("field_type", d["field_type"]),
                                        ("field_value", d["field_value"]),
                                    ]
                                    for d in f["form_data"]
                                ],
                            ),
                        ]
                        for f in e["forms"] or []
                    ],
                ),
                ("page_url", e["page_url"]),
                ("tc_string", e["tc_string"]),
                ("timestamp", e["timestamp"]),
                ("publisher_name", e["publisher_name"]),
                ("publisher_id", e["publisher_id"]),
                ("content_id", e["content_id"]),
                ("content_name", names[e["content_id"]]),
                ("content_version", e["content_version"]),
            ]
        )
    return records


def _pairs(pairs: list[tuple[str, Any]]) -> list:
    """json.loads hook: keep each object as its ordered (key, value) pairs, so key order is compared too."""
    return [tuple(pair) for pair in pairs]


def _as_lists(value: Any) -> Any:
    if isinstance(value, list):
        return [_as_lists(v) for v in value]
    if isinstance(value, tuple):
        return (value[0], _as_lists(value[1]))
    return value


# -- the property ----------------------------------------------------------------------------------


@settings(max_examples=25, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_every_file_holds_exactly_its_own_accounts_records(scenario):
    with tempfile.TemporaryDirectory(prefix="beop-tenants-") as folder:
        zone = LandingZone(root=Path(folder) / "landing", warehouse=Path(folder) / "warehouse")
        zone.write_reference(**reference(scenario))
        all_events = [e for events in scenario["events"].values() for e in events]
        zone.write_events(DAY, all_events)
        load = zone.load(DAY)
        assert (load.participations, load.rejected) == (len(all_events), 0), load.rejected_by_reason

        optin_names = {o: scenario["names"][o] for o in ALL_OPTINS[:-1]}
        for export in scenario["specific"]:
            out = Path(folder) / "spool" / f"{export.id}.csv"
            built = build_crm_csv(export, DAY, optin_names, out, out.name, root=zone.warehouse)
            rows = list(csv.reader(io.StringIO(out.read_bytes().decode("utf-8"), newline="")))
            expected = expected_csv(scenario, export)
            assert rows == expected, export
            assert built.rows == len(expected) - 1
            creative = rows[0].index("creative-id")
            assert all(owner(row[creative]) == export.account_id for row in rows[1:])

        for account in scenario["accounts"]:
            export = GlobalExport(id=f"{account.replace('_', '-')}-all", account_id=account, mode="global", gcs=GCS)
            out = Path(folder) / "spool" / f"{export.id}.ndjson.gz"
            built = build_global_ndjson(export, DAY, out, out.name, root=zone.warehouse)
            data = gzip.decompress(out.read_bytes())
            lines = data.split(b"\n")
            assert lines[-1] == b""  # every record ends with \n, and a newline in a value never splits one
            records = [_as_lists(json.loads(line, object_pairs_hook=_pairs)) for line in lines[:-1]]
            assert records == expected_ndjson(scenario, account)
            assert built.rows == len(records)
            assert all(owner(dict(r)["content_id"]) == account for r in records)
