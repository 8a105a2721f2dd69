"""MySQL/MariaDB change capture: column defaults become Avro defaults on the snapshot and the
binlog paths alike, so a column added mid-stream with a constant default passes BACKWARD."""

from __future__ import annotations

from pathlib import Path

from connectors.mysql import MySqlSource
from liberate.commands.schema import row_fields
from liberate.schema.embedded_registry import EmbeddedRegistry
from liberate.serde import RecordSerializer
from tests.conformance.source import drain
from tests.integration.mysql.conftest import MySqlDb, source_config
from tests.integration.mysql.test_mysql_changes import poll_until

ORDERS = ("CREATE TABLE orders (id INT PRIMARY KEY, qty INT NOT NULL DEFAULT 1,"
          " note VARCHAR(20))")


def test_a_column_added_with_a_constant_default_mid_stream_passes_backward(
    db: MySqlDb, tmp_path: Path
) -> None:
    db.execute(ORDERS, "INSERT INTO orders VALUES (1, 10, 'a')")
    registry = EmbeddedRegistry(tmp_path / "registry.db")
    serializer = RecordSerializer(registry)
    source = MySqlSource(source_config(db, ["orders"]))
    source.open({})
    try:
        snapshot = drain(source)
        db.execute("INSERT INTO orders VALUES (2, 20, 'b')")
        before_alter = poll_until(source, 1)
        db.execute(
            "ALTER TABLE orders ADD COLUMN status VARCHAR(10) NOT NULL DEFAULT 'new'",
            "INSERT INTO orders VALUES (3, 30, 'c', 'paid')",
        )
        after_alter = poll_until(source, 1)
        serializer.serialize(snapshot + before_alter + after_alter)  # refused: raises
    finally:
        source.close()
    subject = f"{source.settings.topic_for(db.name, 'orders')}-value"
    versions = registry.versions(subject)
    registry.close()
    # The snapshot and the binlog rows before the ALTER share one version (same defaults).
    assert len(versions) == 2
    fields = row_fields(versions[-1].schema)
    assert fields["status"]["default"] == "new"
    assert fields["qty"]["default"] == 1
    # `liberate schema check` builds, from the catalog, the very schema the binlog path wrote.
    (now,) = MySqlSource(source_config(db, ["orders"])).current_schemas()
    assert now.value_schema == versions[-1].schema
