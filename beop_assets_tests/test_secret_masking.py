"""Secret masking has one owner (`delivery.secrets`), driven by the targets' declared credential
fields: a credential field added to a target is masked everywhere without the masking code changing."""

from __future__ import annotations

import json

import paramiko

from beop_assets.delivery.gcs_target import GcsTarget
from beop_assets.delivery.secrets import credential_field, credential_fields, mask, secret_values
from beop_assets.delivery.sftp_connection import load_credentials, translate
from beop_assets.delivery.sftp_target import SftpTarget
from beop_assets.demo.service_account import rsa_private_key_pem, service_account_info

TOKEN = "tok-Zq81-distinctive-9f3a"


class SftpTargetWithAToken(SftpTarget):
    """Tomorrow's target: one more credential, declared as such, and nothing else changed."""

    api_token_env: str | None = credential_field("env")


def test_a_new_credential_field_is_masked_without_touching_the_masking_code(monkeypatch, tmp_path):
    monkeypatch.setenv("BEOP_TEST_PASSWORD", "pw-Zq81-distinctive")
    monkeypatch.setenv("BEOP_TEST_TOKEN", TOKEN)
    target = SftpTargetWithAToken(
        host="sftp.example.com",
        username="acme",
        directory="/in",
        password_env="BEOP_TEST_PASSWORD",
        known_hosts_file=str(tmp_path / "known_hosts"),
        api_token_env="BEOP_TEST_TOKEN",
    )
    assert credential_fields(SftpTargetWithAToken)["api_token_env"] == "env"
    assert TOKEN in secret_values(target)

    credentials = load_credentials("acme-crm", target)
    error = translate(
        paramiko.SSHException(f"server said: bad token {TOKEN} for pw-Zq81-distinctive"),
        "acme-crm",
        target,
        credentials,
        path="/in/f.csv",
        timeout=5.0,
        step="open",
    )
    assert TOKEN not in str(error) and "pw-Zq81-distinctive" not in str(error)
    assert "acme-crm" in str(error) and "***" in str(error)


def test_a_key_files_private_key_is_masked_line_by_line(tmp_path):
    info = service_account_info(rsa_private_key_pem(), project_id="beop-test")
    key = tmp_path / "key.json"
    key.write_text(json.dumps(info), encoding="utf-8")
    target = GcsTarget(bucket="acme-bucket", credentials_file=str(key))
    body = [line for line in info["private_key"].splitlines() if line and not line.startswith("-----")]
    text = f"could not parse {body[3]} near {body[-2]} for {info['client_email']}"

    masked = mask(text, secret_values(target))

    assert body[3] not in masked and body[-2] not in masked
    assert info["client_email"] in masked  # who the key is for is no secret, and helps
