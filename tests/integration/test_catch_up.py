"""Catch-up's diagnoses on a sandbox, each replication error created for real.

One v3 sandbox serves the module: ``replicator run`` first brings the clone to
caught up. Each test then makes replication fail as it fails in production (a
row only on the clone, a purged binlog, a wrong password, a source outage),
runs ``replicator run`` again and asserts the exit code, the operator's message
and what was journaled (``skips --json``, ``status --json``, lag samples).
Every test leaves replication caught up and clean for the next one; a fixture
checks that, and repairs replication when a failed test could not.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pymysql
import pytest

from replicator.aws.rds import Clock
from replicator.catchup import CatchUp
from replicator.context import Context
from replicator.journal import Journal
from replicator.runbook import load_runbook
from replicator.sandbox import manage
from replicator.sandbox.manage import Sandbox
from tests.helpers import (
    CliResult,
    admin_connection,
    cli,
    query,
    root_connection,
    sandbox_env,
    start_sandbox,
    write_runbook,
)

pytestmark = pytest.mark.sandbox

HALTED = 3
SETTLE_DEADLINE_S = 30.0
PURGE_DEADLINE_S = 20.0
IO_ERROR_DEADLINE_S = 15.0
CREDENTIALS_HALT_WITHIN_S = 60.0
OUTAGE_S = 5.0
SOURCE_WRITER = "sandbox-source-1"
REPL_USER = "repl_user"
ISO_TIME = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z")
FOREIGN_KEY_ERROR = (
    "Error 'Cannot add or update a child row: a foreign key constraint fails "
    "(`shop`.`orders`, CONSTRAINT `fk_orders_customer` FOREIGN KEY (`customer_id`) "
    "REFERENCES `customers` (`id`))' on query. Default database: ''. "
    "Query: '{statement}'"
)
PURGED_ERROR = (
    "Got fatal error 1236 from master when reading data from binary log: "
    "'Could not find first log file name in binary log index file'"
)


@dataclass
class Rig:
    """The module's sandbox, the directory runs start in and the plain runbook."""

    sandbox: Sandbox
    root: Path
    runbook: Path

    def run(
        self,
        runbook: Path | None = None,
        *,
        extra_env: dict[str, str] | None = None,
        timeout: float = 180.0,
    ) -> CliResult:
        """Run ``replicator run RUNBOOK --yes`` (the plain runbook by default)."""
        return cli(
            "run",
            str(runbook or self.runbook),
            "--yes",
            env=sandbox_env(self.sandbox),
            cwd=self.root,
            extra_env=extra_env,
            timeout=timeout,
        )

    def skips(self) -> list[dict[str, Any]]:
        """Return ``skips --json``."""
        result = cli(
            "skips",
            str(self.runbook),
            "--json",
            env=sandbox_env(self.sandbox),
            cwd=self.root,
        )
        assert result.code == 0, result.stderr[-2000:]
        records: list[dict[str, Any]] = json.loads(result.stdout)
        return records

    def status(self) -> dict[str, Any]:
        """Return ``status --json``."""
        result = cli(
            "status",
            str(self.runbook),
            "--json",
            env=sandbox_env(self.sandbox),
            cwd=self.root,
        )
        assert result.code == 0, result.stderr[-2000:]
        document: dict[str, Any] = json.loads(result.stdout)
        return document

    def variant(self, label: str, **catch_up: Any) -> Path:
        """Write the runbook with ``catch_up`` overridden; same name, same journal."""
        directory = self.root / "variants" / label
        directory.mkdir(parents=True, exist_ok=True)
        return write_runbook(directory, catch_up=catch_up)

    def journal(self) -> Journal:
        """Open the runbook's journal (the CLI's default path under the root)."""
        return Journal.open(self.root / ".replicator" / "sandbox.db")


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    """A sandbox whose clone `run` brought to caught up."""
    root = tmp_path_factory.mktemp("catch_up")
    sandbox = start_sandbox(root / "sandbox")
    try:
        runbook = write_runbook(root)
        first = cli("run", str(runbook), "--yes", env=sandbox_env(sandbox), cwd=root)
        assert first.code == 0, first.stderr[-3000:]
        yield Rig(sandbox, root, runbook)
    finally:
        manage.down(root / "sandbox")


@pytest.fixture(autouse=True)
def leaves_replication_clean(rig: Rig) -> Iterator[None]:
    """Check after each test that the clone is caught up; repair it otherwise."""
    yield
    if wait_caught_up(rig.sandbox):
        return
    repair_replication(rig.sandbox)
    pytest.fail("the test left replication broken; it was repaired for the next")


# --- servers -------------------------------------------------------------------------


def write_on_source(
    rig: Rig, *statements: str, binlog_format: str | None = None
) -> list[tuple[str, int]]:
    """Run statements on the source, one transaction each; return where each starts."""
    with closing(root_connection(rig.sandbox)) as connection:
        if binlog_format is not None:
            query(connection, "SET SESSION binlog_format = %s", (binlog_format,))
        starts = []
        for statement in statements:
            starts.append(source_position(connection))
            query(connection, statement)
    return starts


def write_unlogged(rig: Rig, cluster: str, *statements: str) -> None:
    """Run statements as root without binary logging: they never replicate."""
    with closing(root_connection(rig.sandbox, cluster)) as connection:
        query(connection, "SET SESSION sql_log_bin = 0")
        for statement in statements:
            query(connection, statement)


def on_clone_only(rig: Rig, *statements: str) -> None:
    """Change the clone behind replication's back (diverge, or repair by hand)."""
    write_unlogged(rig, "sandbox-clone", *statements)


def on_source_only(rig: Rig, *statements: str) -> None:
    """Change the source without the change reaching the clone."""
    write_unlogged(rig, "sandbox-source", *statements)


def rows(rig: Rig, cluster: str, sql: str) -> list[tuple[Any, ...]]:
    """Return the rows of a query run as root on a cluster's writer."""
    with closing(root_connection(rig.sandbox, cluster)) as connection:
        return query(connection, sql)


def source_position(connection: pymysql.connections.Connection[Any]) -> tuple[str, int]:
    """Return the source's binlog file and position now."""
    file, position = query(connection, "SHOW MASTER STATUS")[0][:2]
    return str(file), int(position)


def replica_status(sandbox: Sandbox) -> dict[str, Any]:
    """Return the clone's SHOW SLAVE STATUS row, read as root."""
    with (
        closing(root_connection(sandbox, "sandbox-clone")) as connection,
        connection.cursor(pymysql.cursors.DictCursor) as cursor,
    ):
        cursor.execute("SHOW SLAVE STATUS")
        row = cursor.fetchone()
    assert row is not None, "the clone has no replication configured"
    return row


def call_on_clone(sandbox: Sandbox, *procedures: str) -> None:
    """Call mysql.rds_* procedures on the clone as the admin user."""
    with closing(admin_connection(sandbox, "sandbox-clone")) as connection:
        for procedure in procedures:
            query(connection, f"CALL mysql.{procedure}()")


def wait_caught_up(sandbox: Sandbox, deadline_s: float = SETTLE_DEADLINE_S) -> bool:
    """Wait until both threads run and the clone executed all the source wrote."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        with closing(root_connection(sandbox)) as source:
            position = source_position(source)
        status = replica_status(sandbox)
        running = (status["Slave_IO_Running"], status["Slave_SQL_Running"])
        executed = (status["Relay_Master_Log_File"], status["Exec_Master_Log_Pos"])
        if running == ("Yes", "Yes") and executed == position:
            return True
        time.sleep(0.2)
    return False


def wait_for_io_error(sandbox: Sandbox, errno: int) -> dict[str, Any]:
    """Wait until the clone's receiver reports ``errno``; return the status."""
    deadline = time.monotonic() + IO_ERROR_DEADLINE_S
    while time.monotonic() < deadline:
        status = replica_status(sandbox)
        if status["Last_IO_Errno"] == errno:
            return status
        time.sleep(0.2)
    raise AssertionError(f"the clone's receiver never reported error {errno}")


def repair_replication(sandbox: Sandbox) -> None:
    """Point the clone at the source's current position with the right password."""
    password = sandbox.credentials["repl"]
    with closing(root_connection(sandbox)) as source:
        query(
            source,
            f"CREATE USER IF NOT EXISTS '{REPL_USER}'@'%%' IDENTIFIED BY %s",
            (password,),
        )
        query(source, f"ALTER USER '{REPL_USER}'@'%%' IDENTIFIED BY %s", (password,))
        query(
            source,
            f"GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO '{REPL_USER}'@'%'",
        )
        file, position = source_position(source)
    with closing(root_connection(sandbox, "sandbox-clone")) as clone:
        query(clone, "STOP SLAVE")
        query(
            clone,
            "CHANGE MASTER TO MASTER_PASSWORD = %s, MASTER_LOG_FILE = %s, "
            "MASTER_LOG_POS = %s",
            (password, file, position),
        )
        query(clone, "START SLAVE")
    wait_caught_up(sandbox)


def source_pid(sandbox: Sandbox) -> int:
    """Return the process id of the source writer's mariadbd."""
    (pid,) = [s["pid"] for s in sandbox.servers() if s["cluster"] == "sandbox-source"]
    return int(pid)


# --- records -------------------------------------------------------------------------


def new_skips(rig: Rig, before: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Return the skip records journaled since ``before`` was read."""
    records = rig.skips()
    assert records[: len(before)] == before
    return records[len(before) :]


def without_time(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Return the records without their time, after checking its format."""
    assert all(ISO_TIME.fullmatch(record["time"]) for record in records)
    return [{k: v for k, v in record.items() if k != "time"} for record in records]


def skip_rule(name: str, errno: int, table: str, **limits: int) -> dict[str, Any]:
    """Return a skip rule for one error on one table."""
    return {
        "name": name,
        "errors": [errno],
        "tables": [table],
        "action": "skip",
        **limits,
    }


def duplicate_error(statement: str, key: int) -> str:
    """Return MariaDB's text for a statement event that met a duplicate key."""
    return (
        f"Error 'Duplicate entry '{key}' for key 'PRIMARY'' on query. "
        f"Default database: ''. Query: '{statement}'"
    )


def insert_customer(customer: int, name: str) -> str:
    """Return the INSERT of one customer row."""
    return (
        "INSERT INTO shop.customers (id, email, name) "
        f"VALUES ({customer}, 'c{customer}@example.test', '{name}')"
    )


# --- 1062 ----------------------------------------------------------------------------


def test_duplicate_key_halts_without_rule_and_is_skipped_under_one(rig: Rig) -> None:
    """1062: without a rule `run` halts (exit 3) naming the error, table and key;
    under a rule for shop.customers the event is skipped, and the record names the
    rule, the table, the key and where the event starts on the source."""
    on_clone_only(rig, insert_customer(100001, "Only on the clone"))
    before = rig.skips()
    statement = insert_customer(100001, "From the source")
    ((file, position),) = write_on_source(rig, statement)

    halted = rig.run()
    after_halt = rig.skips()
    rule = skip_rule("dup-customers", 1062, "shop.customers")
    skipped = rig.run(rig.variant("dup-customers", skip_policy=[rule]))
    records = new_skips(rig, before)
    status = rig.status()

    assert halted.code == HALTED, halted.stderr[-3000:]
    assert "error: replication halted on error 1062 (" in halted.stderr
    assert f"on shop.customers key PRIMARY=100001 at {file}:{position}" in (
        halted.stderr
    )
    assert after_halt == before
    assert skipped.code == 0, skipped.stderr[-3000:]
    assert without_time(records) == [
        {
            "rule": "dup-customers",
            "action": "skip",
            "errno": 1062,
            "error": duplicate_error(statement, 100001),
            "file": file,
            "position": position,
            "schema": "shop",
            "table": "customers",
            "keys": "PRIMARY=100001",
        }
    ]
    assert rows(
        rig, "sandbox-clone", "SELECT name FROM shop.customers WHERE id = 100001"
    ) == [("Only on the clone",)]
    assert status["skips"]["by_rule"]["dup-customers"] == 1
    assert status["skips"]["total"] == len(before) + 1


def test_multi_row_insert_skipped_whole_shows_the_lost_rows(rig: Rig) -> None:
    """1062 under MIXED on a two-row INSERT: the whole statement is skipped, so the
    row that did not conflict is lost too; the record's error quotes the statement,
    which makes the lost row visible."""
    on_clone_only(rig, insert_customer(100011, "Only on the clone"))
    before = rig.skips()
    statement = (
        "INSERT INTO shop.customers (id, email, name) VALUES "
        "(100011, 'c100011@example.test', 'Conflicting row'), "
        "(100012, 'c100012@example.test', 'Innocent row')"
    )
    ((file, position),) = write_on_source(rig, statement)

    rule = skip_rule("dup-multi-row", 1062, "shop.customers")
    result = rig.run(rig.variant("dup-multi-row", skip_policy=[rule]))
    records = new_skips(rig, before)

    assert result.code == 0, result.stderr[-3000:]
    assert without_time(records) == [
        {
            "rule": "dup-multi-row",
            "action": "skip",
            "errno": 1062,
            "error": duplicate_error(statement, 100011),
            "file": file,
            "position": position,
            "schema": "shop",
            "table": "customers",
            "keys": "PRIMARY=100011",
        }
    ]
    assert "(100012, 'c100012@example.test', 'Innocent row')" in records[0]["error"]
    assert (
        rows(rig, "sandbox-clone", "SELECT id FROM shop.customers WHERE id = 100012")
        == []
    )
    assert rows(
        rig, "sandbox-source", "SELECT id FROM shop.customers WHERE id = 100012"
    ) == [(100012,)]


# --- 1032 ----------------------------------------------------------------------------


def test_row_events_on_missing_rows_halt_or_give_two_records(rig: Rig) -> None:
    """1032 with row events: an UPDATE then a DELETE of a row the clone lacks halt
    without a rule; under a rule for shop.products each is skipped, two records."""
    on_source_only(
        rig,
        "INSERT INTO shop.products (id, sku, title, price_cents) "
        "VALUES (100021, 'SKU-100021', 'Only on the source', 1000)",
    )
    before = rig.skips()
    starts = write_on_source(
        rig,
        "UPDATE shop.products SET stock = 7 WHERE id = 100021",
        "DELETE FROM shop.products WHERE id = 100021",
        binlog_format="ROW",
    )

    halted = rig.run()
    rule = skip_rule("missing-products", 1032, "shop.products")
    skipped = rig.run(rig.variant("missing-products", skip_policy=[rule]))
    records = new_skips(rig, before)
    status = rig.status()

    assert halted.code == HALTED, halted.stderr[-3000:]
    assert "error: replication halted on error 1032 (" in halted.stderr
    assert f"on shop.products at {starts[0][0]}:{starts[0][1]}" in halted.stderr
    assert skipped.code == 0, skipped.stderr[-3000:]
    assert [
        (r["rule"], r["action"], r["errno"], r["schema"], r["table"], r["keys"])
        for r in records
    ] == [("missing-products", "skip", 1032, "shop", "products", None)] * 2
    assert [(r["file"], r["position"]) for r in records] == starts
    for record, kind in zip(records, ("Update_rows_v1", "Delete_rows_v1"), strict=True):
        assert record["error"].startswith(
            f"Could not execute {kind} event on table shop.products; Can't find "
            "record in 'products', Error_code: 1032; handler error HA_ERR_KEY_NOT_FOUND"
        )
    assert status["skips"]["by_rule"]["missing-products"] == 2


# --- 1452 ----------------------------------------------------------------------------


def test_child_row_without_parent_halts_or_is_skipped(rig: Rig) -> None:
    """1452: an order whose customer the clone lacks halts without a rule; under a
    rule for shop.orders it is skipped and recorded, and the clone has no order."""
    on_source_only(rig, insert_customer(100031, "Parent only on the source"))
    before = rig.skips()
    statement = (
        "INSERT INTO shop.orders (id, customer_id, status) "
        "VALUES (100031, 100031, 'new')"
    )
    ((file, position),) = write_on_source(rig, statement)

    halted = rig.run()
    rule = skip_rule("orphan-orders", 1452, "shop.orders")
    skipped = rig.run(rig.variant("orphan-orders", skip_policy=[rule]))
    records = new_skips(rig, before)

    assert halted.code == HALTED, halted.stderr[-3000:]
    assert "error: replication halted on error 1452 (" in halted.stderr
    assert f"on shop.orders at {file}:{position}" in halted.stderr
    assert skipped.code == 0, skipped.stderr[-3000:]
    assert without_time(records) == [
        {
            "rule": "orphan-orders",
            "action": "skip",
            "errno": 1452,
            "error": FOREIGN_KEY_ERROR.format(statement=statement),
            "file": file,
            "position": position,
            "schema": "shop",
            "table": "orders",
            "keys": None,
        }
    ]
    assert (
        rows(rig, "sandbox-clone", "SELECT id FROM shop.orders WHERE id = 100031") == []
    )


# --- 1146 ----------------------------------------------------------------------------


def test_missing_table_halts_saying_the_schemas_differ(rig: Rig) -> None:
    """1146: a table only on the source halts with "the schemas differ"; once the
    table exists on the clone, `run` retries the event and nothing is skipped."""
    on_source_only(
        rig, "CREATE TABLE shop.coupons (code VARCHAR(20) PRIMARY KEY, cents INT)"
    )
    before = rig.skips()
    ((file, position),) = write_on_source(
        rig, "INSERT INTO shop.coupons VALUES ('WELCOME', 500)"
    )

    halted = rig.run()
    on_clone_only(
        rig, "CREATE TABLE shop.coupons (code VARCHAR(20) PRIMARY KEY, cents INT)"
    )
    resumed = rig.run()

    assert halted.code == HALTED, halted.stderr[-3000:]
    assert "error: replication halted on error 1146 (" in halted.stderr
    assert f"on shop.coupons at {file}:{position}" in halted.stderr
    assert "shop.coupons is missing on the clone: the schemas differ" in halted.stderr
    assert resumed.code == 0, resumed.stderr[-3000:]
    assert '"event": "retrying_failed_event"' in resumed.stderr
    assert rows(rig, "sandbox-clone", "SELECT * FROM shop.coupons") == [
        ("WELCOME", 500)
    ]
    assert rig.skips() == before


# --- 1236 ----------------------------------------------------------------------------


def test_purged_binlog_halts_on_retention_or_moves_on_under_next_log(rig: Rig) -> None:
    """1236: the source purged binlogs the stopped clone still needed. Without a
    rule `run` halts: retention too short, and the retention that would have kept
    them. Under a next_log rule it moves file by file and records each loss."""
    write_on_source(rig, "CREATE TABLE shop.purge_probe (id INT PRIMARY KEY)")
    assert wait_caught_up(rig.sandbox)
    call_on_clone(rig.sandbox, "rds_stop_replication")
    stopped = replica_status(rig.sandbox)
    needed = (stopped["Master_Log_File"], stopped["Read_Master_Log_Pos"])
    with closing(root_connection(rig.sandbox)) as source:
        query(source, "INSERT INTO shop.purge_probe VALUES (1)")
        query(source, "FLUSH BINARY LOGS")
        query(source, "INSERT INTO shop.purge_probe VALUES (2)")
        query(source, "FLUSH BINARY LOGS")
        query(source, "INSERT INTO shop.purge_probe VALUES (3)")
        purge_all_but_current(source)
    call_on_clone(rig.sandbox, "rds_start_replication")
    wait_for_io_error(rig.sandbox, 1236)
    before = rig.skips()

    halted = rig.run()
    rule = {"name": "purged-binlogs", "errors": [1236], "action": "next_log"}
    moved = rig.run(rig.variant("purged-binlogs", skip_policy=[rule]))
    records = new_skips(rig, before)
    base, _, index = needed[0].rpartition(".")

    assert halted.code == HALTED, halted.stderr[-3000:]
    assert "error: replication halted on error 1236 (" in halted.stderr
    assert "binlog retention too short" in halted.stderr
    assert "a retention of at least 2 hours would have kept it" in halted.stderr
    assert moved.code == 0, moved.stderr[-3000:]
    assert without_time(records) == [
        {
            "rule": "purged-binlogs",
            "action": "next_log",
            "errno": 1236,
            "error": PURGED_ERROR,
            "file": file,
            "position": position,
            "schema": None,
            "table": None,
            "keys": None,
        }
        for file, position in (needed, (f"{base}.{int(index) + 1:06d}", 4))
    ]
    assert rows(rig, "sandbox-clone", "SELECT id FROM shop.purge_probe") == [(3,)]


def purge_all_but_current(source: pymysql.connections.Connection[Any]) -> None:
    """Purge every binlog but the current one, once no dump thread holds them."""
    current, _ = source_position(source)
    deadline = time.monotonic() + PURGE_DEADLINE_S
    while time.monotonic() < deadline:
        query(source, "PURGE BINARY LOGS TO %s", (current,))
        if [row[0] for row in query(source, "SHOW BINARY LOGS")] == [current]:
            return
        time.sleep(0.1)
    raise AssertionError("the source kept binlogs that PURGE BINARY LOGS should drop")


# --- 1045 ----------------------------------------------------------------------------


def test_denied_login_halts_promptly_and_a_dropped_user_is_recreated(rig: Rig) -> None:
    """1045: the runbook's password rotated on the source while the clone keeps the
    old one: `run` halts with a credentials message well within a minute, never
    "connecting" forever. A dropped user is re-created by `run`, which resumes."""
    rotated = "rotated-" + secrets.token_hex(8)
    with closing(root_connection(rig.sandbox)) as source:
        query(source, f"ALTER USER '{REPL_USER}'@'%%' IDENTIFIED BY %s", (rotated,))
    call_on_clone(rig.sandbox, "rds_stop_replication", "rds_start_replication")
    wait_for_io_error(rig.sandbox, 1045)
    before = rig.skips()

    started = time.monotonic()
    halted = rig.run(
        extra_env={"REPLICATOR_REPL_PASSWORD": rotated},
        timeout=CREDENTIALS_HALT_WITHIN_S,
    )
    elapsed = time.monotonic() - started
    with closing(root_connection(rig.sandbox)) as source:
        query(source, f"DROP USER '{REPL_USER}'@'%'")
    resumed = rig.run()

    assert halted.code == HALTED, halted.stderr[-3000:]
    assert elapsed < CREDENTIALS_HALT_WITHIN_S
    assert "error: replication halted on error 1045 (" in halted.stderr
    assert "the clone cannot log in to the source as 'repl_user'" in halted.stderr
    assert rotated not in halted.stderr
    assert resumed.code == 0, resumed.stderr[-3000:]
    assert '"event": "replication_user_ready"' in resumed.stderr
    assert '"event": "reconnecting_receiver"' in resumed.stderr
    assert rig.skips() == before


# --- source outage -------------------------------------------------------------------


def test_source_outage_is_waited_out_and_nothing_is_skipped(rig: Rig) -> None:
    """The source writer stops for a while during `run` and comes back (RDS reboot):
    `run` waits for it, retries the event the operator fixed, catches up, exit 0,
    and nothing is skipped."""
    on_clone_only(rig, insert_customer(100071, "Only on the clone"))
    write_on_source(rig, insert_customer(100071, "From the source"))
    halted = rig.run()
    on_clone_only(rig, "DELETE FROM shop.customers WHERE id = 100071")
    before = rig.skips()

    os.kill(source_pid(rig.sandbox), signal.SIGTERM)
    process = subprocess.Popen(
        [sys.executable, "-m", "replicator", "run", str(rig.runbook), "--yes"],
        env=sandbox_env(rig.sandbox),
        cwd=rig.root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(OUTAGE_S)
    rig.sandbox.rds().reboot_db_instance(DBInstanceIdentifier=SOURCE_WRITER)
    _, stderr = process.communicate(timeout=180)

    assert halted.code == HALTED, halted.stderr[-3000:]
    assert process.returncode == 0, stderr[-3000:]
    assert '"event": "mysql_reconnect"' in stderr
    assert '"event": "retrying_failed_event"' in stderr
    assert rig.skips() == before
    assert rows(
        rig, "sandbox-clone", "SELECT name FROM shop.customers WHERE id = 100071"
    ) == [("From the source",)]


# --- limits --------------------------------------------------------------------------


def test_back_to_back_errors_give_two_records_and_max_skips_halts_the_third(
    rig: Rig,
) -> None:
    """Three conflicting inserts under a rule with max_skips 2: two records, then a
    halt naming the limit; once the third row is fixed on the clone, `run` ends."""
    customers = (100081, 100082, 100083)
    on_clone_only(rig, *(insert_customer(c, "Only on the clone") for c in customers))
    before = rig.skips()
    starts = write_on_source(
        rig, *(insert_customer(c, "From the source") for c in customers)
    )

    rule = skip_rule("capped", 1062, "shop.customers", max_skips=2)
    halted = rig.run(rig.variant("capped", skip_policy=[rule]))
    records = new_skips(rig, before)
    status = rig.status()
    on_clone_only(rig, "DELETE FROM shop.customers WHERE id = 100083")
    resumed = rig.run()

    assert halted.code == HALTED, halted.stderr[-3000:]
    assert "error: replication halted on error 1062 (" in halted.stderr
    assert f"key PRIMARY=100083 at {starts[2][0]}:{starts[2][1]}" in halted.stderr
    assert "rule capped reached its limit of 2 skips (2 so far)" in halted.stderr
    assert [(r["rule"], r["keys"], r["file"], r["position"]) for r in records] == [
        ("capped", "PRIMARY=100081", *starts[0]),
        ("capped", "PRIMARY=100082", *starts[1]),
    ]
    assert status["skips"]["by_rule"]["capped"] == 2
    assert resumed.code == 0, resumed.stderr[-3000:]
    assert rows(
        rig, "sandbox-clone", "SELECT name FROM shop.customers WHERE id = 100083"
    ) == [("From the source",)]


# --- lag -----------------------------------------------------------------------------


def test_heartbeat_lag_and_one_lag_sample_per_poll(rig: Rig) -> None:
    """With catch_up.heartbeat the lag samples carry a heartbeat lag, and catch-up
    journals exactly one lag sample per poll."""
    on_clone_only(rig, insert_customer(100091, "Only on the clone"))
    write_on_source(rig, insert_customer(100091, "From the source"))
    halted = rig.run()
    on_clone_only(rig, "DELETE FROM shop.customers WHERE id = 100091")
    with closing(rig.journal()) as journal:
        samples_before = len(journal.lag_samples())

    result = rig.run(rig.variant("heartbeat", heartbeat=True, stable_polls=4))
    with closing(rig.journal()) as journal:
        samples = journal.lag_samples()[samples_before:]
        outputs = journal.step_outputs("catch_up")

    assert halted.code == HALTED, halted.stderr[-3000:]
    assert result.code == 0, result.stderr[-3000:]
    assert outputs is not None
    assert len(samples) == outputs["polls"]
    assert samples[-1].heartbeat_lag is not None
    assert 0.0 <= samples[-1].heartbeat_lag < 5.0
    assert samples[-1].bytes_behind == 0
    assert (samples[-1].exec_file, samples[-1].exec_position) == (
        outputs["exec_file"],
        outputs["exec_position"],
    )


class CompressedClock:
    """Real time plus every wait asked for; a wait returns after at most 50 ms."""

    def __init__(self) -> None:
        self.skipped = 0.0
        self.waits: list[float] = []

    def now(self) -> datetime:
        return datetime.now(UTC) + timedelta(seconds=self.skipped)

    def monotonic(self) -> float:
        return time.monotonic() + self.skipped

    def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.skipped += seconds
        time.sleep(min(seconds, 0.05))


class RecordingLog:
    """A logger that keeps every event with its fields, bound loggers included."""

    def __init__(self, events: list[tuple[str, dict[str, Any]]] | None = None) -> None:
        self.events = [] if events is None else events

    def bind(self, **_context: Any) -> RecordingLog:
        return RecordingLog(self.events)

    def _record(self, event: str, **fields: Any) -> None:
        self.events.append((event, fields))

    debug = info = warning = error = exception = _record

    def named(self, event: str) -> list[dict[str, Any]]:
        return [fields for name, fields in self.events if name == event]


def test_max_per_minute_waits_for_the_window_and_says_so(
    rig: Rig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """max_per_minute 1 with two conflicting events: the loop skips the first, logs
    skip_rate_limited and waits for the minute's window (on an injected clock that
    never really waits), then skips the second a minute of journal time later."""
    for name, value in rig.sandbox.environment().items():
        monkeypatch.setenv(name, value)
    customers = (100101, 100102)
    on_clone_only(rig, *(insert_customer(c, "Only on the clone") for c in customers))
    write_on_source(rig, *(insert_customer(c, "From the source") for c in customers))
    rule = skip_rule("one-a-minute", 1062, "shop.customers", max_per_minute=1)
    clock = CompressedClock()
    log = RecordingLog()

    started = time.monotonic()
    with closing(Journal.open(tmp_path / "rate.db", clock=clock.now)) as journal:
        ctx = Context(
            runbook=load_runbook(rig.variant("one-a-minute", skip_policy=[rule])),
            journal=journal,
            log=log,
            interactive=False,
            clock=Clock(monotonic=clock.monotonic, sleep=clock.sleep),
        )
        try:
            outputs = CatchUp(ctx).run()
        finally:
            ctx.close()
        records = journal.skips()
    elapsed = time.monotonic() - started
    limited = log.named("skip_rate_limited")
    times = [datetime.fromisoformat(r.time.replace("Z", "+00:00")) for r in records]

    assert [(r.rule, r.keys) for r in records] == [
        ("one-a-minute", "PRIMARY=100101"),
        ("one-a-minute", "PRIMARY=100102"),
    ]
    assert outputs["skips"] == 2
    assert limited[0]["rule"] == "one-a-minute"
    assert 50.0 < limited[0]["wait_s"] <= 60.0
    assert "waiting for the window" in limited[0]["reason"]
    assert times[1] - times[0] >= timedelta(minutes=1)
    assert elapsed < 30.0
