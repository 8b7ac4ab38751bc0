"""catch_up: poll until the clone is caught up, applying the skip policy.

The loop itself lives in :mod:`replicator.catchup`, shared with ``watch``.
Like every step it checks the world first: a replica that has since stopped
on an error is not caught up, so ``run`` enters catch-up again.
"""

from __future__ import annotations

from replicator.catchup import CatchUp as CatchUpLoop
from replicator.context import Context
from replicator.steps.base import Outputs, Step


class CatchUp(Step):
    name = "catch_up"

    def plan(self, ctx: Context) -> list[str]:
        spec = ctx.runbook.catch_up
        rules = ", ".join(f"{r.name}: {r.action} {r.errors}" for r in spec.skip_policy)
        return [
            f"poll every {spec.poll_interval}s: SHOW MASTER STATUS on the source, then "
            "SHOW REPLICA STATUS on the clone; caught up for "
            f"{spec.stable_polls} polls in a row",
            "on a replication error: skip policy "
            f"[{rules or 'no rules: halt on any error'}] via mysql.rds_skip_repl_error",
        ]

    def check(self, ctx: Context) -> Outputs | None:
        # A single poll proves little: until the loop has held "caught up" for
        # stable_polls polls once, the step runs the loop.
        if not ctx.journal.is_done(self.name) or ctx.journal.pending_skip():
            return None
        loop = CatchUpLoop(ctx)
        poll = loop.poll() if _replica_clean(ctx) else None
        if poll is None or not poll.caught_up:
            return None
        return ctx.journal.step_outputs(self.name) or {"adopted": True}

    def apply(self, ctx: Context) -> Outputs:
        return CatchUpLoop(ctx).run()


def _replica_clean(ctx: Context) -> bool:
    status = ctx.clone_sql().replica_status(ctx.clone_generation())
    return status is not None and status.running and status.error_thread is None
