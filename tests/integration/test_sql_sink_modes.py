"""The SQL sink's modes and shapes: update, value keys, append-only, field lists, truncates and
unchanged (TOAST) columns, on SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from liberate.errors import FatalError, RecordError
from liberate.records import SinkRecord, TopicPartition
from tests.integration._sql_sink_support import (
    ORDER_KEY,
    ORDER_VALUE,
    TOPIC,
    change,
    opened_sinks,
    order,
    read_rows,
    row,
    tombstone,
)


@pytest.fixture
def open_sink(any_db_url: str) -> Iterator[Any]:
    """Opens sinks on the test database (``open_sink(**config overrides)``); closes them after."""
    yield from opened_sinks(any_db_url)


# -- update mode -------------------------------------------------------------------------------


def test_update_mode_changes_existing_rows_and_never_inserts(
    any_db_url: str, open_sink: Any
) -> None:
    open_sink(name="loader").write([order(0, 1, "new"), order(1, 2, "new")])
    sink = open_sink(mode="update")
    sink.write([order(0, 1, "paid", "fast"), order(1, 3, "unknown"), tombstone(2, 2)])
    assert read_rows(any_db_url, "orders") == [row(1, "paid", "fast")]


def test_update_mode_keeps_a_row_deleted_earlier_in_the_batch_deleted(
    any_db_url: str, open_sink: Any
) -> None:
    open_sink(name="loader").write([order(0, 1, "new"), order(1, 2, "new")])
    sink = open_sink(mode="update")
    sink.write([tombstone(0, 1), order(1, 1, "updated after the delete"),
                order(2, 2, "a"), order(3, 2, "b")])
    assert read_rows(any_db_url, "orders") == [row(2, "b")]


# -- primary keys ------------------------------------------------------------------------------


def test_pk_fields_key_rows_by_value_fields_and_deletes_use_the_before_image(
    any_db_url: str, open_sink: Any
) -> None:
    sink = open_sink(pk_mode="record_value", pk_fields=["status", "id"])
    # The record key is ignored: rows are keyed by (status, id) of the value.
    sink.write([order(0, 1, "new"), order(1, 1, "paid"), order(2, 1, "new", "again")])
    assert sorted((r["id"], r["status"], r["note"]) for r in read_rows(any_db_url, "orders")) == [
        (1, "new", "again"), (1, "paid", None),
    ]
    sink.write([change(3, "d", 1, before=row(1, "paid")), tombstone(4, 1)])
    assert read_rows(any_db_url, "orders") == [row(1, "new", "again")]


def test_pk_fields_missing_from_the_records_is_fatal(open_sink: Any) -> None:
    sink = open_sink(pk_mode="record_value", pk_fields=["order_no"])
    with pytest.raises(FatalError, match="order_no"):
        sink.write([order(0, 1, "new")])


def test_append_mode_writes_every_record_as_a_row_with_its_coordinates_once(
    any_db_url: str, open_sink: Any
) -> None:
    sink = open_sink(pk_mode="none")
    batch = [order(0, 1, "new"), order(1, 1, "paid"), tombstone(2, 1), order(3, 2, "new")]
    sink.write(batch)
    sink.write(batch)  # a replay after an ambiguous commit adds nothing
    rows = read_rows(any_db_url, "orders")
    assert [(r["__offset"], r["id"], r["status"]) for r in sorted(rows, key=lambda r:
            r["__offset"])] == [(0, 1, "new"), (1, 1, "paid"), (3, 2, "new")]
    assert {(r["__topic"], r["__partition"]) for r in rows} == {(TOPIC, 0)}
    tp = TopicPartition(TOPIC, 0)
    assert sink.committed_offsets([tp]) == {tp: 4}


# -- fields ------------------------------------------------------------------------------------


def test_field_lists_choose_the_written_columns_and_keep_the_key(
    any_db_url: str, open_sink: Any
) -> None:
    open_sink(fields_include=["status"]).write([order(0, 1, "new", "secret")])
    assert read_rows(any_db_url, "orders") == [{"id": 1, "status": "new"}]


def test_excluded_fields_are_not_written_and_not_a_dropped_column(
    any_db_url: str, open_sink: Any
) -> None:
    open_sink(name="first").write([order(0, 1, "new", "kept")])
    open_sink(fields_exclude=["note"]).write([order(0, 1, "paid", "not written")])
    assert read_rows(any_db_url, "orders") == [row(1, "paid", "kept")]


# -- truncates ---------------------------------------------------------------------------------


def test_truncate_events_empty_the_table_when_enabled(any_db_url: str, open_sink: Any) -> None:
    sink = open_sink(truncate_enabled=True)
    sink.write([order(0, 1, "new"), order(1, 2, "new")])
    sink.write([order(2, 3, "lost"), change(3, "t", 0), order(4, 4, "after")])
    assert read_rows(any_db_url, "orders") == [row(4, "after")]


def test_truncates_run_in_order_in_insert_mode(any_db_url: str, open_sink: Any) -> None:
    sink = open_sink(mode="insert", truncate_enabled=True)
    sink.write([order(0, 1, "new"), change(1, "t", 0), order(2, 1, "again")])
    assert read_rows(any_db_url, "orders") == [row(1, "again")]


def test_truncate_events_are_ignored_by_default(any_db_url: str, open_sink: Any) -> None:
    sink = open_sink()
    sink.write([order(0, 1, "new"), change(1, "t", 0)])
    assert read_rows(any_db_url, "orders") == [row(1, "new")]


# -- unchanged (TOAST) columns -----------------------------------------------------------------


@pytest.mark.parametrize("mode", ["upsert", "update"])
def test_unchanged_columns_keep_their_value(any_db_url: str, open_sink: Any, mode: str) -> None:
    open_sink(name="loader").write([order(0, 1, "new", "a long note"), order(1, 2, "new", "x")])
    sink = open_sink(mode=mode)
    sink.write([
        change(2, "u", 1, after=row(1, "paid", None), unchanged=["note"]),
        change(3, "u", 2, after=row(2, "paid", None), unchanged=[]),
    ])
    assert read_rows(any_db_url, "orders") == [row(1, "paid", "a long note"), row(2, "paid")]


def test_unchanged_columns_take_the_value_of_an_earlier_change_in_the_batch(
    any_db_url: str, open_sink: Any
) -> None:
    sink = open_sink()
    sink.write([
        change(0, "c", 1, after=row(1, "new", "first note")),
        change(1, "u", 1, after=row(1, "paid", None), unchanged=["note"]),
        change(2, "u", 1, after=row(1, "sent", None), unchanged=["note"]),
    ])
    assert read_rows(any_db_url, "orders") == [row(1, "sent", "first note")]


def test_an_unchanged_column_of_a_row_the_target_lacks_is_inserted_null(
    any_db_url: str, open_sink: Any
) -> None:
    open_sink().write([change(0, "u", 1, after=row(1, "paid", None), unchanged=["note"])])
    assert read_rows(any_db_url, "orders") == [row(1, "paid", None)]


def test_keyless_records_are_a_record_error_in_upsert_and_update_modes(open_sink: Any) -> None:
    for mode in ("upsert", "update"):
        with pytest.raises(RecordError, match="no key"):
            open_sink(mode=mode).write(
                [SinkRecord(TOPIC, 0, 0, None, row(1, "x"), None, ORDER_VALUE)]
            )
    assert ORDER_KEY.fields
