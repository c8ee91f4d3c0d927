"""How a night's (day, export) keys are cut into delivery runs.

A run delivers a *range*: exports contiguous in the order their partitions were added (what a Dagster
partition range is), of one day and one mode. The delivery sensor cuts its ranges around the keys that
are not due and never mixes kinds of attempt in one run; `beop-exports run` cuts them so that its worker
processes share the work. Both cut with `contiguous_ranges`, by their own rule.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping
from typing import TypeVar

T = TypeVar("T")

# Exports per delivery run (BEOP_DELIVERY_BATCH_SIZE): few enough that a run's events (about a dozen per
# export) stay a few seconds of writes, many enough that 10,000 exports are 40 runs. A deployment with
# many run workers (Celery) lowers it to spread a small night over them.
DEFAULT_BATCH_SIZE = 250
# Keys the delivery sensor asks per tick (BEOP_DELIVERY_KEYS_PER_TICK); the rest are asked on the next
# ticks, which see the first ones queued. Dagster stores a few rows per key when it creates a run (its
# planned events and checks), inside the tick: capped, a tick stays a few seconds whatever the
# registry's size, and the queue still gets work faster than its runs finish.
DEFAULT_KEYS_PER_TICK = 500


def contiguous_ranges(order: Iterable[T], kinds: Mapping[T, Hashable], size: int) -> list[list[T]]:
    """The runs of consecutive items of `order` that share a kind (`kinds[item]`), at most `size` items
    each. An item without a kind is not wanted: it ends the range before it, as a different kind does."""
    ranges: list[list[T]] = []
    current: list[T] = []
    for item in order:
        kind = kinds.get(item, _NOT_WANTED)
        if current and (kind != kinds[current[-1]] or len(current) >= size):
            ranges.append(current)
            current = []
        if kind is not _NOT_WANTED:
            current.append(item)
    if current:
        ranges.append(current)
    return ranges


_NOT_WANTED = object()
