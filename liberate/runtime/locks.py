"""Advisory locks that say a connector is running, so its offsets are not reset under it.

``liberate run`` holds a *shared* ``flock`` on one file per connector it runs, for as long as it
runs; ``liberate offsets ... reset`` takes the *exclusive* lock without waiting, so it fails
while any run of that connector is alive (several runs may hold the shared lock, which keeps
``run`` as permissive as before). The kernel drops a lock when its process dies, so a killed run
leaves nothing stale behind.

The lock files live beside the state they protect: next to the embedded backend's file
(``<streams.path>.locks/``), or for Kafka in the temp directory under a name derived from the
bootstrap servers and the offsets topic. They are advisory and per machine: runs on other hosts
are not seen (stop those by hand before a reset).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import logging
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Literal

from liberate.config.models import StreamsConfig
from liberate.errors import FatalError

log = logging.getLogger("liberate.runtime")


def lock_dir(streams: StreamsConfig) -> Path:
    """Where the connector lock files of the streams ``streams`` names live."""
    if streams.backend == "kafka" and streams.kafka is not None:
        identity = f"{streams.kafka.bootstrap_servers}|{streams.kafka.offsets_topic}"
        digest = hashlib.sha256(identity.encode()).hexdigest()[:16]
        return Path(tempfile.gettempdir()) / f"liberate-locks-{os.getuid()}" / digest
    path = streams.path
    return path.with_name(path.name + ".locks")


Kind = Literal["source", "sink"]


def _open(directory: Path, kind: Kind, name: str) -> IO[str]:
    # A source and a sink may share a name: each has its own lock.
    try:
        directory.mkdir(parents=True, exist_ok=True)
        return (directory / f"{kind}.{name}.lock").open("a+", encoding="utf-8")
    except OSError as exc:
        raise FatalError(
            f"cannot create the lock file of {kind} {name} in {directory}: {exc.strerror}",
            hint="make that directory writable (it sits beside the streams file)",
        ) from exc


@contextlib.contextmanager
def running(streams: StreamsConfig, connectors: Sequence[tuple[Kind, str]]) -> Iterator[None]:
    """Hold the shared lock of each ``(kind, name)`` connector while the block runs.

    Waits while a reset holds a lock (a reset takes well under a second once confirmed; a
    reset waiting for its confirmation is named in a warning, so the wait is not silent).
    """
    directory = lock_dir(streams)
    files: list[IO[str]] = []
    try:
        for kind, name in connectors:
            handle = _open(directory, kind, name)
            files.append(handle)
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                log.warning("%s %s is being reset (`liberate offsets ... reset`): waiting for "
                            "it to finish", kind, name)
                fcntl.flock(handle.fileno(), fcntl.LOCK_SH)
        yield
    finally:
        for handle in files:
            handle.close()  # closing drops the lock


@contextlib.contextmanager
def stopped(streams: StreamsConfig, kind: Kind, name: str) -> Iterator[None]:
    """Hold the connector's exclusive lock; ``FatalError`` when a run holds it."""
    handle = _open(lock_dir(streams), kind, name)
    try:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise
            raise FatalError(
                f"{kind} {name} is running: a `liberate run` process holds its lock",
                hint="stop that run (SIGTERM; it commits and exits) or run it with --only the "
                "other connectors, then retry",
            ) from exc
        yield
    finally:
        handle.close()
