"""The operator interface of docs/operators-guide.md, driven as an operator would: `beop-exports ...`."""

import re
import subprocess
import sys
from datetime import date

from click.testing import CliRunner

from beop_assets.cli import main

DAY = date(2026, 11, 25)


def invoke(*args):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_validate_exits_0_on_a_good_registry_and_1_with_every_fault(product):
    product.write_registry([product.crm("acme-crm"), product.global_("acme-all")])
    good = invoke("validate")
    assert good.exit_code == 0, good.output
    assert "ok    acme-crm" in good.output and "0 fault(s)" in good.output

    product.write_registry(
        [product.crm("acme-crm", campaigns=["cmp_2"]), product.global_("acme-all", account_id="a_404")]
    )
    bad = invoke("validate")
    assert bad.exit_code == 1
    assert re.search(r"FAULT line \d+: export 'acme-crm': campaigns\[0\]: .*another account", bad.output), bad.output
    assert re.search(r"FAULT line \d+: export 'acme-all': account_id: unknown account 'a_404'", bad.output)


def test_run_prints_one_line_per_export_and_exits_1_when_one_failed(product):
    product.landing.write_events(DAY, [product.landing.event("p_1")])
    product.write_registry(
        [product.crm("acme-crm"), product.crm("broken-dir", sftp={"directory": "/nope"}), product.global_("acme-all")]
    )
    result = invoke("run", "--date", "2026-11-25")
    assert result.exit_code == 1, result.output
    lines = {
        line.split()[0]: line
        for line in result.output.splitlines()
        if line.split() and line.split()[0] in ("acme-crm", "broken-dir", "acme-all")
    }
    assert re.match(
        r"acme-crm\s+delivered\s+20261126_crm-participation_acme-crm_[0-9a-f-]{36}\.csv\s+rows=1$", lines["acme-crm"]
    )
    assert re.match(r"acme-all\s+delivered\s+2026-11-26_acme\.ndjson\.gz\s+rows=1$", lines["acme-all"])
    assert "failed" in lines["broken-dir"] and "/nope" in lines["broken-dir"]
    assert "2 delivered, 1 failed" in result.output

    history = invoke("history", "--export", "acme-crm")
    assert history.exit_code == 0 and "2026-11-25  delivered" in history.output and "rows=1" in history.output


def test_run_exits_0_when_everything_was_delivered(product):
    product.write_registry([product.global_("acme-all")])
    result = invoke("run", "--date", "2026-11-25", "--export", "acme-all")
    assert result.exit_code == 0, result.output
    assert "1 delivered, 0 failed" in result.output


def test_run_rejects_a_malformed_date_clearly():
    result = CliRunner().invoke(main, ["run", "--date", "25/11/2026"])
    assert result.exit_code == 2 and "expected YYYY-MM-DD" in result.output


def test_run_with_a_malformed_registry_fails_without_a_traceback(product):
    product.write_registry("exports: [\n  - id: x\n")
    result = invoke("run", "--date", "2026-11-25")
    assert result.exit_code == 1
    assert "malformed YAML" in result.output and "Traceback" not in result.output


def test_check_reports_what_is_wrong_per_export(product):
    product.write_registry(
        [
            product.crm("acme-crm"),
            product.crm("no-dir", sftp={"directory": "/nope"}),
            product.global_("acme-all"),
            product.global_("no-bucket", gcs={"bucket": "no-such-bucket"}),
        ]
    )
    result = invoke("check")
    assert result.exit_code == 1
    assert re.search(r"ok    acme-crm: .*host key .* matches .*writable", result.output), result.output
    assert re.search(r"ok    acme-all: ", result.output)
    assert re.search(r"FAIL  no-dir: .*/nope", result.output)
    assert re.search(r"FAIL  no-bucket: .*no-such-bucket", result.output)
    assert list(product.upload_dir.iterdir()) == []  # the probe file was removed


def test_generate_writes_a_day_of_demo_data(tmp_path, monkeypatch):
    monkeypatch.setenv("BEOP_LANDING", str(tmp_path / "landing"))
    result = invoke("generate", "--date", "2026-11-25", "--participations", "150", "--seed", "3")
    assert result.exit_code == 0, result.output
    files = sorted((tmp_path / "landing" / "participations" / "date=2026-11-25").iterdir())
    assert len(files) == 2 and "wrote 150 participations" in result.output


def test_the_console_script_is_installed():
    done = subprocess.run([sys.executable, "-m", "beop_assets.cli", "--help"], capture_output=True, text=True)
    assert done.returncode == 0 and all(c in done.stdout for c in ("validate", "run", "generate", "history", "check"))


def test_a_broken_setting_stops_the_commands_that_use_it_and_only_those(monkeypatch, tmp_path):
    """Issue 23: a typo in BEOP_RETENTION_DAYS used to stop every command, `history` included."""

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "beop_assets.cli", *args], capture_output=True, text=True, cwd=tmp_path
        )

    monkeypatch.setenv("BEOP_WAREHOUSE", "s3://bucket/model")
    done = cli("history")  # history reads the warehouse's ledger: it cannot run
    assert done.returncode == 1, done
    expected = "BEOP_WAREHOUSE='s3://bucket/model': expected a local folder or gs://"
    assert f"configuration: {expected}" in done.stderr and "Traceback" not in done.stderr, done.stderr
    monkeypatch.delenv("BEOP_WAREHOUSE")

    monkeypatch.setenv("BEOP_RETENTION_DAYS", "thirty")
    monkeypatch.setenv("BEOP_MISSED_DAY_DEADLINE", "6am")
    done = cli("history")  # it needs neither
    assert done.returncode == 0 and "no deliveries recorded" in done.stdout, done.stderr
    done = cli("validate", "--settings-only")  # the deployment's pre-start check names both
    assert done.returncode == 1
    assert "SETTING BEOP_RETENTION_DAYS='thirty': expected a whole number of days" in done.stdout, done.stdout
    assert "SETTING BEOP_MISSED_DAY_DEADLINE='6am': expected HH:MM (UTC)" in done.stdout, done.stdout
    monkeypatch.delenv("BEOP_RETENTION_DAYS")
    monkeypatch.delenv("BEOP_MISSED_DAY_DEADLINE")
    done = cli("validate", "--settings-only")
    assert done.returncode == 0 and "0 setting problem(s)" in done.stdout, done.stdout


def test_run_of_a_failing_export_prints_its_one_line_outcome_and_no_stack_trace(product):
    """Issue 24: `run --export Z` for a misconfigured export printed Dagster's whole stack trace first."""
    product.landing.write_events(DAY, [product.landing.event("p_1")])
    product.write_registry([product.crm("broken-dir", sftp={"directory": "/nope"})])
    done = subprocess.run(
        [sys.executable, "-m", "beop_assets.cli", "run", "--date", "2026-11-25", "--export", "broken-dir"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 1, done
    (line,) = [line for line in done.stdout.splitlines() if line.startswith("broken-dir")]
    assert "failed" in line and "/nope" in line
    assert "Traceback" not in done.stdout + done.stderr and 'File "' not in done.stderr, done.stderr[-3000:]
