"""The outbox, end to end, on SQLite: ``python config/outbox_example.py`` from the repository.

1. The shop (an application) places orders: the order row and its ``OrderPlaced`` event are
   written in one transaction, so there is never an order without its event, nor an event
   without its order. A failed order leaves neither.
2. The relay (``config/outbox.yaml``, ``connector: outbox``) moves the events into the
   embedded stream, topic ``outbox.event.Order``, and a SQL sink keeps the latest event of
   every order in ``warehouse.db``.
3. Billing (a consumer service) reads the topic and writes an invoice per order, recording the
   event ids it has processed in its own transaction with ``IdempotentConsumer``: reading the
   topic again (a redelivery) invoices nothing twice.

Everything lands under ``.liberate/outbox-demo/`` of the working directory.
"""

from __future__ import annotations

import json
import sys
from decimal import Decimal
from pathlib import Path

import sqlalchemy as sa

import outbox
from liberate.config.loader import load_run_file
from liberate.runtime import Pipeline, open_backend
from liberate.serde import RecordDeserializer
from liberate.streams.embedded import EmbeddedBackend
from outbox import IdempotentConsumer, OutboxEvent

RUN_FILE = Path(__file__).with_name("outbox.yaml")
DEMO = Path(".liberate/outbox-demo")
TOPIC = "outbox.event.Order"

META = sa.MetaData()
ORDERS = sa.Table(
    "orders", META,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("customer", sa.String(100), nullable=False),
    sa.Column("total", sa.Numeric(10, 2), nullable=False),
)
INVOICES = sa.Table(
    "invoices", META,
    sa.Column("order_id", sa.String(40), primary_key=True),
    sa.Column("amount", sa.String(20), nullable=False),
)


# -- 1. the shop ---------------------------------------------------------------------------------


def place_order(shop: sa.Engine, order_id: int, customer: str, total: Decimal) -> None:
    """The order and its event, in one transaction."""
    with shop.begin() as conn:
        conn.execute(ORDERS.insert().values(id=order_id, customer=customer, total=total))
        outbox.publish(conn, OutboxEvent(
            aggregate_type="Order",
            aggregate_id=str(order_id),
            type="OrderPlaced",
            payload={"order_id": order_id, "customer": customer, "total": total},
        ))


def run_shop(shop: sa.Engine, first_id: int) -> None:
    for offset, (customer, total) in enumerate([("Ada", "34.90"), ("Grace", "21.50")]):
        place_order(shop, first_id + offset, customer, Decimal(total))
    print(f"shop: placed orders {first_id} and {first_id + 1} with their OrderPlaced events")
    try:
        # The same id again: the INSERT fails, and the event goes with the failed transaction.
        place_order(shop, first_id, "Linus", Decimal("7.25"))
    except sa.exc.IntegrityError:
        print(f"shop: order {first_id} again failed; neither the order nor its event was kept")


# -- 2. the relay --------------------------------------------------------------------------------


def run_relay() -> None:
    config = load_run_file(RUN_FILE)
    backend = open_backend(config.streams)
    try:
        report = Pipeline(config, backend, once=True).run()
    finally:
        backend.close()
    if not report.ok:
        sys.exit("relay failed: " + "; ".join(report.errors))
    relayed = sum(report.sources["shop-outbox"].values())
    print(f"relay: {relayed} event(s) into {TOPIC}; the sink kept the latest per order")


# -- 3. billing, an idempotent consumer ----------------------------------------------------------


def run_billing(billing: sa.Engine, stream: Path) -> int:
    """Read every event of the topic; invoice each order once. Returns invoices written.

    Offsets are never committed, so each run reads the topic from the beginning again: the
    redelivery a consumer sees after a crash, only bigger.
    """
    consumer = IdempotentConsumer("billing")
    with billing.begin() as conn:
        INVOICES.create(conn, checkfirst=True)
        consumer.create_table(conn)
    backend = EmbeddedBackend(stream)
    backend.open()
    written = 0
    try:
        reader = backend.consumer("billing", topics=[TOPIC])
        deserializer = RecordDeserializer(backend.registry())
        try:
            while batch := reader.poll(500, 0.5):
                for record in deserializer.deserialize(batch):
                    event_id = dict(record.headers)["id"].decode()
                    payload = json.loads((record.value or {})["payload"])
                    with billing.begin() as conn:  # the mark and the invoice commit together
                        if not consumer.mark(conn, event_id):
                            continue  # seen before: a redelivery
                        conn.execute(INVOICES.insert().values(
                            order_id=str(payload["order_id"]), amount=payload["total"]))
                        written += 1
        finally:
            reader.close()
    finally:
        backend.close()
    return written


def main() -> None:
    DEMO.mkdir(parents=True, exist_ok=True)
    shop = sa.create_engine(f"sqlite:///{DEMO / 'shop.db'}")
    billing = sa.create_engine(f"sqlite:///{DEMO / 'billing.db'}")
    try:
        with shop.begin() as conn:
            ORDERS.create(conn, checkfirst=True)
            outbox.create_table(conn)
            first_id = (conn.execute(sa.select(sa.func.max(ORDERS.c.id))).scalar() or 0) + 1
        run_shop(shop, first_id)
        run_relay()
        for attempt in ("first read", "redelivery"):
            written = run_billing(billing, DEMO / "streams.db")
            print(f"billing ({attempt}): {written} new invoice(s)")
        with billing.connect() as conn:
            count = conn.execute(sa.select(sa.func.count()).select_from(INVOICES)).scalar()
        print(f"billing: {count} invoice(s) in total, one per order")
    finally:
        shop.dispose()
        billing.dispose()


if __name__ == "__main__":
    main()
