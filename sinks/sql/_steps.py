"""From changes to executable steps: target tables made ready, layouts found, runs grouped.

``Steps.prepare`` runs any DDL a batch needs (outside the data transaction) and builds one
layout per (table, row schema, key schema); ``Steps.plan`` turns the changes into steps, each
one statement (or one COPY and merge): a run of one action on one table, of changes sharing a
layout and the same unchanged columns.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

from liberate.errors import FatalError, RetriableError
from sinks.sql._events import Action, Change, origin
from sinks.sql._layouts import KeyLayout, RowLayout, key_layout, row_layout
from sinks.sql._plan import plan_batch
from sinks.sql._shape import ShapeRules, column_name, shape_columns
from sinks.sql._tables import TableCatalog
from sinks.sql._writes import NO_COLUMNS, SqlWriter

# Layouts are found by table and schema *identity*: the event reader hands out one canonical
# object per distinct schema, and identity hashing is far cheaper than hashing schema text.
_RowLayoutKey = tuple[str, int, int]
_KeyLayoutKey = tuple[str, int]


@dataclass(frozen=True, slots=True)
class Step:
    """Changes of one action on one table that share a layout: one statement (or COPY)."""

    action: Action
    table: str
    layout: RowLayout | KeyLayout | sa.Table  # the table itself for a truncate
    changes: list[Change]
    kept: frozenset[str] = NO_COLUMNS  # columns left as they are (unchanged values)


class Steps:
    """Layouts of one sink's tables, rebuilt whenever the catalog reflects a table anew."""

    def __init__(
        self,
        catalog: TableCatalog,
        *,
        dialect: Dialect,
        rules: ShapeRules,
        mode: str,
        writers: Sequence[SqlWriter],
    ) -> None:
        self._catalog = catalog
        self._dialect = dialect
        self._rules = rules
        self._mode = mode
        self._writers = writers
        self._rows: dict[_RowLayoutKey, RowLayout] = {}
        self._keys: dict[_KeyLayoutKey, KeyLayout | None] = {}
        self._generation = catalog.generation
        #: whether a change's schema is judged for narrowings and dropped columns
        self.judge: Callable[[Change], bool] = lambda change: True

    def prepare(self, changes: Sequence[tuple[str, Change]]) -> None:
        """Layouts for every change, after any DDL they need."""
        catalog = self._catalog
        for _ in range(3):  # a DDL invalidates the layouts built before it: go round again
            if self._generation != catalog.generation:
                self._rows.clear()
                self._keys.clear()
                for writer in self._writers:
                    writer.reset()
                self._generation = catalog.generation
            last: tuple[object, object, object] = (None, None, None)
            for table, change in changes:
                action = change.action
                if action is Action.WRITE:
                    if (table, change.row_schema, change.key_schema) == last:
                        continue  # the previous change had the same layout: it is there
                    assert change.row_schema is not None
                    row_key = (table, id(change.row_schema), id(change.key_schema))
                    if row_key not in self._rows:
                        self._rows[row_key] = self._row_layout(table, change)
                    last = (table, change.row_schema, change.key_schema)
                elif action is Action.DELETE:
                    assert change.key_schema is not None
                    key_key = (table, id(change.key_schema))
                    if key_key not in self._keys:
                        self._keys[key_key] = self._delete_layout(table, change)
                elif action is Action.TRUNCATE:
                    catalog.find(table)
            if self._generation == catalog.generation:
                return
        raise RetriableError("target tables kept changing while the batch was prepared")

    def plan(self, changes: Sequence[tuple[str, Change]]) -> list[Step]:
        """The steps of ``changes`` (prepared), reduced per key as the mode says."""
        steps: list[Step] = []
        for plan in plan_batch(changes, mode=self._mode):
            for run in plan.runs:
                if run.action is Action.TRUNCATE:
                    target = self._catalog.find(plan.table)
                    if target is not None:
                        steps.append(Step(Action.TRUNCATE, plan.table, target, run.changes))
                    continue
                groups: dict[Hashable, Step] = {}
                last: tuple[object, object, Step | None] = (None, None, None)
                for change in run.changes:
                    # Runs are mostly of one schema: the previous change's step fits.
                    if change.unchanged is None and last[2] is not None and (
                        change.row_schema is last[0] and change.key_schema is last[1]
                    ):
                        last[2].changes.append(change)
                        continue
                    step = self._group(groups, run.action, plan.table, change)
                    if step is not None:
                        step.changes.append(change)
                        if change.unchanged is None:
                            last = (change.row_schema, change.key_schema, step)
                steps.extend(groups.values())
        return steps

    def layout_of(self, table: str, change: Change) -> RowLayout:
        """The layout of a write ``change`` (prepared) into ``table``."""
        assert change.row_schema is not None
        return self._rows[(table, id(change.row_schema), id(change.key_schema))]

    def step_of(self, table: str, change: Change) -> Step | None:
        """The step of one change alone (None when it changes nothing)."""
        if change.action is Action.SKIP:
            return None
        if change.action is Action.TRUNCATE:
            target = self._catalog.find(table)
            return None if target is None else Step(Action.TRUNCATE, table, target, [change])
        step = self._group({}, change.action, table, change)
        if step is not None:
            step.changes.append(change)
        return step

    def _group(
        self, groups: dict[Hashable, Step], action: Action, table: str, change: Change
    ) -> Step | None:
        if action is Action.WRITE:
            assert change.row_schema is not None
            layout = self._rows[(table, id(change.row_schema), id(change.key_schema))]
            kept = layout.kept_columns(change.unchanged)
            group = (id(layout), kept)
            step = groups.get(group)
            if step is None:
                step = groups[group] = Step(action, table, layout, [], kept)
            return step
        key_layout_ = self._keys[(table, id(change.key_schema))]
        if key_layout_ is None:
            return None  # no table: no row to delete
        step = groups.get(id(key_layout_))
        if step is None:
            step = groups[id(key_layout_)] = Step(action, table, key_layout_, [])
        return step

    def _row_layout(self, table: str, change: Change) -> RowLayout:
        assert change.row_schema is not None
        columns = shape_columns(change.row_schema, change.key_schema, self._rules)
        written = {c.column for c in columns}
        excluded = [
            name for name in (column_name(f) for f in change.row_schema.fields)
            if name not in written
        ]
        target = self._catalog.ensure(
            table, columns, mode=self._mode, excluded=excluded, latest=self.judge(change)
        )
        return row_layout(target, columns, self._dialect)

    def _delete_layout(self, table: str, change: Change) -> KeyLayout | None:
        assert change.key_schema is not None
        target = self._catalog.find(table)
        if target is None:
            return None
        layout = key_layout(target, change.key_schema, self._dialect)
        if layout is None:
            raise FatalError(
                f"table {self._catalog.where(table)} lacks the key column(s) of "
                f"{origin(change.record)}'s key to delete by",
                hint="the record key must match the table's primary key",
            )
        return layout
