"""The embedded schema registry: ids, versions, compatibility, persistence, sharing a file."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from liberate.errors import ConfigError, FatalError, RetriableError, SchemaCompatibilityError
from liberate.records import StreamRecord
from liberate.schema import embedded_registry
from liberate.schema.avro import AvroSchema
from liberate.schema.embedded_registry import EmbeddedRegistry
from liberate.streams.base import SourceOffset
from liberate.streams.embedded import EmbeddedBackend


def row(*extra: dict[str, Any]) -> AvroSchema:
    fields = [{"name": "id", "type": "long"}, *extra]
    return AvroSchema({"type": "record", "name": "Value", "namespace": "shop", "fields": fields})


V1 = row()
V2 = row({"name": "note", "type": ["null", "string"], "default": None})
BREAKING = row({"name": "amount", "type": "int"})


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "streams.db"


@pytest.fixture
def registry(path: Path) -> Iterator[EmbeddedRegistry]:
    with EmbeddedRegistry(path) as opened:
        yield opened


def test_first_schema_gets_id_1_and_version_1(registry: EmbeddedRegistry) -> None:
    assert registry.register("shop.orders-value", V1) == 1
    (version,) = registry.versions("shop.orders-value")
    assert (version.subject, version.version, version.schema_id) == ("shop.orders-value", 1, 1)
    assert version.schema == V1


def test_registering_the_same_schema_again_adds_no_version(registry: EmbeddedRegistry) -> None:
    first = registry.register("s-value", V1)
    again = registry.register("s-value", AvroSchema(V1.canonical))
    assert again == first
    assert [v.version for v in registry.versions("s-value")] == [1]


def test_same_schema_text_keeps_one_global_id_across_subjects(registry: EmbeddedRegistry) -> None:
    first = registry.register("a-value", V1)
    second = registry.register("b-value", V1)
    assert first == second
    assert [v.version for v in registry.versions("b-value")] == [1]
    assert registry.subjects() == ["a-value", "b-value"]


def test_compatible_change_becomes_the_next_version_with_a_new_id(
    registry: EmbeddedRegistry,
) -> None:
    first = registry.register("s-value", V1)
    second = registry.register("s-value", V2)
    assert second != first
    assert [(v.version, v.schema_id) for v in registry.versions("s-value")] == [
        (1, first),
        (2, second),
    ]


def test_an_older_version_registered_again_returns_its_id(registry: EmbeddedRegistry) -> None:
    first = registry.register("s-value", V1)
    registry.register("s-value", V2)
    assert registry.register("s-value", V1) == first
    assert len(registry.versions("s-value")) == 2


def test_breaking_change_is_refused_naming_the_field_and_registers_nothing(
    registry: EmbeddedRegistry,
) -> None:
    registry.register("shop.orders-value", V1)
    with pytest.raises(SchemaCompatibilityError) as caught:
        registry.register("shop.orders-value", BREAKING)
    error = caught.value
    assert error.subject == "shop.orders-value"
    assert error.level == "BACKWARD"
    assert len(error.problems) == 1
    assert error.problems[0].startswith("field 'amount' (shop.Value): BACKWARD: ")
    assert "field 'amount'" in str(error)
    assert error.hint is not None and "streams.compatibility" in error.hint
    assert [v.version for v in registry.versions("shop.orders-value")] == [1]
    assert registry.subjects() == ["shop.orders-value"]


def test_compatibility_defaults_to_backward(registry: EmbeddedRegistry) -> None:
    assert registry.compatibility() == "BACKWARD"
    assert registry.compatibility("any-value") == "BACKWARD"


def test_subject_level_overrides_the_global_default(registry: EmbeddedRegistry) -> None:
    registry.set_compatibility("FULL")
    registry.set_compatibility("NONE", "loose-value")
    assert registry.compatibility() == "FULL"
    assert registry.compatibility("other-value") == "FULL"
    assert registry.compatibility("loose-value") == "NONE"
    registry.set_compatibility("FORWARD", "loose-value")
    assert registry.compatibility("loose-value") == "FORWARD"


def test_level_none_accepts_a_breaking_change(registry: EmbeddedRegistry) -> None:
    registry.register("s-value", V1)
    registry.set_compatibility("NONE", "s-value")
    registry.register("s-value", BREAKING)
    assert len(registry.versions("s-value")) == 2


def test_the_subject_level_decides_the_check(registry: EmbeddedRegistry) -> None:
    registry.register("s-value", V1)
    registry.set_compatibility("FORWARD", "s-value")
    # Adding a required field breaks BACKWARD only, so FORWARD takes it...
    registry.register("s-value", BREAKING)
    # ...and refuses dropping it again: readers of version 2 need `amount`.
    with pytest.raises(SchemaCompatibilityError) as caught:
        registry.register("s-value", V2)
    assert caught.value.level == "FORWARD"
    assert "field 'amount'" in caught.value.problems[0]


def test_a_version_already_registered_is_returned_without_a_check(
    registry: EmbeddedRegistry,
) -> None:
    first = registry.register("s-value", V1)
    registry.set_compatibility("FORWARD", "s-value")
    registry.register("s-value", BREAKING)
    assert registry.register("s-value", V1) == first


def test_unknown_level_is_a_config_error(registry: EmbeddedRegistry) -> None:
    with pytest.raises(ConfigError, match="unknown compatibility level"):
        registry.set_compatibility("SIDEWAYS")  # type: ignore[arg-type]


def test_check_reports_problems_without_registering(registry: EmbeddedRegistry) -> None:
    registry.register("s-value", V1)
    assert registry.check("s-value", V2) == []
    problems = registry.check("s-value", BREAKING)
    assert len(problems) == 1 and "'amount'" in problems[0]
    assert registry.check("s-value", V1) == []
    assert registry.check("new-value", BREAKING) == []
    assert [v.version for v in registry.versions("s-value")] == [1]


def test_schema_by_id_returns_the_registered_schema(registry: EmbeddedRegistry) -> None:
    schema_id = registry.register("s-value", V2)
    assert registry.schema_by_id(schema_id) == V2


def test_unknown_schema_id_is_fatal(registry: EmbeddedRegistry) -> None:
    with pytest.raises(FatalError, match="schema id 42 is not in the embedded registry"):
        registry.schema_by_id(42)


def test_unknown_subject_has_no_versions(registry: EmbeddedRegistry) -> None:
    assert registry.versions("nothing-value") == []
    assert registry.subjects() == []


def test_invalid_schema_is_refused_before_anything_is_stored(registry: EmbeddedRegistry) -> None:
    bad = AvroSchema({"type": "record", "name": "Bad", "fields": [{"name": "x", "type": "nope"}]})
    with pytest.raises(FatalError, match="invalid Avro schema"):
        registry.register("s-value", bad)
    assert registry.subjects() == []


def test_empty_subject_is_refused(registry: EmbeddedRegistry) -> None:
    with pytest.raises(FatalError, match="subject cannot be empty"):
        registry.register("", V1)


def test_everything_persists_across_reopening(path: Path) -> None:
    with EmbeddedRegistry(path) as first:
        id1 = first.register("s-value", V1)
        id2 = first.register("s-value", V2)
        first.set_compatibility("FULL_TRANSITIVE", "s-value")
        first.set_compatibility("FORWARD")
    with EmbeddedRegistry(path) as reopened:
        assert [(v.version, v.schema_id) for v in reopened.versions("s-value")] == [
            (1, id1),
            (2, id2),
        ]
        assert reopened.schema_by_id(id2) == V2
        assert reopened.compatibility("s-value") == "FULL_TRANSITIVE"
        assert reopened.compatibility() == "FORWARD"
        assert reopened.register("s-value", V2) == id2
        assert reopened.register("t-value", V1) == id1


def test_a_second_instance_sees_what_the_first_registered(path: Path) -> None:
    with EmbeddedRegistry(path) as one, EmbeddedRegistry(path) as other:
        schema_id = one.register("s-value", V1)
        assert other.schema_by_id(schema_id) == V1
        assert other.register("s-value", V1) == schema_id
        assert [v.version for v in other.versions("s-value")] == [1]


def test_compatibility_is_checked_against_versions_another_instance_added(path: Path) -> None:
    with EmbeddedRegistry(path) as one, EmbeddedRegistry(path) as other:
        one.register("s-value", V1)
        with_amount = row({"name": "amount", "type": "long", "default": 0})
        other.register("s-value", with_amount)
        # Fine after V1, but `one` must check it against the other instance's version 2.
        narrowed = row({"name": "amount", "type": "int", "default": 0})
        with pytest.raises(SchemaCompatibilityError, match="reader type int cannot read"):
            one.register("s-value", narrowed)


def test_ids_stay_unique_when_two_instances_register_different_schemas(path: Path) -> None:
    with EmbeddedRegistry(path) as one, EmbeddedRegistry(path) as other:
        id1 = one.register("a-value", V1)
        id2 = other.register("b-value", V2)
        id3 = one.register("c-value", BREAKING)
    assert len({id1, id2, id3}) == 3


def test_concurrent_registrations_of_one_schema_make_one_version(path: Path) -> None:
    registries = [EmbeddedRegistry(path) for _ in range(4)]
    ids: list[int] = []
    errors: list[BaseException] = []

    def register(registry: EmbeddedRegistry) -> None:
        try:
            ids.append(registry.register("s-value", V2))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=register, args=(r,)) for r in registries for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for registry in registries:
        registry.close()
    assert errors == []
    assert len(set(ids)) == 1
    with EmbeddedRegistry(path) as check:
        assert len(check.versions("s-value")) == 1


def test_registered_ids_are_served_from_memory(registry: EmbeddedRegistry) -> None:
    schema_id = registry.register("s-value", V1)
    registry.close()
    # The hot path of every batch: no database round trip once a schema is known.
    assert registry.register("s-value", V1) == schema_id
    assert registry.schema_by_id(schema_id) == V1


def test_closed_registry_refuses_new_work(registry: EmbeddedRegistry) -> None:
    registry.close()
    registry.close()
    with pytest.raises(FatalError, match="is closed"):
        registry.register("s-value", V1)


def test_registry_uses_wal_and_its_own_prefixed_tables(path: Path) -> None:
    EmbeddedRegistry(path).close()
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    finally:
        conn.close()
    assert names == {"registry_schemas", "registry_versions", "registry_compatibility"}


def test_a_file_that_is_not_sqlite_is_reported(path: Path) -> None:
    path.write_bytes(b"this is not a database file at all" * 100)
    with pytest.raises(FatalError, match="not an SQLite database"):
        EmbeddedRegistry(path)


def test_registry_shares_the_file_with_the_embedded_stream_backend(path: Path) -> None:
    backend = EmbeddedBackend(path, synchronous="NORMAL")
    backend.open()
    try:
        backend.ensure_topic("shop.orders")
        registry = backend.registry()
        schema_id = registry.register("shop.orders-value", V1)
        backend.append(
            [StreamRecord("shop.orders", None, b"\x00" + schema_id.to_bytes(4, "big"))],
            [SourceOffset("src", {"table": "orders"}, {"id": 1})],
        )
        with EmbeddedRegistry(path) as other:
            assert other.schema_by_id(schema_id) == V1
        assert [t.name for t in backend.topics()] == ["shop.orders"]
    finally:
        backend.close()


def test_a_write_lock_held_too_long_by_another_process_is_retriable(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(embedded_registry, "BUSY_TIMEOUT_S", 0.1)
    with EmbeddedRegistry(path) as registry:
        other = sqlite3.connect(path, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")
            with pytest.raises(RetriableError, match="locked by another writer"):
                registry.register("s-value", V1)
            other.execute("ROLLBACK")
        finally:
            other.close()
        assert registry.register("s-value", V1) == 1
