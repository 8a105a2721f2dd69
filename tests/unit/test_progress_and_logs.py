"""Progress of long loads, and log output: text or JSON lines, never a credential."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import pytest

from liberate import logs, progress
from liberate.config.loader import load_run_file
from liberate.progress import RowProgress


def test_a_terminal_gets_a_redrawn_bar_with_rows_rate_and_time_left(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(progress, "QUIET_S", 0.0)
    out = io.StringIO()
    bar = RowProgress("source shop: bulk load", 1000, stream=out, terminal=True)
    bar.advance(250)
    bar.close()
    text = out.getvalue()
    assert text.startswith("\r\x1b[2K[######")
    assert "source shop: bulk load: 250/1,000 rows (25%)" in text
    assert "rows/s" in text and "left" in text
    assert text.endswith("\n")


def test_a_load_shorter_than_the_quiet_time_shows_nothing() -> None:
    out = io.StringIO()
    bar = RowProgress("source shop: bulk load", 1000, stream=out, terminal=True)
    bar.advance(1000)
    bar.close()
    assert out.getvalue() == ""


def test_without_a_terminal_progress_is_a_periodic_log_line(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(progress, "QUIET_S", 0.0)
    monkeypatch.setattr(progress, "LOG_EVERY_S", 0.0)
    out = io.StringIO()
    with caplog.at_level(logging.INFO, logger="liberate.progress"):
        bar = RowProgress("source shop: initial load", None, stream=out, terminal=False)
        bar.advance(10)
        bar.advance(5)
        bar.close()
    assert out.getvalue() == ""
    messages = [r.getMessage() for r in caplog.records]
    assert messages[0].startswith("source shop: initial load: 10 rows, ")
    assert messages[-1].startswith("source shop: initial load: done, 15 rows in")


def _logged(log_format: logs.LogFormat, message: str, *args: object) -> str:
    out = io.StringIO()
    logs.configure_logging(1, log_format, stream=out)
    try:
        logging.getLogger("liberate.test").warning(message, *args)
    finally:
        logs.configure_logging(0, "text")
    return out.getvalue()


def test_json_log_lines_parse_and_carry_level_logger_and_message() -> None:
    line = _logged("json", "source %s: %d rows", "shop", 3)
    entry = json.loads(line)
    assert entry["level"] == "warning"
    assert entry["logger"] == "liberate.test"
    assert entry["message"] == "source shop: 3 rows"
    assert entry["ts"].endswith("+00:00")


def test_a_password_in_a_url_never_reaches_the_log(tmp_path: Path) -> None:
    for log_format in ("text", "json"):
        text = _logged(log_format, "cannot connect to %s", "postgresql://app:s3cr3t-pw@db/shop")
        assert "s3cr3t-pw" not in text
        assert "postgresql://app:***@db/shop" in text


def test_the_run_files_passwords_are_masked_wherever_they_appear(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("from-a-file-pw\n", encoding="utf-8")
    run = tmp_path / "run.yaml"
    run.write_text(
        "sources:\n"
        "  - {name: a, connector: query, database: 'postgresql://u:in-the-url-pw@h/db',"
        " tables: [t]}\n"
        "  - {name: b, connector: query, database: 'postgresql://u@h/db', password: inline-pw,"
        " tables: [t]}\n"
        f"  - {{name: c, connector: query, database: 'postgresql://u@h/db',"
        f" password_file: {tmp_path / 'pw'}, tables: [t]}}\n",
        encoding="utf-8",
    )
    load_run_file(run)
    for log_format in ("text", "json"):
        text = _logged(log_format, "oops: %s %s %s", "in-the-url-pw", "inline-pw",
                       "password=from-a-file-pw")
        assert "in-the-url-pw" not in text and "inline-pw" not in text
        assert "from-a-file-pw" not in text
        assert text.count("***") == 3


def test_a_traceback_is_masked_too() -> None:
    out = io.StringIO()
    logs.configure_logging(0, "json", stream=out)
    try:
        try:
            raise RuntimeError("mysql://root:tb-secret@localhost/x unreachable")
        except RuntimeError:
            logging.getLogger("liberate.test").exception("failed")
    finally:
        logs.configure_logging(0, "text")
    entry = json.loads(out.getvalue())
    assert "tb-secret" not in out.getvalue()
    assert "mysql://root:***@localhost/x unreachable" in entry["exc"]


def test_kafka_secrets_inline_and_in_property_files_are_masked(tmp_path: Path) -> None:
    (tmp_path / "kafka-pw").write_text("kafka-file-pw\n", encoding="utf-8")
    run = tmp_path / "run.yaml"
    run.write_text(
        "streams:\n"
        "  backend: kafka\n"
        "  kafka:\n"
        "    bootstrap_servers: localhost:9092\n"
        "    properties: {sasl.username: app, sasl.password: kafka-inline-pw}\n"
        f"    property_files: {{ssl.key.password: {tmp_path / 'kafka-pw'}}}\n"
        "  schema_registry: {url: 'http://localhost:8081'}\n"
        "sources:\n"
        "  - {name: a, connector: query, database: 'sqlite:///x.db', tables: [t]}\n",
        encoding="utf-8",
    )
    load_run_file(run)
    text = _logged("text", "props: %s %s user=%s", "kafka-inline-pw", "kafka-file-pw", "app")
    assert "kafka-inline-pw" not in text and "kafka-file-pw" not in text
    assert "user=app" in text
