"""start_replication: point the clone at the source and start both threads.

Configured once: when the clone already replicates from this source, the
configuration is never repeated (that would move its position). Server ids
must differ, or the clone would ignore every event as its own.
"""

from __future__ import annotations

from typing import Any

from replicator.context import Context
from replicator.errors import StepFailedError
from replicator.mysql.status import ReplicaStatus
from replicator.steps.base import Outputs, Step

START_DEADLINE_S = 120.0


def replication_source(ctx: Context) -> tuple[str, int]:
    """Return the host and port the clone replicates from."""
    cluster = ctx.source_cluster()
    host = ctx.runbook.replication.source_host or str(cluster["Endpoint"])
    return host, int(cluster["Port"])


def clone_status(ctx: Context) -> ReplicaStatus | None:
    """Return the clone's normalised replica status."""
    return ctx.clone_sql().replica_status(ctx.clone_generation())


def configured_for_source(ctx: Context, status: ReplicaStatus | None) -> bool:
    """Tell whether the clone replicates from this run's source."""
    if status is None or not status.source_host:
        return False
    return (status.source_host, status.source_port) == replication_source(ctx)


class StartReplication(Step):
    name = "start_replication"

    def plan(self, ctx: Context) -> list[str]:
        host, port = replication_source(ctx) if ctx.clone_cluster() else ("<source>", 0)
        user = ctx.runbook.replication.user
        tls = 1 if ctx.runbook.replication.tls else 0
        return [
            "SQL: SELECT @@server_id on source and clone (they must differ)",
            f"SQL on the clone: CALL mysql.rds_set_external_source('{host}', {port}, "
            f"'{user}', '***', <journaled file>, <journaled position>, {tls}) "
            "(rds_set_external_master on v2)",
            "SQL on the clone: CALL mysql.rds_start_replication()",
        ]

    def check(self, ctx: Context) -> Outputs | None:
        status = clone_status(ctx)
        if status is None or not configured_for_source(ctx, status):
            return None
        if not (status.running or status.error_thread):
            return None
        return _outputs(ctx, status)

    def apply(self, ctx: Context) -> Outputs:
        _check_server_ids(ctx)
        generation = ctx.clone_generation()
        clone = ctx.clone_sql()
        status = clone.replica_status(generation)
        if not configured_for_source(ctx, status):
            _configure(ctx)
        clone.call_rds(generation, "start_replication")
        ctx.log.info("replication_started")
        status = ctx.rds.wait_for(
            "both replica threads to run",
            lambda: _started(ctx),
            deadline_s=START_DEADLINE_S,
            interval_s=0.5,
            hint="read SHOW REPLICA STATUS on the clone; `replicator status` shows it",
        )
        return _outputs(ctx, status)


def _check_server_ids(ctx: Context) -> None:
    source_id = ctx.source_sql().variable("server_id")
    clone_id = ctx.clone_sql().variable("server_id")
    if source_id == clone_id:
        raise StepFailedError(
            f"source and clone share server_id {source_id}: the clone would skip "
            "every event as its own",
            hint="give the clone a different server_id in its parameter group",
        )


def _configure(ctx: Context) -> None:
    position = ctx.journal.step_outputs("binlog_position")
    if position is None:
        raise StepFailedError(
            "no binlog position journaled", hint="run `replicator run`"
        )
    host, port = replication_source(ctx)
    replication = ctx.runbook.replication
    ctx.clone_sql().call_rds(
        ctx.clone_generation(),
        "set_external_source",
        host,
        port,
        replication.user,
        ctx.repl_password,
        position["file"],
        int(position["position"]),
        1 if replication.tls else 0,
    )
    ctx.log.info(
        "replication_configured",
        host=host,
        port=port,
        file=position["file"],
        position=position["position"],
    )


def _started(ctx: Context) -> ReplicaStatus | None:
    status = clone_status(ctx)
    if status is None:
        return None
    return status if status.running or status.error_thread else None


def _outputs(ctx: Context, status: ReplicaStatus) -> dict[str, Any]:
    position = ctx.journal.step_outputs("binlog_position") or {}
    return {
        "source_host": status.source_host,
        "source_port": status.source_port,
        "file": position.get("file"),
        "position": position.get("position"),
    }
