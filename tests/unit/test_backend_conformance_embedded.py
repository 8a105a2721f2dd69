"""The embedded backend passes the stream backend conformance suite."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest

from liberate.streams.embedded import EmbeddedBackend
from tests.conformance.backend import BackendConformance, BackendFactory


class TestEmbeddedBackendConformance(BackendConformance):
    @pytest.fixture
    def backend_factory(self, tmp_path: Path) -> BackendFactory:
        return functools.partial(EmbeddedBackend, tmp_path / "streams.db")
