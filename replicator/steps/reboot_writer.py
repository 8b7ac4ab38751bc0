"""reboot_writer: reboot the source writer so binary logging turns on.

The first action that affects production: it asks for confirmation (or
``--yes``) and runs only inside the runbook's maintenance window when one is
set. Done when SQL on the writer shows ``log_bin=ON`` and the wanted format.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from replicator.context import Context
from replicator.errors import HaltedError, StepFailedError
from replicator.steps.base import Outputs, Step

AVAILABLE = "available"
FAILED_STATES = frozenset(
    {"failed", "incompatible-parameters", "inaccessible-encryption-credentials"}
)


def binlog_state(ctx: Context) -> tuple[str, str]:
    """Return (log_bin, binlog_format) as the source writer reports them."""
    rows = ctx.source_sql().query("SELECT @@log_bin AS log_bin, @@binlog_format AS fmt")
    log_bin = "ON" if str(rows[0]["log_bin"]) in {"1", "ON"} else "OFF"
    return log_bin, str(rows[0]["fmt"]).upper()


class RebootWriter(Step):
    name = "reboot_writer"
    production = True

    def plan(self, ctx: Context) -> list[str]:
        window = ctx.runbook.maintenance_window
        return [
            f"rds:RebootDBInstance on the source writer (asks for confirmation"
            f"{'; only within ' + str(window) if window else ''})",
            "SQL: SELECT @@log_bin, @@binlog_format until ON and "
            f"{ctx.runbook.replication.binlog_format}",
        ]

    def check(self, ctx: Context) -> Outputs | None:
        log_bin, fmt = binlog_state(ctx)
        if log_bin != "ON" or fmt != ctx.runbook.replication.binlog_format:
            return None
        return {"log_bin": log_bin, "binlog_format": fmt}

    def apply(self, ctx: Context) -> Outputs:
        cluster = ctx.source_cluster()
        writer = ctx.rds.writer_of(cluster)
        if writer is None:
            raise StepFailedError(
                f"source cluster {cluster['DBClusterIdentifier']} has no writer"
            )
        _require_window(ctx)
        ctx.require_confirmation(f"reboot the source writer {writer}")

        ctx.rds.call("reboot_db_instance", DBInstanceIdentifier=writer)
        ctx.log.info("writer_rebooting", instance=writer)
        wait_instance_available(ctx, writer, ctx.runbook.timeouts.reboot)
        return ctx.rds.wait_for(
            "binary logging on the source writer",
            lambda: self.check(ctx),
            deadline_s=ctx.runbook.timeouts.reboot,
            interval_s=1.0,
            hint="check the writer's parameter group status in the console; "
            "the reboot may not have applied binlog_format",
            instance=writer,
        )


def _require_window(ctx: Context) -> None:
    window = ctx.runbook.maintenance_window
    if window is None:
        return
    now = datetime.now(UTC)
    if not window.contains(now):
        start = window.next_start(now)
        raise HaltedError(
            f"the writer reboot waits for the maintenance window {window}; "
            f"it opens {start.isoformat(timespec='minutes')}",
            hint="run the same command again inside the window",
        )


def wait_instance_available(
    ctx: Context, instance: str, deadline_s: float
) -> dict[str, Any]:
    """Wait until an instance is available; stop on a failed state."""

    def probe() -> dict[str, Any] | None:
        found = ctx.rds.instance(instance)
        if found is None:
            raise StepFailedError(
                f"instance {instance} disappeared while waiting for it"
            )
        status = str(found["DBInstanceStatus"])
        if status in FAILED_STATES:
            raise StepFailedError(
                f"instance {instance} is {status}",
                hint=f"look at the RDS events and logs of {instance}; "
                "nothing was deleted",
            )
        return found if status == AVAILABLE else None

    return ctx.rds.wait_for(
        f"instance {instance} to be available",
        probe,
        deadline_s=deadline_s,
        interval_s=1.0,
        hint=f"look at the RDS events of {instance}; run again to keep waiting",
        instance=instance,
    )
