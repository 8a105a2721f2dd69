"""Running ``liberate`` on a bad-input case as a user does, and reading what came out."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from liberate.config.loader import load_run_file
from liberate.records import SinkRecord
from liberate.runtime import open_backend
from liberate.serde import RecordDeserializer

REPO = Path(__file__).resolve().parents[2]


def write_run_file(directory: Path, sources: list[dict[str, Any]],
                   sinks: list[dict[str, Any]] | None = None,
                   streams: dict[str, Any] | None = None) -> Path:
    path = directory / "run.yaml"
    path.write_text(yaml.safe_dump({
        "streams": streams or {"path": str(directory / "streams.db")},
        "sources": sources,
        "sinks": sinks or [],
    }))
    return path


def liberate(*args: str, timeout_s: float = 180.0) -> subprocess.CompletedProcess[str]:
    """``python -m liberate ARGS`` to the end; stdout and stderr captured."""
    return subprocess.run(
        [sys.executable, "-m", "liberate", *args], cwd=REPO, capture_output=True, text=True,
        timeout=timeout_s, check=False, env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def topic_records(run_file: Path, topic: str) -> list[SinkRecord]:
    """Every record of ``topic`` in the run's stream, decoded, in order."""
    backend = open_backend(load_run_file(str(run_file)).streams)
    try:
        if topic not in {t.name for t in backend.topics()}:
            return []
        consumer = backend.consumer("bad-input-reader", topics=[topic])
        deserializer = RecordDeserializer(backend.registry())
        records: list[SinkRecord] = []
        try:
            while batch := consumer.poll(10_000, 0.2):
                records.extend(deserializer.deserialize(batch))
        finally:
            consumer.close()
        return records
    finally:
        backend.close()
