"""The Kafka backend passes the stream backend conformance suite on noida-db (the main broker,
or the cluster of LIBERATE_TEST_KAFKA_BOOTSTRAP)."""

from __future__ import annotations

import functools

import pytest

from liberate.config.models import KafkaSettings
from liberate.streams.kafka import KafkaBackend
from tests.conformance.backend import BackendConformance, BackendFactory


class TestKafkaBackendConformance(BackendConformance):
    # Transaction markers take offsets; a consumer group join takes a moment.
    contiguous_offsets = False
    poll_timeout_s = 10.0
    quiet_s = 0.5

    @pytest.fixture
    def backend_factory(self, kafka_settings: KafkaSettings) -> BackendFactory:
        return functools.partial(KafkaBackend, kafka_settings)
