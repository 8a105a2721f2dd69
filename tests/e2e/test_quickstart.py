"""The README's first command, as a user runs it: the demo, twice."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

from tests.e2e.conftest import REPO, Cli


def test_quickstart_demo_liberates_the_sample_shop_and_runs_again(cli: Cli, tmp_path: Path) -> None:
    config = tmp_path / "config"
    config.mkdir()
    shutil.copy(REPO / "config" / "quickstart.yaml", config / "quickstart.yaml")

    first = cli("demo", "config/quickstart.yaml")
    assert first.returncode == 0, first.stderr
    assert "created 9 customers, 4 products, 100 orders" in first.stdout
    assert "source shop: produced 113 record(s)" in first.stdout
    assert "shop.orders" in first.stdout
    assert "sink warehouse: wrote 113 record(s)" in first.stdout
    assert "table orders" in first.stdout

    second = cli("demo", "config/quickstart.yaml")
    assert second.returncode == 0, second.stderr
    assert "added 10 orders, shipped" in second.stdout
    shipped = int(second.stdout.split("shipped ")[1].split()[0])
    assert f"source shop: produced {10 + shipped} record(s)" in second.stdout

    with sqlite3.connect(tmp_path / ".liberate" / "demo" / "warehouse.db") as db:
        (orders,) = db.execute("SELECT count(*) FROM orders").fetchone()
        (shipped_rows,) = db.execute(
            "SELECT count(*) FROM orders WHERE status = 'shipped'"
        ).fetchone()
    assert orders == 110
    assert shipped_rows == shipped
