"""clone_binlog (for reverse replication): binary logging on the clone.

Rollback replicates from the new primary back to the old one, so the clone
must write a binary log before cutover. When the clone sits on a default
cluster parameter group, it gets its own custom group with the format set,
and its writer is rebooted. Runs before replication starts, so the reboot
interrupts nothing.
"""

from __future__ import annotations

from replicator.context import Context
from replicator.mysql.flavor import family_of
from replicator.steps.base import Outputs, Step
from replicator.steps.clone import writer_id
from replicator.steps.reboot_writer import wait_instance_available

PARAMETER = "binlog_format"


class CloneBinlog(Step):
    name = "clone_binlog"

    def applies(self, ctx: Context) -> bool:
        return ctx.runbook.cutover.rollback == "reverse_replication"

    def plan(self, ctx: Context) -> list[str]:
        return [
            "when the clone's binary log is off: its own cluster parameter group with "
            f"{PARAMETER}={ctx.runbook.replication.binlog_format}, then reboot "
            f"{writer_id(ctx)}",
        ]

    def check(self, ctx: Context) -> Outputs | None:
        rows = ctx.clone_sql().query("SELECT @@log_bin AS on_, @@binlog_format AS fmt")
        if str(rows[0]["on_"]) not in {"1", "ON"}:
            return None
        if str(rows[0]["fmt"]).upper() != ctx.runbook.replication.binlog_format:
            return None
        return {"log_bin": "ON", "binlog_format": str(rows[0]["fmt"]).upper()}

    def apply(self, ctx: Context) -> Outputs:
        clone = ctx.require_clone_cluster()
        group = str(clone["DBClusterParameterGroup"])
        fmt = ctx.runbook.replication.binlog_format
        if group.startswith("default."):
            group = f"{ctx.runbook.clone.cluster}-replicator"
            ctx.rds.call(
                "create_db_cluster_parameter_group",
                DBClusterParameterGroupName=group,
                DBParameterGroupFamily=family_of(ctx.generation(clone)),
                Description=(
                    f"binary logging for {ctx.runbook.clone.cluster} (replicator)"
                ),
            )
            ctx.rds.call(
                "modify_db_cluster",
                DBClusterIdentifier=ctx.runbook.clone.cluster,
                DBClusterParameterGroupName=group,
                ApplyImmediately=True,
            )
        ctx.rds.call(
            "modify_db_cluster_parameter_group",
            DBClusterParameterGroupName=group,
            Parameters=[
                {
                    "ParameterName": PARAMETER,
                    "ParameterValue": fmt,
                    "ApplyMethod": "pending-reboot",
                }
            ],
        )
        ctx.rds.call("reboot_db_instance", DBInstanceIdentifier=writer_id(ctx))
        wait_instance_available(ctx, writer_id(ctx), ctx.runbook.timeouts.reboot)
        return ctx.rds.wait_for(
            "binary logging on the clone",
            lambda: self.check(ctx),
            deadline_s=ctx.runbook.timeouts.reboot,
            interval_s=1.0,
            hint="check the clone's parameter group status",
        )
