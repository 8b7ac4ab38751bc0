"""Tests for replicator.mysql.event_table: the table behind a replication error."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import pytest

from replicator.mysql.event_table import (
    FailedEvent,
    analyse_error,
    is_coordinator_error,
    target_table,
    worker_error,
)

COORDINATOR_TEXT = (
    "Coordinator stopped because there were error(s) in the worker(s). The most "
    "recent failure being: Worker 1 failed executing transaction 'ANONYMOUS' at "
    "master log mysql-bin-changelog.000002, end_log_pos 1234. See error log "
    "and/or performance_schema.replication_applier_status_by_worker table for "
    "more details about this failure or others, if any."
)

ROW_EVENT_CASES = [
    pytest.param(
        "Could not execute Write_rows_v1 event on table shop.customers; Duplicate "
        "entry '42' for key 'PRIMARY', Error_code: 1062; handler error "
        "HA_ERR_FOUND_DUPP_KEY; the event's master log "
        "mysql-bin-changelog.000003, end_log_pos 1234",
        FailedEvent("shop", "customers", "PRIMARY=42", None),
        id="mariadb-write-rows-duplicate",
    ),
    pytest.param(
        "Could not execute Write_rows event on table shop.customers; Duplicate "
        "entry 'ann@example.com-EU' for key 'customers.uk_email_region', "
        "Error_code: 1062; handler error HA_ERR_FOUND_DUPP_KEY; the event's "
        "source log mysql-bin-changelog.000003, end_log_pos 1234",
        FailedEvent("shop", "customers", "uk_email_region=ann@example.com-EU", None),
        id="mysql8-write-rows-duplicate-composite-key",
    ),
    pytest.param(
        "Could not execute Write_rows_v1 event on table shop.tags; Duplicate "
        "entry 'a-b' for key 'uk', Error_code: 1062; handler error "
        "HA_ERR_FOUND_DUPP_KEY; the event's master log "
        "mysql-bin-changelog.000003, end_log_pos 77",
        FailedEvent("shop", "tags", "uk=a-b", None),
        id="mariadb-duplicate-unique-key",
    ),
    pytest.param(
        "Could not execute Update_rows_v1 event on table shop.orders; Can't find "
        "record in 'orders', Error_code: 1032; handler error "
        "HA_ERR_KEY_NOT_FOUND; the event's master log "
        "mysql-bin-changelog.000003, end_log_pos 2210",
        FailedEvent("shop", "orders", None, None),
        id="mariadb-update-rows-not-found",
    ),
    pytest.param(
        "Could not execute Delete_rows event on table shop.order_items; Can't "
        "find record in 'order_items', Error_code: 1032; handler error "
        "HA_ERR_KEY_NOT_FOUND; the event's source log "
        "mysql-bin-changelog.000004, end_log_pos 918",
        FailedEvent("shop", "order_items", None, None),
        id="mysql8-delete-rows-not-found",
    ),
    pytest.param(
        "Could not execute Write_rows event on table shop.order_items; Cannot "
        "add or update a child row: a foreign key constraint fails "
        "(`shop`.`order_items`, CONSTRAINT `fk_items_order` FOREIGN KEY "
        "(`order_id`) REFERENCES `orders` (`id`)), Error_code: 1452; handler "
        "error HA_ERR_NO_REFERENCED_ROW; the event's source log "
        "mysql-bin-changelog.000004, end_log_pos 1502",
        FailedEvent("shop", "order_items", None, None),
        id="mysql8-write-rows-foreign-key",
    ),
    pytest.param(
        "Could not execute Delete_rows event on table shop.orders; Cannot delete "
        "or update a parent row: a foreign key constraint fails "
        "(`shop`.`order_items`, CONSTRAINT `fk_items_order` FOREIGN KEY "
        "(`order_id`) REFERENCES `orders` (`id`)), Error_code: 1451; handler "
        "error HA_ERR_ROW_IS_REFERENCED; the event's source log "
        "mysql-bin-changelog.000004, end_log_pos 2044",
        FailedEvent("shop", "orders", None, None),
        id="mysql8-delete-rows-parent-row",
    ),
    pytest.param(
        "Worker 2 failed executing transaction 'ANONYMOUS' at source log "
        "mysql-bin-changelog.000002, end_log_pos 1234; Could not execute "
        "Write_rows event on table shop.customers; Duplicate entry '42' for key "
        "'customers.PRIMARY', Error_code: 1062; handler error "
        "HA_ERR_FOUND_DUPP_KEY; the event's source log "
        "mysql-bin-changelog.000002, end_log_pos 1234",
        FailedEvent("shop", "customers", "PRIMARY=42", None),
        id="mysql8-worker-row-event",
    ),
]

STATEMENT_CASES = [
    pytest.param(
        "Error 'Duplicate entry '7' for key 'PRIMARY'' on query. Default "
        "database: 'shop'. Query: 'INSERT INTO customers (id, name) VALUES "
        "(7, 'x'), (8, 'y')'",
        FailedEvent(
            "shop",
            "customers",
            "PRIMARY=7",
            "INSERT INTO customers (id, name) VALUES (7, 'x'), (8, 'y')",
        ),
        id="duplicate-default-database",
    ),
    pytest.param(
        "Error 'Cannot add or update a child row: a foreign key constraint fails "
        "(`shop`.`orders`, CONSTRAINT `fk_orders_customer` FOREIGN KEY "
        "(`customer_id`) REFERENCES `customers` (`id`))' on query. Default "
        "database: ''. Query: 'insert into shop.orders (id, customer_id) values "
        "(501, 99)'",
        FailedEvent(
            "shop",
            "orders",
            None,
            "insert into shop.orders (id, customer_id) values (501, 99)",
        ),
        id="empty-default-database-qualified-table",
    ),
    pytest.param(
        "Error 'Duplicate entry 'ann@example.com' for key 'uk_email'' on query. "
        "Default database: 'shop'. Query: 'UPDATE customers SET email = (SELECT "
        "email FROM staging.imports WHERE id = 3) WHERE id = 12'",
        FailedEvent(
            "shop",
            "customers",
            "uk_email=ann@example.com",
            "UPDATE customers SET email = (SELECT email FROM staging.imports "
            "WHERE id = 3) WHERE id = 12",
        ),
        id="update-with-subquery",
    ),
    pytest.param(
        "Error 'Cannot delete or update a parent row: a foreign key constraint "
        "fails (`shop`.`order_items`, CONSTRAINT `fk_items_order` FOREIGN KEY "
        "(`order_id`) REFERENCES `orders` (`id`))' on query. Default database: "
        "'shop'. Query: 'DELETE o FROM orders AS o JOIN customers c ON c.id = "
        "o.customer_id WHERE c.closed = 1'",
        FailedEvent(
            "shop",
            "orders",
            None,
            "DELETE o FROM orders AS o JOIN customers c ON c.id = o.customer_id "
            "WHERE c.closed = 1",
        ),
        id="multi-table-delete-alias",
    ),
    pytest.param(
        "Error 'Cannot add or update a child row: a foreign key constraint fails "
        "(`shop`.`order_items`, CONSTRAINT `fk_items_order` FOREIGN KEY "
        "(`order_id`) REFERENCES `orders` (`id`))' on query. Default database: "
        "'shop'. Query: 'REPLACE INTO order_items (order_id, sku) VALUES (77, "
        "'A-1')'",
        FailedEvent(
            "shop",
            "order_items",
            None,
            "REPLACE INTO order_items (order_id, sku) VALUES (77, 'A-1')",
        ),
        id="replace",
    ),
    pytest.param(
        "Error 'Duplicate entry '9001' for key 'PRIMARY'' on query. Default "
        "database: 'shop'. Query: 'INSERT INTO archive.orders_2023 SELECT o.* "
        "FROM orders o JOIN customers c ON c.id = o.customer_id'",
        FailedEvent(
            "archive",
            "orders_2023",
            "PRIMARY=9001",
            "INSERT INTO archive.orders_2023 SELECT o.* FROM orders o JOIN "
            "customers c ON c.id = o.customer_id",
        ),
        id="insert-select-writes-the-target",
    ),
    pytest.param(
        "Worker 1 failed executing transaction 'ANONYMOUS' at source log "
        "mysql-bin-changelog.000006, end_log_pos 88120; Error 'Duplicate entry "
        "'311' for key 'events.PRIMARY'' on query. Default database: 'audit'. "
        "Query: 'INSERT INTO `events` (`id`, `kind`) VALUES (311, 'login')'",
        FailedEvent(
            "audit",
            "events",
            "PRIMARY=311",
            "INSERT INTO `events` (`id`, `kind`) VALUES (311, 'login')",
        ),
        id="mysql8-worker-statement",
    ),
    pytest.param(
        "Error 'Duplicate entry '7' for key 'PRIMARY'' on query. Default "
        "database: 'shop'. Query: 'INSERT INTO customers VALUES (7, 'x')', Gtid "
        "0-1-42, Internal MariaDB error code: 1062",
        FailedEvent(
            "shop", "customers", "PRIMARY=7", "INSERT INTO customers VALUES (7, 'x')"
        ),
        id="mariadb-error-log-suffix",
    ),
    pytest.param(
        "Error 'Duplicate entry '3' for key 'PRIMARY'' on query. Default "
        "database: 'shop'. Query: 'INSERT INTO customers VALUES (3, 'cut off",
        FailedEvent(
            None, None, "PRIMARY=3", "INSERT INTO customers VALUES (3, 'cut off"
        ),
        id="truncated-statement-is-unparseable",
    ),
    pytest.param(
        "Error 'Unknown system variable 'shop_mode'' on query. Default database: "
        "'shop'. Query: 'SET @@session.shop_mode = 1'",
        FailedEvent(None, None, None, "SET @@session.shop_mode = 1"),
        id="statement-without-a-table",
    ),
]

MESSAGE_CASES = [
    pytest.param(
        "Error executing row event: 'Table 'shop.missing' doesn't exist'",
        FailedEvent("shop", "missing", None, None),
        id="row-event-missing-table",
    ),
    pytest.param(
        "Cannot add or update a child row: a foreign key constraint fails "
        "(`shop`.`order_items`, CONSTRAINT `fk_items_order` FOREIGN KEY "
        "(`order_id`) REFERENCES `orders` (`id`))",
        FailedEvent("shop", "order_items", None, None),
        id="child-row-foreign-key",
    ),
    pytest.param(
        "Cannot add or update a child row: a foreign key constraint fails "
        "(`we``ird`.`odd``name`, CONSTRAINT `fk` FOREIGN KEY (`a`) REFERENCES "
        "`p` (`id`))",
        FailedEvent("we`ird", "odd`name", None, None),
        id="foreign-key-quoted-names",
    ),
    pytest.param(
        COORDINATOR_TEXT,
        FailedEvent(None, None, None, None),
        id="mysql8-coordinator-stopped",
    ),
    pytest.param("", FailedEvent(None, None, None, None), id="empty"),
]


@pytest.mark.parametrize(("text", "expected"), ROW_EVENT_CASES)
def test_row_event_errors_name_their_table(text: str, expected: FailedEvent) -> None:
    """Row-event errors give schema and table, and the key of a duplicate."""
    assert analyse_error(text) == expected


@pytest.mark.parametrize(("text", "expected"), STATEMENT_CASES)
def test_statement_errors_take_the_table_from_the_statement(
    text: str, expected: FailedEvent
) -> None:
    """Statement errors give the full statement and the table it writes."""
    assert analyse_error(text) == expected


@pytest.mark.parametrize(("text", "expected"), MESSAGE_CASES)
def test_other_messages(text: str, expected: FailedEvent) -> None:
    """Missing-table and foreign-key texts name the table; others give nothing."""
    assert analyse_error(text) == expected


@pytest.mark.parametrize(
    ("statement", "expected"),
    [
        ("INSERT INTO t (a) VALUES (1)", ("dflt", "t")),
        ("insert into s.t values (1)", ("s", "t")),
        (
            "INSERT IGNORE INTO t VALUES (1) ON DUPLICATE KEY UPDATE a = 2",
            ("dflt", "t"),
        ),
        ("INSERT LOW_PRIORITY INTO s.t SET a = 1", ("s", "t")),
        ("INSERT DELAYED t VALUES (1)", ("dflt", "t")),
        ("REPLACE INTO `s`.`t` (a) VALUES (1)", ("s", "t")),
        ("replace low_priority into t values (1)", ("dflt", "t")),
        ("UPDATE LOW_PRIORITY IGNORE t SET a = 1", ("dflt", "t")),
        ("UPDATE s.a JOIN s.b ON b.id = a.id SET a.x = b.x", ("s", "a")),
        ("UPDATE a, b SET a.x = b.x WHERE a.id = b.id", ("dflt", "a")),
        (
            "UPDATE t SET a = (SELECT max(x) FROM u) WHERE id IN (SELECT id FROM v)",
            ("dflt", "t"),
        ),
        ("DELETE FROM s.t WHERE id = 1", ("s", "t")),
        ("DELETE QUICK IGNORE FROM t WHERE id = 1", ("dflt", "t")),
        ("DELETE t1, t2 FROM t1 JOIN t2 ON t1.id = t2.id", ("dflt", "t1")),
        ("DELETE o FROM s.orders AS o JOIN s.items i ON i.o = o.id", ("s", "orders")),
        ("DELETE FROM o USING s.orders AS o JOIN s.items AS i", ("s", "orders")),
        ("/* app:checkout */ INSERT INTO t VALUES (1)", ("dflt", "t")),
        ("INSERT INTO `we``ird` VALUES (1)", ("dflt", "we`ird")),
        ("ALTER TABLE s.t ADD COLUMN b INT", ("s", "t")),
        ("CREATE TABLE t (a INT)", ("dflt", "t")),
        ("CREATE INDEX i ON s.t (a)", ("s", "t")),
        ("DROP TABLE IF EXISTS s.t, u", ("s", "t")),
        ("TRUNCATE TABLE t", ("dflt", "t")),
        ("SELECT * FROM t", (None, None)),
        ("BEGIN", (None, None)),
        ("INSERT INTO t VALUES (1, 'unterminated", (None, None)),
        ("INSERT INTO t VALUES (1), (2,", (None, None)),
        ("this is not SQL", (None, None)),
        ("", (None, None)),
    ],
)
def test_target_table(statement: str, expected: tuple[str | None, str | None]) -> None:
    """The parser finds the written table, not tables read in joins or subqueries."""
    assert target_table(statement, "dflt") == expected


def test_target_table_without_default_schema() -> None:
    """An unqualified table without a default database has no schema."""
    assert target_table("INSERT INTO t VALUES (1)") == (None, "t")


def test_coordinator_text_is_recognised() -> None:
    """The parallel applier's summary is told apart from real errors."""
    assert is_coordinator_error(COORDINATOR_TEXT) is True
    assert (
        is_coordinator_error("Could not execute Write_rows event on table a.b;")
        is False
    )


def worker_row(worker: int, errno: Any, message: Any, when: Any) -> dict[str, Any]:
    """Return one row of replication_applier_status_by_worker (MySQL 8.0)."""
    return {
        "CHANNEL_NAME": "",
        "WORKER_ID": worker,
        "THREAD_ID": None,
        "SERVICE_STATE": "OFF",
        "LAST_ERROR_NUMBER": errno,
        "LAST_ERROR_MESSAGE": message,
        "LAST_ERROR_TIMESTAMP": when,
        "LAST_APPLIED_TRANSACTION": "",
        "APPLYING_TRANSACTION": "",
    }


NO_ERROR_TIME = datetime(1970, 1, 1)
DUPLICATE_TEXT = (
    "Worker 1 failed executing transaction 'ANONYMOUS' at source log "
    "mysql-bin-changelog.000002, end_log_pos 1234; Could not execute Write_rows "
    "event on table shop.customers; Duplicate entry '42' for key "
    "'customers.PRIMARY', Error_code: 1062; handler error HA_ERR_FOUND_DUPP_KEY; "
    "the event's source log mysql-bin-changelog.000002, end_log_pos 1234"
)
NOT_FOUND_TEXT = (
    "Worker 3 failed executing transaction 'ANONYMOUS' at source log "
    "mysql-bin-changelog.000002, end_log_pos 1180; Could not execute Delete_rows "
    "event on table shop.orders; Can't find record in 'orders', Error_code: "
    "1032; handler error HA_ERR_KEY_NOT_FOUND; the event's source log "
    "mysql-bin-changelog.000002, end_log_pos 1180"
)


def test_worker_error_picks_the_latest_failed_worker() -> None:
    """Among failed workers the latest LAST_ERROR_TIMESTAMP wins."""
    rows = [
        worker_row(1, 1062, DUPLICATE_TEXT, datetime(2024, 5, 2, 10, 0, 1, 500)),
        worker_row(2, 0, "", NO_ERROR_TIME),
        worker_row(3, 1032, NOT_FOUND_TEXT, datetime(2024, 5, 2, 10, 0, 1, 900)),
        worker_row(4, 0, "", NO_ERROR_TIME),
    ]

    assert worker_error(rows) == (1032, NOT_FOUND_TEXT)


def test_worker_error_reads_text_values() -> None:
    """Numbers and timestamps given as text or bytes are read as well."""
    rows: list[Mapping[str, Any]] = [
        worker_row(1, "1062", DUPLICATE_TEXT, "2024-05-02 10:00:02.000100"),
        worker_row(3, b"1032", NOT_FOUND_TEXT.encode(), b"2024-05-02 10:00:01.900000"),
    ]

    assert worker_error(rows) == (1062, DUPLICATE_TEXT)


def test_worker_error_reads_lower_case_columns() -> None:
    """Column names are matched whatever their case."""
    rows = [
        {
            "last_error_number": 1146,
            "last_error_message": "gone",
            "last_error_timestamp": None,
        }
    ]

    assert worker_error(rows) == (1146, "gone")


@pytest.mark.parametrize(
    "rows",
    [[], [worker_row(1, 0, "", NO_ERROR_TIME), worker_row(2, None, "", None)]],
)
def test_worker_error_without_failed_workers(rows: list[Mapping[str, Any]]) -> None:
    """No worker with an error gives None."""
    assert worker_error(rows) is None


def test_worker_error_message_names_the_table() -> None:
    """The worker's message is analysed like any applier error."""
    found = worker_error([worker_row(1, 1062, DUPLICATE_TEXT, NO_ERROR_TIME)])

    assert found is not None
    errno, message = found

    assert errno == 1062
    assert analyse_error(message) == FailedEvent(
        "shop", "customers", "PRIMARY=42", None
    )
