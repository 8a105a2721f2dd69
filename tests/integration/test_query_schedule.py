"""Scheduled query sources in a running pipeline: bulk reloads, and cycles that never overlap."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa

from liberate.config.loader import load_run_file
from liberate.runtime import open_backend
from liberate.runtime.pipeline import Pipeline
from liberate.streams.base import StreamBackend
from tests.integration._query_support import create_orders, engine_for, insert, order


def _run_file(tmp_path: Path, source: str) -> Path:
    path = tmp_path / "run.yaml"
    path.write_text(
        f"streams:\n  path: {tmp_path / 'streams.db'}\nsources:\n{source}", encoding="utf-8"
    )
    return path


@contextmanager
def _running(path: Path) -> Iterator[StreamBackend]:
    """A pipeline of the run file running in a thread (not ``once``) until the block ends."""
    config = load_run_file(str(path))
    backend = open_backend(config.streams)
    pipeline = Pipeline(config, backend, max_retries=None)
    thread = threading.Thread(target=pipeline.run)
    thread.start()
    try:
        yield backend
    finally:
        pipeline.stop()
        thread.join(10)
        backend.close()
    assert not thread.is_alive()


def _records(backend: StreamBackend, topic: str) -> int:
    return sum(info.records for info in backend.topics() if info.name == topic)


def _wait_for(condition: object, timeout: float = 10.0) -> None:
    assert callable(condition)
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_a_scheduled_bulk_source_reloads_the_whole_table_at_each_run(
    sqlite_url: str, tmp_path: Path
) -> None:
    table = create_orders(sqlite_url)
    insert(sqlite_url, table, [order(1), order(2), order(3)])
    path = _run_file(
        tmp_path,
        f"  - name: shop\n    connector: query\n    database: {sqlite_url}\n"
        "    tables: [orders]\n    mode: bulk\n    schedule: 300ms\n",
    )
    with _running(path) as backend:
        _wait_for(lambda: _records(backend, "shop.orders") >= 3)
        started = time.monotonic()
        _wait_for(lambda: _records(backend, "shop.orders") >= 9)  # two reloads more
        elapsed = time.monotonic() - started
    # Each reload waits for its fire time: two of them take at least one interval.
    assert elapsed >= 0.3


def test_a_poll_slower_than_the_interval_never_runs_next_to_the_following_one(
    postgres_url: str, tmp_path: Path
) -> None:
    table = create_orders(postgres_url)
    insert(postgres_url, table, [order(1), order(2)])
    # Every read of this query takes 0.4 s; the schedule asks for one every 50 ms.
    query = "SELECT id, label FROM orders WHERE pg_sleep(0.4)::text = ''"
    path = _run_file(
        tmp_path,
        f"  - name: slow\n    connector: query\n    database: {postgres_url}\n"
        f"    query: \"{query}\"\n    key_columns: [id]\n    mode: bulk\n"
        "    schedule: 50ms\n",
    )
    engine = engine_for(postgres_url)
    most_at_once = 0
    sampled = 0
    try:
        with _running(path) as backend, engine.connect() as conn:
            deadline = time.monotonic() + 3.0
            while time.monotonic() < deadline:
                running = conn.execute(
                    sa.text(
                        "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' "
                        "AND query LIKE '%pg_sleep(0.4)%' AND pid <> pg_backend_pid()"
                    )
                ).scalar_one()
                conn.commit()
                most_at_once = max(most_at_once, int(running))
                sampled += 1
                time.sleep(0.02)
            reads = _records(backend, "slow")
    finally:
        engine.dispose()
    assert sampled > 20
    assert most_at_once == 1
    # 3 s at 50 ms would be 60 runs (120 records); one at a time, 0.4 s each, at most ~8.
    assert 2 * 2 <= reads <= 2 * 9


def test_a_cron_scheduled_bulk_source_loads_at_start_then_waits_for_the_cron_time(
    sqlite_url: str, tmp_path: Path
) -> None:
    table = create_orders(sqlite_url)
    insert(sqlite_url, table, [order(1), order(2)])
    # Once a year: after the first cycle at start, nothing more within this test.
    path = _run_file(
        tmp_path,
        f"  - name: shop\n    connector: query\n    database: {sqlite_url}\n"
        "    tables: [orders]\n    mode: bulk\n    schedule: \"0 0 1 1 *\"\n",
    )
    with _running(path) as backend:
        _wait_for(lambda: _records(backend, "shop.orders") >= 2)
        time.sleep(1.0)
        assert _records(backend, "shop.orders") == 2
