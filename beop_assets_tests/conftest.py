"""Shared fixtures. The real servers (OpenSSH sshd, the GCS emulator) live in `fixtures/`."""

pytest_plugins = [
    "beop_assets_tests.fixtures.sshd",
    "beop_assets_tests.fixtures.gcs",
    "beop_assets_tests.fixtures.gcs_proxy",
    "beop_assets_tests.fixtures.landing",
    "beop_assets_tests.fixtures.product",
    "beop_assets_tests.fixtures.postgres",
    "beop_assets_tests.fixtures.redis",
]
