"""binlog_format: set the format in the source's cluster parameter group.

Aurora's ``binlog_format=OFF`` means no binary log. The change is static: it
takes effect at the writer's next reboot (the next step). When the source is
on a default group and the runbook allows it, a custom group is created from
the cluster's family and attached first.
"""

from __future__ import annotations

from replicator.context import Context
from replicator.mysql.flavor import family_of
from replicator.steps.base import Outputs, Step

PARAMETER = "binlog_format"


class BinlogFormat(Step):
    name = "binlog_format"

    def plan(self, ctx: Context) -> list[str]:
        fmt = ctx.runbook.replication.binlog_format
        return [
            "rds:CreateDBClusterParameterGroup + ModifyDBCluster (only when the "
            "source is on a default group and create_parameter_group is true)",
            f"rds:ModifyDBClusterParameterGroup {PARAMETER}={fmt} "
            "ApplyMethod=pending-reboot",
        ]

    def check(self, ctx: Context) -> Outputs | None:
        group = str(ctx.source_cluster()["DBClusterParameterGroup"])
        if group.startswith("default."):
            return None
        value = ctx.rds.cluster_parameter(group, PARAMETER)
        if (value or "").upper() != ctx.runbook.replication.binlog_format:
            return None
        return {"parameter_group": group, PARAMETER: value}

    def apply(self, ctx: Context) -> Outputs:
        cluster = ctx.source_cluster()
        group = str(cluster["DBClusterParameterGroup"])
        if group.startswith("default."):
            group = _attach_custom_group(ctx, cluster)
        fmt = ctx.runbook.replication.binlog_format
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
        ctx.log.info("parameter_set", group=group, parameter=PARAMETER, value=fmt)
        return {"parameter_group": group, PARAMETER: fmt}


def _attach_custom_group(ctx: Context, cluster: dict[str, object]) -> str:
    name = (
        ctx.runbook.source.parameter_group
        or f"{cluster['DBClusterIdentifier']}-replicator"
    )
    existing = {
        g["DBClusterParameterGroupName"]
        for g in ctx.rds.paginate(
            "describe_db_cluster_parameter_groups", "DBClusterParameterGroups"
        )
    }
    if name not in existing:
        ctx.rds.call(
            "create_db_cluster_parameter_group",
            DBClusterParameterGroupName=name,
            DBParameterGroupFamily=family_of(ctx.generation(dict(cluster))),
            Description=(
                f"binary logging for {cluster['DBClusterIdentifier']} (replicator)"
            ),
            Tags=[{"Key": "replicator:run", "Value": ctx.journal.run_id}],
        )
    ctx.rds.call(
        "modify_db_cluster",
        DBClusterIdentifier=cluster["DBClusterIdentifier"],
        DBClusterParameterGroupName=name,
        ApplyImmediately=True,
    )
    ctx.log.info(
        "parameter_group_attached", cluster=cluster["DBClusterIdentifier"], group=name
    )
    return name
