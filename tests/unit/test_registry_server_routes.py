"""The Confluent REST API of ``liberate registry serve``, request by request, without sockets:
status codes and Confluent error bodies as confluent_kafka's client expects them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from liberate.schema._registry_routes import Answer, RegistryApi
from liberate.schema.embedded_registry import EmbeddedRegistry


def record(*fields: dict[str, Any], name: str = "Order") -> str:
    return json.dumps({"type": "record", "name": name, "namespace": "shop", "fields": list(fields)})


V1 = record({"name": "id", "type": "long"})
V2_COMPATIBLE = record(
    {"name": "id", "type": "long"}, {"name": "note", "type": ["null", "string"], "default": None}
)
V2_BREAKING = record({"name": "id", "type": "long"}, {"name": "amount", "type": "double"})


@pytest.fixture
def api(tmp_path: Path) -> Iterator[RegistryApi]:
    registry = EmbeddedRegistry(tmp_path / "registry.db")
    try:
        yield RegistryApi(registry)
    finally:
        registry.close()


def call(api: RegistryApi, method: str, path: str, body: Any = None, **query: str) -> Answer:
    raw = json.dumps(body).encode() if body is not None else b""
    return api.handle(method, path, {k: [v] for k, v in query.items()}, raw)


def register(api: RegistryApi, subject: str, schema: str) -> int:
    answer = call(api, "POST", f"/subjects/{subject}/versions", {"schema": schema})
    assert answer.status == 200, answer.body
    return int(answer.body["id"])


def test_registering_returns_one_id_per_schema_and_versions_count_from_one(
    api: RegistryApi,
) -> None:
    first = register(api, "orders-value", V1)
    again = register(api, "orders-value", V1)
    other_subject = register(api, "archive-value", V1)
    second = register(api, "orders-value", V2_COMPATIBLE)

    assert first == again == other_subject
    assert second != first
    assert call(api, "GET", "/subjects").body == ["archive-value", "orders-value"]
    assert call(api, "GET", "/subjects/orders-value/versions").body == [1, 2]
    latest = call(api, "GET", "/subjects/orders-value/versions/latest").body
    assert latest["version"] == 2 and latest["id"] == second
    assert json.loads(latest["schema"]) == json.loads(V2_COMPATIBLE)
    assert call(api, "GET", "/subjects/orders-value/versions/1").body["id"] == first


def test_schemas_by_id_answer_the_schema_its_subjects_and_versions(api: RegistryApi) -> None:
    schema_id = register(api, "orders-value", V1)
    register(api, "archive-value", V1)

    assert json.loads(call(api, "GET", f"/schemas/ids/{schema_id}").body["schema"]) == json.loads(
        V1
    )
    assert call(api, "GET", f"/schemas/ids/{schema_id}/schema").body == json.loads(V1)
    assert call(api, "GET", f"/schemas/ids/{schema_id}/subjects").body == [
        "archive-value",
        "orders-value",
    ]
    assert sorted(
        (v["subject"], v["version"])
        for v in call(api, "GET", f"/schemas/ids/{schema_id}/versions").body
    ) == [("archive-value", 1), ("orders-value", 1)]
    assert call(api, "GET", "/schemas/types").body == ["AVRO"]


def test_lookup_finds_a_registered_schema_and_says_which_part_is_missing(api: RegistryApi) -> None:
    schema_id = register(api, "orders-value", V1)

    found = call(api, "POST", "/subjects/orders-value", {"schema": V1})
    unknown_subject = call(api, "POST", "/subjects/nobody-value", {"schema": V1})
    unknown_schema = call(api, "POST", "/subjects/orders-value", {"schema": V2_COMPATIBLE})

    assert (found.status, found.body["id"], found.body["version"]) == (200, schema_id, 1)
    assert (unknown_subject.status, unknown_subject.body["error_code"]) == (404, 40401)
    assert (unknown_schema.status, unknown_schema.body["error_code"]) == (404, 40403)


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "code"),
    [
        ("GET", "/subjects/nobody-value/versions", None, 404, 40401),
        ("GET", "/subjects/orders-value/versions/7", None, 404, 40402),
        ("GET", "/subjects/orders-value/versions/zero", None, 422, 42202),
        ("GET", "/schemas/ids/999", None, 404, 40403),
        ("POST", "/subjects/orders-value/versions", {"schema": "{not json"}, 422, 42201),
        ("POST", "/subjects/orders-value/versions", {"schema": '{"type": "nope"}'}, 422, 42201),
        (
            "POST",
            "/subjects/orders-value/versions",
            {"schema": "{}", "schemaType": "PROTOBUF"},
            422,
            42201,
        ),
        ("PUT", "/config", {"compatibility": "SOMETIMES"}, 422, 42203),
        ("DELETE", "/subjects/orders-value", None, 405, 405),
        ("GET", "/no/such/path", None, 404, 404),
    ],
)
def test_errors_carry_confluent_status_and_error_codes(
    api: RegistryApi, method: str, path: str, body: Any, status: int, code: int
) -> None:
    register(api, "orders-value", V1)

    answer = call(api, method, path, body)

    assert (answer.status, answer.body["error_code"]) == (status, code)
    assert answer.body["message"]


def test_a_malformed_body_is_a_400_not_a_crash(api: RegistryApi) -> None:
    answer = api.handle("POST", "/subjects/x/versions", {}, b"{oops")

    assert (answer.status, answer.body["error_code"]) == (400, 400)


def test_an_incompatible_schema_is_refused_with_409_and_nothing_registered(
    api: RegistryApi,
) -> None:
    register(api, "orders-value", V1)

    answer = call(api, "POST", "/subjects/orders-value/versions", {"schema": V2_BREAKING})

    assert (answer.status, answer.body["error_code"]) == (409, 409)
    assert "amount" in answer.body["message"]
    assert call(api, "GET", "/subjects/orders-value/versions").body == [1]


def test_compatibility_checks_answer_the_problems_only_when_verbose(api: RegistryApi) -> None:
    register(api, "orders-value", V1)
    path = "/compatibility/subjects/orders-value/versions/latest"

    quiet = call(api, "POST", path, {"schema": V2_BREAKING})
    verbose = call(api, "POST", path, {"schema": V2_BREAKING}, verbose="true")
    fine = call(api, "POST", path, {"schema": V2_COMPATIBLE}, verbose="true")
    against_all = call(
        api, "POST", "/compatibility/subjects/orders-value/versions", {"schema": V2_BREAKING}
    )

    assert quiet.body == {"is_compatible": False}
    assert verbose.body["is_compatible"] is False
    assert any("amount" in m and "BACKWARD" in m for m in verbose.body["messages"])
    assert fine.body == {"is_compatible": True, "messages": []}
    assert against_all.body["is_compatible"] is False


def test_compatibility_levels_are_set_globally_and_per_subject(api: RegistryApi) -> None:
    register(api, "orders-value", V1)

    assert call(api, "GET", "/config").body == {"compatibilityLevel": "BACKWARD"}
    assert call(api, "PUT", "/config", {"compatibility": "full"}).body == {"compatibility": "FULL"}
    put = call(api, "PUT", "/config/orders-value", {"compatibility": "NONE"})

    assert put.body == {"compatibility": "NONE"}
    assert call(api, "GET", "/config/orders-value").body == {"compatibilityLevel": "NONE"}
    assert call(api, "GET", "/config/other-value").body == {"compatibilityLevel": "FULL"}
    # NONE on the subject lets the breaking version in.
    assert register(api, "orders-value", V2_BREAKING) > 0


def test_mode_is_read_write(api: RegistryApi) -> None:
    assert call(api, "GET", "/mode").body == {"mode": "READWRITE"}
    assert call(api, "GET", "/mode/orders-value").body == {"mode": "READWRITE"}


def test_subject_names_are_url_decoded(api: RegistryApi) -> None:
    register(api, "shop%2Forders-value", V1)

    assert call(api, "GET", "/subjects").body == ["shop/orders-value"]
