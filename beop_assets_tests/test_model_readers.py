"""Readers of the model share one in-memory DuckDB database per process (opening one costs a hundred
times a connection): each reader must still be a connection of its own, closed without closing the
others, usable from the delivery threads side by side, in UTC."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import duckdb

from beop_assets.model.warehouse import reader


def _parquet(path: Path, rows: int) -> Path:
    duckdb.sql(f"COPY (SELECT range AS n FROM range({rows})) TO '{path}' (FORMAT parquet)")
    return path


def test_closing_one_reader_leaves_the_others_working(tmp_path):
    days = _parquet(tmp_path / "day.parquet", 3)
    first, second = reader(), reader()
    first.close()
    assert second.sql(f"SELECT count(*) FROM read_parquet('{days}')").fetchall() == [(3,)]
    assert second.sql("SELECT current_setting('TimeZone')").fetchall() == [("UTC",)]
    second.close()
    third = reader()
    assert third.sql("SELECT 1").fetchall() == [(1,)]
    third.close()


def test_readers_on_many_threads_each_read_their_own_file(tmp_path):
    files = {n: _parquet(tmp_path / f"day-{n}.parquet", n) for n in range(1, 17)}

    def count(n: int) -> int:
        con = reader()
        try:
            return con.sql(f"SELECT count(*) FROM read_parquet('{files[n]}')").fetchall()[0][0]
        finally:
            con.close()

    with ThreadPoolExecutor(8) as pool:
        assert list(pool.map(count, files)) == list(files)
