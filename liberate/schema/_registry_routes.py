"""The Confluent Schema Registry REST API over an ``EmbeddedRegistry``: requests in, answers
out, no sockets (``registry_server`` does the HTTP).

The subset producers, consumers and tooling use: subjects and their versions, lookups,
schemas by id, compatibility checks (``verbose=true`` returns the problems), the global and
per-subject compatibility level, and the mode. Errors carry Confluent's bodies
(``{"error_code": 40401, "message": ...}``) and status codes, which is what
``confluent_kafka.schema_registry`` turns into ``SchemaRegistryError``. Avro only; ids and
versions are permanent, so deletes are refused.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from liberate.errors import FatalError, SchemaCompatibilityError
from liberate.schema.avro import AvroSchema
from liberate.schema.compatibility import check_compatibility
from liberate.schema.embedded_registry import EmbeddedRegistry
from liberate.schema.registry import COMPATIBILITY_LEVELS, CompatibilityLevel, RegisteredSchema

log = logging.getLogger("liberate.registry")

Query = Mapping[str, Sequence[str]]


@dataclass(frozen=True, slots=True)
class Answer:
    """An HTTP answer: status and a JSON-serializable body."""

    status: int
    body: Any


class ApiError(Exception):
    """A Confluent error answer (status and error code) raised by a route."""

    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def answer(self) -> Answer:
        return Answer(self.status, {"error_code": self.code, "message": self.message})


def _subject_not_found(subject: str) -> ApiError:
    return ApiError(404, 40401, f"Subject '{subject}' not found.")


def _version_not_found(subject: str, version: str) -> ApiError:
    return ApiError(404, 40402, f"Version {version} not found for subject '{subject}'.")


def _schema_not_found(what: str = "Schema not found") -> ApiError:
    return ApiError(404, 40403, what)


def _invalid_schema(reason: str) -> ApiError:
    return ApiError(422, 42201, f"Invalid schema: {reason}")


Route = Callable[["RegistryApi", tuple[str, ...], Query, Any], Answer]
_SEGMENT = r"([^/]+)"


class RegistryApi:
    """Answers Confluent REST requests from ``registry``. Thread-safe as the registry is."""

    def __init__(self, registry: EmbeddedRegistry) -> None:
        self.registry = registry

    def handle(self, method: str, path: str, query: Query, body: bytes) -> Answer:
        """The answer to one request; never raises."""
        try:
            route, params = self._route(method, path)
            parsed = _json_body(body) if method in ("POST", "PUT") else None
            return route(self, tuple(unquote(p) for p in params), query, parsed)
        except ApiError as exc:
            return exc.answer()
        except Exception:
            log.exception("registry request %s %s failed", method, path)
            return ApiError(500, 50001, "Error in the backend data store").answer()

    def _route(self, method: str, path: str) -> tuple[Route, tuple[str, ...]]:
        clean = "/" + path.strip("/")
        allowed = False
        for route_method, pattern, route in _ROUTES:
            match = pattern.fullmatch(clean)
            if match is None:
                continue
            if route_method == method:
                return route, match.groups()
            allowed = True
        if allowed:
            raise ApiError(405, 405, "HTTP 405 Method Not Allowed")
        raise ApiError(404, 404, "HTTP 404 Not Found")

    # -- helpers -----------------------------------------------------------------------------

    def versions_of(self, subject: str) -> list[RegisteredSchema]:
        versions = self.registry.versions(subject)
        if not versions:
            raise _subject_not_found(subject)
        return versions

    def version_of(self, subject: str, version: str) -> RegisteredSchema:
        versions = self.versions_of(subject)
        if version in ("latest", "-1"):
            return versions[-1]
        if not re.fullmatch(r"[0-9]+", version) or int(version) < 1:
            raise ApiError(
                422,
                42202,
                f"The specified version '{version}' is not a valid version id. Allowed values"
                ' are between [1, 2^31-1] and the string "latest"',
            )
        for registered in versions:
            if registered.version == int(version):
                return registered
        raise _version_not_found(subject, version)

    def schema_by_id(self, raw: str) -> tuple[int, AvroSchema]:
        if not re.fullmatch(r"[0-9]+", raw):
            raise _schema_not_found(f"Schema {raw} not found")
        schema_id = int(raw)
        try:
            return schema_id, self.registry.schema_by_id(schema_id)
        except FatalError as exc:
            raise _schema_not_found(f"Schema {schema_id} not found") from exc

    def usages(self, schema_id: int) -> list[RegisteredSchema]:
        return [
            registered
            for subject in self.registry.subjects()
            for registered in self.registry.versions(subject)
            if registered.schema_id == schema_id
        ]


def _json_body(body: bytes) -> Any:
    if not body:
        return {}
    try:
        return json.loads(body)
    except ValueError as exc:
        raise ApiError(400, 400, f"Unrecognized request body: {exc}") from exc


def _candidate(body: Any) -> AvroSchema:
    """The Avro schema of a registration, lookup or compatibility request body."""
    if not isinstance(body, dict) or not isinstance(body.get("schema"), str):
        raise _invalid_schema('the request body needs a "schema" string')
    kind = body.get("schemaType") or "AVRO"
    if kind != "AVRO":
        raise _invalid_schema(
            f"schema type {kind} is not supported: liberate's registry is Avro only"
        )
    if body.get("references"):
        raise _invalid_schema("schema references are not supported by liberate's registry")
    try:
        schema = AvroSchema(body["schema"])
        _ = schema.parsed
    except (ValueError, FatalError) as exc:
        raise _invalid_schema(str(exc)) from exc
    return schema


def _described(registered: RegisteredSchema) -> dict[str, Any]:
    return {
        "subject": registered.subject,
        "version": registered.version,
        "id": registered.schema_id,
        "schema": registered.schema.canonical,
    }


def _level_of(body: Any) -> CompatibilityLevel:
    value = body.get("compatibility") if isinstance(body, dict) else None
    text = str(value).upper() if value is not None else ""
    for level in COMPATIBILITY_LEVELS:
        if level == text:
            return level
    raise ApiError(
        422,
        42203,
        "Invalid compatibility level. Valid values are none, backward, forward, full,"
        " backward_transitive, forward_transitive, and full_transitive",
    )


def _verbose(query: Query) -> bool:
    return any(v.lower() == "true" for v in query.get("verbose", ()))


# -- routes ------------------------------------------------------------------------------------


def _root(api: RegistryApi, params: tuple[str, ...], query: Query, body: Any) -> Answer:
    return Answer(200, {})


def _subjects(api: RegistryApi, params: tuple[str, ...], query: Query, body: Any) -> Answer:
    prefix = next(iter(query.get("subjectPrefix", ())), "")
    return Answer(200, [s for s in api.registry.subjects() if s.startswith(prefix)])


def _versions(api: RegistryApi, params: tuple[str, ...], query: Query, body: Any) -> Answer:
    return Answer(200, [v.version for v in api.versions_of(params[0])])


def _register(api: RegistryApi, params: tuple[str, ...], query: Query, body: Any) -> Answer:
    subject = params[0]
    schema = _candidate(body)
    try:
        return Answer(200, {"id": api.registry.register(subject, schema)})
    except SchemaCompatibilityError as exc:
        details = "; ".join(exc.problems)
        raise ApiError(
            409,
            409,
            f"Schema being registered is incompatible with an earlier schema for subject"
            f' "{subject}", details: [{details}]',
        ) from exc


def _version(api: RegistryApi, params: tuple[str, ...], query: Query, body: Any) -> Answer:
    return Answer(200, _described(api.version_of(params[0], params[1])))


def _version_schema(api: RegistryApi, params: tuple[str, ...], query: Query, body: Any) -> Answer:
    return Answer(200, api.version_of(params[0], params[1]).schema.schema)


def _referenced_by(api: RegistryApi, params: tuple[str, ...], query: Query, body: Any) -> Answer:
    api.version_of(params[0], params[1])
    return Answer(200, [])


def _lookup(api: RegistryApi, params: tuple[str, ...], query: Query, body: Any) -> Answer:
    subject = params[0]
    schema = _candidate(body)
    for registered in api.versions_of(subject):
        if registered.schema.fingerprint == schema.fingerprint:
            return Answer(200, _described(registered))
    raise _schema_not_found()


def _schema(api: RegistryApi, params: tuple[str, ...], query: Query, body: Any) -> Answer:
    _, schema = api.schema_by_id(params[0])
    return Answer(200, {"schema": schema.canonical})


def _schema_text(api: RegistryApi, params: tuple[str, ...], query: Query, body: Any) -> Answer:
    _, schema = api.schema_by_id(params[0])
    return Answer(200, schema.schema)


def _schema_subjects(api: RegistryApi, params: tuple[str, ...], query: Query, body: Any) -> Answer:
    schema_id, _ = api.schema_by_id(params[0])
    return Answer(200, sorted({r.subject for r in api.usages(schema_id)}))


def _schema_versions(api: RegistryApi, params: tuple[str, ...], query: Query, body: Any) -> Answer:
    schema_id, _ = api.schema_by_id(params[0])
    return Answer(
        200, [{"subject": r.subject, "version": r.version} for r in api.usages(schema_id)]
    )


def _schema_types(api: RegistryApi, params: tuple[str, ...], query: Query, body: Any) -> Answer:
    return Answer(200, ["AVRO"])


def _compatible_with_version(
    api: RegistryApi, params: tuple[str, ...], query: Query, body: Any
) -> Answer:
    subject = params[0]
    schema = _candidate(body)
    against = api.version_of(subject, params[1])
    level = api.registry.compatibility(subject)
    # Against one version a transitive level is its plain form (and names no version).
    problems = check_compatibility(schema, [against.schema], _plain(level))
    return _compatibility_answer(problems, query)


def _compatible_with_all(
    api: RegistryApi, params: tuple[str, ...], query: Query, body: Any
) -> Answer:
    subject = params[0]
    schema = _candidate(body)
    api.versions_of(subject)
    return _compatibility_answer(api.registry.check(subject, schema), query)


def _compatibility_answer(problems: list[str], query: Query) -> Answer:
    answer: dict[str, Any] = {"is_compatible": not problems}
    if _verbose(query):
        answer["messages"] = problems
    return Answer(200, answer)


def _plain(level: CompatibilityLevel) -> CompatibilityLevel:
    for candidate in COMPATIBILITY_LEVELS:
        if candidate == level.removesuffix("_TRANSITIVE"):
            return candidate
    return level


def _global_config(api: RegistryApi, params: tuple[str, ...], query: Query, body: Any) -> Answer:
    return Answer(200, {"compatibilityLevel": api.registry.compatibility()})


def _set_global_config(
    api: RegistryApi, params: tuple[str, ...], query: Query, body: Any
) -> Answer:
    level = _level_of(body)
    api.registry.set_compatibility(level)
    return Answer(200, {"compatibility": level})


def _subject_config(api: RegistryApi, params: tuple[str, ...], query: Query, body: Any) -> Answer:
    # The effective level (its own, else the global one), as with defaultToGlobal=true.
    return Answer(200, {"compatibilityLevel": api.registry.compatibility(params[0])})


def _set_subject_config(
    api: RegistryApi, params: tuple[str, ...], query: Query, body: Any
) -> Answer:
    level = _level_of(body)
    api.registry.set_compatibility(level, params[0])
    return Answer(200, {"compatibility": level})


def _mode(api: RegistryApi, params: tuple[str, ...], query: Query, body: Any) -> Answer:
    return Answer(200, {"mode": "READWRITE"})


def _refused_delete(api: RegistryApi, params: tuple[str, ...], query: Query, body: Any) -> Answer:
    raise ApiError(
        405, 405, "liberate's registry keeps every schema: ids and versions are never deleted"
    )


def _compile(template: str) -> re.Pattern[str]:
    return re.compile(template.replace("{}", _SEGMENT))


_ROUTES: list[tuple[str, re.Pattern[str], Route]] = [
    ("GET", _compile("/"), _root),
    ("GET", _compile("/subjects"), _subjects),
    ("GET", _compile("/subjects/{}/versions"), _versions),
    ("POST", _compile("/subjects/{}/versions"), _register),
    ("GET", _compile("/subjects/{}/versions/{}"), _version),
    ("GET", _compile("/subjects/{}/versions/{}/schema"), _version_schema),
    ("GET", _compile("/subjects/{}/versions/{}/referencedby"), _referenced_by),
    ("POST", _compile("/subjects/{}"), _lookup),
    ("DELETE", _compile("/subjects/{}"), _refused_delete),
    ("DELETE", _compile("/subjects/{}/versions/{}"), _refused_delete),
    ("GET", _compile("/schemas/types"), _schema_types),
    ("GET", _compile("/schemas/ids/{}"), _schema),
    ("GET", _compile("/schemas/ids/{}/schema"), _schema_text),
    ("GET", _compile("/schemas/ids/{}/subjects"), _schema_subjects),
    ("GET", _compile("/schemas/ids/{}/versions"), _schema_versions),
    ("POST", _compile("/compatibility/subjects/{}/versions/{}"), _compatible_with_version),
    ("POST", _compile("/compatibility/subjects/{}/versions"), _compatible_with_all),
    ("GET", _compile("/config"), _global_config),
    ("PUT", _compile("/config"), _set_global_config),
    ("GET", _compile("/config/{}"), _subject_config),
    ("PUT", _compile("/config/{}"), _set_subject_config),
    ("GET", _compile("/mode"), _mode),
    ("GET", _compile("/mode/{}"), _mode),
]
