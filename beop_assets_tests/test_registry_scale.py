"""Pay for what you touch (issue 24): with a registry of thousands of exports, a run of one export validates
that export only, the whole registry is validated once per revision, and a tenancy check never copies the
reference data. Counted, never timed (the figures are bench/registry_scale.py's)."""

from __future__ import annotations

import pytest

from beop_assets.exports import registry, registry_cache, registry_table
from beop_assets.exports.registry_source import Table, YamlFile
from beop_assets.exports.registry_table import TableAddress
from beop_assets_tests.fixtures import many_exports

EXPORTS = 4000


@pytest.fixture
def landing(tmp_path) -> str:
    many_exports.write_reference(tmp_path / "landing", EXPORTS)
    registry_cache.clear()
    return str(tmp_path / "landing")


@pytest.fixture
def validations(monkeypatch) -> list[str]:
    """The label of every entry given to the per-export validation, in order."""
    seen: list[str] = []
    real = registry.validate_entry
    monkeypatch.setattr(registry, "validate_entry", lambda e, label, line: seen.append(label) or real(e, label, line))
    return seen


def _sources(tmp_path, url: str | None):
    path = many_exports.write_registry(tmp_path / "exports.yaml", EXPORTS)
    yield YamlFile(path)
    if url:
        address = TableAddress.parse(url)
        registry_table.create(address)
        registry_table.replace_rows(address, many_exports.entries(EXPORTS), delete_others=False)
        yield Table(address)


@pytest.mark.parametrize("kind", ["yaml", "table"])
def test_a_run_of_one_export_validates_that_export_only(kind, tmp_path, landing, validations, request):
    url = request.getfixturevalue("postgres_url") if kind == "table" else None
    source = list(_sources(tmp_path, url))[-1]
    one = registry_cache.exports_for(source, landing, ["x00042"])
    assert validations == ["x00042"]
    assert list(one.exports) == ["x00042"] and one.faults == [] and one.revision
    one.get("x00042")

    registry_cache.exports_for(source, landing, ["x00042"])  # the asset, the IO manager, each check
    assert validations == ["x00042"]

    whole = registry_cache.load(source, landing)
    assert len(validations) == 1 + EXPORTS and len(whole.exports) == EXPORTS and whole.faults == []
    assert whole.revision == one.revision
    registry_cache.load(source, landing)
    assert registry_cache.exports_for(source, landing, ["x00007"]).get("x00007").id == "x00007"
    assert len(validations) == 1 + EXPORTS  # once per revision; a later run takes its export from it


def test_a_faulty_export_among_thousands_is_named_by_a_run_of_it_alone(tmp_path, landing, validations):
    entries = many_exports.entries(EXPORTS)
    entries[10]["campaigns"] = ["acc-00099-cmp-0"]  # another account's campaign
    entries.append(dict(entries[20]))  # a duplicate id: found even when only that id is read
    path = tmp_path / "exports.yaml"
    path.write_text(registry.dump_yaml(entries), encoding="utf-8")
    foreign = registry_cache.exports_for(YamlFile(path), landing, [entries[10]["id"]])
    assert [(f.field, "another account" in f.message) for f in foreign.faults] == [("campaigns[0]", True)]
    twice = registry_cache.exports_for(YamlFile(path), landing, [entries[20]["id"]])
    assert [f.field for f in twice.faults] == ["id"] and "duplicate" in twice.faults[0].message
    assert len(validations) == 3


def test_tenancy_checks_look_selections_up_without_copying_the_reference(tmp_path, landing):
    whole = registry_cache.load(YamlFile(many_exports.write_registry(tmp_path / "exports.yaml", 50)), landing)
    assert len(whole.exports) == 50
    reference = whole.checked_reference()
    assert reference.owners("optins") is reference.owners("optins")  # built once, shared by every export
    assert reference.owners("campaigns") is reference.campaigns


@pytest.mark.parametrize("layout", ["plain", "indented", "anchors", "other-top-key"])
def test_reading_named_entries_gives_what_the_whole_file_gives(tmp_path, landing, layout):
    """The slice-by-slice read of named entries agrees with the whole parse (faults and lines included),
    and a layout it does not handle falls back to the whole parse."""
    entries = many_exports.entries(30)
    entries[4]["sftp"] = dict(entries[4]["sftp"], port=70000)
    text = registry.dump_yaml(entries)
    if layout == "indented":
        text = "# operators' comment\nexports:\n" + "".join(f"  {ln}\n" for ln in text.splitlines()[1:])
    elif layout == "anchors":
        text = text.replace("host: sftp.example.com", "host: &h sftp.example.com", 1).replace(
            "host: sftp.example.com", "host: *h"
        )
    elif layout == "other-top-key":
        text += "extra: 1\n"
    path = tmp_path / "exports.yaml"
    path.write_text(text, encoding="utf-8")
    wanted = [entries[4]["id"], entries[5]["id"], entries[9]["id"]]
    whole = registry_cache.load(YamlFile(path), landing)
    named = registry_cache.exports_for(YamlFile(path), landing, wanted)  # not taken from the whole: see below
    registry_cache.clear()
    alone = registry_cache.exports_for(YamlFile(path), landing, wanted)
    for subset in (named, alone):
        assert sorted(subset.exports) == sorted(i for i in wanted if i in whole.exports)
        assert subset.faults == [f for f in whole.faults if f.export_id in wanted or f.export_id is None]
    assert [f.line for f in alone.faults if f.export_id] == [text.count("\n", 0, text.index(f"id: {wanted[0]}")) + 1]
