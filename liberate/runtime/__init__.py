"""The runtime: pulls sources, makes their records durable, feeds sinks, in the commit order."""

from liberate.runtime.pipeline import Pipeline, RunReport, open_backend

__all__ = ["Pipeline", "RunReport", "open_backend"]
