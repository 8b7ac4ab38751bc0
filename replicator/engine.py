"""The engine: runs a table of steps, journaling each attempt, resumable anywhere.

For each step: ``check()`` the world first and adopt finished work; otherwise
journal the attempt's start, ``apply()``, journal its end and outputs, each in
its own transaction. Fault points (``REPLICATOR_FAULT=STEP:POINT``) let tests
kill the process at ``before_apply``, ``after_apply`` and ``after_journal``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import structlog

from replicator.context import Context, fault_point
from replicator.errors import ExitCode, HaltedError, ReplicatorError
from replicator.steps.base import Step

DONE = "done"
FAILED = "failed"
HALTED = "halted"
INTERRUPTED = "interrupted"


@dataclass
class StepResult:
    """What happened to one step in this command."""

    name: str
    outcome: str  # "done" (by apply), "adopted" (found done), "skipped" (n/a)
    outputs: dict[str, Any] = field(default_factory=dict)


@dataclass
class RunResult:
    """What a command did: per step, and whether anything changed."""

    steps: list[StepResult]

    @property
    def changed(self) -> bool:
        return any(step.outcome == DONE for step in self.steps)


class OperatorInterruptError(ReplicatorError):
    """Ctrl-C during a step: state saved; the message names the step."""

    exit_code = ExitCode.INTERRUPTED


def run_steps(ctx: Context, steps: Sequence[Step]) -> RunResult:
    """Run (or resume) the steps in order; stop at the first failure."""
    results = []
    for step in steps:
        if not step.applies(ctx):
            results.append(StepResult(step.name, "skipped"))
            continue
        results.append(_run_one(ctx, step))
    return RunResult(results)


def _run_one(ctx: Context, step: Step) -> StepResult:
    structlog.contextvars.bind_contextvars(step=step.name)
    try:
        outputs = step.check(ctx)
        if outputs is not None:
            _adopt(ctx, step, outputs)
            return StepResult(step.name, "adopted", outputs)
        return StepResult(step.name, DONE, _attempt(ctx, step))
    finally:
        structlog.contextvars.unbind_contextvars("step")


def _adopt(ctx: Context, step: Step, outputs: dict[str, Any]) -> None:
    """Record work found done in the world that the journal does not know yet."""
    if ctx.journal.is_done(step.name):
        return
    attempt = ctx.journal.start_attempt(step.name)
    ctx.journal.finish_attempt(attempt, DONE, outputs={**outputs, "adopted": True})
    ctx.log.info("step_adopted", outputs=outputs)
    fault_point(step.name, "after_journal")


def _attempt(ctx: Context, step: Step) -> dict[str, Any]:
    attempt = ctx.journal.start_attempt(step.name)
    ctx.log.info("step_started")
    try:
        fault_point(step.name, "before_apply")
        outputs = step.apply(ctx)
        fault_point(step.name, "after_apply")
    except HaltedError as error:
        ctx.journal.finish_attempt(attempt, HALTED, error=str(error))
        raise
    except KeyboardInterrupt:
        ctx.journal.finish_attempt(
            attempt, INTERRUPTED, error="interrupted by the operator"
        )
        raise OperatorInterruptError(
            f"interrupted during step {step.name}; the journal keeps the state",
            hint="run the same command again to resume",
        ) from None
    except ReplicatorError as error:
        ctx.journal.finish_attempt(attempt, FAILED, error=str(error))
        raise
    except Exception as error:
        ctx.journal.finish_attempt(
            attempt, FAILED, error=f"{type(error).__name__}: {error}"
        )
        raise
    ctx.journal.finish_attempt(attempt, DONE, outputs=outputs)
    ctx.log.info("step_done", outputs=outputs)
    fault_point(step.name, "after_journal")
    return outputs


@dataclass
class PlanItem:
    """One step of a plan: journal state and what it would do."""

    name: str
    state: str
    actions: list[str]


def plan_steps(ctx: Context, steps: Sequence[Step]) -> list[PlanItem]:
    """Describe what each remaining step would do; change nothing."""
    items = []
    for step in steps:
        if not step.applies(ctx):
            continue
        state = "done" if ctx.journal.is_done(step.name) else "pending"
        try:
            actions = step.plan(ctx)
        except ReplicatorError as error:
            actions = [f"(cannot plan yet: {error.message})"]
        items.append(PlanItem(step.name, state, actions))
    return items
