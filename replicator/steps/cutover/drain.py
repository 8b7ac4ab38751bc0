"""drain: wait until the replica has executed exactly the primary's final position.

With writes frozen the primary's binlog position stops moving; that final
position is read until it holds still, then the replica must reach it exactly.
Past ``drain_timeout`` the freeze is undone and the command halts (exit 3):
the primary keeps serving and nothing was switched.
"""

from __future__ import annotations

import time

from replicator.context import Context
from replicator.errors import HaltedError, StepFailedError
from replicator.mysql.session import Session
from replicator.mysql.status import BinlogCoordinates
from replicator.steps.base import Outputs, Step
from replicator.steps.cutover.direction import Direction, pair
from replicator.steps.cutover.freeze import freeze, hold_replica

STILL_READS = 3
STILL_INTERVAL_S = 0.1


class Drain(Step):
    def __init__(self, direction: Direction) -> None:
        self.direction = direction
        self.name = direction.step("drain")

    def plan(self, ctx: Context) -> list[str]:
        return [
            "SQL: SHOW MASTER STATUS on the primary until it holds still",
            "SQL: SHOW REPLICA STATUS on the replica until it has executed exactly "
            f"that position (deadline {ctx.runbook.cutover.drain_timeout:.0f}s, "
            "then the freeze is undone)",
        ]

    def check(self, ctx: Context) -> Outputs | None:
        return ctx.journal.step_outputs(self.name)

    def apply(self, ctx: Context) -> Outputs:
        primary, replica = pair(ctx, self.direction)
        primary_sql = ctx.session("primary", primary)
        replica_sql = ctx.session("replica", replica)
        generation = ctx.generation(replica)
        deadline = time.monotonic() + ctx.runbook.cutover.drain_timeout

        final = _final_position(primary_sql)
        while time.monotonic() < deadline:
            status = replica_sql.replica_status(generation)
            if status is None or status.error_thread is not None:
                break
            if status.exec_coordinates == final and status.read_coordinates == final:
                ctx.log.info("drained", file=final.file, position=final.position)
                return {"file": final.file, "position": final.position}
            time.sleep(0.05)
        self._give_up(ctx, primary, final)
        raise AssertionError("unreachable")

    def _give_up(
        self, ctx: Context, primary: dict[str, object], final: BinlogCoordinates
    ) -> None:
        freeze(ctx, dict(primary), False)
        hold_replica(ctx, self.direction, False)
        ctx.journal.set_meta(f"{self.direction.prefix}freeze_started", None)
        ctx.journal.reset_step(self.direction.step("freeze"))
        raise HaltedError(
            f"the replica did not reach the primary's final position {final} within "
            f"{ctx.runbook.cutover.drain_timeout:.0f}s; the freeze was undone and "
            f"{primary['DBClusterIdentifier']} keeps serving writes",
            hint="look at `replicator status` for lag or errors, then run the "
            f"{self.direction.label} again",
        )


def _final_position(primary: Session) -> BinlogCoordinates:
    last = primary.binlog_coordinates()
    still = 0
    while still < STILL_READS:
        time.sleep(STILL_INTERVAL_S)
        current = primary.binlog_coordinates()
        still = still + 1 if current == last else 0
        last = current
    if last is None:
        raise StepFailedError("binary logging is off on the primary")
    return last
