"""Helpers for the operations tests: tables on any database, a `liberate run` in the
background, waiting for rows to arrive."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.dialects import mysql

from liberate.config.base import DatabaseSettings
from liberate.database import database_url

TIMESTAMP = sa.DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")
BASE_TIME = dt.datetime(2024, 5, 1, 12, 0, 0, 123456)


def engine_for(url: str) -> sa.Engine:
    """An engine on ``url`` with liberate's default drivers."""
    return sa.create_engine(database_url(DatabaseSettings(database=url)))


def items_table(name: str) -> sa.Table:
    """``id`` key, a text, a decimal and a timestamp: values that differ by dialect."""
    return sa.Table(
        name,
        sa.MetaData(),
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("label", sa.String(50), nullable=False),
        sa.Column("amount", sa.Numeric(10, 2), nullable=False),
        sa.Column("at", TIMESTAMP, nullable=False),
    )


def create_items(url: str, name: str) -> None:
    engine = engine_for(url)
    try:
        with engine.begin() as conn:
            items_table(name).create(conn)
    finally:
        engine.dispose()


def add_items(url: str, name: str, ids: range) -> None:
    engine = engine_for(url)
    try:
        with engine.begin() as conn:
            conn.execute(
                items_table(name).insert(),
                [
                    {"id": i, "label": f"{name} {i} ü", "amount": Decimal(f"{i}.{i % 100:02d}"),
                     "at": BASE_TIME + dt.timedelta(minutes=i)}
                    for i in ids
                ],
            )
    finally:
        engine.dispose()


def count_rows(url: str, name: str) -> int:
    """Rows of table ``name`` (0 when it does not exist yet)."""
    engine = engine_for(url)
    try:
        with engine.connect() as conn:
            if not sa.inspect(conn).has_table(name):
                return 0
            table = sa.Table(name, sa.MetaData(), autoload_with=conn)
            return int(conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one())
    finally:
        engine.dispose()


def wait_until(condition: Callable[[], bool], *, timeout_s: float, what: str,
               process: subprocess.Popen[str] | None = None) -> None:
    """Poll ``condition`` until true; fail with ``what`` (and the run's output) otherwise."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        if process is not None and process.poll() is not None:
            _, err = process.communicate()
            raise AssertionError(f"liberate run exited ({process.returncode}) before {what}:\n"
                                 f"{err[-3000:]}")
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def start_run(run_file: Path, *args: str, cwd: Path) -> subprocess.Popen[str]:
    """``liberate run RUN_FILE ARGS`` in the background, as a user starts it."""
    return subprocess.Popen(
        [sys.executable, "-m", "liberate", "run", str(run_file), *args],
        cwd=cwd,
        env=dict(os.environ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def terminate(process: subprocess.Popen[str], *, timeout_s: float) -> tuple[int, str, str]:
    """SIGTERM ``process``; its exit code and output, within ``timeout_s`` (else it is killed
    and the test fails)."""
    process.send_signal(signal.SIGTERM)
    try:
        out, err = process.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
        raise AssertionError(f"liberate run did not exit within {timeout_s} s of SIGTERM:\n"
                             f"{err[-3000:]}") from None
    return process.returncode, out, err


def cli(*args: str, cwd: Path, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """``liberate ARGS`` to completion."""
    return subprocess.run(
        [sys.executable, "-m", "liberate", *args],
        cwd=cwd, input=stdin, capture_output=True, text=True, timeout=120, check=False,
    )
