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
from replicator.journal import Journal
from replicator.logs import get_logger
from replicator.runbook import Runbook, load_runbook


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
    journal = Journal.open(state, mask=_mask)
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


def _mask(text: str) -> str:
    from replicator.secrets import MASKER

    return MASKER.mask(text)


def run(options: Options) -> dict[str, Any]:
    """Run or resume every step up to and including catch-up."""
    from replicator.engine import run_steps
    from replicator.steps import RUN_STEPS

    with open_context(options, "run", lock=True) as ctx:
        ctx.resolve_secrets()
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
        items = plan_steps(ctx, RUN_STEPS)
        return [{"step": i.name, "state": i.state, "actions": i.actions} for i in items]


def status(options: Options) -> dict[str, Any]:
    """Return steps, timings, live replica state and skip counts."""
    with open_context(options, "status", lock=False) as ctx:
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
    except Exception as error:  # noqa: BLE001 - status must render whatever fails
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
        CatchUp(ctx, on_poll=on_poll).run(until_caught_up=False)


def load(options: Options) -> Runbook:
    """Load the runbook only (for commands that validate)."""
    return load_runbook(options.runbook)
