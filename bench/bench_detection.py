"""How soon catch-up notices that the clone has caught up (``stable_polls: 1``).

The catch-up loop (:class:`replicator.catchup.CatchUp`, the one ``run`` and
``watch`` use) runs in this process with a 1 s poll interval and
``stable_polls: 1`` against a sandbox whose clone ``replicator run`` first
brought to caught up. Each repetition:

1. takes ``LOCK TABLES bench.probe WRITE`` on the clone as root, then inserts a
   row into ``bench.probe`` on the source: the clone's SQL thread keeps
   running but waits in front of that event, so the clone is behind;
2. runs the loop; it polls, sees "not caught up", sleeps;
3. meanwhile a second thread, after a hold of 2 s plus a random fraction of
   the poll interval (so the release falls anywhere between two polls),
   releases the lock: that instant is T;
4. the SQL thread applies the event at once; the latency is the time from T
   to the poll that reports caught up (the loop then returns).

A table lock holds the replica back instead of a stopped SQL thread because
the loop starts stopped replica threads itself at its next poll, as it must:
a stopped thread could not keep the clone behind until a known instant.

The goal is a latency of at most one poll interval plus 0.2 s. Run it from the
repository root with the development virtualenv::

    .venv/bin/python bench/bench_detection.py                # 5 repetitions
    .venv/bin/python bench/bench_detection.py --repetitions 10 --out /tmp/d.json

It prints each latency, the median and the maximum against the goal, writes
the JSON to ``bench/results/detection.json`` unless ``--out`` says otherwise,
and exits 0 when the maximum meets the goal, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import threading
import time
from collections.abc import Sequence
from contextlib import closing
from pathlib import Path
from typing import Any

from bench.bench_skips import (
    SOURCE,
    Bench,
    execute,
    prepared_sandbox,
    source_position,
    wait_caught_up,
)
from bench.common import BenchError
from replicator.catchup import CatchUp, CatchUpState, Poll
from replicator.context import Context
from replicator.journal import Journal
from replicator.runbook import load_runbook, parse_duration

DEFAULT_REPETITIONS = 5
DEFAULT_POLL_INTERVAL = "1s"
DEFAULT_OUT = Path(__file__).parent / "results" / "detection.json"
GOAL_MARGIN_S = 0.2
HOLD_S = 2.0
LOOP_DEADLINE_S = 60.0
CLONE = "sandbox-clone"
PROBE_DDL = "CREATE TABLE bench.probe (id INT UNSIGNED PRIMARY KEY)"


class QuietLog:
    """A logger that drops every event: the bench prints its own lines."""

    def bind(self, **_context: Any) -> QuietLog:
        return self

    def _drop(self, _event: str, **_fields: Any) -> None:
        return None

    debug = info = warning = error = exception = _drop


class PollTimes:
    """When each poll of the loop ended, and whether it saw the clone caught up."""

    def __init__(self) -> None:
        self.polls: list[tuple[float, bool]] = []

    def __call__(self, poll: Poll, _state: CatchUpState) -> None:
        self.polls.append((time.monotonic(), poll.caught_up))

    def first_caught_up(self) -> float:
        for moment, caught_up in self.polls:
            if caught_up:
                return moment
        raise BenchError("the loop ended without a caught-up poll")


def measure_once(bench: Bench, ctx: Context, key: int, interval: float) -> float:
    """Hold the clone behind, release it at T; return T to the caught-up poll."""
    times = PollTimes()
    released: list[float] = []

    with closing(bench.root_connection(CLONE)) as clone:
        execute(clone, "LOCK TABLES bench.probe WRITE")
        with closing(bench.root_connection(SOURCE)) as source:
            execute(source, f"INSERT INTO bench.probe (id) VALUES ({key})")

        def release() -> None:
            time.sleep(HOLD_S + random.uniform(0.0, interval))
            released.append(time.monotonic())
            execute(clone, "UNLOCK TABLES")

        releaser = threading.Thread(target=release, name="release")
        releaser.start()
        try:
            CatchUp(ctx, on_poll=times).run()
        finally:
            releaser.join(LOOP_DEADLINE_S)

    (at,) = released
    if not any(moment < at for moment, _ in times.polls):
        raise BenchError("the loop never polled while the clone was held behind")
    if any(caught_up for moment, caught_up in times.polls if moment < at):
        raise BenchError("the loop saw the clone caught up while it was held behind")
    return times.first_caught_up() - at


def measure(repetitions: int, poll_interval: str) -> list[float]:
    """Start a sandbox and measure the detection latency ``repetitions`` times."""
    interval = parse_duration(poll_interval)
    with prepared_sandbox(poll_interval=poll_interval, stable_polls=1) as bench:
        with closing(bench.root_connection(SOURCE)) as source:
            execute(source, PROBE_DDL)
        wait_caught_up(bench, source_position(bench))
        os.environ.update(bench.sandbox.environment())
        journal = Journal.open(bench.root / "detection.db")
        ctx = Context(
            runbook=load_runbook(bench.runbook),
            journal=journal,
            log=QuietLog(),
            interactive=False,
        )
        try:
            latencies = []
            for key in range(1, repetitions + 1):
                latencies.append(measure_once(bench, ctx, key, interval))
                print(f"repetition {key}: {latencies[-1]:.3f} s", file=sys.stderr)
        finally:
            ctx.close()
            journal.close()
    return latencies


def document(
    poll_interval: str, latencies: Sequence[float], goal: float
) -> dict[str, Any]:
    """Return the JSON document of one benchmark run."""
    return {
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "poll_interval": poll_interval,
        "stable_polls": 1,
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "latencies_s": [round(value, 3) for value in latencies],
        "median_s": round(statistics.median(latencies), 3),
        "max_s": round(max(latencies), 3),
        "goal_s": goal,
        "met": max(latencies) <= goal,
    }


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Time catch-up's detection.")
    parser.add_argument("--repetitions", type=int, default=DEFAULT_REPETITIONS)
    parser.add_argument("--poll-interval", default=DEFAULT_POLL_INTERVAL)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; print the figures; write the JSON."""
    arguments = _arguments(argv)
    if arguments.repetitions < 1:
        print("--repetitions must be at least 1", file=sys.stderr)
        return 2
    goal = parse_duration(arguments.poll_interval) + GOAL_MARGIN_S

    latencies = measure(arguments.repetitions, arguments.poll_interval)
    body = document(arguments.poll_interval, latencies, goal)

    print(
        f"detection latency over {len(latencies)} repetitions: "
        f"median {body['median_s']:.3f} s, max {body['max_s']:.3f} s, "
        f"goal <= {goal:.1f} s: {'met' if body['met'] else 'NOT met'}"
    )
    arguments.out.parent.mkdir(parents=True, exist_ok=True)
    arguments.out.write_text(json.dumps(body, indent=2) + "\n")
    return 0 if body["met"] else 1


if __name__ == "__main__":
    sys.exit(main())
