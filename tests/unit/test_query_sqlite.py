"""Query source behaviour that needs no server: SQLite files, text timestamps, error messages."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
import sqlalchemy as sa

from connectors.query import QuerySource, QuerySourceConfig
from liberate.errors import PrerequisiteError
from tests.conformance.source import StoredOffsets, drain, offsets_after


def _config(database: str, **settings: object) -> QuerySourceConfig:
    values: dict[str, object] = {
        "name": "shop",
        "connector": "query",
        "database": database,
        "tables": ["orders"],
    }
    values.update(settings)
    return QuerySourceConfig.model_validate(values)


def _read(config: QuerySourceConfig, offsets: StoredOffsets | None = None) -> list[int]:
    source = QuerySource(config)
    source.open(offsets or {})
    try:
        return [int(r.key["id"]) for r in drain(source) if r.key is not None]
    finally:
        source.close()


def _sqlite(tmp_path: Path, ddl: str, rows: list[dict[str, object]], insert: str) -> str:
    url = f"sqlite:///{tmp_path / 'shop.db'}"
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text(ddl))
        for row in rows:
            conn.execute(sa.text(insert), row)
    engine.dispose()
    return url


def test_sqlite_timestamps_in_every_text_shape_are_ordered_as_instants(tmp_path: Path) -> None:
    # CURRENT_TIMESTAMP, SQLAlchemy and isoformat() write the same instant differently; compared
    # as raw text, equal instants differ and a 'T' sorts after every space.
    stamps = {
        1: "2024-05-01 10:00:00",
        2: "2024-05-01T10:00:00.5",
        3: "2024-05-01 10:00:00.000000",
        4: "2024-05-01T09:59:59",
        5: "2024-05-01 10:00:00.250",
    }
    url = _sqlite(
        tmp_path,
        "CREATE TABLE orders (id INTEGER PRIMARY KEY, updated_at DATETIME NOT NULL)",
        [{"id": k, "at": v} for k, v in stamps.items()],
        "INSERT INTO orders (id, updated_at) VALUES (:id, :at)",
    )
    config = _config(url, timestamp_column="updated_at", timestamp_delay="0s", batch_size=1)
    source = QuerySource(config)
    source.open({})
    try:
        records = drain(source)
    finally:
        source.close()
    assert [r.key["id"] for r in records if r.key] == [4, 1, 3, 5, 2]
    for durable in range(1, len(records)):  # resuming from each record reads the rest exactly
        assert _read(config, offsets_after(records[:durable])) == [4, 1, 3, 5, 2][durable:]


def test_rows_stamped_by_sqlite_current_timestamp_are_read_without_delay(tmp_path: Path) -> None:
    url = _sqlite(
        tmp_path,
        "CREATE TABLE orders (id INTEGER PRIMARY KEY, "
        "updated_at DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP)",
        [{"id": 1}, {"id": 2}],
        "INSERT INTO orders (id) VALUES (:id)",
    )
    assert _read(_config(url, timestamp_column="updated_at", timestamp_delay="0s")) == [1, 2]


def test_offset_values_are_bound_never_spliced_into_sql(tmp_path: Path) -> None:
    keys = ["a", "a' OR '1'='1", "b"]
    url = _sqlite(
        tmp_path,
        "CREATE TABLE orders (code VARCHAR(20) PRIMARY KEY, label TEXT)",
        [{"code": k} for k in keys],
        "INSERT INTO orders (code, label) VALUES (:code, 'x')",
    )
    stored: StoredOffsets = {
        '{"table":"orders"}': {"cycle": 1, "complete": False, "key.code": keys[1]}
    }
    source = QuerySource(_config(url, mode="bulk"))
    source.open(stored)
    try:
        records = drain(source)
    finally:
        source.close()
    assert [r.key["code"] for r in records if r.key] == ["b"]


def test_a_missing_sqlite_file_is_an_error_and_is_not_created(tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "shop.db"
    source = QuerySource(_config(f"sqlite:///{path}"))
    with pytest.raises(PrerequisiteError, match="does not exist"):
        source.open({})
    assert not path.parent.exists()
    (result,) = source.check()
    assert not result.ok and result.hint


def test_an_unreachable_server_is_reported_with_the_masked_url(tmp_path: Path) -> None:
    url = "postgresql://shop:hunter2@127.0.0.1:1/shop"
    source = QuerySource(_config(url))
    with pytest.raises(PrerequisiteError) as caught:
        source.open({})
    text = str(caught.value)
    assert "hunter2" not in text
    assert "shop:***@127.0.0.1:1/shop" in text
    assert caught.value.hint
    (result,) = source.check()
    assert not result.ok and "hunter2" not in result.message


def test_status_of_a_never_run_source_counts_every_row_as_behind(tmp_path: Path) -> None:
    url = _sqlite(
        tmp_path,
        "CREATE TABLE orders (id INTEGER PRIMARY KEY, updated_at DATETIME NOT NULL)",
        [{"id": 1, "at": dt.datetime(2024, 1, 1).isoformat()}],
        "INSERT INTO orders (id, updated_at) VALUES (:id, :at)",
    )
    for settings in ({"mode": "bulk"}, {"timestamp_column": "updated_at"}):
        status = QuerySource(_config(url, **settings)).status({})
        assert status.lag['{"table":"orders"}']["rows_behind"] == 1, settings
