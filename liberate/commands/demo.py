"""``liberate demo FILE``: the quickstart. Fills (or refreshes) a sample shop database in SQLite,
runs FILE once, and prints what went where.

Only SQLite sources are touched: the demo never writes sample tables into a real server.
"""

from __future__ import annotations

import datetime as dt
import random
import sys
import time
from decimal import Decimal
from typing import TextIO

import sqlalchemy as sa

from liberate.commands.run import print_report
from liberate.config.base import DatabaseSettings
from liberate.config.loader import load_run_file
from liberate.database import create_engine, database_url, mask_url
from liberate.errors import ConfigError, FatalError
from liberate.runtime import Pipeline, open_backend

_META = sa.MetaData()
CUSTOMERS = sa.Table(
    "customers",
    _META,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("email", sa.String(200), nullable=False),
    sa.Column("updated_at", sa.DateTime, nullable=False),
)
PRODUCTS = sa.Table(
    "products",
    _META,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("title", sa.String(200), nullable=False),
    sa.Column("price", sa.Numeric(10, 2), nullable=False),
    sa.Column("updated_at", sa.DateTime, nullable=False),
)
ORDERS = sa.Table(
    "orders",
    _META,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("customer_id", sa.Integer, nullable=False),
    sa.Column("product_id", sa.Integer, nullable=False),
    sa.Column("quantity", sa.Integer, nullable=False),
    sa.Column("amount", sa.Numeric(12, 2), nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("note", sa.Text),
    sa.Column("updated_at", sa.DateTime, nullable=False),
)
_NAMES = ["Ada", "Grace", "Linus", "Barbara", "Ken", "Margaret", "Dennis", "Frances", "Edsger"]
_PRODUCTS = [("Kettle", "34.90"), ("Teapot", "21.50"), ("Mug", "7.25"), ("Tea, 1 kg", "18.00")]


def demo(path: str, *, out: TextIO = sys.stdout) -> int:
    """Create or refresh the sample data, run ``path`` once, print the report and table counts."""
    config = load_run_file(path)
    settings = next(
        (s for s in config.sources if isinstance(s, DatabaseSettings)), None
    )
    if not isinstance(settings, DatabaseSettings):
        raise ConfigError(f"{path}: the demo needs a source with a database: URL")
    url = database_url(settings)
    if url.get_backend_name() != "sqlite":
        raise ConfigError(
            f"the demo only writes sample data into SQLite, not {mask_url(url)}",
            hint="use config/quickstart.yaml, or run your own file with `liberate run FILE --once`",
        )
    engine = create_engine(settings)
    try:
        created = _fill(engine)
    finally:
        engine.dispose()
    print(f"sample shop database {mask_url(url)}: {created}", file=out)
    delay = getattr(settings, "timestamp_delay", None)
    if isinstance(delay, dt.timedelta) and delay.total_seconds() > 0:
        # Rows newer than the delay window are left for a later poll: wait it out once.
        print(f"waiting {delay.total_seconds():g}s (the source's timestamp_delay)", file=out)
        time.sleep(delay.total_seconds())

    backend = open_backend(config.streams)
    try:
        report = Pipeline(config, backend, once=True).run()
    finally:
        backend.close()
    print_report(report, out)
    if not report.ok:
        raise FatalError("; ".join(report.errors))
    for sink in config.sinks:
        if isinstance(sink, DatabaseSettings):
            _print_tables(sink, sink.name, out)
    return 0


def _fill(engine: sa.Engine) -> str:
    """First run: create and fill the tables. Later runs: add orders and change some rows."""
    rng = random.Random()
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    with engine.begin() as conn:
        _META.create_all(conn)
        existing = conn.execute(sa.select(sa.func.count()).select_from(ORDERS)).scalar_one()
        if existing == 0:
            conn.execute(
                CUSTOMERS.insert(),
                [
                    {"id": i + 1, "name": n, "email": f"{n.lower()}@example.com", "updated_at": now}
                    for i, n in enumerate(_NAMES)
                ],
            )
            conn.execute(
                PRODUCTS.insert(),
                [
                    {"id": i + 1, "title": t, "price": p, "updated_at": now}
                    for i, (t, p) in enumerate(_PRODUCTS)
                ],
            )
            conn.execute(ORDERS.insert(), [_order(i + 1, rng, now) for i in range(100)])
            return "created 9 customers, 4 products, 100 orders"
        next_id = conn.execute(sa.select(sa.func.max(ORDERS.c.id))).scalar_one() + 1
        conn.execute(ORDERS.insert(), [_order(next_id + i, rng, now) for i in range(10)])
        shipped = (
            ORDERS.update()
            .where(ORDERS.c.status == "new")
            .where(ORDERS.c.id <= next_id - 90)
            .values(status="shipped", updated_at=now)
        )
        changed = conn.execute(shipped).rowcount
        return f"added 10 orders, shipped {changed}"


def _order(order_id: int, rng: random.Random, now: dt.datetime) -> dict[str, object]:
    quantity = rng.randint(1, 5)
    product = rng.randrange(len(_PRODUCTS))
    return {
        "id": order_id,
        "customer_id": rng.randint(1, len(_NAMES)),
        "product_id": product + 1,
        "quantity": quantity,
        "amount": Decimal(_PRODUCTS[product][1]) * quantity,
        "status": "new",
        "note": rng.choice([None, "gift wrap", "leave at the door", "café au lait"]),
        "updated_at": now,
    }


def _print_tables(settings: DatabaseSettings, name: str, out: TextIO) -> None:
    engine = create_engine(settings)
    try:
        with engine.connect() as conn:
            # liberate's own bookkeeping (the sink's offsets table) is not the user's data.
            tables = sorted(
                t for t in sa.inspect(conn).get_table_names() if not t.startswith("liberate_")
            )
            print(f"sink {name} database {mask_url(database_url(settings))}:", file=out)
            for table in tables:
                count = conn.execute(
                    sa.select(sa.func.count()).select_from(sa.table(table))
                ).scalar_one()
                print(f"  table {table:<34} {count:>10} row(s)", file=out)
    finally:
        engine.dispose()
