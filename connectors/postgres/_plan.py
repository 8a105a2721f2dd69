"""What a run does first, decided from the snapshot mode, the stored offset and the slot.

A pure function (``plan_start``) so every combination is easy to read and to test. The one rule
that matters most: a slot that is gone or lost while the stored offset says we streamed from it
stops the run with the choices, unless ``snapshot_mode: when_needed`` asked for a new snapshot.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from connectors.postgres._catalog import SlotInfo
from connectors.postgres._pgoutput import lsn_text
from connectors.postgres._stream import LOST_SLOT_HINT, SlotLostError
from connectors.postgres.config import SnapshotMode
from connectors.postgres.offsets import SnapshotProgress, WalOffset


class Step(Enum):
    """The first thing a run does."""

    STREAM = "stream"  # stream from ``start`` (creating the slot if ``create_slot``)
    SNAPSHOT = "snapshot"  # create the slot, read every table under its snapshot, stream
    RESUME_SNAPSHOT = "resume"  # read the rest of the tables under a new snapshot, stream
    SNAPSHOT_ONLY = "snapshot_only"  # read the tables (resuming ``progress``), then stop
    DONE = "done"  # initial_only, and the snapshot is complete: nothing to do


@dataclass(frozen=True, slots=True)
class Plan:
    """The decision, with what it needs."""

    step: Step
    start: WalOffset | None = None
    progress: SnapshotProgress | None = None
    create_slot: bool = False
    drop_lost_slot: bool = False
    note: str = ""


def plan_start(
    mode: SnapshotMode, stored: WalOffset | None, slot: SlotInfo | None, slot_name: str
) -> Plan:
    """The first step of a run (``SlotLostError`` when the slot cannot serve the offset)."""
    if mode is SnapshotMode.INITIAL_ONLY:
        if stored is None:
            return Plan(Step.SNAPSHOT_ONLY)
        if stored.snapshotting:
            return Plan(Step.SNAPSHOT_ONLY, progress=stored.snapshot,
                        note="resuming the interrupted snapshot")
        return Plan(Step.DONE, note="the snapshot is complete")
    usable = slot is not None and not slot.lost
    if stored is None:
        if slot is None:
            if mode is SnapshotMode.NEVER:
                return Plan(Step.STREAM, create_slot=True)
            return Plan(Step.SNAPSHOT, create_slot=True)
        if not usable:
            if mode is SnapshotMode.WHEN_NEEDED:
                return Plan(Step.SNAPSHOT, create_slot=True, drop_lost_slot=True,
                            note=f"slot {slot_name} is lost: dropping it and reading the tables")
            raise _lost(slot_name, slot, stored)
        assert slot is not None
        start = WalOffset(slot.confirmed_flush or 0)
        if mode is SnapshotMode.NEVER:
            return Plan(Step.STREAM, start=start)
        # The slot exists but nothing was stored: the snapshot it exported is gone. Read the
        # tables under a new snapshot and stream from the slot, dropping what that covers.
        return Plan(Step.RESUME_SNAPSHOT, start=start,
                    note=f"slot {slot_name} exists but no position is stored: reading the "
                    "tables under a new snapshot")
    if not usable:
        if mode is SnapshotMode.WHEN_NEEDED:
            return Plan(Step.SNAPSHOT, create_slot=True, drop_lost_slot=slot is not None,
                        note=f"slot {slot_name} is {'lost' if slot else 'missing'}: reading the "
                        "tables again (snapshot_mode: when_needed)")
        raise _lost(slot_name, slot, stored)
    if stored.snapshotting and mode is not SnapshotMode.NEVER:
        return Plan(Step.RESUME_SNAPSHOT, start=stored, progress=stored.snapshot,
                    note="resuming the interrupted snapshot")
    return Plan(Step.STREAM, start=WalOffset(stored.lsn, stored.tx_id, stored.tx_lsn,
                                             stored.tx_events, None, stored.watermarks).pruned())


def _lost(slot_name: str, slot: SlotInfo | None, stored: WalOffset | None) -> SlotLostError:
    if slot is None:
        state = "does not exist"
    else:
        state = f"is lost (wal_status {slot.wal_status or 'unknown'}: its WAL was removed)"
    where = f" at LSN {lsn_text(stored.lsn)}" if stored is not None else ""
    return SlotLostError(
        f"replication slot {slot_name} {state}, but this source streamed from it{where}: "
        "the changes since then cannot be read any more",
        hint=LOST_SLOT_HINT,
    )
