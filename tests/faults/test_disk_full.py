"""The disk of the embedded stream store fills up in the middle of a run. Without root there is
no small filesystem to fill, so the run gets a file-size limit instead (RLIMIT_FSIZE, soft
limit only, SIGXFSZ ignored): its writes past the limit fail with EFBIG exactly where a full
disk fails them with ENOSPC. The run says the store cannot write, keeps retrying with backoff,
and once space is "freed" (the test raises the limit of the running process) resumes and loses
nothing: the stream holds every row exactly once, and a sink run afterwards equals the source.
"""

from __future__ import annotations

import resource
import signal
import sqlite3
from pathlib import Path

from tests.faults._harness import (
    CATCH_UP_S,
    FaultRun,
    assert_sink_holds_exactly,
    sink_section,
    sqlite_insert,
    wait_for,
)

#: bytes any file of the run may reach while the disk is "full"
LIMIT = 1_500_000
ROWS = 30_000


def full_disk() -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of being killed
    resource.setrlimit(resource.RLIMIT_FSIZE, (LIMIT, resource.RLIM_INFINITY))


def test_full_stream_store_disk_is_reported_retried_and_loses_nothing(tmp_path: Path) -> None:
    shop, target = tmp_path / "shop.db", tmp_path / "target.db"
    sqlite_insert(shop, 1, ROWS)
    with sqlite3.connect(shop) as conn:  # rows wide enough to pass the limit in the store
        conn.execute("UPDATE items SET label = label || ' ' || printf('%.200c', 'x')")
    source = {"name": "shop", "connector": "query", "database": f"sqlite:///{shop}",
              "tables": ["items"], "mode": "incrementing", "incrementing_column": "id",
              "schedule": "100ms", "batch_size": 1000}
    run = FaultRun(tmp_path, {"path": str(tmp_path / "streams.db")}, [source], [])
    run.write().start(preexec_fn=full_disk)
    process, log = run.process, run.logs[-1]
    assert process is not None
    wait_for(lambda: "cannot write" in log.read_text(errors="replace"), timeout_s=CATCH_UP_S,
             what="the run to report the full disk", process=process,
             log=log)
    wait_for(lambda: "retry 2 in a moment" in log.read_text(errors="replace"),
             timeout_s=CATCH_UP_S, what="the run to keep retrying", process=process, log=log)
    assert process.poll() is None, "a full disk must not end the run"

    # Space is freed: the running process may write again.
    resource.prlimit(process.pid, resource.RLIMIT_FSIZE,
                     (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    wait_for(lambda: run.topic_record_count("shop.items") >= ROWS, timeout_s=CATCH_UP_S,
             what="the source to catch up", process=process, log=log)
    assert run.stop() == 0, run.log_text()
    assert run.topic_record_count("shop.items") == ROWS

    run.sinks = sink_section(target, "shop.items")
    run.write().start("--once")
    assert run.process is not None and run.process.wait(timeout=CATCH_UP_S) == 0, run.log_text()
    with sqlite3.connect(shop) as conn:
        expected = {int(r[0]): str(r[1]) for r in conn.execute("SELECT id, label FROM items")}
    assert_sink_holds_exactly(target, expected)

