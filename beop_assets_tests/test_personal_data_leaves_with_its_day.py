"""Issue 23's proof: personal data leaves with its day, from every copy the product made of it.

Five data days are loaded and delivered through Dagster (one CSV export to the real OpenSSH sshd, one
ndJSON.gz export to the GCS emulator), into an instance on disk (SQLite files, as the CLI and `dagster
dev` keep it), with what killed runs would leave behind (a load's scratch folder, a gs:// landing day's
staging copy, a built file in the spool). With BEOP_RETENTION_DAYS=3 the `retention_job` runs; then every
byte the product keeps (the Dagster instance, the warehouse with its Parquet decoded, the DuckDB file
queried and read raw, every gzip decoded, the landing zone, the temporary folder) is searched for the
expired days' e-mails, names, phone numbers and consent strings: none is found, while the same search
finds the kept days' (so it would have found the others). The kept days then re-deliver what they did.

What the customers hold (their SFTP directory and bucket) is theirs, and not searched.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import sqlite3
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest
from dagster import DagsterEventType
from google.cloud import storage

from beop_assets import daily_run, settings
from beop_assets.definitions import build_definitions
from beop_assets.model import warehouse
from beop_assets.operations.retention import purge_expired

TODAY = datetime.now(UTC).date()
DAYS = [TODAY - timedelta(days=n) for n in (5, 4, 3, 2, 1)]
RETENTION_DAYS = 3
EXPIRED, KEPT = DAYS[:2], DAYS[2:]


def personal_values(day: date) -> list[str]:
    """The values of one day's participants that must not outlive it (each unique to its day)."""
    tag = day.strftime("%m%d")
    return [
        f"jane.{tag}@example.com",  # e-mail
        f"optin.{tag}@example.com",  # an optin's e-mail
        f"Janet{tag}",  # first name
        f"Smithson{tag}",  # last name
        f"+33 6 12 {tag[:2]} {tag[2:]} 99",  # phone
        f"CPXtcString{tag}AAAA",  # consent string
        f"rejected.{tag}@example.com",  # only in a line the contract rejects: kept raw by the model
    ]


def _field(field_type: str, value: str) -> dict:
    return {
        "field_id": f"fd_{field_type}",
        "field_name": field_type.title(),
        "field_type": field_type,
        "field_value": value,
    }


def _write_day(zone, day: date) -> None:
    email, optin_email, first, last, phone, tc, rejected = personal_values(day)
    zone.write_events(
        day,
        [
            zone.event(
                f"p_{day:%m%d}",
                day=day,
                email=email,
                tc_string=tc,
                optins=[{"optin_id": "o_1", "optin_value": True, "optin_email": optin_email}],
                forms=[
                    {
                        "form_id": "f_1",
                        "form_name": "Contest",
                        "form_data": [_field("firstname", first), _field("lastname", last), _field("phone", phone)],
                    }
                ],
            ),
            '{"participation_id": "broken", "email": "' + rejected + '"',  # not valid JSON: rejected, kept raw
        ],
    )


# -- the search -------------------------------------------------------------------------------------


def _texts(path: Path) -> list[bytes]:
    """Every readable form of a file's content: its bytes, and decoded when it is gzip, Parquet or SQLite."""
    data = path.read_bytes()
    texts = [data]
    if data[:2] == b"\x1f\x8b":
        texts.append(gzip.decompress(data))
    if data[:4] == b"PAR1":
        table = pq.read_table(io.BytesIO(data))
        texts.append(json.dumps(table.to_pylist(), default=str, ensure_ascii=False).encode())
    if data.startswith(b"SQLite format 3"):
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            texts.append("\n".join(con.iterdump()).encode())
        finally:
            con.close()
    if path.name.endswith(".duckdb"):
        texts.append(_duckdb_content(path))
    return texts


def _duckdb_content(path: Path) -> bytes:
    """Every row the DuckDB file holds or serves (its base tables and its views over the Parquet days)."""
    con = duckdb.connect(str(path), read_only=True)
    try:
        names = [r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()]
        rows = [con.execute(f'SELECT * FROM "{name}"').fetchall() for name in names]
    finally:
        con.close()
    return json.dumps(rows, default=str, ensure_ascii=False).encode()


def found(roots: list[Path], values: list[str]) -> dict[str, list[str]]:
    """Which of `values` occur in a file under `roots`, and where."""
    where: dict[str, list[str]] = {}
    needles = {v: [v.encode(), json.dumps(v)[1:-1].encode()] for v in values}
    for root in roots:
        for path in sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink()):
            for text in _texts(path):
                for value, forms in needles.items():
                    if any(form in text for form in forms) and str(path) not in where.get(value, []):
                        where.setdefault(value, []).append(str(path))
    return where


# -- the proof ------------------------------------------------------------------------------------


def _delivered(product, day: date) -> tuple[bytes, bytes]:
    """The CSV file and the ndJSON.gz object delivered for `day` (the newest CSV file of the day)."""
    csv_files = sorted(
        product.upload_dir.glob(f"{day + timedelta(days=1):%Y%m%d}_*.csv"), key=lambda p: p.stat().st_mtime
    )
    client = storage.Client.create_anonymous_client()
    (blob,) = [b for b in client.list_blobs(product.bucket) if b.name.startswith(f"{day + timedelta(days=1)}_")]
    return csv_files[-1].read_bytes(), blob.download_as_bytes(raw_download=True)


def _leave_crash_leftovers(zone, temp: Path, day: date) -> list[Path]:
    """What killed runs leave: a load's spill, a gs:// landing day's staging copy, a built file in the spool."""
    email = personal_values(day)[0].encode()
    leftovers = [
        zone.warehouse / f"{warehouse.load_scratch_prefix(day)}killed" / "spill" / "duckdb_temp_block.bin",
        temp / f"beop-landing-date={day.isoformat()}-killed" / "day" / "events.ndjson",
        zone.warehouse / "spool" / f"date={day.isoformat()}" / "acme-crm" / "killed-run" / "built.csv",
    ]
    for path in leftovers:
        path.parent.mkdir(parents=True)
        path.write_bytes(b"email\r\n" + email + b"\r\n")
    return leftovers


def test_expired_days_leave_no_personal_value_anywhere_and_kept_days_redeliver_the_same_files(
    product, monkeypatch, tmp_path
):
    zone = product.landing
    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))  # this machine's temporary folder, searched below
    monkeypatch.setenv("BEOP_DELIVERY_WORKERS", "1")
    monkeypatch.setenv("BEOP_RETENTION_DAYS", str(RETENTION_DAYS))
    instance = daily_run.instance()  # on disk in $DAGSTER_HOME: its SQLite files are searched
    product.write_registry([product.crm("acme-crm", campaigns=["cmp_1"], optins=["o_1"]), product.global_("acme-all")])
    delivered = {}
    for day in DAYS:
        _write_day(zone, day)
        outcomes = daily_run.run_day(day, dagster_instance=instance, echo=lambda _: None)
        assert {o.export_id: o.status for o in outcomes} == {"acme-crm": "delivered", "acme-all": "delivered"}
        delivered[day] = _delivered(product, day)
        assert personal_values(day)[0].encode() in delivered[day][0]  # the files carry the day's values
    leftovers = {day: _leave_crash_leftovers(zone, temp, day) for day in (EXPIRED[0], KEPT[0])}

    ours = [zone.root, zone.warehouse, Path(instance.root_directory), temp]
    expired_values = [v for day in EXPIRED for v in personal_values(day)]
    kept_values = [v for day in KEPT for v in personal_values(day)]
    # Before: the search finds every value of every day (in the landing zone at least).
    assert set(found(ours, expired_values + kept_values)) == set(expired_values + kept_values)

    config = settings.current()
    result = build_definitions(config).resolve_job_def("retention_job").execute_in_process(instance=instance)
    assert result.success
    (output,) = [e for e in result.all_events if e.event_type == DagsterEventType.STEP_OUTPUT]
    by_day = output.event_specific_data.metadata["removed_by_day"].value

    # The run says, per expired day, every kind of copy it removed.
    assert sorted(by_day) == [d.isoformat() for d in EXPIRED]
    for day in EXPIRED:
        removed = by_day[day.isoformat()]
        assert removed["landing"] == 1 and removed["ledger_rows"] == 2
        assert removed["model"] == {"participations": 1, "optins": 1, "rejected_participations": 1}
    assert {k: by_day[EXPIRED[0].isoformat()][k] for k in ("spool", "load_scratch", "landing_staging")} == {
        "spool": 1,
        "load_scratch": 1,
        "landing_staging": 1,
    }
    assert not any(p.exists() for p in leftovers[EXPIRED[0]])
    assert all(p.exists() for p in leftovers[KEPT[0]])  # a kept day's copies stay, whatever they are

    # No value of an expired day is left anywhere the product keeps data; every kept day's still is.
    assert found(ours, expired_values) == {}
    assert set(found(ours, kept_values)) == set(kept_values)

    # The kept days re-deliver, from the model alone, the files they delivered (the CSV file's name is new).
    targets = [("acme-crm", "specific"), ("acme-all", "global")]
    for day in KEPT:
        outcomes = daily_run.deliver(day, targets, instance, 1)
        assert [o.status for o in outcomes] == ["delivered", "delivered"], outcomes
        assert _delivered(product, day) == delivered[day]
    # An expired day cannot be delivered again: its model day is gone.
    (crm, _) = daily_run.deliver(EXPIRED[1], targets, instance, 1)
    assert crm.status == "failed" and "materialize the participations partition" in (crm.error or "")
    assert found(ours, expired_values) == {}


@pytest.mark.parametrize("kind", ["load_scratch", "landing_staging"])
def test_a_scratch_folder_without_a_day_goes_only_once_no_load_can_be_using_it(tmp_path, kind):
    """Scratch folders named before they carried their day: removed by age (a live load keeps its own)."""
    root, temp = tmp_path / "warehouse", tmp_path / "tmp"
    parent = root if kind == "load_scratch" else temp
    prefix = warehouse.LOAD_SCRATCH if kind == "load_scratch" else "beop-landing-"
    old, young = parent / f"{prefix}old", parent / f"{prefix}young"
    for folder in (old, young):
        folder.mkdir(parents=True)
    stale = time.time() - warehouse.OLD_VERSIONS_KEPT_S - 60
    os.utime(old, (stale, stale))
    (tmp_path / "landing").mkdir()
    report = purge_expired(str(tmp_path / "landing"), root, 3, TODAY, temp_dir=temp)
    assert report.undated == {kind: 1} and report.by_day == {}
    assert not old.exists() and young.exists()
