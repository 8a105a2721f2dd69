"""The PostgreSQL WAL source: committed changes from logical replication (pgoutput), after a
consistent and resumable snapshot."""

from connectors.postgres.config import PostgresSourceConfig, SnapshotMode
from connectors.postgres.offsets import WalOffset
from connectors.postgres.source import PostgresSource

__all__ = ["PostgresSource", "PostgresSourceConfig", "SnapshotMode", "WalOffset"]
