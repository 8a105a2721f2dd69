"""Stream backends: where records live between sources and sinks."""

from liberate.streams.base import (
    AssignCallback,
    Guarantee,
    SourceOffset,
    StreamBackend,
    StreamConsumer,
    TopicInfo,
    partition_key,
)

__all__ = [
    "AssignCallback",
    "Guarantee",
    "SourceOffset",
    "StreamBackend",
    "StreamConsumer",
    "TopicInfo",
    "partition_key",
]
