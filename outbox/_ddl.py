"""The outbox table's DDL: one plain SQL file per dialect (``outbox/sql/``), and a function
that runs it.

Applications normally copy the file into their own migrations; ``create_table`` is for tests,
examples and the first run of a small service. The files use the default names
(``DEFAULT_TABLE``, ``DEFAULT_COLUMNS``); a renamed table or renamed columns start from a copy.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

from outbox._connection import executor
from outbox._sql import dialect_named, split_script


def create_table_sql(dialect: str) -> str:
    """The DDL of the outbox table for ``dialect`` (postgresql, mysql/mariadb, sqlite)."""
    name = dialect_named(dialect)
    return resources.files("outbox").joinpath("sql", f"{name}.sql").read_text(encoding="utf-8")


def create_table(conn: Any) -> None:
    """Create the outbox table (and its indexes) if missing, in ``conn``'s transaction.

    On MySQL/MariaDB DDL commits implicitly, whatever the transaction.
    """
    ex = executor(conn, in_transaction=False)
    for sql in split_script(create_table_sql(ex.dialect)):
        ex.execute(sql)
