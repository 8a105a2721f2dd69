"""``liberate registry serve``: the embedded registry over HTTP, as a Confluent-compatible
schema registry (the REST subset in ``_registry_routes``).

For a team without Confluent, and for tests that exercise the real
``confluent_kafka.schema_registry`` client across processes. The store is an SQLite file (the
embedded registry's tables), so several servers on one file share it, and a restart loses
nothing. The standard library's threading HTTP server is enough: a registry answers a few
requests per new schema, and clients cache what they get.
"""

from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from urllib.parse import parse_qs, urlsplit

from liberate.errors import FatalError
from liberate.schema._registry_routes import RegistryApi
from liberate.schema.embedded_registry import EmbeddedRegistry

log = logging.getLogger("liberate.registry")

CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"
# A request body larger than this is refused (a schema is a few kilobytes).
MAX_BODY_BYTES = 16 * 1024 * 1024


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"  # keep-alive: clients reuse their connection

    def do_GET(self) -> None:
        self._answer("GET")

    def do_POST(self) -> None:
        self._answer("POST")

    def do_PUT(self) -> None:
        self._answer("PUT")

    def do_DELETE(self) -> None:
        self._answer("DELETE")

    def _answer(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            self._send(413, {"error_code": 413, "message": "request body too large"})
            self.close_connection = True
            return
        body = self.rfile.read(length) if length else b""
        url = urlsplit(self.path)
        answer = self.server.api.handle(method, url.path, parse_qs(url.query), body)
        self._send(answer.status, answer.body)

    def _send(self, status: int, body: object) -> None:
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", CONTENT_TYPE)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: object) -> None:
        log.debug("%s %s", self.address_string(), format % args)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], api: RegistryApi) -> None:
        self.api = api
        super().__init__(address, _Handler)


class RegistryServer:
    """A Confluent-compatible registry on ``host:port`` serving the registry in ``path``.

    ``port`` 0 picks a free port (see ``url``). ``start()`` serves in a background thread,
    ``serve_forever()`` in the calling one; ``close()`` stops and releases the store.
    """

    def __init__(self, path: Path, *, host: str = "127.0.0.1", port: int = 8081) -> None:
        self.path = Path(path)
        self.registry = EmbeddedRegistry(self.path)
        try:
            self._server = _Server((host, port), RegistryApi(self.registry))
        except OSError as exc:
            self.registry.close()
            raise FatalError(
                f"cannot listen on {host}:{port}: {exc.strerror or exc}",
                hint="pick another --port (or stop what listens there)",
            ) from exc
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> RegistryServer:
        """Serve in a daemon thread; returns at once."""
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="registry-server", daemon=True
        )
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve until ``close()`` is called from another thread (or KeyboardInterrupt)."""
        self._server.serve_forever()

    def close(self) -> None:
        """Stop serving and close the store; idempotent."""
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        self._server.server_close()
        self.registry.close()

    def __enter__(self) -> RegistryServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
