"""``outbox.publish`` with every kind of connection an application holds, on every database."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

import outbox
from outbox import Columns, OutboxError, OutboxEvent
from tests.integration._outbox_support import (
    create_outbox,
    engine_for,
    kind_of,
    native_connection,
    outbox_rows,
)

# A way to run `work(conn)` in one transaction of one connection kind, then commit or roll back.
Transaction = Callable[[str, Callable[[Any], object], bool], None]


def _sqlalchemy_connection(url: str, work: Callable[[Any], object], commit: bool) -> None:
    engine = engine_for(url)
    try:
        with engine.connect() as conn:
            work(conn)
            conn.commit() if commit else conn.rollback()
    finally:
        engine.dispose()


def _sqlalchemy_session(url: str, work: Callable[[Any], object], commit: bool) -> None:
    engine = engine_for(url)
    try:
        with Session(engine) as session:
            work(session)
            session.commit() if commit else session.rollback()
    finally:
        engine.dispose()


def _driver_connection(url: str, work: Callable[[Any], object], commit: bool) -> None:
    conn = native_connection(url)
    try:
        work(conn)
        conn.commit() if commit else conn.rollback()
    finally:
        conn.close()


CONNECTION_KINDS: dict[str, Transaction] = {
    "sqlalchemy-connection": _sqlalchemy_connection,
    "sqlalchemy-session": _sqlalchemy_session,
    "driver": _driver_connection,  # psycopg 3 / PyMySQL / sqlite3
}


@pytest.fixture(params=sorted(CONNECTION_KINDS))
def in_transaction(request: pytest.FixtureRequest) -> Transaction:
    return CONNECTION_KINDS[request.param]


@pytest.fixture
def db(any_db_url: str) -> str:
    create_outbox(any_db_url)
    return any_db_url


def _event(n: int = 1, **kw: Any) -> OutboxEvent:
    return OutboxEvent("Order", str(n), "OrderCreated", {"order": n, "total": "12.50"}, **kw)


def test_a_committed_transaction_publishes_its_event_exactly_once(
    db: str, in_transaction: Transaction
) -> None:
    event = _event(headers={"trace": "abc"})
    in_transaction(db, lambda conn: outbox.publish(conn, event), True)
    assert outbox_rows(db) == [event.id]
    engine = engine_for(db)
    try:
        with engine.connect() as conn:
            t = sa.Table("outbox", sa.MetaData(), autoload_with=conn)
            row = conn.execute(
                sa.select(t.c.aggregatetype, t.c.aggregateid, t.c.type,
                          sa.cast(t.c.payload, sa.Text), sa.cast(t.c.headers, sa.Text))
            ).one()
    finally:
        engine.dispose()
    assert row[:3] == ("Order", "1", "OrderCreated")
    assert json.loads(row[3]) == {"order": 1, "total": "12.50"}
    assert json.loads(row[4]) == {"trace": "abc"}


def test_a_rolled_back_transaction_publishes_nothing(db: str, in_transaction: Transaction) -> None:
    in_transaction(db, lambda conn: outbox.publish(conn, _event()), False)
    assert outbox_rows(db) == []


def test_the_event_commits_or_rolls_back_with_the_applications_own_writes(db: str) -> None:
    engine = engine_for(db)
    orders = sa.Table("orders", sa.MetaData(), sa.Column("id", sa.Integer, primary_key=True))
    try:
        orders.create(engine)
        with engine.begin() as conn:
            conn.execute(orders.insert().values(id=1))
            outbox.publish(conn, _event(1))
        with pytest.raises(sa.exc.IntegrityError), engine.begin() as conn:
            outbox.publish(conn, _event(2))
            conn.execute(orders.insert().values(id=1))  # duplicate key: the whole txn fails
        with engine.connect() as conn:
            assert conn.execute(sa.select(sa.func.count()).select_from(orders)).scalar() == 1
    finally:
        engine.dispose()
    assert len(outbox_rows(db)) == 1


def test_delete_after_insert_leaves_the_table_empty(db: str, in_transaction: Transaction) -> None:
    in_transaction(db, lambda conn: outbox.publish(conn, _event(), delete_after_insert=True), True)
    assert outbox_rows(db) == []


def test_renamed_columns_and_table_are_written(
    any_db_url: str, in_transaction: Transaction
) -> None:
    engine = engine_for(any_db_url)
    events = sa.Table(
        "domain events",  # a space: the name must be quoted to work at all
        sa.MetaData(),
        sa.Column("event_id", sa.String(36), primary_key=True),
        sa.Column("agg_type", sa.String(255), nullable=False),
        sa.Column("agg_id", sa.String(255), nullable=False),
        sa.Column("event_type", sa.String(255), nullable=False),
        sa.Column("body", sa.Text),
    )
    try:
        events.create(engine)
    finally:
        engine.dispose()
    columns = Columns(id="event_id", aggregate_type="agg_type", aggregate_id="agg_id",
                      type="event_type", payload="body", headers=None)
    event = _event(7)
    in_transaction(
        any_db_url,
        lambda conn: outbox.publish(conn, event, table="domain events", columns=columns),
        True,
    )
    assert outbox_rows(any_db_url, "domain events", "event_id") == [event.id]


def test_headers_need_a_headers_column(db: str) -> None:
    def work(conn: Any) -> None:
        with pytest.raises(OutboxError, match="no headers column"):
            outbox.publish(conn, _event(headers={"a": "b"}), columns=Columns(headers=None))

    _driver_connection(db, work, False)


def test_a_connection_in_autocommit_mode_is_refused(db: str) -> None:
    conn = native_connection(db)
    try:
        if kind_of(db) == "sqlite":
            conn.isolation_level = None
        elif kind_of(db) == "postgresql":
            conn.autocommit = True
        else:
            conn.autocommit(True)
        with pytest.raises(OutboxError, match="autocommit"):
            outbox.publish(conn, _event())
    finally:
        conn.close()
    assert outbox_rows(db) == []


def test_an_explicit_transaction_on_an_autocommit_connection_is_accepted(db: str) -> None:
    conn = native_connection(db)
    event = _event()
    try:
        kind = kind_of(db)
        if kind == "postgresql":
            conn.autocommit = True
            with conn.transaction():
                outbox.publish(conn, event)
        elif kind == "mysql":
            conn.autocommit(True)
            conn.begin()
            outbox.publish(conn, event)
            conn.commit()
        else:
            conn.isolation_level = None
            conn.execute("BEGIN")
            outbox.publish(conn, event)
            conn.execute("COMMIT")
    finally:
        conn.close()
    assert outbox_rows(db) == [event.id]


def test_an_engine_is_refused_with_the_way_to_get_a_transaction(db: str) -> None:
    engine = engine_for(db)
    try:
        with pytest.raises(OutboxError, match=r"engine\.begin"):
            outbox.publish(engine, _event())
    finally:
        engine.dispose()


def test_sqlalchemy_autocommit_isolation_is_refused(db: str) -> None:
    engine = engine_for(db).execution_options(isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn, pytest.raises(OutboxError, match="autocommit"):
            outbox.publish(conn, _event())
    finally:
        engine.dispose()
    assert outbox_rows(db) == []


def test_a_missing_table_is_the_drivers_error_and_nothing_is_written(any_db_url: str) -> None:
    conn = native_connection(any_db_url)
    try:
        with pytest.raises(Exception, match=r"(?i)outbox"):
            outbox.publish(conn, _event())
    finally:
        conn.close()


def test_create_table_is_idempotent(any_db_url: str) -> None:
    create_outbox(any_db_url)
    create_outbox(any_db_url)
    assert outbox_rows(any_db_url) == []
