"""``IdempotentConsumer``: a redelivered event is processed once, on every database."""

from __future__ import annotations

import datetime as dt
import threading
import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from outbox import IdempotentConsumer
from tests.integration._outbox_support import engine_for, native_connection

LEDGER = sa.Table(
    "ledger",
    sa.MetaData(),
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("event_id", sa.String(36), nullable=False),
)


@pytest.fixture
def engine(any_db_url: str) -> Iterator[Engine]:
    engine = engine_for(any_db_url)
    with engine.begin() as conn:
        IdempotentConsumer("billing").create_table(conn)
        LEDGER.create(conn)
    yield engine
    engine.dispose()


def _handle(engine: Engine, consumer: IdempotentConsumer, event_id: str) -> bool:
    """The consumer's handler: the side effect and the mark in one transaction."""
    with engine.begin() as conn:
        if not consumer.mark(conn, event_id):
            return False
        conn.execute(LEDGER.insert().values(event_id=event_id))
        return True


def _ledger(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return list(conn.execute(sa.select(LEDGER.c.event_id).order_by(LEDGER.c.id)).scalars())


def test_a_redelivered_event_is_processed_once(engine: Engine) -> None:
    consumer = IdempotentConsumer("billing")
    event_id = str(uuid.uuid4())
    assert _handle(engine, consumer, event_id) is True
    assert _handle(engine, consumer, event_id) is False
    assert _handle(engine, consumer, event_id) is False
    assert _ledger(engine) == [event_id]


def test_a_rolled_back_handler_leaves_the_event_unprocessed(engine: Engine) -> None:
    consumer = IdempotentConsumer("billing")
    event_id = str(uuid.uuid4())
    with pytest.raises(RuntimeError), engine.begin() as conn:
        assert consumer.mark(conn, event_id)
        conn.execute(LEDGER.insert().values(event_id=event_id))
        raise RuntimeError("the handler crashed")
    with engine.connect() as conn:
        assert not consumer.seen(conn, event_id)
    assert _handle(engine, consumer, event_id) is True
    assert _ledger(engine) == [event_id]


def test_consumers_with_different_names_each_process_the_event(engine: Engine) -> None:
    event_id = str(uuid.uuid4())
    assert _handle(engine, IdempotentConsumer("billing"), event_id)
    assert _handle(engine, IdempotentConsumer("shipping"), event_id)
    assert _handle(engine, IdempotentConsumer("billing"), event_id) is False


def test_two_instances_racing_for_one_event_process_it_once(
    engine: Engine, any_db_url: str
) -> None:
    consumer = IdempotentConsumer("billing")
    event_id = str(uuid.uuid4())
    first = native_connection(any_db_url)
    second = native_connection(any_db_url)
    results: list[bool] = []
    try:
        assert consumer.mark(first, event_id)  # first instance holds its transaction open
        racer = threading.Thread(target=lambda: results.append(consumer.mark(second, event_id)))
        racer.start()
        racer.join(0.5)
        assert racer.is_alive(), "the second instance must wait for the first one's outcome"
        first.commit()
        racer.join(30)
        second.commit()
    finally:
        first.close()
        second.close()
    assert results == [False]


def test_purge_forgets_only_ids_older_than_the_retention(engine: Engine) -> None:
    consumer = IdempotentConsumer("billing")
    old, new = str(uuid.uuid4()), str(uuid.uuid4())
    _handle(engine, consumer, old)
    with engine.begin() as conn:
        assert consumer.purge(conn, dt.timedelta(hours=1)) == 0
        assert consumer.purge(conn, dt.timedelta(0)) == 1
    _handle(engine, consumer, new)
    with engine.connect() as conn:
        assert not consumer.seen(conn, old)
        assert consumer.seen(conn, new)
