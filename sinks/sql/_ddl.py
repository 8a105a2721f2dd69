"""DDL the sink runs besides ``CREATE TABLE``: adding a column and widening one.

Both are SQLAlchemy DDL elements compiled per dialect, so every identifier is quoted by the
dialect's preparer and every type is the dialect's own spelling; nothing is formatted in
from a record or a config.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import DDLCompiler
from sqlalchemy.sql.ddl import ExecutableDDLElement


class AddColumn(ExecutableDDLElement):
    """``ALTER TABLE <table> ADD COLUMN <column spec>``; the column belongs to its table."""

    def __init__(self, column: sa.Column[Any]) -> None:
        self.column = column


class AlterColumnType(ExecutableDDLElement):
    """Change a column's type to a wider one, keeping its nullability, default and comment.

    ``column`` is the column as it will be (new type, reflected nullability, default and
    comment), attached to its table. PostgreSQL: ``ALTER COLUMN ... TYPE``; MySQL/MariaDB:
    ``MODIFY COLUMN`` with the whole column specification, which MySQL requires.
    """

    def __init__(self, column: sa.Column[Any]) -> None:
        self.column = column


def altered_column(
    table: sa.Table, reflected: sa.Column[Any], new_type: sa.types.TypeEngine[Any]
) -> sa.Column[Any]:
    """``reflected`` with ``new_type``, on a bare copy of ``table`` (for ``AlterColumnType``)."""
    column = sa.Column(
        reflected.name,
        new_type,
        nullable=reflected.nullable,
        server_default=reflected.server_default,
        comment=reflected.comment,
    )
    sa.Table(table.name, sa.MetaData(), column, schema=table.schema)
    return column


@compiles(AddColumn)
def _compile_add_column(element: AddColumn, compiler: DDLCompiler, **kw: Any) -> str:
    table = compiler.preparer.format_table(element.column.table)
    return f"ALTER TABLE {table} ADD COLUMN {compiler.get_column_specification(element.column)}"


@compiles(AlterColumnType, "postgresql")
def _compile_alter_postgres(element: AlterColumnType, compiler: DDLCompiler, **kw: Any) -> str:
    column = element.column
    table = compiler.preparer.format_table(column.table)
    name = compiler.preparer.format_column(column)
    spelled = compiler.dialect.type_compiler_instance.process(column.type)
    return f"ALTER TABLE {table} ALTER COLUMN {name} TYPE {spelled}"


@compiles(AlterColumnType, "mysql")
@compiles(AlterColumnType, "mariadb")
def _compile_alter_mysql(element: AlterColumnType, compiler: DDLCompiler, **kw: Any) -> str:
    table = compiler.preparer.format_table(element.column.table)
    spec = compiler.get_column_specification(element.column)
    return f"ALTER TABLE {table} MODIFY COLUMN {spec}"


@compiles(AlterColumnType)
def _compile_alter_other(element: AlterColumnType, compiler: DDLCompiler, **kw: Any) -> str:
    # SQLite stores any value in any column: the sink never widens there (see _evolution).
    raise sa.exc.CompileError(f"the {compiler.dialect.name} dialect cannot change column types")
