"""``liberate topology FILE [--format mermaid|dot]``: the sources -> topics -> sinks graph.

Topics come from the run file's templates (``liberate.verify.routes.planned_topics``); when the
stream backend already exists, the topics it holds replace the templates they match (a table
listed without its schema, an outbox's ``{aggregate_type}``), so the graph shows real names.
Nothing is created: an embedded backend file that does not exist is not opened.
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass, field
from string import Formatter
from typing import Literal, TextIO

from liberate.config.loader import load_run_file
from liberate.config.models import RunConfig
from liberate.errors import LiberateError
from liberate.runtime.pipeline import open_backend
from liberate.verify.routes import consumes, planned_topics

Format = Literal["mermaid", "dot"]


@dataclass
class Graph:
    """Which topics each source writes and which topics each sink reads."""

    writes: dict[str, list[str]] = field(default_factory=dict)
    reads: dict[str, list[str]] = field(default_factory=dict)

    def topics(self) -> list[str]:
        names = [t for topics in self.writes.values() for t in topics]
        names += [t for topics in self.reads.values() for t in topics]
        return sorted(dict.fromkeys(names))


def topology(path: str, *, fmt: Format = "mermaid", out: TextIO = sys.stdout) -> int:
    """Print the graph of the run file at ``path``."""
    config = load_run_file(path)
    graph = build_graph(config, _existing_topics(config))
    out.write(mermaid(graph) if fmt == "mermaid" else dot(graph))
    return 0


def build_graph(config: RunConfig, existing: list[str]) -> Graph:
    """The graph of ``config``; ``existing``: the topics the backend holds (may be empty)."""
    graph = Graph()
    for source in config.sources:
        topics: list[str] = []
        for planned in planned_topics(source):
            matches = [t for t in existing if _template_regex(planned).fullmatch(t)]
            topics += matches if matches and "{" in planned else [planned]
        graph.writes[source.name] = list(dict.fromkeys(topics))
    known = graph.topics() + existing
    for sink in config.sinks:
        matched = [t for t in known if consumes(sink, _example(t))]
        read = list(dict.fromkeys([*sink.topics, *matched]))
        if not read and sink.topics_regex is not None:
            read = [f"/{sink.topics_regex}/"]  # nothing matches yet: show the pattern
        graph.reads[sink.name] = read
    return graph


def mermaid(graph: Graph) -> str:
    """The graph as a Mermaid flowchart."""
    ids = _ids(graph)
    lines = ["flowchart LR"]
    for name in graph.writes:
        lines.append(f"  {ids['source', name]}[({_label(name)})]")
    for topic in graph.topics():
        lines.append(f"  {ids['topic', topic]}>{_label(topic)}]")
    for name in graph.reads:
        lines.append(f"  {ids['sink', name]}[({_label(name)})]")
    for name, topics in graph.writes.items():
        lines += [f"  {ids['source', name]} --> {ids['topic', t]}" for t in topics]
    for name, topics in graph.reads.items():
        lines += [f"  {ids['topic', t]} --> {ids['sink', name]}" for t in topics]
    return "\n".join(lines) + "\n"


def dot(graph: Graph) -> str:
    """The graph in Graphviz DOT."""
    lines = ["digraph liberate {", "  rankdir=LR;"]
    for name in graph.writes:
        lines.append(f"  {_quoted('source:' + name)} [label={_quoted(name)}, shape=cylinder];")
    for topic in graph.topics():
        lines.append(f"  {_quoted('topic:' + topic)} [label={_quoted(topic)}, shape=box];")
    for name in graph.reads:
        lines.append(f"  {_quoted('sink:' + name)} [label={_quoted(name)}, shape=cylinder];")
    for name, topics in graph.writes.items():
        lines += [f"  {_quoted('source:' + name)} -> {_quoted('topic:' + t)};" for t in topics]
    for name, topics in graph.reads.items():
        lines += [f"  {_quoted('topic:' + t)} -> {_quoted('sink:' + name)};" for t in topics]
    lines.append("}")
    return "\n".join(lines) + "\n"


def _existing_topics(config: RunConfig) -> list[str]:
    streams = config.streams
    if streams.backend == "embedded" and not streams.path.exists():
        return []
    try:
        backend = open_backend(streams)
    except LiberateError:
        return []  # no backend reachable: the templates are the graph
    try:
        return [info.name for info in backend.topics()]
    finally:
        backend.close()


def _template_regex(template: str) -> re.Pattern[str]:
    pattern = ""
    for literal, name, _, _ in Formatter().parse(template):
        pattern += re.escape(literal)
        if name is not None:
            pattern += r"[^.]+"
    return re.compile(pattern)


def _example(template: str) -> str:
    """A topic name ``template`` could render (each placeholder as ``x``), to match a
    sink's ``topics_regex`` against before the real names exist."""
    return "".join(
        literal + ("x" if name is not None else "")
        for literal, name, _, _ in Formatter().parse(template)
    )


def _ids(graph: Graph) -> dict[tuple[str, str], str]:
    ids: dict[tuple[str, str], str] = {}
    for kind, names in (("source", list(graph.writes)), ("topic", graph.topics()),
                        ("sink", list(graph.reads))):
        for index, name in enumerate(names):
            ids[kind, name] = f"{kind}{index}"
    return ids


def _label(text: str) -> str:
    # Mermaid reads a quoted label literally; its own escape for a double quote is #quot;
    return '"' + text.replace('"', "#quot;") + '"'


def _quoted(text: str) -> str:
    return json.dumps(text)
