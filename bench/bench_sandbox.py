"""How fast the local Aurora sandbox starts and clones.

Each run starts a fresh sandbox in its own temporary directory and measures:

- ``up``: ``manage.up`` until the source writer is available with the demo
  data and the application user (what ``replicator sandbox up`` waits for);
- ``binlog_reboot``: ``binlog_format=MIXED`` set in ``sandbox-source-params``
  and ``sandbox-source-1`` rebooted, until the writer is available again;
- ``clone``: ``restore_db_cluster_to_point_in_time`` (copy-on-write) and
  ``create_db_instance`` until the clone's writer is ``available`` and its
  "Binlog position from crash recovery is ..." event is present.

Then it stops the sandbox and removes the directory. It prints a table of the
median, minimum and maximum of each figure against its goal (the goals hold
for a machine with 2 cores) and writes the runs and the summary as JSON.

Run it from the repository root with the development virtualenv::

    .venv/bin/python bench/bench_sandbox.py                  # 3 runs, v3
    .venv/bin/python bench/bench_sandbox.py --runs 5 \\
        --engine-version 5.7.mysql_aurora.2.11.2 --out /tmp/sandbox-v2.json

The JSON goes to ``bench/results/sandbox.json`` unless ``--out`` says
otherwise. The exit code is 0 when every median meets its goal, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench.common import Summary
from replicator.sandbox import manage

DEFAULT_RUNS = 3
DEFAULT_OUT = Path(__file__).parent / "results" / "sandbox.json"
POLL_INTERVAL_S = 0.05
WAIT_DEADLINE_S = 120.0
CLONE_CLUSTER = "bench-clone"
CLONE_WRITER = "bench-clone-1"
INSTANCE_CLASS = "db.r6g.large"
POSITION_EVENT_PREFIX = "Binlog position from crash recovery is"
# Goals, in seconds, on a machine with 2 cores.
GOALS_S = {"up": 20.0, "clone": 10.0}
GOAL_CORES = 2


class BenchError(RuntimeError):
    """A sandbox operation did not finish before its deadline."""


def wait_until(what: str, done: Callable[[], bool]) -> None:
    """Poll ``done`` until it is true; fail naming ``what`` after the deadline."""
    deadline = time.monotonic() + WAIT_DEADLINE_S
    while not done():
        if time.monotonic() > deadline:
            raise BenchError(f"{what} not done after {WAIT_DEADLINE_S:.0f} s")
        time.sleep(POLL_INTERVAL_S)


def instance_status(rds: Any, instance: str) -> str:
    found = rds.describe_db_instances(DBInstanceIdentifier=instance)
    status: str = found["DBInstances"][0]["DBInstanceStatus"]
    if status == "failed":
        raise BenchError(f"instance {instance} failed; read the supervisor log")
    return status


def has_position_event(rds: Any, instance: str) -> bool:
    events = rds.describe_events(SourceIdentifier=instance, SourceType="db-instance")
    return any(
        event["Message"].startswith(POSITION_EVENT_PREFIX) for event in events["Events"]
    )


def enable_binlog(rds: Any) -> None:
    """Set binlog_format=MIXED on the source and reboot its writer to apply it."""
    rds.modify_db_cluster_parameter_group(
        DBClusterParameterGroupName=manage.SOURCE_PARAMS,
        Parameters=[
            {
                "ParameterName": "binlog_format",
                "ParameterValue": "MIXED",
                "ApplyMethod": "pending-reboot",
            }
        ],
    )
    rds.reboot_db_instance(DBInstanceIdentifier=manage.SOURCE_WRITER)
    wait_until(
        f"reboot of {manage.SOURCE_WRITER}",
        lambda: instance_status(rds, manage.SOURCE_WRITER) == "available",
    )


def clone(rds: Any) -> None:
    """Clone the source copy-on-write and wait for the writer and its event."""
    rds.restore_db_cluster_to_point_in_time(
        DBClusterIdentifier=CLONE_CLUSTER,
        SourceDBClusterIdentifier=manage.SOURCE_CLUSTER,
        RestoreType="copy-on-write",
        UseLatestRestorableTime=True,
        DBClusterParameterGroupName=manage.SOURCE_PARAMS,
    )
    rds.create_db_instance(
        DBInstanceIdentifier=CLONE_WRITER,
        DBClusterIdentifier=CLONE_CLUSTER,
        DBInstanceClass=INSTANCE_CLASS,
        Engine="aurora-mysql",
    )
    wait_until(
        f"clone writer {CLONE_WRITER} available",
        lambda: instance_status(rds, CLONE_WRITER) == "available",
    )
    wait_until(
        f"crash-recovery event of {CLONE_WRITER}",
        lambda: has_position_event(rds, CLONE_WRITER),
    )


def timed(action: Callable[[], object]) -> float:
    started = time.monotonic()
    action()
    return time.monotonic() - started


def one_run(engine_version: str) -> dict[str, float]:
    """Measure one fresh sandbox; stop it and remove its directory after."""
    root = Path(tempfile.mkdtemp(prefix="replicator-bench-"))
    try:
        started = time.monotonic()
        sandbox = manage.up(root, engine_version)
        figures = {"up": time.monotonic() - started}
        rds = sandbox.rds()
        figures["binlog_reboot"] = timed(lambda: enable_binlog(rds))
        figures["clone"] = timed(lambda: clone(rds))
        return figures
    finally:
        manage.down(root)
        shutil.rmtree(root, ignore_errors=True)


def summarise(runs: Sequence[dict[str, float]]) -> list[Summary]:
    summaries: list[Summary] = []
    for name in runs[0]:
        values = [run[name] for run in runs]
        median = statistics.median(values)
        summaries.append(
            Summary(name, median, min(values), max(values), GOALS_S.get(name))
        )
    return summaries


def table(summaries: Sequence[Summary], runs: int) -> str:
    lines = [
        f"{'figure':<14} {'median s':>9} {'min s':>8} {'max s':>8} {'goal s':>7}  met",
    ]
    for item in summaries:
        goal = "-" if item.goal is None else f"< {item.goal:.0f}"
        met = {None: "-", True: "yes", False: "NO"}[item.met]
        lines.append(
            f"{item.name:<14} {item.median:>9.2f} {item.minimum:>8.2f} "
            f"{item.maximum:>8.2f} {goal:>7}  {met}"
        )
    cores = os.cpu_count()
    lines.append(f"{runs} runs, {cores} cores (goals hold for {GOAL_CORES} cores)")
    return "\n".join(lines)


def document(
    engine_version: str, runs: Sequence[dict[str, float]], summaries: list[Summary]
) -> dict[str, Any]:
    return {
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "engine_version": engine_version,
        "cpu_count": os.cpu_count(),
        "goal_cores": GOAL_CORES,
        "python": platform.python_version(),
        "machine": platform.machine(),
        "runs": list(runs),
        "summary": {
            item.name: {
                "median": round(item.median, 3),
                "min": round(item.minimum, 3),
                "max": round(item.maximum, 3),
                "goal": item.goal,
                "met": item.met,
            }
            for item in summaries
        },
    }


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Time sandbox up and clone.")
    parser.add_argument("--runs", type=int, default=DEFAULT_RUNS)
    parser.add_argument("--engine-version", default=manage.DEFAULT_ENGINE_VERSION)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; print the table; write the JSON."""
    arguments = _arguments(argv)
    if arguments.runs < 1:
        print("--runs must be at least 1", file=sys.stderr)
        return 2
    runs: list[dict[str, float]] = []
    for number in range(1, arguments.runs + 1):
        runs.append(one_run(arguments.engine_version))
        figures = ", ".join(f"{k} {v:.2f} s" for k, v in runs[-1].items())
        print(f"run {number}: {figures}", file=sys.stderr)
    summaries = summarise(runs)
    print(table(summaries, len(runs)))
    arguments.out.parent.mkdir(parents=True, exist_ok=True)
    body = document(arguments.engine_version, runs, summaries)
    arguments.out.write_text(json.dumps(body, indent=2) + "\n")
    return 0 if all(item.met is not False for item in summaries) else 1


if __name__ == "__main__":
    sys.exit(main())
