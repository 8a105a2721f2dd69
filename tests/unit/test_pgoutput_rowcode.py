"""The stream's generated hot path (connectors.postgres._rowcode), without a server: it makes
exactly the row records of the general path, or declines."""

from __future__ import annotations

import gc
import struct
from collections.abc import Sequence
from typing import Any

import psycopg
import pytest
import sqlalchemy as sa
from psycopg.adapt import AdaptersMap
from sqlalchemy.dialects import postgresql

from connectors.postgres import _pgoutput as pg
from connectors.postgres._rowcode import compact_jsonb, relation_code
from connectors.postgres._tables import CapturedTable, captured_table
from connectors.postgres._values import RowLoader
from liberate.schema.postgres_types import register_text_loaders
from liberate.schema.types import compact_json

# bigint key, int, text, numeric(12, 2), timestamptz, jsonb, a column the schema leaves out
# (generated, so pgoutput would not send it: stands for a column dropped from the catalog)
TYPES = [20, 23, 25, 1700, 1184, 3802, 25]
STREAM_COLUMNS = ["id", "customer_id", "note", "amount", "created_at", "attributes", "gone"]


class _Context:
    """An adaptation context like a connection's, with the source's text loaders."""

    def __init__(self) -> None:
        self.adapters = AdaptersMap(psycopg.adapters)
        register_text_loaders(self.adapters)
        self.connection = None


def _table(*, with_gone: bool) -> CapturedTable:
    columns: list[sa.Column[Any]] = [
        sa.Column("id", sa.BigInteger, primary_key=True),
        sa.Column("customer_id", sa.Integer, nullable=False),
        sa.Column("note", sa.Text),
        sa.Column("amount", sa.Numeric(12, 2)),
        sa.Column("created_at", sa.DateTime(timezone=True)),
        sa.Column("attributes", postgresql.JSONB),
    ]
    table = sa.Table("orders", sa.MetaData(), *columns, schema="public")
    order = STREAM_COLUMNS if with_gone else STREAM_COLUMNS[:-1]
    return captured_table(table, topic="t.public.orders", source_name="t", database="d",
                          key_columns=None, stream_columns=order)


def _tuple(values: Sequence[bytes | str | None]) -> bytes:
    out = struct.pack("!h", len(values))
    for value in values:
        if value is None:
            out += b"n"
        elif value == "u":
            out += b"u"
        elif isinstance(value, str):  # "b:<data>": a binary value
            data = value[2:].encode()
            out += b"b" + struct.pack("!i", len(data)) + data
        else:
            out += b"t" + struct.pack("!i", len(value)) + value
    return out


def _update(values: Sequence[bytes | str | None]) -> bytes:
    return b"U" + struct.pack("!I", 16400) + b"N" + _tuple(values)


ROW = [b"42", b"7", b"a note, with: punctuation", b"12.50", b"2024-03-31 01:30:00.5+02",
       b'{"a": [1, 2.50], "b c": "d, e: f"}', b"x"]


def _general(table: CapturedTable, loader: RowLoader, message: bytes) -> dict[str, Any]:
    decoded = pg.decode_message(message)
    assert isinstance(decoded, pg.Update)
    return table.value_of_stream(loader.load(decoded.new.values))


@pytest.mark.parametrize("with_gone", [False, True])
@pytest.mark.parametrize(
    "values",
    [
        ROW,
        [b"1", b"-2147483648", None, None, None, None, None],
        [b"9223372036854775807", b"0", b"", b"0.00", b"2000-01-01 00:00:00+00",
         b'"just a string"', None],
        [b"5", b"5", "caf\u00e9 \u2603".encode(), b"-0.01", b"1999-12-31 23:59:59.999999-11",
         b'[{"k": "v w"}, null, true]', b""],
    ],
)
def test_generated_rows_equal_the_general_path(with_gone: bool, values: list[Any]) -> None:
    table = _table(with_gone=with_gone)
    count = len(STREAM_COLUMNS) if with_gone else len(STREAM_COLUMNS) - 1
    values = values[:count]
    loader = RowLoader(_Context(), TYPES[:count], where="public.orders")  # type: ignore[arg-type]
    row, key = relation_code(table, loader)
    message = _update(values)
    made = row(message, 6)
    assert made == _general(table, loader, message)
    assert made is not None and list(made) == list(table.schema.fields)
    assert key(made) == table.schema.key_of(made)
    assert list(key(made)) == list(table.schema.key_of(made))


@pytest.mark.parametrize(
    "values",
    [
        [b"42", b"7", "u", b"1", b"2024-01-01 00:00:00+00", b"{}"],  # unchanged TOAST value
        [b"42", b"7", "b:xx", b"1", b"2024-01-01 00:00:00+00", b"{}"],  # binary value
        [b"42", b"7", b"n", b"1", b"2024-01-01 00:00:00+00"],  # a column short
        [b"42", b"7", b"n", b"1", b"2024-01-01 00:00:00+00", b"{}", b"extra"],  # one more
        [b"42", b"not a number", b"n", b"1", b"2024-01-01 00:00:00+00", b"{}"],  # refused
        [b"42", b"7", b"n", b"1", b"not a time", b"{}"],  # refused by a loader
    ],
)
def test_tuples_it_does_not_take_go_to_the_general_path(values: list[Any]) -> None:
    table = _table(with_gone=False)
    loader = RowLoader(_Context(), TYPES[:6], where="public.orders")  # type: ignore[arg-type]
    row, _ = relation_code(table, loader)
    assert row(_update(values), 6) is None


def test_a_truncated_tuple_goes_to_the_general_path() -> None:
    table = _table(with_gone=False)
    loader = RowLoader(_Context(), TYPES[:6], where="public.orders")  # type: ignore[arg-type]
    row, _ = relation_code(table, loader)
    message = _update(ROW[:6])
    assert row(message, 6) is not None
    for cut in (1, 3, 10, len(ROW[5]) + 2):
        assert row(message[:-cut], 6) is None
        with pytest.raises(pg.DecodeError):
            pg.decode_message(message[:-cut])


def test_generated_records_of_scalars_are_not_tracked_by_the_garbage_collector() -> None:
    # SQLAlchemy's column names are a str subclass: as keys they would make every record a
    # container the collector scans (and full collections slower, the more records wait).
    table = _table(with_gone=False)
    loader = RowLoader(_Context(), TYPES[:6], where="public.orders")  # type: ignore[arg-type]
    row, key = relation_code(table, loader)
    made = row(_update(ROW[:6]), 6)
    assert made is not None
    assert not gc.is_tracked(made)
    assert not gc.is_tracked(key(made))
    assert not gc.is_tracked(table.source_template.copy())


JSONB_TEXTS = [
    "{}",
    "[]",
    '{"a": 1}',
    '{"a b": "c, d: e", "f": [1, 2, 3]}',
    '{"tags": ["a", "b"], "channel": "web", "priority": 3}',
    '"a, b: c"',
    '"plain"',
    "12.50",
    "123456789012345678901234567890",
    "-0.000001",
    "[1.0, 2.50, 100000]",
    'true',
    'null',
    '{"nested": {"deeper": {"k": [null, true, false, {"x": "y z"}]}}}',
    '{"quote": "say \\"hi\\"", "back": "a\\\\b", "nl": "a\\nb", "tab": "\\t"}',
    '{"ctl": "\\u0001", "uni": "caf\u00e9 \u2603 \U0001f600"}',
    '{"k:": ": v", ", ": " ,"}',
    '[" ", "  ", ""]',
    "[" + ", ".join(str(i) + ".25" for i in range(500)) + "]",
]


@pytest.mark.parametrize("text", JSONB_TEXTS)
def test_compact_jsonb_equals_compact_json_on_jsonb_output(text: str) -> None:
    assert compact_jsonb(text.encode()) == compact_json(text)


def test_compact_jsonb_refuses_what_compact_json_refuses() -> None:
    huge = "1" * 5000  # past Python's int digit limit
    with pytest.raises(ValueError):
        compact_json(huge)
    with pytest.raises(ValueError):
        compact_jsonb(huge.encode())
