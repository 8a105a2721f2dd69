"""``verify`` over a whole run file: every route source table -> sink table, reconciled.

What is compared (documented in docs/operations.md): the key columns (the source's configured
``key_columns``, else its primary key) and every other column present in both tables under the
same name; so columns a sink leaves out (``fields_include``/``fields_exclude``) and columns only
one side has are not compared. Values are compared in a database-neutral form (``_values``).
Query sources cannot see deletes: a row deleted at the source stays in the target and is
reported as extra, which is the truth.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import NoSuchTableError, SQLAlchemyError

from liberate.config.base import DatabaseSettings, SourceConfig
from liberate.config.models import RunConfig
from liberate.database import mask_url, source_engine
from liberate.errors import PrerequisiteError, RetriableError
from liberate.verify._reconcile import Differences, Key, Side, reconcile, row_digests
from liberate.verify._values import converter_to
from liberate.verify.routes import Route, is_table_source, routes_of, source_tables

DEFAULT_MAX_KEYS = 20


@dataclass
class TableReport:
    """The reconciliation of one source table with one target table."""

    source: str
    sink: str
    topic: str
    source_table: str
    target_table: str
    key: list[str]
    columns: list[str]
    source_rows: int = 0
    target_rows: int = 0
    missing_count: int = 0
    extra_count: int = 0
    different_count: int = 0
    missing: list[dict[str, Any]] = field(default_factory=list)
    extra: list[dict[str, Any]] = field(default_factory=list)
    different: list[dict[str, Any]] = field(default_factory=list)
    note: str | None = None

    @property
    def ok(self) -> bool:
        return not (self.missing_count or self.extra_count or self.different_count)

    def as_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "sink": self.sink,
            "topic": self.topic,
            "source_table": self.source_table,
            "target_table": self.target_table,
            "key": self.key,
            "columns": self.columns,
            "source_rows": self.source_rows,
            "target_rows": self.target_rows,
            "ok": self.ok,
            "missing_count": self.missing_count,
            "extra_count": self.extra_count,
            "different_count": self.different_count,
            "missing": self.missing,
            "extra": self.extra,
            "different": self.different,
            "note": self.note,
        }


@dataclass
class VerifyReport:
    """Every route reconciled, and what could not be (``skipped``, with the reason)."""

    tables: list[TableReport] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(t.ok for t in self.tables)

    def as_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "tables": [t.as_json() for t in self.tables],
            "skipped": self.skipped,
        }


def verify_run(run: RunConfig, *, max_keys: int = DEFAULT_MAX_KEYS) -> VerifyReport:
    """Reconcile every source table of ``run`` with each sink table it ends up in."""
    report = VerifyReport()
    with _Engines() as engines:
        for source in run.sources:
            if not is_table_source(source):
                report.skipped.append(
                    f"source {source.name}: its topics are not tables the run file names"
                    " (custom query, outbox or another connector): nothing to reconcile"
                )
                continue
            try:
                _verify_source(run, source, engines, report, max_keys)
            except SQLAlchemyError as exc:
                raise RetriableError(
                    f"source {source.name}: cannot read its tables: {_reason(exc)}",
                    hint="check that the database is up and the user may read the tables",
                ) from exc
    return report


def _verify_source(
    run: RunConfig,
    source: SourceConfig,
    engines: _Engines,
    report: VerifyReport,
    max_keys: int,
) -> None:
    assert isinstance(source, DatabaseSettings)
    with engines.connect(source, f"source {source.name}") as conn:
        default_schema = sa.inspect(conn).default_schema_name
        for origin in source_tables(source, default_schema):
            routes = routes_of(run, origin)
            if not routes:
                report.skipped.append(
                    f"source {source.name}: topic {origin.topic} of {origin.label} goes to no"
                    " sink that writes tables"
                )
            for route in routes:
                if getattr(route.sink, "pk_mode", None) == "none":
                    report.skipped.append(
                        f"sink {route.sink.name}: appends every record as a new row"
                        " (pk_mode: none); no key to reconcile by"
                    )
                    continue
                assert isinstance(route.sink, DatabaseSettings)
                try:
                    engines.engine(route.sink)
                except PrerequisiteError as exc:  # a SQLite target file not created yet
                    report.tables.append(_verify_route(route, conn, None, max_keys, exc.message))
                    continue
                with engines.connect(route.sink, f"sink {route.sink.name}") as target:
                    try:
                        report.tables.append(_verify_route(route, conn, target, max_keys))
                    except SQLAlchemyError as exc:
                        # Either side may fail here: name both tables, not just one database.
                        raise RetriableError(
                            f"reconciling {origin.label} (source {source.name}) with"
                            f" {route.target_label} (sink {route.sink.name}): {_reason(exc)}",
                            hint="check that both databases are up and the users may read"
                            " the tables",
                        ) from exc


def _verify_route(
    route: Route,
    source_conn: Connection,
    target_conn: Connection | None,
    max_keys: int,
    absent: str = "the target table does not exist",
) -> TableReport:
    origin = route.origin
    source_table = _reflect(source_conn, origin.table, origin.schema)
    if source_table is None:
        raise PrerequisiteError(
            f"table {origin.label} of source {origin.source.name} not found",
            hint="check tables: in the run file",
        )
    key = list(origin.key_columns or [c.name for c in source_table.primary_key.columns])
    report = TableReport(
        source=origin.source.name,
        sink=route.sink.name,
        topic=origin.topic,
        source_table=origin.label,
        target_table=route.target_label,
        key=key,
        columns=[],
    )
    if not key:
        report.note = "the source table has no primary key and no key_columns: not compared"
        return report
    target_table = None if target_conn is None else \
        _reflect(target_conn, route.target_table, route.target_schema)
    target_names = set() if target_table is None else {c.name for c in target_table.columns}
    absent_key = [k for k in key if k not in target_names]
    columns = key + [
        c.name for c in source_table.columns if c.name in target_names and c.name not in key
    ]
    report.columns = columns
    source_side = Side(source_conn, source_table, key, columns)
    if target_conn is None or target_table is None or absent_key:
        # Every source row is missing: count them and name the first keys.
        report.note = (
            absent if target_table is None
            else f"the target table lacks key column(s) {', '.join(absent_key)}"
        )
        found = _all_missing(source_side)
    else:
        converters = [converter_to(_python_type(source_table.c[name])) for name in columns]
        found = reconcile(
            source_side, Side(target_conn, target_table, key, columns, converters)
        )
    _fill(report, found, max_keys)
    return report


def _all_missing(side: Side) -> Differences:
    found = Differences()
    for key, digest in row_digests(side, (None, None)):
        found.missing[key] = digest
    found.source_rows = len(found.missing)
    return found


def _fill(report: TableReport, found: Differences, max_keys: int) -> None:
    report.source_rows, report.target_rows = found.source_rows, found.target_rows
    report.missing_count = len(found.missing)
    report.extra_count = len(found.extra)
    report.different_count = len(found.different)
    report.missing = [_named(report.key, k) for k in _first(found.missing, max_keys)]
    report.extra = [_named(report.key, k) for k in _first(found.extra, max_keys)]
    report.different = [_named(report.key, k) for k in _first(found.different, max_keys)]


def _first(keys: Any, limit: int) -> list[Key]:
    return sorted(keys, key=_sort_key)[:limit]


def _sort_key(key: Key) -> tuple[tuple[int, Any], ...]:
    # Ints before text, None first: keys of one table share types, this just never raises.
    return tuple((0, "") if v is None else (1, v) if isinstance(v, int) else (2, str(v))
                 for v in key)


def _named(columns: list[str], key: Key) -> dict[str, Any]:
    return dict(zip(columns, key, strict=True))


def _python_type(column: sa.Column[Any]) -> type | None:
    try:
        found: type = column.type.python_type
    except NotImplementedError:
        return None
    return found


def _reflect(conn: Connection, table: str, schema: str | None) -> sa.Table | None:
    try:
        return sa.Table(table, sa.MetaData(), schema=schema, autoload_with=conn)
    except NoSuchTableError:
        return None


class _Engines:
    """One engine per database URL for the whole verification, disposed at the end."""

    def __init__(self) -> None:
        self._engines: dict[str, Engine] = {}

    def __enter__(self) -> _Engines:
        return self

    def __exit__(self, *exc: object) -> None:
        for engine in self._engines.values():
            engine.dispose()
        self._engines.clear()

    def engine(self, settings: DatabaseSettings) -> Engine:
        """The engine of ``settings`` (a missing SQLite file is a ``PrerequisiteError``)."""
        url = settings.database.get_secret_value()
        engine = self._engines.get(url)
        if engine is None:
            engine = self._engines[url] = source_engine(settings)
        return engine

    @contextlib.contextmanager
    def connect(self, settings: DatabaseSettings, who: str) -> Iterator[Connection]:
        engine = self.engine(settings)
        try:
            conn = engine.connect()
        except SQLAlchemyError as exc:
            raise RetriableError(
                f"{who}: cannot connect to {mask_url(engine.url)}: {_reason(exc)}",
                hint="check that the database is up and the user may connect",
            ) from exc
        with conn:
            yield conn


def _reason(exc: SQLAlchemyError) -> str:
    orig = getattr(exc, "orig", None)
    # The driver's first line says what happened (refused, unknown database) without the URL.
    return str(orig or exc).splitlines()[0] if str(orig or exc) else type(exc).__name__
