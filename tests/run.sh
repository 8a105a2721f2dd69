#!/usr/bin/env bash
# The whole test suite, from a fresh machine: a virtualenv with liberate and its test tools,
# then ruff, mypy and pytest. The pytest fixtures start a throwaway PostgreSQL
# (wal_level=logical) and MariaDB (ROW binlog) on free ports and remove them afterwards.
# Point LIBERATE_TEST_POSTGRES_URL / LIBERATE_TEST_MYSQL_URL at external servers to use those.
# Extra arguments go to pytest (e.g. `bash tests/run.sh tests/unit -x`).
set -euo pipefail
cd "$(dirname "$0")/.."

need_pkg() { # binary, debian package
  if [ ! -x "$1" ] && command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    echo "installing $2 (needed by the integration tests)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2" >/dev/null
  fi
}
need_pkg /usr/lib/postgresql/15/bin/initdb postgresql-15
need_pkg /usr/sbin/mariadbd mariadb-server

VENV=${LIBERATE_VENV:-.venv}
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check -e ".[test]"

echo "== ruff"
"$VENV/bin/ruff" check .
echo "== mypy"
"$VENV/bin/mypy"
echo "== pytest"
# Four workers (pytest-xdist), a test file per worker at a time: most tests wait on servers and
# child processes rather than on the CPU, so even two cores finish about three times sooner.
# Each worker starts its own throwaway servers. LIBERATE_TEST_WORKERS=0 runs everything in one.
"$VENV/bin/python" -m pytest -q -p no:cacheprovider \
  -n "${LIBERATE_TEST_WORKERS:-4}" --dist loadfile "$@"
