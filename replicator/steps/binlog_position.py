"""binlog_position: the source position the clone starts from, read once.

Aurora records it as an event of the clone's writer instance:
``Binlog position from crash recovery is mysql-bin-changelog.000118 245880``.
It is parsed strictly, checked against the source (the file still there, the
position within it), and journaled. Later steps use the journaled value only:
after an engine upgrade the instance reports a fresh binlog of its own.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from replicator.context import Context
from replicator.errors import StepFailedError
from replicator.steps.base import Outputs, Step
from replicator.steps.clone import writer_id

POSITION_EVENT = re.compile(
    r"Binlog position from crash recovery is "
    r"(?P<file>[A-Za-z0-9_.-]+\.\d{6}) (?P<position>\d+)"
)


@dataclass(frozen=True)
class Position:
    file: str
    position: int
    date: str


def positions_from_events(events: list[dict[str, object]]) -> list[Position]:
    """Return every crash-recovery position among the events, oldest first."""
    found = []
    for event in events:
        match = POSITION_EVENT.fullmatch(str(event.get("Message", "")).strip())
        if match:
            found.append(
                Position(match["file"], int(match["position"]), str(event.get("Date")))
            )
    return found


class BinlogPosition(Step):
    name = "binlog_position"

    def plan(self, ctx: Context) -> list[str]:
        return [
            f"rds:DescribeEvents for {writer_id(ctx)} until the crash-recovery "
            f"position appears (deadline {ctx.runbook.timeouts.position_event:.0f}s)",
            "SQL on the source: SHOW BINARY LOGS (the file must still be there)",
        ]

    def check(self, ctx: Context) -> Outputs | None:
        return ctx.journal.step_outputs(self.name)

    def apply(self, ctx: Context) -> Outputs:
        instance = writer_id(ctx)
        position = ctx.rds.wait_for(
            f"the crash-recovery binlog position event of {instance}",
            lambda: _single_position(ctx, instance),
            deadline_s=ctx.runbook.timeouts.position_event,
            interval_s=2.0,
            hint=f"the event may be late: run again to keep waiting; if {instance} "
            "never reports it, binary logging was off on the source when it was cloned",
            instance=instance,
        )
        _check_on_source(ctx, position)
        ctx.log.info("binlog_position", file=position.file, position=position.position)
        return {
            "file": position.file,
            "position": position.position,
            "event_date": position.date,
        }


def _single_position(ctx: Context, instance: str) -> Position | None:
    positions = positions_from_events(ctx.rds.instance_events(instance))
    distinct = {(p.file, p.position) for p in positions}
    if len(distinct) > 1:
        listed = ", ".join(f"{f} {p}" for f, p in sorted(distinct))
        raise StepFailedError(
            f"{instance} reports {len(distinct)} different crash-recovery positions "
            f"({listed}); the right one cannot be told",
            hint="inspect the clone's events; "
            "recreate the clone with `abort` and `run`",
        )
    return positions[0] if positions else None


def _check_on_source(ctx: Context, position: Position) -> None:
    logs = ctx.source_sql().binary_logs()
    if position.file not in logs:
        raise StepFailedError(
            f"the clone's start file {position.file} is no longer on the source "
            f"(it has {', '.join(sorted(logs)) or 'no binary logs'})",
            hint="binlog retention was too short: raise replication."
            "binlog_retention_hours, then recreate the clone (`abort`, `run`)",
        )
    if position.position > logs[position.file]:
        raise StepFailedError(
            f"the clone's position {position.position} lies past the end of "
            f"{position.file} ({logs[position.file]} bytes) on the source",
            hint="the clone does not come from this source: check source.cluster",
        )
