"""The sandbox's demo data: a small shop in the schema ``shop``.

It exercises what a migration meets: foreign keys, a trigger, a view, a table
without a primary key, utf8mb4 text and a JSON column. The rows come from a
seeded generator, so every sandbox holds the same data.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator, Sequence
from typing import Any

import pymysql

SCHEMA = "shop"
SEED = 20261204
CUSTOMERS = 600
PRODUCTS = 200
ORDERS = 1500
ITEMS_PER_ORDER = (1, 3)
_BATCH = 500

DDL = (
    f"CREATE DATABASE IF NOT EXISTS {SCHEMA} CHARACTER SET utf8mb4",
    f"""CREATE TABLE {SCHEMA}.customers (
  id INT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
  email VARCHAR(190) NOT NULL UNIQUE,
  name VARCHAR(200) NOT NULL,
  city VARCHAR(100) NULL,
  created_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4""",
    f"""CREATE TABLE {SCHEMA}.products (
  id INT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
  sku VARCHAR(32) NOT NULL UNIQUE,
  title VARCHAR(200) NOT NULL,
  price_cents INT UNSIGNED NOT NULL,
  attributes JSON NULL,
  stock INT NOT NULL DEFAULT 0
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4""",
    f"""CREATE TABLE {SCHEMA}.orders (
  id INT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
  customer_id INT UNSIGNED NOT NULL,
  status ENUM('new','paid','shipped','cancelled') NOT NULL DEFAULT 'new',
  note TEXT NULL,
  created_at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  CONSTRAINT fk_orders_customer FOREIGN KEY (customer_id)
    REFERENCES {SCHEMA}.customers (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4""",
    f"""CREATE TABLE {SCHEMA}.order_items (
  order_id INT UNSIGNED NOT NULL,
  line_no SMALLINT UNSIGNED NOT NULL,
  product_id INT UNSIGNED NOT NULL,
  quantity SMALLINT UNSIGNED NOT NULL,
  price_cents INT UNSIGNED NOT NULL,
  PRIMARY KEY (order_id, line_no),
  CONSTRAINT fk_items_order FOREIGN KEY (order_id)
    REFERENCES {SCHEMA}.orders (id) ON DELETE CASCADE,
  CONSTRAINT fk_items_product FOREIGN KEY (product_id)
    REFERENCES {SCHEMA}.products (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4""",
    # A log without a primary key, written by a trigger.
    f"""CREATE TABLE {SCHEMA}.order_events (
  order_id INT UNSIGNED NOT NULL,
  event VARCHAR(32) NOT NULL,
  at DATETIME(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3),
  KEY (order_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4""",
    f"""CREATE TRIGGER {SCHEMA}.orders_status_log AFTER UPDATE ON {SCHEMA}.orders
FOR EACH ROW
  INSERT INTO {SCHEMA}.order_events (order_id, event)
  SELECT NEW.id, NEW.status FROM DUAL WHERE NEW.status <> OLD.status""",
    f"""CREATE VIEW {SCHEMA}.order_totals AS
SELECT o.id AS order_id, o.customer_id, SUM(i.quantity * i.price_cents) AS total
  FROM {SCHEMA}.orders o JOIN {SCHEMA}.order_items i ON i.order_id = o.id
 GROUP BY o.id, o.customer_id""",
)

_FIRST = ("Ana", "Björn", "Chloé", "Dmitri", "Eşref", "Fatima", "Grégoire", "Hana")
_LAST = ("Müller", "Ödegaard", "Silva", "Nakamura", "O'Brien", "Kowalski", "Søren")
_CITIES = ("Zürich", "São Paulo", "Kraków", "東京", "Reykjavík", "Montréal", None)
_WORDS = ("lamp", "chair", "kettle", "desk", "rug", "mug", "shelf", "clock")


def _customers(rng: random.Random) -> Iterator[tuple[Any, ...]]:
    for n in range(1, CUSTOMERS + 1):
        name = f"{rng.choice(_FIRST)} {rng.choice(_LAST)}"
        yield (n, f"customer{n}@example.test", name, rng.choice(_CITIES))


def _products(rng: random.Random) -> Iterator[tuple[Any, ...]]:
    for n in range(1, PRODUCTS + 1):
        attributes = {"colour": rng.choice(["red", "green", "blue"]), "size": n % 5}
        title = f"{rng.choice(_WORDS).title()} №{n} ☕"
        price = rng.randint(199, 99_999)
        yield (n, f"SKU-{n:05d}", title, price, json.dumps(attributes), n % 50)


def _orders(rng: random.Random) -> Iterator[tuple[Any, ...]]:
    statuses = ("new", "paid", "shipped", "cancelled")
    for n in range(1, ORDERS + 1):
        note = rng.choice([None, "leave at the door", "gift 🎁", "rush"])
        yield (n, rng.randint(1, CUSTOMERS), rng.choice(statuses), note)


def _items(rng: random.Random) -> Iterator[tuple[Any, ...]]:
    for order in range(1, ORDERS + 1):
        for line in range(1, rng.randint(*ITEMS_PER_ORDER) + 1):
            product = rng.randint(1, PRODUCTS)
            yield (order, line, product, rng.randint(1, 4), rng.randint(199, 9_999))


_INSERTS: Sequence[tuple[str, Any]] = (
    (
        f"INSERT INTO {SCHEMA}.customers (id, email, name, city) "
        "VALUES (%s, %s, %s, %s)",
        _customers,
    ),
    (
        f"INSERT INTO {SCHEMA}.products "
        "(id, sku, title, price_cents, attributes, stock) "
        "VALUES (%s, %s, %s, %s, %s, %s)",
        _products,
    ),
    (
        f"INSERT INTO {SCHEMA}.orders (id, customer_id, status, note) "
        "VALUES (%s, %s, %s, %s)",
        _orders,
    ),
    (
        f"INSERT INTO {SCHEMA}.order_items "
        "(order_id, line_no, product_id, quantity, price_cents) "
        "VALUES (%s, %s, %s, %s, %s)",
        _items,
    ),
)


def load(connection: pymysql.connections.Connection[Any]) -> None:
    """Create the shop schema and fill it with the seeded rows."""
    rng = random.Random(SEED)
    with connection.cursor() as cursor:
        for statement in DDL:
            cursor.execute(statement)
        for statement, rows in _INSERTS:
            batch: list[tuple[Any, ...]] = []
            for row in rows(rng):
                batch.append(row)
                if len(batch) == _BATCH:
                    cursor.executemany(statement, batch)
                    batch.clear()
            if batch:
                cursor.executemany(statement, batch)
    connection.commit()


def create_app_user(
    connection: pymysql.connections.Connection[Any], user: str, password: str
) -> None:
    """Create the application user that may read and write ``shop``."""
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE USER IF NOT EXISTS %s@'%%' IDENTIFIED BY %s", (user, password)
        )
        cursor.execute(
            f"GRANT SELECT, INSERT, UPDATE, DELETE ON {SCHEMA}.* TO %s@'%%'", (user,)
        )
    connection.commit()
