"""The breaking-change recipe of docs/schemas.md: a v2 stream of the same table, fed side by
side with the old one, whose subjects start without the old stream's history."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from tests.e2e.conftest import Cli, write

#: the old stream's shape, selected from the changed table
PROJECTION = '"SELECT id, amount FROM orders"'


def run_file(tmp_path: Path, shop: Path, *, v2: bool) -> Path:
    text = f"""\
streams:
  path: {tmp_path}/streams.db
sources:
"""
    if not v2:
        text += f"""\
  - name: shop
    connector: query
    database: sqlite:///{shop}
    tables: [orders]
    mode: bulk
"""
    else:
        # The old stream keeps its shape through a projection; the new one reads the table.
        text += f"""\
  - name: shop
    connector: query
    database: sqlite:///{shop}
    query: {PROJECTION}
    key_columns: [id]
    topic: shop.orders
    mode: bulk
  - name: shop-v2
    connector: query
    database: sqlite:///{shop}
    tables: [orders]
    topic: "shop.{{table}}.v2"
    mode: bulk
"""
    return write(tmp_path / ("v2.yaml" if v2 else "v1.yaml"), text)


def ids(cli: Cli, config: Path, topic: str) -> list[int]:
    tailed = cli("tail", str(config), topic, "--from-beginning", "--no-follow")
    assert tailed.returncode == 0, tailed.stderr
    return sorted(json.loads(line)["key"]["id"] for line in tailed.stdout.splitlines())


def test_old_and_v2_streams_of_one_table_both_get_every_change(
    cli: Cli, tmp_path: Path
) -> None:
    shop = tmp_path / "shop.db"
    with sqlite3.connect(shop) as db:
        db.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, amount NUMERIC(10, 2) NOT NULL)")
        db.execute("INSERT INTO orders VALUES (1, 9.99)")
    v1 = run_file(tmp_path, shop, v2=False)
    assert cli("run", str(v1), "--once").returncode == 0

    # The breaking change: a NOT NULL column without a default.
    with sqlite3.connect(shop) as db:
        db.execute("ALTER TABLE orders RENAME TO old_orders")
        db.execute("CREATE TABLE orders (id INTEGER PRIMARY KEY, amount NUMERIC(10, 2) NOT NULL,"
                   " region TEXT NOT NULL)")
        db.execute("INSERT INTO orders SELECT id, amount, 'eu' FROM old_orders")
        db.execute("DROP TABLE old_orders")
    assert cli("schema", "check", str(v1)).returncode == 1

    v2 = run_file(tmp_path, shop, v2=True)
    checked = cli("schema", "check", str(v2))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "shop.orders.v2-value (shop-v2: orders): new subject" in checked.stdout

    with sqlite3.connect(shop) as db:
        db.execute("INSERT INTO orders VALUES (2, 5.00, 'us')")
    ran = cli("run", str(v2), "--once")
    assert ran.returncode == 0, ran.stderr
    with sqlite3.connect(shop) as db:
        db.execute("INSERT INTO orders VALUES (3, 7.50, 'us')")
    assert cli("run", str(v2), "--once").returncode == 0

    assert set(ids(cli, v2, "shop.orders")) == {1, 2, 3}
    assert set(ids(cli, v2, "shop.orders.v2")) == {1, 2, 3}
    listed = {line["subject"]: line for line in map(
        json.loads, cli("schema", "list", str(v2), "--json").stdout.splitlines()
    )}
    assert listed["shop.orders.v2-value"]["versions"] == [1]
    shown = json.loads(cli("schema", "show", str(v2), "shop.orders.v2-value", "--json").stdout)
    assert [f["name"] for f in shown["schema"]["fields"]] == ["id", "amount", "region"]
    old = json.loads(cli("schema", "show", str(v2), "shop.orders-value", "--json").stdout)
    assert "region" not in [f["name"] for f in old["schema"]["fields"]]
