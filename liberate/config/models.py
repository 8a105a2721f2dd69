"""The run file's own models: ``streams:`` and the validated whole."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import Field

from liberate.config.base import SinkConfig, SourceConfig, StrictModel
from liberate.schema.registry import CompatibilityLevel

SubjectNameStrategy = Literal["topic", "record", "topic_record"]


class StreamsConfig(StrictModel):
    """Where streams live. ``embedded`` keeps everything in one local SQLite file."""

    backend: Literal["embedded"] = Field(
        default="embedded", description="Stream backend: embedded (one local SQLite file)"
    )
    path: Path = Field(
        default=Path(".liberate/streams.db"),
        description="Embedded backend file (relative paths are relative to the working directory)",
    )
    compatibility: CompatibilityLevel = Field(
        default="BACKWARD",
        description="Default schema compatibility level for new subjects",
    )
    subject_name_strategy: SubjectNameStrategy = Field(
        default="topic",
        description="Subject names: topic (<topic>-key/-value), record, or topic_record",
    )


@dataclass(frozen=True)
class RunConfig:
    """A validated run file."""

    path: Path
    streams: StreamsConfig
    sources: tuple[SourceConfig, ...]
    sinks: tuple[SinkConfig, ...]

    def source(self, name: str) -> SourceConfig:
        for source in self.sources:
            if source.name == name:
                return source
        raise KeyError(name)
