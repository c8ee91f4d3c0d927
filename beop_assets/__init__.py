"""beop-exports: nightly participation exports for BeOp customers, orchestrated by Dagster."""
