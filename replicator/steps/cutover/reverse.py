"""reverse_replication: the way back, set up before writes open on the new primary.

The old primary replicates from the new primary's writer (its instance
endpoint, which survives renames), starting at the new primary's position
taken while the application accounts are still locked there: no application
write can precede that position.
"""

from __future__ import annotations

from replicator.context import Context
from replicator.errors import StepFailedError
from replicator.steps.base import Outputs, Step
from replicator.steps.cutover.direction import FORWARD, pair, writer_endpoint
from replicator.steps.replication_user import create_user, user_ok
from replicator.steps.start_replication import START_DEADLINE_S


class ReverseReplication(Step):
    name = "reverse_replication"

    def applies(self, ctx: Context) -> bool:
        return ctx.runbook.cutover.rollback == "reverse_replication"

    def plan(self, ctx: Context) -> list[str]:
        return [
            "SQL on the new primary: the replication user; unlock the app accounts; "
            "SHOW MASTER STATUS",
            "SQL on the old primary: CALL mysql.rds_set_external_source(<new primary "
            "writer>, ..., '***', <its position>), CALL mysql.rds_start_replication()",
        ]

    def check(self, ctx: Context) -> Outputs | None:
        old, new = pair(ctx, FORWARD)
        status = ctx.session("primary", old).replica_status(ctx.generation(old))
        if status is None or (
            status.source_host,
            status.source_port,
        ) != writer_endpoint(ctx, new):
            return None
        return ctx.journal.step_outputs(self.name) or {"adopted": True}

    def apply(self, ctx: Context) -> Outputs:
        old, new = pair(ctx, FORWARD)
        new_sql = ctx.session("replica", new)
        old_sql = ctx.session("primary", old)
        if not user_ok(ctx, new_sql):
            create_user(ctx, new_sql)
        position = new_sql.binlog_coordinates()
        if position is None:
            raise StepFailedError(
                "binary logging is off on the new primary: reverse replication "
                "has no position to start from",
                hint="check log_bin and binlog_format in the new primary's "
                "cluster parameter group, then run the cutover again",
            )
        host, port = writer_endpoint(ctx, new)
        generation = ctx.generation(old)
        old_sql.call_rds(
            generation,
            "set_external_source",
            host,
            port,
            ctx.runbook.replication.user,
            ctx.repl_password,
            position.file,
            position.position,
            1 if ctx.runbook.replication.tls else 0,
        )
        old_sql.call_rds(generation, "start_replication")
        ctx.rds.wait_for(
            "reverse replication threads to run",
            lambda: _running(ctx, old),
            deadline_s=START_DEADLINE_S,
            interval_s=0.5,
            hint="read SHOW REPLICA STATUS on the old primary",
        )
        ctx.log.info(
            "reverse_replication_started",
            file=position.file,
            position=position.position,
        )
        return {
            "host": host,
            "port": port,
            "file": position.file,
            "position": position.position,
        }


def _running(ctx: Context, old: dict[str, object]) -> bool | None:
    status = ctx.session("primary", dict(old)).replica_status(ctx.generation(dict(old)))
    if status is not None and status.error_thread:
        raise StepFailedError(
            "reverse replication failed: error "
            f"{status.last_io_errno or status.last_sql_errno}: "
            f"{status.last_io_error or status.last_sql_error}",
        )
    return True if status is not None and status.running else None
