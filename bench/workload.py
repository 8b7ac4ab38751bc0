"""An application-like write load on the ``shop`` schema, with a ledger.

The workload writes as the application user (``shop_app``): it inserts
customers, inserts orders with one to three lines, changes order statuses
(which fires the ``orders_status_log`` trigger), restocks products and edits
their JSON attributes, and deletes orders (the lines follow by cascade). Each
operation is one transaction; it enters the ledger only after ``COMMIT``
returned, so the ledger holds exactly the writes the server acknowledged.

It rides out what a cutover does to an application: sessions killed, the
account locked, the server restarting, the endpoint moving to another server.
On any error it drops the connection and connects again every 50 ms, and it
measures the longest gap between two acknowledged writes ("write downtime").

It only deletes or changes the status of orders it created itself, and the
server picks every new key (AUTO_INCREMENT, above the demo data's ids), so it
never touches rows another test relies on.

Command line (the password comes from the environment, never an argument)::

    python bench/workload.py --host 127.0.0.1 --port PORT --user shop_app \\
        --password-env REPLICATOR_APP_PASSWORD --seconds 30 --rate 200 \\
        --out bench/results/workload.json

It prints a JSON summary on stdout and writes the summary and the full ledger
to ``--out``.
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import os
import random
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar, Self, TypeAlias

import pymysql

from replicator.sandbox.demo import CUSTOMERS, ITEMS_PER_ORDER, PRODUCTS, SCHEMA

RECONNECT_INTERVAL_S = 0.05
CONNECT_TIMEOUT_S = 2
# A statement blocked longer than this (a freeze holding a lock) counts as a
# failure; the connection is dropped and the outcome of a COMMIT is in doubt.
READ_TIMEOUT_S = 10
WRITE_TIMEOUT_S = 10
STOP_GRACE_S = READ_TIMEOUT_S + 5
CHECK_CHUNK = 500
STOCK_CHANGE = (-3, 5)
CONNECT_FAILURE = "connect"

if TYPE_CHECKING:
    Connection: TypeAlias = pymysql.connections.Connection[Any]


class OpKind(StrEnum):
    """The writes the workload makes."""

    INSERT_CUSTOMER = "insert_customer"
    INSERT_ORDER = "insert_order"
    UPDATE_STATUS = "update_status"
    UPDATE_PRODUCT = "update_product"
    DELETE_ORDER = "delete_order"


# Relative frequency of each operation.
OP_WEIGHTS: dict[OpKind, int] = {
    OpKind.INSERT_CUSTOMER: 15,
    OpKind.INSERT_ORDER: 35,
    OpKind.UPDATE_STATUS: 25,
    OpKind.UPDATE_PRODUCT: 15,
    OpKind.DELETE_ORDER: 10,
}
# The next status an order moves to; always a change, so the trigger fires.
NEXT_STATUS = {
    "new": ("paid", "cancelled"),
    "paid": ("shipped", "cancelled"),
    "shipped": ("new",),
    "cancelled": ("new",),
}
# Changes to an order this worker owns; when their COMMIT fails the order's
# state is unknown, so the worker leaves that order alone from then on.
ORDER_CHANGES = (OpKind.UPDATE_STATUS, OpKind.DELETE_ORDER)
OWN_CUSTOMER_SHARE = 0.5
_NOTES = (None, "leave at the door", "express 🚚", "Grüße aus Zürich")


@dataclass(frozen=True)
class Op:
    """One acknowledged (or in-doubt) write.

    ``key`` is the primary key the write touched, as the server assigned it;
    ``time`` is the wall clock (epoch seconds) when ``COMMIT`` returned.
    ``items`` is the number of lines of an inserted order; ``status`` the
    status an update set.
    """

    op: OpKind
    table: str
    key: int
    time: float
    items: int = 0
    status: str | None = None


@dataclass(frozen=True)
class Failure:
    """A failed connection attempt (``op == "connect"``) or operation."""

    time: float
    op: str
    errno: int | None
    message: str


@dataclass
class Expected:
    """The rows the ledger says a server must hold."""

    customers: set[int] = field(default_factory=set)
    # order id -> (number of lines, status; None when an update is in doubt)
    orders: dict[int, tuple[int, str | None]] = field(default_factory=dict)


def expected_state(acknowledged: Iterable[Op], in_doubt: Iterable[Op]) -> Expected:
    """Replay the ledger into the rows a server must hold.

    ``acknowledged`` must be in acknowledgement order (the ledger's order).
    An in-doubt delete may have happened, so its order is not expected; an
    in-doubt status change leaves the status unknown.
    """
    expected = Expected()
    for op in acknowledged:
        _replay(expected, op)
    for op in in_doubt:
        if op.op is OpKind.DELETE_ORDER:
            expected.orders.pop(op.key, None)
        elif op.op is OpKind.UPDATE_STATUS and op.key in expected.orders:
            expected.orders[op.key] = (expected.orders[op.key][0], None)
    return expected


def _replay(expected: Expected, op: Op) -> None:
    if op.op is OpKind.INSERT_CUSTOMER:
        expected.customers.add(op.key)
    elif op.op is OpKind.INSERT_ORDER:
        expected.orders[op.key] = (op.items, "new")
    elif op.op is OpKind.UPDATE_STATUS and op.key in expected.orders:
        expected.orders[op.key] = (expected.orders[op.key][0], op.status)
    elif op.op is OpKind.DELETE_ORDER:
        expected.orders.pop(op.key, None)


@dataclass
class WorkloadResult:
    """What a workload run did: its ledger, failures and write downtime.

    ``errors`` counts every failure: failed operations and failed connection
    attempts (one each 50 ms while the server is unreachable). ``in_doubt``
    holds the operations whose ``COMMIT`` failed: the server may or may not
    have applied them. ``longest_gap`` is the longest time between two
    consecutive acknowledged writes, from ``gap_start`` to ``gap_end``
    (epoch seconds; None with fewer than two writes).
    """

    run_id: str
    started: float
    stopped: float
    acknowledged: list[Op]
    in_doubt: list[Op]
    failures: list[Failure]
    errors: int
    ops_per_second: float
    longest_gap: float
    gap_start: float | None
    gap_end: float | None

    def acknowledged_after(self, moment: float) -> list[Op]:
        """Return the writes acknowledged after ``moment`` (epoch seconds)."""
        return [op for op in self.acknowledged if op.time > moment]

    def expected(self) -> Expected:
        """Return the rows this run's acknowledged writes leave behind."""
        return expected_state(self.acknowledged, self.in_doubt)

    def check_present(self, connection: Connection) -> list[str]:
        """Return the acknowledged writes a server does not show; [] when all do.

        Checks every customer and order inserted and not deleted, the number
        of lines of each order, and the last status set on each order. Entries
        read ``customers.ID``, ``orders.ID``, ``order_items.ID: N of M`` and
        ``orders.ID.status: FOUND, expected WANTED``.
        """
        expected = self.expected()
        missing = _missing_customers(connection, expected.customers)
        return missing + _order_differences(connection, expected.orders)

    def summary(self) -> dict[str, Any]:
        """Return the figures without the ledger."""
        return {
            "run_id": self.run_id,
            "started": self.started,
            "stopped": self.stopped,
            "acknowledged": len(self.acknowledged),
            "in_doubt": len(self.in_doubt),
            "errors": self.errors,
            "ops_per_second": round(self.ops_per_second, 1),
            "longest_gap": round(self.longest_gap, 4),
            "gap_start": self.gap_start,
            "gap_end": self.gap_end,
        }

    def to_json(self) -> dict[str, Any]:
        """Return the summary, the ledger and the failures."""
        return {
            "summary": self.summary(),
            "acknowledged": [asdict(op) for op in self.acknowledged],
            "in_doubt": [asdict(op) for op in self.in_doubt],
            "failures": [asdict(failure) for failure in self.failures],
        }


def _chunks(keys: Sequence[int]) -> Iterable[Sequence[int]]:
    for start in range(0, len(keys), CHECK_CHUNK):
        yield keys[start : start + CHECK_CHUNK]


def _select_by_ids(
    connection: Connection, statement: str, keys: Iterable[int]
) -> list[tuple[Any, ...]]:
    """Run ``statement`` (with one ``{ids}`` placeholder) over ``keys`` in chunks."""
    rows: list[tuple[Any, ...]] = []
    with connection.cursor() as cursor:
        for chunk in _chunks(sorted(keys)):
            placeholders = ", ".join(["%s"] * len(chunk))
            cursor.execute(statement.format(ids=placeholders), tuple(chunk))
            rows.extend(cursor.fetchall())
    return rows


def _missing_customers(connection: Connection, customers: set[int]) -> list[str]:
    statement = f"SELECT id FROM {SCHEMA}.customers WHERE id IN ({{ids}})"
    found = {int(row[0]) for row in _select_by_ids(connection, statement, customers)}
    return [f"customers.{key}" for key in sorted(customers - found)]


def _order_differences(
    connection: Connection, orders: dict[int, tuple[int, str | None]]
) -> list[str]:
    statement = (
        f"SELECT o.id, o.status, COUNT(i.line_no) FROM {SCHEMA}.orders o "
        f"LEFT JOIN {SCHEMA}.order_items i ON i.order_id = o.id "
        "WHERE o.id IN ({ids}) GROUP BY o.id, o.status"
    )
    found = {
        int(row[0]): (str(row[1]), int(row[2]))
        for row in _select_by_ids(connection, statement, orders)
    }
    differences: list[str] = []
    for key in sorted(orders):
        items, status = orders[key]
        if key not in found:
            differences.append(f"orders.{key}")
            continue
        found_status, found_items = found[key]
        if found_items != items:
            differences.append(f"order_items.{key}: {found_items} of {items}")
        if status is not None and found_status != status:
            differences.append(
                f"orders.{key}.status: {found_status}, expected {status}"
            )
    return differences


class _Ledger:
    """The shared record of acknowledged writes and failures (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.acknowledged: list[Op] = []
        self.in_doubt: list[Op] = []
        self.failures: list[Failure] = []

    def acknowledge(self, op: Op) -> None:
        with self._lock:
            self.acknowledged.append(op)

    def doubt(self, op: Op) -> None:
        with self._lock:
            self.in_doubt.append(op)

    def fail(self, op: str, error: Exception) -> None:
        errno = error.args[0] if error.args and isinstance(error.args[0], int) else None
        message = str(error.args[1]) if len(error.args) > 1 else str(error)
        with self._lock:
            self.failures.append(Failure(time.time(), op, errno, message))


class _Pacer:
    """Spaces operations ``interval`` apart; never bursts to catch up."""

    def __init__(self, interval: float | None) -> None:
        self.interval = interval
        self.next_at = time.monotonic()

    def wait(self, stop: threading.Event) -> bool:
        """Wait for the next slot; return False when asked to stop."""
        if self.interval is None:
            return not stop.is_set()
        delay = self.next_at - time.monotonic()
        if delay > 0 and stop.wait(delay):
            return False
        self.next_at = max(self.next_at + self.interval, time.monotonic())
        return not stop.is_set()


@dataclass(frozen=True)
class _Pending:
    """A write sent but not committed yet."""

    kind: OpKind
    table: str
    key: int
    items: int = 0
    status: str | None = None

    def op(self, moment: float) -> Op:
        return Op(self.kind, self.table, self.key, moment, self.items, self.status)


class _Worker:
    """One connection's loop: pick an operation, run it, record the outcome.

    It only changes orders it created itself (``orders``: id -> status), so
    workers never contend for an order and each order's ledger is ordered.
    """

    def __init__(
        self,
        settings: dict[str, Any],
        ledger: _Ledger,
        stop: threading.Event,
        rng: random.Random,
        label: str,
    ) -> None:
        self.settings = settings
        self.ledger = ledger
        self.stop = stop
        self.rng = rng
        self.label = label
        self.connection: Connection | None = None
        self.customers: list[int] = []
        self.orders: dict[int, str] = {}
        self._serial = 0

    def run(self, pacer: _Pacer) -> None:
        try:
            while pacer.wait(self.stop):
                self.step()
        finally:
            self.disconnect()

    def step(self) -> None:
        connection = self.connect()
        if connection is None:
            return
        kind = self.choose()
        try:
            pending = self.OPERATIONS[kind](self, connection)
        except pymysql.err.MySQLError as error:
            self.ledger.fail(kind, error)
            self.disconnect()
            return
        self.commit(connection, pending)

    def commit(self, connection: Connection, pending: _Pending) -> None:
        """Commit; record the write only when the server acknowledged it."""
        try:
            connection.commit()
        except pymysql.err.MySQLError as error:
            self.ledger.fail(pending.kind, error)
            self.ledger.doubt(pending.op(time.time()))
            if pending.kind in ORDER_CHANGES:
                self.orders.pop(pending.key, None)  # its state is unknown now
            self.disconnect()
            return
        op = pending.op(time.time())
        self.ledger.acknowledge(op)
        self.remember(op)

    def remember(self, op: Op) -> None:
        """Track the customers and orders this worker owns after a write."""
        if op.op is OpKind.INSERT_CUSTOMER:
            self.customers.append(op.key)
        elif op.op is OpKind.INSERT_ORDER:
            self.orders[op.key] = "new"
        elif op.op is OpKind.UPDATE_STATUS and op.status is not None:
            self.orders[op.key] = op.status
        elif op.op is OpKind.DELETE_ORDER:
            self.orders.pop(op.key, None)

    def connect(self) -> Connection | None:
        """Return the open connection, connecting again until it works or stop."""
        while self.connection is None and not self.stop.is_set():
            try:
                self.connection = pymysql.connect(**self.settings)
            except pymysql.err.MySQLError as error:
                self.ledger.fail(CONNECT_FAILURE, error)
                self.stop.wait(RECONNECT_INTERVAL_S)
        return self.connection

    def disconnect(self) -> None:
        if self.connection is not None:
            with contextlib.suppress(pymysql.err.Error, OSError):
                self.connection.close()
        self.connection = None

    def choose(self) -> OpKind:
        kinds = list(OP_WEIGHTS)
        kind = self.rng.choices(kinds, weights=list(OP_WEIGHTS.values()))[0]
        needs_order = kind in (OpKind.UPDATE_STATUS, OpKind.DELETE_ORDER)
        return OpKind.INSERT_ORDER if needs_order and not self.orders else kind

    # --- operations: each sends its statements and returns the pending write ---

    def insert_customer(self, connection: Connection) -> _Pending:
        self._serial += 1
        email = f"wl-{self.label}-{self._serial}@workload.test"
        name = f"Zoë Workload №{self._serial}"
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {SCHEMA}.customers (email, name, city) "
                "VALUES (%s, %s, %s)",
                (email, name, "Tromsø"),
            )
            key = int(cursor.lastrowid)
        return _Pending(OpKind.INSERT_CUSTOMER, "customers", key)

    def insert_order(self, connection: Connection) -> _Pending:
        customer = self._customer()
        lines = self.rng.randint(*ITEMS_PER_ORDER)
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {SCHEMA}.orders (customer_id, note) VALUES (%s, %s)",
                (customer, self.rng.choice(_NOTES)),
            )
            key = int(cursor.lastrowid)
            cursor.executemany(
                f"INSERT INTO {SCHEMA}.order_items "
                "(order_id, line_no, product_id, quantity, price_cents) "
                "VALUES (%s, %s, %s, %s, %s)",
                [self._line(key, line) for line in range(1, lines + 1)],
            )
        return _Pending(OpKind.INSERT_ORDER, "orders", key, items=lines)

    def _customer(self) -> int:
        """Return one of this worker's customers or, as often, a demo customer."""
        if self.customers and self.rng.random() < OWN_CUSTOMER_SHARE:
            return self.rng.choice(self.customers)
        return self.rng.randint(1, CUSTOMERS)

    def _line(self, order: int, line: int) -> tuple[int, int, int, int, int]:
        product = self.rng.randint(1, PRODUCTS)
        price = self.rng.randint(199, 9_999)
        return (order, line, product, self.rng.randint(1, 4), price)

    def update_status(self, connection: Connection) -> _Pending:
        key = self.rng.choice(list(self.orders))
        status = self.rng.choice(NEXT_STATUS[self.orders[key]])
        with connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {SCHEMA}.orders SET status = %s WHERE id = %s", (status, key)
            )
        return _Pending(OpKind.UPDATE_STATUS, "orders", key, status=status)

    def update_product(self, connection: Connection) -> _Pending:
        key = self.rng.randint(1, PRODUCTS)
        with connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {SCHEMA}.products SET stock = stock + %s, "
                "attributes = JSON_SET(COALESCE(attributes, JSON_OBJECT()), "
                "'$.restocked_by', %s, '$.batch', %s) WHERE id = %s",
                (self.rng.randint(*STOCK_CHANGE), self.label, time.time(), key),
            )
        return _Pending(OpKind.UPDATE_PRODUCT, "products", key)

    def delete_order(self, connection: Connection) -> _Pending:
        key = self.rng.choice(list(self.orders))
        with connection.cursor() as cursor:
            cursor.execute(f"DELETE FROM {SCHEMA}.orders WHERE id = %s", (key,))
        return _Pending(OpKind.DELETE_ORDER, "orders", key)

    OPERATIONS: ClassVar[dict[OpKind, Callable[[_Worker, Connection], _Pending]]] = {
        OpKind.INSERT_CUSTOMER: insert_customer,
        OpKind.INSERT_ORDER: insert_order,
        OpKind.UPDATE_STATUS: update_status,
        OpKind.UPDATE_PRODUCT: update_product,
        OpKind.DELETE_ORDER: delete_order,
    }


def longest_gap(times: Iterable[float]) -> tuple[float, float | None, float | None]:
    """Return (gap, start, end) of the longest gap between consecutive times."""
    ordered = sorted(times)
    best: tuple[float, float | None, float | None] = (0.0, None, None)
    for earlier, later in itertools.pairwise(ordered):
        if later - earlier > best[0]:
            best = (later - earlier, earlier, later)
    return best


class Workload:
    """Writes to ``shop`` as the application would, from background threads.

    ``rate`` is the total operations per second over all threads (None: as
    fast as the server allows). Use ``start()``/``stop()`` or a ``with``
    block; after the block, ``result`` holds what ``stop()`` returned.
    """

    def __init__(
        self,
        host: str,
        port: int,
        user: str,
        password: str,
        *,
        rate: float | None = None,
        seed: int = 1,
        threads: int = 1,
    ) -> None:
        if threads < 1:
            raise ValueError(f"threads must be at least 1, not {threads}")
        if rate is not None and rate <= 0:
            raise ValueError(f"rate must be positive or None, not {rate}")
        self.host = host
        self.port = port
        self.user = user
        self.rate = rate
        self.seed = seed
        self.threads = threads
        self.run_id = uuid.uuid4().hex[:10]
        self.result: WorkloadResult | None = None
        self._password = password
        self._ledger = _Ledger()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._crashes: list[BaseException] = []
        self._started = 0.0
        self._started_monotonic = 0.0

    def _settings(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "password": self._password,
            "charset": "utf8mb4",
            "autocommit": False,
            "connect_timeout": CONNECT_TIMEOUT_S,
            "read_timeout": READ_TIMEOUT_S,
            "write_timeout": WRITE_TIMEOUT_S,
        }

    def start(self) -> None:
        """Start the worker threads; they connect and write until ``stop()``."""
        if self._threads:
            raise RuntimeError("this workload was started already")
        self._started = time.time()
        self._started_monotonic = time.monotonic()
        interval = None if self.rate is None else self.threads / self.rate
        for index in range(self.threads):
            worker = _Worker(
                self._settings(),
                self._ledger,
                self._stop,
                random.Random(self.seed * 1_000 + index),
                f"{self.run_id}-{index}",
            )
            thread = threading.Thread(
                target=self._guarded,
                args=(worker, _Pacer(interval)),
                name=f"workload-{index}",
                daemon=True,
            )
            self._threads.append(thread)
            thread.start()

    def _guarded(self, worker: _Worker, pacer: _Pacer) -> None:
        """Run a worker; a crash (not a server error) stops the whole workload."""
        try:
            worker.run(pacer)
        except Exception as crash:
            self._crashes.append(crash)
            self._stop.set()

    def stop(self) -> WorkloadResult:
        """Stop the threads after their current operation; return the result."""
        if self.result is not None:
            return self.result
        self._stop.set()
        for thread in self._threads:
            thread.join(STOP_GRACE_S)
        if any(thread.is_alive() for thread in self._threads):
            raise RuntimeError(f"workload threads did not stop in {STOP_GRACE_S} s")
        if self._crashes:
            raise RuntimeError("a workload thread crashed") from self._crashes[0]
        self.result = self._result()
        return self.result

    def _result(self) -> WorkloadResult:
        elapsed = time.monotonic() - self._started_monotonic
        acknowledged = list(self._ledger.acknowledged)
        gap, gap_start, gap_end = longest_gap(op.time for op in acknowledged)
        return WorkloadResult(
            run_id=self.run_id,
            started=self._started,
            stopped=time.time(),
            acknowledged=acknowledged,
            in_doubt=list(self._ledger.in_doubt),
            failures=list(self._ledger.failures),
            errors=len(self._ledger.failures),
            ops_per_second=len(acknowledged) / elapsed if elapsed > 0 else 0.0,
            longest_gap=gap,
            gap_start=gap_start,
            gap_end=gap_end,
        )

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Write to the shop schema as the application would."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--user", default="shop_app")
    parser.add_argument(
        "--password-env",
        default="REPLICATOR_APP_PASSWORD",
        help="name of the environment variable holding the password",
    )
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=None, help="ops/s (all threads)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None, help="JSON file to write")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the workload for ``--seconds``; print the summary, write the ledger."""
    arguments = _arguments(argv)
    password = os.environ.get(arguments.password_env)
    if password is None:
        print(
            f"environment variable {arguments.password_env} is not set; "
            "export the application user's password there",
            file=sys.stderr,
        )
        return 2
    workload = Workload(
        arguments.host,
        arguments.port,
        arguments.user,
        password,
        rate=arguments.rate,
        seed=arguments.seed,
        threads=arguments.threads,
    )
    with workload:
        time.sleep(arguments.seconds)
    result = workload.stop()
    if arguments.out is not None:
        arguments.out.parent.mkdir(parents=True, exist_ok=True)
        arguments.out.write_text(json.dumps(result.to_json(), ensure_ascii=False))
    print(json.dumps(result.summary()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
