"""How work is cut: by UTC data day, and for exports by day x export.

Export ids live in two dynamic partition sets, one per export mode, kept in sync with the registry
by the `export_registry_sensor`. An export id is a slug (`[a-z0-9][a-z0-9-]*`): it never contains
the `|` or `,` that Dagster uses in multi-partition keys and key ranges.

The first data day is a deployment setting (BEOP_START_DATE), so the time-based definitions are
built by `Partitions.starting(...)` when the definitions are assembled, never at import.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from datetime import date

from dagster import (
    BetaWarning,
    DailyPartitionsDefinition,
    DynamicPartitionsDefinition,
    MultiPartitionKey,
    MultiPartitionsDefinition,
    MultiToSingleDimensionPartitionMapping,
)

specific_exports = DynamicPartitionsDefinition(name="specific_exports")
global_exports = DynamicPartitionsDefinition(name="global_exports")

with warnings.catch_warnings():
    warnings.simplefilter("ignore", BetaWarning)  # stable for our use; pinned Dagster train
    # An export partition (day, export) depends on the participations of that same day.
    SAME_DATA_DAY = MultiToSingleDimensionPartitionMapping(partition_dimension_name="date")


@dataclass(frozen=True)
class Partitions:
    data_days: DailyPartitionsDefinition
    specific_export_days: MultiPartitionsDefinition
    global_export_days: MultiPartitionsDefinition

    @classmethod
    def starting(cls, start_date: str) -> Partitions:
        # end_offset=1 makes today a partition too, so an operator can run "today so far" by hand; the
        # schedule itself only ever asks for yesterday, the last complete day.
        data_days = DailyPartitionsDefinition(start_date=start_date, end_offset=1, timezone="UTC")
        return cls(
            data_days=data_days,
            specific_export_days=MultiPartitionsDefinition({"date": data_days, "export": specific_exports}),
            global_export_days=MultiPartitionsDefinition({"date": data_days, "export": global_exports}),
        )


def export_day_key(day: date, export_id: str) -> MultiPartitionKey:
    return MultiPartitionKey({"date": day.isoformat(), "export": export_id})


def split_export_day_key(key: MultiPartitionKey | str) -> tuple[date, str]:
    if not isinstance(key, MultiPartitionKey):
        # "2026-11-25|acme-crm": dimensions are ordered by name, so date comes first.
        day_text, _, export_id = str(key).partition("|")
        return date.fromisoformat(day_text), export_id
    dims = key.keys_by_dimension
    return date.fromisoformat(dims["date"]), dims["export"]
