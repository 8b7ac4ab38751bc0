"""preflight: read the runbook and the world; stop on what would go wrong later.

Nothing here changes anything. Input problems (a missing cluster, a wrong
password, a clone name someone else uses) exit 2; conditions that need an
operator's decision are listed as warnings and journaled.
"""

from __future__ import annotations

from typing import Any

from replicator.context import Context
from replicator.errors import InputError, StepFailedError
from replicator.mysql import errors as codes
from replicator.mysql.flavor import parse_engine_version
from replicator.mysql.session import mysql_errno
from replicator.steps.base import Outputs, Step
from replicator.steps.clone import ensure_ours

ENHANCED_BINLOG = "aurora_enhanced_binlog"
OPEN_TO_WORLD = "0.0.0.0/0"
# MySQL 5.7 and 8.0 refuse a replication source password longer than this
# (ER_CHANGE_MASTER_PASSWORD_LENGTH); found only at start_replication, after
# the writer's reboot, and a server may quote the refused value in its error.
MAX_REPLICATION_PASSWORD_LENGTH = 32


class Preflight(Step):
    name = "preflight"

    def plan(self, ctx: Context) -> list[str]:
        return [
            "rds:DescribeDBClusters, DescribeDBClusterParameters (source, clone name)",
            "ec2:DescribeSecurityGroups (source's groups)",
            "SQL: SELECT VERSION(), @@server_id, @@event_scheduler on the source",
        ]

    def check(self, ctx: Context) -> Outputs | None:
        return ctx.journal.step_outputs(self.name)

    def apply(self, ctx: Context) -> Outputs:
        ctx.resolve_secrets()
        _check_replication_password(ctx)
        cluster = ctx.source_cluster()
        generation = ctx.generation(cluster)
        warnings: list[str] = []

        group = _parameter_group(ctx, cluster, warnings)
        _check_enhanced_binlog(ctx, cluster, group)
        _check_target_version(ctx, cluster)
        ensure_ours(ctx, ctx.clone_cluster())
        version = _check_admin(ctx, warnings)
        warnings += _security_group_findings(ctx, cluster)

        for warning in warnings:
            ctx.log.warning("preflight_warning", finding=warning)
        return {
            "engine_version": cluster["EngineVersion"],
            "generation": generation.value,
            "parameter_group": group,
            "server_version": version,
            "warnings": warnings,
        }


def _check_replication_password(ctx: Context) -> None:
    length = len(ctx.repl_password.reveal())
    if length > MAX_REPLICATION_PASSWORD_LENGTH:
        raise InputError(
            f"replication.password {ctx.runbook.replication.password} holds "
            f"{length} characters; MySQL accepts at most "
            f"{MAX_REPLICATION_PASSWORD_LENGTH} for a replication source",
            hint=f"set a replication password of at most "
            f"{MAX_REPLICATION_PASSWORD_LENGTH} characters",
        )


def _parameter_group(ctx: Context, cluster: dict[str, Any], warnings: list[str]) -> str:
    attached = str(cluster["DBClusterParameterGroup"])
    wanted = ctx.runbook.source.parameter_group
    if attached.startswith("default."):
        if not ctx.runbook.source.create_parameter_group:
            raise InputError(
                f"source cluster {cluster['DBClusterIdentifier']} uses the default "
                f"parameter group {attached}, which cannot be modified",
                hint="set source.create_parameter_group: true (a custom group is "
                "created and attached) or attach a custom group yourself",
            )
        warnings.append(f"a custom cluster parameter group will replace {attached}")
        return wanted or f"{cluster['DBClusterIdentifier']}-replicator"
    if wanted and wanted != attached:
        raise InputError(
            f"source.parameter_group is {wanted!r} but the cluster uses {attached!r}",
            hint="correct source.parameter_group or leave it out",
        )
    sharing = [
        str(other["DBClusterIdentifier"])
        for other in ctx.rds.clusters()
        if other.get("DBClusterParameterGroup") == attached
        and other["DBClusterIdentifier"] != cluster["DBClusterIdentifier"]
    ]
    if sharing:
        warnings.append(
            f"parameter group {attached} is shared with {', '.join(sorted(sharing))}: "
            "their next reboot turns binary logging on for them too"
        )
    return attached


def _check_enhanced_binlog(ctx: Context, cluster: dict[str, Any], group: str) -> None:
    attached = str(cluster["DBClusterParameterGroup"])
    value = ctx.rds.cluster_parameter(attached, ENHANCED_BINLOG)
    if value == "1":
        raise StepFailedError(
            f"enhanced binlog is on in {attached}: Aurora does not copy enhanced "
            "binlog files to clones, so the clone's position cannot be replicated from",
            hint=f"set {ENHANCED_BINLOG}=0 in {attached}, reboot the writer, run again",
        )


def _check_target_version(ctx: Context, cluster: dict[str, Any]) -> None:
    target = ctx.runbook.clone.engine_version
    if target is None:
        return
    try:
        older = parse_engine_version(target) < parse_engine_version(
            str(cluster["EngineVersion"])
        )
    except StepFailedError as error:
        raise InputError(f"clone.engine_version: {error.message}") from error
    if older:
        raise InputError(
            f"clone.engine_version {target} is older than the source's "
            f"{cluster['EngineVersion']}: replication to an older version is unsafe",
            hint="choose a version at or above the source's, or leave it out",
        )


def _check_admin(ctx: Context, warnings: list[str]) -> str:
    import pymysql

    session = ctx.source_sql()
    try:
        rows = session.query("SELECT VERSION() AS version, @@event_scheduler AS events")
    except pymysql.err.OperationalError as error:
        if mysql_errno(error) == codes.ER_ACCESS_DENIED:
            raise InputError(
                f"the source refused user {ctx.runbook.source.admin.user!r}: "
                "wrong password or user",
                hint="check source.admin.user and the password source "
                f"{ctx.runbook.source.admin.password}",
            ) from None
        raise StepFailedError(
            f"cannot reach the source writer at {session.host}:{session.port}: {error}",
            hint="check the network path and the `connect` section of the runbook",
        ) from None
    if str(rows[0]["events"]).upper() in {"ON", "1"}:
        warnings.append(
            "event_scheduler is ON on the source: events fire on the clone too "
            "after cutover; disable them on the clone until then"
        )
    return str(rows[0]["version"])


def _security_group_findings(ctx: Context, cluster: dict[str, Any]) -> list[str]:
    """Check that the source's port admits the clone's groups by reference."""
    from botocore.exceptions import BotoCoreError, ClientError

    groups = [g["VpcSecurityGroupId"] for g in cluster.get("VpcSecurityGroups", [])]
    if not groups:
        return ["the source has no VPC security groups to inspect"]
    try:
        import boto3

        ec2 = boto3.client("ec2", region_name=ctx.runbook.region)
        described = ec2.describe_security_groups(GroupIds=groups)["SecurityGroups"]
    except (BotoCoreError, ClientError) as error:
        return [f"could not inspect security groups {', '.join(groups)}: {error}"]
    return _rule_findings(described, set(groups), int(cluster["Port"]))


def _rule_findings(
    described: list[dict[str, Any]], clone_groups: set[str], port: int
) -> list[str]:
    by_reference = False
    findings: list[str] = []
    for group in described:
        for rule in group.get("IpPermissions", []):
            if not _covers(rule, port):
                continue
            referenced = {
                pair.get("GroupId") for pair in rule.get("UserIdGroupPairs", [])
            }
            by_reference = by_reference or bool(referenced & clone_groups)
            if any(r.get("CidrIp") == OPEN_TO_WORLD for r in rule.get("IpRanges", [])):
                findings.append(
                    f"security group {group['GroupId']} opens port {port} to "
                    f"{OPEN_TO_WORLD}: a risk, not a way for the clone to connect"
                )
    if not by_reference:
        findings.append(
            f"no rule admits the clone's security groups to port {port} by reference: "
            "replication may not connect"
        )
    return findings


def _covers(rule: dict[str, Any], port: int) -> bool:
    if rule.get("IpProtocol") == "-1":
        return True
    return int(rule.get("FromPort", -1)) <= port <= int(rule.get("ToPort", -1))
