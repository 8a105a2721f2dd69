"""The WAL source's positions without a server: offset maps, the start plan, the watermark rule."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from connectors.postgres._catalog import SlotInfo
from connectors.postgres._plan import Step, plan_start
from connectors.postgres._stream import SlotLostError
from connectors.postgres._watermarks import WatermarkFilter
from connectors.postgres.config import PostgresSourceConfig, SnapshotMode, derived_identifier
from connectors.postgres.offsets import SnapshotProgress, WalOffset, Watermark
from liberate.errors import FatalError


def slot(*, wal_status: str = "reserved", confirmed: int = 500) -> SlotInfo:
    return SlotInfo(
        name="s", plugin="pgoutput", slot_type="logical", database="d", temporary=False,
        active=False, active_pid=None, wal_status=wal_status,
        restart_lsn=None if wal_status == "lost" else 400, confirmed_flush=confirmed,
    )


# -- offsets -------------------------------------------------------------------------------------


def test_offset_round_trips_through_a_map_of_primitives() -> None:
    offset = WalOffset(
        lsn=1000, tx_id=7, tx_lsn=1200, tx_events=3,
        snapshot=SnapshotProgress("public.items", ("42", "a'b"), 16400, 900),
        watermarks=(Watermark("public.items", None, 1500), Watermark("public.t2", ("9",), 1800)),
    )
    data = offset.to_map()
    assert all(isinstance(v, str | int | float | bool) or v is None for v in data.values())
    assert WalOffset.from_map(data) == offset


def test_a_plain_offset_stays_small() -> None:
    assert WalOffset(123, 4).to_map() == {"lsn": 123, "txId": 4}


def test_watermarks_behind_the_resume_point_are_pruned() -> None:
    offset = WalOffset(1000, watermarks=(Watermark("t", None, 900), Watermark("t", None, 1000),
                                         Watermark("t", ("5",), 1100)))
    assert offset.pruned().watermarks == (Watermark("t", ("5",), 1100),)


def test_a_foreign_offset_is_a_fatal_error_with_a_hint() -> None:
    with pytest.raises(FatalError, match="not a PostgreSQL WAL position"):
        WalOffset.from_map({"table": "x", "ts": 5})


# -- plan ----------------------------------------------------------------------------------------

STREAMING = WalOffset(700, 5)
SNAPSHOTTING = WalOffset(600, snapshot=SnapshotProgress("public.items", ("10",), 1, 650))


@pytest.mark.parametrize(
    "mode,stored,slot_state,step",
    [
        (SnapshotMode.INITIAL, None, None, Step.SNAPSHOT),
        (SnapshotMode.INITIAL, None, "ok", Step.RESUME_SNAPSHOT),
        (SnapshotMode.INITIAL, SNAPSHOTTING, "ok", Step.RESUME_SNAPSHOT),
        (SnapshotMode.INITIAL, STREAMING, "ok", Step.STREAM),
        (SnapshotMode.NEVER, None, None, Step.STREAM),
        (SnapshotMode.NEVER, None, "ok", Step.STREAM),
        (SnapshotMode.NEVER, STREAMING, "ok", Step.STREAM),
        (SnapshotMode.WHEN_NEEDED, STREAMING, None, Step.SNAPSHOT),
        (SnapshotMode.WHEN_NEEDED, STREAMING, "lost", Step.SNAPSHOT),
        (SnapshotMode.WHEN_NEEDED, STREAMING, "ok", Step.STREAM),
        (SnapshotMode.INITIAL_ONLY, None, None, Step.SNAPSHOT_ONLY),
        (SnapshotMode.INITIAL_ONLY, SNAPSHOTTING, None, Step.SNAPSHOT_ONLY),
        (SnapshotMode.INITIAL_ONLY, WalOffset(0), None, Step.DONE),
    ],
)
def test_plan_start(mode: SnapshotMode, stored: WalOffset | None, slot_state: str | None,
                    step: Step) -> None:
    info = None if slot_state is None else slot(wal_status="lost" if slot_state == "lost"
                                                else "reserved")
    assert plan_start(mode, stored, info, "s").step is step


@pytest.mark.parametrize("mode", [SnapshotMode.INITIAL, SnapshotMode.NEVER])
@pytest.mark.parametrize("stored", [STREAMING, SNAPSHOTTING])
@pytest.mark.parametrize("slot_state", [None, "lost"])
def test_a_missing_or_lost_slot_with_a_stored_offset_is_never_recreated_silently(
    mode: SnapshotMode, stored: WalOffset, slot_state: str | None
) -> None:
    info = None if slot_state is None else slot(wal_status="lost")
    with pytest.raises(SlotLostError) as caught:
        plan_start(mode, stored, info, "s")
    assert caught.value.hint is not None and "when_needed" in caught.value.hint


def test_when_needed_drops_only_a_lost_slot() -> None:
    assert plan_start(SnapshotMode.WHEN_NEEDED, STREAMING, slot(wal_status="lost"), "s"
                      ).drop_lost_slot
    assert not plan_start(SnapshotMode.WHEN_NEEDED, STREAMING, None, "s").drop_lost_slot


def test_existing_slot_without_offsets_streams_from_its_confirmed_position() -> None:
    plan = plan_start(SnapshotMode.INITIAL, None, slot(confirmed=4242), "s")
    assert plan.start == WalOffset(4242)


def test_streaming_resume_keeps_the_position_inside_a_transaction() -> None:
    stored = WalOffset(700, 5, tx_lsn=800, tx_events=12,
                       watermarks=(Watermark("t", None, 650), Watermark("t", None, 900)))
    plan = plan_start(SnapshotMode.INITIAL, stored, slot(), "s")
    assert plan.start == WalOffset(700, 5, 800, 12, None, (Watermark("t", None, 900),))


# -- watermarks ----------------------------------------------------------------------------------


def make_filter(marks: Sequence[Watermark]) -> tuple[WatermarkFilter, list[Any]]:
    compared: list[Any] = []

    def compare(table: str, left: Sequence[str], right: Sequence[str]) -> bool:
        compared.append((table, tuple(left), tuple(right)))
        return tuple(left) > tuple(right)

    flt = WatermarkFilter(
        marks, {"a": 0, "b": 1, "c": 2},
        key_types={"a": [23], "b": [25], "c": [23]},
        load_key=lambda table, texts: tuple(int(t) for t in texts),
        compare_in_database=compare,
    )
    return flt, compared


def test_events_of_rows_read_under_the_resumed_snapshot_are_dropped_before_its_lsn() -> None:
    flt, _ = make_filter([Watermark("a", ("10",), 500)])
    assert flt.covers(499) and not flt.covers(500)
    assert flt.drops("a", 499, (11,), ("11",))      # read under the new snapshot
    assert not flt.drops("a", 499, (10,), ("10",))  # read before the crash
    assert not flt.drops("a", 500, (11,), ("11",))  # committed after the new snapshot
    assert flt.drops("b", 499, ("x",), ("x",))      # a later table: read whole under it
    assert flt.drops("c", 499, None, None)          # a truncate of a later table


def test_the_innermost_watermark_decides() -> None:
    flt, _ = make_filter([Watermark("a", ("10",), 500), Watermark("a", ("20",), 800)])
    assert flt.drops("a", 700, (25,), ("25",))       # second resume read it, at 800
    assert not flt.drops("a", 700, (15,), ("15",))   # first resume read it, at 500
    assert flt.drops("a", 450, (15,), ("15",))


def test_keys_that_python_cannot_order_are_compared_by_the_database() -> None:
    flt, compared = make_filter([Watermark("b", ("m",), 500)])
    assert flt.drops("b", 400, ("z",), ("z",))
    assert not flt.drops("b", 400, ("a",), ("a",))
    assert compared == [("b", ("z",), ("m",)), ("b", ("a",), ("m",))]


# -- config --------------------------------------------------------------------------------------


def test_names_derived_from_the_source_are_valid_slot_names() -> None:
    assert derived_identifier("Shop-Orders.eu") == "liberate_shop_orders_eu"
    assert len(derived_identifier("x" * 200)) == 63


def test_config_reports_every_problem_at_once() -> None:
    with pytest.raises(ValueError) as caught:
        PostgresSourceConfig.model_validate({
            "name": "s", "connector": "postgres", "database": "postgresql://u@h/d",
            "tables": ["a", "public.a"], "slot": "Bad-Name",
        })
    text = str(caught.value)
    assert "listed more than once" in text and "lower-case" in text
