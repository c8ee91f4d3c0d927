"""The export registry in a real PostgreSQL table (issue 21): the same exports and faults as from YAML, one
snapshot per read, a revision that tells every change, import all or nothing, and no password in any text."""

from __future__ import annotations

import re
import threading
from pathlib import Path

import psycopg2
import pytest
import yaml
from click.testing import CliRunner

from beop_assets.cli import main
from beop_assets.exports import registry_cache, registry_table
from beop_assets.exports.registry import load_registry, validate_entries
from beop_assets.exports.registry_source import Table, open_source
from beop_assets.exports.registry_table import TableAddress
from beop_assets.landing.reference import Reference

SFTP = {
    "host": "sftp.example.com",
    "username": "beop",
    "directory": "/incoming",
    "password_env": "ACME_PASSWORD",
    "known_hosts_file": "/etc/beop/known_hosts",
}
GCS = {"bucket": "acme-beop", "prefix": "exports/", "credentials_env": "ACME_KEY"}
GOOD = [
    {"id": "acme-crm", "account_id": "a_1", "mode": "specific", "type": "crm-participation", "name": "Winter"}
    | {"campaigns": ["cmp_1"], "optins": ["o_1", "o_2"], "sftp": SFTP},
    {"id": "acme-optins", "account_id": "a_1", "mode": "specific", "type": "crm-optin", "name": "Optins"}
    | {"optins": ["o_1"], "enabled": False, "neutralize_formulas": True, "sftp": SFTP | {"port": 2222}},
    {"id": "acme-global", "account_id": "a_1", "mode": "global", "gcs": GCS},
    {"id": "globex-global", "account_id": "a_2", "mode": "global", "gcs": GCS | {"prefix": "globex/"}},
]


@pytest.fixture
def table(postgres_url) -> TableAddress:
    address = TableAddress.parse(postgres_url)
    registry_table.create(address)
    registry_cache.clear()
    return address


@pytest.fixture
def reference(landing_zone) -> Reference:
    return Reference.read(landing_zone.reference_folder)


def yaml_file(tmp_path: Path, entries: list[dict]) -> Path:
    path = tmp_path / "exports.yaml"
    path.write_text(yaml.safe_dump({"exports": entries}, sort_keys=False), encoding="utf-8")
    return path


def execute(address: TableAddress, statement: str, *params) -> None:
    con = psycopg2.connect(host=address.host, port=address.port, dbname=address.database, user=address.user)
    try:
        with con, con.cursor() as cur:
            cur.execute(statement, params)
    finally:
        con.close()


def test_the_table_gives_the_same_validated_exports_as_the_equivalent_yaml(table, reference, tmp_path):
    registry_table.replace_rows(table, GOOD, delete_others=False)
    from_table = validate_entries(Table(table).read(), reference, "t")
    from_yaml = load_registry(yaml_file(tmp_path, GOOD), reference)
    assert from_table.faults == from_yaml.faults == []
    assert from_table.exports == from_yaml.exports and len(from_table.exports) == 4
    assert from_table.exports["acme-optins"].sftp.port == 2222 and not from_table.exports["acme-optins"].enabled
    assert from_table.revision.isdigit() and from_yaml.revision and from_table.revision != from_yaml.revision


def test_a_row_with_a_fault_fails_only_itself_naming_its_id_and_field(table, landing_zone):
    bad = [
        GOOD[0] | {"id": "unknown-campaign", "campaigns": ["cmp_404"]},
        GOOD[0] | {"id": "foreign-optin", "optins": ["o_9"]},
        GOOD[0] | {"id": "bad-port", "sftp": SFTP | {"port": 70000}},
        GOOD[0] | {"id": "inline-password", "sftp": SFTP | {"password": "hunter2-inline"}},
        GOOD[2] | {"id": "inline-key", "gcs": GCS | {"credentials": {"private_key": "-----BEGIN inline"}}},
        GOOD[0] | {"id": "Not A Slug"},
    ]
    registry_table.replace_rows(table, GOOD + bad, delete_others=False)
    registry = registry_cache.load(Table(table), str(landing_zone.root))
    assert sorted((f.export_id, f.field) for f in registry.faults) == [
        ("Not A Slug", "id"),
        ("bad-port", "sftp.port"),
        ("foreign-optin", "optins[0]"),
        ("inline-key", "gcs.credentials"),
        ("inline-password", "sftp.password"),
        ("unknown-campaign", "campaigns[0]"),
    ]
    assert sorted(registry.exports) == sorted(e["id"] for e in GOOD)
    text = " ".join(map(str, registry.faults))
    assert "hunter2-inline" not in text and "BEGIN inline" not in text
    assert "never given inline" in str(registry.faults_of("inline-password")[0])
    assert registry.broken["inline-password"] == "specific" and registry.broken["inline-key"] == "global"


def test_a_reader_never_sees_a_half_written_change_and_sees_it_by_revision_after_commit(table, landing_zone):
    landing = str(landing_zone.root)
    registry_table.replace_rows(table, GOOD, delete_others=False)
    source = Table(table)
    before = registry_cache.load(source, landing)
    writing, read = threading.Event(), threading.Event()

    def writer() -> None:
        con = psycopg2.connect(host=table.host, port=table.port, dbname=table.database, user=table.user)
        try:
            with con, con.cursor() as cur:
                cur.execute("UPDATE beop_periodic_exports SET enabled = false WHERE id = 'acme-crm'")
                cur.execute("UPDATE beop_periodic_exports SET campaigns = '{cmp_2}' WHERE id = 'acme-crm'")
                cur.execute("DELETE FROM beop_periodic_exports WHERE id = 'acme-global'")
                writing.set()
                assert read.wait(30)
        finally:
            con.close()

    thread = threading.Thread(target=writer)
    thread.start()
    assert writing.wait(30)
    during = registry_cache.load(source, landing)  # the writer's transaction is open, not committed
    read.set()
    thread.join(30)
    assert during.revision == before.revision and during.exports == before.exports and during.faults == []

    after = registry_cache.load(source, landing)
    assert after.revision != before.revision and int(after.revision) > int(before.revision)
    assert "acme-global" not in after.exports and "acme-global" not in after.broken
    # both updates of acme-crm are seen together: disabled AND with a foreign campaign, never one of them
    assert [(f.export_id, f.field) for f in after.faults] == [("acme-crm", "campaigns[0]")]
    assert "acme-crm" not in after.broken  # disabled: reported, not scheduled


def test_a_delete_alone_changes_the_revision(table):
    registry_table.replace_rows(table, GOOD, delete_others=False)
    first = registry_table.read_revision(table)
    execute(table, "DELETE FROM beop_periodic_exports WHERE id = %s", "acme-global")
    assert int(registry_table.read_revision(table)) > int(first)


def test_import_is_all_or_nothing_and_export_round_trips(table, landing_env, tmp_path, monkeypatch):
    monkeypatch.setenv("BEOP_EXPORTS", url_of(table))
    runner = CliRunner()
    registry_table.replace_rows(table, [GOOD[3]], delete_others=False)
    broken = yaml_file(tmp_path, GOOD + [GOOD[0] | {"id": "foreign", "campaigns": ["cmp_2"]}])
    result = runner.invoke(main, ["registry", "import", str(broken)])
    assert result.exit_code == 1 and "export 'foreign': campaigns[0]" in result.output
    assert [e["id"] for e, _ in Table(table).read().items] == ["globex-global"]  # nothing written

    # a write the server refuses after the delete ran (jsonb cannot hold \u0000) leaves the table as it was
    nul = GOOD[0] | {"id": "nul", "sftp": SFTP | {"directory": "/in\x00coming"}}
    with pytest.raises(registry_table.RegistryTableError, match="nothing|unsupported Unicode"):
        registry_table.replace_rows(table, GOOD + [nul], delete_others=True)
    assert [e["id"] for e, _ in Table(table).read().items] == ["globex-global"]

    good = yaml_file(tmp_path, GOOD[:3])
    result = runner.invoke(main, ["registry", "import", str(good), "--replace"])
    assert result.exit_code == 0, result.output
    assert sorted(e["id"] for e, _ in Table(table).read().items) == ["acme-crm", "acme-global", "acme-optins"]

    out = tmp_path / "exported.yaml"
    result = runner.invoke(main, ["registry", "export", "--to", str(out)])
    assert result.exit_code == 0, result.output
    exported = yaml.safe_load(out.read_text())["exports"]
    assert sorted(exported, key=lambda e: e["id"]) == sorted(GOOD[:3], key=lambda e: e["id"])


def url_of(address: TableAddress, password: str | None = None) -> str:
    who = address.user + (f":{password}" if password else "")
    return f"postgresql://{who}@{address.host}:{address.port}/{address.database}"


def test_validate_works_on_both_sources(table, landing_env, tmp_path, monkeypatch):
    rows = GOOD + [GOOD[0] | {"id": "foreign", "campaigns": ["cmp_2"]}]
    registry_table.replace_rows(table, rows, delete_others=False)
    outputs = {}
    for name, value in (("table", url_of(table)), ("yaml", str(yaml_file(tmp_path, rows)))):
        monkeypatch.setenv("BEOP_EXPORTS", value)
        result = CliRunner().invoke(main, ["validate"])
        assert result.exit_code == 1, result.output
        outputs[name] = [re.sub(r"^FAULT line \d+: ", "FAULT ", line) for line in result.output.splitlines()]
    assert outputs["table"][:-1] == sorted(outputs["yaml"][:-1])  # the table's rows come by id, without a line
    assert "FAULT export 'foreign': campaigns[0]" in outputs["table"][0]
    assert f"in table beop_periodic_exports in database {table.database}" in outputs["table"][-1]


def test_init_print_gives_the_ddl_and_the_read_only_grant():
    result = CliRunner().invoke(main, ["registry", "init", "--print"])
    assert result.exit_code == 0
    assert "CREATE TABLE IF NOT EXISTS beop_periodic_exports (" in result.output
    assert "GRANT SELECT ON beop_periodic_exports, beop_periodic_exports_revision TO" in result.output


def test_the_product_reads_the_table_with_select_only(table, postgres, reference):
    """The GRANT the docs give is enough for a reader, and a reader cannot write."""
    execute(table, "CREATE ROLE beop_reader LOGIN")
    execute(table, registry_table.grant(table, "beop_reader"))
    registry_table.replace_rows(table, GOOD, delete_others=False)
    reader = TableAddress(table.host, table.port, table.database, user="beop_reader")
    assert len(validate_entries(Table(reader).read(), reference, "t").exports) == 4
    with pytest.raises(registry_table.RegistryTableError, match="permission denied"):
        registry_table.replace_rows(reader, GOOD, delete_others=False)


SECRET = "S3cr3t-Pa55w0rd!"


@pytest.fixture
def password_role(postgres, table):
    """A role that must give its password: password auth for it alone, on the session's server."""
    execute(table, f"CREATE ROLE beop_pw LOGIN PASSWORD '{SECRET}'")
    execute(table, registry_table.grant(table, "beop_pw"))
    hba = postgres.data_dir / "pg_hba.conf"
    original = hba.read_text()
    hba.write_text(f"host all beop_pw 127.0.0.1/32 scram-sha-256\n{original}")
    execute(table, "SELECT pg_reload_conf()")
    yield
    hba.write_text(original)
    execute(table, "SELECT pg_reload_conf()")


def test_the_password_of_the_url_is_never_printed(table, password_role, landing_env, monkeypatch):
    from beop_assets.demo.sshd import free_port

    good = f"postgresql://beop_pw:{SECRET}@{table.host}:{table.port}/{table.database}"
    assert validate_entries(open_source(good).read(), None, "t").unreadable is False  # the password works
    cases = {
        "unreachable host": f"postgresql://beop_pw:{SECRET}@127.0.0.1:{free_port()}/{table.database}",
        "wrong password": good.replace(SECRET, SECRET + "x"),
        "missing table": good + "?table=no_such_table",
        "malformed": f"postgresql://beop_pw:{SECRET}@{table.host}:{table.port}/{table.database}?table=Bad;Name",
    }
    for case, url in cases.items():
        monkeypatch.setenv("BEOP_EXPORTS", url)
        registry_cache.clear()
        for command in (["validate"], ["registry", "export", "--to", "/tmp/never.yaml"], ["history", "--missing"]):
            result = CliRunner().invoke(main, command)
            text = result.output + (repr(result.exception) if result.exception else "")
            assert result.exit_code != 0, (case, command, text)
            assert SECRET not in text and "S3cr3t" not in text, (case, command, text)
            if case != "malformed":
                assert table.database in text and table.host in text, (case, command, text)
        if case == "missing table":
            assert "no_such_table" in text and "registry init" in text
        if case == "wrong password":
            assert "password authentication failed" in text


def test_a_row_inserted_or_disabled_is_seen_by_the_next_registry_sensor_evaluation(table, landing_zone):
    """No restart, no copy: the registry sensor's requests follow the table from one evaluation to the next."""
    from dagster import DagsterInstance

    from beop_assets.defs.exports.sensors import registry_partition_requests
    from beop_assets.defs.resources import ExportRegistry

    resource = ExportRegistry(path=url_of(table), landing=str(landing_zone.root))
    registry_table.replace_rows(table, GOOD[:1], delete_others=False)
    with DagsterInstance.ephemeral() as instance:
        _, changes = registry_partition_requests(resource, instance)
        assert changes == ["+specific:acme-crm"]
        instance.add_dynamic_partitions("specific_exports", ["acme-crm"])
        execute(
            table,
            "INSERT INTO beop_periodic_exports (id, account_id, mode, gcs) VALUES (%s, %s, %s, %s)",
            "acme-new",
            "a_1",
            "global",
            '{"bucket": "acme-beop", "credentials_env": "K"}',
        )
        execute(table, "UPDATE beop_periodic_exports SET enabled = false WHERE id = %s", "acme-crm")
        _, changes = registry_partition_requests(resource, instance)
        assert changes == ["-specific:acme-crm", "+global:acme-new"]
        assert resource.load().revision == registry_table.read_revision(table)


def test_export_never_copies_an_inline_credential(table, tmp_path, monkeypatch):
    monkeypatch.setenv("BEOP_EXPORTS", url_of(table))
    registry_table.replace_rows(table, [GOOD[0] | {"sftp": SFTP | {"password": "hunter2-row"}}], delete_others=False)
    out = tmp_path / "exported.yaml"
    result = CliRunner().invoke(main, ["registry", "export", "--to", str(out)])
    assert result.exit_code == 0 and "FAULT export 'acme-crm': sftp.password" in result.output
    assert "hunter2" not in result.output and "hunter2" not in out.read_text()
    assert yaml.safe_load(out.read_text())["exports"] == [GOOD[0]]
