"""The layering holds (`python -m beop_assets_tests.layering`), and the check itself catches a violation."""

from pathlib import Path

from beop_assets_tests import layering


def test_the_domain_packages_import_no_dagster_no_glue_and_no_settings():
    assert layering.violations() == []


def test_the_check_reports_a_domain_module_that_imports_the_glue(tmp_path: Path):
    package = tmp_path / "beop_assets"
    for layer in layering.ALLOWED:
        (package / layer).mkdir(parents=True)
    (package / "cloud_storage.py").write_text("")
    (package / "landing" / "zone.py").write_text(
        "import dagster\nfrom beop_assets import settings\nfrom beop_assets.exports.registry import Registry\n"
    )
    found = layering.violations(package)
    assert len(found) == 3, found
    assert all(p.startswith("beop_assets/landing/zone.py:") for p in found)


def test_the_check_reports_settings_read_away_from_the_edge_and_logic_in_a_resource(tmp_path: Path):
    package = tmp_path / "beop_assets"
    for layer in layering.ALLOWED:
        (package / layer).mkdir(parents=True)
    (package / "defs").mkdir()
    (package / "cloud_storage.py").write_text("")
    (package / "definitions.py").write_text("from beop_assets import settings\nsettings.current()\n")
    (package / "operations" / "retention.py").write_text("from beop_assets.defs.resources import Retention\n")
    (package / "defs" / "sensors.py").write_text("from beop_assets import settings\nDAYS = settings.current().days\n")
    body = "\n".join(f"        x{n} = {n}" for n in range(layering.RESOURCE_METHOD_LINES))
    (package / "defs" / "resources.py").write_text(f"class Warehouse:\n    def spool(self):\n{body}\n")
    found = layering.violations(package)
    assert len(found) == 3, found
    assert (
        found[0]
        == "beop_assets/operations/retention.py:1: domain package 'operations' imports beop_assets.defs.resources"
    )
    assert "beop_assets/defs/sensors.py:2: settings read away from the edge" in found
    assert any("Warehouse.spool holds logic" in p for p in found)
