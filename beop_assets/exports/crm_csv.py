"""Building one specific export's CSV file for one data day (docs/file-contract.md).

The columns and the rows are decided in `crm_columns.py` (the typed columns were computed once, at load
time, so the query is a filtered projection of the day); this module only streams them into a file:
DuckDB reads the day's participations Parquet through a fresh in-memory connection (never the model's
DuckDB file, so no lock is taken) and hands Arrow record batches (`to_arrow_reader`) to
`pyarrow.csv.CSVWriter`. Only one batch is in Python's hands at a time, so memory does not grow with the
day's size, and no row becomes a Python object (Python's `csv` module is several times slower: bench/README.md).

The file format, as a customer's importer sees it:

- UTF-8 without BOM, comma separator, header row first (written even when the day has no row).
- RFC 4180 quoting: pyarrow's default style (`needed`) encloses every string in double quotes and doubles
  the quotes inside, so commas, quotes, tabs and newlines inside a value are safe; booleans are written
  bare as `true` / `false`; NULL is an empty field.
- Records end with CRLF, as RFC 4180 specifies (pyarrow's default would be LF). A newline inside a value
  stays as it was, inside its quoted field: parsers that follow RFC 4180 (Python's `csv`, spreadsheets,
  pandas) read it back as one record.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pa_csv

from beop_assets.exports.crm_columns import crm_select
from beop_assets.exports.export_file import ExportFile
from beop_assets.exports.registry import SpecificExport
from beop_assets.model import warehouse

RECORD_SEPARATOR = "\r\n"  # RFC 4180, section 2.1


def build_crm_csv(
    export: SpecificExport,
    day: date,
    optin_names: dict[str, str],
    out_path: Path,
    file_name: str,
    *,
    root: Path,
    read_threads: int = warehouse.DEFAULT_READ_THREADS,
    batch_size: int = 10_000,
    derive_typed_columns: bool = False,
) -> ExportFile:
    """Write the export's CSV file for `day` to `out_path` and describe it.

    Raises `DayNotLoadedError` when the model has no participations for that day: an empty file would
    tell the customer that nobody participated. `optin_names` maps optin id -> name (the reference data).
    """
    participations = warehouse.loaded_day_file("participations", day, root)
    query = crm_select(export, optin_names, participations, derive_typed_columns=derive_typed_columns)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    options = pa_csv.WriteOptions(include_header=True, delimiter=",", eol=RECORD_SEPARATOR, quoting_style="needed")
    rows = 0
    con = warehouse.reader(read_threads)
    try:
        reader = con.sql(query.sql, params=query.params).to_arrow_reader(batch_size)
        # The SQL aliases are neutral; the customer-facing headers are only Arrow field names.
        schema = pa.schema([pa.field(h, f.type) for h, f in zip(query.headers, reader.schema, strict=True)])
        with pa_csv.CSVWriter(str(out_path), schema, write_options=options) as writer:
            for batch in reader:
                writer.write_batch(pa.RecordBatch.from_arrays(batch.columns, schema=schema))
                rows += batch.num_rows
    except BaseException:
        out_path.unlink(missing_ok=True)
        raise
    finally:
        con.close()
    return ExportFile.written(export.id, day, out_path, file_name, rows)
