"""The outbox relay passes the source conformance suite on every database."""

from __future__ import annotations

import itertools
from collections.abc import Hashable, Iterator

import pytest

import outbox
from connectors.outbox import OutboxSource
from liberate.records import SourceRecord
from tests.conformance.source import RowWriter, SourceConformance, SourceFactory
from tests.integration._outbox_support import create_outbox, engine_for, relay_config


class TestOutboxRelayConformance(SourceConformance):
    @pytest.fixture
    def source_factory(self, any_db_url: str) -> SourceFactory:
        config = relay_config(any_db_url, batch_size=3)
        return lambda: OutboxSource(config)

    @pytest.fixture
    def insert_rows(self, any_db_url: str) -> Iterator[RowWriter]:
        create_outbox(any_db_url)
        counter = itertools.count(1)
        engine = engine_for(any_db_url)

        def write(n: int) -> list[Hashable]:
            events = [
                outbox.OutboxEvent("Order", str(next(counter)), "OrderCreated", {"n": 1})
                for _ in range(n)
            ]
            with engine.begin() as conn:
                for event in events:
                    outbox.publish(conn, event)
            return [event.id for event in events]

        yield write
        engine.dispose()

    def identity(self, record: SourceRecord) -> Hashable:
        return dict(record.headers)["id"].decode()
