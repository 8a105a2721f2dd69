"""kill -9 of ``liberate run`` while it streams and while it snapshots: a rerun with --once
leaves the stream equal to the committed history, every change exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from liberate.records import SinkRecord
from liberate.serde import RecordDeserializer
from liberate.streams.embedded import EmbeddedBackend
from tests.integration.mysql.conftest import MySqlDb


def _run_file(tmp_path: Path, db: MySqlDb, table: str, **options: Any) -> Path:
    lines = [
        "streams:",
        "  backend: embedded",
        f"  path: {tmp_path / 'streams.db'}",
        "sources:",
        "  - name: crash",
        "    connector: mysql",
        f"    database: {db.url}",
        f"    tables: [{table}]",
        "    heartbeat_topic: ''",
        *(f"    {key}: {value}" for key, value in options.items()),
    ]
    path = tmp_path / "run.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def _start(run_file: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "liberate", "run", str(run_file)],
            stdout=out, stderr=subprocess.STDOUT, cwd=run_file.parent,
        )


def _rerun_once(run_file: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "liberate", "run", str(run_file), "--once"],
        capture_output=True, text=True, timeout=300, cwd=run_file.parent, check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def _count(streams: Path, topic: str) -> int:
    if not streams.exists():
        return 0
    backend = EmbeddedBackend(streams)
    backend.open()
    try:
        return sum(
            sum(info.end_offsets.values()) for info in backend.topics() if info.name == topic
        )
    finally:
        backend.close()


def _records(streams: Path, topic: str) -> list[SinkRecord]:
    backend = EmbeddedBackend(streams)
    backend.open()
    try:
        consumer = backend.consumer(f"check-{uuid.uuid4().hex}", topics=[topic])
        deserializer = RecordDeserializer(backend.registry())
        records: list[SinkRecord] = []
        while batch := consumer.poll(10_000, 1.0):
            records += deserializer.deserialize(batch)
        consumer.close()
        return records
    finally:
        backend.close()


def _wait_for(condition: Any, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _kill(process: subprocess.Popen[bytes]) -> None:
    os.kill(process.pid, signal.SIGKILL)
    process.wait()


def test_kill_9_while_streaming_then_rerun_gives_every_committed_change_once(
    db: MySqlDb, tmp_path: Path
) -> None:
    db.execute("CREATE TABLE orders (id INT PRIMARY KEY, qty INT NOT NULL)",
               "INSERT INTO orders VALUES (0, 0)")
    run_file = _run_file(tmp_path, db, "orders", batch_size=50)
    topic = f"crash.{db.name}.orders"
    streams = tmp_path / "streams.db"
    child = _start(run_file, tmp_path / "run.log")
    history: list[tuple[str, int, int | None]] = [("r", 0, 0)]
    try:
        _wait_for(lambda: _count(streams, topic) >= 1, 60, "the snapshot")

        def write() -> None:
            conn = db.connect()
            try:
                with conn.cursor() as cur:
                    for i in range(1, 601):
                        cur.execute("BEGIN")
                        cur.execute("INSERT INTO orders VALUES (%s, %s)", (i, i))
                        ops: list[tuple[str, int, int | None]] = [("c", i, i)]
                        if i % 3 == 0:
                            cur.execute("UPDATE orders SET qty = qty + 1 WHERE id = %s", (i - 1,))
                            ops.append(("u", i - 1, i))
                        if i % 5 == 0:
                            cur.execute("DELETE FROM orders WHERE id = %s", (i - 2,))
                            ops.append(("d", i - 2, None))
                        cur.execute("COMMIT")
                        history.extend(ops)
            finally:
                conn.close()

        writer = threading.Thread(target=write)
        writer.start()
        _wait_for(lambda: _count(streams, topic) >= 200, 120, "streamed changes")
        _kill(child)
        at_kill = _count(streams, topic)
        writer.join()
    finally:
        if child.poll() is None:
            _kill(child)
    _rerun_once(run_file)
    records = _records(streams, topic)
    assert at_kill < len(records), "the run was not killed while it streamed"
    stream = []
    for record in records:
        if record.value is None:
            continue
        value = record.value
        row = value["after"] or value["before"]
        stream.append((value["op"], row["id"], value["after"]["qty"] if value["after"] else None))
    assert stream == history


def test_kill_9_during_the_snapshot_then_rerun_reads_every_row_once_and_never_backwards(
    db: MySqlDb, tmp_path: Path
) -> None:
    rows = 40_000
    db.execute("CREATE TABLE counters (id INT PRIMARY KEY, version INT NOT NULL, "
               "pad VARCHAR(100) NOT NULL)")
    conn = db.connect()
    try:
        with conn.cursor() as cur:
            for start in range(1, rows + 1, 5000):
                cur.executemany(
                    "INSERT INTO counters VALUES (%s, 0, %s)",
                    [(i, "p" * 60) for i in range(start, min(start + 5000, rows + 1))],
                )
    finally:
        conn.close()
    run_file = _run_file(tmp_path, db, "counters", snapshot_chunk_size=200)
    topic = f"crash.{db.name}.counters"
    streams = tmp_path / "streams.db"
    child = _start(run_file, tmp_path / "run.log")
    try:
        _wait_for(lambda: _count(streams, topic) >= 2000, 120, "part of the snapshot")
        _kill(child)
    finally:
        if child.poll() is None:
            _kill(child)
    assert _count(streams, topic) < rows, "the snapshot finished before the kill"
    # Changes between the interrupted read and the resumed one, to rows on both sides.
    db.execute("UPDATE counters SET version = 1 WHERE id % 7 = 0",
               "UPDATE counters SET version = 2 WHERE id % 7 = 0")
    _rerun_once(run_file)
    reads: Counter[int] = Counter()
    versions: dict[int, list[int]] = {}
    for record in _records(streams, topic):
        assert record.value is not None and record.value["op"] in ("r", "u")
        after = record.value["after"]
        if record.value["op"] == "r":
            reads[after["id"]] += 1
        versions.setdefault(after["id"], []).append(after["version"])
    assert reads == Counter(range(1, rows + 1))
    final = dict(db.query("SELECT id, version FROM counters"))
    for key, seen in versions.items():
        assert seen == sorted(seen), f"row {key} went back in time: {seen}"
        assert seen[-1] == final[key]
