"""``liberate sink plan FILE``: the DDL each sink would run, without running it.

For every sink of the run file (or the one named with ``--sink``), the latest key and value
schema of each topic it consumes is taken from the stream's registry (subjects
``<topic>-key`` and ``<topic>-value``), and the sink prints the statements it would run on
its target for them, with a comment for each unsafe change and what its policy would do.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping, Sequence
from typing import Protocol, TextIO, runtime_checkable

from liberate.config.base import SinkConfig
from liberate.config.loader import load_run_file
from liberate.errors import ConfigError
from liberate.runtime.pipeline import build_sink, open_backend
from liberate.schema.avro import AvroSchema
from liberate.schema.registry import SchemaRegistry

TopicSchemas = tuple[AvroSchema | None, AvroSchema | None]


@runtime_checkable
class PlanningSink(Protocol):
    """A sink that can say what DDL it would run (the SQL sink)."""

    def plan(self, schemas: Mapping[str, TopicSchemas]) -> list[str]:
        """SQL lines and ``--`` comments for records of ``schemas`` (topic -> key, value)."""
        ...


def plan(path: str, *, sink_name: str | None = None, out: TextIO = sys.stdout) -> int:
    """Print each sink's plan; exit 0 (the plan is information, even when a sink would stop)."""
    config = load_run_file(path)
    sinks = select_sinks(config.sinks, sink_name)
    backend = open_backend(config.streams)
    try:
        registry = backend.registry()
        strategy = config.streams.subject_name_strategy
        known = {info.name for info in backend.topics()}
        known |= {s.removesuffix("-value") for s in registry.subjects() if s.endswith("-value")}
        for sink_config in sinks:
            print(f"-- sink {sink_config.name} ({sink_config.connector})", file=out)
            sink = build_sink(sink_config)
            if not isinstance(sink, PlanningSink):
                print(f"--   the {sink_config.connector} connector runs no DDL", file=out)
                continue
            if strategy != "topic":
                print(f"--   schemas are found under the topic subject strategy only (this "
                      f"run uses {strategy})", file=out)
                continue
            topics = consumed_topics(sink_config, known)
            if not topics:
                print("--   no topic it consumes exists yet: run the sources first", file=out)
                continue
            schemas = {topic: latest_schemas(registry, topic) for topic in topics}
            for line in sink.plan(schemas):
                print(line, file=out)
    finally:
        backend.close()
    return 0


def select_sinks(sinks: Sequence[SinkConfig], name: str | None) -> list[SinkConfig]:
    """Every sink, or the one named ``name`` (a usage error when there is none)."""
    if name is None:
        return list(sinks)
    chosen = [s for s in sinks if s.name == name]
    if not chosen:
        raise ConfigError(
            f"the run file has no sink named {name!r}",
            hint=f"use one of: {', '.join(s.name for s in sinks) or '(no sinks)'}",
        )
    return chosen


def consumed_topics(config: SinkConfig, known: set[str]) -> list[str]:
    """The topics ``config`` consumes: its list, or the known topics its regex matches."""
    if config.topics:
        return sorted(config.topics)
    regex = config.topics_regex
    return sorted(t for t in known if regex is not None and re.fullmatch(regex, t))


def latest_schemas(registry: SchemaRegistry, topic: str) -> TopicSchemas:
    """The latest key and value schemas of ``topic`` (None where none is registered)."""
    found: list[AvroSchema | None] = []
    for part in ("key", "value"):
        versions = registry.versions(f"{topic}-{part}")
        found.append(versions[-1].schema if versions else None)
    return found[0], found[1]
