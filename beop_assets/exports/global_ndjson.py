"""Building one global export's gzip ndJSON file for one data day (docs/file-contract.md).

Every participation of the account for the day becomes one JSON object on one line, with the keys in
the published order (including the contract's `anwser_text` spelling). DuckDB builds each line with
`to_json(struct_pack(...))`: struct_pack keeps the key order, to_json writes NULL as `null`, keeps
UTF-8 raw and escapes newline, CR, tab, quotes, backslashes and control characters, so a line is
always one record. No row ever becomes a Python object: serializing rows in Python is an order of
magnitude slower than DuckDB's to_json (bench/README.md).

The lines reach Python as Arrow record batches of one string column that already ends each line with
`\\n`; the column's data buffer is thus exactly the batch's bytes of the file, and is handed to the
compressor as is (no per-row loop, no per-row object). Only one batch is held at a time.

Why zlib-ng, at level 5 by default, on two threads: DuckDB's own `COPY ... (FORMAT JSON, COMPRESSION
GZIP)` writes zlib's level 6; isal's levels (0-3) stay ~1.5 x that size, zlib-ng's level 5 is within ~5 %
of it for about a third of zlib's CPU, and `gzip_ng_threaded` compresses 1 MiB blocks on a second thread
while DuckDB builds the next batch (figures in bench/README.md). The caller reads the level from
BEOP_GZIP_LEVEL (0 = stored, 1 = fastest ... 9 = smallest).
The output is one ordinary gzip member (mtime 0, no file name), which `gzip`, `zcat` and any zlib reader read.
A day without participations gives a valid gzip file whose content is empty.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path

import pyarrow as pa
from zlib_ng import gzip_ng, gzip_ng_threaded

from beop_assets.exports.export_file import ExportFile
from beop_assets.exports.registry import GlobalExport
from beop_assets.model import warehouse

GZIP_LEVELS = range(0, 10)  # zlib-ng's deflate levels (0 = stored, 1 = fastest, 9 = smallest)
DEFAULT_GZIP_LEVEL = 5

# The keys of one line, in the contract's order (docs/file-contract.md); the delivery checks verify them.
NDJSON_KEYS = [
    "questions",
    "email",
    "optins",
    "forms",
    "page_url",
    "tc_string",
    "timestamp",
    "publisher_name",
    "publisher_id",
    "content_id",
    "content_name",
    "content_version",
]

# Keys in exactly the contract's order; NULL lists become [] and a NULL element stays null.
GLOBAL_NDJSON_SQL = r"""
SELECT to_json(struct_pack(
    questions := list_transform(coalesce(questions, []), lambda q: CASE WHEN q IS NOT NULL THEN struct_pack(
        question_id := q.question_id,
        question_text := q.question_text,
        anwser_text := q.answer_text) END),
    email := email,
    optins := list_transform(coalesce(optins, []), lambda o: CASE WHEN o IS NOT NULL THEN struct_pack(
        optin_email := o.optin_email,
        optin_text := o.optin_text,
        optin_id := o.optin_id,
        optin_value := o.optin_value) END),
    forms := list_transform(coalesce(forms, []), lambda f: CASE WHEN f IS NOT NULL THEN struct_pack(
        form_id := f.form_id,
        form_name := f.form_name,
        form_data := list_transform(coalesce(f.form_data, []),
                                    lambda d: CASE WHEN d IS NOT NULL THEN struct_pack(
            field_id := d.field_id,
            field_name := d.field_name,
            field_type := d.field_type,
            field_value := d.field_value) END)) END),
    page_url := page_url,
    tc_string := tc_string,
    "timestamp" := strftime("timestamp", '%Y-%m-%dT%H:%M:%S.%gZ'),
    publisher_name := publisher_name,
    publisher_id := publisher_id,
    content_id := content_id,
    content_name := content_name,
    content_version := content_version
)) || chr(10) AS line
FROM read_parquet($parquet, hive_partitioning = false)
WHERE account_id = $account_id
"""


@contextmanager
def _gzip_sink(path: Path, level: int, threads: int) -> Iterator[io.BufferedIOBase]:
    """One gzip stream written by zlib-ng: compressed on `threads` threads when > 1, else in this one."""
    if level not in GZIP_LEVELS:
        raise ValueError(f"gzip level {level} is not supported: zlib-ng accepts 0 to 9 (BEOP_GZIP_LEVEL)")
    if threads > 1:
        with gzip_ng_threaded.open(path, "wb", compresslevel=level, threads=threads) as sink:
            yield sink
        return
    # mtime=0 and no file name in the header: the same file for the same rows.
    with (
        open(path, "wb") as raw,
        gzip_ng.GzipNGFile(filename="", mode="wb", compresslevel=level, fileobj=raw, mtime=0) as sink,
    ):
        yield sink


def _line_bytes(column: pa.Array) -> memoryview:
    """The bytes of all the (newline-terminated) strings of one column, straight from its data buffer."""
    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        column = column.cast(pa.large_string())
    if len(column) == 0:
        return memoryview(b"")
    _, offsets_buffer, data = column.buffers()
    offsets = memoryview(offsets_buffer).cast("q" if pa.types.is_large_string(column.type) else "i")
    start, end = offsets[column.offset], offsets[column.offset + len(column)]
    return memoryview(data)[start:end]


def build_global_ndjson(
    export: GlobalExport,
    day: date,
    out_path: Path,
    file_name: str,
    *,
    root: Path,
    read_threads: int = warehouse.DEFAULT_READ_THREADS,
    level: int = DEFAULT_GZIP_LEVEL,
    threads: int = 2,
    batch_size: int = 10_000,
) -> ExportFile:
    """Write the account's participations of `day` as gzip ndJSON to `out_path` and describe it.

    Raises `DayNotLoadedError` when the model has no participations for that day (an empty file would
    tell the customer that nobody participated), `ValueError` for a level zlib-ng does not support.
    """
    participations = warehouse.loaded_day_file("participations", day, root)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    rows = 0
    con = warehouse.reader(read_threads)
    try:
        reader = con.sql(
            GLOBAL_NDJSON_SQL, params={"parquet": str(participations), "account_id": export.account_id}
        ).to_arrow_reader(batch_size)
        with _gzip_sink(out_path, level, threads) as sink:
            for batch in reader:
                sink.write(_line_bytes(batch.column(0)))
                rows += batch.num_rows
    except BaseException:
        out_path.unlink(missing_ok=True)
        raise
    finally:
        con.close()
    return ExportFile.written(export.id, day, out_path, file_name, rows)
