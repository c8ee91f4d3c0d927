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
