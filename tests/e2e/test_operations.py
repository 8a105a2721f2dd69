"""Running a run file as a service: `run --only`, isolation of a failing connector, SIGTERM,
`offsets` (show, reset behind a lock and a confirmation) and `topology`; SQLite only."""

from __future__ import annotations

import fcntl
import json
import sqlite3
import subprocess
from pathlib import Path

import pytest

from tests.e2e.conftest import Cli, write
from tests.integration._operations_support import (
    add_items,
    count_rows,
    create_items,
    start_run,
    terminate,
    wait_until,
)
from tests.integration._operations_support import cli as run_cli

SIGTERM_DEADLINE_S = 30


@pytest.fixture
def shop(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'shop.db'}"
    create_items(url, "orders")
    create_items(url, "refunds")
    add_items(url, "orders", range(1, 201))
    add_items(url, "refunds", range(1, 21))
    return url


def run_file(tmp_path: Path, shop: str, *, broken: str = "") -> Path:
    return write(tmp_path / "run.yaml", f"""
streams:
  path: {tmp_path / 'streams.db'}
sources:
  - name: orders
    connector: query
    database: {shop}
    tables: [orders]
    incrementing_column: id
    schedule: 200ms
  - name: refunds
    connector: query
    database: {shop}
    tables: [refunds]
    incrementing_column: id
    schedule: 200ms
sinks:
  - name: warehouse
    connector: sql
    database: sqlite:///{tmp_path / 'warehouse.db'}
    topics_regex: "(orders|refunds)\\\\..*"
{broken}""")


BROKEN_SINK = """  - name: broken
    connector: sql
    database: sqlite:///{path}
    auto_create: false
    topics: [orders.orders]
{extra}"""


def test_only_with_an_unknown_name_is_a_usage_error_that_lists_the_names(
    cli: Cli, tmp_path: Path, shop: str
) -> None:
    result = cli("run", str(run_file(tmp_path, shop)), "--once", "--only", "nope")
    assert result.returncode == 2
    assert "nope" in result.stderr
    assert "choose among: orders, refunds, warehouse" in result.stderr


def test_only_runs_the_named_connectors(cli: Cli, tmp_path: Path, shop: str) -> None:
    path = run_file(tmp_path, shop)
    result = cli("run", str(path), "--once", "--only", "orders", "--only", "warehouse")
    assert result.returncode == 0, result.stderr
    warehouse = f"sqlite:///{tmp_path / 'warehouse.db'}"
    assert count_rows(warehouse, "orders") == 200
    assert count_rows(warehouse, "refunds") == 0
    assert "source refunds" not in result.stdout


def test_a_failing_sink_leaves_the_others_running_and_fails_the_run_at_its_end(
    cli: Cli, tmp_path: Path, shop: str
) -> None:
    broken = BROKEN_SINK.format(path=tmp_path / "broken.db", extra="")
    result = cli("run", str(run_file(tmp_path, shop, broken=broken)), "--once")
    assert result.returncode == 1
    assert "sink broken: target table orders does not exist" in result.stderr
    assert "the other connectors keep running" in result.stderr
    warehouse = f"sqlite:///{tmp_path / 'warehouse.db'}"
    assert count_rows(warehouse, "orders") == 200
    assert count_rows(warehouse, "refunds") == 20


def test_on_failure_stop_stops_the_whole_run(cli: Cli, tmp_path: Path, shop: str) -> None:
    broken = BROKEN_SINK.format(path=tmp_path / "broken.db", extra="    on_failure: stop\n")
    path = run_file(tmp_path, shop, broken=broken)
    process = start_run(path, cwd=tmp_path)  # not --once: only the failure can end it
    try:
        _, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 1
    assert "broken has on_failure: stop: stopping the run" in err


def test_sigterm_finishes_the_batches_in_flight_commits_and_exits_0(
    cli: Cli, tmp_path: Path, shop: str
) -> None:
    add_items(shop, "orders", range(1000, 60_000))
    path = run_file(tmp_path, shop)
    process = start_run(path, cwd=tmp_path)
    warehouse = f"sqlite:///{tmp_path / 'warehouse.db'}"
    try:
        wait_until(lambda: count_rows(warehouse, "orders") > 0, timeout_s=60,
                   what="the first rows", process=process)
        code, out, err = terminate(process, timeout_s=SIGTERM_DEADLINE_S)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert code == 0, err
    assert "sink warehouse: wrote" in out
    # What was written was committed with its offsets: the sink's next offset is its rows.
    with sqlite3.connect(tmp_path / "warehouse.db") as conn:
        stored = dict(conn.execute(
            "SELECT topic, next_offset FROM liberate_sink_offsets WHERE sink = 'warehouse'"))
        rows = conn.execute("SELECT count(*) FROM orders").fetchone()[0]
    assert stored["orders.orders"] == rows
    # And a restart finishes the job: nothing lost, nothing twice.
    finish = cli("run", str(path), "--once")
    assert finish.returncode == 0, finish.stderr
    verified = cli("verify", str(path))
    assert verified.returncode == 0, verified.stdout


def test_offsets_shows_and_resets_positions_only_when_the_connector_is_stopped(
    cli: Cli, tmp_path: Path, shop: str
) -> None:
    path = run_file(tmp_path, shop)
    assert cli("run", str(path), "--once").returncode == 0
    shown = cli("offsets", str(path), "--json")
    assert shown.returncode == 0, shown.stderr
    offsets = json.loads(shown.stdout)
    assert offsets["sources"]["orders"] == {'{"table":"orders"}': {"incrementing": 200}}
    assert offsets["sinks"]["warehouse"]["orders.orders[0]"] == {"next": 200, "end": 200, "lag": 0}

    process = start_run(path, cwd=tmp_path)
    try:
        wait_until(lambda: _holds_lock(tmp_path), timeout_s=30, what="the run's lock",
                   process=process)
        refused = cli("offsets", str(path), "reset", "warehouse", "--to-beginning", "--yes")
        assert refused.returncode == 1
        assert "sink warehouse is running" in refused.stderr
        assert terminate(process, timeout_s=SIGTERM_DEADLINE_S)[0] == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()

    declined = answer("n", "offsets", str(path), "reset", "orders", "--to",
                      '{"incrementing": 150}', cwd=tmp_path)
    assert declined.returncode == 1
    assert "not reset" in declined.stdout
    assert json.loads(cli("offsets", str(path), "--json").stdout)["sources"]["orders"] == \
        offsets["sources"]["orders"]

    accepted = answer("y", "offsets", str(path), "reset", "orders", "--to",
                      '{"incrementing": 150}', cwd=tmp_path)
    assert accepted.returncode == 0, accepted.stderr
    sink_reset = cli("offsets", str(path), "reset", "warehouse", "--to-beginning", "--yes")
    assert sink_reset.returncode == 0, sink_reset.stderr
    after = json.loads(cli("offsets", str(path), "--json").stdout)
    assert after["sources"]["orders"] == {'{"table":"orders"}': {"incrementing": 150}}
    assert after["sinks"]["warehouse"]["orders.orders[0]"]["next"] == 0

    again = cli("run", str(path), "--once")
    assert again.returncode == 0, again.stderr
    assert "orders.orders                                    50" in again.stdout  # 151..200
    assert cli("verify", str(path)).returncode == 0


def test_offsets_reset_usage_errors_exit_2(cli: Cli, tmp_path: Path, shop: str) -> None:
    path = str(run_file(tmp_path, shop))
    assert cli("offsets", path, "reset", "warehouse").returncode == 2
    assert cli("offsets", path, "reset", "nope", "--to-beginning").returncode == 2
    assert cli("offsets", path, "reset", "orders", "--to", "not json").returncode == 2


def test_topology_prints_sources_topics_and_sinks_as_mermaid_and_dot(
    cli: Cli, tmp_path: Path, shop: str
) -> None:
    path = str(run_file(tmp_path, shop))
    mermaid = cli("topology", path)
    assert mermaid.returncode == 0, mermaid.stderr
    lines = mermaid.stdout.splitlines()
    assert lines[0] == "flowchart LR"
    assert '  source0[("orders")]' in lines
    assert '  topic0>"orders.orders"]' in lines
    assert "  source0 --> topic0" in lines
    assert "  topic1 --> sink0" in lines
    dot = cli("topology", path, "--format", "dot")
    assert '"source:refunds" -> "topic:refunds.refunds";' in dot.stdout
    assert '"topic:refunds.refunds" -> "sink:warehouse";' in dot.stdout


def answer(reply: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``liberate ARGS`` answering ``reply`` to its question."""
    return run_cli(*args, cwd=cwd, stdin=reply + "\n")


def _holds_lock(tmp_path: Path) -> bool:
    """Whether some process holds the warehouse sink's lock (the run started)."""
    path = tmp_path / "streams.db.locks" / "sink.warehouse.lock"
    if not path.exists():
        return False
    with path.open("a") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        return False


def test_topology_names_the_real_topics_once_the_backend_holds_them(
    cli: Cli, tmp_path: Path, shop: str
) -> None:
    path = write(tmp_path / "schema.yaml", f"""
streams:
  path: {tmp_path / 'streams.db'}
sources:
  - name: shop
    connector: query
    database: {shop}
    tables: [orders]
    topic: "{{source}}.{{schema}}.{{table}}"
sinks:
  - name: warehouse
    connector: sql
    database: sqlite:///{tmp_path / 'warehouse.db'}
    topics_regex: "shop\\\\..*"
""")
    before = cli("topology", str(path)).stdout.splitlines()
    assert '  topic0>"shop.{schema}.orders"]' in before
    assert "  topic0 --> sink0" in before
    assert cli("run", str(path), "--once").returncode == 0
    after = cli("topology", str(path)).stdout.splitlines()
    assert '  topic0>"shop.main.orders"]' in after
    assert "  source0 --> topic0" in after
    assert "  topic0 --> sink0" in after
