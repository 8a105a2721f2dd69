"""Throwaway database servers for the test suite: a PostgreSQL 15 cluster and a MariaDB.

Each server lives in a temp dir of its own, listens on 127.0.0.1 on a free port, is configured
for change data capture (PostgreSQL ``wal_level=logical``; MariaDB ROW binlog with full row
image and metadata), and is removed on ``stop()`` (and at interpreter exit as a safety net).

PostgreSQL refuses to run as root, so as root the cluster runs as the ``postgres`` user (or a
``liberate-test`` user created for it) in directories that user owns. Fault tests use
``restart()`` (``pg_ctl restart -m fast`` / a MariaDB shutdown and start) and ``kill()``
(SIGKILL of the server process, no cleanup); ``start()`` brings a killed server back.

Servers run without fsync by default: a killed *process* loses nothing committed either way
(the OS keeps the written pages), and tests run much faster. Pass ``durable=True`` where a
benchmark must pay for real flushes.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import psycopg
import pymysql
import pytest
from psycopg import sql
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import make_url

PG_BIN = Path(os.environ.get("LIBERATE_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))
MARIADB_INSTALL_DB = "mariadb-install-db"
MARIADBD = "mariadbd"
PG_SUPERUSER = "liberate"
READY_TIMEOUT_S = 30.0

_FALLBACK_SERVER_USER = "liberate-test"
_PR_SET_PDEATHSIG = 1


class ServerStartError(RuntimeError):
    """A throwaway server did not come up; the message carries the tail of its log."""


class _ServerExited(ServerStartError):
    """The server process died while we waited for it: no point waiting longer."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def log_tail(path: Path, lines: int = 40) -> str:
    """The last ``lines`` lines of a log file, or a note that there is none."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:])


def _wait_until(ready: Callable[[], bool], *, timeout_s: float, what: str, log: Path) -> None:
    deadline = time.monotonic() + timeout_s
    last_error: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            if ready():
                return
        except _ServerExited:
            raise
        except Exception as exc:  # any connect failure just means "not yet"
            last_error = exc
        time.sleep(0.05)
    raise ServerStartError(
        f"{what} not ready after {timeout_s:.0f}s (last error: {last_error!r})\n"
        f"--- {log} (tail) ---\n{log_tail(log)}"
    )


def _server_user() -> pwd.struct_passwd | None:
    """The unprivileged user PostgreSQL runs as when we are root; None when we are not root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", _FALLBACK_SERVER_USER):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    subprocess.run(
        [
            "useradd",
            "--system",
            "--no-create-home",
            "--shell",
            "/usr/sbin/nologin",
            _FALLBACK_SERVER_USER,
        ],
        check=True,
        capture_output=True,
    )
    return pwd.getpwnam(_FALLBACK_SERVER_USER)


def _die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` that kills the server when the test process dies, even by SIGKILL.

    Linux sends the signal when the *thread* that started the child exits, so it is only set
    up from the main thread (a fault test restarting a server from a worker thread would
    otherwise lose it when that thread ends).
    """
    if threading.current_thread() is not threading.main_thread():
        return None
    try:
        libc = ctypes.CDLL(None, use_errno=True)  # loaded here: the child must not import
        prctl = libc.prctl
    except (OSError, AttributeError):
        return None

    def set_parent_death_signal() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)

    return set_parent_death_signal


def _make_base_dir(prefix: str) -> Path:
    # mkdtemp gives 0700; the server user must traverse into it, so open it up to 0755 (its
    # own subdirectories stay private to that user).
    base = Path(tempfile.mkdtemp(prefix=prefix))
    base.chmod(0o755)
    return base


def _run(cmd: Sequence[str], *, what: str, log: Path | None = None) -> None:
    result = subprocess.run(list(cmd), capture_output=True, text=True, check=False)
    if result.returncode != 0:
        tail = f"\n--- {log} (tail) ---\n{log_tail(log)}" if log is not None else ""
        raise ServerStartError(
            f"{what} failed (exit {result.returncode}):\n{result.stdout}\n{result.stderr}{tail}"
        )


class PostgresCluster:
    """A throwaway PostgreSQL 15 cluster configured for logical decoding.

    ``url`` is a superuser URL to the ``postgres`` database (trust auth on 127.0.0.1, so no
    password). Call ``start()`` once; ``stop()`` removes everything.
    """

    def __init__(self, *, durable: bool = False, bin_dir: Path = PG_BIN) -> None:
        self.bin_dir = bin_dir
        self.durable = durable
        self.user = _server_user()
        self.base = _make_base_dir("liberate-pg-")
        self.data_dir = self.base / "data"
        self.socket_dir = self.base / "socket"
        self.log_path = self.base / "server.log"
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self._initialized = False
        self._removed = False
        atexit.register(self.stop)

    @property
    def url(self) -> str:
        return self.url_for("postgres")

    def url_for(self, database: str) -> str:
        """A superuser URL to ``database`` on this cluster."""
        return f"postgresql://{PG_SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def _spawn(self, cmd: Sequence[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        # Popen's own user/group switch makes the server our child (runuser forks under PAM
        # instead): we reap it after a kill, so no zombie keeps postmaster.pid "alive".
        if self.user is not None:
            kwargs.update(user=self.user.pw_uid, group=self.user.pw_gid, extra_groups=[])
        return subprocess.Popen(list(cmd), cwd=self.base, stdin=subprocess.DEVNULL, **kwargs)

    def _chown(self, path: Path) -> None:
        if self.user is not None:
            os.chown(path, self.user.pw_uid, self.user.pw_gid)

    def _init(self) -> None:
        for path in (self.data_dir, self.socket_dir):
            path.mkdir(mode=0o700)
            self._chown(path)
        self.log_path.touch()
        self._chown(self.log_path)
        initdb = self._spawn(
            [
                str(self.bin_dir / "initdb"),
                "-D",
                str(self.data_dir),
                "-U",
                PG_SUPERUSER,
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C.UTF-8",
                "--no-sync",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        output, _ = initdb.communicate()
        if initdb.returncode != 0:
            raise ServerStartError(f"initdb failed:\n{output.decode(errors='replace')}")
        # initdb with --auth=trust already allows host/replication from 127.0.0.1; say it
        # explicitly so the cluster does not depend on the template's defaults.
        with (self.data_dir / "pg_hba.conf").open("a", encoding="utf-8") as hba:
            hba.write("host all all 127.0.0.1/32 trust\n")
            hba.write("host replication all 127.0.0.1/32 trust\n")
        settings = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(self.port),
            "unix_socket_directories": f"'{self.socket_dir}'",
            "wal_level": "logical",
            "max_replication_slots": "10",
            "max_wal_senders": "10",
            "max_connections": "200",
        }
        if not self.durable:
            settings.update(fsync="off", synchronous_commit="off", full_page_writes="off")
        with (self.data_dir / "postgresql.conf").open("a", encoding="utf-8") as conf:
            conf.write("\n# liberate test settings\n")
            conf.writelines(f"{name} = {value}\n" for name, value in settings.items())
        self._initialized = True

    def start(self) -> PostgresCluster:
        """Create the cluster on first use, start it and wait until it accepts connections."""
        if not self._initialized:
            self._init()
        with self.log_path.open("ab") as out:
            self.process = self._spawn(
                [str(self.bin_dir / "postgres"), "-D", str(self.data_dir)],
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent(),
            )
        self.wait_ready()
        return self

    def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> None:
        """Block until a superuser connection succeeds; raise with the log tail otherwise."""

        def ready() -> bool:
            _raise_if_exited(self.process, "postgres", self.log_path)
            with psycopg.connect(self.url, connect_timeout=2) as conn:
                conn.execute("SELECT 1")
            return True

        try:
            _wait_until(ready, timeout_s=timeout_s, what="PostgreSQL", log=self.log_path)
        except ServerStartError:
            self.kill()
            raise

    def restart(self) -> None:
        """What ``pg_ctl restart -m fast`` does: every connection and stream is cut."""
        self._shutdown(signal.SIGINT)  # SIGINT is PostgreSQL's "fast" shutdown
        self.start()

    def kill(self) -> None:
        """SIGKILL the postmaster and its backends (a crash); ``start()`` recovers it."""
        if self.process is None:
            return
        children = _child_pids(self.process.pid)
        self.process.kill()
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGKILL)
        self.process.wait()
        # Backends are not our children: wait until they are gone so shared memory is free.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(_pid_alive(c) for c in children):
            time.sleep(0.02)
        self.process = None

    def shutdown(self) -> None:
        """A clean ("fast") shutdown that keeps the data; ``start()`` brings it back."""
        self._shutdown(signal.SIGINT)

    def _shutdown(self, sig: signal.Signals) -> None:
        if self.process is None:
            return
        self.process.send_signal(sig)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.kill()
        self.process = None

    def stop(self) -> None:
        """Stop the cluster (fast shutdown) and remove its directory."""
        if self._removed:
            return
        self._shutdown(signal.SIGINT)
        shutil.rmtree(self.base, ignore_errors=True)
        self._removed = True


class MariaDBServer:
    """A throwaway MariaDB configured for binlog CDC (ROW, full image, full metadata).

    ``url`` is a root URL without a password (``mysql://root@127.0.0.1:PORT/``). Call
    ``start()`` once; ``stop()`` removes everything.
    """

    def __init__(self, *, durable: bool = False) -> None:
        self.durable = durable
        self.base = _make_base_dir("liberate-mariadb-")
        self.data_dir = self.base / "data"
        self.tmp_dir = self.base / "tmp"
        self.socket_path = self.base / "mysqld.sock"
        self.log_path = self.base / "error.log"
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self._initialized = False
        self._removed = False
        atexit.register(self.stop)

    @property
    def url(self) -> str:
        return self.url_for("")

    def url_for(self, database: str) -> str:
        """A root URL to ``database`` on this server."""
        return f"mysql://root@127.0.0.1:{self.port}/{database}"

    def _user_args(self) -> list[str]:
        return ["--user=root"] if os.geteuid() == 0 else []

    def _init(self) -> None:
        self.data_dir.mkdir()
        self.tmp_dir.mkdir()
        _run(
            [
                MARIADB_INSTALL_DB,
                "--no-defaults",
                f"--datadir={self.data_dir}",
                *self._user_args(),
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
            ],
            what="mariadb-install-db",
        )
        self._initialized = True

    def _server_args(self) -> list[str]:
        args = [
            MARIADBD,
            "--no-defaults",
            *self._user_args(),
            f"--datadir={self.data_dir}",
            f"--port={self.port}",
            "--bind-address=127.0.0.1",
            f"--socket={self.socket_path}",
            f"--tmpdir={self.tmp_dir}",
            f"--pid-file={self.base / 'mysqld.pid'}",
            f"--log-error={self.log_path}",
            f"--log-bin={self.data_dir / 'bin'}",
            "--binlog-format=ROW",
            "--binlog-row-image=FULL",
            "--binlog-row-metadata=FULL",
            "--server-id=1",
            "--skip-name-resolve",
            "--innodb-buffer-pool-size=64M",
            "--max-connections=300",
            "--character-set-server=utf8mb4",
            "--collation-server=utf8mb4_unicode_ci",
        ]
        if not self.durable:
            args += ["--innodb-flush-log-at-trx-commit=2", "--sync-binlog=0"]
        return args

    def start(self) -> MariaDBServer:
        """Create the data dir on first use, start mariadbd and wait until it answers."""
        if not self._initialized:
            self._init()
        with self.log_path.open("ab") as out:
            self.process = subprocess.Popen(
                self._server_args(),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent(),
            )
        self.wait_ready()
        return self

    def connect(self, database: str | None = None) -> pymysql.connections.Connection:
        """A root connection (autocommit) over TCP."""
        return pymysql.connect(
            host="127.0.0.1",
            port=self.port,
            user="root",
            database=database,
            autocommit=True,
            connect_timeout=2,
        )

    def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> None:
        """Block until root can run a query; raise with the error log tail otherwise."""

        def ready() -> bool:
            _raise_if_exited(self.process, "mariadbd", self.log_path)
            conn = self.connect()
            try:
                with conn.cursor() as cur:
                    cur.execute("SELECT 1")
            finally:
                conn.close()
            return True

        try:
            _wait_until(ready, timeout_s=timeout_s, what="MariaDB", log=self.log_path)
        except ServerStartError:
            self._terminate(signal.SIGKILL)
            raise

    def _terminate(self, sig: signal.Signals, timeout_s: float = 30.0) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def restart(self) -> None:
        """A clean shutdown and a start on the same port: every connection is cut."""
        self._terminate(signal.SIGTERM)
        self.start()

    def kill(self) -> None:
        """SIGKILL mariadbd (a crash); ``start()`` recovers it."""
        self._terminate(signal.SIGKILL)

    def shutdown(self) -> None:
        """A clean shutdown that keeps the data; ``start()`` brings it back on the same port."""
        self._terminate(signal.SIGTERM)

    def stop(self) -> None:
        """Shut mariadbd down and remove its directory."""
        if self._removed:
            return
        self._terminate(signal.SIGTERM)
        shutil.rmtree(self.base, ignore_errors=True)
        self._removed = True


class ExternalServer:
    """A server someone else runs (``LIBERATE_TEST_*_URL``, e.g. the docker-compose stack).

    ``url`` must be an administrative URL (allowed to create and drop databases). Fault
    injection is impossible here: ``restart``/``kill``/``start`` skip the calling test.
    """

    def __init__(self, url: str) -> None:
        parsed = make_url(url)
        backend = parsed.get_backend_name()
        if backend not in ("postgresql", "mysql", "mariadb"):
            raise ValueError(f"unsupported external test server scheme: {parsed.drivername}")
        # Plain schemes: liberate.database maps them to the drivers we ship.
        self._url = parsed.set(drivername="mysql" if backend == "mariadb" else backend)

    @property
    def url(self) -> str:
        return self._url.render_as_string(hide_password=False)

    def url_for(self, database: str) -> str:
        """The same credentials, connected to ``database``."""
        return self._url.set(database=database).render_as_string(hide_password=False)

    def start(self) -> ExternalServer:
        pytest.skip("fault injection needs a throwaway server, not an external one")

    def restart(self) -> None:
        pytest.skip("fault injection needs a throwaway server, not an external one")

    def kill(self) -> None:
        pytest.skip("fault injection needs a throwaway server, not an external one")

    def shutdown(self) -> None:
        pytest.skip("fault injection needs a throwaway server, not an external one")

    def stop(self) -> None:
        """Nothing to do: the server is not ours."""


Server = PostgresCluster | MariaDBServer | ExternalServer


def new_database_name() -> str:
    """A unique database name, safe unquoted on every server (lowercase, no dashes)."""
    return f"lt_{uuid.uuid4().hex[:16]}"


def create_postgres_database(server: Server, name: str) -> str:
    """Create database ``name`` on a PostgreSQL ``server``; return its URL."""
    with psycopg.connect(server.url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return server.url_for(name)


def drop_postgres_database(server: Server, name: str) -> None:
    """Drop ``name`` with its replication slots (a slot would block the drop and pin WAL)."""
    with psycopg.connect(server.url, autocommit=True) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots"
            " WHERE database = %s AND active_pid IS NOT NULL",
            (name,),
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                conn.execute(
                    "SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots"
                    " WHERE database = %s",
                    (name,),
                )
                break
            except psycopg.errors.ObjectInUse:
                # The terminated walsender may not have released its slot yet.
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def _mysql_connect(server: Server) -> pymysql.connections.Connection:
    url = make_url(server.url)
    return pymysql.connect(
        host=url.host or "127.0.0.1",
        port=url.port or 3306,
        user=url.username or "root",
        password=url.password or "",
        autocommit=True,
        connect_timeout=5,
    )


def _mysql_quote(name: str) -> str:
    return str(mysql.dialect().identifier_preparer.quote_identifier(name))


def create_mysql_database(server: Server, name: str) -> str:
    """Create database ``name`` (utf8mb4) on a MySQL/MariaDB ``server``; return its URL."""
    conn = _mysql_connect(server)
    try:
        with conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE {_mysql_quote(name)} CHARACTER SET utf8mb4")
    finally:
        conn.close()
    return server.url_for(name)


def drop_mysql_database(server: Server, name: str) -> None:
    """Drop database ``name`` on a MySQL/MariaDB ``server`` if it exists."""
    conn = _mysql_connect(server)
    try:
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {_mysql_quote(name)}")
    finally:
        conn.close()


def _raise_if_exited(process: subprocess.Popen[bytes] | None, name: str, log: Path) -> None:
    if process is not None and process.poll() is not None:
        raise _ServerExited(
            f"{name} exited with {process.returncode}\n--- {log} (tail) ---\n{log_tail(log)}"
        )


def _pid_alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie counts as gone: it holds no port and no memory)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _child_pids(pid: int) -> list[int]:
    children: list[int] = []
    for stat_path in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = stat_path.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                children.append(int(stat_path.parent.name))
    return children
