"""How the changes of one batch become statements: grouped per table, reduced per key.

In upsert mode the changes of one key within a batch collapse to the last one (the row as it
ends up, or its deletion): an insert, update, delete and re-insert of one key write the
re-inserted row once. With every key written once, the deletes and the writes of a table touch
disjoint keys and their order no longer matters.

In insert mode nothing collapses (a duplicate key must fail): the changes of a table keep their
order, in runs of consecutive writes or deletes.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field

from sinks.sql._events import Action, Change


@dataclass(slots=True)
class Run:
    """Consecutive changes of one action on one table, executed together."""

    action: Action
    changes: list[Change] = field(default_factory=list)


@dataclass(slots=True)
class TablePlan:
    """The runs of one target table, in execution order."""

    table: str
    runs: list[Run] = field(default_factory=list)


def plan_batch(changes: Iterable[tuple[str, Change]], *, reduce: bool) -> list[TablePlan]:
    """Group ``(table, change)`` pairs per table; skipped changes are left out.

    ``reduce`` keeps only the last change of each key of a table (upsert mode).
    """
    if reduce:
        return _reduced(changes)
    plans: dict[str, TablePlan] = {}
    for table, change in changes:
        if change.action is Action.SKIP:
            continue
        runs = plans.setdefault(table, TablePlan(table)).runs
        if not runs or runs[-1].action is not change.action:
            runs.append(Run(change.action))
        runs[-1].changes.append(change)
    return list(plans.values())


def _reduced(changes: Iterable[tuple[str, Change]]) -> list[TablePlan]:
    last: dict[str, dict[tuple[Hashable, ...], Change]] = {}
    for table, change in changes:
        if change.action is Action.SKIP:
            continue
        last.setdefault(table, {})[change.identity] = change
    plans = []
    for table, by_key in last.items():
        deletes = Run(Action.DELETE)
        writes = Run(Action.WRITE)
        for change in by_key.values():
            (deletes if change.action is Action.DELETE else writes).changes.append(change)
        plans.append(TablePlan(table, [run for run in (deletes, writes) if run.changes]))
    return plans
