"""The write rate an application holds while ``replicator run`` works on its source.

For each thread count (``--threads``, default 1 and 4) the bench starts three
fresh sandboxes, one after the other, each in its own temporary directory:

1. **idle**: the workload below, for ``--idle-seconds``, on a sandbox where
   ``replicator`` never runs;
2. **replicated**: the workload (``bench/workload.py``) writes as ``shop_app``
   to the ``sandbox-source`` cluster endpoint as fast as the server allows
   (no rate limit) while ``replicator run RUNBOOK --yes`` goes from preflight
   to caught up. When ``run`` exits the workload stops; if ``run`` has not
   exited after ``--run-deadline`` seconds the workload stops anyway
   (``caught_up_under_load`` is then false) and ``run`` is left to finish.
   From the moment the workload has stopped, the bench polls every 20 ms
   until the clone has executed up to the source's binary log position
   (``catch_up_after_stop_s``); ``replicator report --json`` gives the
   ``catch_up`` step's duration under the load (``catch_up_step_s``) and the
   largest lag sampled (``max_bytes_behind``). Then the bench compares the
   full contents of every ``shop`` table on source and clone (they must be
   equal) and checks every acknowledged write on the clone;
3. **idle** again, as the first.

It reports the operations per second acknowledged in each and the ratio of
the replicated rate to the mean of the two idle rates (the same workload, same
seed and threads; measuring the baseline before and after evens out a machine
whose other load changes meanwhile). The replicated figure pays for everything
``run`` does to the source: the writer's reboot to turn the binary log on
(writes stop while it restarts), the binary log itself, the copy for the clone
and the replica's dump thread; the idle sandbox has no binary log. On a small
machine the clone's server competes with the source for the same cores, so
the ratio is a floor for a real deployment, where the clone has its own
instance.

Run it as a module from the repository root with the development virtualenv::

    .venv/bin/python -m bench.bench_load                  # threads 1 and 4
    .venv/bin/python -m bench.bench_load --threads 2 --run-deadline 300

It prints a table and writes the figures as JSON to ``bench/results/load.json``
unless ``--out`` says otherwise. Every sandbox is stopped and its directory
removed, also on error. The exit code is 0 when source and clone held equal
tables and every acknowledged write after every replicated run, 1 otherwise.
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
import pymysql.cursors
import yaml

from bench.common import BenchError, sandbox_environment
from bench.workload import Workload, WorkloadResult
from replicator.sandbox import manage
from replicator.sandbox.demo import SCHEMA
from replicator.sandbox.manage import Sandbox

DEFAULT_THREADS = (1, 4)
DEFAULT_RUN_DEADLINE_S = 600.0
DEFAULT_IDLE_S = 15.0
DEFAULT_OUT = Path(__file__).parent / "results" / "load.json"
REPOSITORY = Path(__file__).resolve().parents[1]
SANDBOX_RUNBOOK = REPOSITORY / "runbooks" / "sandbox.yaml"
RUNBOOK_NAME = "bench-load"
SOURCE = manage.SOURCE_CLUSTER
CLONE = "sandbox-clone"
POLL_S = 0.02
CATCH_UP_DEADLINE_S = 600.0
RUN_EXIT_DEADLINE_S = 600.0
SEED = 7


@dataclass(frozen=True)
class Bench:
    """A sandbox, the directory ``replicator`` runs in, and its runbook."""

    sandbox: Sandbox
    root: Path
    runbook: Path

    @property
    def log(self) -> Path:
        return self.root / "run.log"

    def start_run(self) -> subprocess.Popen[bytes]:
        """Start ``python -m replicator run RUNBOOK --yes``; its log goes to a file.

        A file rather than a pipe: nobody reads the pipe while ``run`` works,
        and a full pipe would block it.
        """
        with self.log.open("wb") as log:
            return subprocess.Popen(
                [sys.executable, "-m", "replicator", "run", str(self.runbook), "--yes"],
                env=sandbox_environment(self.sandbox),
                cwd=self.root,
                stdout=subprocess.DEVNULL,
                stderr=log,
            )

    def report(self) -> dict[str, Any]:
        """Return ``replicator report RUNBOOK --json``."""
        finished = subprocess.run(
            [sys.executable, "-m", "replicator", "report", str(self.runbook), "--json"],
            env=sandbox_environment(self.sandbox),
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=RUN_EXIT_DEADLINE_S,
            check=False,
        )
        if finished.returncode != 0:
            raise BenchError(f"replicator report failed: {finished.stderr[-3000:]}")
        document: dict[str, Any] = json.loads(finished.stdout)
        return document

    def admin(self, cluster: str) -> pymysql.connections.Connection[Any]:
        """Connect as the admin user to a cluster's endpoint."""
        host, port = endpoint(self.sandbox, cluster)
        return pymysql.connect(
            host=host,
            port=port,
            user=manage.ADMIN_USER,
            password=self.sandbox.credentials["admin"],
            autocommit=True,
            charset="utf8mb4",
        )


def endpoint(sandbox: Sandbox, cluster: str) -> tuple[str, int]:
    """Return a cluster endpoint's host and port."""
    found = sandbox.rds().describe_db_clusters(DBClusterIdentifier=cluster)
    description = found["DBClusters"][0]
    return str(description["Endpoint"]), int(description["Port"])


def workload(sandbox: Sandbox, threads: int) -> Workload:
    """Return the full-speed workload against the source's cluster endpoint."""
    host, port = endpoint(sandbox, SOURCE)
    password = sandbox.credentials["app"]
    return Workload(host, port, manage.APP_USER, password, seed=SEED, threads=threads)


@contextmanager
def fresh_sandbox() -> Iterator[Bench]:
    """Start a sandbox in a temporary directory; stop and remove it after."""
    root = Path(tempfile.mkdtemp(prefix="replicator-bench-"))
    try:
        sandbox = manage.up(root / "sandbox")
        try:
            yield Bench(sandbox, root, write_runbook(root))
        finally:
            manage.down(root / "sandbox")
    finally:
        shutil.rmtree(root, ignore_errors=True)


def write_runbook(directory: Path) -> Path:
    """Write the sandbox runbook under the bench's name."""
    document = yaml.safe_load(SANDBOX_RUNBOOK.read_text())
    document["name"] = RUNBOOK_NAME
    path = directory / f"{RUNBOOK_NAME}.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


# --- the replicated run -------------------------------------------------------


def replicated(threads: int, run_deadline: float) -> dict[str, Any]:
    """Run ``replicator run`` under the full-speed workload; return the figures."""
    with fresh_sandbox() as bench:
        load = workload(bench.sandbox, threads)
        load.start()
        try:
            process = bench.start_run()
            caught_up_under_load = wait_exit(process, run_deadline)
        finally:
            result = load.stop()
        stopped = time.monotonic()
        if process.wait(timeout=RUN_EXIT_DEADLINE_S) != 0:
            tail = bench.log.read_text(errors="replace")[-3000:]
            raise BenchError(f"replicator run exited {process.returncode}: {tail}")
        catch_up = wait_caught_up(bench) - stopped
        timeline = bench.report()
        steps = {step["name"]: step for step in timeline["steps"]}
        return {
            "seconds": result.stopped - result.started,
            "ops_per_second": result.ops_per_second,
            "acknowledged": len(result.acknowledged),
            "errors": result.errors,
            "longest_gap_s": result.longest_gap,
            "caught_up_under_load": caught_up_under_load,
            "catch_up_after_stop_s": catch_up,
            "catch_up_step_s": steps["catch_up"]["seconds"],
            "max_bytes_behind": timeline["lag"].get("max_bytes_behind"),
            **compare(bench, result),
        }


def wait_exit(process: subprocess.Popen[bytes], deadline_s: float) -> bool:
    """Wait for ``process`` to exit; return False when the deadline came first."""
    try:
        process.wait(timeout=deadline_s)
    except subprocess.TimeoutExpired:
        return False
    return True


def wait_caught_up(bench: Bench) -> float:
    """Poll until the clone executed up to the source's position; return when."""
    deadline = time.monotonic() + CATCH_UP_DEADLINE_S
    with closing(bench.admin(SOURCE)) as source, closing(bench.admin(CLONE)) as clone:
        while time.monotonic() < deadline:
            with source.cursor() as cursor:
                cursor.execute("SHOW MASTER STATUS")
                file, position = cursor.fetchone()[:2]
            with clone.cursor(pymysql.cursors.DictCursor) as cursor:
                cursor.execute("SHOW SLAVE STATUS")
                replica = cursor.fetchone()
            if replica is None:
                raise BenchError(f"{CLONE} shows no replica status")
            executed = (
                replica["Relay_Master_Log_File"],
                replica["Exec_Master_Log_Pos"],
            )
            if executed == (file, position):
                return time.monotonic()
            time.sleep(POLL_S)
    raise BenchError(f"the clone did not catch up in {CATCH_UP_DEADLINE_S:.0f} s")


def compare(bench: Bench, result: WorkloadResult) -> dict[str, Any]:
    """Compare every shop table on source and clone; check the ledger on the clone."""
    with closing(bench.admin(SOURCE)) as source, closing(bench.admin(CLONE)) as clone:
        on_source = table_contents(source)
        on_clone = table_contents(clone)
        missing = result.check_present(clone)
    differing = sorted(
        table
        for table in on_source.keys() | on_clone.keys()
        if on_source.get(table) != on_clone.get(table)
    )
    return {
        "tables": len(on_source),
        "rows": sum(len(rows) for rows in on_source.values()),
        "differing_tables": differing,
        "missing_on_clone": missing,
    }


def table_contents(
    connection: pymysql.connections.Connection[Any],
) -> dict[str, list[tuple[Any, ...]]]:
    """Return every base table of shop with all its rows, sorted."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT TABLE_NAME FROM information_schema.TABLES "
            "WHERE TABLE_SCHEMA = %s AND TABLE_TYPE = 'BASE TABLE'",
            (SCHEMA,),
        )
        tables = [str(row[0]) for row in cursor.fetchall()]
        contents = {}
        for table in tables:
            cursor.execute(f"SELECT * FROM `{SCHEMA}`.`{table}`")
            contents[table] = sorted(cursor.fetchall(), key=repr)
    return contents


# --- the idle baseline --------------------------------------------------------


def idle(threads: int, seconds: float) -> dict[str, Any]:
    """Run the same workload on a sandbox nothing else touches."""
    with fresh_sandbox() as bench:
        load = workload(bench.sandbox, threads)
        with load:
            time.sleep(seconds)
        assert load.result is not None
        return {
            "seconds": load.result.stopped - load.result.started,
            "ops_per_second": load.result.ops_per_second,
            "acknowledged": len(load.result.acknowledged),
            "errors": load.result.errors,
        }


# --- the report ---------------------------------------------------------------


def measure(threads: int, run_deadline: float, idle_seconds: float) -> dict[str, Any]:
    """Measure one thread count: idle, replicated, then idle again.

    The baseline is the mean of both idle rates, which evens out a machine
    that gets busier or quieter while the bench runs.
    """
    before = idle(threads, idle_seconds)
    loaded = replicated(threads, run_deadline)
    after = idle(threads, idle_seconds)
    baseline = (before["ops_per_second"] + after["ops_per_second"]) / 2
    return {
        "threads": threads,
        "replicated": loaded,
        "idle_before": before,
        "idle_after": after,
        "idle_ops_per_second": baseline,
        "ratio": loaded["ops_per_second"] / baseline,
    }


def equal(figures: dict[str, Any]) -> bool:
    loaded = figures["replicated"]
    return not loaded["differing_tables"] and not loaded["missing_on_clone"]


def table(measured: Sequence[dict[str, Any]]) -> str:
    lines = [
        f"{'threads':>7} {'run s':>7} {'ops/s run':>10} {'ops/s idle':>11} "
        f"{'ratio':>6} {'caught up':>10} {'step s':>7} {'after stop s':>12}  equal"
    ]
    for figures in measured:
        loaded = figures["replicated"]
        under_load = "under load" if loaded["caught_up_under_load"] else "after"
        lines.append(
            f"{figures['threads']:>7} {loaded['seconds']:>7.1f} "
            f"{loaded['ops_per_second']:>10.1f} "
            f"{figures['idle_ops_per_second']:>11.1f} {figures['ratio']:>6.2f} "
            f"{under_load:>10} {loaded['catch_up_step_s']:>7.1f} "
            f"{loaded['catch_up_after_stop_s']:>12.3f}  "
            f"{'yes' if equal(figures) else 'NO'}"
        )
    lines.append(f"{os.cpu_count()} cores")
    return "\n".join(lines)


def rounded(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 3)
    if isinstance(value, dict):
        return {k: rounded(v) for k, v in value.items()}
    return value


def document(
    arguments: argparse.Namespace, measured: Sequence[dict[str, Any]]
) -> dict[str, Any]:
    return {
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "engine_version": manage.DEFAULT_ENGINE_VERSION,
        "run_deadline_s": arguments.run_deadline,
        "idle_seconds": arguments.idle_seconds,
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "results": [rounded(figures) for figures in measured],
    }


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Measure the write rate held during replicator run."
    )
    parser.add_argument("--threads", type=int, nargs="+", default=list(DEFAULT_THREADS))
    parser.add_argument(
        "--run-deadline",
        type=float,
        default=DEFAULT_RUN_DEADLINE_S,
        help="seconds the load runs at most while run has not caught up",
    )
    parser.add_argument(
        "--idle-seconds",
        type=float,
        default=DEFAULT_IDLE_S,
        help="how long each idle baseline writes",
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; print the table; write the JSON."""
    arguments = _arguments(argv)
    if (
        min(arguments.threads) < 1
        or min(arguments.run_deadline, arguments.idle_seconds) <= 0
    ):
        print(
            "--threads must be at least 1, --run-deadline and --idle-seconds positive",
            file=sys.stderr,
        )
        return 2
    measured = []
    for threads in arguments.threads:
        measured.append(
            measure(threads, arguments.run_deadline, arguments.idle_seconds)
        )
        print(f"threads {threads}: ratio {measured[-1]['ratio']:.2f}", file=sys.stderr)
    print(table(measured))
    arguments.out.parent.mkdir(parents=True, exist_ok=True)
    body = document(arguments, measured)
    arguments.out.write_text(json.dumps(body, indent=2) + "\n")
    return 0 if all(equal(figures) for figures in measured) else 1


if __name__ == "__main__":
    sys.exit(main())
