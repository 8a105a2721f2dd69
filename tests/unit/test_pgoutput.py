"""The pgoutput decoder on messages captured from a real PostgreSQL 15 (tests/unit/data/pgoutput).

``v1_all_kinds.hex``: protocol 1 with messages on; a table ``items (id int primary key, name
text not null, qty int, note text storage external, feel mood, amount numeric(10,2))`` under
REPLICA IDENTITY DEFAULT and ``full_items (id int primary key, name text, note text)`` under
FULL, then: a two-row insert, an update leaving a TOAST value unchanged, a key change, a
delete, the same on the FULL table, a transactional and a non-transactional message, a
TRUNCATE of both tables, and an insert with quotes and non-ASCII text.
``v2_streaming.hex.gz``: protocol 2 with streaming on and logical_decoding_work_mem = 64kB: a
large committed transaction, a large rolled back one, and a small one.
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import pytest

from connectors.postgres import _pgoutput as pg

DATA = Path(__file__).parent / "data" / "pgoutput"


def frames(name: str) -> list[bytes]:
    path = DATA / name
    if path.suffix == ".gz":
        with gzip.open(path, "rt") as packed:
            lines = packed.read().splitlines()
    else:
        lines = path.read_text().splitlines()
    return [bytes.fromhex(line.strip()) for line in lines if not line.startswith("#")]


def messages(name: str) -> list[tuple[int, pg.PgOutputMessage]]:
    """(data_start, message) of every XLogData frame, tracking stream blocks like a client."""
    out: list[tuple[int, pg.PgOutputMessage]] = []
    in_stream = False
    for frame in frames(name):
        decoded = pg.decode_frame(frame)
        if isinstance(decoded, pg.XLogData):
            message = pg.decode_message(decoded.payload, in_stream=in_stream)
            if isinstance(message, pg.StreamStart):
                in_stream = True
            elif isinstance(message, pg.StreamStop):
                in_stream = False
            out.append((decoded.data_start, message))
    return out


@pytest.fixture(scope="module")
def v1() -> list[pg.PgOutputMessage]:
    return [m for _, m in messages("v1_all_kinds.hex")]


def of(kind: type[pg.PgOutputMessage], items: list[pg.PgOutputMessage]) -> list:  # type: ignore[type-arg]
    return [m for m in items if isinstance(m, kind)]


def test_keepalive_frames_carry_the_wal_end_and_the_reply_flag() -> None:
    keepalives = [pg.decode_frame(f) for f in frames("v1_all_kinds.hex") if f[:1] == b"k"]
    assert keepalives and all(isinstance(k, pg.Keepalive) for k in keepalives)
    ends = [k.wal_end for k in keepalives if isinstance(k, pg.Keepalive)]
    assert ends == sorted(ends) and ends[0] > 0
    assert all(isinstance(k, pg.Keepalive) and k.reply is False for k in keepalives)


def test_transactions_are_framed_by_begin_and_commit_with_matching_lsns(
    v1: list[pg.PgOutputMessage],
) -> None:
    begins = of(pg.Begin, v1)
    commits = of(pg.Commit, v1)
    assert len(begins) == len(commits) == 10
    for begin, commit in zip(begins, commits, strict=True):
        assert begin.final_lsn == commit.commit_lsn
        assert commit.end_lsn > commit.commit_lsn
        assert begin.commit_ts == commit.commit_ts
    xids = [b.xid for b in begins]
    assert xids == sorted(xids)


def test_relation_describes_columns_types_and_replica_identity(
    v1: list[pg.PgOutputMessage],
) -> None:
    relations = {r.name: r for r in of(pg.Relation, v1)}
    items, full = relations["items"], relations["full_items"]
    assert (items.namespace, items.replica_identity) == ("public", "d")
    assert [(c.name, c.key, c.type_oid) for c in items.columns[:4]] == [
        ("id", True, 23), ("name", False, 25), ("qty", False, 23), ("note", False, 25),
    ]
    amount = items.columns[5]
    assert (amount.type_oid, (amount.type_modifier - 4) >> 16, (amount.type_modifier - 4) & 0xFFFF
            ) == (1700, 10, 2)
    # Under FULL every column is part of the identity.
    assert full.replica_identity == "f" and all(c.key for c in full.columns)


def test_type_message_names_the_enum(v1: list[pg.PgOutputMessage]) -> None:
    types = of(pg.Type, v1)
    assert {(t.namespace, t.name) for t in types} == {("public", "mood")}
    items = next(r for r in of(pg.Relation, v1) if r.name == "items")
    assert items.columns[4].type_oid == types[0].oid


def test_insert_values_are_the_text_forms_and_nulls_are_none(
    v1: list[pg.PgOutputMessage],
) -> None:
    first, second = of(pg.Insert, v1)[:2]
    assert first.new.values[:3] == [b"1", b"one", b"10"]
    assert first.new.values[3] == b"x" * 5000
    assert first.new.values[4:] == [b"happy", b"12.34"]
    assert second.new.values == [b"2", b"two", None, None, None, None]
    assert first.new.unchanged == () and second.new.unchanged == ()


def test_unchanged_toast_value_is_marked_not_sent(v1: list[pg.PgOutputMessage]) -> None:
    update = of(pg.Update, v1)[0]
    assert update.old is None and update.old_kind is None
    assert update.new.unchanged == (3,)
    assert update.new.values[3] is None
    assert update.new.values[2] == b"11"


def test_key_change_under_default_identity_sends_the_old_key(
    v1: list[pg.PgOutputMessage],
) -> None:
    update = of(pg.Update, v1)[1]
    assert update.old_kind == "K"
    assert update.old is not None and update.old.values == [b"2", None, None, None, None, None]
    assert update.new.values[:2] == [b"3", b"two"]


def test_delete_under_default_identity_sends_only_the_key(v1: list[pg.PgOutputMessage]) -> None:
    delete = of(pg.Delete, v1)[0]
    assert delete.old_kind == "K"
    assert delete.old.values == [b"3", None, None, None, None, None]


def test_full_identity_sends_the_whole_old_row(v1: list[pg.PgOutputMessage]) -> None:
    update = of(pg.Update, v1)[2]
    assert update.old_kind == "O"
    assert update.old is not None and update.old.values == [b"1", b"a", b"x" * 5000]
    # The new row still omits the unchanged TOAST value; the old row has it.
    assert update.new.values[:2] == [b"1", b"b"] and update.new.unchanged == (2,)
    delete = of(pg.Delete, v1)[1]
    assert delete.old_kind == "O" and delete.old.values == [b"1", b"b", b"x" * 5000]


def test_messages_keep_prefix_content_and_transactionality(
    v1: list[pg.PgOutputMessage],
) -> None:
    transactional, plain = of(pg.Message, v1)
    assert (transactional.transactional, transactional.prefix, transactional.content) == (
        True, "app", b"hello")
    assert (plain.transactional, plain.prefix, plain.content) == (False, "app.nt", b"\x00\xff")
    assert plain.lsn > transactional.lsn
    # A non-transactional message comes outside any Begin/Commit.
    index = v1.index(plain)
    assert isinstance(v1[index - 1], pg.Commit) and isinstance(v1[index + 1], pg.Begin)


def test_truncate_lists_every_table(v1: list[pg.PgOutputMessage]) -> None:
    (truncate,) = of(pg.Truncate, v1)
    relations = {r.oid: r.name for r in of(pg.Relation, v1)}
    assert [relations[oid] for oid in truncate.relation_oids] == ["items", "full_items"]
    assert truncate.options == 0


def test_text_values_keep_quotes_and_utf8_bytes(v1: list[pg.PgOutputMessage]) -> None:
    last = of(pg.Insert, v1)[-1]
    assert last.new.values[1] == 'quote\'s "é"'.encode()
    assert last.new.values[5] == b"-0.50"


def test_streamed_transactions_arrive_in_blocks_then_commit_or_abort() -> None:
    decoded = [m for _, m in messages("v2_streaming.hex.gz")]
    starts = of(pg.StreamStart, decoded)
    assert starts[0].first_segment and not starts[1].first_segment
    (commit,) = of(pg.StreamCommit, decoded)
    (abort,) = of(pg.StreamAbort, decoded)
    assert commit.xid == starts[0].xid and commit.end_lsn > commit.commit_lsn
    assert abort.xid == abort.subxid != commit.xid
    inserts = of(pg.Insert, decoded)
    committed = [i for i in inserts if i.xid == commit.xid]
    assert len(committed) == 700 and committed[0].new.values == [b"1", b"v" * 100]
    # The small transaction after them is sent whole, without xids on its changes.
    assert inserts[-1].xid is None and inserts[-1].new.values == [b"9999", b"small"]
    assert len(of(pg.StreamStop, decoded)) == len(starts)


def test_streamed_relation_carries_the_xid() -> None:
    relations = of(pg.Relation, [m for _, m in messages("v2_streaming.hex.gz")])
    assert relations[0].xid is not None and relations[0].name == "s"


def test_decoding_in_place_equals_decoding_the_payload() -> None:
    for frame in frames("v1_all_kinds.hex"):
        decoded = pg.decode_frame(frame)
        if isinstance(decoded, pg.XLogData):
            assert pg.xlog_start(frame) == decoded.data_start
            assert pg.decode_message(frame, offset=25) == pg.decode_message(decoded.payload)
        else:
            assert pg.xlog_start(frame) is None


def test_standby_status_update_layout() -> None:
    data = pg.standby_status(0x10, 0x20, 0x30, 1234, reply=True)
    assert data[:1] == b"r"
    assert struct.unpack("!QQQq?", data[1:]) == (0x10, 0x20, 0x30, 1234, True)


@pytest.mark.parametrize("text,value", [("0/0", 0), ("0/16B3748", 0x16B3748),
                                        ("16/B374D848", (0x16 << 32) | 0xB374D848)])
def test_lsn_text_round_trips(text: str, value: int) -> None:
    assert pg.parse_lsn(text) == value
    assert pg.lsn_text(value) == text


def test_commit_timestamps_are_microseconds_since_2000(v1: list[pg.PgOutputMessage]) -> None:
    begin = of(pg.Begin, v1)[0]
    when = pg.timestamp_of(begin.commit_ts)
    assert when.year >= 2024
    assert pg.epoch_ms_of(begin.commit_ts) == int(when.timestamp()) * 1000 + (
        when.microsecond // 1000)


@pytest.mark.parametrize("data", [b"Z", b"B\x00", b"I\x00\x00\x00\x01N\x00\x01t\x00\x00\x00\x09ab"])
def test_malformed_messages_raise_decode_error(data: bytes) -> None:
    with pytest.raises(pg.DecodeError):
        pg.decode_message(data)


def test_unknown_frame_raises_decode_error() -> None:
    with pytest.raises(pg.DecodeError):
        pg.decode_frame(b"?123")
