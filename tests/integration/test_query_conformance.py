"""The query source passes the source conformance suite in every mode, on every database."""

from __future__ import annotations

import itertools
from collections.abc import Hashable
from typing import Any, ClassVar

import pytest

from connectors.query import QuerySource
from tests.conformance.source import RowWriter, SourceConformance, SourceFactory
from tests.integration._query_support import create_orders, insert, order, query_config

BATCH = 3


class _QueryConformance(SourceConformance):
    mode_settings: ClassVar[dict[str, Any]] = {}

    @pytest.fixture
    def source_factory(self, any_db_url: str) -> SourceFactory:
        config = query_config(any_db_url, batch_size=BATCH, **self.mode_settings)
        return lambda: QuerySource(config)

    @pytest.fixture
    def insert_rows(self, any_db_url: str) -> RowWriter:
        table = create_orders(any_db_url)
        counter = itertools.count(1)

        def write(n: int) -> list[Hashable]:
            rows = [order(next(counter)) for _ in range(n)]
            insert(any_db_url, table, rows)
            return [("shop.orders", f'{{"id": {row["id"]}}}') for row in rows]

        return write


class TestBulkConformance(_QueryConformance):
    replays_after_complete_cycle = True
    mode_settings: ClassVar[dict[str, Any]] = {"mode": "bulk"}


class TestIncrementingConformance(_QueryConformance):
    mode_settings: ClassVar[dict[str, Any]] = {"incrementing_column": "id"}


class TestTimestampConformance(_QueryConformance):
    mode_settings: ClassVar[dict[str, Any]] = {
        "timestamp_column": "updated_at",
        "timestamp_delay": "0s",
    }


class TestTimestampIncrementingConformance(_QueryConformance):
    mode_settings: ClassVar[dict[str, Any]] = {
        "timestamp_column": "updated_at",
        "incrementing_column": "id",
        "timestamp_delay": "0s",
    }


class TestCustomQueryConformance(_QueryConformance):
    mode_settings: ClassVar[dict[str, Any]] = {
        "query": "SELECT id, label, updated_at FROM orders",
        "key_columns": ["id"],
        "topic": "shop.orders",
        "timestamp_column": "updated_at",
        "timestamp_delay": "0s",
    }
