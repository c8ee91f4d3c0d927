"""The export registry: every fault named by export, field and line; tenancy enforced at load time."""

import textwrap

import pytest

from beop_assets.exports.registry import RegistryError, load_registry
from beop_assets.landing.reference import Reference

SFTP = """
    sftp:
      host: sftp.example.com
      username: beop
      directory: /incoming
      password_env: ACME_PASSWORD
      known_hosts_file: /etc/beop/known_hosts
"""


@pytest.fixture
def reference(landing_zone) -> Reference:
    return Reference.read(landing_zone.reference_folder)


def registry_of(tmp_path, text, reference):
    path = tmp_path / "exports.yaml"
    path.write_text(textwrap.dedent(text))
    return load_registry(path, reference)


def specific(export_id, extra="", sftp=SFTP, kind="crm-participation"):
    return f"""
  - id: {export_id}
    account_id: a_1
    mode: specific
    type: {kind}
    name: My export
{textwrap.indent(textwrap.dedent(extra).strip(), "    ") if extra.strip() else ""}
{textwrap.indent(textwrap.dedent(sftp).strip(), "    ")}
"""


def test_a_valid_registry_loads_every_export(tmp_path, reference):
    text = (
        "exports:"
        + specific("acme-crm", "campaigns: [cmp_1]\noptins: [o_1, o_2]")
        + """
  - id: acme-global
    account_id: a_1
    mode: global
    gcs: {bucket: acme-beop, prefix: exports/, credentials_env: ACME_KEY}
"""
    )
    registry = registry_of(tmp_path, text, reference)
    assert registry.faults == []
    assert sorted(registry.exports) == ["acme-crm", "acme-global"]
    assert registry.exports["acme-crm"].sftp.port == 22 and registry.exports["acme-crm"].enabled


def test_each_fault_names_the_export_the_field_and_the_line(tmp_path, reference):
    text = (
        "exports:"
        + specific("ok-one", "campaigns: [cmp_1]")
        + specific(
            "bad-port", "campaigns: [cmp_1]", sftp=SFTP.replace("username: beop", "username: beop\n      port: 70000")
        )
    )
    registry = registry_of(tmp_path, text, reference)
    (fault,) = registry.faults
    assert (fault.export_id, fault.field) == ("bad-port", "sftp.port")
    assert fault.line == text.count("\n", 0, text.index("- id: bad-port")) + 1
    assert "bad-port" in str(fault) and "sftp.port" in str(fault) and f"line {fault.line}" in str(fault)
    assert list(registry.exports) == ["ok-one"]  # the good export is not hidden by the bad one
    with pytest.raises(RegistryError, match="bad-port.*sftp.port"):
        registry.get("bad-port")


@pytest.mark.parametrize(
    "extra, field, words",
    [
        ("", "(entry)", "at least one campaign or content"),
        ("campaigns: [cmp_2]", "campaigns[0]", "belongs to another account"),
        ("contents: [c_9]", "contents[0]", "belongs to another account"),
        ("campaigns: [cmp_1]\noptins: [o_9]", "optins[0]", "belongs to another account"),
        ("campaigns: [cmp_404]", "campaigns[0]", "unknown campaign"),
    ],
)
def test_selections_are_checked_against_the_account(tmp_path, reference, extra, field, words):
    registry = registry_of(tmp_path, "exports:" + specific("acme-crm", extra), reference)
    (fault,) = registry.faults
    assert (fault.export_id, fault.field) == ("acme-crm", field) and words in fault.message
    assert registry.exports == {} and registry.broken == {"acme-crm": "specific"}


def test_crm_optin_needs_an_optin(tmp_path, reference):
    registry = registry_of(tmp_path, "exports:" + specific("optins", kind="crm-optin"), reference)
    assert "at least one optin" in registry.faults[0].message


def test_an_unknown_account_is_a_fault(tmp_path, reference):
    text = "exports:" + specific("acme-crm", "campaigns: [cmp_1]").replace("account_id: a_1", "account_id: a_404")
    (fault,) = registry_of(tmp_path, text, reference).faults
    assert (fault.field, fault.message) == ("account_id", "unknown account 'a_404'")


@pytest.mark.parametrize(
    "sftp, words",
    [
        (SFTP.replace("      password_env: ACME_PASSWORD\n", ""), "exactly one of password_env"),
        (
            SFTP.replace("password_env: ACME_PASSWORD", "password_env: A\n      private_key_file: /k"),
            "exactly one of password_env",
        ),
        (SFTP.replace("      known_hosts_file: /etc/beop/known_hosts\n", ""), "known_hosts_file is required"),
        (SFTP.replace("password_env: ACME_PASSWORD", "password: hunter2"), "Extra inputs are not permitted"),
    ],
)
def test_sftp_credentials_and_host_keys_are_only_referenced(tmp_path, reference, sftp, words):
    registry = registry_of(tmp_path, "exports:" + specific("acme-crm", "campaigns: [cmp_1]", sftp=sftp), reference)
    assert any(words in f.message for f in registry.faults), registry.faults
    assert "hunter2" not in " ".join(map(str, registry.faults))


def test_duplicate_ids_fail_every_entry_with_that_id(tmp_path, reference):
    text = (
        "exports:"
        + specific("twice", "campaigns: [cmp_1]")
        + specific("twice", "campaigns: [cmp_1]")
        + specific("once", "campaigns: [cmp_1]")
    )
    registry = registry_of(tmp_path, text, reference)
    assert [(f.export_id, f.field) for f in registry.faults] == [("twice", "id")]
    assert list(registry.exports) == ["once"] and registry.scheduled_ids("specific") == ["once", "twice"]


@pytest.mark.parametrize("export_id", ["Acme", "acme_crm", "-acme", "a|b", "a,b", "../x"])
def test_export_ids_are_slugs(tmp_path, reference, export_id):
    registry = registry_of(tmp_path, "exports:" + specific(f"'{export_id}'", "campaigns: [cmp_1]"), reference)
    assert [f.field for f in registry.faults] == ["id"]


def test_malformed_yaml_names_the_line_and_marks_the_registry_unreadable(tmp_path, reference):
    registry = registry_of(tmp_path, "exports:\n  - id: x\n    mode: [unclosed\n", reference)
    (fault,) = registry.faults
    assert registry.unreadable and fault.field == "yaml" and fault.line == 4


def test_a_missing_registry_file_is_a_fault_not_a_crash(tmp_path, reference):
    registry = load_registry(tmp_path / "nope.yaml", reference)
    assert registry.unreadable and "not found" in registry.faults[0].message


def test_disabled_exports_are_loaded_but_not_scheduled(tmp_path, reference):
    registry = registry_of(tmp_path, "exports:" + specific("paused", "campaigns: [cmp_1]\nenabled: false"), reference)
    assert list(registry.exports) == ["paused"] and registry.scheduled_ids("specific") == []


def test_the_garbage_collector_is_paused_while_a_file_is_parsed_and_resumed_after(tmp_path, reference, monkeypatch):
    """Parsing 10,000 entries was 2/3 collector passes over the nodes being built (issue 24's `validate`)."""
    import gc

    from beop_assets.exports import registry

    during: list[bool] = []
    real = registry._YamlLoader.get_single_node
    monkeypatch.setattr(
        registry._YamlLoader, "get_single_node", lambda self: during.append(gc.isenabled()) or real(self)
    )
    assert gc.isenabled()
    good = registry_of(tmp_path, "exports:" + specific("ok", "campaigns: [cmp_1]"), reference)
    malformed = registry_of(tmp_path, "exports:\n  - id: x\n    mode: [unclosed\n", reference)
    assert list(good.exports) == ["ok"] and malformed.unreadable
    assert during == [False, False] and gc.isenabled()  # resumed, also after a malformed file
    gc.disable()
    try:
        registry_of(tmp_path, "exports:" + specific("ok", "campaigns: [cmp_1]"), reference)
        assert not gc.isenabled()  # switched off by someone else: left off
    finally:
        gc.enable()
