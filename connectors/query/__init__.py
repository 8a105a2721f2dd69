"""The query-based source: liberates tables of any SQLAlchemy database by polling them."""

from connectors.query.config import QueryMode, QuerySourceConfig
from connectors.query.offsets import PollingOffset
from connectors.query.source import QuerySource

__all__ = ["PollingOffset", "QueryMode", "QuerySource", "QuerySourceConfig"]
