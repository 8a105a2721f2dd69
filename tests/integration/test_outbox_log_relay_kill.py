"""The log-based relay killed with SIGKILL and restarted, over and over while writers publish
with ``delete_after_insert``, delivers every committed event exactly once into the embedded
stream, each aggregate in order, on PostgreSQL (WAL) and MariaDB (binlog).

The relay runs as a user runs it: ``python -m liberate run FILE`` in a child process.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.integration._outbox_support import (
    EventWriters,
    create_outbox,
    embedded_backend,
    event_records,
    kill_repeatedly,
    outbox_rows,
    relay_config,
    relay_log,
    run_once_in_child,
    run_relay_once,
)

pytestmark = pytest.mark.integration

KILLS = 4


@pytest.mark.parametrize("kind", ["postgresql", "mysql"])
def test_a_log_relay_killed_and_restarted_loses_nothing_and_repeats_nothing(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    url: str = request.getfixturevalue("postgres_url" if kind == "postgresql" else "mysql_url")
    create_outbox(url)
    streams = tmp_path / "streams.db"
    batch = {"max_batch" if kind == "postgresql" else "batch_size": 5}
    source = {"name": "relay", "connector": "outbox", "mode": "log", "database": url,
              "log": batch}
    run_file = tmp_path / "relay.yaml"
    run_file.write_text(yaml.safe_dump({"streams": {"backend": "embedded", "path": str(streams)},
                                        "sources": [source]}))
    # The first start fixes the position the relay streams from (events before it are not
    # the relay's: snapshot_mode never).
    with embedded_backend(streams) as backend:
        run_relay_once(relay_config(url, mode="log", log=batch), backend)
    writers = EventWriters(url, writers=2, hold_rate=0.1, rollback_rate=0.1, pause_s=0.01,
                           delete_after_insert=True).start()
    try:
        kill_repeatedly(run_file, tmp_path, kills=KILLS, seed=2, alive_s=(2.0, 4.0),
                        verbose=True)
    finally:
        writers.stop()
    assert event_records(streams), f"the killed relays delivered nothing:\n{relay_log(tmp_path)}"
    final = run_once_in_child(run_file, tmp_path)
    assert final.returncode == 0, relay_log(tmp_path)

    writers.check(event_records(streams))
    assert outbox_rows(url) == []
