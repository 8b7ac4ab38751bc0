"""Which way writes move: from the frozen primary to the replica taking over.

Clusters are found by their resource id, which survives renames; the ids are
journaled by the guardrails step of each direction.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from replicator.context import Context
from replicator.errors import StepFailedError
from replicator.mysql.session import Session


@dataclass(frozen=True)
class Direction:
    """A direction of travel and the names its steps are journaled under."""

    prefix: str
    label: str

    def step(self, base: str) -> str:
        """Return the journal name of a step in this direction."""
        return f"{self.prefix}{base}"


FORWARD = Direction("", "cutover")
ROLLBACK = Direction("rollback_", "rollback")


def pair(ctx: Context, direction: Direction) -> tuple[dict[str, Any], dict[str, Any]]:
    """Return (primary being frozen, replica taking over), as they are named now."""
    outputs = ctx.journal.step_outputs(direction.step("guardrails"))
    if outputs is None:
        raise StepFailedError(f"the {direction.label} guardrails have not passed yet")
    return (
        ctx.cluster_by_resource_id(outputs["from_resource"]),
        ctx.cluster_by_resource_id(outputs["to_resource"]),
    )


def sessions(ctx: Context, direction: Direction) -> tuple[Session, Session]:
    """Return admin sessions on (frozen primary, taking-over replica)."""
    primary, replica = pair(ctx, direction)
    return ctx.session("primary", primary), ctx.session("replica", replica)


def writer_endpoint(ctx: Context, cluster: dict[str, Any]) -> tuple[str, int]:
    """Return the writer instance's own address and port (stable across renames)."""
    writer = ctx.rds.writer_of(cluster)
    instance = ctx.rds.instance(writer) if writer else None
    if instance is None:
        raise StepFailedError(f"cluster {cluster['DBClusterIdentifier']} has no writer")
    endpoint = instance["Endpoint"]
    return str(endpoint["Address"]), int(endpoint["Port"])
