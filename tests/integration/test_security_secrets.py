"""No password ever leaves liberate: a full run and every read-only verb, with debug logging,
and runs that fail to connect, are scanned for the passwords they were given.

The server checks passwords (``SecurePostgres``: scram-sha-256), so each password is really
used. Each reaches liberate another way: a ``password_file`` (query source), ``password:
${VAR}`` from the environment (SQL sink), and the URL itself, with characters that need
quoting (PostgreSQL CDC source). The scan covers stdout and stderr of ``check``, ``run
--once``, ``status`` (text and JSON), ``topics`` and ``tail``, all at ``-vv``; the Prometheus
metrics of a running ``run --metrics-port``; the bytes of every file of the embedded store;
and every row of every table in the target database (where the sink keeps its offsets).
Each password is looked for as given, URL-quoted and base64-encoded.
"""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import psycopg
import pytest
from psycopg import sql

from tests.integration._security_support import REPO, SecurePostgres, liberate, secure_postgres
from tests.servers import free_port

READER_PASSWORD = "rd-Pw_4417;'quoted\""
WRITER_PASSWORD = "wr-Pw_8823 spaced$"
CDC_PASSWORD = "cdc-Pw_5150@/:?#%"
WRONG_PASSWORD = "wrong-Pw_6061-never-valid"
PASSWORDS = (READER_PASSWORD, WRITER_PASSWORD, CDC_PASSWORD, WRONG_PASSWORD)


@pytest.fixture(scope="module")
def pg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecurePostgres]:
    with secure_postgres(tmp_path_factory.mktemp("secrets-pg")) as cluster:
        cluster.create_user("shop_reader", READER_PASSWORD)
        cluster.create_user("wh_writer", WRITER_PASSWORD)
        cluster.create_user("cdc_user", CDC_PASSWORD, replication=True)
        cluster.create_database("shop", owner="cdc_user")
        cluster.create_database("wh", owner="wh_writer")
        with psycopg.connect(cluster.url_for("shop"), autocommit=True) as conn:
            conn.execute("SET ROLE cdc_user")
            conn.execute("CREATE TABLE orders (id int PRIMARY KEY, note text NOT NULL)")
            conn.execute("INSERT INTO orders SELECT i, 'note ' || i FROM generate_series(1, 20) i")
            conn.execute(sql.SQL("GRANT SELECT ON orders TO shop_reader"))
        yield cluster


def _encodings(secret: str) -> list[str]:
    return [
        secret,
        quote(secret, safe=""),
        quote(secret),
        base64.b64encode(secret.encode()).decode(),
    ]


def _assert_no_password(where: str, text: str) -> None:
    for secret in PASSWORDS:
        for form in _encodings(secret):
            assert form not in text, f"a password ({form!r}) appears in {where}"


def _assert_no_password_bytes(where: str, data: bytes) -> None:
    for secret in PASSWORDS:
        for form in _encodings(secret):
            assert form.encode() not in data, f"a password appears in {where}"


def _run_file(pg: SecurePostgres, tmp_path: Path, *, sink_port: int | None = None) -> Path:
    (tmp_path / "reader-password").write_text(READER_PASSWORD + "\n")
    cdc_url = pg.user_url("cdc_user", "shop", CDC_PASSWORD)
    sink_url = pg.user_url("wh_writer", "wh")
    if sink_port is not None:
        sink_url = sink_url.replace(f":{pg.port}/", f":{sink_port}/")
    path = tmp_path / "run.yaml"
    path.write_text(f"""\
streams:
  path: {tmp_path}/state/streams.db
sources:
  - name: shop
    connector: query
    database: {pg.user_url('shop_reader', 'shop')}
    password_file: {tmp_path}/reader-password
    tables: [orders]
    mode: bulk
  - name: cdc
    connector: postgres
    database: "{cdc_url}"
    tables: [orders]
    heartbeat_interval: 0s
sinks:
  - name: wh
    connector: sql
    database: {sink_url}
    password: ${{WH_PASSWORD}}
    topics: [shop.orders, cdc.public.orders]
    table: "{{source}}_{{table}}"
""")
    return path


def _scan(where: str, result: subprocess.CompletedProcess[str]) -> None:
    _assert_no_password(f"{where} stdout", result.stdout)
    _assert_no_password(f"{where} stderr", result.stderr)


def test_no_password_in_output_store_or_target_of_a_full_run(
    pg: SecurePostgres, tmp_path: Path
) -> None:
    run_file = _run_file(pg, tmp_path)
    env = {"WH_PASSWORD": WRITER_PASSWORD}
    commands = [
        ("check", ["-vv", "check", str(run_file)]),
        ("run", ["-vv", "run", "--once", str(run_file)]),
        ("run, JSON logs", ["-vv", "--log-format", "json", "run", "--once", str(run_file)]),
        ("status", ["-vv", "status", str(run_file)]),
        ("status --json", ["-vv", "status", "--json", str(run_file)]),
        ("topics", ["-vv", "topics", str(run_file)]),
        ("tail", ["-vv", "tail", str(run_file), "shop.orders", "--from-beginning",
                  "--limit", "3", "--no-follow"]),
    ]
    for name, args in commands:
        result = liberate(tmp_path, *args, env=env)
        assert result.returncode == 0, f"{name}: {result.stdout}\n{result.stderr}"
        _scan(name, result)
        if name == "tail":
            assert result.stdout.count("\n") == 3

    with psycopg.connect(pg.url_for("wh")) as conn:
        tables = [
            r[0] for r in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
            ).fetchall()
        ]
        assert {"shop_orders", "cdc_orders"} <= set(tables)
        assert conn.execute("SELECT count(*) FROM shop_orders").fetchone() == (20,)
        for table in tables:
            rows = conn.execute(sql.SQL("SELECT * FROM {}").format(sql.Identifier(table)))
            _assert_no_password(f"target table {table}", repr(rows.fetchall()))

    store_files = [p for p in (tmp_path / "state").rglob("*") if p.is_file()]
    assert any(p.name == "streams.db" for p in store_files)
    for path in store_files:
        _assert_no_password_bytes(str(path), path.read_bytes())


def test_no_password_in_the_errors_of_a_failed_login(pg: SecurePostgres, tmp_path: Path) -> None:
    run_file = _run_file(pg, tmp_path)
    env = {"WH_PASSWORD": WRONG_PASSWORD}
    check = liberate(tmp_path, "-vv", "check", str(run_file), env=env)
    assert check.returncode != 0
    assert "password authentication failed" in check.stdout + check.stderr
    _scan("check with a wrong password", check)
    run = liberate(tmp_path, "-vv", "run", "--once", str(run_file), env=env, timeout=180)
    assert run.returncode != 0
    _scan("run with a wrong password", run)


def test_no_password_in_the_errors_of_an_unreachable_server(
    pg: SecurePostgres, tmp_path: Path
) -> None:
    run_file = _run_file(pg, tmp_path, sink_port=free_port())
    check = liberate(tmp_path, "-vv", "check", str(run_file), env={"WH_PASSWORD": WRONG_PASSWORD})
    assert check.returncode != 0
    assert "refused" in (check.stdout + check.stderr).lower()
    _scan("check with an unreachable server", check)


def test_no_password_in_the_metrics_or_logs_of_a_long_run(
    pg: SecurePostgres, tmp_path: Path
) -> None:
    run_file = _run_file(pg, tmp_path)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LIBERATE_DB_")}
    env.update(WH_PASSWORD=WRITER_PASSWORD, PYTHONPATH=str(REPO))
    process = subprocess.Popen(
        [sys.executable, "-m", "liberate", "-vv", "run", "--metrics-port", str(port),
         str(run_file)],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    metrics = ""
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and "liberate_sink" not in metrics:
            time.sleep(0.5)
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                    metrics = r.read().decode()
            except OSError:
                continue
        time.sleep(4)  # the lag gauges are sampled 1 and 3 s after the start
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            metrics = response.read().decode()
    finally:
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=60)
    assert "shop" in metrics and "wh" in metrics, metrics[:2000]
    _assert_no_password("metrics", metrics)
    _assert_no_password("run --metrics-port stdout", stdout)
    _assert_no_password("run --metrics-port stderr", stderr)
    assert process.returncode == 0, stderr
