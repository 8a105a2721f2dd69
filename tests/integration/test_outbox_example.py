"""config/outbox_example.py runs as the README tells: the shop, the relay, the sink, billing."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

from tests.integration._outbox_support import ROOT, child_env


def test_the_example_relays_each_order_event_and_billing_invoices_once(tmp_path: Path) -> None:
    def run() -> list[str]:
        done = subprocess.run(
            [sys.executable, str(ROOT / "config" / "outbox_example.py")],
            cwd=tmp_path, env=child_env(tmp_path), capture_output=True, text=True,
            timeout=180, check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout.splitlines()

    assert run() == [
        "shop: placed orders 1 and 2 with their OrderPlaced events",
        "shop: order 1 again failed; neither the order nor its event was kept",
        "relay: 2 event(s) into outbox.event.Order; the sink kept the latest per order",
        "billing (first read): 2 new invoice(s)",
        "billing (redelivery): 0 new invoice(s)",
        "billing: 2 invoice(s) in total, one per order",
    ]
    second = run()  # two more orders, relayed and invoiced on top of the first two
    assert second[2].startswith("relay: 2 event(s)")
    assert second[3:] == [
        "billing (first read): 2 new invoice(s)",
        "billing (redelivery): 0 new invoice(s)",
        "billing: 4 invoice(s) in total, one per order",
    ]
    demo = tmp_path / ".liberate" / "outbox-demo"
    with sqlite3.connect(demo / "warehouse.db") as conn:
        query = "SELECT aggregateid, event_type FROM order_events ORDER BY 1"
        rows = conn.execute(query).fetchall()
    assert rows == [(str(n), "OrderPlaced") for n in (1, 2, 3, 4)]
    with sqlite3.connect(demo / "shop.db") as conn:
        assert conn.execute("SELECT count(*) FROM outbox").fetchone() == (0,)
