"""A ``SchemaRegistry`` over any Confluent-compatible registry, through confluent-kafka's
``SchemaRegistryClient`` (Confluent, Karapace, Apicurio, Redpanda, ``liberate registry serve``).

A new version is checked first with the registry's own compatibility endpoint
(``verbose=true``), so a breaking schema change stops with the registry's messages, and the
registry refuses it again on registration if it slipped through. The run file's
compatibility level applies to the subjects liberate creates (set per subject when it
registers the first version), and ``streams.compatibility_per_subject`` sets the level of the
subjects it names (on the registry, when liberate first registers under them); the registry's
global setting is left alone, because a registry is often shared.

Ids are cached both ways, so registering the schema of a table again, or decoding a record
of a known id, costs no request. Transport failures are retriable; refusals are fatal.
"""

from __future__ import annotations

import threading
from typing import Any, NoReturn
from urllib.parse import quote, urlsplit, urlunsplit

from liberate.config.models import SchemaRegistrySettings
from liberate.database import read_password_file
from liberate.errors import (
    ConfigError,
    FatalError,
    LiberateError,
    RetriableError,
    SchemaCompatibilityError,
)
from liberate.schema.avro import AvroSchema
from liberate.schema.compatibility import (
    SubjectLevels,
    check_compatibility,
    incompatibility_hint,
    incompatibility_message,
)
from liberate.schema.registry import COMPATIBILITY_LEVELS, CompatibilityLevel, RegisteredSchema

# Confluent's error codes (https://docs.confluent.io/platform/current/schema-registry/develop/api.html)
SUBJECT_NOT_FOUND = 40401
VERSION_NOT_FOUND = 40402
SCHEMA_NOT_FOUND = 40403
SUBJECT_LEVEL_NOT_CONFIGURED = 40408
INCOMPATIBLE = 409
INVALID_SCHEMA = 42201


def _transport_errors() -> tuple[type[BaseException], ...]:
    # The client speaks through httpx (or its successor httpx2, depending on the version);
    # its transport errors (refused, reset, timed out) are what "unreachable" looks like.
    try:
        from confluent_kafka.schema_registry.common._httpx_compat import httpx
    except ImportError:
        return (OSError,)
    return (httpx.TransportError, OSError)


def masked_url(url: str) -> str:
    """``url`` (or a comma-separated list of them) without users or passwords: safe to print."""
    return ",".join(_masked(part.strip()) for part in url.split(","))


def _masked(url: str) -> str:
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    netloc = "***@" + parts.netloc.rsplit("@", 1)[1]
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def client_config(settings: SchemaRegistrySettings) -> dict[str, Any]:
    """The ``SchemaRegistryClient`` configuration of ``settings``."""
    config: dict[str, Any] = {
        "url": settings.url,
        "timeout": settings.timeout_s,
        "max.retries": settings.retries,
    }
    auth = settings.basic_auth
    if auth is not None:
        if auth.password_file is not None:
            password = read_password_file(
                auth.password_file, "streams.schema_registry.basic_auth.password_file"
            )
        else:
            assert auth.password is not None  # the model requires exactly one of the two
            password = auth.password.get_secret_value()
        config["basic.auth.user.info"] = f"{auth.user}:{password}"
    if settings.ssl_ca is not None:
        config["ssl.ca.location"] = str(settings.ssl_ca)
    if settings.ssl_cert is not None:
        config["ssl.certificate.location"] = str(settings.ssl_cert)
    if settings.ssl_key is not None:
        config["ssl.key.location"] = str(settings.ssl_key)
    return config


class ConfluentRegistry:
    """A ``SchemaRegistry`` backed by a Confluent-compatible registry over HTTP.

    Threading: every method may be called from any thread (the client is thread-safe; the
    caches are only ever extended under a lock). Lifecycle: usable once constructed;
    ``close`` releases the HTTP client (idempotent).
    """

    def __init__(self, settings: SchemaRegistrySettings) -> None:
        try:
            from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
            from confluent_kafka.schema_registry.error import SchemaRegistryError
        except ImportError as exc:
            raise FatalError(
                f"the schema registry client cannot be imported ({exc})",
                hint='pip install "confluent-kafka[schemaregistry]"',
            ) from exc
        self.settings = settings
        self.url = masked_url(settings.url)
        self._schema_class: Any = Schema
        self._registry_error: type[Exception] = SchemaRegistryError
        self._transport = _transport_errors()
        try:
            self._client: Any = SchemaRegistryClient(client_config(settings))
        except (ValueError, TypeError, OSError) as exc:
            raise ConfigError(
                f"invalid schema registry settings for {self.url}: {exc}",
                hint="check streams.schema_registry (url, basic_auth, ssl_ca/ssl_cert/ssl_key)",
            ) from exc
        self._lock = threading.Lock()
        self._ids: dict[tuple[str, str], int] = {}
        self._schemas: dict[int, AvroSchema] = {}
        self._default_level: CompatibilityLevel | None = None
        self._global_level: CompatibilityLevel | None = None
        self._levels = SubjectLevels()
        self._applied: set[str] = set()  # subjects whose configured level was set

    # -- the SchemaRegistry protocol ---------------------------------------------------------

    def register(self, subject: str, schema: AvroSchema) -> int:
        """Return the id of ``schema`` under ``subject``, registering a new version if needed.

        An existing version is looked up first; a new one is checked against the subject with
        the registry's compatibility endpoint and refused with ``SchemaCompatibilityError``
        (the registry's messages) when it breaks the subject's level.
        """
        cached = self._ids.get((subject, schema.fingerprint))
        if cached is not None:
            return cached
        candidate = self._schema(schema)
        configured = self._apply_configured_level(subject)
        try:
            found = self._client.lookup_schema(subject, candidate)
            schema_id = int(found.schema_id)
        except Exception as exc:
            code = self._code(exc)
            if code == SUBJECT_NOT_FOUND:
                if not configured:
                    self._apply_default_level(subject)
            elif code == SCHEMA_NOT_FOUND:
                problems = self.check(subject, schema)
                if problems:
                    raise self._incompatible(subject, problems) from exc
            else:
                self._fail(exc, f"look up the schema of subject {subject!r}")
            schema_id = self._register(subject, candidate)
        with self._lock:
            self._ids[(subject, schema.fingerprint)] = schema_id
            self._schemas.setdefault(schema_id, schema)
        return schema_id

    def schema_by_id(self, schema_id: int) -> AvroSchema:
        """The schema with this id; ``FatalError`` when the registry does not know it."""
        cached = self._schemas.get(schema_id)
        if cached is not None:
            return cached
        try:
            found = self._client.get_schema(schema_id)
        except Exception as exc:
            if self._code(exc) == SCHEMA_NOT_FOUND:
                raise FatalError(
                    f"schema id {schema_id} is not in the schema registry at {self.url}",
                    hint="the records were written with another registry: point"
                    " streams.schema_registry.url at the registry that wrote them",
                ) from exc
            self._fail(exc, f"read schema id {schema_id}")
        if (found.schema_type or "AVRO") != "AVRO":
            raise FatalError(
                f"schema id {schema_id} is a {found.schema_type} schema, not Avro",
                hint="liberate reads topics whose keys and values are Avro",
            )
        schema = AvroSchema(found.schema_str)
        with self._lock:
            return self._schemas.setdefault(schema_id, schema)

    def subjects(self) -> list[str]:
        """Every subject, sorted."""
        try:
            return sorted(str(s) for s in self._client.get_subjects())
        except Exception as exc:
            self._fail(exc, "list subjects")

    def versions(self, subject: str) -> list[RegisteredSchema]:
        """Every version of ``subject``, oldest first (empty for an unknown subject)."""
        try:
            numbers = sorted(int(v) for v in self._client.get_versions(subject))
            found = [self._client.get_version(subject, number) for number in numbers]
        except Exception as exc:
            if self._code(exc) == SUBJECT_NOT_FOUND:
                return []
            self._fail(exc, f"read the versions of subject {subject!r}")
        return [
            RegisteredSchema(
                subject=subject,
                version=int(v.version),
                schema_id=int(v.schema_id),
                schema=AvroSchema(v.schema.schema_str),
            )
            for v in found
        ]

    def compatibility(self, subject: str | None = None) -> CompatibilityLevel:
        """The level of ``subject`` (its own, else the registry's global one), or, for a new
        subject or None, the level new subjects get: the run file's when set, else the
        registry's global one."""
        if subject is not None:
            try:
                return _level(self._client.get_compatibility(subject))
            except Exception as exc:
                code = self._code(exc)
                if code == SUBJECT_LEVEL_NOT_CONFIGURED:  # an existing subject: the global level
                    return self._registry_level()
                if code != SUBJECT_NOT_FOUND:
                    self._fail(exc, f"read the compatibility of subject {subject!r}")
        if self._default_level is not None:
            return self._default_level
        return self._registry_level()

    def set_compatibility(self, level: CompatibilityLevel, subject: str | None = None) -> None:
        """Set the level of ``subject``; with None, the level of subjects liberate creates from
        now on (the registry's global level is not changed)."""
        if level not in COMPATIBILITY_LEVELS:
            raise ConfigError(
                f"unknown compatibility level {level!r}",
                hint=f"use one of {', '.join(COMPATIBILITY_LEVELS)}",
            )
        if subject is None:
            self._default_level = level
            self._registry_level()  # reachable and answering now, not at the first record
            return
        try:
            self._client.set_compatibility(subject_name=subject, level=level)
        except Exception as exc:
            self._fail(exc, f"set the compatibility of subject {subject!r}")

    def check(self, subject: str, schema: AvroSchema) -> list[str]:
        """The registry's problems with ``schema`` as the next version of ``subject`` (empty:
        compatible, or a new subject)."""
        if (subject, schema.fingerprint) in self._ids:
            return []
        configured = self._levels.level_for(subject)
        level = self.compatibility(subject)
        if configured is not None and configured != level:
            # Not applied to the registry yet (a pre-flight check writes nothing): the
            # registry's versions, checked here under the run file's level.
            versions = self.versions(subject)
            if any(v.schema.fingerprint == schema.fingerprint for v in versions):
                return []
            return check_compatibility(schema, [v.schema for v in versions], configured)
        body = self._schema(schema).to_dict()
        # test_compatibility() returns only the boolean; the messages come with verbose=true.
        # A transitive level is checked against every version (the path without a version).
        against = "versions" if level.endswith("_TRANSITIVE") else "versions/latest"
        path = f"compatibility/subjects/{quote(subject, safe='')}/{against}?verbose=true"
        try:
            answer = self._client._rest_client.post(path, body=body)
        except Exception as exc:
            if self._code(exc) in (SUBJECT_NOT_FOUND, VERSION_NOT_FOUND):
                return []
            self._fail(exc, f"check the compatibility of a new schema of subject {subject!r}")
        if answer.get("is_compatible", True):
            return []
        messages = [str(m) for m in answer.get("messages") or ()]
        return messages or [f"the registry at {self.url} says it is incompatible"]

    def configure_levels(self, levels: SubjectLevels) -> None:
        """``levels.default`` for the subjects liberate creates (see ``set_compatibility``);
        each subject ``levels`` names gets its level set on the registry when this client
        first registers a schema under it."""
        self.set_compatibility(levels.default)
        self._levels = levels
        self._applied = set()

    # -- lifecycle ---------------------------------------------------------------------------

    def close(self) -> None:
        """Release the HTTP client; idempotent. Cached ids and schemas stay readable."""
        client, self._client = self._client, None
        if client is not None:
            client.close()

    def __repr__(self) -> str:
        return f"ConfluentRegistry({self.url!r})"

    # -- internals ---------------------------------------------------------------------------

    def _schema(self, schema: AvroSchema) -> Any:
        return self._schema_class(schema.canonical, "AVRO")

    def _register(self, subject: str, candidate: Any) -> int:
        try:
            return int(self._client.register_schema(subject, candidate))
        except Exception as exc:
            code = self._code(exc)
            if code == INCOMPATIBLE:
                raise self._incompatible(subject, [self._message(exc)]) from exc
            if code == INVALID_SCHEMA:
                raise FatalError(
                    f"the schema registry at {self.url} refuses the schema of subject"
                    f" {subject!r} as invalid: {self._message(exc)}",
                    hint="report it with the table DDL: liberate built a schema the registry"
                    " does not accept",
                ) from exc
            self._fail(exc, f"register a schema under subject {subject!r}")

    def _apply_configured_level(self, subject: str) -> bool:
        """Set the run file's level of ``subject`` once; whether the run file sets one."""
        level = self._levels.level_for(subject)
        if level is None:
            return False
        if subject not in self._applied:
            try:
                current = self._client.get_compatibility(subject)
            except Exception as exc:
                if self._code(exc) not in (SUBJECT_NOT_FOUND, SUBJECT_LEVEL_NOT_CONFIGURED):
                    self._fail(exc, f"read the compatibility of subject {subject!r}")
                current = None
            if current is None or _level(current) != level:
                self.set_compatibility(level, subject)
            with self._lock:
                self._applied.add(subject)
        return True

    def _apply_default_level(self, subject: str) -> None:
        level = self._default_level
        if level is None or level == self._registry_level():
            return
        try:
            self._client.set_compatibility(subject_name=subject, level=level)
        except Exception as exc:
            self._fail(exc, f"set the compatibility of new subject {subject!r} to {level}")

    def _registry_level(self) -> CompatibilityLevel:
        if self._global_level is None:
            try:
                self._global_level = _level(self._client.get_compatibility())
            except Exception as exc:
                self._fail(exc, "read the global compatibility level")
        return self._global_level

    def _incompatible(self, subject: str, problems: list[str]) -> SchemaCompatibilityError:
        level = self.compatibility(subject)
        return SchemaCompatibilityError(
            incompatibility_message(subject, level, problems)
            + f"\n  (checked by the schema registry at {self.url})",
            subject=subject,
            level=level,
            problems=problems,
            hint=incompatibility_hint(level),
        )

    def _code(self, exc: BaseException) -> int | None:
        if isinstance(exc, self._registry_error):
            return int(getattr(exc, "error_code", -1) or -1)
        return None

    def _message(self, exc: BaseException) -> str:
        return str(getattr(exc, "error_message", None) or exc)

    def _fail(self, exc: BaseException, action: str) -> NoReturn:
        """Raise the liberate error for a failed request (never returns)."""
        if isinstance(exc, LiberateError):
            raise exc
        if self._client is None:
            raise FatalError(
                f"the schema registry client of {self.url} is closed",
                hint="this is a bug in the caller: the registry was used after close()",
            ) from exc
        if isinstance(exc, self._transport):
            raise RetriableError(
                f"cannot reach the schema registry at {self.url} to {action}:"
                f" {type(exc).__name__}: {exc}",
                hint="start the registry (or `liberate registry serve FILE`) or fix"
                " streams.schema_registry.url",
            ) from exc
        if isinstance(exc, self._registry_error):
            status = int(getattr(exc, "http_status_code", 0) or 0)
            message = (
                f"the schema registry at {self.url} refused to {action}:"
                f" {self._message(exc)} (HTTP {status})"
            )
            if status in (401, 403):
                raise FatalError(
                    message, hint="check streams.schema_registry.basic_auth and its permissions"
                ) from exc
            if status >= 500 or status in (408, 429):
                raise RetriableError(message, hint="the registry is failing; retrying") from exc
            raise FatalError(message, hint="see the registry's log") from exc
        raise FatalError(
            f"schema registry at {self.url}: cannot {action}: {type(exc).__name__}: {exc}",
            hint="check streams.schema_registry",
        ) from exc


def _level(value: Any) -> CompatibilityLevel:
    text = str(value).upper()
    for level in COMPATIBILITY_LEVELS:
        if level == text:
            return level
    raise FatalError(
        f"the schema registry answered an unknown compatibility level {value!r}",
        hint=f"liberate knows {', '.join(COMPATIBILITY_LEVELS)}",
    )
