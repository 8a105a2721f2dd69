"""A relay killed with SIGKILL and restarted, over and over while writers write, delivers every
committed event exactly once into the embedded stream, each aggregate in order.

The relay runs as a user runs it: ``python -m liberate run FILE`` in a child process (see
``child_env`` for how it finds the connector before it is registered).
"""

from __future__ import annotations

from pathlib import Path

from tests.integration._outbox_support import (
    EventWriters,
    create_outbox,
    kill_repeatedly,
    outbox_rows,
    relay_log,
    run_once_in_child,
    stream_records,
)

KILLS = 4


def _run_file(tmp_path: Path, url: str) -> Path:
    path = tmp_path / "relay.yaml"
    path.write_text(
        "streams:\n"
        "  backend: embedded\n"
        f"  path: {tmp_path / 'streams.db'}\n"
        "sources:\n"
        "  - name: relay\n"
        "    connector: outbox\n"
        f"    database: {url}\n"
        "    batch_size: 5\n"
        "    schedule: 50ms\n"
    )
    return path


def test_a_relay_killed_and_restarted_loses_nothing_and_repeats_nothing(
    any_db_url: str, tmp_path: Path
) -> None:
    create_outbox(any_db_url)
    run_file = _run_file(tmp_path, any_db_url)
    # Pauses between transactions: SQLite's busy wait would otherwise starve the relay's
    # confirmations behind writers that never let go of the write lock.
    writers = EventWriters(any_db_url, writers=2, hold_rate=0.1, rollback_rate=0.1,
                           pause_s=0.01).start()
    try:
        kill_repeatedly(run_file, tmp_path, kills=KILLS, seed=1, alive_s=(1.0, 3.0))
    finally:
        writers.stop()
    before_final = len(stream_records(tmp_path / "streams.db"))
    assert before_final > 0, f"the killed relays delivered nothing:\n{relay_log(tmp_path)}"
    final = run_once_in_child(run_file, tmp_path)
    assert final.returncode == 0, relay_log(tmp_path)

    writers.check(stream_records(tmp_path / "streams.db"))
    assert outbox_rows(any_db_url) == []
