"""The MySQL source passes the source conformance suite (snapshot and stream)."""

from __future__ import annotations

import itertools
from collections.abc import Hashable

import pytest

from connectors.mysql import MySqlSource
from tests.conformance.source import RowWriter, SourceConformance, SourceFactory
from tests.integration.mysql.conftest import MySqlDb, source_config


class TestMySqlConformance(SourceConformance):
    @pytest.fixture
    def source_factory(self, db: MySqlDb) -> SourceFactory:
        db.execute("CREATE TABLE IF NOT EXISTS items (id INT PRIMARY KEY, label VARCHAR(20))")
        config = source_config(db, ["items"], batch_size=3, snapshot_chunk_size=3)
        return lambda: MySqlSource(config)

    @pytest.fixture
    def insert_rows(self, db: MySqlDb, source_factory: SourceFactory) -> RowWriter:
        counter = itertools.count(1)
        topic = f"src_{db.name[3:11]}.{db.name}.items"

        def write(n: int) -> list[Hashable]:
            ids = [next(counter) for _ in range(n)]
            db.execute(*(("INSERT INTO items VALUES (%s, %s)", (i, f"row {i}")) for i in ids))
            return [(topic, f'{{"id": {i}}}') for i in ids]

        return write
