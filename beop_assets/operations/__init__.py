"""Plain operations code (retention, missed deliveries, alerts, pre-flight checks): no Dagster here; the jobs,
schedules and sensors that run it are in `beop_assets.defs.operations`."""
