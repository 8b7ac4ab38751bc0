"""stop_replication: stop the replica and make it forget its source.

Only after the drain proved the replica holds every write of the primary.
"""

from __future__ import annotations

from replicator.context import Context
from replicator.errors import StepFailedError
from replicator.mysql.status import BinlogCoordinates
from replicator.steps.base import Outputs, Step
from replicator.steps.cutover.direction import Direction, pair


class StopReplication(Step):
    def __init__(self, direction: Direction) -> None:
        self.direction = direction
        self.name = direction.step("stop_replication")

    def plan(self, ctx: Context) -> list[str]:
        return [
            "SQL on the replica: CALL mysql.rds_stop_replication()",
            "SQL on the replica: CALL mysql.rds_reset_external_source() "
            "(rds_reset_external_master on v2)",
        ]

    def check(self, ctx: Context) -> Outputs | None:
        _, replica = pair(ctx, self.direction)
        status = ctx.session("replica", replica).replica_status(ctx.generation(replica))
        if status is not None and status.source_host:
            return None
        return {"stopped": True}

    def apply(self, ctx: Context) -> Outputs:
        _, replica = pair(ctx, self.direction)
        session = ctx.session("replica", replica)
        generation = ctx.generation(replica)
        drained = ctx.journal.step_outputs(self.direction.step("drain")) or {}
        status = session.replica_status(generation)
        final = BinlogCoordinates(
            str(drained.get("file")), int(drained.get("position", 0))
        )
        if status is not None and status.exec_coordinates != final:
            raise StepFailedError(
                f"the replica is at {status.exec_coordinates}, not the drained {final}",
                hint="writes reached the primary after the freeze; run again",
            )
        session.call_rds(generation, "stop_replication")
        session.call_rds(generation, "reset_external_source")
        ctx.log.info("replication_stopped", cluster=replica["DBClusterIdentifier"])
        return {"stopped": True}
