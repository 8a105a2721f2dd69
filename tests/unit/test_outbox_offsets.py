"""The relay's offset: sets of delivered seqs as ranges, and the stored map."""

from __future__ import annotations

import random
from typing import Any

import pytest

from connectors.outbox import RelayOffset, SeqRanges
from liberate.errors import FatalError


def test_ranges_round_trip_through_their_text() -> None:
    text = "1-3,5,9-10"
    assert SeqRanges.parse(text).text == text
    assert SeqRanges.parse("").text == ""
    assert len(SeqRanges.parse(text)) == 3


def test_adding_values_merges_neighbours_in_any_order() -> None:
    ranges = SeqRanges.parse("1-3,5,9-10")
    for seq, after in [(4, "1-5,9-10"), (8, "1-5,8-10"), (12, "1-5,8-10,12"),
                       (11, "1-5,8-12"), (0, "0-5,8-12"), (7, "0-5,7-12"), (6, "0-12"),
                       (3, "0-12")]:
        ranges.add(seq)
        assert ranges.text == after


def test_the_set_matches_a_plain_python_set_under_random_operations() -> None:
    rng = random.Random(7)
    for _ in range(50):
        values = {rng.randint(0, 60) for _ in range(rng.randint(0, 40))}
        removed = {rng.randint(0, 60) for _ in range(rng.randint(0, 40))}
        ranges = SeqRanges()
        for value in rng.sample(sorted(values), len(values)):
            ranges.add(value)
        cut = SeqRanges()
        for value in removed:
            cut.add(value)
        rest = ranges.difference(cut)
        assert [v for v in range(-1, 62) if v in rest] == sorted(values - removed)
        assert all((v in ranges) == (v in values) for v in range(-1, 62))


def test_would_grow_tells_whether_a_value_needs_a_new_range() -> None:
    ranges = SeqRanges.parse("5-7,10")
    assert [s for s in range(0, 14) if ranges.would_grow(s)] == [0, 1, 2, 3, 12, 13]


@pytest.mark.parametrize("bad", ["a-b", "3-1", "1,,x"])
def test_unreadable_ranges_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        SeqRanges.parse(bad)


def test_the_offset_map_round_trips() -> None:
    offset = RelayOffset("1-3,7", 7)
    assert RelayOffset.from_map(offset.to_map()) == offset


@pytest.mark.parametrize(
    "stored",
    [{"incrementing": 5}, {"relayed": "1-3"}, {"relayed": 3, "seq": 3},
     {"relayed": "3-1", "seq": 3}, {"relayed": "1", "seq": True}],
)
def test_an_offset_written_by_something_else_stops_the_relay_with_the_fix(
    stored: dict[str, Any]
) -> None:
    with pytest.raises(FatalError):
        RelayOffset.from_map(stored)
