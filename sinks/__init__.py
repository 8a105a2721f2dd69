"""Sink connectors shipped with liberate (found through the ``liberate.sinks`` entry points)."""
