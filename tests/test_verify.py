"""Tests of replicator.verify against two real MariaDB servers.

The clone replicates from the source (plain binlog replication, ROW format),
so waiting for the clone to pass source coordinates is real. Differences are
made on the clone with ``sql_log_bin=0`` as root, the way a drifted clone
looks.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pymysql
import pymysql.cursors
import pytest

from replicator.errors import InputError
from replicator.mysql.status import BinlogCoordinates, normalise_status
from replicator.sandbox.mariadb import (
    MariaDBServer,
    ServerOptions,
    copy_template,
    create_template,
    free_port,
    socket_path,
)
from replicator.verify import (
    MAX_CHUNK_ROWS,
    MIN_CHUNK_ROWS,
    ChunkDiff,
    ChunkSizer,
    Column,
    TableResult,
    VerifyReport,
    key_after_sql,
    key_at_most_sql,
    list_tables,
    quote_identifier,
    row_checksum_sql,
    verify,
)

REPL_USER = "repl"
REPL_PASSWORD = "repl-test-password"
WAIT_S = 20.0
POLL_S = 0.005


@dataclass
class Pair:
    """A source and a clone replicating from it."""

    source: MariaDBServer
    clone: MariaDBServer


# --- servers ------------------------------------------------------------------


def _new_server(
    base: Path, name: str, server_id: int, options: ServerOptions
) -> MariaDBServer:
    """Lay out a server's data directory from the template."""
    datadir = base / name / "data"
    copy_template(base / "template", datadir)
    return MariaDBServer(
        name=name,
        datadir=datadir,
        port=free_port(),
        server_id=server_id,
        socket=socket_path(base, name),
        options=options,
    )


def _connect(server: MariaDBServer) -> Any:
    """Connect as root over the server's socket, autocommit on."""
    return pymysql.connect(
        unix_socket=str(server.socket),
        user="root",
        autocommit=True,
        charset="utf8mb4",
    )


def _run(server: MariaDBServer, *statements: str, args: Any = None) -> None:
    """Run statements as root (sql_log_bin=0 is kept for the whole session)."""
    with _connect(server) as conn, conn.cursor() as cursor:
        for statement in statements:
            cursor.execute(statement, args)


def _start_replication(pair: Pair) -> None:
    """Point the clone at the source's current position and start it."""
    _run(
        pair.source,
        "CREATE USER %s@'127.0.0.1' IDENTIFIED BY %s",
        args=(REPL_USER, REPL_PASSWORD),
    )
    _run(
        pair.source,
        "GRANT REPLICATION SLAVE ON *.* TO %s@'127.0.0.1'",
        args=(REPL_USER,),
    )
    coordinates = _source_coordinates(pair.source)
    _run(
        pair.clone,
        "CHANGE MASTER TO MASTER_HOST = '127.0.0.1', MASTER_PORT = %s, "
        "MASTER_USER = %s, MASTER_PASSWORD = %s, MASTER_LOG_FILE = %s, "
        "MASTER_LOG_POS = %s, MASTER_USE_GTID = no",
        args=(
            pair.source.port,
            REPL_USER,
            REPL_PASSWORD,
            coordinates.file,
            coordinates.position,
        ),
    )
    _run(pair.clone, "START SLAVE")


def _source_coordinates(server: MariaDBServer) -> BinlogCoordinates:
    """Return the source's current binlog coordinates."""
    row = server.query("SHOW MASTER STATUS")[0]
    return BinlogCoordinates(row["File"], int(row["Position"]))


def clone_waiter(clone: MariaDBServer) -> Callable[[BinlogCoordinates, float], bool]:
    """Return a wait_clone_past that polls the clone's executed coordinates."""

    def wait(coordinates: BinlogCoordinates, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with _connect(clone) as conn:
            while True:
                with conn.cursor(pymysql.cursors.DictCursor) as cursor:
                    cursor.execute("SHOW SLAVE STATUS")
                    status = normalise_status(cursor.fetchone())
                executed = status.exec_coordinates if status else None
                if executed is not None and executed >= coordinates:
                    return True
                if time.monotonic() >= deadline:
                    return False
                time.sleep(POLL_S)

    return wait


def _sync(pair: Pair) -> None:
    """Wait until the clone has applied everything the source has now."""
    assert clone_waiter(pair.clone)(_source_coordinates(pair.source), WAIT_S)


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    """A ROW-format source and a clone replicating from it, stopped at the end."""
    base = tmp_path_factory.mktemp("verify")
    create_template(base / "template")
    source = _new_server(base, "source", 1, ServerOptions(binlog_format="ROW"))
    clone = _new_server(base, "clone", 2, ServerOptions())
    try:
        source.start()
        clone.start()
        _start_replication(Pair(source, clone))
        yield Pair(source, clone)
    finally:
        clone.stop()
        source.stop()


@pytest.fixture
def conns(pair: Pair) -> Iterator[tuple[Any, Any]]:
    """Root connections to the source and the clone, as the caller opens them."""
    source, clone = _connect(pair.source), _connect(pair.clone)
    try:
        yield source, clone
    finally:
        source.close()
        clone.close()


def _schema(pair: Pair, name: str, *statements: str) -> None:
    """Create a fresh schema on the source with its tables; wait for the clone."""
    _run(
        pair.source,
        f"DROP DATABASE IF EXISTS `{name}`",
        f"CREATE DATABASE `{name}`",
        f"USE `{name}`",
        *statements,
    )
    _sync(pair)


def _on_clone_only(pair: Pair, *statements: str) -> None:
    """Change the clone without the change reaching any binary log."""
    _run(pair.clone, "SET sql_log_bin = 0", *statements)


def _verify(pair: Pair, conns: tuple[Any, Any], pattern: str, **kwargs: Any) -> Any:
    """Run verify on the pair with a real wait for the clone."""
    source, clone = conns
    return verify(
        source,
        clone,
        pattern=pattern,
        wait_clone_past=clone_waiter(pair.clone),
        **kwargs,
    )


ITEMS = (
    "CREATE TABLE items (id INT PRIMARY KEY, name VARCHAR(40) NOT NULL, "
    "price DECIMAL(10,2), created DATETIME(6), note TEXT NULL)"
)
FILL_ITEMS = (
    "INSERT INTO items SELECT seq, CONCAT('item #', seq), seq / 7, "
    "'2024-05-01 12:00:00' + INTERVAL seq SECOND, IF(seq % 3 = 0, NULL, 'n') "
    "FROM seq_1_to_{rows}"
)


# --- equal data ---------------------------------------------------------------


def test_equal_tables_compare_equal_with_exact_counts(
    pair: Pair, conns: tuple[Any, Any]
) -> None:
    """Equal tables report equal, with exact chunk and row counts per table."""
    _schema(
        pair,
        "eq",
        ITEMS,
        FILL_ITEMS.format(rows=2500),
        "CREATE TABLE `we``ird%` (`co``l%` INT PRIMARY KEY, `v%s` VARCHAR(5))",
        "INSERT INTO `we``ird%` VALUES (1, 'a'), (2, NULL)",
        "CREATE TABLE empty (id INT PRIMARY KEY)",
    )

    report = _verify(pair, conns, "eq.*", chunk_time=None, chunk_rows=1000)

    assert report.equal
    assert [(t.table, t.chunks, t.rows, t.equal) for t in report.tables] == [
        ("empty", 1, 0, True),
        ("items", 3, 2500, True),
        ("we`ird%", 1, 2, True),
    ]
    assert all(not t.whole_table and not t.missing_on_clone for t in report.tables)


def test_adaptive_chunks_cover_every_row(pair: Pair, conns: tuple[Any, Any]) -> None:
    """Adaptive chunk sizes still count every row once and report progress."""
    _schema(pair, "adapt", ITEMS, FILL_ITEMS.format(rows=5000))
    seen: list[tuple[str, int, int]] = []

    report = _verify(
        pair,
        conns,
        "adapt.items",
        chunk_rows=MIN_CHUNK_ROWS,
        progress=lambda *a: seen.append(a),
    )

    assert report.equal
    assert report.tables[0].rows == 5000
    assert len(seen) == report.tables[0].chunks
    assert seen[-1] == ("adapt.items", report.tables[0].chunks, 5000)


# --- differences --------------------------------------------------------------


def test_row_changed_on_clone_is_reported_by_key(
    pair: Pair, conns: tuple[Any, Any]
) -> None:
    """One row changed on the clone gives exactly one ChunkDiff naming its key."""
    _schema(pair, "chg", ITEMS, FILL_ITEMS.format(rows=300))
    _on_clone_only(pair, "UPDATE chg.items SET name = 'changed' WHERE id = 150")

    report = _verify(pair, conns, "chg.items", chunk_time=None, chunk_rows=100)

    assert not report.equal
    (result,) = report.tables
    assert (result.chunks, result.rows, result.equal) == (3, 300, False)
    assert result.diffs == [
        ChunkDiff("chg", "items", (100,), (200,), 100, 100, [(150,)])
    ]


def test_missing_and_extra_rows_on_clone(pair: Pair, conns: tuple[Any, Any]) -> None:
    """A row missing on the clone and one only on the clone are both reported."""
    _schema(pair, "gap", ITEMS, FILL_ITEMS.format(rows=300))
    _on_clone_only(
        pair,
        "DELETE FROM gap.items WHERE id = 42",
        "INSERT INTO gap.items (id, name) VALUES (1000, 'extra')",
    )

    report = _verify(pair, conns, "gap.items", chunk_time=None, chunk_rows=100)

    assert report.tables[0].diffs == [
        ChunkDiff("gap", "items", None, (100,), 100, 99, [(42,)]),
        ChunkDiff("gap", "items", (200,), None, 100, 101, [(1000,)]),
    ]


def test_table_without_primary_key_is_compared_whole(
    pair: Pair, conns: tuple[Any, Any]
) -> None:
    """A table without a primary key is checksummed whole; a change is found."""
    _schema(
        pair,
        "nopk",
        "CREATE TABLE log (a INT, b VARCHAR(10))",
        "INSERT INTO log SELECT seq % 10, 'x' FROM seq_1_to_50",
    )

    before = _verify(pair, conns, "nopk.log")
    _on_clone_only(pair, "UPDATE nopk.log SET b = 'y' WHERE a = 3 LIMIT 1")
    after = _verify(pair, conns, "nopk.log")

    assert before.tables[0] == TableResult(
        "nopk", "log", 1, 50, True, True, [], before.tables[0].seconds, False
    )
    assert after.tables[0].whole_table
    assert after.tables[0].diffs == [ChunkDiff("nopk", "log", None, None, 50, 50, None)]


def test_duplicate_rows_do_not_cancel_out(pair: Pair, conns: tuple[Any, Any]) -> None:
    """Two equal rows changed into two other equal rows are still a difference."""
    _schema(
        pair,
        "dup",
        "CREATE TABLE pairs (a INT, b VARCHAR(10))",
        "INSERT INTO pairs VALUES (1, 'x'), (1, 'x')",
    )
    _on_clone_only(pair, "UPDATE dup.pairs SET a = 2, b = 'y'")

    report = _verify(pair, conns, "dup.pairs")

    assert report.tables[0].diffs == [ChunkDiff("dup", "pairs", None, None, 2, 2, None)]


def test_composite_primary_key_chunks_and_keys(
    pair: Pair, conns: tuple[Any, Any]
) -> None:
    """Composite keys chunk mid-way through a leading value and name the key."""
    _schema(
        pair,
        "comp",
        "CREATE TABLE stock (region CHAR(2), id INT, qty INT, "
        "PRIMARY KEY (region, id))",
        "INSERT INTO stock SELECT r, seq, seq FROM seq_1_to_100 "
        "CROSS JOIN (SELECT 'ap' AS r UNION ALL SELECT 'eu' UNION ALL SELECT 'us') x",
    )
    _on_clone_only(
        pair, "UPDATE comp.stock SET qty = 0 WHERE region = 'eu' AND id = 50"
    )

    report = _verify(pair, conns, "comp.stock", chunk_time=None, chunk_rows=70)

    (result,) = report.tables
    assert (result.chunks, result.rows) == (5, 300)
    assert result.diffs == [
        ChunkDiff("comp", "stock", ("eu", 40), ("us", 10), 70, 70, [("eu", 50)])
    ]


TYPES = (
    "CREATE TABLE t (id INT PRIMARY KEY, note VARCHAR(20) NULL, "
    "a VARCHAR(10), b VARCHAR(10), emoji VARCHAR(20) CHARACTER SET utf8mb4, "
    "latin VARCHAR(20) CHARACTER SET latin1, doc JSON, blobby BLOB, "
    "ts TIMESTAMP(3) NULL, bits BIT(8), tag ENUM('x','y'), tags SET('p','q'), "
    "f DOUBLE, d DATE, tm TIME)"
)
TYPES_ROWS = (
    "INSERT INTO t VALUES "
    "(1, NULL, 'a#', 'b', 'caf\u00e9 \U0001f600', 'caf\u00e9', "
    "'{\"k\": [1, \"\U0001f600\"]}', X'00FF23', '2024-05-01 12:00:00.125', "
    "b'10100011', 'y', 'p,q', 1.5e-3, '2024-02-29', '-01:02:03'), "
    "(2, '', '', NULL, '', '', NULL, '', NULL, NULL, NULL, '', NULL, NULL, NULL)"
)


def test_utf8mb4_json_and_binary_values_compare_equal(
    pair: Pair, conns: tuple[Any, Any]
) -> None:
    """Equal utf8mb4, JSON, BLOB, BIT and TIMESTAMP values compare equal."""
    _schema(pair, "types", TYPES, TYPES_ROWS)
    _, clone = conns
    with clone.cursor() as cursor:
        cursor.execute("SET time_zone = '+05:00'")

    report = _verify(pair, conns, "types.t")

    assert report.equal
    assert report.tables[0].rows == 2


def test_null_and_empty_string_differ(pair: Pair, conns: tuple[Any, Any]) -> None:
    """NULL on the source and '' on the clone is a difference."""
    _schema(pair, "nul", TYPES, TYPES_ROWS)
    _on_clone_only(pair, "UPDATE nul.t SET note = '' WHERE id = 1")

    report = _verify(pair, conns, "nul.t")

    assert report.tables[0].diffs == [ChunkDiff("nul", "t", None, None, 2, 2, [(1,)])]


def test_separator_inside_values_is_not_ambiguous(
    pair: Pair, conns: tuple[Any, Any]
) -> None:
    """('a#', 'b') and ('a', '#b') are different rows."""
    _schema(pair, "sep", TYPES, TYPES_ROWS)
    _on_clone_only(pair, "UPDATE sep.t SET a = 'a', b = '#b' WHERE id = 1")

    report = _verify(pair, conns, "sep.t")

    assert report.tables[0].diffs[0].keys == [(1,)]


def test_table_missing_on_clone(pair: Pair, conns: tuple[Any, Any]) -> None:
    """A table absent on the clone is a difference, marked missing_on_clone."""
    _schema(
        pair,
        "miss",
        ITEMS,
        FILL_ITEMS.format(rows=10),
        "CREATE TABLE here (id INT PRIMARY KEY)",
    )
    _on_clone_only(pair, "DROP TABLE miss.items")

    report = _verify(pair, conns, "miss.*")

    assert not report.equal
    assert [
        (t.table, t.equal, t.missing_on_clone, t.chunks) for t in report.tables
    ] == [
        ("here", True, False, 1),
        ("items", False, True, 0),
    ]
    assert json.loads(json.dumps(report.to_json()))["tables"][1]["missing_on_clone"]


def test_other_columns_on_clone_are_a_difference(
    pair: Pair, conns: tuple[Any, Any]
) -> None:
    """A clone table with other columns is reported as columns_differ."""
    _schema(pair, "cols", ITEMS, FILL_ITEMS.format(rows=10))
    _on_clone_only(pair, "ALTER TABLE cols.items DROP COLUMN note")

    report = _verify(pair, conns, "cols.items")

    result = report.tables[0]
    assert (result.equal, result.columns_differ, result.missing_on_clone) == (
        False,
        True,
        False,
    )


# --- a moving source ----------------------------------------------------------


def _write_until(pair: Pair, stop: threading.Event, seed: int) -> None:
    """Update and insert rows of busy.items on the source until stopped."""
    rng = random.Random(seed)
    next_id = 10_000
    with _connect(pair.source) as conn, conn.cursor() as cursor:
        while not stop.is_set():
            cursor.execute(
                "UPDATE busy.items SET name = %s WHERE id = %s",
                (f"w{rng.random()}", rng.randint(1, 2000)),
            )
            cursor.execute(
                "INSERT INTO busy.items (id, name) VALUES (%s, 'new')", (next_id,)
            )
            next_id += 1
            time.sleep(0.02)


class RootHold:
    """Holds the clone's replica at a source position, as the server's operator."""

    def __init__(self, clone: MariaDBServer) -> None:
        self.clone = clone
        self.holds: list[BinlogCoordinates] = []

    def pause(self) -> bool:
        _run(self.clone, "STOP SLAVE")
        return True

    def run_until(self, coordinates: BinlogCoordinates, timeout: float) -> bool:
        _run(
            self.clone,
            "START SLAVE UNTIL MASTER_LOG_FILE = %s, MASTER_LOG_POS = %s",
            args=(coordinates.file, coordinates.position),
        )
        deadline = time.monotonic() + timeout
        with _connect(self.clone) as conn:
            while time.monotonic() < deadline:
                with conn.cursor(pymysql.cursors.DictCursor) as cursor:
                    cursor.execute("SHOW SLAVE STATUS")
                    status = normalise_status(cursor.fetchone())
                if (
                    status
                    and not status.sql_ok
                    and status.exec_coordinates == coordinates
                ):
                    self.holds.append(coordinates)
                    return True
                time.sleep(POLL_S)
        return False

    def resume(self) -> None:
        _run(self.clone, "START SLAVE")


def test_writes_during_verify_report_no_false_difference(
    pair: Pair, conns: tuple[Any, Any]
) -> None:
    """Chunks that differ because the clone lags, or is written meanwhile, pass.

    The re-checks hold the replica at the source snapshot's exact position, so
    rows written continuously while verify runs compare equal.
    """
    _schema(pair, "busy", ITEMS, FILL_ITEMS.format(rows=2000))
    _run(pair.clone, "STOP SLAVE SQL_THREAD")
    _run(pair.source, "UPDATE busy.items SET name = 'early' WHERE id % 400 = 7")
    hold = RootHold(pair.clone)

    stop = threading.Event()
    writer = threading.Thread(target=_write_until, args=(pair, stop, 7))
    writer.start()
    try:
        report = verify(
            *conns,
            pattern="busy.items",
            wait_clone_past=clone_waiter(pair.clone),
            clone_control=hold,
            chunk_time=None,
            chunk_rows=100,
        )
    finally:
        stop.set()
        writer.join()
        _run(pair.clone, "START SLAVE")

    # The first chunk (id 7 changed while the clone's applier was stopped)
    # differed at first sight, so at least one re-check held the replica.
    assert report.equal, report.tables[0].diffs
    assert hold.holds


# --- table selection ----------------------------------------------------------


def test_pattern_selects_base_tables(pair: Pair, conns: tuple[Any, Any]) -> None:
    """Patterns are comma-separated schema.table globs; views never match."""
    _schema(
        pair,
        "pat_a",
        "CREATE TABLE film (id INT PRIMARY KEY)",
        "CREATE TABLE film_actor (id INT PRIMARY KEY)",
        "CREATE TABLE actor (id INT PRIMARY KEY)",
        "CREATE VIEW film_view AS SELECT id FROM film",
    )
    _schema(pair, "pat_b", "CREATE TABLE film (id INT PRIMARY KEY)")
    source, _ = conns

    assert list_tables(source, "pat_a.film*, pat_b.*") == [
        ("pat_a", "film"),
        ("pat_a", "film_actor"),
        ("pat_b", "film"),
    ]
    assert list_tables(source, "pat_b") == [("pat_b", "film")]
    assert ("pat_a", "film_view") not in list_tables(source, None)
    assert {schema for schema, _ in list_tables(source, None)}.isdisjoint(
        {"mysql", "information_schema", "performance_schema", "sys"}
    )
    report = _verify(pair, conns, "pat_a.film")
    assert [(t.schema, t.table) for t in report.tables] == [("pat_a", "film")]


def test_pattern_matching_nothing_is_refused(
    pair: Pair, conns: tuple[Any, Any]
) -> None:
    """A pattern that matches no table is an input error, not an equal report."""
    with pytest.raises(InputError, match="matches no base table"):
        _verify(pair, conns, "nosuch.*")


# --- pure parts ---------------------------------------------------------------


def test_key_comparisons_expand_column_by_column() -> None:
    """Composite key bounds become OR/AND conditions with repeated parameters."""
    assert key_after_sql(("a", "b"), (1, "x")) == (
        "(`a` > %s OR (`a` = %s AND `b` > %s))",
        [1, 1, "x"],
    )
    assert key_at_most_sql(("id",), (5,)) == ("`id` <= %s", [5])


def test_row_checksum_sql_encodes_each_type() -> None:
    """Numbers stay text, TIMESTAMP is epoch, other types CRC32, NULL is 'N'."""
    columns = [
        Column("n", "int", nullable=False),
        Column("ts", "timestamp"),
        Column("j", "json"),
        Column("s", "varchar", nullable=False),
    ]

    assert row_checksum_sql(columns) == (
        "CRC32(CONCAT_WS('#', `n`, COALESCE(UNIX_TIMESTAMP(`ts`), 'N'), "
        "COALESCE(CRC32(CAST(`j` AS CHAR CHARACTER SET utf8mb4)), 'N'), "
        "CRC32(`s`)))"
    )
    assert quote_identifier("we`ird") == "`we``ird`"


def test_chunk_sizer_steers_toward_the_target_within_bounds() -> None:
    """The size at most doubles, at most quarters, and stays within its bounds."""
    sizer = ChunkSizer(1000, 0.25)

    sizer.observe(1000, 0.001)
    assert sizer.rows == 2000
    sizer.observe(2000, 1.0)
    assert sizer.rows == 500
    sizer.observe(500, 0.125)
    assert sizer.rows == 1000
    sizer.observe(10, 10.0)
    assert sizer.rows == 1000

    fixed = ChunkSizer(100, None)
    fixed.observe(100, 10.0)
    assert fixed.rows == 100
    large = ChunkSizer(400_000, 0.25)
    large.observe(400_000, 0.01)
    assert large.rows == MAX_CHUNK_ROWS
    small = ChunkSizer(150, 0.25)
    small.observe(150, 10.0)
    assert small.rows == MIN_CHUNK_ROWS


def test_report_json_turns_keys_into_lists() -> None:
    """to_json gives lists for keys, 0x-hex for bytes and ISO text for times."""
    diff = ChunkDiff(
        "s", "t", None, (b"\x01", datetime(2024, 5, 1)), 1, 0, [(b"\x01",)]
    )
    report = VerifyReport(
        [TableResult("s", "t", 1, 1, False, False, [diff], 0.5, False)],
        False,
        "2024-05-01T00:00:00Z",
        "2024-05-01T00:00:01Z",
    )

    data = json.loads(json.dumps(report.to_json()))

    assert data["tables"][0]["diffs"] == [
        {
            "lower": None,
            "upper": ["0x01", "2024-05-01T00:00:00"],
            "source_rows": 1,
            "clone_rows": 0,
            "keys": [["0x01"]],
        }
    ]


def test_schema_objects_missing_or_extra_on_the_clone_are_reported(
    pair: Pair, conns: tuple[Any, Any]
) -> None:
    """A trigger or view missing on the clone, or a table only there, differs."""
    _schema(
        pair,
        "objs",
        ITEMS,
        FILL_ITEMS.format(rows=50),
        "CREATE TABLE log (id INT PRIMARY KEY)",
        "CREATE TRIGGER items_log AFTER INSERT ON items "
        "FOR EACH ROW INSERT INTO log VALUES (NEW.id)",
        "CREATE VIEW cheap AS SELECT id FROM items WHERE price < 1",
    )
    _on_clone_only(
        pair,
        "DROP TRIGGER objs.items_log",
        "DROP VIEW objs.cheap",
        "CREATE TABLE objs.extra (id INT PRIMARY KEY)",
    )

    report = verify(*conns, pattern="objs.*", wait_clone_past=clone_waiter(pair.clone))

    assert report.equal is False
    assert [t.equal for t in report.tables] == [True, True]
    assert report.objects == [
        "table objs.cheap is missing on the clone",
        "table objs.extra exists only on the clone",
        "trigger objs.items_log is missing on the clone",
    ]
