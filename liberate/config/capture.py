"""The base model of change-data-capture sources (``postgres``, ``mysql``): the keys they share
besides their own, how they snapshot, heartbeat records and delete tombstones.

A heartbeat record carries a source's position when no captured change does, so an idle source
still confirms it (and the server can free the log behind it).
"""

from __future__ import annotations

from pydantic import Field

from liberate.config.base import DatabaseSettings, SourceConfig

#: heartbeat records go to this prefix + the source name unless ``heartbeat_topic`` says otherwise
HEARTBEAT_TOPIC_PREFIX = "__liberate-heartbeat."


class CaptureSourceConfig(SourceConfig, DatabaseSettings):
    """Keys every change-data-capture source has."""

    snapshot_chunk_size: int = Field(
        default=10_000, ge=1, le=1_000_000,
        description="Rows per snapshot chunk (one query, and the unit of resuming)",
    )
    heartbeat_topic: str | None = Field(
        default=None,
        description="Topic of heartbeat records, which carry the position when no change does "
        "(default: __liberate-heartbeat.<source name>; '' turns them off)",
    )
    tombstones_on_delete: bool = Field(
        default=True, description="Follow every delete event with a tombstone (null value)"
    )

    @property
    def heartbeat_topic_name(self) -> str | None:
        """Where heartbeat records go; None when they are off."""
        if self.heartbeat_topic == "":
            return None
        return self.heartbeat_topic or f"{HEARTBEAT_TOPIC_PREFIX}{self.name}"
