"""How fast conflicting events are cleared: ``replicator run`` against pt-slave-restart.

Both tools clear the same divergence on the same sandbox, one after the other,
each on a fresh set of keys:

1. replication on the clone is stopped (``mysql.rds_stop_replication``);
2. N rows go into ``bench.dups`` on the clone only (``sql_log_bin=0``), then
   the same N keys are inserted on the source in N separate transactions, so
   every one of the N source events fails on the clone with error 1062;
3. replication is started again: that instant is T0, and the tool starts;
4. a watcher polls the clone as root every 20 ms until it is caught up (both
   threads running, executed position equal to the source's): T1.

``seconds`` is T1 - T0. ``replicator run`` runs under a runbook whose only
rule skips every 1062 on ``bench.dups``; it exits on its own once caught up
(``exit_seconds``), and its journal must hold exactly N new skip records.
pt-slave-restart connects to the clone's root socket (root has SUPER), skips
1062 only, with its fastest reasonable polling (``--min-sleep 0.001
--max-sleep 0.05``); it is stopped once the watcher sees the clone caught up.
For both, every key must still hold the clone's own row: all N source events
were skipped, none applied. The version check of pt-slave-restart is off, so
nothing leaves this machine.

Run it from the repository root with the development virtualenv::

    .venv/bin/python bench/bench_skips.py                   # 500 events
    .venv/bin/python bench/bench_skips.py --events 2000
    .venv/bin/python bench/bench_skips.py --poll-interval 200ms --out /tmp/s.json

It prints the seconds of each tool and the ratio replicator / pt-slave-restart
and writes them as JSON to ``bench/results/skips.json`` unless ``--out`` says
otherwise. It needs ``pt-slave-restart`` on the PATH (Debian's percona-toolkit).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import closing, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pymysql
import yaml

from bench.common import BenchError, sandbox_environment
from replicator.journal import Journal
from replicator.sandbox import manage
from replicator.sandbox.manage import Sandbox

DEFAULT_EVENTS = 500
DEFAULT_POLL_INTERVAL = "1s"
DEFAULT_OUT = Path(__file__).parent / "results" / "skips.json"
REPOSITORY = Path(__file__).resolve().parents[1]
SANDBOX_RUNBOOK = REPOSITORY / "runbooks" / "sandbox.yaml"
RUNBOOK_NAME = "bench"
RULE = "bench-dups"
CLONE = "sandbox-clone"
SOURCE = "sandbox-source"
WATCH_INTERVAL_S = 0.02
CLEAR_DEADLINE_S = 1800.0
INSERT_BATCH = 500
PT_SLAVE_RESTART = "pt-slave-restart"
TABLE_DDL = (
    "CREATE TABLE bench.dups (id INT UNSIGNED PRIMARY KEY, origin VARCHAR(10) NOT NULL)"
)


# --- the sandbox ---------------------------------------------------------------------


@dataclass(frozen=True)
class Bench:
    """A sandbox whose clone ``replicator run`` brought to caught up."""

    sandbox: Sandbox
    root: Path
    runbook: Path

    def environment(self) -> dict[str, str]:
        """Return this process's environment with the sandbox's variables."""
        return sandbox_environment(self.sandbox)

    def start_run(self, log: Path) -> subprocess.Popen[bytes]:
        """Start ``replicator run RUNBOOK --yes``, its output going to ``log``.

        A file, not a pipe: a run that skips thousands of events writes more
        log lines than a pipe holds, and would block while nobody reads.
        """
        with log.open("ab") as output:
            return subprocess.Popen(
                [sys.executable, "-m", "replicator", "run", str(self.runbook), "--yes"],
                env=self.environment(),
                cwd=self.root,
                stdout=output,
                stderr=subprocess.STDOUT,
            )

    def run(self) -> None:
        """Run ``replicator run`` to the end; fail unless it exits 0."""
        log = self.root / "replicator-run.log"
        code = self.start_run(log).wait()
        if code != 0:
            raise BenchError(f"replicator run exited {code}; see {log}")

    def root_connection(self, cluster: str) -> pymysql.connections.Connection[Any]:
        """Connect as a writer's operator (root over its socket)."""
        return pymysql.connect(
            unix_socket=self.root_socket(cluster), user="root", autocommit=True
        )

    def root_socket(self, cluster: str) -> str:
        """Return the root socket of a cluster's writer."""
        for server in self.sandbox.servers():
            if server["cluster"] == cluster:
                return str(server["root_socket"])
        raise BenchError(f"no server for {cluster}")

    def call_on_clone(self, procedure: str) -> None:
        """Call a mysql.rds_* procedure on the clone as the admin user."""
        cluster = self.sandbox.rds().describe_db_clusters(DBClusterIdentifier=CLONE)
        description = cluster["DBClusters"][0]
        connection = pymysql.connect(
            host=description["Endpoint"],
            port=description["Port"],
            user=manage.ADMIN_USER,
            password=self.sandbox.credentials["admin"],
            autocommit=True,
        )
        with closing(connection), connection.cursor() as cursor:
            cursor.execute(f"CALL mysql.{procedure}()")

    def journal_skips(self) -> int:
        """Return how many skips of the bench rule the journal holds."""
        path = self.root / ".replicator" / f"{RUNBOOK_NAME}.db"
        with closing(Journal.open(path)) as journal:
            return int(journal.skip_counts()["by_rule"].get(RULE, 0))


def write_runbook(directory: Path, **catch_up: Any) -> Path:
    """Write the sandbox runbook named ``bench`` with ``catch_up`` overridden."""
    document = yaml.safe_load(SANDBOX_RUNBOOK.read_text())
    document["name"] = RUNBOOK_NAME
    document["catch_up"].update(catch_up)
    path = directory / f"{RUNBOOK_NAME}.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


@contextmanager
def prepared_sandbox(**catch_up: Any) -> Iterator[Bench]:
    """Start a sandbox in a temporary directory, clone caught up; stop it after."""
    root = Path(tempfile.mkdtemp(prefix="replicator-bench-"))
    try:
        sandbox = manage.up(root / "sandbox")
        try:
            bench = Bench(sandbox, root, write_runbook(root, **catch_up))
            with closing(bench.root_connection(SOURCE)) as source:
                execute(source, "CREATE DATABASE bench", TABLE_DDL)
            bench.run()
            yield bench
        finally:
            manage.down(root / "sandbox")
    finally:
        shutil.rmtree(root, ignore_errors=True)


def execute(connection: pymysql.connections.Connection[Any], *statements: str) -> None:
    """Run statements one after another."""
    with connection.cursor() as cursor:
        for statement in statements:
            cursor.execute(statement)


def source_position(bench: Bench) -> tuple[str, int]:
    """Return the source's binlog file and position."""
    with (
        closing(bench.root_connection(SOURCE)) as source,
        source.cursor() as cursor,
    ):
        cursor.execute("SHOW MASTER STATUS")
        file, position = cursor.fetchone()[:2]
    return str(file), int(position)


def caught_up(
    clone: pymysql.connections.Connection[Any], source: tuple[str, int]
) -> bool:
    """Tell whether both threads run and the clone executed up to ``source``."""
    with clone.cursor(pymysql.cursors.DictCursor) as cursor:
        cursor.execute("SHOW SLAVE STATUS")
        row = cursor.fetchone()
    if row is None:
        raise BenchError("the clone has no replication configured")
    running = (row["Slave_IO_Running"], row["Slave_SQL_Running"]) == ("Yes", "Yes")
    executed = (row["Relay_Master_Log_File"], row["Exec_Master_Log_Pos"])
    return running and executed == source


def wait_caught_up(bench: Bench, source: tuple[str, int]) -> float:
    """Poll the clone until caught up with ``source``; return that instant."""
    deadline = time.monotonic() + CLEAR_DEADLINE_S
    with closing(bench.root_connection(CLONE)) as clone:
        while time.monotonic() < deadline:
            if caught_up(clone, source):
                return time.monotonic()
            time.sleep(WATCH_INTERVAL_S)
    raise BenchError(f"the clone did not catch up within {CLEAR_DEADLINE_S:.0f} s")


# --- the divergence ------------------------------------------------------------------


def diverge(bench: Bench, keys: range) -> tuple[str, int]:
    """Stop replication and make every key conflict; return the source's position."""
    bench.call_on_clone("rds_stop_replication")
    with closing(bench.root_connection(CLONE)) as clone, clone.cursor() as cursor:
        cursor.execute("SET SESSION sql_log_bin = 0")
        for start in range(keys.start, keys.stop, INSERT_BATCH):
            batch = range(start, min(start + INSERT_BATCH, keys.stop))
            cursor.executemany(
                "INSERT INTO bench.dups (id, origin) VALUES (%s, 'clone')",
                [(key,) for key in batch],
            )
    with closing(bench.root_connection(SOURCE)) as source, source.cursor() as cursor:
        for key in keys:  # autocommit: one transaction per key
            cursor.execute(
                "INSERT INTO bench.dups (id, origin) VALUES (%s, 'source')", (key,)
            )
    return source_position(bench)


def verify_clone_rows(bench: Bench, keys: range) -> None:
    """Check that every key still holds the clone's own row (all events skipped)."""
    with closing(bench.root_connection(CLONE)) as clone, clone.cursor() as cursor:
        cursor.execute(
            "SELECT origin, COUNT(*) FROM bench.dups WHERE id BETWEEN %s AND %s "
            "GROUP BY origin",
            (keys.start, keys.stop - 1),
        )
        counts = dict(cursor.fetchall())
    if counts != {"clone": len(keys)}:
        raise BenchError(f"rows on the clone by origin: {counts}, expected clone only")


# --- the tools -----------------------------------------------------------------------


def clear_with_replicator(bench: Bench, keys: range) -> dict[str, Any]:
    """Clear the conflicts with ``replicator run`` under the skip-all-1062 rule."""
    source = diverge(bench, keys)
    skips_before = bench.journal_skips()

    log = bench.root / "replicator-skips.log"
    started = time.monotonic()
    bench.call_on_clone("rds_start_replication")
    process = bench.start_run(log)
    cleared = wait_caught_up(bench, source)
    code = process.wait(timeout=CLEAR_DEADLINE_S)
    exited = time.monotonic()

    if code != 0:
        raise BenchError(f"replicator run exited {code}: {log.read_text()[-3000:]}")
    journaled = bench.journal_skips() - skips_before
    if journaled != len(keys):
        raise BenchError(f"{journaled} skip records journaled, expected {len(keys)}")
    verify_clone_rows(bench, keys)
    return {
        "seconds": cleared - started,
        "exit_seconds": exited - started,
        "skips_journaled": journaled,
    }


def clear_with_pt_slave_restart(bench: Bench, keys: range) -> dict[str, Any]:
    """Clear the conflicts with pt-slave-restart on the clone's root socket."""
    source = diverge(bench, keys)
    output = bench.root / "pt-slave-restart.out"
    command = [
        PT_SLAVE_RESTART,
        f"--socket={bench.root_socket(CLONE)}",
        "--user=root",
        "--error-numbers=1062",
        "--sleep=1",
        "--min-sleep=0.001",
        "--max-sleep=0.05",
        "--no-version-check",
        f"--sentinel={bench.root / 'pt-slave-restart.sentinel'}",
    ]

    with output.open("w") as log:
        started = time.monotonic()
        bench.call_on_clone("rds_start_replication")
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        try:
            cleared = wait_caught_up(bench, source)
        finally:
            process.terminate()
            process.wait(timeout=30)

    restarts = sum(" 1062" in line for line in output.read_text().splitlines())
    verify_clone_rows(bench, keys)
    return {"seconds": cleared - started, "restarts_logged": restarts}


# --- the report ----------------------------------------------------------------------


def document(
    events: int, poll_interval: str, figures: dict[str, Any]
) -> dict[str, Any]:
    """Return the JSON document of one benchmark run."""
    ratio = figures["replicator"]["seconds"] / figures["pt_slave_restart"]["seconds"]
    return {
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "events": events,
        "replicator_poll_interval": poll_interval,
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "pt_slave_restart_version": pt_slave_restart_version(),
        "replicator": rounded(figures["replicator"]),
        "pt_slave_restart": rounded(figures["pt_slave_restart"]),
        "ratio_replicator_to_pt_slave_restart": round(ratio, 2),
    }


def rounded(figures: dict[str, Any]) -> dict[str, Any]:
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in figures.items()}


def pt_slave_restart_version() -> str:
    answer = subprocess.run(
        [PT_SLAVE_RESTART, "--version"], capture_output=True, text=True, check=True
    )
    return answer.stdout.strip()


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Time clearing N conflicting events.")
    parser.add_argument("--events", type=int, default=DEFAULT_EVENTS)
    parser.add_argument("--poll-interval", default=DEFAULT_POLL_INTERVAL)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; print the figures; write the JSON."""
    arguments = _arguments(argv)
    if arguments.events < 1:
        print("--events must be at least 1", file=sys.stderr)
        return 2
    if shutil.which(PT_SLAVE_RESTART) is None:
        print(f"{PT_SLAVE_RESTART} is not on the PATH", file=sys.stderr)
        return 2

    events = arguments.events
    rule = {"name": RULE, "errors": [1062], "tables": ["bench.dups"], "action": "skip"}
    catch_up = {"poll_interval": arguments.poll_interval, "skip_policy": [rule]}
    with prepared_sandbox(**catch_up) as bench:
        figures = {
            "replicator": clear_with_replicator(bench, range(1, events + 1)),
            "pt_slave_restart": clear_with_pt_slave_restart(
                bench, range(events + 1, 2 * events + 1)
            ),
        }
    body = document(events, arguments.poll_interval, figures)

    print(
        f"{events} conflicting events: "
        f"replicator {body['replicator']['seconds']:.2f} s, "
        f"pt-slave-restart {body['pt_slave_restart']['seconds']:.2f} s, "
        f"ratio {body['ratio_replicator_to_pt_slave_restart']:.2f}"
    )
    arguments.out.parent.mkdir(parents=True, exist_ok=True)
    arguments.out.write_text(json.dumps(body, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
