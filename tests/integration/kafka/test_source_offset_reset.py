"""``reset_source_offsets`` on Kafka: the offsets topic then reads as reset, in this process
and in a new one (tombstones forget the partitions left out)."""

from __future__ import annotations

import uuid

from liberate.config.models import KafkaSettings
from liberate.streams.base import SourceOffset
from liberate.streams.kafka import KafkaBackend


def test_a_reset_replaces_or_forgets_the_stored_offsets_of_one_source(
    backend: KafkaBackend, kafka_settings: KafkaSettings
) -> None:
    source, other = f"src-{uuid.uuid4().hex[:8]}", f"other-{uuid.uuid4().hex[:8]}"
    backend.append([], [SourceOffset(source, {"table": "a"}, {"n": 5}),
                        SourceOffset(source, {"table": "b"}, {"n": 7}),
                        SourceOffset(other, {"table": "a"}, {"n": 1})])

    backend.reset_source_offsets(source, {'{"table":"a"}': {"n": 2}})
    assert backend.source_offsets(source) == {'{"table":"a"}': {"n": 2}}

    fresh = KafkaBackend(kafka_settings)
    fresh.open()
    try:
        assert fresh.source_offsets(source) == {'{"table":"a"}': {"n": 2}}
        fresh.reset_source_offsets(source, None)
        assert fresh.source_offsets(source) == {}
    finally:
        fresh.close()
    assert backend.source_offsets(source) == {}
    assert backend.source_offsets(other) == {'{"table":"a"}': {"n": 1}}
