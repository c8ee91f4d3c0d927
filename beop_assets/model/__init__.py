"""The participation model: validated, deduplicated days stored by DuckDB and as Parquet."""
