"""The outbox package's SQL composition: identifiers quoted per dialect, values always bound."""

from __future__ import annotations

import sqlite3

import pytest

from outbox import OutboxError, create_table_sql
from outbox._sql import Params, check_identifier, dialect_named, qualified, quote, split_script


@pytest.mark.parametrize(
    ("dialect", "name", "quoted"),
    [
        ("postgresql", "outbox", '"outbox"'),
        ("postgresql", 'we"ird', '"we""ird"'),
        ("mysql", "outbox", "`outbox`"),
        ("mysql", "we`ird", "`we``ird`"),
        ("sqlite", 'a "b"', '"a ""b"""'),
    ],
)
def test_identifiers_are_quoted_with_the_quote_character_doubled(
    dialect: str, name: str, quoted: str
) -> None:
    assert quote(dialect_named(dialect), name) == quoted


def test_a_quoted_hostile_name_stays_one_identifier_in_sqlite() -> None:
    conn = sqlite3.connect(":memory:")
    hostile = 'x" (a); DROP TABLE keep; --'
    conn.execute("CREATE TABLE keep (a)")
    conn.execute(f"CREATE TABLE {quote('sqlite', hostile)} (a)")
    names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert names == {"keep", hostile}


@pytest.mark.parametrize("name", ["", "a\x00b", "tab\tle", "100%", "x" * 64])
def test_unsafe_or_too_long_names_are_refused(name: str) -> None:
    with pytest.raises(OutboxError):
        check_identifier("postgresql", name, what="table name")


def test_schema_qualified_names_quote_both_parts() -> None:
    assert qualified("postgresql", "outbox", "app") == '"app"."outbox"'
    assert qualified("mysql", "outbox", None) == "`outbox`"


@pytest.mark.parametrize(
    ("style", "text", "values"),
    [
        ("qmark", "?, ?", ("a", 1)),
        ("numeric", ":1, :2", ("a", 1)),
        ("format", "%s, %s", ("a", 1)),
        ("named", ":p1, :p2", {"p1": "a", "p2": 1}),
        ("pyformat", "%(p1)s, %(p2)s", {"p1": "a", "p2": 1}),
    ],
)
def test_placeholders_follow_the_drivers_paramstyle(
    style: str, text: str, values: object
) -> None:
    params = Params(style)
    assert params.list(["a", 1]) == text
    assert params.values == values


def test_dialect_aliases_and_unknown_dialects() -> None:
    assert dialect_named("mariadb") == "mysql"
    assert dialect_named("postgres") == "postgresql"
    with pytest.raises(OutboxError, match="unsupported"):
        dialect_named("oracle")


@pytest.mark.parametrize("dialect", ["postgresql", "mysql", "sqlite"])
def test_the_shipped_ddl_creates_the_debezium_columns_and_the_relays_own(dialect: str) -> None:
    ddl = create_table_sql(dialect)
    statements = split_script(ddl)
    assert statements[0].startswith("CREATE TABLE IF NOT EXISTS outbox")
    for column in ("seq", "id", "aggregatetype", "aggregateid", "type", "payload", "headers",
                   "created_at", "relayed_at"):
        assert f"\n    {column} " in statements[0]


def test_the_sqlite_ddl_runs_and_is_idempotent() -> None:
    conn = sqlite3.connect(":memory:")
    for _ in range(2):
        for statement in split_script(create_table_sql("sqlite")):
            conn.execute(statement)
    columns = [r[1] for r in conn.execute("PRAGMA table_info(outbox)")]
    assert columns == ["seq", "id", "aggregatetype", "aggregateid", "type", "payload",
                       "headers", "created_at", "relayed_at"]
