"""Tests of the benchmark workload against a real sandbox (MariaDB + moto)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import Any

import pymysql
import pytest

from bench.workload import (
    Op,
    OpKind,
    Workload,
    WorkloadResult,
    expected_state,
    longest_gap,
)
from replicator.sandbox import demo, manage
from replicator.sandbox.manage import Sandbox
from tests.helpers import admin_connection, describe_cluster

STEADY_SECONDS = 3.0
RATE = 200.0
THREADS = 2
SETTLE_SECONDS = 1.0
REBOOT_DEADLINE_S = 60.0


@pytest.fixture(scope="module")
def endpoint(sandbox: Sandbox) -> tuple[str, int]:
    cluster = describe_cluster(sandbox, manage.SOURCE_CLUSTER)
    return str(cluster["Endpoint"]), int(cluster["Port"])


def _workload(sandbox: Sandbox, endpoint: tuple[str, int]) -> Workload:
    host, port = endpoint
    password = sandbox.credentials["app"]
    return Workload(
        host, port, manage.APP_USER, password, rate=RATE, seed=7, threads=THREADS
    )


@pytest.fixture
def admin(sandbox: Sandbox) -> Iterator[pymysql.connections.Connection[Any]]:
    connection = admin_connection(sandbox)
    try:
        yield connection
    finally:
        connection.close()


@pytest.fixture(scope="module")
def steady_run(sandbox: Sandbox, endpoint: tuple[str, int]) -> WorkloadResult:
    with _workload(sandbox, endpoint) as workload:
        time.sleep(STEADY_SECONDS)
    assert workload.result is not None
    return workload.result


@pytest.mark.sandbox
def test_steady_run_writes_every_kind_without_errors(
    steady_run: WorkloadResult,
) -> None:
    """With the server up, every operation is acknowledged and none fails."""
    assert len(steady_run.acknowledged) > 0
    assert steady_run.errors == 0
    assert steady_run.failures == []
    assert steady_run.in_doubt == []
    assert {op.op for op in steady_run.acknowledged} == set(OpKind)
    assert 0 < steady_run.ops_per_second <= RATE * 1.1


@pytest.mark.sandbox
def test_new_keys_come_after_the_demo_data(steady_run: WorkloadResult) -> None:
    """The server picks new keys above the demo data's ids, so nothing collides."""
    inserted = [
        op
        for op in steady_run.acknowledged
        if op.op in (OpKind.INSERT_CUSTOMER, OpKind.INSERT_ORDER)
    ]
    limits = {"customers": demo.CUSTOMERS, "orders": demo.ORDERS}

    assert all(op.key > limits[op.table] for op in inserted)


@pytest.mark.sandbox
def test_every_acknowledged_write_is_on_the_source(
    steady_run: WorkloadResult, admin: pymysql.connections.Connection[Any]
) -> None:
    """check_present finds every inserted row, line count and last status."""
    assert steady_run.check_present(admin) == []


@pytest.mark.sandbox
def test_status_changes_fire_the_trigger_once_each(
    steady_run: WorkloadResult, admin: pymysql.connections.Connection[Any]
) -> None:
    """Each acknowledged status change left exactly one row in order_events."""
    changes = [op for op in steady_run.acknowledged if op.op is OpKind.UPDATE_STATUS]
    orders = sorted({op.key for op in changes})
    placeholders = ", ".join(["%s"] * len(orders))
    with admin.cursor() as cursor:
        cursor.execute(
            "SELECT COUNT(*) FROM shop.order_events "
            f"WHERE order_id IN ({placeholders})",
            tuple(orders),
        )
        (events,) = cursor.fetchone() or (0,)

    assert events == len(changes)


@pytest.mark.sandbox
def test_check_present_names_what_a_server_lost(
    sandbox: Sandbox,
    endpoint: tuple[str, int],
    admin: pymysql.connections.Connection[Any],
) -> None:
    """A removed order line and a removed customer are reported by key."""
    with _workload(sandbox, endpoint) as workload:
        time.sleep(SETTLE_SECONDS)
    assert workload.result is not None
    expected = workload.result.expected()
    order, customer = max(expected.orders), max(expected.customers)
    items = expected.orders[order][0]
    with admin.cursor() as cursor:
        cursor.execute(
            "DELETE FROM shop.order_items WHERE order_id = %s AND line_no = 1",
            (order,),
        )
        # The customer may have orders; the loss is simulated, not cascaded.
        cursor.execute("SET foreign_key_checks = 0")
        cursor.execute("DELETE FROM shop.customers WHERE id = %s", (customer,))
        cursor.execute("SET foreign_key_checks = 1")

    assert workload.result.check_present(admin) == [
        f"customers.{customer}",
        f"order_items.{order}: {items - 1} of {items}",
    ]


def _reboot_writer(sandbox: Sandbox) -> None:
    rds = sandbox.rds()
    rds.reboot_db_instance(DBInstanceIdentifier=manage.SOURCE_WRITER)
    deadline = time.monotonic() + REBOOT_DEADLINE_S
    while time.monotonic() < deadline:
        found = rds.describe_db_instances(DBInstanceIdentifier=manage.SOURCE_WRITER)
        if found["DBInstances"][0]["DBInstanceStatus"] == "available":
            return
        time.sleep(0.05)
    raise AssertionError(f"{manage.SOURCE_WRITER} not available after the reboot")


@pytest.mark.sandbox
def test_workload_rides_out_a_writer_reboot(
    sandbox: Sandbox, endpoint: tuple[str, int]
) -> None:
    """After the writer restarts the workload reconnects and writes again.

    The outage shows as failures and as the longest gap between acknowledged
    writes, which spans the reboot; nothing acknowledged is lost.
    """
    with _workload(sandbox, endpoint) as workload:
        time.sleep(SETTLE_SECONDS)
        rebooting = time.time()
        _reboot_writer(sandbox)
        available = time.time()
        time.sleep(SETTLE_SECONDS)
    result = workload.result
    assert result is not None

    assert result.acknowledged_after(available) != []
    assert result.errors >= 1
    assert result.longest_gap > 0
    assert result.gap_start is not None
    assert result.gap_end is not None
    assert result.gap_start < available
    assert result.gap_end > rebooting
    with contextlib.closing(admin_connection(sandbox)) as admin:
        assert result.check_present(admin) == []


def _op(kind: OpKind, key: int, moment: float, **extra: Any) -> Op:
    table = "customers" if kind is OpKind.INSERT_CUSTOMER else "orders"
    return Op(kind, table, key, moment, **extra)


def test_expected_state_replays_the_ledger_in_order() -> None:
    """Inserts add rows, status changes replace the status, deletes remove."""
    acknowledged = [
        _op(OpKind.INSERT_CUSTOMER, 601, 1.0),
        _op(OpKind.INSERT_ORDER, 1501, 2.0, items=2),
        _op(OpKind.INSERT_ORDER, 1502, 3.0, items=1),
        _op(OpKind.UPDATE_STATUS, 1501, 4.0, status="paid"),
        _op(OpKind.DELETE_ORDER, 1502, 5.0),
    ]

    expected = expected_state(acknowledged, [])

    assert expected.customers == {601}
    assert expected.orders == {1501: (2, "paid")}


def test_in_doubt_writes_relax_what_is_expected() -> None:
    """An in-doubt delete drops the order; an in-doubt status makes it unknown."""
    acknowledged = [
        _op(OpKind.INSERT_ORDER, 1501, 1.0, items=1),
        _op(OpKind.INSERT_ORDER, 1502, 2.0, items=3),
    ]
    in_doubt = [
        _op(OpKind.DELETE_ORDER, 1501, 3.0),
        _op(OpKind.UPDATE_STATUS, 1502, 4.0, status="paid"),
    ]

    expected = expected_state(acknowledged, in_doubt)

    assert expected.orders == {1502: (3, None)}


def test_longest_gap_names_its_ends() -> None:
    """The longest gap is found between unsorted times, with start and end."""
    assert longest_gap([5.0, 1.0, 1.5, 9.5, 10.0]) == (4.5, 5.0, 9.5)
    assert longest_gap([3.0]) == (0.0, None, None)
