"""How keys are cut into delivery runs (exports/delivery_runs.py): plain code, the rule both the delivery
sensor and `beop-exports run` cut their ranges with."""

from __future__ import annotations

from beop_assets.exports.delivery_runs import contiguous_ranges

ORDER = ["a", "b", "c", "d", "e", "f", "g"]


def test_ranges_are_contiguous_in_the_partitions_order_and_end_at_a_key_not_wanted():
    wanted = dict.fromkeys(["a", "b", "d", "e", "f"], "crm")
    assert contiguous_ranges(ORDER, wanted, 250) == [["a", "b"], ["d", "e", "f"]]


def test_ranges_hold_at_most_size_keys():
    assert contiguous_ranges(ORDER, dict.fromkeys(ORDER, 1), 3) == [["a", "b", "c"], ["d", "e", "f"], ["g"]]
    assert contiguous_ranges(ORDER, dict.fromkeys(ORDER, 1), 1) == [[k] for k in ORDER]


def test_a_change_of_kind_starts_a_new_range():
    """The sensor never mixes kinds of attempt (a first try and a retry) in one run."""
    kinds = {"a": (1, False), "b": (1, False), "c": (2, False), "d": (2, True), "e": (2, True)}
    assert contiguous_ranges(ORDER, kinds, 250) == [["a", "b"], ["c"], ["d", "e"]]


def test_nothing_wanted_is_no_range():
    assert contiguous_ranges(ORDER, {}, 250) == []
    assert contiguous_ranges([], {"a": 1}, 250) == []
