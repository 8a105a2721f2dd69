"""``liberate run --metrics-port N`` serves Prometheus metrics; ``--log-format json`` logs JSON
lines; neither shows a credential."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from sqlalchemy.engine import make_url

from tests.e2e.conftest import write

PASSWORD = "metrics-test-pw-8d1f"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        return str(response.read().decode())


def _value(metrics: str, name: str, **labels: str) -> float | None:
    """The value of the sample ``name{labels...}`` (labels in any order), or None."""
    for line in metrics.splitlines():
        match = re.match(r"^([a-z_]+)(?:\{(.*)\})? (\S+)$", line)
        if not match or match.group(1) != name:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', match.group(2) or ""))
        if all(found.get(k) == v for k, v in labels.items()):
            return float(match.group(3))
    return None


def test_a_running_pipeline_serves_metrics_that_move_and_logs_json_without_secrets(
    tmp_path: Path, postgres_url: str
) -> None:
    shop = tmp_path / "shop.db"
    with sqlite3.connect(shop) as conn:
        conn.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, label TEXT NOT NULL)")
        conn.executemany("INSERT INTO orders VALUES (?, ?)", [(i, f"o{i}") for i in range(50)])
    target = make_url(postgres_url)
    password_line = "" if target.password else "    password: ${METRICS_TEST_PW}"
    run = write(tmp_path / "run.yaml", [
        f"streams: {{path: {tmp_path / 'streams.db'}}}",
        "sources:",
        f"  - {{name: shop, connector: query, database: 'sqlite:///{shop}', tables: [orders],",
        "      mode: bulk, schedule: 300ms}",
        "sinks:",
        "  - name: warehouse",
        "    connector: sql",
        f"    database: '{postgres_url}'",
        *([password_line] if password_line else []),
        "    topics: [shop.orders]",
        "    mode: upsert",
        "    auto_create: true",
    ])
    port = _free_port()
    env = {**os.environ, "METRICS_TEST_PW": PASSWORD}
    process = subprocess.Popen(
        [sys.executable, "-m", "liberate", "-v", "--log-format", "json", "run", str(run),
         "--metrics-port", str(port)],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + 60
        metrics = ""
        while time.monotonic() < deadline:
            try:
                metrics = _scrape(port)
            except OSError:
                metrics = ""
            written = _value(metrics, "liberate_sink_records_written_total", sink="warehouse")
            sink_lag = _value(metrics, "liberate_sink_lag_records", sink="warehouse",
                              topic="shop.orders")
            # Two bulk cycles reached the target, and a lag sample saw the topic.
            if written is not None and written >= 100 and sink_lag is not None:
                break
            assert process.poll() is None, process.communicate()[1]
            time.sleep(0.2)
        else:
            raise AssertionError(f"the counters did not move:\n{metrics}")
        events = _value(metrics, "liberate_source_events_total", source="shop", op="r")
        assert events is not None and events >= 100
        batches = _value(metrics, "liberate_source_batch_seconds_count", source="shop")
        assert batches is not None and batches >= 2
        writes = _value(metrics, "liberate_sink_write_seconds_count", sink="warehouse")
        assert writes is not None and writes >= 1
        assert _value(metrics, "liberate_source_lag", source="shop",
                      measure="rows_behind") is not None
        assert _value(metrics, "liberate_connector_errors_total", connector="shop") is None
    finally:
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert lines, "no log lines at -v"
    entries = [json.loads(line) for line in lines]  # every line is one JSON object
    assert any("serving Prometheus metrics" in e["message"] for e in entries)
    assert PASSWORD not in stderr


def test_with_json_logs_the_error_that_ends_a_command_is_a_json_line_too(
    tmp_path: Path,
) -> None:
    run = write(tmp_path / "run.yaml", [
        "sources:",
        "  - {name: a, connector: query, database: 'postgresql://u:json-err-pw@127.0.0.1:1/x',",
        "     tables: [t], schedule: 'every tuesday'}",
    ])
    result = subprocess.run(
        [sys.executable, "-m", "liberate", "--log-format", "json", "run", str(run)],
        cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 2
    [line] = result.stderr.splitlines()
    entry = json.loads(line)
    assert entry["level"] == "error" and "every tuesday" in entry["message"]
    assert "json-err-pw" not in result.stderr
