"""replication_user: the user the clone replicates as, with exactly its grants.

Created or altered idempotently: the password is (re)set, every privilege
revoked, and only REPLICATION SLAVE and REPLICATION CLIENT granted. The
password travels as a driver parameter, never inside the SQL text.
"""

from __future__ import annotations

from replicator.context import Context
from replicator.mysql.accounts import (
    REPLICATION_GRANTS,
    granted_privileges,
    identified_clause,
)
from replicator.mysql.session import Session
from replicator.steps.base import Outputs, Step

ANY_HOST = "%"
CREATED_META = "replication_user_created"
GLOBAL_SCOPE = "*.*"


def user_ok(ctx: Context, session: Session) -> bool:
    """Tell whether the user exists with exactly the grants and a working password."""
    import pymysql

    user = ctx.runbook.replication.user
    exists = session.query(
        "SELECT COUNT(*) AS n FROM mysql.user WHERE User = %s AND Host = %s",
        (user, ANY_HOST),
    )
    if not exists[0]["n"]:
        return False
    grants = session.query("SHOW GRANTS FOR %s@%s", (user, ANY_HOST))
    lines = [str(next(iter(row.values()))) for row in grants]
    if granted_privileges(lines) != {GLOBAL_SCOPE: REPLICATION_GRANTS}:
        return False
    probe = Session(
        "replication-user",
        host=session.host,
        port=session.port,
        user=user,
        password=ctx.repl_password,
        log=ctx.log,
    )
    try:
        probe.query("SELECT 1", retry=False)
    except pymysql.err.OperationalError:
        return False
    finally:
        probe.close()
    return True


class ReplicationUser(Step):
    name = "replication_user"

    def plan(self, ctx: Context) -> list[str]:
        user = ctx.runbook.replication.user
        return [
            f"SQL: CREATE USER IF NOT EXISTS '{user}'@'%' IDENTIFIED BY '***'",
            f"SQL: ALTER USER '{user}'@'%' IDENTIFIED BY '***'",
            f"SQL: REVOKE ALL PRIVILEGES, GRANT OPTION FROM '{user}'@'%'",
            f"SQL: GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO '{user}'@'%'",
        ]

    def check(self, ctx: Context) -> Outputs | None:
        ready = user_ok(ctx, ctx.source_sql())
        return {"user": ctx.runbook.replication.user} if ready else None

    def apply(self, ctx: Context) -> Outputs:
        session = ctx.source_sql()
        if ctx.journal.get_meta(CREATED_META) is None:
            # abort drops the user only when this run created it.
            ctx.journal.set_meta(CREATED_META, not _exists(ctx, session))
        create_user(ctx, session)
        return {"user": ctx.runbook.replication.user}


def _exists(ctx: Context, session: Session) -> bool:
    rows = session.query(
        "SELECT COUNT(*) AS n FROM mysql.user WHERE User = %s AND Host = %s",
        (ctx.runbook.replication.user, ANY_HOST),
    )
    return bool(rows[0]["n"])


def create_user(ctx: Context, session: Session) -> None:
    """Create or reset the replication user with exactly its grants."""
    user = ctx.runbook.replication.user
    version = str(session.query("SELECT VERSION() AS v")[0]["v"])
    clause = identified_clause(version, tls=ctx.runbook.replication.tls)
    password = ctx.repl_password

    session.execute(
        f"CREATE USER IF NOT EXISTS %s@%s {clause}", (user, ANY_HOST, password)
    )
    session.execute(f"ALTER USER %s@%s {clause}", (user, ANY_HOST, password))
    session.execute("REVOKE ALL PRIVILEGES, GRANT OPTION FROM %s@%s", (user, ANY_HOST))
    session.execute(
        "GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO %s@%s", (user, ANY_HOST)
    )
    ctx.log.info("replication_user_ready", user=user, server=session.role)
