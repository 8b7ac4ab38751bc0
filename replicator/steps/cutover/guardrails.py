"""guardrails: refuse to start a cutover (or rollback) that would lose writes.

Each failure exits 3 with the reason: replication unhealthy or not caught up;
skipped events not reviewed (``--accept-skips``); no clean verify recently
enough; long-running transactions on the primary; reverse replication that
would run from a newer major version to an older one, or loop back.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

from replicator.context import Context
from replicator.errors import HaltedError, StepFailedError
from replicator.mysql.flavor import parse_engine_version
from replicator.mysql.status import is_caught_up
from replicator.steps.base import Outputs, Step
from replicator.steps.cutover.direction import FORWARD, Direction

LONG_TRANSACTION_S = 60
CAUGHT_UP_ATTEMPTS = 10
VERIFY_EVENT = "verify"


class Guardrails(Step):
    def __init__(self, direction: Direction) -> None:
        self.direction = direction
        self.name = direction.step("guardrails")

    def plan(self, ctx: Context) -> list[str]:
        return [
            "replica running and caught up; no unreviewed skips; a clean verify "
            "within require_verify_within; no transaction older than "
            f"{LONG_TRANSACTION_S}s on the primary",
        ]

    def check(self, ctx: Context) -> Outputs | None:
        return ctx.journal.step_outputs(self.name)

    def apply(self, ctx: Context) -> Outputs:
        primary, replica = self._clusters(ctx)
        primary_sql = ctx.session("primary", primary)
        replica_sql = ctx.session("replica", replica)

        _require_caught_up(ctx, primary_sql, replica_sql, ctx.generation(replica))
        if self.direction is FORWARD:
            _require_no_unreviewed_skips(ctx)
            _require_recent_verify(ctx)
            _require_reverse_possible(ctx, primary, replica, primary_sql, replica_sql)
        _require_no_long_transactions(primary_sql)
        return {
            "from_resource": primary["DbClusterResourceId"],
            "to_resource": replica["DbClusterResourceId"],
            "from_cluster": primary["DBClusterIdentifier"],
            "to_cluster": replica["DBClusterIdentifier"],
        }

    def _clusters(self, ctx: Context) -> tuple[dict[str, Any], dict[str, Any]]:
        if self.direction is FORWARD:
            if not ctx.journal.is_done("catch_up"):
                raise HaltedError(
                    "the clone has not caught up yet", hint="run `replicator run` first"
                )
            clone = ctx.clone_cluster()
            if clone is None:
                raise StepFailedError(
                    "the clone does not exist", hint="run `replicator run`"
                )
            return ctx.source_cluster(), clone
        switched = ctx.journal.step_outputs(FORWARD.step("guardrails"))
        if switched is None or not ctx.journal.is_done("open_writes"):
            raise HaltedError("there is no finished cutover to roll back")
        if ctx.runbook.cutover.rollback != "reverse_replication":
            raise HaltedError(
                "rollback needs cutover.rollback: reverse_replication",
                hint="without reverse replication the old cluster lacks the writes "
                "made since the cutover",
            )
        return (
            ctx.cluster_by_resource_id(switched["to_resource"]),
            ctx.cluster_by_resource_id(switched["from_resource"]),
        )


def _require_caught_up(
    ctx: Context, primary: Any, replica: Any, generation: Any
) -> None:
    for _ in range(CAUGHT_UP_ATTEMPTS):
        source = primary.binlog_coordinates()
        status = replica.replica_status(generation)
        if status is None or status.error_thread is not None or not status.running:
            raise HaltedError(
                "replication is not healthy: "
                + (
                    "not configured"
                    if status is None
                    else f"io={status.io_running} sql={status.sql_running} "
                    f"error {status.last_sql_errno or status.last_io_errno}"
                ),
                hint="`replicator status` shows the replica; "
                "`replicator run` resumes catch-up",
            )
        if source is not None and is_caught_up(status, source):
            return
        time.sleep(0.5)
    raise HaltedError(
        "the replica is not caught up",
        hint="wait for `replicator watch` to show caught_up=yes",
    )


def _require_no_unreviewed_skips(ctx: Context) -> None:
    total = ctx.journal.skip_counts()["total"]
    if total and not ctx.accept_skips:
        raise HaltedError(
            f"{total} replication events were skipped during catch-up",
            hint="review them with `replicator skips`, "
            "then cut over with --accept-skips",
        )


def _require_recent_verify(ctx: Context) -> None:
    window = ctx.runbook.cutover.require_verify_within
    if window is None:
        return
    verifies = ctx.journal.events(VERIFY_EVENT)
    if not verifies:
        raise HaltedError(
            "no verify has been run",
            hint="run `replicator verify` and cut over within "
            f"{round(window)}s of a clean result",
        )
    _id, when, _kind, data = verifies[-1]
    age = datetime.now(UTC) - datetime.fromisoformat(when.replace("Z", "+00:00"))
    if not data.get("equal"):
        raise HaltedError(
            "the last verify found differences", hint="fix them, verify again"
        )
    if age > timedelta(seconds=window):
        raise HaltedError(
            f"the last clean verify is {round(age.total_seconds())}s old "
            f"(require_verify_within is {round(window)}s)",
            hint="run `replicator verify` again",
        )


def _require_reverse_possible(
    ctx: Context,
    primary: dict[str, Any],
    replica: dict[str, Any],
    primary_sql: Any,
    replica_sql: Any,
) -> None:
    if ctx.runbook.cutover.rollback != "reverse_replication":
        return
    old = parse_engine_version(str(primary["EngineVersion"]))
    new = parse_engine_version(str(replica["EngineVersion"]))
    if new[:2] > old[:2] and not ctx.force:
        raise HaltedError(
            f"reverse replication would run from {replica['EngineVersion']} back to "
            f"{primary['EngineVersion']}: a newer major version writes binlog events "
            "an older one may not apply",
            hint="cut over with rollback: none, or pass --force after testing it",
        )
    if primary_sql.variable("server_id") == replica_sql.variable("server_id"):
        raise HaltedError(
            "source and clone share a server_id: reverse events would loop"
        )
    if replica_sql.variable("log_bin") not in {"1", "ON"}:
        raise HaltedError(
            "binary logging is off on the clone: reverse replication needs it",
            hint="`replicator run` turns it on "
            "when cutover.rollback is reverse_replication",
        )


def _require_no_long_transactions(primary: Any) -> None:
    rows = primary.query(
        "SELECT trx_mysql_thread_id AS thread, trx_started AS started "
        "FROM information_schema.INNODB_TRX "
        "WHERE trx_started < NOW() - INTERVAL %s SECOND",
        (LONG_TRANSACTION_S,),
    )
    if rows:
        listed = ", ".join(f"thread {r['thread']} since {r['started']}" for r in rows)
        raise HaltedError(
            f"long-running transactions on the primary: {listed}",
            hint="let them finish (or end them with mysql.rds_kill), then run again",
        )
