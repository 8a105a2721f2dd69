"""Source connectors shipped with liberate (found through the ``liberate.sources`` entry points)."""
