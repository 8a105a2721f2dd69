"""Fixtures of the crash suite: the stream backend of each case, and the printed figures."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.crash._harness import KILLS, RESULTS, StreamsSpec


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in item.path.parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(params=["embedded", "kafka"])
def streams(request: pytest.FixtureRequest, tmp_path: Path) -> StreamsSpec:
    """The embedded backend, then the session's Kafka broker (transactional) and registry."""
    if request.param == "embedded":
        return StreamsSpec("embedded", tmp_path)
    broker = request.getfixturevalue("kafka_broker")
    registry: str = request.getfixturevalue("schema_registry_url")
    return StreamsSpec("kafka", tmp_path, bootstrap=broker.bootstrap, registry=registry)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if RESULTS:
        terminalreporter.section(f"crash suite ({KILLS} kills per case)")
        for line in RESULTS:
            terminalreporter.write_line(line)
