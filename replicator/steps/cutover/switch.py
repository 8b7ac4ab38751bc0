"""switch: point the applications at the new primary.

``rename`` works as blue/green deployments do: the old primary takes the
``-old1`` suffix and the new one takes its identifier, and with it its
endpoint. ``route53`` updates a CNAME to the new primary's endpoint; ``none``
only reports the endpoint to use.
"""

from __future__ import annotations

from typing import Any

from replicator.context import Context
from replicator.errors import StepFailedError
from replicator.runbook import Route53Spec
from replicator.steps.base import Outputs, Step
from replicator.steps.cutover.direction import FORWARD, Direction, pair

OLD_SUFFIX = "-old1"
RENAME_DEADLINE_S = 600.0


class Switch(Step):
    production = True

    def __init__(self, direction: Direction) -> None:
        self.direction = direction
        self.name = direction.step("switch")

    def plan(self, ctx: Context) -> list[str]:
        spec = ctx.runbook.cutover
        if spec.switch == "rename":
            old, new = self._names(ctx)
            return [
                f"rds:ModifyDBCluster NewDBClusterIdentifier: primary -> {old}, "
                f"replica -> {new} (ApplyImmediately)",
            ]
        if spec.switch == "route53":
            record = spec.route53.record if spec.route53 else "?"
            return [
                "route53:ChangeResourceRecordSets UPSERT CNAME "
                f"{record} -> replica endpoint"
            ]
        return ["print the replica's endpoint (switch: none)"]

    def _names(self, ctx: Context) -> tuple[str, str]:
        """Return the names (primary after, replica after) for a rename."""
        source = ctx.runbook.source.cluster
        if self.direction is FORWARD:
            return source + OLD_SUFFIX, source
        return ctx.runbook.clone.cluster, source

    def check(self, ctx: Context) -> Outputs | None:
        primary, replica = pair(ctx, self.direction)
        method = ctx.runbook.cutover.switch
        if method == "rename":
            old, new = self._names(ctx)
            names = (primary["DBClusterIdentifier"], replica["DBClusterIdentifier"])
            return _outputs(method, replica) if names == (old, new) else None
        if method == "route53":
            return (
                _outputs(method, replica) if _record_points_at(ctx, replica) else None
            )
        return ctx.journal.step_outputs(self.name)

    def apply(self, ctx: Context) -> Outputs:
        primary, replica = pair(ctx, self.direction)
        method = ctx.runbook.cutover.switch
        if method == "rename":
            old, new = self._names(ctx)
            _rename(ctx, primary, old)
            _rename(
                ctx, ctx.cluster_by_resource_id(replica["DbClusterResourceId"]), new
            )
        elif method == "route53":
            _upsert_record(ctx, replica)
        replica = ctx.cluster_by_resource_id(replica["DbClusterResourceId"])
        ctx.log.info(
            "switched",
            method=method,
            endpoint=replica["Endpoint"],
            port=replica["Port"],
        )
        return _outputs(method, replica)


def _rename(ctx: Context, cluster: dict[str, Any], name: str) -> None:
    if cluster["DBClusterIdentifier"] == name:
        return
    taken = ctx.rds.cluster(name)
    if (
        taken is not None
        and taken["DbClusterResourceId"] != cluster["DbClusterResourceId"]
    ):
        raise StepFailedError(
            f"cannot rename {cluster['DBClusterIdentifier']} to {name}: "
            "the name is taken",
            hint=f"rename or remove the cluster {name}, then run again",
        )
    ctx.rds.call(
        "modify_db_cluster",
        DBClusterIdentifier=cluster["DBClusterIdentifier"],
        NewDBClusterIdentifier=name,
        ApplyImmediately=True,
    )
    resource = cluster["DbClusterResourceId"]
    ctx.rds.wait_for(
        f"cluster {cluster['DBClusterIdentifier']} to be renamed {name}",
        lambda: _renamed(ctx, name, resource),
        deadline_s=RENAME_DEADLINE_S,
        interval_s=0.5,
        hint="look at the cluster in the console; run again to continue",
    )


def _renamed(ctx: Context, name: str, resource: str) -> bool | None:
    found = ctx.rds.cluster(name)
    ready = found is not None and found["DbClusterResourceId"] == resource
    return (
        True
        if ready and found is not None and found.get("Status") == "available"
        else None
    )


def _route53(ctx: Context) -> Any:
    import boto3

    return boto3.client("route53", region_name=ctx.runbook.region)


def _route53_spec(ctx: Context) -> Route53Spec:
    spec = ctx.runbook.cutover.route53
    if spec is None:
        raise StepFailedError(
            "cutover.switch is route53 but cutover.route53 is not set",
            hint="set cutover.route53 {zone_id: ..., record: ...} in the runbook",
        )
    return spec


def _record_points_at(ctx: Context, replica: dict[str, Any]) -> bool:
    spec = _route53_spec(ctx)
    answer = _route53(ctx).list_resource_record_sets(
        HostedZoneId=spec.zone_id,
        StartRecordName=spec.record,
        StartRecordType="CNAME",
        MaxItems="1",
    )
    for record in answer.get("ResourceRecordSets", []):
        if record["Name"].rstrip(".") == spec.record.rstrip("."):
            values = [r["Value"] for r in record.get("ResourceRecords", [])]
            return values == [replica["Endpoint"]]
    return False


def _upsert_record(ctx: Context, replica: dict[str, Any]) -> None:
    spec = _route53_spec(ctx)
    _route53(ctx).change_resource_record_sets(
        HostedZoneId=spec.zone_id,
        ChangeBatch={
            "Comment": f"replicator cutover of {ctx.runbook.name}",
            "Changes": [
                {
                    "Action": "UPSERT",
                    "ResourceRecordSet": {
                        "Name": spec.record,
                        "Type": "CNAME",
                        "TTL": 5,
                        "ResourceRecords": [{"Value": replica["Endpoint"]}],
                    },
                }
            ],
        },
    )


def _outputs(method: str, replica: dict[str, Any]) -> Outputs:
    return {
        "method": method,
        "cluster": replica["DBClusterIdentifier"],
        "endpoint": replica["Endpoint"],
        "port": replica["Port"],
    }
