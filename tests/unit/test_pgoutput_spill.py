"""Streamed transactions kept on disk until commit (``_spill``), on captured protocol 2 frames."""

from __future__ import annotations

from pathlib import Path

from connectors.postgres import _pgoutput as pg
from connectors.postgres._spill import SpilledTransaction
from tests.unit.test_pgoutput import frames


def spill_blocks(directory: Path) -> tuple[dict[int, SpilledTransaction], list[object]]:
    """Feed the captured stream like the source does: block messages go to their files."""
    streamed: dict[int, SpilledTransaction] = {}
    outside: list[object] = []
    block: SpilledTransaction | None = None
    for frame in frames("v2_streaming.hex.gz"):
        lsn = pg.xlog_start(frame)
        if lsn is None:
            continue
        if block is not None:
            if frame[25] == ord("E"):
                block = None
            else:
                block.append(lsn, frame[25:])
            continue
        message = pg.decode_message(frame, offset=25)
        if isinstance(message, pg.StreamStart):
            if message.xid not in streamed:
                streamed[message.xid] = SpilledTransaction(message.xid, directory)
            block = streamed[message.xid]
        else:
            outside.append(message)
    return streamed, outside


def test_a_committed_streamed_transaction_replays_every_change_in_order(tmp_path: Path) -> None:
    streamed, outside = spill_blocks(tmp_path)
    (commit,) = [m for m in outside if isinstance(m, pg.StreamCommit)]
    spilled = streamed[commit.xid]
    replayed = [m for _, m in spilled.replay()]
    inserts = [m for m in replayed if isinstance(m, pg.Insert)]
    assert [int(i.new.values[0] or b"0") for i in inserts] == list(range(1, 701))
    assert isinstance(replayed[0], pg.Relation)
    positions = [lsn for lsn, _ in spilled.replay()]
    assert positions == sorted(positions)
    spilled.close()
    assert not spilled.path.exists()


def test_changes_of_an_aborted_subtransaction_are_left_out(tmp_path: Path) -> None:
    streamed, outside = spill_blocks(tmp_path)
    (commit,) = [m for m in outside if isinstance(m, pg.StreamCommit)]
    spilled = streamed[commit.xid]
    spilled.abort(commit.xid)  # as if the top transaction's own changes were rolled back
    assert [m for _, m in spilled.replay() if isinstance(m, pg.Insert)] == []
    for each in streamed.values():
        each.close()


def test_the_rolled_back_transaction_is_announced_by_stream_abort(tmp_path: Path) -> None:
    streamed, outside = spill_blocks(tmp_path)
    (abort,) = [m for m in outside if isinstance(m, pg.StreamAbort)]
    assert abort.xid in streamed and abort.subxid == abort.xid
    assert streamed[abort.xid].messages > 0
    for each in streamed.values():
        each.close()
    assert list(tmp_path.iterdir()) == []
