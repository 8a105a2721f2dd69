"""Fixtures of the Kafka lane: settings with names unique to each test, and the smoke-lane
selection (a test class with ``smoke_tests`` runs only those of its inherited tests)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from liberate.config.models import KafkaSettings
from liberate.streams.kafka import KafkaBackend
from tests.kafka_broker import KafkaBroker


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    kept: list[pytest.Item] = []
    dropped: list[pytest.Item] = []
    for item in items:
        wanted = getattr(getattr(item, "cls", None), "smoke_tests", None)
        name = getattr(item, "originalname", item.name)
        (dropped if wanted is not None and name not in wanted else kept).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept


def unique_settings(bootstrap: str, **extra: object) -> KafkaSettings:
    """Kafka settings whose offsets topic and transactional ids no other test shares."""
    tag = uuid.uuid4().hex[:10]
    values: dict[str, object] = {
        "bootstrap_servers": bootstrap,
        "offsets_topic": f"liberate-offsets-{tag}",
        "transactional_id_prefix": f"lt-{tag}",
    }
    values.update(extra)
    return KafkaSettings.model_validate(values)


@pytest.fixture
def kafka_settings(kafka_broker: KafkaBroker) -> KafkaSettings:
    """Settings for the session broker, unique to this test."""
    return unique_settings(kafka_broker.bootstrap)


@pytest.fixture
def backend(kafka_settings: KafkaSettings) -> Iterator[KafkaBackend]:
    """An open backend on ``kafka_settings``."""
    backend = KafkaBackend(kafka_settings)
    backend.open()
    try:
        yield backend
    finally:
        backend.close()


@pytest.fixture
def topic() -> str:
    """A topic name no other test uses."""
    return f"kafka.{uuid.uuid4().hex[:12]}"
