"""How fast ``replicator.verify`` compares a table, against pt-table-checksum.

The bench starts two MariaDB servers of its own (a ROW-format source and a
replica replicating from it), creates ``bench.orders`` with ``--rows`` rows
(id BIGINT primary key, INT, VARCHAR, DECIMAL, DATETIME and a nullable
VARCHAR), waits until the replica has them, warms both buffer pools with one
untimed scan and then measures, on the same data in the same run:

- ``replicator``: ``replicator.verify.verify`` wall time (chunk time 0.25 s),
  then, in a second run under tracemalloc, its peak Python allocations; the
  process's peak RSS (``ru_maxrss``) is reported too;
- ``pt-table-checksum``: Percona Toolkit against the source over TCP as root
  with the same chunk time, finding the replica through a DSN table; its
  checksums reach the replica through replication and it waits for them, as
  in production;
- ``floor``: one ``SELECT COUNT(*), BIT_XOR(<verify's row checksum>)`` over
  the whole table on each server, one after the other, and the same with a
  plain ``CRC32(CONCAT_WS('#', ...))``; the floor is the slower server's time,
  since verify reads both servers at once.

It prints the seconds and the ratios replicator / pt-table-checksum and
replicator / floor, and writes them as JSON. Every server it started is
stopped, also on error; its directory is removed unless ``--keep``.

Run it from the repository root with the development virtualenv (needs
Debian's mariadb-server and percona-toolkit)::

    .venv/bin/python bench/bench_verify.py                 # one million rows
    .venv/bin/python bench/bench_verify.py --rows 100000 --keep

The JSON goes to ``bench/results/verify.json`` unless ``--out`` says
otherwise. The exit code is 0 when both tools found the copies equal.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pymysql
import pymysql.cursors

from replicator.mysql.status import BinlogCoordinates, normalise_status
from replicator.sandbox.mariadb import (
    MariaDBServer,
    ServerOptions,
    copy_template,
    create_template,
    free_port,
    socket_path,
)
from replicator.verify import read_shape, row_checksum_sql, verify

DEFAULT_ROWS = 1_000_000
DEFAULT_OUT = Path(__file__).parent / "results" / "verify.json"
CHUNK_TIME_S = 0.25
LOAD_BATCH_ROWS = 100_000
REPLICA_DEADLINE_S = 600.0
POLL_S = 0.01
PT_DEADLINE_S = 1800.0
SCHEMA = "bench"
TABLE = "orders"
REPL_USER = "bench_repl"
# The sandbox's servers are sized for tests; a benchmark wants the table in
# memory, as it would be on a production instance.
SERVER_EXTRA = {"innodb-buffer-pool-size": "512M", "innodb-log-file-size": "256M"}
CREATE_TABLE = (
    f"CREATE TABLE {SCHEMA}.{TABLE} (id BIGINT PRIMARY KEY, customer INT NOT NULL, "
    "name VARCHAR(64) NOT NULL, amount DECIMAL(12,2) NOT NULL, "
    "created DATETIME NOT NULL, note VARCHAR(255) NULL)"
)
LOAD_BATCH = (
    f"INSERT INTO {SCHEMA}.{TABLE} SELECT seq, seq % 50000, "
    "CONCAT('customer-', seq % 50000, '-', MD5(seq)), (seq % 100000) / 100, "
    "'2024-01-01' + INTERVAL seq SECOND, IF(seq % 5 = 0, NULL, SHA1(seq)) "
    f"FROM {SCHEMA}.seq_{{first}}_to_{{last}}"
)
DSN_TABLE = (
    "CREATE TABLE percona.dsns (id INT AUTO_INCREMENT PRIMARY KEY, "
    "parent_id INT NULL, dsn VARCHAR(255) NOT NULL)"
)


class BenchError(RuntimeError):
    """A server or a tool did not do what the bench needs."""


@dataclass
class Pair:
    """The bench's source and replica, and root's TCP password on both."""

    source: MariaDBServer
    replica: MariaDBServer
    password: str


# --- servers ----------------------------------------------------------------------


def new_server(
    base: Path, name: str, server_id: int, binlog: str | None
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
        options=ServerOptions(binlog_format=binlog, extra=SERVER_EXTRA),
    )


@contextlib.contextmanager
def started_pair(base: Path) -> Iterator[Pair]:
    """Start a source and a replica; stop both on the way out, whatever happens."""
    create_template(base / "template")
    pair = Pair(
        new_server(base, "source", 1, "ROW"),
        new_server(base, "replica", 2, None),
        secrets.token_urlsafe(18),
    )
    try:
        pair.source.start()
        pair.replica.start()
        yield pair
    finally:
        pair.replica.stop()
        pair.source.stop()


def run_sql(
    server: MariaDBServer, *statements: str, args: Any = None, log_bin: bool = True
) -> None:
    """Run statements as root over the socket, each with the same parameters."""
    with socket_connection(server) as conn, conn.cursor() as cursor:
        if not log_bin:
            cursor.execute("SET sql_log_bin = 0")
        for statement in statements:
            cursor.execute(statement, args)


def socket_connection(server: MariaDBServer) -> Any:
    """Connect as root over the unix socket, autocommit on."""
    return pymysql.connect(
        unix_socket=str(server.socket), user="root", autocommit=True, charset="utf8mb4"
    )


def secure_root(server: MariaDBServer, password: str) -> None:
    """Give root@127.0.0.1 a password, outside the binary log."""
    run_sql(
        server,
        "ALTER USER 'root'@'127.0.0.1' IDENTIFIED BY %s",
        args=(password,),
        log_bin=False,
    )


def start_replication(pair: Pair) -> None:
    """Make the replica replicate from the source's current position."""
    for server in (pair.source, pair.replica):
        secure_root(server, pair.password)
    run_sql(
        pair.source,
        "CREATE USER %s@'127.0.0.1' IDENTIFIED BY %s",
        args=(REPL_USER, pair.password),
        log_bin=False,
    )
    run_sql(
        pair.source,
        "GRANT REPLICATION SLAVE ON *.* TO %s@'127.0.0.1'",
        args=(REPL_USER,),
        log_bin=False,
    )
    position = source_coordinates(pair.source)
    run_sql(
        pair.replica,
        "CHANGE MASTER TO MASTER_HOST = '127.0.0.1', MASTER_PORT = %s, "
        "MASTER_USER = %s, MASTER_PASSWORD = %s, MASTER_LOG_FILE = %s, "
        "MASTER_LOG_POS = %s, MASTER_USE_GTID = no",
        args=(
            pair.source.port,
            REPL_USER,
            pair.password,
            position.file,
            position.position,
        ),
    )
    run_sql(pair.replica, "START SLAVE")


def source_coordinates(server: MariaDBServer) -> BinlogCoordinates:
    """Return the source's current binlog coordinates."""
    row = server.query("SHOW MASTER STATUS")[0]
    return BinlogCoordinates(row["File"], int(row["Position"]))


def replica_waiter(
    replica: MariaDBServer,
) -> Callable[[BinlogCoordinates, float], bool]:
    """Return a wait_clone_past that polls the replica's executed coordinates."""

    def wait(coordinates: BinlogCoordinates, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with socket_connection(replica) as conn:
            while time.monotonic() < deadline:
                with conn.cursor(pymysql.cursors.DictCursor) as cursor:
                    cursor.execute("SHOW SLAVE STATUS")
                    status = normalise_status(cursor.fetchone())
                if status is not None and status.last_sql_errno:
                    raise BenchError(f"replica stopped: {status.last_sql_error}")
                executed = status.exec_coordinates if status else None
                if executed is not None and executed >= coordinates:
                    return True
                time.sleep(POLL_S)
        return False

    return wait


def load_table(pair: Pair, rows: int) -> None:
    """Create the table, fill it in batches and wait until the replica has it."""
    run_sql(pair.source, f"CREATE DATABASE {SCHEMA}", CREATE_TABLE)
    for first in range(1, rows + 1, LOAD_BATCH_ROWS):
        last = min(first + LOAD_BATCH_ROWS - 1, rows)
        run_sql(pair.source, LOAD_BATCH.format(first=first, last=last))
    caught_up = replica_waiter(pair.replica)
    if not caught_up(source_coordinates(pair.source), REPLICA_DEADLINE_S):
        raise BenchError(f"replica did not catch up in {REPLICA_DEADLINE_S:.0f} s")


# --- measurements -----------------------------------------------------------------


def measure_floor(pair: Pair) -> dict[str, float]:
    """Time one whole-table checksum per server, verify's formula and plain."""
    with socket_connection(pair.source) as conn:
        shape = read_shape(conn, SCHEMA, TABLE)
    assert shape is not None
    columns = ", ".join(f"`{column.name}`" for column in shape.columns)
    formulas = {
        "": row_checksum_sql(shape.columns),
        "_concat_ws": f"CRC32(CONCAT_WS('#', {columns}))",
    }
    figures: dict[str, float] = {}
    for suffix, crc in formulas.items():
        sql = f"SELECT COUNT(*), BIT_XOR({crc}) FROM {SCHEMA}.{TABLE}"
        for side, server in (("source", pair.source), ("replica", pair.replica)):
            figures[f"{side}{suffix}_s"] = timed_query(server, sql)
        figures[f"seconds{suffix}"] = max(
            figures[f"source{suffix}_s"], figures[f"replica{suffix}_s"]
        )
    return figures


def timed_query(server: MariaDBServer, sql: str) -> float:
    """Run one query as root and return its seconds."""
    with socket_connection(server) as conn, conn.cursor() as cursor:
        started = time.monotonic()
        cursor.execute(sql, ())
        cursor.fetchall()
        return time.monotonic() - started


def warm_up(pair: Pair) -> None:
    """Read the whole table once on both servers, untimed."""
    for server in (pair.source, pair.replica):
        timed_query(server, f"SELECT COUNT(*), SUM(LENGTH(name)) FROM {SCHEMA}.{TABLE}")


def measure_replicator(pair: Pair) -> dict[str, Any]:
    """Time verify, then run it again under tracemalloc for its peak allocations."""
    started = time.monotonic()
    report = run_verify(pair)
    seconds = time.monotonic() - started

    tracemalloc.start()
    run_verify(pair)
    _, python_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    table = report.tables[0]
    return {
        "seconds": round(seconds, 3),
        "equal": report.equal,
        "chunks": table.chunks,
        "rows": table.rows,
        "python_peak_mib": round(python_peak / 2**20, 2),
        "rss_peak_mib": round(peak_rss_mib(), 1),
    }


def run_verify(pair: Pair) -> Any:
    """Verify the bench table with fresh connections, as the command line does."""
    with (
        socket_connection(pair.source) as source,
        socket_connection(pair.replica) as clone,
    ):
        return verify(
            source,
            clone,
            pattern=f"{SCHEMA}.{TABLE}",
            wait_clone_past=replica_waiter(pair.replica),
            chunk_time=CHUNK_TIME_S,
        )


def peak_rss_mib() -> float:
    """Return this process's peak resident set size so far, in MiB (Linux: KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure_pt_table_checksum(pair: Pair, workdir: Path) -> dict[str, Any]:
    """Time pt-table-checksum over TCP, the replica found through a DSN table."""
    defaults = write_defaults_file(workdir, pair.password)
    run_sql(pair.source, "CREATE DATABASE IF NOT EXISTS percona", DSN_TABLE)
    run_sql(
        pair.source,
        "INSERT INTO percona.dsns (dsn) VALUES (%s)",
        args=(f"h=127.0.0.1,P={pair.replica.port}",),
    )
    command = pt_command(pair, defaults)

    started = time.monotonic()
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=PT_DEADLINE_S, check=False
    )
    seconds = time.monotonic() - started

    summary = parse_pt_summary(result.stdout)
    if result.returncode != 0 or summary is None:
        raise BenchError(
            f"pt-table-checksum exited {result.returncode}:\n"
            f"{result.stdout[-2000:]}\n{result.stderr[-2000:]}"
        )
    return {"seconds": round(seconds, 3), "exit_code": result.returncode, **summary}


def write_defaults_file(workdir: Path, password: str) -> Path:
    """Write root's TCP credentials to an option file only we can read."""
    path = workdir / "pt-client.cnf"
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(f"[client]\nuser=root\npassword={password}\n")
    return path


def pt_command(pair: Pair, defaults: Path) -> list[str]:
    """Return the pt-table-checksum command line (the password is in the file)."""
    dsn_table = f"h=127.0.0.1,P={pair.source.port},D=percona,t=dsns"
    return [
        "pt-table-checksum",
        f"h=127.0.0.1,P={pair.source.port},u=root,F={defaults}",
        f"--recursion-method=dsn={dsn_table}",
        f"--tables={SCHEMA}.{TABLE}",
        f"--chunk-time={CHUNK_TIME_S}",
        "--no-version-check",
        "--no-check-binlog-format",
    ]


def parse_pt_summary(stdout: str) -> dict[str, int] | None:
    """Read ERRORS, DIFFS, ROWS and CHUNKS from pt-table-checksum's table row."""
    for line in stdout.splitlines():
        fields = line.split()
        if len(fields) == 9 and fields[-1] == f"{SCHEMA}.{TABLE}":
            errors, diffs, rows, _, chunks = (int(value) for value in fields[1:6])
            return {"errors": errors, "diffs": diffs, "rows": rows, "chunks": chunks}
    return None


# --- report -----------------------------------------------------------------------


def summarise(
    rows: int, replicator: dict[str, Any], pt: dict[str, Any], floor: dict[str, float]
) -> dict[str, Any]:
    """Put the figures, ratios and the machine into one document."""
    return {
        "rows": rows,
        "chunk_time_s": CHUNK_TIME_S,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "versions": {"mariadb": server_version(), "pt_table_checksum": pt_version()},
        "replicator": replicator,
        "pt_table_checksum": pt,
        "floor": {key: round(value, 3) for key, value in floor.items()},
        "ratios": {
            "replicator_over_pt_table_checksum": round(
                replicator["seconds"] / pt["seconds"], 3
            ),
            "replicator_over_floor": round(replicator["seconds"] / floor["seconds"], 3),
        },
    }


def server_version() -> str:
    """Return mariadbd's version line."""
    return run_version(["mariadbd", "--version"], "/usr/sbin/mariadbd")


def pt_version() -> str:
    """Return pt-table-checksum's version line."""
    return run_version(["pt-table-checksum", "--version"])


def run_version(command: list[str], fallback: str | None = None) -> str:
    """Run a ``--version`` command and return its output's first line."""
    if shutil.which(command[0]) is None and fallback:
        command = [fallback, *command[1:]]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    return result.stdout.strip().splitlines()[0] if result.stdout.strip() else "?"


def table_text(document: dict[str, Any]) -> str:
    """Render the figures as a small table."""
    replicator = document["replicator"]["seconds"]
    lines = [
        f"{document['rows']:,} rows, chunk time {CHUNK_TIME_S} s",
        f"{'measure':<34}{'seconds':>9}  replicator / it",
        f"{'replicator verify':<34}{replicator:>9.3f}",
    ]
    others = [
        ("pt-table-checksum", document["pt_table_checksum"]["seconds"]),
        ("floor: full scan, same formula", document["floor"]["seconds"]),
        ("floor: full scan, CONCAT_WS", document["floor"]["seconds_concat_ws"]),
    ]
    for name, seconds in others:
        lines.append(f"{name:<34}{seconds:>9.3f}  {replicator / seconds:>6.2f}")
    memory = document["replicator"]
    lines.append(
        f"replicator peak: {memory['python_peak_mib']} MiB Python allocations, "
        f"{memory['rss_peak_mib']} MiB process RSS"
    )
    return "\n".join(lines)


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Time verify against pt-table-checksum."
    )
    parser.add_argument("--rows", type=int, default=DEFAULT_ROWS)
    parser.add_argument("--keep", action="store_true", help="keep the data directories")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    return parser.parse_args(argv)


def run(rows: int, workdir: Path) -> dict[str, Any]:
    """Start the servers, load the table and take every measurement."""
    with started_pair(workdir) as pair:
        start_replication(pair)
        load_table(pair, rows)
        warm_up(pair)
        floor = measure_floor(pair)
        replicator = measure_replicator(pair)
        pt = measure_pt_table_checksum(pair, workdir)
    return summarise(rows, replicator, pt, floor)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the bench once, print the table and write the JSON."""
    arguments = _arguments(argv)
    workdir = Path(tempfile.mkdtemp(prefix="bench-verify-"))
    try:
        document = run(arguments.rows, workdir)
    finally:
        if arguments.keep:
            print(f"kept {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    print(table_text(document))
    arguments.out.parent.mkdir(parents=True, exist_ok=True)
    arguments.out.write_text(json.dumps(document, indent=2) + "\n")
    equal = (
        document["replicator"]["equal"] and not document["pt_table_checksum"]["diffs"]
    )
    return 0 if equal else 1


if __name__ == "__main__":
    sys.exit(main())
