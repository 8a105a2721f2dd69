"""What the query source changes on its psycopg sessions leaves the records as they were.

JSON loads as compact text rather than as Python values the converter serializes again (and
keeps its numbers as written, which a float would round), and a session in one of tzdata's
names for UTC is set to ``UTC``: both only make rows cheaper.
"""

from __future__ import annotations

import datetime as dt
import json

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from connectors.query._engine import open_engine
from liberate.config.base import DatabaseSettings
from liberate.database import database_url
from liberate.schema.types import _json_text
from tests.integration._query_support import engine_for, query_config, read_everything

pytestmark = pytest.mark.integration

DOCUMENTS = [
    '{"tags": ["a", "b"], "channel": "web", "priority": 1}',
    '{"price": 1.50, "big": 12345678901234567890, "tiny": 1e-7, "neg": -0.0}',
    '{"text": "quote \\" backslash \\\\ newline \\n é € 😀", "nested": {"k": [null, true]}}',
    "[]",
    '"a string"',
]


def _documents_table(url: str) -> sa.Table:
    metadata = sa.MetaData()
    table = sa.Table(
        "orders",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("doc", postgresql.JSONB(), nullable=False),
        sa.Column("raw", postgresql.JSON(), nullable=True),
    )
    engine = engine_for(url)
    metadata.create_all(engine)
    with engine.begin() as conn:
        for i, text in enumerate(DOCUMENTS):
            conn.execute(
                table.insert().values(
                    id=i,
                    doc=sa.cast(sa.literal(text), postgresql.JSONB),
                    raw=sa.cast(sa.literal("  " + text + "\n"), postgresql.JSON),
                )
            )
    engine.dispose()
    return table


def test_json_columns_hold_compact_json_of_psycopgs_values_with_numbers_as_written(
    postgres_url: str,
) -> None:
    table = _documents_table(postgres_url)
    engine = engine_for(postgres_url)  # psycopg's own JSON loaders: Python values
    with engine.connect() as conn:
        parsed = conn.execute(sa.select(table.c.doc, table.c.raw).order_by(table.c.id)).all()
    engine.dispose()
    assert isinstance(parsed[0][0], dict)
    records = read_everything(query_config(postgres_url))
    values = [(r.value["doc"], r.value["raw"]) for r in records if r.value is not None]
    assert [(json.loads(doc), json.loads(raw)) for doc, raw in values] == [
        tuple(row) for row in parsed
    ]
    assert values[0][0] == _json_text(parsed[0][0])
    assert values[0][0] == '{"tags":["a","b"],"channel":"web","priority":1}'
    # Numbers keep the text PostgreSQL returns (jsonb's numeric text, json's own), never
    # rounded through a float; a JSON string keeps its quotes.
    assert values[1] == ('{"big":12345678901234567890,"neg":0.0,"tiny":0.0000001,"price":1.50}',
                         '{"price":1.50,"big":12345678901234567890,"tiny":1e-7,"neg":-0.0}')
    assert values[4] == ('"a string"', '"a string"')


def _session_time_zone(url: str) -> str:
    engine = open_engine(DatabaseSettings(database=url))
    try:
        with engine.connect() as conn:
            return str(conn.execute(sa.text("SHOW TimeZone")).scalar())
    finally:
        engine.dispose()


def _set_database_time_zone(url: str, zone: str) -> None:
    name = database_url(DatabaseSettings(database=url)).database
    engine = engine_for(url)
    with engine.begin() as conn:
        conn.execute(sa.text(f"ALTER DATABASE \"{name}\" SET timezone TO '{zone}'"))
    engine.dispose()


@pytest.mark.parametrize(
    ("zone", "session"), [("Etc/UTC", "UTC"), ("Europe/Paris", "Europe/Paris")]
)
def test_only_a_session_in_a_name_for_utc_is_renamed_utc(
    postgres_url: str, zone: str, session: str
) -> None:
    _set_database_time_zone(postgres_url, zone)
    assert _session_time_zone(postgres_url) == session


def test_timestamps_read_the_same_instant_whatever_the_session_zone_is_called(
    postgres_url: str,
) -> None:
    _set_database_time_zone(postgres_url, "Etc/UTC")
    metadata = sa.MetaData()
    table = sa.Table(
        "orders",
        metadata,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("local", sa.DateTime(), nullable=False),
    )
    engine = engine_for(postgres_url)
    metadata.create_all(engine)
    paris = dt.timezone(dt.timedelta(hours=2))
    with engine.begin() as conn:
        conn.execute(
            table.insert().values(
                id=1,
                at=dt.datetime(2024, 5, 1, 14, 0, tzinfo=paris),
                local=dt.datetime(2024, 5, 1, 14, 0),
            )
        )
    engine.dispose()
    (record,) = read_everything(query_config(postgres_url))
    assert record.value is not None
    assert record.value["at"] == dt.datetime(2024, 5, 1, 12, 0, tzinfo=dt.UTC)
    assert record.value["at"].utcoffset() == dt.timedelta(0)
    assert record.value["local"] == dt.datetime(2024, 5, 1, 14, 0)
