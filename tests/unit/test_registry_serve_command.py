"""``liberate registry serve``: what it refuses before it serves."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from liberate.commands.registry import serve
from liberate.errors import ConfigError, FatalError
from liberate.schema.registry_server import RegistryServer


def test_a_run_file_is_refused_as_the_store(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="takes the registry's store file"):
        serve(str(tmp_path / "run.yaml"), host="127.0.0.1", port=0)


def test_a_port_in_use_is_a_clear_error_and_releases_the_store(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]

        with pytest.raises(FatalError, match=f"cannot listen on 127.0.0.1:{port}") as raised:
            RegistryServer(tmp_path / "registry.db", port=port)

    assert "--port" in (raised.value.hint or "")
    with RegistryServer(tmp_path / "registry.db", port=0) as server:  # the store is free again
        assert server.url.startswith("http://127.0.0.1:")
