"""The tables a source reads, as a run file lists them: their names, their key columns, and the
topics they write. Checked when the file is loaded, so the same rules and messages hold for
every source that reads tables (postgres, mysql, query, outbox)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from pydantic import AfterValidator

#: ``key_columns``: one list for every table, or a map table -> list; None: the primary key
KeyColumns = list[str] | dict[str, list[str]] | None


def split_table_name(name: str) -> tuple[str, str]:
    """``"schema.table"`` -> ``("schema", "table")``; ``"table"`` -> ``("", "table")``."""
    schema, _, table = name.rpartition(".")
    return schema, table


def check_table_name(name: str) -> str:
    """``name`` if it is ``table`` or ``schema.table`` (the schema may itself hold dots)."""
    schema, table = split_table_name(name)
    if not table.strip() or (name.count(".") and not schema.strip()):
        raise ValueError(f"{name!r} is not a table name ('table' or 'schema.table')")
    return name


def check_listed_once(names: Iterable[str]) -> None:
    """Raise ValueError naming what ``names`` holds more than once."""
    listed = list(names)
    repeated = sorted({n for n in listed if listed.count(n) > 1})
    if repeated:
        raise ValueError(f"listed more than once: {', '.join(repeated)}")


def table_list(same: Callable[[str], str] = str) -> AfterValidator:
    """The validator of a ``tables:`` list: ``Annotated[list[str], table_list()]``.

    Every entry is a table name, and no table is listed twice; ``same`` maps a name to the form
    two names of one table share (e.g. the default schema filled in).
    """

    def check(tables: list[str]) -> list[str]:
        for name in tables:
            check_table_name(name)
        check_listed_once(same(name) for name in tables)
        return tables

    return AfterValidator(check)


def key_column_problems(
    key_columns: KeyColumns, tables: Iterable[str], same: Callable[[str], str] = str
) -> list[str]:
    """What is wrong with ``key_columns`` given the ``tables`` listed (``same`` as above)."""
    if key_columns is None:
        return []
    problems: list[str] = []
    if isinstance(key_columns, dict):
        listed = {same(table) for table in tables}
        unknown = sorted(t for t in key_columns if same(t) not in listed)
        if unknown:
            problems.append(f"key_columns names tables not listed in tables: {unknown}")
    key_lists = key_columns.values() if isinstance(key_columns, dict) else [key_columns]
    if any(not columns for columns in key_lists):
        problems.append("key_columns needs at least one column")
    return problems


def topic_collisions(topics: Iterable[tuple[str, str]], fix: str) -> list[str]:
    """One problem for each topic that more than one table would write.

    ``topics`` pairs each listed table with its topic; ``fix`` ends the message (what to add
    to the topic template).
    """
    by_topic: dict[str, list[str]] = {}
    for table, topic in topics:
        by_topic.setdefault(topic, []).append(table)
    return [
        f"tables {', '.join(tables)} would all write topic {topic!r}: {fix}"
        for topic, tables in by_topic.items()
        if len(tables) > 1
    ]
