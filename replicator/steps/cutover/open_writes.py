"""open_writes: let the applications write on the new primary, and measure.

Undoes the freeze on the new primary where it applies there (locks replicated
from the old primary, a read-only parameter, the hook's "open" phase), then
confirms that the application accounts can write: the server is writable and
each account is unlocked with write privileges. The write downtime (freeze
start to this confirmation) is journaled.
"""

from __future__ import annotations

from replicator.context import Context
from replicator.errors import StepFailedError
from replicator.mysql.accounts import granted_privileges
from replicator.mysql.session import Session
from replicator.report import seconds_between
from replicator.steps.base import Outputs, Step
from replicator.steps.cutover.direction import FORWARD, Direction, pair
from replicator.steps.cutover.freeze import (
    app_accounts,
    instance_group,
    is_locked,
    run_hook,
    set_locked,
    set_read_only,
)

WRITE_PRIVILEGES = frozenset({"INSERT", "UPDATE", "DELETE"})


class OpenWrites(Step):
    production = True

    def __init__(self, direction: Direction) -> None:
        self.direction = direction
        self.name = direction.step("open_writes")

    def plan(self, ctx: Context) -> list[str]:
        return [
            "undo the freeze on the new primary where it applies; check read_only=0 "
            "and that every app user is unlocked with write privileges",
            "journal the write downtime (freeze start to this check)",
        ]

    def check(self, ctx: Context) -> Outputs | None:
        return ctx.journal.step_outputs(self.name)

    def apply(self, ctx: Context) -> Outputs:
        _, new = pair(ctx, self.direction)
        session = ctx.session("replica", new)
        accounts = app_accounts(session, list(ctx.runbook.cutover.app_users))
        method = ctx.runbook.cutover.freeze
        set_locked(session, accounts, False)
        if method == "parameter_group" and not instance_group(ctx, new).startswith(
            "default."
        ):
            set_read_only(ctx, new, False)
        elif method == "hook":
            run_hook(ctx, "open")

        _confirm_writable(session, accounts)
        if (
            self.direction is FORWARD
            and ctx.runbook.cutover.rollback == "reverse_replication"
        ):
            _keep_old_primary_frozen(ctx)
        opened = ctx.journal.now()
        started = str(ctx.journal.get_meta(f"{self.direction.prefix}freeze_started"))
        downtime = seconds_between(started, opened) or 0.0
        ctx.journal.record_event(
            self.direction.label,
            {
                "write_downtime_s": downtime,
                "freeze_started": started,
                "writes_open": opened,
                "primary": new["DBClusterIdentifier"],
            },
        )
        ctx.log.info(
            "writes_open", cluster=new["DBClusterIdentifier"], write_downtime_s=downtime
        )
        return {
            "write_downtime_s": downtime,
            "freeze_started": started,
            "writes_open": opened,
        }


def _keep_old_primary_frozen(ctx: Context) -> None:
    """Re-lock the old primary's app accounts if reverse replication unlocked them.

    On v2 the unlock just made on the new primary replicates to the old one;
    the old primary must stay frozen until a rollback opens it.
    """
    if ctx.runbook.cutover.freeze != "lock_users":
        return
    old, new = pair(ctx, FORWARD)
    position = ctx.session("replica", new).binlog_coordinates()
    old_sql = ctx.session("primary", old)
    generation = ctx.generation(old)

    def applied() -> bool | None:
        status = old_sql.replica_status(generation)
        executed = status.exec_coordinates if status else None
        return (
            True
            if executed is not None and position is not None and executed >= position
            else None
        )

    ctx.rds.wait_for(
        "the old primary to apply the new primary's unlock",
        applied,
        deadline_s=ctx.runbook.cutover.drain_timeout,
        interval_s=0.05,
        hint="read SHOW REPLICA STATUS on the old primary",
    )
    relocked = set_locked(
        old_sql, app_accounts(old_sql, list(ctx.runbook.cutover.app_users)), True
    )
    if relocked:
        ctx.log.info("old_primary_relocked", accounts=relocked)


def _confirm_writable(session: Session, accounts: list[tuple[str, str]]) -> None:
    if session.variable("read_only") in {"1", "ON"}:
        raise StepFailedError(
            "the new primary is still read-only", hint="check its DB parameter group"
        )
    for account in accounts:
        if is_locked(session, account):
            raise StepFailedError(
                f"{account[0]}@{account[1]} is still locked on the new primary"
            )
        rows = session.query("SHOW GRANTS FOR %s@%s", account)
        scopes = granted_privileges([str(next(iter(r.values()))) for r in rows])
        if not any(
            set(p) >= WRITE_PRIVILEGES or "ALL PRIVILEGES" in p for p in scopes.values()
        ):
            raise StepFailedError(
                f"{account[0]}@{account[1]} has no write privileges on the new primary"
            )
