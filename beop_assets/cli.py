"""`beop-exports`: the operator's commands (docs/operators-guide.md).

`run` goes through Dagster and records every run in the instance ($DAGSTER_HOME), exactly as the
schedule would: load the day, then deliver each export in a run of its own, so that one failing
export never stops the others.
"""

from __future__ import annotations

import sys
from datetime import date

import click

from beop_assets import settings


def _day(ctx, param, value):
    if value is None:
        return None
    try:
        return settings.parse_day(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _settings(*used: str) -> settings.Settings:
    """This command's settings: those it uses are checked here, so that a wrong one is named (not a
    traceback); a wrong setting that it does not use does not stop it."""
    config = settings.current()
    for name in used:
        try:
            getattr(config, name)
        except ValueError as exc:
            raise click.ClickException(f"configuration: {exc}") from None
    return config


def _registry(config: settings.Settings):
    from beop_assets.definitions import build_resources

    return build_resources(config)["registry"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Nightly participation exports: CSV over SFTP, gzip ndJSON to GCS."""


@main.command()
@click.option(
    "--settings-only",
    is_flag=True,
    help="Check every BEOP_* setting (not the registry); exit 1 naming each one that cannot be used. "
    "Deployments run this before starting the webserver, the daemon and the workers.",
)
def validate(settings_only: bool) -> None:
    """Check every setting, then load the export registry against the reference data; print every fault;
    exit 1 if any."""
    config = settings.current()
    problems = config.problems()
    for problem in problems:
        click.echo(f"SETTING {problem}")
    if settings_only:
        click.echo(f"{len(problems)} setting problem(s)")
        sys.exit(1 if problems else 0)
    if problems:
        click.echo(f"{len(problems)} setting problem(s); the registry is checked with the others' values")
    from beop_assets.exports import registry_cache
    from beop_assets.exports.registry_source import open_source

    current = _settings("landing", "exports")
    source = open_source(current.exports)
    registry = registry_cache.load(source, current.landing)
    for fault in registry.faults:
        click.echo(f"FAULT {fault}")
    for export in registry.exports.values():
        state = "enabled" if export.enabled else "disabled"
        click.echo(f"ok    {export.id} ({export.mode}, {state})")
    revision = f" (revision {registry.revision})" if registry.revision else ""
    click.echo(f"{len(registry.exports)} valid export(s), {len(registry.faults)} fault(s) in {source}{revision}")
    sys.exit(1 if registry.faults or problems else 0)


def _table(database: str | None):
    """The registry table named by --database, else by BEOP_EXPORTS (which must then be a URL)."""
    from beop_assets.exports.registry_table import TableAddress, is_table_url

    url = database or settings.current().exports
    if not is_table_url(url):
        raise click.UsageError("BEOP_EXPORTS is a file, not a postgresql:// URL: give the table with --database URL")
    try:
        return TableAddress.parse(url)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None


DATABASE_OPTION = click.option(
    "--database",
    default=None,
    metavar="URL",
    help="postgresql://user@host:port/db[?table=...] (default: BEOP_EXPORTS). Prefer PGPASSWORD or ~/.pgpass "
    "to a password in the URL.",
)


@main.group()
def registry() -> None:
    """The export registry in the platform's PostgreSQL database: create it, copy it to and from YAML."""


@registry.command("init")
@DATABASE_OPTION
@click.option("--print", "print_only", is_flag=True, help="Only print the DDL (for the platform's own migrations).")
def registry_init(database: str | None, print_only: bool) -> None:
    """Create the registry table, its revision and triggers (idempotent), or print their DDL."""
    from beop_assets.exports import registry_table
    from beop_assets.exports.registry_table import TableAddress, is_table_url

    if print_only:
        named = database or is_table_url(settings.current().exports)
        address = _table(database) if named else TableAddress("localhost", 5432, "-")
        click.echo(registry_table.ddl(address))
        click.echo(f"-- The product's own database user reads only:\n{registry_table.grant(address)}")
        return
    address = _table(database)
    try:
        registry_table.create(address)
    except registry_table.RegistryTableError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"created (or already there): {address}")


@registry.command("export")
@DATABASE_OPTION
@click.option("--to", "target", required=True, type=click.Path(dir_okay=False), help="The YAML file to write.")
def registry_export(database: str | None, target: str) -> None:
    """Copy every row of the table into a registry file (as they are, valid or not; never a credential)."""
    import os
    from pathlib import Path

    from beop_assets.exports import registry_table
    from beop_assets.exports.registry import dump_yaml

    address = _table(database)
    try:
        entries = registry_table.read_entries(address)
    except registry_table.RegistryTableError as exc:
        raise click.ClickException(str(exc)) from None
    rows = []
    for entry, _line in entries.items:
        assert isinstance(entry, dict)
        for fault in registry_table.inline_credentials(entry):
            click.echo(f"FAULT {fault}")
            block = entry[fault.field.split(".")[0]]
            del block[fault.field.split(".", 1)[1]]
        rows.append(entry)
    path = Path(target)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(f"# beop-exports registry export of {address}, revision {entries.revision}\n" + dump_yaml(rows))
    os.replace(partial, path)  # a reader never sees half a file
    click.echo(f"{len(rows)} export(s) of {address} (revision {entries.revision}) written to {path}")


@registry.command("import")
@DATABASE_OPTION
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--replace", is_flag=True, help="Also delete the table's exports that the file does not hold.")
def registry_import(database: str | None, file: str, replace: bool) -> None:
    """Validate a registry file against the reference data, then write all of it to the table in one
    transaction (nothing is written if any entry has a fault)."""
    from pathlib import Path

    from beop_assets.exports import registry_cache, registry_table
    from beop_assets.exports.registry_source import YamlFile

    address = _table(database)
    source = YamlFile(Path(file))
    checked = registry_cache.load(source, settings.current().landing)
    if checked.faults:
        for fault in checked.faults:
            click.echo(f"FAULT {fault}")
        raise click.ClickException(f"{len(checked.faults)} fault(s) in {file}: nothing imported into {address}")
    entries = [e for e, _ in source.read().items if isinstance(e, dict)]
    try:
        count = registry_table.replace_rows(address, entries, delete_others=replace)
    except registry_table.RegistryTableError as exc:
        raise click.ClickException(f"{exc}: nothing imported") from None
    click.echo(f"{count} export(s) of {file} imported into {address}" + (" (others deleted)" if replace else ""))


@main.command()
@click.option("--date", "day", required=True, callback=_day, help="The data day, YYYY-MM-DD (UTC).")
@click.option(
    "--export", "export_ids", multiple=True, help="Only these exports (repeatable). Default: every enabled export."
)
def run(day: date, export_ids: tuple[str, ...]) -> None:
    """Load the day, then deliver every enabled export (or those named). Exit 1 if any failed."""
    from beop_assets.daily_run import run_day

    config = _settings("landing", "warehouse", "exports", "start_date", "delivery_workers", "gzip_level")
    outcomes = run_day(day, list(export_ids) or None, echo=click.echo, config=config)
    width = max([len(o.export_id) for o in outcomes] + [10])
    for o in outcomes:
        line = (
            f"{o.export_id:<{width}}  {o.status:<9}  {o.file_name or '-'}  rows={o.rows if o.rows is not None else '-'}"
        )
        if o.error:
            line += f"  error: {o.error}"
        click.echo(line)
    failed = [o for o in outcomes if o.status != "delivered"]
    click.echo(f"{len(outcomes) - len(failed)} delivered, {len(failed)} failed")
    sys.exit(1 if failed else 0)


@main.command()
@click.option("--date", "day", required=True, callback=_day, help="The data day to generate, YYYY-MM-DD.")
@click.option("--participations", "count", required=True, type=click.IntRange(min=0), help="How many participations.")
@click.option("--seed", default=0, show_default=True, type=int, help="Random seed (same seed, same data).")
@click.option("--with-faults", is_flag=True, help="Also write a file of bad lines, to see rejections.")
def generate(day: date, count: int, seed: int, with_faults: bool) -> None:
    """Write realistic demo data for one day into the landing zone."""
    from pathlib import Path

    from beop_assets.demo.generate import generate_day

    landing = _settings("landing").landing
    if landing.startswith("gs://"):
        raise click.UsageError("generate writes to a local landing folder; unset BEOP_LANDING or point it at a folder")
    summary = generate_day(Path(landing), day, count, seed, faults=with_faults)
    click.echo(f"wrote {summary.participations} participations for {day} into {landing} ({len(summary.files)} files)")


@main.command()
@click.option("--export", "export_id", default=None, help="Only this export.")
@click.option("--date", "day", default=None, callback=_day, help="Only this data day.")
@click.option(
    "--from", "first", default=None, callback=_day, help="With --missing: the first data day (default: see --missing)."
)
@click.option(
    "--to", "last", default=None, callback=_day, help="With --missing: the last data day (default: yesterday)."
)
@click.option("--limit", default=50, show_default=True)
@click.option(
    "--missing",
    is_flag=True,
    help="List every (day, enabled export) without a successful delivery, from --from to --to (or --date); "
    "default: the whole look-back window ending yesterday (BEOP_DELIVERY_LOOKBACK_DAYS). Exit 1 if there is one.",
)
def history(
    export_id: str | None, day: date | None, first: date | None, last: date | None, limit: int, missing: bool
) -> None:
    """The delivery ledger: every attempt and its result, newest first (or, with --missing, the gaps)."""
    from beop_assets.delivery import ledger

    if missing:
        sys.exit(_missing(_missing_days(day, first, last), export_id))
    if first or last:
        raise click.UsageError("--from/--to go with --missing; without it, --date names one day")
    rows = ledger.history(export_id, day, limit=limit, root=_settings("warehouse", "ledger_url").ledger)
    for r in rows:
        click.echo(
            f"{r.started_at}  {r.export_id}  {r.data_day}  {r.status:<9}  {r.file_name}  rows={r.rows}  "
            f"bytes={r.bytes}  sha256={(r.sha256 or '')[:12]}  {r.destination or ''}"
            + (f"  error: {r.error}" if r.error else "")
        )
    if not rows:
        click.echo("no deliveries recorded")


def _missing_days(day: date | None, first: date | None, last: date | None) -> list[date]:
    """The days `history --missing` looks at: --date, or --from..--to, by default the look-back window
    ending yesterday (from the deployment's first data day on)."""
    from datetime import UTC, datetime, timedelta

    if day and (first or last):
        raise click.UsageError("give either --date or --from/--to, not both")
    if day:
        return [day]
    config = _settings("delivery_lookback_days", "start_date")
    lookback = config.delivery_lookback_days
    today = datetime.now(UTC).date()
    last = last or today - timedelta(days=1)
    start = first or max(last - timedelta(days=lookback - 1), date.fromisoformat(config.start_date))
    if start > last:
        raise click.UsageError(f"--from {start} is after --to {last}")
    return [start + timedelta(days=n) for n in range((last - start).days + 1)]


def _missing(days: list[date], export_id: str | None) -> int:
    from datetime import UTC, datetime

    from beop_assets.operations.missed_deliveries import deadline_of, missed_in_days

    config = _settings("landing", "warehouse", "ledger_url", "exports", "missed_day_deadline")
    reports = missed_in_days(_registry(config).load(), days, config.ledger)
    total = 0
    faults = False
    for day, report in reports.items():
        missed = [m for m in report.missed if export_id is None or m.export_id == export_id]
        total += len(missed)
        faults = faults or bool(report.faults)
        deadline = deadline_of(day, config.missed_day_deadline)
        note = "" if datetime.now(UTC) >= deadline else " (the deadline has not passed yet)"
        for fault in report.faults:
            click.echo(f"FAULT {fault}")
        for m in missed:
            click.echo(f"MISSING {m.export_id}  {m.day}  {m.describe()}")
        checked = [i for i in report.checked if export_id is None or i == export_id]
        click.echo(
            f"{day}: {len(checked) - len(missed)} of {len(checked)} enabled export(s) delivered, "
            f"{len(missed)} missing; deadline {deadline:%Y-%m-%d %H:%M} UTC{note}"
        )
    if len(reports) > 1:
        click.echo(f"{days[0]} to {days[-1]}: {total} undelivered (day, export) pair(s)")
    return 1 if total or faults else 0


@main.command()
@click.option("--export", "export_ids", multiple=True, help="Only these exports.")
def check(export_ids: tuple[str, ...]) -> None:
    """Pre-flight: connect to each destination and prove a file can be written there."""
    from beop_assets.operations.preflight import preflight

    registry = _registry(_settings("landing", "exports")).load()
    problems = preflight(registry, list(export_ids) or None, echo=click.echo)
    sys.exit(1 if problems else 0)


@main.command()
@click.option("--date", "day", default=None, callback=_day, help="Data day of the demo (default: yesterday).")
@click.option("--participations", "count", default=2000, show_default=True)
@click.option(
    "--ui",
    is_flag=True,
    help="Then keep the demo's SFTP server and GCS emulator running with `dagster dev`, so that runs and "
    "backfills launched from the UI deliver; Ctrl-C stops everything it started.",
)
@click.option("--skip-run", is_flag=True, help="With --ui: do not generate data or run the daily job first.")
@click.option("--port", default=3000, show_default=True, help="With --ui: the UI's port on 127.0.0.1.")
def demo(day: date | None, count: int, ui: bool, skip_run: bool, port: int) -> None:
    """Generate demo data, start a local SFTP server and GCS emulator, run the daily job, show the files."""
    from pathlib import Path

    from beop_assets.demo.run import run_demo

    landing = Path(_settings("landing").landing)
    sys.exit(run_demo(day, count, echo=click.echo, ui=ui, skip_run=skip_run, ui_port=port, landing=landing))


if __name__ == "__main__":
    main()
