"""How the changes of one batch become statements: grouped per table, reduced per key.

In upsert and update modes the changes of one key within a batch collapse to the last one
(the row as it ends up, or its deletion): an insert, update, delete and re-insert of one key
write the re-inserted row once. With every key written once, the deletes and the writes of a
table touch disjoint keys and their order no longer matters. Two refinements keep the result
equal to applying the changes one by one:

- a change that leaves columns unchanged (unchanged TOAST values) takes their values from the
  earlier change of its key in the batch, which is never written itself;
- in update mode a write after a delete finds no row, so the delete stands.

A truncate drops the table's earlier changes of the batch and runs first.

In insert mode nothing collapses (a duplicate key must fail): the changes of a table keep their
order, in runs of consecutive writes, deletes or truncates.
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


def plan_batch(changes: Iterable[tuple[str, Change]], *, mode: str) -> list[TablePlan]:
    """Group ``(table, change)`` pairs per table; skipped changes are left out.

    ``mode`` upsert or update keeps only the last change of each key of a table.
    """
    if mode != "insert":
        return _reduced(changes, update=mode == "update")
    plans: dict[str, TablePlan] = {}
    for table, change in changes:
        if change.action is Action.SKIP:
            continue
        runs = plans.setdefault(table, TablePlan(table)).runs
        if not runs or runs[-1].action is not change.action:
            runs.append(Run(change.action))
        runs[-1].changes.append(change)
    return list(plans.values())


def _reduced(changes: Iterable[tuple[str, Change]], *, update: bool) -> list[TablePlan]:
    last: dict[str, dict[tuple[Hashable, ...], Change]] = {}
    truncated: dict[str, Change] = {}
    for table, change in changes:
        action = change.action
        if action is Action.SKIP:
            continue
        if action is Action.TRUNCATE:
            last[table] = {}
            truncated[table] = change
            continue
        by_key = last.get(table)
        if by_key is None:
            by_key = last[table] = {}
        identity = change.identity
        if change.unchanged is not None or update:
            before = by_key.get(identity)
            if before is not None and action is Action.WRITE:
                if update and before.action is Action.DELETE:
                    continue
                if change.unchanged is not None and before.action is Action.WRITE:
                    change = merged(before, change)
        by_key[identity] = change
    plans = []
    for table in {**truncated, **last}:
        plan = TablePlan(table)
        if table in truncated:
            plan.runs.append(Run(Action.TRUNCATE, [truncated[table]]))
        deletes = Run(Action.DELETE)
        writes = Run(Action.WRITE)
        for change in last.get(table, {}).values():
            (deletes if change.action is Action.DELETE else writes).changes.append(change)
        plan.runs.extend(run for run in (deletes, writes) if run.changes)
        plans.append(plan)
    return plans


def merged(before: Change, change: Change) -> Change:
    """``change`` with its unchanged fields filled from ``before`` (a write of its key)."""
    assert change.unchanged is not None and change.row is not None and before.row is not None
    row = dict(change.row)
    still: set[str] = set()
    for name in change.unchanged:
        if name in before.row and (before.unchanged is None or name not in before.unchanged):
            row[name] = before.row[name]
        else:
            still.add(name)
    return Change(
        change.record, change.action, change.key, change.key_schema, row, change.row_schema,
        change.identity, frozenset(still) or None,
    )
