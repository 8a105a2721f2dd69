"""``verify`` compares values across dialects in one normalised form."""

from __future__ import annotations

import datetime as dt
import decimal
import uuid

import sqlalchemy as sa

from liberate.verify._reconcile import Side, reconcile
from liberate.verify._values import converter_to, normalise, row_digest


def test_the_same_value_from_two_dialects_normalises_alike() -> None:
    aware = dt.datetime(2026, 1, 2, 4, 4, 5, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    assert normalise(aware) == normalise(dt.datetime(2026, 1, 2, 3, 4, 5))
    assert normalise(decimal.Decimal("5.00")) == normalise(5)
    assert normalise(decimal.Decimal("34.90")) == normalise(34.9)
    assert normalise(True) == normalise(1)
    assert normalise({"b": 1, "a": [1, 2]}) == normalise('{"a": [1, 2], "b": 1}')
    assert normalise(uuid.UUID(int=7)) == normalise(str(uuid.UUID(int=7)))
    assert normalise(memoryview(b"\x01")) == normalise(b"\x01")


def test_different_values_stay_different() -> None:
    assert normalise(decimal.Decimal("34.91")) != normalise(decimal.Decimal("34.9"))
    assert normalise("007") != normalise("7")
    assert row_digest([1, "a"]) != row_digest([1, "b"])


def test_text_stored_for_a_decimal_reads_as_the_decimal() -> None:
    convert = converter_to(decimal.Decimal)
    assert convert is not None
    assert normalise(convert("34.90")) == normalise(decimal.Decimal("34.9"))
    assert convert("not a number") == "not a number"
    assert converter_to(str) is None


def _table(conn: sa.Connection, name: str, rows: list[tuple[int, str]]) -> sa.Table:
    table = sa.Table(name, sa.MetaData(), sa.Column("id", sa.Integer, primary_key=True),
                     sa.Column("v", sa.String(20)))
    table.create(conn)
    if rows:
        conn.execute(table.insert(), [{"id": i, "v": v} for i, v in rows])
    return table


def test_bisection_locates_each_difference_among_many_rows() -> None:
    engine = sa.create_engine("sqlite://")
    with engine.connect() as conn:
        rows = [(i, f"row {i}") for i in range(1, 5001)]
        target_rows = [r for r in rows if r[0] not in (17, 4000)] + [(6000, "extra")]
        target_rows = [(i, "changed" if i == 2500 else v) for i, v in target_rows]
        left = Side(conn, _table(conn, "a", rows), ["id"], ["id", "v"])
        right = Side(conn, _table(conn, "b", target_rows), ["id"], ["id", "v"])
        found = reconcile(left, right, parts=4, leaf_rows=50)
    assert sorted(found.missing) == [(17,), (4000,)]
    assert sorted(found.extra) == [(6000,)]
    assert found.different == [(2500,)]
    assert (found.source_rows, found.target_rows) == (5000, 4999)
    # Recursion: only the ranges holding a difference were cut, not all 5000 / 50 leaves.
    assert 4 < found.ranges_compared < 100


def test_a_side_that_is_empty_reports_every_key_without_recursing() -> None:
    engine = sa.create_engine("sqlite://")
    with engine.connect() as conn:
        left = Side(conn, _table(conn, "a", [(i, "x") for i in range(300)]), ["id"], ["id", "v"])
        right = Side(conn, _table(conn, "b", []), ["id"], ["id", "v"])
        found = reconcile(left, right, leaf_rows=10)
    assert len(found.missing) == 300
    assert found.ranges_compared == 1
