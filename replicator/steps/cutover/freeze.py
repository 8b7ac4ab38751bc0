"""freeze: stop application writes on the primary, by the runbook's method.

``lock_users`` locks the ``app_users`` accounts and ends their sessions with
``mysql.rds_kill``; ``parameter_group`` sets ``read_only=1`` in the writer's DB
parameter group and waits until the server applies it; ``hook`` runs the
operator's command with ``REPLICATOR_PHASE=freeze``. The freeze start time is
kept once, for the write downtime.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from typing import Any

from replicator.context import Context
from replicator.errors import StepFailedError
from replicator.mysql.session import Session, mysql_errno
from replicator.steps.base import Outputs, Step
from replicator.steps.cutover.direction import Direction, pair

ER_NO_SUCH_THREAD = 1094
HOOK_DEADLINE_S = 300


def app_accounts(session: Session, users: list[str]) -> list[tuple[str, str]]:
    """Return the (user, host) accounts of the application users."""
    if not users:
        return []
    marks = ", ".join(["%s"] * len(users))
    rows = session.query(
        f"SELECT User, Host FROM mysql.user WHERE User IN ({marks})", users
    )
    return [(_text(r["User"]), _text(r["Host"])) for r in rows]


def is_locked(session: Session, account: tuple[str, str]) -> bool:
    """Tell whether an account is locked (SHOW CREATE USER says ACCOUNT LOCK)."""
    rows = session.query("SHOW CREATE USER %s@%s", account)
    return "ACCOUNT LOCK" in _text(next(iter(rows[0].values()))).upper()


def set_locked(
    session: Session, accounts: list[tuple[str, str]], locked: bool
) -> list[str]:
    """Lock or unlock accounts that are not so already; return those changed."""
    changed = []
    for account in accounts:
        if is_locked(session, account) == locked:
            continue
        verb = "LOCK" if locked else "UNLOCK"
        session.execute(f"ALTER USER %s@%s ACCOUNT {verb}", account)
        changed.append(f"{account[0]}@{account[1]}")
    return changed


def end_sessions(
    ctx: Context, session: Session, cluster: dict[str, Any], users: list[str]
) -> int:
    """End every session of the given users with mysql.rds_kill."""
    import pymysql

    if not users:
        return 0
    marks = ", ".join(["%s"] * len(users))
    rows = session.query(
        f"SELECT ID FROM information_schema.PROCESSLIST WHERE USER IN ({marks})", users
    )
    ended = 0
    for row in rows:
        try:
            session.call_rds(ctx.generation(cluster), "kill", int(row["ID"]))
            ended += 1
        except pymysql.err.MySQLError as error:
            if mysql_errno(error) != ER_NO_SUCH_THREAD:
                raise
    return ended


def run_hook(ctx: Context, phase: str) -> None:
    """Run the operator's freeze hook for a phase; fail on a non-zero exit."""
    hook = ctx.runbook.cutover.hook
    if hook is None:
        raise StepFailedError("cutover.freeze is hook but cutover.hook is not set")
    environment = {
        **os.environ,
        "REPLICATOR_PHASE": phase,
        "REPLICATOR_RUNBOOK": ctx.runbook.name,
    }
    result = subprocess.run(  # noqa: S603 - the operator's own command from the runbook
        shlex.split(hook),
        env=environment,
        capture_output=True,
        text=True,
        timeout=HOOK_DEADLINE_S,
        check=False,
    )
    if result.returncode != 0:
        raise StepFailedError(
            f"the cutover hook failed in phase {phase} with exit {result.returncode}: "
            f"{result.stderr.strip()[-500:]}",
            hint="fix the hook (cutover.hook), then run the command again",
        )


def instance_group(ctx: Context, cluster: dict[str, Any]) -> str:
    """Return the DB parameter group of a cluster's writer instance."""
    writer = ctx.rds.writer_of(cluster)
    instance = ctx.rds.instance(writer) if writer else None
    groups = (instance or {}).get("DBParameterGroups", [])
    if not groups:
        raise StepFailedError(
            f"the writer of {cluster['DBClusterIdentifier']} has no DB parameter group"
        )
    return str(groups[0]["DBParameterGroupName"])


def set_read_only(ctx: Context, cluster: dict[str, Any], on: bool) -> None:
    """Set read_only in the writer's DB parameter group and wait until applied."""
    group = instance_group(ctx, cluster)
    if group.startswith("default."):
        raise StepFailedError(
            f"the writer of {cluster['DBClusterIdentifier']} uses the default DB "
            f"parameter group {group}, which cannot be modified",
            hint="attach a custom DB parameter group or use freeze: lock_users",
        )
    value = "1" if on else "0"
    ctx.rds.call(
        "modify_db_parameter_group",
        DBParameterGroupName=group,
        Parameters=[
            {
                "ParameterName": "read_only",
                "ParameterValue": value,
                "ApplyMethod": "immediate",
            }
        ],
    )
    session = ctx.session("primary", cluster)
    ctx.rds.wait_for(
        f"read_only={value} on {cluster['DBClusterIdentifier']}",
        lambda: (
            True
            if session.variable("read_only") in ({"1", "ON"} if on else {"0", "OFF"})
            else None
        ),
        deadline_s=ctx.runbook.cutover.drain_timeout,
        interval_s=0.2,
        hint="check the DB parameter group's status on the writer",
    )


def freeze(ctx: Context, cluster: dict[str, Any], on: bool) -> dict[str, Any]:
    """Apply (on) or undo (off) the runbook's freeze on a cluster."""
    method = ctx.runbook.cutover.freeze
    users = list(ctx.runbook.cutover.app_users)
    session = ctx.session("primary", cluster)
    if method == "lock_users":
        changed = set_locked(session, app_accounts(session, users), on)
        ended = end_sessions(ctx, session, cluster, users) if on else 0
        return {"method": method, "accounts": changed, "sessions_ended": ended}
    if method == "parameter_group":
        set_read_only(ctx, cluster, on)
        ended = end_sessions(ctx, session, cluster, users) if on else 0
        return {"method": method, "sessions_ended": ended}
    run_hook(ctx, "freeze" if on else "unfreeze")
    return {"method": method}


def hold_replica(ctx: Context, direction: Direction, locked: bool) -> list[str]:
    """Lock (or unlock) the app accounts on the replica taking over.

    Once the switch points the applications at the replica, nothing may be
    written there before open_writes: reverse replication starts from the
    replica's position taken in between, and a write before it would never
    reach the old primary. The lock is local to the replica (taken after it
    stops applying the primary's events, or while its v3 replication ignores
    the mysql schema), so the old primary is not affected.
    """
    _, replica = pair(ctx, direction)
    session = ctx.session("replica", replica)
    accounts = app_accounts(session, list(ctx.runbook.cutover.app_users))
    return set_locked(session, accounts, locked)


def frozen(ctx: Context, cluster: dict[str, Any]) -> bool:
    """Tell whether the freeze is in place on a cluster."""
    session = ctx.session("primary", cluster)
    method = ctx.runbook.cutover.freeze
    if method == "lock_users":
        accounts = app_accounts(session, list(ctx.runbook.cutover.app_users))
        return bool(accounts) and all(is_locked(session, a) for a in accounts)
    if method == "parameter_group":
        return session.variable("read_only") in {"1", "ON"}
    return False


class Freeze(Step):
    production = True

    def __init__(self, direction: Direction) -> None:
        self.direction = direction
        self.name = direction.step("freeze")

    def plan(self, ctx: Context) -> list[str]:
        spec = ctx.runbook.cutover
        if spec.freeze == "lock_users":
            return [
                f"SQL: ALTER USER ... ACCOUNT LOCK for {', '.join(spec.app_users)}",
                "SQL: CALL mysql.rds_kill(id) for each of their sessions",
            ]
        if spec.freeze == "parameter_group":
            return [
                "rds:ModifyDBParameterGroup read_only=1 on the writer's group, wait"
            ]
        return [f"run the hook: {spec.hook} (REPLICATOR_PHASE=freeze)"]

    def check(self, ctx: Context) -> Outputs | None:
        outputs = ctx.journal.step_outputs(self.name)
        if outputs is not None:
            return outputs
        primary, _ = pair(ctx, self.direction)
        if ctx.journal.get_meta(self._started_key()) and frozen(ctx, primary):
            return {"method": ctx.runbook.cutover.freeze, "started": self.started(ctx)}
        return None

    def apply(self, ctx: Context) -> Outputs:
        primary, _ = pair(ctx, self.direction)
        ctx.require_confirmation(
            f"{self.direction.label}: freeze writes on {primary['DBClusterIdentifier']}"
        )
        if ctx.journal.get_meta(self._started_key()) is None:
            ctx.journal.set_meta(self._started_key(), ctx.journal.now())
        outputs = freeze(ctx, primary, True)
        outputs["replica_accounts"] = hold_replica(ctx, self.direction, True)
        ctx.log.info("writes_frozen", cluster=primary["DBClusterIdentifier"], **outputs)
        return {**outputs, "started": self.started(ctx)}

    def _started_key(self) -> str:
        return f"{self.direction.prefix}freeze_started"

    def started(self, ctx: Context) -> str:
        return str(ctx.journal.get_meta(self._started_key()))


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes | bytearray) else str(value)
