"""Shared fixtures. The real servers (OpenSSH sshd, ProFTPD, the fault SFTP server, the GCS emulator) live in
`fixtures/`."""

import os

# Partitions start 90 days back by default; many tests use fixed data days of November 2026, which must
# stay valid partitions whenever the suite runs. Set before the definitions are built (they read it when the code location loads).
# The default itself is tested in a subprocess (test_definitions.py).
os.environ.setdefault("BEOP_START_DATE", "2025-01-01")

pytest_plugins = [
    "beop_assets_tests.fixtures.sshd",
    "beop_assets_tests.fixtures.proftpd",
    "beop_assets_tests.fixtures.faulty_sftp",
    "beop_assets_tests.fixtures.gcs",
    "beop_assets_tests.fixtures.gcs_proxy",
    "beop_assets_tests.fixtures.landing",
    "beop_assets_tests.fixtures.product",
    "beop_assets_tests.fixtures.alerts",
    "beop_assets_tests.fixtures.postgres",
    "beop_assets_tests.fixtures.redis",
    "beop_assets_tests.fixtures.topology",
]
