"""librdkafka errors wrapped into liberate's hierarchy, chosen by what the runtime must do.

Retriable (the runtime backs off and resumes from the stored offsets): the broker is down or
slow, a coordinator moved. Fatal (the run stops with the hint): authentication and
authorization, fencing by another process, invalid configuration, records too large.
Messages name the action and librdkafka's error name; they never carry properties (which may
hold passwords), only the bootstrap servers.
"""

from __future__ import annotations

from typing import Any

from confluent_kafka import KafkaError, KafkaException

from liberate.errors import FatalError, LiberateError, RetriableError

_AUTH = frozenset(
    {
        KafkaError.SASL_AUTHENTICATION_FAILED,
        KafkaError._AUTHENTICATION,
        KafkaError._SSL,
    }
)
_ACL = frozenset(
    {
        KafkaError.TOPIC_AUTHORIZATION_FAILED,
        KafkaError.GROUP_AUTHORIZATION_FAILED,
        KafkaError.CLUSTER_AUTHORIZATION_FAILED,
        KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
    }
)
FENCED = frozenset(
    {KafkaError._FENCED, KafkaError.PRODUCER_FENCED, KafkaError.INVALID_PRODUCER_EPOCH}
)
UNSUPPORTED = frozenset(
    {KafkaError._UNSUPPORTED_FEATURE, KafkaError.UNSUPPORTED_VERSION, KafkaError._NOT_IMPLEMENTED}
)
_UNREACHABLE = frozenset(
    {
        KafkaError._TRANSPORT,
        KafkaError._ALL_BROKERS_DOWN,
        KafkaError._TIMED_OUT,
        KafkaError._MSG_TIMED_OUT,
        KafkaError.REQUEST_TIMED_OUT,
        KafkaError.COORDINATOR_NOT_AVAILABLE,
        KafkaError.NOT_COORDINATOR,
    }
)
_BAD_CONFIG = frozenset(
    {
        KafkaError.INVALID_CONFIG,
        KafkaError._INVALID_ARG,
        KafkaError.INVALID_REPLICATION_FACTOR,
        KafkaError.INVALID_PARTITIONS,
        KafkaError.POLICY_VIOLATION,
    }
)


def kafka_error_of(exc: BaseException) -> KafkaError | None:
    """The ``KafkaError`` a ``KafkaException`` carries (None for anything else)."""
    if isinstance(exc, KafkaException) and exc.args and isinstance(exc.args[0], KafkaError):
        return exc.args[0]
    return None


def error_code(exc: BaseException) -> int | None:
    """The librdkafka error code of ``exc`` (None when it is not a Kafka error)."""
    err = kafka_error_of(exc)
    return None if err is None else int(err.code())


def wrap_kafka_error(
    error: KafkaError | BaseException, action: str, bootstrap: str
) -> LiberateError:
    """The liberate error for a librdkafka ``error`` raised while trying to ``action``."""
    err = error if isinstance(error, KafkaError) else kafka_error_of(error)
    if err is None:
        if isinstance(error, OSError):
            return RetriableError(
                f"Kafka: cannot {action}: {type(error).__name__}: {error}",
                hint=f"check that the brokers at {bootstrap} are up and reachable",
            )
        # Not librdkafka's: a value confluent-kafka refused. Retrying would not help.
        return FatalError(
            f"Kafka: cannot {action}: {type(error).__name__}: {error}",
            hint="this is a bug in liberate or in a connector: report it with this message",
        )
    code = int(err.code())
    message = f"Kafka: cannot {action}: {err.str()} ({err.name()})"
    if code in _AUTH:
        return FatalError(
            message,
            hint="check security.protocol, sasl.* and ssl.* under streams.kafka.properties",
        )
    if code in _ACL:
        return FatalError(
            message,
            hint="grant the principal liberate uses the ACLs it needs (topics: create, describe,"
            " read, write; groups: read; transactional ids: write)",
        )
    if code in FENCED:
        return FatalError(
            message,
            hint="another process runs the same source (same transactional id) and took over;"
            " run each source in one process only",
        )
    if code in _BAD_CONFIG:
        return FatalError(
            message, hint="check streams.kafka (partitions, replication_factor, properties)"
        )
    if code == KafkaError.MSG_SIZE_TOO_LARGE:
        return FatalError(
            message,
            hint="a record is larger than the broker accepts: raise message.max.bytes under"
            " streams.kafka.properties and max.message.bytes of the topic",
        )
    if code in _UNREACHABLE or _flag(err, "retriable") or _flag(err, "txn_requires_abort"):
        return RetriableError(
            message, hint=f"check that the brokers at {bootstrap} are up and reachable"
        )
    return FatalError(message, hint=f"see the broker logs of {bootstrap}")


def _flag(err: KafkaError, name: str) -> bool:
    method: Any = getattr(err, name, None)
    return bool(method()) if callable(method) else False
