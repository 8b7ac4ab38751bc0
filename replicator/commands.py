"""What each command does, between the command line and the engine.

Each function opens the runbook, the journal and (for commands that change
the world) the runbook's lock, does its work and returns a result for the
command line to render. Nothing here prints.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from replicator.context import Context
from replicator.engine import RunResult
from replicator.journal import Journal
from replicator.logs import get_logger
from replicator.runbook import Runbook, load_runbook

REPORTING_RECONNECT_S = 10.0


@dataclass(frozen=True)
class Options:
    """The options every runbook command takes."""

    runbook: Path
    state: Path | None = None
    yes: bool = False


@contextlib.contextmanager
def open_context(options: Options, command: str, *, lock: bool) -> Iterator[Context]:
    """Load the runbook, open the journal (and lock), yield the context."""
    runbook = load_runbook(options.runbook)
    state = options.state or runbook.default_state_path()
    journal = _open_journal(state)
    structlog.contextvars.bind_contextvars(run=journal.run_id, runbook=runbook.name)
    log = get_logger(command=command)
    ctx = Context(runbook=runbook, journal=journal, log=log, yes=options.yes)
    try:
        if lock:
            journal.acquire_lock(command)
        yield ctx
    finally:
        ctx.close()
        if lock:
            journal.release_lock()
        journal.close()
        structlog.contextvars.clear_contextvars()


def _open_journal(state: Path) -> Journal:
    import sqlite3

    from replicator.errors import InputError

    try:
        return Journal.open(state, mask=_mask)
    except (sqlite3.OperationalError, OSError) as error:
        raise InputError(
            f"cannot open the journal {state}: {error}",
            hint="give --state a path in a writable directory",
        ) from None


def _mask(text: str) -> str:
    from replicator.secrets import MASKER

    return MASKER.mask(text)


def run(options: Options) -> dict[str, Any]:
    """Run or resume every step up to and including catch-up."""
    from replicator.engine import run_steps
    from replicator.steps import RUN_STEPS

    with open_context(options, "run", lock=True) as ctx:
        ctx.resolve_secrets()
        if _past_replication(ctx):
            from replicator.undo import phase

            return {
                "changed": False,
                "phase": phase(ctx),
                "steps": [],
                "status": _status_document(ctx),
            }
        result = run_steps(ctx, RUN_STEPS)
        return {
            "changed": result.changed,
            "steps": [{"name": s.name, "outcome": s.outcome} for s in result.steps],
            "status": _status_document(ctx),
        }


def plan(options: Options) -> list[dict[str, Any]]:
    """Describe what each remaining step would do."""
    from replicator.engine import plan_steps
    from replicator.steps import RUN_STEPS

    with open_context(options, "plan", lock=False) as ctx:
        # The same input checks as run: passwords resolvable, source present.
        ctx.resolve_secrets()
        ctx.source_cluster()
        items = plan_steps(ctx, RUN_STEPS)
        return [{"step": i.name, "state": i.state, "actions": i.actions} for i in items]


def status(options: Options) -> dict[str, Any]:
    """Return steps, timings, live replica state and skip counts."""
    with open_context(options, "status", lock=False) as ctx:
        ctx.reconnect_deadline_s = REPORTING_RECONNECT_S
        return _status_document(ctx)


def _status_document(ctx: Context) -> dict[str, Any]:
    from replicator.steps import RUN_STEPS

    names = [step.name for step in RUN_STEPS if step.applies(ctx)]
    summaries = ctx.journal.summaries(names)
    return {
        "runbook": ctx.runbook.name,
        "steps": [
            {
                "name": s.name,
                "state": s.state,
                "started": s.started,
                "finished": s.finished,
                "attempts": s.attempts,
            }
            for s in summaries
        ],
        "replica": _live_replica(ctx),
        "skips": ctx.journal.skip_counts(),
    }


def _live_replica(ctx: Context) -> dict[str, Any] | None:
    """Read the clone's replica status now; None when there is none to read."""
    from replicator.errors import ReplicatorError

    try:
        if ctx.clone_cluster() is None:
            return None
        source = ctx.source_sql().binlog_coordinates()
        status = ctx.clone_sql().replica_status(ctx.clone_generation())
    except (ReplicatorError, OSError) as error:
        ctx.log.warning("replica_unreadable", error=str(error))
        return None
    except Exception as error:
        ctx.log.warning("replica_unreadable", error=f"{type(error).__name__}: {error}")
        return None
    if status is None:
        return None
    return replica_document(ctx, source, status)


def replica_document(ctx: Context, source: Any, status: Any) -> dict[str, Any]:
    """Return the contract's ``replica`` object."""
    from replicator.mysql.status import bytes_behind

    executed = status.exec_coordinates
    behind = None
    if source is not None and executed is not None:
        sizes = ctx.source_sql().binary_logs() if executed.file != source.file else None
        with contextlib.suppress(ValueError):
            behind = bytes_behind(source, executed, sizes)
    return {
        "io_running": status.io_running,
        "sql_running": status.sql_running,
        "source_file": source.file if source else None,
        "source_position": source.position if source else None,
        "read_file": status.read_file,
        "read_position": status.read_position,
        "exec_file": status.exec_file,
        "exec_position": status.exec_position,
        "seconds_behind": status.seconds_behind,
        "bytes_behind": behind,
        "last_errno": status.last_io_errno
        or status.last_sql_errno
        or status.last_errno,
        "last_error": status.last_io_error
        or status.last_sql_error
        or status.last_error,
    }


def skips(options: Options) -> list[dict[str, Any]]:
    """Return every skipped event, in order."""
    with open_context(options, "skips", lock=False) as ctx:
        return [
            {
                "time": s.time,
                "rule": s.rule,
                "action": s.action,
                "errno": s.errno,
                "error": s.error,
                "file": s.file,
                "position": s.position,
                "schema": s.schema,
                "table": s.table,
                "keys": s.keys,
            }
            for s in ctx.journal.skips()
        ]


def watch(options: Options, on_poll: Any) -> None:
    """Keep catch-up going with the policy applied until interrupted."""
    from replicator.catchup import CatchUp

    with open_context(options, "watch", lock=True) as ctx:
        ctx.resolve_secrets()
        _require_replicating(ctx, "watch")
        CatchUp(ctx, on_poll=on_poll).run(until_caught_up=False)


def load(options: Options) -> Runbook:
    """Load the runbook only (for commands that validate)."""
    return load_runbook(options.runbook)


def cutover(options: Options, *, accept_skips: bool, force: bool) -> dict[str, Any]:
    """Switch traffic to the clone: guardrails, freeze, drain, stop, switch, open."""
    from replicator.engine import run_steps
    from replicator.steps.cutover import CUTOVER_STEPS

    with open_context(options, "cutover", lock=True) as ctx:
        ctx.accept_skips = accept_skips
        ctx.force = force
        ctx.resolve_secrets()
        _refuse_after_rollback(ctx)
        if ctx.journal.is_done("open_writes"):
            return _switch_result(ctx, RunResult([]), "switch", "open_writes")
        result = run_steps(ctx, CUTOVER_STEPS)
        return _switch_result(ctx, result, "switch", "open_writes")


def rollback(options: Options) -> dict[str, Any]:
    """Switch traffic back to the old cluster (needs reverse replication)."""
    from replicator.engine import run_steps
    from replicator.steps.cutover import ROLLBACK_STEPS

    with open_context(options, "rollback", lock=True) as ctx:
        ctx.resolve_secrets()
        if ctx.journal.is_done("rollback_open_writes"):
            return _switch_result(
                ctx, RunResult([]), "rollback_switch", "rollback_open_writes"
            )
        result = run_steps(ctx, ROLLBACK_STEPS)
        return _switch_result(ctx, result, "rollback_switch", "rollback_open_writes")


def _past_replication(ctx: Context) -> bool:
    """Tell (and log) whether the run has moved past replication into cutover."""
    from replicator.undo import REPLICATING, phase

    where = phase(ctx)
    if where != REPLICATING:
        ctx.log.info("nothing_to_run", phase=where)
    return where != REPLICATING


def _require_replicating(ctx: Context, command: str) -> None:
    from replicator.errors import HaltedError
    from replicator.undo import REPLICATING, phase

    where = phase(ctx)
    if where != REPLICATING:
        raise HaltedError(
            f"{command}: this run is {where}; the clone no longer replicates "
            "from the source",
            hint="`replicator status` and `replicator report` show the run",
        )


def _refuse_after_rollback(ctx: Context) -> None:
    from replicator.errors import HaltedError
    from replicator.undo import ROLLED_BACK, phase

    if phase(ctx) == ROLLED_BACK:
        raise HaltedError(
            "this run was rolled back; its clone no longer replicates from the source",
            hint="start a new attempt: `replicator abort` (removes the clone), "
            "then `replicator run`",
        )


def _switch_result(
    ctx: Context, result: Any, switch: str, opened: str
) -> dict[str, Any]:
    return {
        "changed": result.changed,
        "switch": ctx.journal.step_outputs(switch),
        "writes": ctx.journal.step_outputs(opened),
    }


def verify(options: Options, pattern: str | None) -> dict[str, Any]:
    """Compare source and clone; journal the result for cutover's guardrail."""
    from replicator.verify import verify as compare

    # verify holds the replica at positions while it re-reads chunks: it takes
    # the lock so that no catch-up loop restarts a held replica meanwhile.
    with open_context(options, "verify", lock=True) as ctx:
        ctx.resolve_secrets()
        _require_replicating(ctx, "verify")
        source = _raw_connection(ctx, ctx.source_cluster())
        clone_cluster = ctx.clone_cluster()
        if clone_cluster is None:
            from replicator.errors import StepFailedError

            raise StepFailedError(
                "there is no clone to verify", hint="run `replicator run`"
            )
        clone = _raw_connection(ctx, clone_cluster)
        try:
            report = compare(
                source,
                clone,
                pattern=pattern,
                wait_clone_past=lambda where, seconds: _clone_past(ctx, where, seconds),
                clone_control=ReplicaHold(ctx),
                progress=lambda table, chunks, rows: ctx.log.debug(
                    "verify_progress", table=table, chunks=chunks, rows=rows
                ),
            )
        finally:
            source.close()
            clone.close()
        document: dict[str, Any] = report.to_json()
        ctx.journal.record_event(
            "verify",
            {
                "equal": report.equal,
                "pattern": pattern,
                "tables": len(report.tables),
                "differing": [
                    f"{t.schema}.{t.table}" for t in report.tables if not t.equal
                ],
            },
        )
        return document


def _raw_connection(ctx: Context, cluster: dict[str, Any]) -> Any:
    import pymysql

    host, port = ctx.endpoint(cluster)
    return pymysql.connect(
        host=host,
        port=port,
        user=ctx.runbook.source.admin.user,
        password=ctx.admin_password.reveal(),
        autocommit=True,
        charset="utf8mb4",
        connect_timeout=10,
    )


class ReplicaHold:
    """Holds the clone's replica at a source position while verify re-reads.

    Pause with ``rds_stop_replication``, apply up to exactly a position with
    ``rds_start_replication_until``, resume with ``rds_start_replication``.
    A replica that is not running cleanly is never held.
    """

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.available = True

    def pause(self) -> bool:
        if not self.available:
            return False
        session = self.ctx.clone_sql()
        status = session.replica_status(self.ctx.clone_generation())
        if status is None or not status.running or status.error_thread:
            return False
        session.call_rds(self.ctx.clone_generation(), "stop_replication")
        return True

    def run_until(self, coordinates: Any, timeout: float) -> bool:
        import time

        import pymysql

        from replicator.mysql.errors import ER_SP_DOES_NOT_EXIST
        from replicator.mysql.session import mysql_errno

        session = self.ctx.clone_sql()
        generation = self.ctx.clone_generation()
        try:
            session.call_rds(
                generation,
                "start_replication_until",
                coordinates.file,
                coordinates.position,
            )
        except pymysql.err.MySQLError as error:
            if mysql_errno(error) != ER_SP_DOES_NOT_EXIST:
                raise
            self.available = False
            self.ctx.log.warning("verify_cannot_hold_replica", error=str(error))
            return False
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = session.replica_status(generation)
            if status is None or status.error_thread:
                return False
            if not status.sql_ok and status.exec_coordinates == coordinates:
                return True
            time.sleep(0.02)
        return False

    def resume(self) -> None:
        self.ctx.clone_sql().call_rds(self.ctx.clone_generation(), "start_replication")


def _clone_past(ctx: Context, where: Any, seconds: float) -> bool:
    """Wait until the clone has executed at or past ``where``; False at the deadline."""
    import time

    deadline = time.monotonic() + seconds
    generation = ctx.clone_generation()
    while time.monotonic() < deadline:
        status = ctx.clone_sql().replica_status(generation)
        executed = status.exec_coordinates if status is not None else None
        if status is None:
            return True  # replication is gone (after cutover): nothing more will arrive
        if executed is not None:
            with contextlib.suppress(ValueError):
                if executed >= where:
                    return True
        time.sleep(0.05)
    return False


def abort(options: Options, *, binlog_format: bool) -> dict[str, Any]:
    """Remove what the run created: clone, replication user, retention change."""
    from replicator.undo import abort_run

    with open_context(options, "abort", lock=True) as ctx:
        ctx.resolve_secrets()
        return abort_run(ctx, restore_binlog_format=binlog_format)


def report(options: Options) -> dict[str, Any]:
    """Return the run's timeline."""
    from replicator.report import build_report

    with open_context(options, "report", lock=False) as ctx:
        return build_report(ctx)
