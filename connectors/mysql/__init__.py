"""MySQL / MariaDB binlog change data capture (``connector: mysql``)."""

from connectors.mysql.config import MySqlSourceConfig
from connectors.mysql.source import MySqlSource

__all__ = ["MySqlSource", "MySqlSourceConfig"]
