"""The row record of a captured PostgreSQL table (connectors.postgres._tables), without a server."""

from __future__ import annotations

import sqlalchemy as sa

from connectors.postgres._tables import captured_table
from liberate.schema.avro import AvroSchema
from liberate.schema.types import NOT_NULL_ATTRIBUTE, unwrap_nullable
from sinks.sql._shape import ShapeRules, shape_columns


def test_not_null_columns_are_nullable_in_events_and_keep_not_null_as_an_attribute() -> None:
    table = sa.Table(
        "orders", sa.MetaData(),
        sa.Column("id", sa.BigInteger, primary_key=True),
        sa.Column("customer_id", sa.Integer, nullable=False),
        sa.Column("note", sa.Text),
        schema="public",
    )
    captured = captured_table(table, topic="t.public.orders", source_name="t", database="d",
                              key_columns=None)
    before = unwrap_nullable(captured.value_schema.fields[0]["type"])[0]
    fields = {f["name"]: f for f in before["fields"]}
    # A delete's key-only before-image and an unchanged TOAST value have no value to send.
    assert unwrap_nullable(fields["customer_id"]["type"]) == ("int", True)
    assert fields["customer_id"][NOT_NULL_ATTRIBUTE] is True
    assert NOT_NULL_ATTRIBUTE not in fields["note"]
    assert fields["id"]["type"] == "long" and NOT_NULL_ATTRIBUTE not in fields["id"]

    # ...and a sink creating the table makes the column NOT NULL again.
    columns = shape_columns(AvroSchema(before), captured.key_schema, ShapeRules())
    assert {c.column: (c.nullable, c.key) for c in columns} == {
        "id": (False, True), "customer_id": (False, False), "note": (True, False)}
