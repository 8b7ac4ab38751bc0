"""abort: remove what a run created, leaving the source as it was.

Deletes the clone (its writer first, deletion protection lifted), drops the
replication user, and puts binlog retention back to the value journaled
before the run changed it. The binlog format is put back only when asked: it
needs a writer reboot, which abort does not do.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from replicator.context import Context
from replicator.errors import HaltedError
from replicator.steps import RUN_STEPS
from replicator.steps.binlog_retention import PREVIOUS_META, RETENTION_KEY
from replicator.steps.clone import ensure_ours
from replicator.steps.replication_user import CREATED_META

DELETE_DEADLINE_S = 1800.0


REPLICATING = "replicating"
CUT_OVER = "cut over"
ROLLED_BACK = "rolled back"


def phase(ctx: Context) -> str:
    """Return where the run stands: replicating, cut over, or rolled back."""
    if ctx.journal.is_done("rollback_open_writes"):
        return ROLLED_BACK
    if ctx.journal.is_done("stop_replication") or ctx.journal.is_done("switch"):
        return CUT_OVER
    return REPLICATING


def abort_run(ctx: Context, *, restore_binlog_format: bool) -> dict[str, Any]:
    """Undo the run's changes; return what was done."""
    if phase(ctx) == CUT_OVER:
        raise HaltedError(
            "the cutover has moved writes to the clone; abort would delete the primary",
            hint="use `replicator rollback` to move writes back first",
        )
    clone = ctx.clone_cluster()
    ensure_ours(ctx, clone)
    ctx.require_confirmation(
        f"abort: delete clone {ctx.runbook.clone.cluster}, drop user "
        f"{ctx.runbook.replication.user}, restore binlog retention"
    )
    done: dict[str, Any] = {
        "clone_deleted": _delete_clone(ctx, clone),
        "user_dropped": _drop_user(ctx),
        "retention_restored": _restore_retention(ctx),
        "binlog_format_restored": _restore_format(ctx)
        if restore_binlog_format
        else False,
    }
    for step in RUN_STEPS:
        if ctx.journal.is_done(step.name):
            ctx.journal.reset_step(step.name)
    ctx.journal.record_event("abort", done)
    ctx.log.info("aborted", **done)
    return done


def _delete_clone(ctx: Context, clone: dict[str, Any] | None) -> bool:
    if clone is None:
        return False
    name = clone["DBClusterIdentifier"]
    if clone.get("DeletionProtection"):
        ctx.rds.call(
            "modify_db_cluster",
            DBClusterIdentifier=name,
            DeletionProtection=False,
            ApplyImmediately=True,
        )
    for member in clone.get("DBClusterMembers", []):
        instance = member["DBInstanceIdentifier"]
        ctx.rds.call(
            "delete_db_instance", DBInstanceIdentifier=instance, SkipFinalSnapshot=True
        )
        ctx.rds.wait_for(
            f"instance {instance} to be deleted",
            _gone_probe(ctx, instance),
            deadline_s=DELETE_DEADLINE_S,
            interval_s=1.0,
            hint="look at the instance in the console; run abort again",
        )
    ctx.rds.call("delete_db_cluster", DBClusterIdentifier=name, SkipFinalSnapshot=True)
    ctx.rds.wait_for(
        f"cluster {name} to be deleted",
        lambda: True if ctx.clone_cluster() is None else None,
        deadline_s=DELETE_DEADLINE_S,
        interval_s=1.0,
        hint="look at the cluster in the console; run abort again",
    )
    return True


def _gone_probe(ctx: Context, instance: str) -> Callable[[], bool | None]:
    return lambda: True if ctx.rds.instance(instance) is None else None


def _drop_user(ctx: Context) -> bool:
    if ctx.journal.get_meta(CREATED_META) is not True:
        # The user existed before this run (or the run never reached it):
        # other replicas may use it, so it stays.
        return False
    session = ctx.source_sql()
    user = ctx.runbook.replication.user
    rows = session.query(
        "SELECT COUNT(*) AS n FROM mysql.user WHERE User = %s", (user,)
    )
    if not rows[0]["n"]:
        return False
    session.execute("DROP USER IF EXISTS %s@'%%'", (user,))
    return True


def _restore_retention(ctx: Context) -> bool:
    before = ctx.journal.get_meta(PREVIOUS_META)
    if before is None:
        return False
    value = before.get("value")
    ctx.source_sql().call_rds(
        ctx.source_generation(), "set_configuration", RETENTION_KEY, value
    )
    return True


def _restore_format(ctx: Context) -> bool:
    group = str(ctx.source_cluster()["DBClusterParameterGroup"])
    ctx.rds.call(
        "modify_db_cluster_parameter_group",
        DBClusterParameterGroupName=group,
        Parameters=[
            {
                "ParameterName": "binlog_format",
                "ParameterValue": "OFF",
                "ApplyMethod": "pending-reboot",
            }
        ],
    )
    ctx.log.warning(
        "binlog_format_restored",
        group=group,
        next="the change takes effect at the writer's next reboot",
    )
    return True
