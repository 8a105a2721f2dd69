"""The corpus of broken run files: each is refused by ``liberate check`` and ``liberate run``
with exit code 2, the message its ``# expect:`` lines name (with the YAML path and line) and a
hint saying what to do, before anything connects or any file is created."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

RUN_FILES = Path(__file__).parent / "run_files"
CORPUS = sorted(RUN_FILES.glob("*.yaml"))


def expected_fragments(run_file: Path) -> list[str]:
    prefix = "# expect: "
    lines = run_file.read_text(encoding="utf-8").splitlines()
    return [line[len(prefix):] for line in lines if line.startswith(prefix)]


def test_the_corpus_covers_every_kind_of_broken_run_file() -> None:
    names = {path.stem for path in CORPUS}
    assert {"syntax_error", "wrong_types", "unknown_key", "missing_variable",
            "kafka_without_registry", "timestamp_without_column",
            "duplicate_sink_names"} <= names
    assert all(expected_fragments(path) for path in CORPUS), "every file names its message"


@pytest.mark.parametrize("verb", ["check", "run"])
@pytest.mark.parametrize("run_file", CORPUS, ids=[path.stem for path in CORPUS])
def test_broken_run_file_is_refused_with_its_message_and_exit_code_2(
    run_file: Path, verb: str, tmp_path: Path
) -> None:
    copy = tmp_path / run_file.name
    shutil.copy(run_file, copy)
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIBERATE_BAD_INPUT_")}
    result = subprocess.run(
        [sys.executable, "-m", "liberate", verb, str(copy), *(["--once"] if verb == "run" else [])],
        cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False, env=env,
    )
    assert result.returncode == 2, result.stderr
    for fragment in expected_fragments(run_file):
        assert fragment in result.stderr
    assert "hint: fix these and run `liberate check FILE` again" in result.stderr
    assert "Traceback" not in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == [run_file.name], "nothing is created"
