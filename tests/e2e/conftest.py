"""Helpers for running the CLI exactly as a user does: ``python -m liberate`` in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

Cli = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    """Run ``liberate ARGS`` with ``tmp_path`` as the working directory; never raises."""

    def run(*args: str, env: dict[str, str] | None = None, timeout: float = 120,
            cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
        full_env = {**os.environ, **(env or {})}
        return subprocess.run(
            [sys.executable, "-m", "liberate", *args],
            cwd=cwd or tmp_path,
            env=full_env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    return run


def write(path: Path, lines: Sequence[str] | str) -> Path:
    """Write a run file."""
    path.write_text(lines if isinstance(lines, str) else "\n".join(lines) + "\n")
    return path
