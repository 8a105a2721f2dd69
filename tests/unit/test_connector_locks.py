"""The advisory locks of `liberate run` (shared, many runs) and of `offsets reset` (exclusive)."""

from __future__ import annotations

from pathlib import Path

import pytest

from liberate.config.models import StreamsConfig
from liberate.errors import FatalError
from liberate.runtime import locks


def test_a_reset_is_refused_while_a_run_holds_the_connector_and_allowed_after(
    tmp_path: Path,
) -> None:
    streams = StreamsConfig(path=tmp_path / "streams.db")
    with locks.running(streams, [("source", "shop"), ("sink", "warehouse")]):
        with locks.running(streams, [("sink", "warehouse")]):  # a second run may share it
            pass
        with (pytest.raises(FatalError, match="sink warehouse is running"),
              locks.stopped(streams, "sink", "warehouse")):
            pass
        with locks.stopped(streams, "sink", "shop"):  # a sink named like a running source
            pass
    with locks.stopped(streams, "sink", "warehouse"):
        pass
    assert (tmp_path / "streams.db.locks" / "sink.warehouse.lock").exists()
