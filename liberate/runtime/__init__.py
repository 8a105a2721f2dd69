"""The runtime: pulls sources, makes their records durable, feeds sinks, in the commit order."""

from liberate.runtime import locks
from liberate.runtime.pipeline import Pipeline, RunReport, open_backend, select_connectors

__all__ = ["Pipeline", "RunReport", "locks", "open_backend", "select_connectors"]
