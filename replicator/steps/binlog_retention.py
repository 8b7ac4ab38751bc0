"""binlog_retention: keep the source's binary logs long enough for the clone.

Aurora purges binary logs lazily when retention is NULL; the clone needs every
log from its position on. The value before the change is kept in the journal
so that ``abort`` can put it back.
"""

from __future__ import annotations

from replicator.context import Context
from replicator.steps.base import Outputs, Step

RETENTION_KEY = "binlog retention hours"
PREVIOUS_META = "binlog_retention_before"


def current_retention(ctx: Context) -> str | None:
    """Return the source's binlog retention hours as configured (None: unset)."""
    session = ctx.source_sql()
    rows = session.call_rds(ctx.source_generation(), "show_configuration")
    for row in rows:
        if str(row.get("name")) == RETENTION_KEY:
            value = row.get("value")
            return None if value is None else str(value)
    return None


class BinlogRetention(Step):
    name = "binlog_retention"

    def plan(self, ctx: Context) -> list[str]:
        hours = ctx.runbook.replication.binlog_retention_hours
        return [f"SQL: CALL mysql.rds_set_configuration('{RETENTION_KEY}', {hours})"]

    def check(self, ctx: Context) -> Outputs | None:
        hours = ctx.runbook.replication.binlog_retention_hours
        if current_retention(ctx) != str(hours):
            return None
        return {"hours": hours, "previous": ctx.journal.get_meta(PREVIOUS_META)}

    def apply(self, ctx: Context) -> Outputs:
        hours = ctx.runbook.replication.binlog_retention_hours
        previous = current_retention(ctx)
        if ctx.journal.get_meta(PREVIOUS_META) is None:
            ctx.journal.set_meta(PREVIOUS_META, {"value": previous})

        session = ctx.source_sql()
        session.call_rds(
            ctx.source_generation(), "set_configuration", RETENTION_KEY, str(hours)
        )
        read_back = current_retention(ctx)
        if read_back != str(hours):
            from replicator.errors import StepFailedError

            raise StepFailedError(
                f"binlog retention reads back {read_back!r}, not {hours}",
                hint="check the source's rds_show_configuration output by hand",
            )
        ctx.log.info("binlog_retention_set", hours=hours, previous=previous)
        return {"hours": hours, "previous": ctx.journal.get_meta(PREVIOUS_META)}
