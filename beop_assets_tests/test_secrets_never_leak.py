"""Secrets never leak: SFTP passwords, SSH private keys and their passphrases, and GCS service-account
keys never appear in a log, in run metadata, in an exception or in what the UI shows (docs/file-contract.md).

One day runs through `run_day` (so that Dagster's event log is the real one the UI reads) with
distinctive secrets, on success and on failure: the right and a wrong password, a good key and a
malformed one whose content is distinctive, a key with the right and a wrong passphrase, a good
GCS key and malformed ones. Then every place an operator (or the UI) can read is searched for every
secret: Python logging at DEBUG (paramiko, google, Dagster, ours), everything written to stdout and
stderr, every event of every run in the Dagster instance (errors with their causes and stack traces,
materialization metadata, check results), the run records, the delivery ledger, the outcomes and
lines `run_day` prints, and every file the product wrote into its warehouse and Dagster home.

Message-level checks of the same (one transport call at a time) are in `test_sftp_delivery.py`
(test_wrong_password_fails_at_once_without_revealing_it, test_unauthorized_key_fails_at_once) and
`test_gcs_delivery.py` (test_malformed_key_fails_clearly_without_showing_it).
"""

from __future__ import annotations

import json
import logging
import subprocess
from datetime import date

import pytest
from dagster._serdes import serialize_value

from beop_assets.daily_run import run_day
from beop_assets.delivery import ledger

pytestmark = pytest.mark.timeout(300)

DAY = date(2026, 11, 25)
WRONG_PASSWORD = "WRONG-pw-Zq81x"
RIGHT_PASSPHRASE = "right-passphrase-Vb72kq"
WRONG_PASSPHRASE = "WRONG-passphrase-Hk42"
MALFORMED_SSH_KEY = (
    "-----BEGIN OPENSSH PRIVATE KEY-----\n"
    "SSHKEYSECRET-Tq94LmZx0a8bPq5Rr2Ws\n"
    "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ-SECRETTAIL-9f\n"
    "-----END OPENSSH PRIVATE KEY-----\n"
)
GCS_PEM_SECRET = "GCSKEYSECRET-Lm3Qp8Zr1Vx7Tn5Wk2"
GCS_NOT_JSON = "GCSNOTJSONSECRET-Jd83Kq {not json"

ENV = {
    "wrong_password": "BEOP_TEST_LEAK_WRONG_PASSWORD",
    "key": "BEOP_TEST_LEAK_KEY",
    "malformed_key": "BEOP_TEST_LEAK_MALFORMED_KEY",
    "locked_key": "BEOP_TEST_LEAK_LOCKED_KEY",
    "right_passphrase": "BEOP_TEST_LEAK_RIGHT_PASSPHRASE",
    "wrong_passphrase": "BEOP_TEST_LEAK_WRONG_PASSPHRASE",
    "gcs_key": "BEOP_TEST_LEAK_GCS_KEY",
    "gcs_malformed": "BEOP_TEST_LEAK_GCS_MALFORMED",
}


def key_body(text: str) -> list[str]:
    """The lines of a PEM/OpenSSH private key between its BEGIN and END lines."""
    return [line for line in text.splitlines() if line.strip() and not line.startswith("-----")]


@pytest.fixture
def locked_key(sshd, tmp_path) -> str:
    """An ed25519 key protected by RIGHT_PASSPHRASE, authorized on the server; returns its text."""
    path = tmp_path / "locked_ed25519"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", RIGHT_PASSPHRASE, "-C", "locked", "-f", str(path)], check=True
    )
    sshd.authorize_key(path.with_name(path.name + ".pub").read_text())
    return path.read_text()


def test_no_secret_appears_in_any_log_event_metadata_error_or_ledger(
    product, sshd, gcs_key, locked_key, tmp_path, monkeypatch, caplog, capfd
):
    caplog.set_level(logging.DEBUG)
    gcs_malformed = json.dumps(
        {**gcs_key.info, "private_key": f"-----BEGIN PRIVATE KEY-----\n{GCS_PEM_SECRET}\n-----END PRIVATE KEY-----\n"}
    )
    not_json_file = tmp_path / "not-json-key.json"
    not_json_file.write_text(GCS_NOT_JSON)
    for name, value in {
        "wrong_password": WRONG_PASSWORD,
        "key": sshd.client_key_text,
        "malformed_key": MALFORMED_SSH_KEY,
        "locked_key": locked_key,
        "right_passphrase": RIGHT_PASSPHRASE,
        "wrong_passphrase": WRONG_PASSPHRASE,
        "gcs_key": gcs_key.text,
        "gcs_malformed": gcs_malformed,
    }.items():
        monkeypatch.setenv(ENV[name], value)
    secrets = {
        "the SFTP password": sshd.password,
        "a wrong SFTP password": WRONG_PASSWORD,
        "the right key passphrase": RIGHT_PASSPHRASE,
        "a wrong key passphrase": WRONG_PASSPHRASE,
        "the malformed SSH key": "SSHKEYSECRET-Tq94LmZx0a8bPq5Rr2Ws",
        "the malformed SSH key's tail": "SECRETTAIL-9f",
        "the malformed GCS key": GCS_PEM_SECRET,
        "the GCS key that is not JSON": "GCSNOTJSONSECRET-Jd83Kq",
        **{f"line {i} of the SSH client key": line for i, line in enumerate(key_body(sshd.client_key_text))},
        **{f"line {i} of the locked SSH key": line for i, line in enumerate(key_body(locked_key))},
        **{f"a line of the GCS key ({i})": line for i, line in enumerate(gcs_key.secrets)},
    }
    assert all(len(s) >= 13 for s in secrets.values())  # distinctive: found only if leaked

    no_password = {"password_env": None}
    product.landing.write_events(DAY, [product.landing.event("p_1", email="jane@example.com")])
    product.write_registry(
        [
            product.crm("sftp-password"),
            product.crm("sftp-wrong-password", sftp={"password_env": ENV["wrong_password"]}),
            product.crm("sftp-key", sftp={**no_password, "private_key_env": ENV["key"]}),
            product.crm("sftp-malformed-key", sftp={**no_password, "private_key_env": ENV["malformed_key"]}),
            product.crm(
                "sftp-locked-key",
                sftp={
                    **no_password,
                    "private_key_env": ENV["locked_key"],
                    "private_key_passphrase_env": ENV["right_passphrase"],
                },
            ),
            product.crm(
                "sftp-wrong-passphrase",
                sftp={
                    **no_password,
                    "private_key_env": ENV["locked_key"],
                    "private_key_passphrase_env": ENV["wrong_passphrase"],
                },
            ),
            product.global_("gcs-key", gcs={"credentials_file": None, "credentials_env": ENV["gcs_key"]}),
            product.global_(
                "gcs-malformed-key", gcs={"credentials_file": None, "credentials_env": ENV["gcs_malformed"]}
            ),
            product.global_("gcs-not-json-key", gcs={"credentials_file": str(not_json_file)}),
        ]
    )
    echoed: list[str] = []
    outcomes = {o.export_id: o for o in run_day(DAY, dagster_instance=product.instance, echo=echoed.append)}

    # The secrets were really used: good credentials delivered, bad ones failed for what they are.
    status = {i: o.status for i, o in outcomes.items()}
    assert status == {
        "sftp-password": "delivered",
        "sftp-wrong-password": "failed",
        "sftp-key": "delivered",
        "sftp-malformed-key": "failed",
        "sftp-locked-key": "delivered",
        "sftp-wrong-passphrase": "failed",
        "gcs-key": "delivered",
        "gcs-malformed-key": "failed",
        "gcs-not-json-key": "failed",
    }, outcomes
    assert "authentication as 'beoptest' failed" in outcomes["sftp-wrong-password"].error
    assert f"cannot load the private key from ${ENV['malformed_key']}" in outcomes["sftp-malformed-key"].error
    assert f"cannot load the private key from ${ENV['locked_key']}" in outcomes["sftp-wrong-passphrase"].error
    assert "private_key cannot be loaded" in outcomes["gcs-malformed-key"].error
    assert "not valid JSON" in outcomes["gcs-not-json-key"].error

    # Everything an operator or the UI can read.
    captured = capfd.readouterr()
    places: dict[str, str] = {
        "python logging (DEBUG)": caplog.text
        + "\n".join(f"{r.getMessage()} {r.args!r} {r.exc_text or ''}" for r in caplog.records),
        "stdout": captured.out,
        "stderr": captured.err,
        "run_day's printed lines": "\n".join(echoed),
        "outcomes": repr(list(outcomes.values())),
        "the delivery ledger": repr(ledger.history(root=product.landing.warehouse)),
        "the registry file": product.registry_file.read_text(),
    }
    runs = product.instance.get_runs()
    assert len(runs) >= 2  # the load, then the batched delivery runs
    for run in runs:
        places[f"run record {run.run_id}"] = serialize_value(run)
        events = product.instance.all_logs(run.run_id)
        assert events
        places[f"event log of run {run.run_id} ({run.job_name})"] = "\n".join(
            serialize_value(event) + "\n" + str(event) for event in events
        )
    for folder in (product.landing.warehouse, tmp_path / "dagster_home"):
        for path in (p for p in folder.rglob("*") if p.is_file()):
            places[f"file {path}"] = path.read_bytes().decode("utf-8", "replace")

    leaks = [
        f"{what} found in {where}"
        for where, text in places.items()
        for what, secret in secrets.items()
        if secret in text
    ]
    assert not leaks, "\n".join(leaks)
    # The searches did see the runs: the failures' messages and the deliveries are in those places.
    # (The CLI's console stays quiet below CRITICAL: the failures reach the operator as the outcomes.)
    assert "sftp-wrong-password" in places["outcomes"]
    event_logs = "\n".join(text for where, text in places.items() if where.startswith("event log"))
    assert "authentication as 'beoptest' failed" in event_logs and "private_key cannot be loaded" in event_logs
    assert "sftp-wrong-password" in event_logs and "STEP_FAILURE" in event_logs  # the batch's failure too
