"""Reconciliation of source tables with the sink tables their rows end up in."""

from liberate.verify.routes import Route, SourceTable, consumes, planned_topics
from liberate.verify.verifier import TableReport, VerifyReport, verify_run

__all__ = [
    "Route",
    "SourceTable",
    "TableReport",
    "VerifyReport",
    "consumes",
    "planned_topics",
    "verify_run",
]
