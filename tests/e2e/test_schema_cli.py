"""``liberate schema list|show|diff|check`` as a user runs them, on SQLite and PostgreSQL, with
the embedded registry and with a Confluent-compatible one (``liberate registry serve``)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from liberate.config.models import SchemaRegistrySettings
from liberate.schema.confluent import ConfluentRegistry
from tests.e2e.conftest import Cli, write
from tests.integration._sql_sink_support import execute

CREATE = "CREATE TABLE orders (id INTEGER PRIMARY KEY, amount NUMERIC(10, 2) NOT NULL, note TEXT)"
# A new NOT NULL column without a default: old records have no value for it.
BREAKING = [
    "DROP TABLE orders",
    "CREATE TABLE orders (id INTEGER PRIMARY KEY, amount NUMERIC(10, 2) NOT NULL, note TEXT,"
    " region VARCHAR(10) NOT NULL)",
]


def sqlite_shop(tmp_path: Path) -> Path:
    path = tmp_path / "shop.db"
    with sqlite3.connect(path) as db:
        db.execute(CREATE)
        db.execute("INSERT INTO orders VALUES (1, 9.99, 'first')")
    return path


def run_file(tmp_path: Path, database: str, *, streams: str = "", name: str = "run.yaml") -> Path:
    return write(tmp_path / name, f"""\
streams:
  path: {tmp_path}/streams.db
{streams}sources:
  - name: shop
    connector: query
    database: {database}
    tables: [orders]
    mode: bulk
""")


def ddl(url: str, statements: list[str]) -> None:
    execute(url, *statements)


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_schema_verbs_follow_a_table_through_a_compatible_and_a_breaking_alter(
    cli: Cli, tmp_path: Path
) -> None:
    url = f"sqlite:///{sqlite_shop(tmp_path)}"
    config = run_file(tmp_path, url)
    assert cli("run", str(config), "--once").returncode == 0

    listed = cli("schema", "list", str(config))
    assert listed.returncode == 0, listed.stderr
    assert "shop.orders-value" in listed.stdout and "BACKWARD" in listed.stdout

    ddl(url, ["ALTER TABLE orders ADD COLUMN status VARCHAR(10) NOT NULL DEFAULT 'new'"])
    checked = cli("schema", "check", str(config))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "shop.orders-value (shop: orders): ok, compatible with version 1 under BACKWARD" \
        in checked.stdout
    assert cli("run", str(config), "--once").returncode == 0

    diffed = cli("schema", "diff", str(config), "shop.orders-value", "1", "2")
    assert diffed.returncode == 0, diffed.stderr
    assert '  + status: string, default "new"' in diffed.stdout
    assert "version 2 is compatible with version 1 under BACKWARD" in diffed.stdout

    shown = json.loads(cli("schema", "show", str(config), "shop.orders-value", "--version", "1",
                           "--json").stdout)
    assert (shown["version"], shown["compatibility"]) == (1, "BACKWARD")
    assert "status" not in [f["name"] for f in shown["schema"]["fields"]]

    ddl(url, BREAKING)
    refused = cli("schema", "check", str(config))
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "shop.orders-value (shop: orders): ALTER would break consumers (BACKWARD, latest " \
        "version 2):" in refused.stdout
    assert "field 'region' (shop.orders.Value): BACKWARD: reader field has no default" \
        in refused.stdout
    as_json = json_lines(cli("schema", "check", str(config), "--json").stdout)
    states = {line["subject"]: line["state"] for line in as_json}
    assert states == {"shop.orders-key": "unchanged", "shop.orders-value": "incompatible"}

    # The same change under a per-subject level that allows it.
    relaxed = run_file(tmp_path, url, name="relaxed.yaml", streams=(
        "  compatibility_per_subject:\n    'shop.*-value': FORWARD\n"
    ))
    allowed = cli("schema", "check", str(relaxed))
    assert allowed.returncode == 0, allowed.stdout
    assert "ok, compatible with version 2 under FORWARD" in allowed.stdout
    assert "FORWARD" in cli("schema", "list", str(relaxed)).stdout


def test_schema_show_of_an_unknown_subject_names_the_known_ones(
    cli: Cli, tmp_path: Path
) -> None:
    config = run_file(tmp_path, f"sqlite:///{sqlite_shop(tmp_path)}")
    assert cli("run", str(config), "--once").returncode == 0
    missing = cli("schema", "show", str(config), "shop.order-value")
    assert missing.returncode == 2
    assert "no subject 'shop.order-value'" in missing.stderr
    assert "shop.orders-value" in missing.stderr


@pytest.mark.integration
def test_schema_check_on_postgresql_refuses_a_type_change_and_accepts_a_default(
    cli: Cli, tmp_path: Path, postgres_url: str
) -> None:
    ddl(postgres_url, [CREATE, "INSERT INTO orders VALUES (1, 9.99, 'first')"])
    config = run_file(tmp_path, postgres_url)
    assert cli("run", str(config), "--once").returncode == 0

    ddl(postgres_url, ["ALTER TABLE orders ADD COLUMN placed DATE NOT NULL DEFAULT '2024-01-01'"])
    assert cli("schema", "check", str(config)).returncode == 0

    ddl(postgres_url, ["ALTER TABLE orders ALTER COLUMN amount TYPE NUMERIC(12, 4)"])
    refused = cli("schema", "check", str(config), "--json")
    assert refused.returncode == 1
    (value,) = [line for line in json_lines(refused.stdout) if line["subject"].endswith("value")]
    assert value["state"] == "incompatible"
    assert any("field 'amount'" in p and "decimal(12,4)" in p for p in value["problems"])


@pytest.mark.integration
def test_schema_verbs_work_against_a_confluent_compatible_registry(
    cli: Cli, tmp_path: Path, schema_registry_url: str
) -> None:
    url = f"sqlite:///{sqlite_shop(tmp_path)}"
    subject = f"e2e{tmp_path.name}.orders-value"  # the session's registry is shared
    config = write(tmp_path / "kafka.yaml", f"""\
streams:
  backend: kafka
  kafka: {{bootstrap_servers: 127.0.0.1:9}}
  schema_registry: {{url: {schema_registry_url}}}
  compatibility_per_subject: {{'{subject}': FULL}}
sources:
  - name: shop
    connector: query
    database: {url}
    tables: [orders]
    mode: bulk
    topic: e2e{tmp_path.name}.orders
""")
    # What a run registered before the ALTER: the table's value schema as it was.
    registry = ConfluentRegistry(SchemaRegistrySettings(url=schema_registry_url))
    try:
        from connectors.query import QuerySource, QuerySourceConfig

        source = QuerySource(QuerySourceConfig.model_validate({
            "name": "shop", "connector": "query", "database": url, "tables": ["orders"],
            "mode": "bulk", "topic": f"e2e{tmp_path.name}.orders",
        }))
        (tables,) = source.current_schemas()
        registry.register(subject, tables.value_schema)
    finally:
        registry.close()

    listed = json_lines(cli("schema", "list", str(config), "--json").stdout)
    (mine,) = [line for line in listed if line["subject"] == subject]
    assert (mine["versions"], mine["compatibility"]) == ([1], "FULL")

    # Compatible BACKWARD, not FORWARD: old readers need 'amount', which has no default.
    ddl(url, ["DROP TABLE orders", "CREATE TABLE orders (id INTEGER PRIMARY KEY, note TEXT)"])
    refused = cli("schema", "check", str(config))
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert f"{subject} (shop: orders): ALTER would break consumers (FULL" in refused.stdout
    assert "field 'amount'" in refused.stdout and "FULL (forward)" in refused.stdout


@pytest.mark.integration
def test_schema_check_builds_postgres_cdc_schemas_as_the_wal_source_does(
    cli: Cli, tmp_path: Path, postgres_url: str
) -> None:
    ddl(postgres_url, [CREATE, "INSERT INTO orders VALUES (1, 9.99, 'first')"])
    slot = "s_" + str(sa.make_url(postgres_url).database).replace("-", "_")
    config = write(tmp_path / "cdc.yaml", f"""\
streams:
  path: {tmp_path}/streams.db
sources:
  - name: cdc
    connector: postgres
    database: {postgres_url}
    tables: [orders]
    slot: {slot}
    heartbeat_topic: ''
""")
    ran = cli("run", str(config), "--once")
    assert ran.returncode == 0, ran.stderr
    assert cli("schema", "check", str(config)).returncode == 0

    # The envelope's row record has every non-key column nullable: adding one is compatible.
    ddl(postgres_url, ["ALTER TABLE orders ADD COLUMN region TEXT NOT NULL DEFAULT 'eu'"])
    added = cli("schema", "check", str(config))
    assert added.returncode == 0, added.stdout + added.stderr
    assert "cdc.public.orders-value (cdc: public.orders): ok, compatible with version 1" \
        in added.stdout

    ddl(postgres_url, ["ALTER TABLE orders ALTER COLUMN amount TYPE NUMERIC(12, 4)"])
    refused = cli("schema", "check", str(config), "--source", "cdc")
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "field 'before.amount' (cdc.public.orders.Value)" in refused.stdout
    unknown = cli("schema", "check", str(config), "--source", "nope")
    assert unknown.returncode == 2 and "no source named 'nope'" in unknown.stderr
