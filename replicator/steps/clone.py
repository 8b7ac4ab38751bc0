"""clone: a copy-on-write clone of the source and its writer instance.

The clone gets the source's (or the named) cluster parameter group, its VPC
security groups and subnet group, the runbook's tags plus the run's tag, and
deletion protection. A cluster of that name without this run's tag belongs to
someone else and stops the run.
"""

from __future__ import annotations

from typing import Any

from replicator.aws.rds import RUN_TAG, Rds
from replicator.context import Context
from replicator.errors import InputError, StepFailedError
from replicator.steps.base import Outputs, Step
from replicator.steps.reboot_writer import FAILED_STATES, wait_instance_available

AVAILABLE = "available"


def ensure_ours(ctx: Context, cluster: dict[str, Any] | None) -> None:
    """Stop when the clone's name is taken by a cluster this run did not create."""
    if cluster is None:
        return
    tag = Rds.tags(cluster).get(RUN_TAG)
    if tag != ctx.journal.run_id:
        raise InputError(
            f"clone.cluster {ctx.runbook.clone.cluster!r} is taken by a cluster "
            f"this run did not create (its {RUN_TAG} tag is {tag!r}, this run is "
            f"{ctx.journal.run_id!r})",
            hint="choose another clone.cluster, or remove that cluster yourself",
        )


def writer_id(ctx: Context) -> str:
    """Return the identifier of the clone's writer instance."""
    return f"{ctx.runbook.clone.cluster}-1"


def clone_parameter_group(ctx: Context, source: dict[str, Any]) -> str:
    """Return the cluster parameter group the clone is restored with.

    When the clone is to be upgraded, the named group belongs to the target
    version's family; the restore keeps the source's group and the upgrade
    switches to the named one.
    """
    if ctx.runbook.clone.engine_version is None and ctx.runbook.clone.parameter_group:
        return ctx.runbook.clone.parameter_group
    return str(source["DBClusterParameterGroup"])


class Clone(Step):
    name = "clone"

    def plan(self, ctx: Context) -> list[str]:
        clone = ctx.runbook.clone
        return [
            f"rds:RestoreDBClusterToPointInTime {clone.cluster} from "
            f"{ctx.runbook.source.cluster} (copy-on-write, latest time, source's "
            "parameter group, security groups and subnet group, tags, deletion "
            "protection)",
            f"rds:CreateDBInstance {writer_id(ctx)} ({clone.instance_class})",
            "wait until both are available "
            f"(deadline {ctx.runbook.timeouts.clone:.0f}s)",
        ]

    def check(self, ctx: Context) -> Outputs | None:
        cluster = ctx.clone_cluster()
        ensure_ours(ctx, cluster)
        if cluster is None or cluster.get("Status") != AVAILABLE:
            return None
        instance = ctx.rds.instance(writer_id(ctx))
        if instance is None or instance.get("DBInstanceStatus") != AVAILABLE:
            return None
        return _outputs(cluster, instance)

    def apply(self, ctx: Context) -> Outputs:
        source = ctx.source_cluster()
        cluster = ctx.clone_cluster()
        ensure_ours(ctx, cluster)
        if cluster is None:
            _restore(ctx, source)
        cluster = _wait_cluster(ctx)
        if ctx.rds.instance(writer_id(ctx)) is None:
            _create_writer(ctx, source)
        instance = wait_instance_available(
            ctx, writer_id(ctx), ctx.runbook.timeouts.clone
        )
        return _outputs(cluster, instance)


def _tags(ctx: Context) -> list[dict[str, str]]:
    tags = dict(ctx.runbook.clone.tags)
    tags[RUN_TAG] = ctx.journal.run_id
    return [{"Key": key, "Value": value} for key, value in sorted(tags.items())]


def _restore(ctx: Context, source: dict[str, Any]) -> None:
    clone = ctx.runbook.clone.cluster
    groups = [g["VpcSecurityGroupId"] for g in source.get("VpcSecurityGroups", [])]
    arguments: dict[str, Any] = {
        "DBClusterIdentifier": clone,
        "SourceDBClusterIdentifier": source["DBClusterIdentifier"],
        "RestoreType": "copy-on-write",
        "UseLatestRestorableTime": True,
        "DBClusterParameterGroupName": clone_parameter_group(ctx, source),
        "Tags": _tags(ctx),
        "DeletionProtection": True,
    }
    if groups:
        arguments["VpcSecurityGroupIds"] = groups
    if source.get("DBSubnetGroup"):
        arguments["DBSubnetGroupName"] = source["DBSubnetGroup"]
    ctx.rds.call("restore_db_cluster_to_point_in_time", **arguments)
    ctx.log.info("clone_restoring", cluster=clone, source=source["DBClusterIdentifier"])


def _wait_cluster(ctx: Context) -> dict[str, Any]:
    clone = ctx.runbook.clone.cluster

    def probe() -> dict[str, Any] | None:
        cluster = ctx.clone_cluster()
        if cluster is None:
            raise StepFailedError(
                f"clone cluster {clone} disappeared while waiting for it"
            )
        status = str(cluster.get("Status"))
        if status in FAILED_STATES:
            raise StepFailedError(
                f"clone cluster {clone} is {status}",
                hint=f"look at the RDS events of {clone}; nothing was deleted",
            )
        return cluster if status == AVAILABLE else None

    return ctx.rds.wait_for(
        f"clone cluster {clone} to be available",
        probe,
        deadline_s=ctx.runbook.timeouts.clone,
        interval_s=1.0,
        hint=f"look at the RDS events of {clone}; run again to keep waiting",
        cluster=clone,
    )


def _create_writer(ctx: Context, source: dict[str, Any]) -> None:
    ctx.rds.call(
        "create_db_instance",
        DBInstanceIdentifier=writer_id(ctx),
        DBClusterIdentifier=ctx.runbook.clone.cluster,
        DBInstanceClass=ctx.runbook.clone.instance_class,
        Engine=source["Engine"],
        Tags=_tags(ctx),
    )
    ctx.log.info("clone_writer_creating", instance=writer_id(ctx))


def _outputs(cluster: dict[str, Any], instance: dict[str, Any]) -> Outputs:
    return {
        "cluster": cluster["DBClusterIdentifier"],
        "instance": instance["DBInstanceIdentifier"],
        "endpoint": cluster["Endpoint"],
        "port": cluster["Port"],
        "engine_version": cluster["EngineVersion"],
    }
