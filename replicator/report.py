"""The run's timeline, as a team studies its delivery process.

For each step: start, end, time waiting (on AWS or on replication) against
time working, attempts and retries; skipped events by rule and table; lag over
time; write downtime at cutover. JSON for tools, Markdown for a ticket.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Any

from replicator.context import Context

# Steps whose whole duration is waiting on replication, not work of ours.
REPLICATION_WAITS = frozenset({"catch_up", "drain", "rollback_drain"})
LAG_POINTS = 40


def parse_time(text: str) -> datetime:
    """Parse a journal timestamp (ISO 8601, trailing Z)."""
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def seconds_between(start: str | None, end: str | None) -> float | None:
    """Return the seconds between two journal timestamps, None when one is missing."""
    if not start or not end:
        return None
    return round((parse_time(end) - parse_time(start)).total_seconds(), 3)


def build_report(ctx: Context) -> dict[str, Any]:
    """Return the run's timeline as a JSON-ready document."""
    waits: dict[str, float] = {}
    for _id, _time, _kind, data in ctx.journal.events("wait"):
        step = str(data.get("step"))
        waits[step] = waits.get(step, 0.0) + float(data.get("seconds", 0))
    retries = Counter(
        str(d.get("step")) for _i, _t, _k, d in ctx.journal.events("aws_retry")
    )
    return {
        "runbook": ctx.runbook.name,
        "run": ctx.journal.run_id,
        "steps": _steps(ctx, waits, retries),
        "skips": ctx.journal.skip_counts(),
        "lag": _lag(ctx),
        "cutover": [data for _i, _t, _k, data in ctx.journal.events("cutover")],
        "rollback": [data for _i, _t, _k, data in ctx.journal.events("rollback")],
        "verify": [
            {"time": when, **data}
            for _i, when, _k, data in ctx.journal.events("verify")
        ],
    }


def _steps(
    ctx: Context, waits: dict[str, float], retries: Counter[str]
) -> list[dict[str, Any]]:
    by_step: dict[str, list[Any]] = {}
    for attempt in ctx.journal.attempts():
        by_step.setdefault(attempt.step, []).append(attempt)
    steps = []
    for name, attempts in by_step.items():
        start, end = attempts[0].started, attempts[-1].finished
        total = sum(seconds_between(a.started, a.finished) or 0.0 for a in attempts)
        waiting = (
            total if name in REPLICATION_WAITS else min(total, waits.get(name, 0.0))
        )
        steps.append(
            {
                "name": name,
                "started": start,
                "finished": end,
                "outcome": attempts[-1].outcome,
                "attempts": len(attempts),
                "seconds": round(total, 3),
                "waiting_s": round(waiting, 3),
                "working_s": round(total - waiting, 3),
                "aws_retries": retries[name],
            }
        )
    return steps


def _lag(ctx: Context) -> dict[str, Any]:
    samples = ctx.journal.lag_samples()
    if not samples:
        return {"samples": 0, "points": []}
    stride = max(1, len(samples) // LAG_POINTS)
    points = [
        {
            "time": s.time,
            "bytes_behind": s.bytes_behind,
            "seconds_behind": s.seconds_behind,
            "heartbeat_lag": s.heartbeat_lag,
        }
        for s in samples[::stride]
    ]
    known = [s.bytes_behind for s in samples if s.bytes_behind is not None]
    return {
        "samples": len(samples),
        "max_bytes_behind": max(known) if known else None,
        "last_bytes_behind": samples[-1].bytes_behind,
        "points": points,
    }


def to_markdown(document: dict[str, Any]) -> str:
    """Render the timeline as Markdown."""
    lines = [f"# Run `{document['run']}` of runbook `{document['runbook']}`", ""]
    lines += [
        "## Steps",
        "",
        "| step | start | end | outcome | attempts "
        "| waiting s | working s | AWS retries |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for s in document["steps"]:
        lines.append(
            f"| {s['name']} | {s['started']} | {s['finished'] or '-'} "
            f"| {s['outcome'] or 'running'} "
            f"| {s['attempts']} | {s['waiting_s']} | {s['working_s']} "
            f"| {s['aws_retries']} |"
        )
    skips = document["skips"]
    lines += ["", "## Skipped events", "", f"Total: {skips['total']}", ""]
    lines += [f"- rule `{rule}`: {count}" for rule, count in skips["by_rule"].items()]
    lines += [
        f"- table `{table}`: {count}" for table, count in skips["by_table"].items()
    ]
    lag = document["lag"]
    lines += [
        "",
        "## Lag",
        "",
        f"{lag['samples']} samples; "
        f"max {lag.get('max_bytes_behind')} bytes behind; "
        f"last {lag.get('last_bytes_behind')}.",
        "",
    ]
    if lag["points"]:
        lines += ["| time | bytes behind | seconds behind |", "|---|---|---|"]
        lines += [
            f"| {p['time']} | {p['bytes_behind']} | {p['seconds_behind']} |"
            for p in lag["points"]
        ]
    for label in ("cutover", "rollback"):
        for event in document[label]:
            lines += [
                "",
                f"## {label.title()}",
                "",
                f"Write downtime: {event['write_downtime_s']} s "
                f"(freeze {event['freeze_started']}, "
                f"writes open {event['writes_open']}).",
            ]
    return "\n".join(lines) + "\n"
