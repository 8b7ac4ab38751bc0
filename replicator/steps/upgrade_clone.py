"""upgrade_clone (optional): move the clone to the runbook's engine version.

Runs after the position is journaled; an upgraded writer reports a fresh
binlog of its own, which is never mistaken for the source position.
"""

from __future__ import annotations

from replicator.context import Context
from replicator.errors import StepFailedError
from replicator.steps.base import Outputs, Step
from replicator.steps.clone import writer_id
from replicator.steps.reboot_writer import FAILED_STATES, wait_instance_available

AVAILABLE = "available"


class UpgradeClone(Step):
    name = "upgrade_clone"

    def applies(self, ctx: Context) -> bool:
        return ctx.runbook.clone.engine_version is not None

    def plan(self, ctx: Context) -> list[str]:
        return [
            f"rds:ModifyDBCluster {ctx.runbook.clone.cluster} EngineVersion="
            f"{ctx.runbook.clone.engine_version} ApplyImmediately "
            "(AllowMajorVersionUpgrade when the major version changes)",
        ]

    def check(self, ctx: Context) -> Outputs | None:
        cluster = ctx.clone_cluster()
        target = ctx.runbook.clone.engine_version
        if cluster is None or cluster["EngineVersion"] != target:
            return None
        if cluster.get("Status") != AVAILABLE:
            return None
        instance = ctx.rds.instance(writer_id(ctx))
        if instance is None or instance.get("DBInstanceStatus") != AVAILABLE:
            return None
        return {"engine_version": target}

    def apply(self, ctx: Context) -> Outputs:
        cluster = ctx.clone_cluster()
        target = ctx.runbook.clone.engine_version
        if target is None:
            raise StepFailedError(
                "upgrade_clone needs clone.engine_version, which the runbook "
                "does not set",
                hint="set clone.engine_version in the runbook, or leave it out "
                "to skip the upgrade",
            )
        if cluster is None:
            raise StepFailedError(
                f"clone cluster {ctx.runbook.clone.cluster} does not exist"
            )
        if cluster["EngineVersion"] != target:
            major = (
                str(cluster["EngineVersion"]).split(".")[:2] != target.split(".")[:2]
            )
            arguments = {
                "DBClusterIdentifier": ctx.runbook.clone.cluster,
                "EngineVersion": target,
                "ApplyImmediately": True,
                "AllowMajorVersionUpgrade": major,
            }
            if ctx.runbook.clone.parameter_group:
                arguments["DBClusterParameterGroupName"] = (
                    ctx.runbook.clone.parameter_group
                )
            ctx.rds.call("modify_db_cluster", **arguments)
            ctx.log.info("clone_upgrading", target=target)
        ctx.rds.wait_for(
            f"clone to report engine version {target}",
            lambda: self._probe(ctx),
            deadline_s=ctx.runbook.timeouts.clone,
            interval_s=1.0,
            hint="look at the clone's RDS events; run again to keep waiting",
        )
        wait_instance_available(ctx, writer_id(ctx), ctx.runbook.timeouts.clone)
        return {"engine_version": target}

    def _probe(self, ctx: Context) -> Outputs | None:
        cluster = ctx.clone_cluster()
        if cluster is not None and str(cluster.get("Status")) in FAILED_STATES:
            raise StepFailedError(
                f"clone cluster is {cluster['Status']} after the upgrade request",
                hint="look at the clone's RDS events and error log; "
                "nothing was deleted",
            )
        return self.check(ctx)
