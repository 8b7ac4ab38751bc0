"""`replicator run` on the sakila schema: foreign keys, triggers, views, routines.

The schema text is read from the shared data directory at test time and loaded
into the source as the admin user; the rows are generated here from a seeded
random generator. A writer renting films, taking payments, returning rentals
and retitling films (which fires a trigger) runs through the whole `run`.
"""

from __future__ import annotations

import contextlib
import datetime
import random
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar

import pymysql

from replicator.sandbox import manage
from replicator.sandbox.manage import Sandbox
from tests.helpers import (
    SHARED,
    admin_connection,
    cli,
    query,
    sandbox_env,
    start_sandbox,
    table_contents,
    write_runbook,
)

SCHEMA_FILE = SHARED / "data" / "sakila" / "sakila-schema.sql"
SEED = 20_06
CATCH_UP_DEADLINE_S = 60.0
WRITE_INTERVAL_S = 0.05
RECONNECT_INTERVAL_S = 0.05
WRITES_AFTER_RUN_S = 1.0
BASE_DATE = datetime.datetime(2005, 5, 24, 22, 0, 0)
# Rentals the writer makes start here, one second apart, so they never collide
# with the generated rentals on the unique (rental_date, inventory, customer).
WRITER_BASE_DATE = datetime.datetime(2030, 1, 1)
DELIMITER = re.compile(r"^\s*DELIMITER\s+(\S+)\s*$", re.IGNORECASE)

COUNTS = {
    "language": 6,
    "category": 16,
    "actor": 120,
    "film": 150,
    "country": 20,
    "city": 50,
    "address": 100,
    "store": 2,
    "staff": 4,
    "customer": 80,
    "inventory": 300,
    "rental": 400,
}
LANGUAGES = ("English", "Italian", "Japanese", "Mandarin", "French", "German")
RATINGS = ("G", "PG", "PG-13", "R", "NC-17")
FEATURES = ("Trailers", "Commentaries", "Deleted Scenes", "Behind the Scenes")
SYLLABLES = ("ka", "lo", "mé", "ri", "zu", "an", "ße", "to", "vi", "ño", "el", "ør")


def schema_statements(text: str) -> Iterator[str]:
    """Split the schema script into the statements the server receives.

    ``DELIMITER`` is a directive of the ``mysql`` command-line client, not SQL:
    the server never sees it. The client sends the text up to each delimiter as
    one statement, which is what this does. MariaDB 10.11 accepts every
    statement of the script as written (tables, the FULLTEXT index, the
    triggers, views and routines), so no statement is changed or left out.
    """
    delimiter = ";"
    lines: list[str] = []
    for line in text.splitlines():
        switch = DELIMITER.match(line)
        if switch:
            delimiter = switch.group(1)
            continue
        lines.append(line)
        if line.rstrip().endswith(delimiter):
            statement = "\n".join(lines).rstrip()[: -len(delimiter)].strip()
            lines = []
            if statement:
                yield statement


def words(rng: random.Random, count: int) -> str:
    return " ".join(
        "".join(rng.choices(SYLLABLES, k=rng.randint(2, 4))).capitalize()
        for _ in range(count)
    )


def generated_rows(rng: random.Random) -> dict[str, list[tuple[Any, ...]]]:
    """Return the rows of every table, in an order the foreign keys accept.

    store and staff refer to each other (a store's manager is a staff member,
    who works in a store), so no order satisfies both; the loading session
    turns foreign key checks off for that pair.
    """
    n = COUNTS
    rows: dict[str, list[tuple[Any, ...]]] = {}
    rows["language"] = [(i, name) for i, name in enumerate(LANGUAGES, 1)]
    rows["category"] = [(i, words(rng, 1)[:25]) for i in range(1, n["category"] + 1)]
    rows["actor"] = [
        (i, words(rng, 1)[:45], words(rng, 1)[:45]) for i in range(1, n["actor"] + 1)
    ]
    rows["film"] = [film_row(rng, i) for i in range(1, n["film"] + 1)]
    rows["film_actor"] = [
        (actor, film)
        for film in range(1, n["film"] + 1)
        for actor in rng.sample(range(1, n["actor"] + 1), rng.randint(2, 6))
    ]
    rows["film_category"] = [
        (film, category)
        for film in range(1, n["film"] + 1)
        for category in rng.sample(range(1, n["category"] + 1), rng.randint(1, 2))
    ]
    rows["country"] = [(i, words(rng, 2)[:50]) for i in range(1, n["country"] + 1)]
    rows["city"] = [
        (i, words(rng, 1)[:50], rng.randint(1, n["country"]))
        for i in range(1, n["city"] + 1)
    ]
    rows["address"] = [address_row(rng, i) for i in range(1, n["address"] + 1)]
    rows["store"] = [(store, store, store) for store in range(1, n["store"] + 1)]
    rows["staff"] = [staff_row(rng, i) for i in range(1, n["staff"] + 1)]
    rows["customer"] = [customer_row(rng, i) for i in range(1, n["customer"] + 1)]
    rows["inventory"] = [
        (i, rng.randint(1, n["film"]), rng.randint(1, n["store"]))
        for i in range(1, n["inventory"] + 1)
    ]
    rows["rental"] = [rental_row(rng, i) for i in range(1, n["rental"] + 1)]
    rows["payment"] = [
        (rental[0], rental[3], rental[5], rental[0], amount(rng), rental[1])
        for rental in rows["rental"]
    ]
    return rows


def film_row(rng: random.Random, film: int) -> tuple[Any, ...]:
    features = [f for f in FEATURES if rng.random() < 0.4]
    return (
        film,
        words(rng, 3).upper(),
        words(rng, 12) if rng.random() < 0.9 else None,
        rng.randint(1990, 2024),
        rng.randint(1, len(LANGUAGES)),
        rng.choice((None, None, rng.randint(1, len(LANGUAGES)))),
        rng.randint(3, 7),
        Decimal(rng.choice(("0.99", "2.99", "4.99"))),
        rng.randint(46, 185),
        Decimal(f"{rng.randint(9, 29)}.99"),
        rng.choice(RATINGS),
        ",".join(features) or None,
    )


def address_row(rng: random.Random, address: int) -> tuple[Any, ...]:
    return (
        address,
        f"{rng.randint(1, 999)} {words(rng, 2)}"[:50],
        rng.choice((None, f"Apt {rng.randint(1, 99)}")),
        words(rng, 1)[:20],
        rng.randint(1, COUNTS["city"]),
        rng.choice((None, f"{rng.randint(10000, 99999)}")),
        f"+{rng.randint(10**9, 10**10 - 1)}",
    )


def staff_row(rng: random.Random, staff: int) -> tuple[Any, ...]:
    first, last = words(rng, 1)[:45], words(rng, 1)[:45]
    return (
        staff,
        first,
        last,
        staff,
        rng.randbytes(512) if staff == 1 else None,  # a photo with every byte value
        f"staff{staff}@sakila.test",
        (staff - 1) % COUNTS["store"] + 1,
        1,
        f"staff{staff}",
        rng.randbytes(20).hex(),
    )


def customer_row(rng: random.Random, customer: int) -> tuple[Any, ...]:
    return (
        customer,
        rng.randint(1, COUNTS["store"]),
        words(rng, 1)[:45],
        words(rng, 1)[:45],
        rng.choice((None, f"customer{customer}@sakila.test")),
        COUNTS["store"] + COUNTS["staff"] + customer,
        rng.random() < 0.9,
        BASE_DATE - datetime.timedelta(days=rng.randint(0, 400)),
    )


def rental_row(rng: random.Random, rental: int) -> tuple[Any, ...]:
    rented = BASE_DATE + datetime.timedelta(hours=rental, minutes=rng.randint(0, 59))
    returned = rng.choice((None, rented + datetime.timedelta(days=rng.randint(1, 9))))
    return (
        rental,
        rented,
        rng.randint(1, COUNTS["inventory"]),
        rng.randint(1, COUNTS["customer"]),
        returned,
        rng.randint(1, COUNTS["staff"]),
    )


def amount(rng: random.Random) -> Decimal:
    return Decimal(rng.randint(99, 1199)) / 100


INSERTS = {
    "language": "INSERT INTO language (language_id, name) VALUES (%s, %s)",
    "category": "INSERT INTO category (category_id, name) VALUES (%s, %s)",
    "actor": "INSERT INTO actor (actor_id, first_name, last_name) VALUES (%s, %s, %s)",
    "film": (
        "INSERT INTO film (film_id, title, description, release_year, language_id, "
        "original_language_id, rental_duration, rental_rate, length, "
        "replacement_cost, rating, special_features) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
    ),
    "film_actor": "INSERT INTO film_actor (actor_id, film_id) VALUES (%s, %s)",
    "film_category": (
        "INSERT INTO film_category (film_id, category_id) VALUES (%s, %s)"
    ),
    "country": "INSERT INTO country (country_id, country) VALUES (%s, %s)",
    "city": "INSERT INTO city (city_id, city, country_id) VALUES (%s, %s, %s)",
    "address": (
        "INSERT INTO address (address_id, address, address2, district, city_id, "
        "postal_code, phone) VALUES (%s, %s, %s, %s, %s, %s, %s)"
    ),
    "store": (
        "INSERT INTO store (store_id, manager_staff_id, address_id) VALUES (%s, %s, %s)"
    ),
    "staff": (
        "INSERT INTO staff (staff_id, first_name, last_name, address_id, picture, "
        "email, store_id, active, username, password) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
    ),
    "customer": (
        "INSERT INTO customer (customer_id, store_id, first_name, last_name, email, "
        "address_id, active, create_date) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
    ),
    "inventory": (
        "INSERT INTO inventory (inventory_id, film_id, store_id) VALUES (%s, %s, %s)"
    ),
    "rental": (
        "INSERT INTO rental (rental_id, rental_date, inventory_id, customer_id, "
        "return_date, staff_id) VALUES (%s, %s, %s, %s, %s, %s)"
    ),
    "payment": (
        "INSERT INTO payment (payment_id, customer_id, staff_id, rental_id, amount, "
        "payment_date) VALUES (%s, %s, %s, %s, %s, %s)"
    ),
}


def load_sakila(sandbox: Sandbox) -> dict[str, int]:
    """Create sakila on the source and fill it; return the rows by table."""
    connection = admin_connection(sandbox)
    try:
        with connection.cursor() as cursor:
            for statement in schema_statements(SCHEMA_FILE.read_text()):
                cursor.execute(statement)
            rows = generated_rows(random.Random(SEED))
            cursor.execute("USE sakila")
            cursor.execute("SET SESSION foreign_key_checks = 0")  # store <-> staff
            for table, statement in INSERTS.items():
                cursor.executemany(statement, rows[table])
            cursor.execute("SET SESSION foreign_key_checks = 1")
    finally:
        connection.close()
    return {table: len(table_rows) for table, table_rows in rows.items()}


@dataclass
class SakilaWriter:
    """Rents, pays, returns and retitles as the admin user until stopped.

    Each operation is one transaction; it counts only once ``COMMIT`` returned.
    On any error (the source's writer restarts during ``run``) it drops the
    connection and connects again.
    """

    sandbox: Sandbox
    rng: random.Random = field(default_factory=lambda: random.Random(SEED + 1))
    rentals: list[int] = field(default_factory=list)
    acknowledged: list[tuple[str, float]] = field(default_factory=list)
    failures: int = 0
    in_doubt: int = 0
    stop: threading.Event = field(default_factory=threading.Event)
    _serial: int = 0
    _thread: threading.Thread | None = None
    _crash: BaseException | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._guarded, daemon=True)
        self._thread.start()

    def finish(self) -> None:
        self.stop.set()
        assert self._thread is not None
        self._thread.join(30)
        assert not self._thread.is_alive()
        if self._crash is not None:
            raise self._crash

    def _guarded(self) -> None:
        try:
            self._loop()
        except BaseException as crash:
            self._crash = crash

    def _loop(self) -> None:
        connection: pymysql.connections.Connection[Any] | None = None
        while not self.stop.wait(WRITE_INTERVAL_S):
            try:
                if connection is None:
                    connection = admin_connection(self.sandbox, connect_timeout=2)
                self._one_write(connection)
            except (pymysql.err.MySQLError, OSError):
                self.failures += 1
                if connection is not None:
                    with contextlib.suppress(pymysql.err.Error, OSError):
                        connection.close()
                connection = None
                self.stop.wait(RECONNECT_INTERVAL_S)
        if connection is not None:
            connection.close()

    def _one_write(self, connection: pymysql.connections.Connection[Any]) -> None:
        kind = self.rng.choices(("rent", "return", "retitle"), weights=(6, 3, 1))[0]
        if kind == "return" and not self.rentals:
            kind = "rent"
        connection.begin()
        with connection.cursor() as cursor:
            key = self.OPERATIONS[kind](self, cursor)
        try:
            connection.commit()
        except (pymysql.err.MySQLError, OSError):
            self.in_doubt += 1  # the server may or may not have committed
            raise
        self.acknowledged.append((kind, time.time()))
        if kind == "rent":
            self.rentals.append(key)

    def _rent(self, cursor: Any) -> int:
        self._serial += 1
        rented = WRITER_BASE_DATE + datetime.timedelta(seconds=self._serial)
        customer = self.rng.randint(1, COUNTS["customer"])
        staff = self.rng.randint(1, COUNTS["staff"])
        cursor.execute(
            "INSERT INTO sakila.rental (rental_date, inventory_id, customer_id, "
            "staff_id) VALUES (%s, %s, %s, %s)",
            (rented, self.rng.randint(1, COUNTS["inventory"]), customer, staff),
        )
        rental = int(cursor.lastrowid)
        cursor.execute(
            "INSERT INTO sakila.payment (customer_id, staff_id, rental_id, amount, "
            "payment_date) VALUES (%s, %s, %s, %s, %s)",
            (customer, staff, rental, amount(self.rng), rented),
        )
        return rental

    def _return(self, cursor: Any) -> int:
        rental = self.rng.choice(self.rentals)
        cursor.execute(
            "UPDATE sakila.rental SET return_date = rental_date + INTERVAL 3 DAY "
            "WHERE rental_id = %s",
            (rental,),
        )
        return rental

    def _retitle(self, cursor: Any) -> int:
        film = self.rng.randint(1, COUNTS["film"])
        cursor.execute(
            "UPDATE sakila.film SET title = %s WHERE film_id = %s",
            (f"{words(self.rng, 2).upper()} {self._serial}", film),
        )
        return film

    OPERATIONS: ClassVar[dict[str, Callable[[SakilaWriter, Any], int]]] = {
        "rent": _rent,
        "return": _return,
        "retitle": _retitle,
    }


def wait_caught_up(sandbox: Sandbox) -> None:
    """Wait until the clone has executed everything the source has written."""
    source = admin_connection(sandbox)
    clone = admin_connection(
        sandbox, "sandbox-clone", cursorclass=pymysql.cursors.DictCursor
    )
    deadline = time.monotonic() + CATCH_UP_DEADLINE_S
    try:
        while time.monotonic() < deadline:
            file, position = query(source, "SHOW MASTER STATUS")[0][:2]
            with clone.cursor() as cursor:
                cursor.execute("SHOW SLAVE STATUS")
                row = cursor.fetchone()
            if (row["Relay_Master_Log_File"], row["Exec_Master_Log_Pos"]) == (
                file,
                position,
            ):
                return
            time.sleep(0.1)
    finally:
        source.close()
        clone.close()
    raise AssertionError("the clone did not catch up with the source")


def schema_objects(sandbox: Sandbox, cluster: str) -> dict[str, list[Any]]:
    """Return sakila's views, triggers and routines on a cluster's writer."""
    connection = admin_connection(sandbox, cluster)
    try:
        return {
            "views": query(
                connection,
                "SELECT TABLE_NAME FROM information_schema.VIEWS "
                "WHERE TABLE_SCHEMA = 'sakila' ORDER BY 1",
            ),
            "triggers": query(
                connection,
                "SELECT TRIGGER_NAME, EVENT_MANIPULATION, EVENT_OBJECT_TABLE "
                "FROM information_schema.TRIGGERS "
                "WHERE TRIGGER_SCHEMA = 'sakila' ORDER BY 1",
            ),
            "routines": query(
                connection,
                "SELECT ROUTINE_NAME, ROUTINE_TYPE FROM information_schema.ROUTINES "
                "WHERE ROUTINE_SCHEMA = 'sakila' ORDER BY 1",
            ),
        }
    finally:
        connection.close()


def test_run_replicates_sakila_with_identical_rows(tmp_path: Path) -> None:
    """Every sakila table holds identical rows on source and clone after `run`.

    sakila is loaded with generated rows, a writer rents, pays, returns and
    retitles through the whole run (the source's writer reboots under it) and
    one second past it, so the last writes reach the clone only by replication.
    The binary log is in ROW format: row images of every column type sakila
    uses (YEAR, ENUM, SET, DECIMAL, MEDIUMBLOB, TIMESTAMP) and of the rows the
    retitle trigger writes into film_text cross the replication stream. The
    clone also has the schema's views, triggers and routines.
    """
    sandbox = start_sandbox(tmp_path / "sandbox")
    try:
        loaded = load_sakila(sandbox)
        writer = SakilaWriter(sandbox)
        writer.start()
        result = cli(
            "run",
            str(write_runbook(tmp_path, replication={"binlog_format": "ROW"})),
            "--yes",
            env=sandbox_env(sandbox),
            cwd=tmp_path,
        )
        finished = time.time()
        time.sleep(WRITES_AFTER_RUN_S)
        writer.finish()
        assert result.code == 0, result.stderr[-3000:]
        wait_caught_up(sandbox)
        binlog_format = query(admin_connection(sandbox), "SELECT @@binlog_format")
        source = table_contents(admin_connection(sandbox), "sakila")
        clone = table_contents(admin_connection(sandbox, "sandbox-clone"), "sakila")
        objects = {
            c: schema_objects(sandbox, c) for c in ("sandbox-source", "sandbox-clone")
        }
    finally:
        manage.down(tmp_path / "sandbox")
    by_writer = {row[0] for row in source["rental"] if row[1] >= WRITER_BASE_DATE}
    paid_by_writer = {row[3] for row in source["payment"] if row[3] in by_writer}
    untouched = {t: len(source[t]) for t in loaded if t not in ("rental", "payment")}
    writes_after_run = [t for _kind, t in writer.acknowledged if t > finished]

    assert binlog_format == [("ROW",)]
    assert sorted(source) == sorted([*loaded, "film_text"])
    assert untouched == {t: n for t, n in loaded.items() if t in untouched}
    assert len(source["rental"]) == loaded["rental"] + len(by_writer)
    assert [row[:3] for row in source["film_text"]] == [
        row[:3] for row in source["film"]
    ]
    assert set(writer.rentals) <= by_writer
    assert len(by_writer) - len(writer.rentals) <= writer.in_doubt
    assert paid_by_writer == by_writer
    assert writes_after_run != []
    assert {kind for kind, _t in writer.acknowledged} == {"rent", "return", "retitle"}
    assert clone == source
    assert objects["sandbox-clone"] == objects["sandbox-source"]
    assert [len(found) for found in objects["sandbox-source"].values()] == [7, 3, 6]
