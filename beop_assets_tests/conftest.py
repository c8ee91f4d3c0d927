"""Shared fixtures. The real servers (OpenSSH sshd, ProFTPD, the fault SFTP server, the GCS emulator) live in
`fixtures/`."""

pytest_plugins = [
    "beop_assets_tests.fixtures.sshd",
    "beop_assets_tests.fixtures.proftpd",
    "beop_assets_tests.fixtures.faulty_sftp",
    "beop_assets_tests.fixtures.gcs",
    "beop_assets_tests.fixtures.landing",
    "beop_assets_tests.fixtures.product",
]
