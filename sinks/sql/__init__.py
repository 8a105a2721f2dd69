"""The SQL sink: streams into PostgreSQL, MySQL/MariaDB and SQLite tables, exactly once."""

from sinks.sql.config import SqlSinkConfig
from sinks.sql.sink import SqlSink

__all__ = ["SqlSink", "SqlSinkConfig"]
