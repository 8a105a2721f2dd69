"""``liberate registry serve FILE``: a Confluent-compatible schema registry on an SQLite store."""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

from liberate.errors import ConfigError
from liberate.schema.registry_server import RegistryServer


def serve(path: str, *, host: str, port: int, out: TextIO = sys.stdout) -> int:
    """Serve the registry stored in ``path`` (created if missing) until SIGINT or SIGTERM."""
    store = Path(path)
    if store.suffix in (".yaml", ".yml"):
        raise ConfigError(
            f"{store} looks like a run file; `registry serve` takes the registry's store file",
            hint="pass an SQLite file, e.g. `liberate registry serve .liberate/registry.db`",
        )
    if not 0 <= port <= 65535:
        raise ConfigError(f"--port {port} is not a TCP port", hint="use 1-65535 (0: any free)")
    stop = threading.Event()
    server = RegistryServer(store, host=host, port=port).start()
    try:
        previous = _on_signals(stop)
        try:
            # Scripts and test fixtures wait for this line before they connect.
            print(f"schema registry serving {store} at {server.url}", file=out, flush=True)
            while not stop.wait(0.5):
                pass
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
    finally:
        server.close()
    return 0


def _on_signals(stop: threading.Event) -> dict[signal.Signals, Any]:
    if threading.current_thread() is not threading.main_thread():
        return {}

    def handle(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous: dict[signal.Signals, Any] = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        previous[sig] = signal.getsignal(sig)
        signal.signal(sig, handle)
    return previous
