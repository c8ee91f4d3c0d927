"""The demo data generator writes a landing zone that follows docs/landing-zone.md to the letter."""

from __future__ import annotations

import gzip
import hashlib
import json
import re
import tomllib
from collections import Counter
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

from beop_assets.demo import generate
from beop_assets.demo.generate import GenerationSummary, generate_day

DAY = date(2026, 11, 25)
N = 5000  # two files, one of them gzip
REQUIRED = ("participation_id", "timestamp", "account_id", "content_id")
OPTIONAL = ("email", "tc_string", "page_url", "questions", "optins", "forms")
EVENT_KEYS = {
    "participation_id",
    "timestamp",
    "account_id",
    "content_id",
    "content_version",
    "publisher_id",
    "publisher_name",
    *OPTIONAL,
}
FIELD_TYPES = {
    "email",
    "phone",
    "firstname",
    "lastname",
    "gender",
    "birthdate",
    "address-line-1",
    "address-line-2",
    "address-zip-code",
    "address-city",
    "address-country",
}
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
PHONE = re.compile(r"^\+33 [67] \d\d \d\d \d\d \d\d$")


# ------------------------------------------------------------------------------------------ helpers


def read_ndjson(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in read_lines(path)]


def read_lines(path: Path) -> list[str]:
    """The file's lines, parsed by hand: split on '\\n' only, so a raw newline inside a value would show."""
    raw = path.read_bytes()
    if path.name.endswith(".gz"):
        raw = gzip.decompress(raw)
    text = raw.decode("utf-8")
    assert text == "" or text.endswith("\n"), f"{path.name}: last line not terminated"
    return text.split("\n")[:-1] if text else []


def day_files(landing: Path, day: date = DAY) -> list[Path]:
    return sorted((landing / "participations" / f"date={day.isoformat()}").iterdir())


def events_of(summary: GenerationSummary) -> list[dict[str, Any]]:
    return [event for path in summary.files for event in read_ndjson(path)]


def reference(landing: Path) -> dict[str, list[dict[str, Any]]]:
    return {
        name: read_ndjson(landing / "reference" / f"{name}.ndjson")
        for name in ("accounts", "campaigns", "contents", "optins")
    }


def folder_bytes(landing: Path, day: date = DAY) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in day_files(landing, day)}


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> tuple[Path, GenerationSummary]:
    landing = tmp_path_factory.mktemp("landing")
    return landing, generate_day(landing, DAY, N, seed=7)


@pytest.fixture(scope="module")
def events(generated) -> list[dict[str, Any]]:
    return events_of(generated[1])


# ------------------------------------------------------------------------------------ layout, count


def test_summary_and_files(generated):
    landing, summary = generated
    assert summary.day == DAY
    assert summary.participations == N
    assert summary.bad_lines == 0
    assert summary.accounts == ("a_1", "a_2", "a_3")
    names = [p.name for p in day_files(landing)]
    assert names == ["part-00000.ndjson", "part-00001.ndjson.gz"]
    assert [p.name for p in summary.files] == names
    assert [p.name for p in summary.reference_files] == [
        "accounts.ndjson",
        "campaigns.ndjson",
        "contents.ndjson",
        "optins.ndjson",
    ]
    assert (landing / "participations" / "date=2026-11-25").is_dir()


def test_gzip_file_is_real_gzip_and_holds_events(generated):
    _, summary = generated
    gz = [p for p in summary.files if p.name.endswith(".ndjson.gz")]
    assert len(gz) == 1
    assert gz[0].read_bytes()[:2] == b"\x1f\x8b"
    with gzip.open(gz[0], "rt", encoding="utf-8") as fh:
        lines = fh.read().splitlines()
    assert len(lines) > 0 and all(json.loads(line)["participation_id"] for line in lines)


def test_count_and_unique_ids(events):
    assert len(events) == N
    ids = [e["participation_id"] for e in events]
    assert len(set(ids)) == N
    assert all(re.fullmatch(r"p_20261125_\d{6}", i) for i in ids)


@pytest.mark.parametrize("count, expected", [(0, 1), (1, 1), (99, 1), (100, 2), (9_999, 2), (10_000, 4)])
def test_file_split(tmp_path, count, expected):
    summary = generate_day(tmp_path, DAY, count)
    assert len(summary.files) == expected == len(day_files(tmp_path))
    assert sum(len(read_lines(p)) for p in summary.files) == count
    gz = [p for p in summary.files if p.name.endswith(".gz")]
    assert len(gz) == (1 if expected > 1 else 0)
    if count == 0:
        assert summary.accounts == ()
        assert summary.files[0].read_bytes() == b""


def test_regenerating_a_day_replaces_its_files(tmp_path):
    generate_day(tmp_path, DAY, 12_000, seed=1, faults=True)
    assert len(day_files(tmp_path)) == 5
    other = tmp_path / "participations" / "date=2026-11-25" / "notes.txt"  # not a part file: kept
    other.write_text("operator notes")
    summary = generate_day(tmp_path, DAY, 50, seed=2)
    assert [p.name for p in day_files(tmp_path)] == ["notes.txt", "part-00000.ndjson"]
    assert len(events_of(summary)) == 50


def test_rejects_negative_count(tmp_path):
    with pytest.raises(ValueError):
        generate_day(tmp_path, DAY, -1)


# ------------------------------------------------------------------------------ events follow SPEC


def test_every_event_is_valid_per_spec(generated, events):
    landing, _ = generated
    ref = reference(landing)
    accounts = {a["account_id"] for a in ref["accounts"]}
    content_account = {c["content_id"]: c["account_id"] for c in ref["contents"]}
    optin_account = {o["optin_id"]: o["account_id"] for o in ref["optins"]}
    day_start = datetime(2026, 11, 25, tzinfo=UTC)

    for e in events:
        assert set(e) <= EVENT_KEYS, set(e) - EVENT_KEYS
        for key in REQUIRED:
            assert isinstance(e[key], str) and e[key], (key, e)
        assert TIMESTAMP.match(e["timestamp"]), e["timestamp"]
        ts = datetime.fromisoformat(e["timestamp"].replace("Z", "+00:00"))
        assert 0 <= (ts - day_start).total_seconds() < 86_400
        assert e["account_id"] in accounts
        assert content_account[e["content_id"]] == e["account_id"]
        assert isinstance(e["content_version"], int) and e["content_version"] >= 1
        assert e["publisher_id"].startswith("pub_") and isinstance(e["publisher_name"], str)
        for key in ("email", "tc_string", "page_url"):
            assert e.get(key) is None or isinstance(e[key], str)
        if e.get("page_url"):
            assert e["page_url"].startswith("https://")
        if e.get("tc_string"):
            assert e["tc_string"].startswith("CP")

        questions = e.get("questions")
        assert questions is None or (isinstance(questions, list) and len(questions) <= 3)
        for q in questions or []:
            assert set(q) == {"question_id", "question_text", "answer_text"}
            assert all(isinstance(v, str) for v in q.values())

        optins = e.get("optins")
        assert optins is None or (isinstance(optins, list) and len(optins) <= 3)
        ids = [o["optin_id"] for o in optins or []]
        assert len(ids) == len(set(ids))
        for o in optins or []:
            assert set(o) == {"optin_id", "optin_email", "optin_value"}
            assert optin_account[o["optin_id"]] == e["account_id"]
            assert isinstance(o["optin_value"], bool)
            assert o["optin_email"] is None or "@" in o["optin_email"]

        forms = e.get("forms")
        assert forms is None or (isinstance(forms, list) and len(forms) <= 1)
        for form in forms or []:
            assert set(form) == {"form_id", "form_name", "form_data"}
            assert form["form_id"].startswith("f_") and isinstance(form["form_name"], str)
            for f in form["form_data"]:
                assert set(f) == {"field_id", "field_name", "field_type", "field_value"}
                assert f["field_type"] is None or f["field_type"] in FIELD_TYPES
                assert f["field_value"] is None or isinstance(f["field_value"], str)
                if f["field_type"] == "phone":
                    assert PHONE.match(f["field_value"]), f["field_value"]
                if f["field_type"] == "birthdate":
                    date.fromisoformat(f["field_value"])
                if f["field_type"] == "email":
                    assert "@" in f["field_value"]


def test_timestamps_spread_over_the_day_in_order(events):
    stamps = [e["timestamp"] for e in events]  # file order = event order
    assert stamps == sorted(stamps)
    assert stamps[0] < "2026-11-25T01:00" and stamps[-1] > "2026-11-25T23:00"


def test_events_are_varied(events):
    """Every optional field is sometimes present, sometimes null, sometimes missing; texts are nasty."""
    for key in OPTIONAL:
        states = Counter("missing" if key not in e else "null" if e[key] is None else "value" for e in events)
        assert set(states) == {"missing", "null", "value"}, (key, states)
        assert states["value"] > N * 0.7, (key, states)
    assert {e["account_id"] for e in events} == {"a_1", "a_2", "a_3"}
    assert len({e["content_id"] for e in events}) == 11
    assert len({e["publisher_id"] for e in events}) > 3
    assert len({e.get("email") for e in events}) > 500
    assert any(e.get("questions") == [] for e in events)
    assert any(e.get("optins") == [] for e in events)
    assert any(e.get("forms") == [] for e in events)
    versions = {(e["content_id"], e["content_version"]) for e in events}
    assert len(versions) > len({c for c, _ in versions})  # some events on an older content version

    optins = [o for e in events for o in e.get("optins") or []]
    assert {o["optin_value"] for o in optins} == {True, False}
    assert any(o["optin_email"] is None for o in optins)
    assert len({o["optin_id"] for o in optins}) == 10

    fields = [f for e in events for form in e.get("forms") or [] for f in form["form_data"]]
    assert {f["field_type"] for f in fields} == FIELD_TYPES | {None}
    assert any(f["field_type"] is None and f["field_name"] == "Commentaire" for f in fields)
    # an email only in the form (the CSV's fallback) happens
    assert any(
        not e.get("email")
        and any(f["field_type"] == "email" for form in e.get("forms") or [] for f in form["form_data"])
        for e in events
    )

    texts = [q[k] for e in events for q in e.get("questions") or [] for k in ("question_text", "answer_text")]
    texts += [f["field_value"] or "" for f in fields] + [e["publisher_name"] for e in events]
    for needle in ("\n", "\t", '"', ",", "é", "😀", "日本語", "\r\n"):
        assert any(needle in t for t in texts), repr(needle)


def test_lines_are_one_record_each_and_utf8_raw(generated):
    _, summary = generated
    raw = summary.files[0].read_bytes()
    assert "é".encode() in raw and b"\\u00e9" not in raw  # UTF-8 kept raw, like to_json
    assert raw.count(b"\n") == len(read_lines(summary.files[0]))


# -------------------------------------------------------------------------------- determinism


def test_same_seed_same_bytes(tmp_path, generated):
    landing, _ = generated
    generate_day(tmp_path, DAY, N, seed=7)
    assert folder_bytes(tmp_path) == folder_bytes(landing)


def test_other_seed_or_day_other_events_same_reference(tmp_path, generated):
    landing, _ = generated
    ref_bytes = {p.name: p.read_bytes() for p in (landing / "reference").iterdir()}
    generate_day(tmp_path, DAY, N, seed=8)
    assert folder_bytes(tmp_path) != folder_bytes(landing)
    other_day = date(2024, 2, 29)
    summary = generate_day(tmp_path, other_day, 300, seed=123)
    assert all(e["timestamp"].startswith("2024-02-29T") for e in events_of(summary))
    assert all(e["participation_id"].startswith("p_20240229_") for e in events_of(summary))
    assert {p.name: p.read_bytes() for p in (tmp_path / "reference").iterdir()} == ref_bytes
    assert len(day_files(tmp_path)) == 2 and len(day_files(tmp_path, other_day)) == 2  # days coexist


# ------------------------------------------------------------------------------------- reference


def test_reference_data(generated):
    landing, _ = generated
    ref = reference(landing)
    assert ref["accounts"] == [
        {"account_id": "a_1", "username": "acme"},
        {"account_id": "a_2", "username": "globex"},
        {"account_id": "a_3", "username": "initech"},
    ]
    for row in ref["campaigns"]:
        assert set(row) == {"campaign_id", "account_id", "name"}
    for row in ref["contents"]:
        assert set(row) == {"content_id", "account_id", "campaign_id", "name", "version"}
    for row in ref["optins"]:
        assert set(row) == {"optin_id", "account_id", "content_id", "name", "text"}
    assert [c["campaign_id"] for c in ref["campaigns"]] == [f"cmp_{n}" for n in range(1, 8)]
    assert [c["content_id"] for c in ref["contents"]] == [f"c_{n}" for n in range(1, 12)]
    assert [o["optin_id"] for o in ref["optins"]] == [f"o_{n}" for n in range(1, 11)]

    campaign_account = {c["campaign_id"]: c["account_id"] for c in ref["campaigns"]}
    content_account = {c["content_id"]: c["account_id"] for c in ref["contents"]}
    for account in ("a_1", "a_2", "a_3"):
        assert 2 <= sum(a == account for a in campaign_account.values()) <= 3
        contents = [c for c in ref["contents"] if c["account_id"] == account]
        assert any(c["campaign_id"] is None for c in contents)
        assert sum(o["account_id"] == account for o in ref["optins"]) >= 3
    for c in ref["contents"]:
        assert c["campaign_id"] is None or campaign_account[c["campaign_id"]] == c["account_id"]
        assert isinstance(c["version"], int) and c["version"] >= 1
    for o in ref["optins"]:
        assert content_account[o["content_id"]] == o["account_id"]
        assert o["name"] and o["text"]

    same_name = Counter((o["account_id"], o["name"]) for o in ref["optins"])
    assert same_name[("a_1", "Newsletter ACME")] == 2

    texts = [r["name"] for rows in (ref["campaigns"], ref["contents"], ref["optins"]) for r in rows]
    texts += [o["text"] for o in ref["optins"]]
    for needle in ("\n", '"', ",", "é", "🎄", "«"):
        assert any(needle in t for t in texts), repr(needle)


def test_reference_is_rewritten_only_when_changed(tmp_path):
    generate_day(tmp_path, DAY, 10)
    path = tmp_path / "reference" / "optins.ndjson"
    path.write_text("tampered\n")
    generate_day(tmp_path, DAY, 10, seed=5)
    assert path.read_text(encoding="utf-8") == "".join(
        json.dumps(o, ensure_ascii=False, separators=(",", ":")) + "\n" for o in reference(tmp_path)["optins"]
    )
    assert "tampered" not in path.read_text()
    assert not list((tmp_path / "reference").glob("*.tmp"))


# ------------------------------------------------------------------------------------------ faults


def test_faults_add_bad_lines(tmp_path):
    summary = generate_day(tmp_path, DAY, 500, seed=3, faults=True)
    assert summary.participations == 500
    assert summary.bad_lines == 7
    faults = summary.files[-1]
    assert faults.name == "part-faults.ndjson" and faults.parent.name == "date=2026-11-25"
    assert len(summary.files) == 3  # the two event files, then the faults file

    lines = read_lines(faults)
    assert len(lines) == summary.bad_lines
    parsed = []
    invalid = 0
    for line in lines:
        try:
            parsed.append(json.loads(line))
        except json.JSONDecodeError:
            invalid += 1
    assert invalid == 1
    assert sum("participation_id" not in e for e in parsed) == 1
    assert any(e["account_id"] == "a_999" for e in parsed)
    assert any(e["content_id"] == "c_999" for e in parsed)
    assert any(e["account_id"] == "a_1" and e["content_id"] == "c_6" for e in parsed)  # c_6 is a_2's
    assert any(not e["timestamp"].startswith("2026-11-25") for e in parsed)

    good_ids = [e["participation_id"] for p in summary.files[:-1] for e in read_ndjson(p)]
    assert len(good_ids) == 500
    duplicated = [e for e in parsed if e.get("participation_id") in set(good_ids)]
    assert len(duplicated) == 1

    # without faults, the faults file disappears again
    summary = generate_day(tmp_path, DAY, 500, seed=3)
    assert summary.bad_lines == 0
    assert not (faults.parent / "part-faults.ndjson").exists()


def test_faults_on_an_empty_day(tmp_path):
    summary = generate_day(tmp_path, DAY, 0, faults=True)
    assert summary.participations == 0
    assert summary.bad_lines == 6  # no event to duplicate
    assert len(read_lines(summary.files[-1])) == 6


# ---------------------------------------------------------------------------------- golden bytes

# sha256 of every file the generator wrote for these (seed, day, participations), recorded with the
# generator as it was before its pools moved to data files and its event query was split into parts
# (commit 2663eb5). Demo days, benchmarks and the exports built on them rely on a given
# (seed, day, participations) always giving the same bytes: a change of a pool, of its order or of a
# draw shows here. The `.ndjson.gz` digests also pin the compressor's level-1 output (python-isal is
# locked in requirements.lock).
REFERENCE_DIGESTS = {
    "accounts.ndjson": "52f712697201f925566592f95c938ae65e1c9ca5b206cd1925cdcae210dfb6e1",
    "campaigns.ndjson": "11ab4e72e90529d0dd29599511364c5db9dcf7cdb6a4a561402a20821b8cc57c",
    "contents.ndjson": "8c62bc2a5f900b526c6ce77ca4ed136f157b330347f713b27ebfd40a717c119e",
    "optins.ndjson": "51d5a15b92110b56deb4822bf14b7a23a876c97671d18f4d241e0596d4356355",
}
# (seed, day, participations) -> the part files, then the faults file written with `faults=True`
DAY_DIGESTS: dict[tuple[int, date, int], tuple[dict[str, str], str]] = {
    (0, date(2026, 11, 25), 0): (
        {"part-00000.ndjson": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
        "51c29bf6febadadd709fc96e8308da500b0bdd49c49e0896be5c289d8ed7ce75",
    ),
    (3, date(2026, 11, 25), 7): (
        {"part-00000.ndjson": "73982cb5dce7fabe72046f9c737d4cb15699a43d258363f3fbec4b5254190d12"},
        "d296935ca258a4d387df78b37a40d0969753ad9dd2b65a8fa865331866f7eb34",
    ),
    (11, date(2024, 2, 29), 150): (
        {
            "part-00000.ndjson": "4dcdfad8d0ea477e26b4ffdc5cd84f9ca8ceaeaed6828c000ddc184265fea873",
            "part-00001.ndjson.gz": "9be5a9b9228f5b36d6681bf5efb4212b8a5a7e3a900af0b15f1507d08e1e05e5",
        },
        "a950e6b328e27b8152587a165f41292d573dbe59509b4178cb67bc98421e7079",
    ),
    (7, date(2026, 1, 1), 2000): (
        {
            "part-00000.ndjson": "bf17ead3c0213b37a816c33d630bfd8324c5d74f450573e8d35f2c2954c04c52",
            "part-00001.ndjson.gz": "a7d0aa2c320d295bcf743f26b1745146eef9b5c6fce74a5780d87e35a44a8117",
        },
        "b2f77adef8e9c4e328e6803a0a344ea454d0380e6c749b4d0187dffd9abf1487",
    ),
}


def digests(paths: tuple[Path, ...]) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}


@pytest.mark.parametrize("faults", [False, True], ids=["clean", "faults"])
@pytest.mark.parametrize("seed, day, count", list(DAY_DIGESTS), ids=lambda v: str(v))
def test_generated_bytes_are_the_recorded_ones(tmp_path, seed, day, count, faults):
    summary = generate_day(tmp_path, day, count, seed, faults=faults)
    parts, faults_digest = DAY_DIGESTS[(seed, day, count)]
    expected = {**parts, "part-faults.ndjson": faults_digest} if faults else parts
    assert digests(summary.files) == expected
    assert digests(summary.reference_files) == REFERENCE_DIGESTS
    assert summary.accounts == (("a_1", "a_2", "a_3") if count else ())


# --------------------------------------------------------------------------------------- data files


def test_every_dataset_file_ships_with_the_package():
    """An editable install reads the source tree, so a data file left out of package-data would only be
    missed once the package is installed from a wheel: pyproject's globs must cover the whole folder."""
    pyproject = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text(encoding="utf-8"))
    globs = pyproject["tool"]["setuptools"]["package-data"]["beop_assets.demo"]
    package = Path(generate.__file__).parent
    present = {p.relative_to(package) for p in (package / "datasets").iterdir()}
    shipped = {p.relative_to(package) for pattern in globs for p in package.glob(pattern)}
    assert present == shipped
    assert {p.name for p in present} == {"reference.json", "event_pools.json"}


def test_a_form_field_with_an_unknown_value_names_the_data_file():
    with pytest.raises(ValueError, match=r"datasets/event_pools\.json: form field 'fd_9' has value 'shoe_size'"):
        generate._field_value_sql(
            {"field_id": "fd_9", "field_name": "Pointure", "field_type": None, "value": "shoe_size"}
        )
