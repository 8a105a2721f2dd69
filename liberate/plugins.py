"""Finding connectors and sinks through entry points (``liberate.sources``, ``liberate.sinks``).

Built-ins are registered exactly like third-party plugins, so the engine never imports one by
name.
"""

from __future__ import annotations

from functools import cache
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

from liberate.errors import FatalError

if TYPE_CHECKING:
    from liberate.connector import Sink, Source

SOURCES_GROUP = "liberate.sources"
SINKS_GROUP = "liberate.sinks"


@cache
def available(group: str) -> dict[str, Any]:
    """Connector name -> entry point, for ``group``."""
    return {ep.name: ep for ep in entry_points(group=group)}


def _load(group: str, name: str) -> Any:
    ep = available(group).get(name)
    if ep is None:
        raise KeyError(name)
    try:
        return ep.load()
    except ModuleNotFoundError as exc:
        raise FatalError(
            f"connector {name!r} needs the module {exc.name}, which is not installed",
            hint=f"pip install {exc.name}",
        ) from exc


def source_class(name: str) -> type[Source]:
    """The Source class registered as ``name``; KeyError when there is none."""
    cls: type[Source] = _load(SOURCES_GROUP, name)
    return cls


def sink_class(name: str) -> type[Sink]:
    """The Sink class registered as ``name``; KeyError when there is none."""
    cls: type[Sink] = _load(SINKS_GROUP, name)
    return cls
