"""What every step is: a name, a plan, a check of the world, and the work.

``check()`` reads the world and returns the step's outputs when the work is
already done (by an earlier attempt, or by someone else in a way we accept);
``apply()`` does the work and returns the outputs. Both must be safe to call
again after a crash at any point: ``apply()`` is always preceded by
``check()``.
"""

from __future__ import annotations

from typing import Any

from replicator.context import Context

Outputs = dict[str, Any]


class Step:
    """Base of every step; subclasses set ``name`` and implement the three parts."""

    name: str
    # Steps that touch production ask for confirmation before they act.
    production: bool = False

    def applies(self, ctx: Context) -> bool:
        """Tell whether the runbook asks for this step at all."""
        return True

    def plan(self, ctx: Context) -> list[str]:
        """Return what the step would do: AWS calls and SQL, secrets masked."""
        raise NotImplementedError

    def check(self, ctx: Context) -> Outputs | None:
        """Return the outputs when the work is already done in the world."""
        raise NotImplementedError

    def apply(self, ctx: Context) -> Outputs:
        """Do the work and return the outputs to journal."""
        raise NotImplementedError
