"""Pieces every benchmark script shares."""

from __future__ import annotations

import os
from dataclasses import dataclass

from replicator.sandbox.manage import Sandbox


class BenchError(RuntimeError):
    """A step of the benchmark did not go as it must."""


@dataclass(frozen=True)
class Summary:
    """The median, minimum and maximum of one figure, against its goal."""

    name: str
    median: float
    minimum: float
    maximum: float
    goal: float | None

    @property
    def met(self) -> bool | None:
        return None if self.goal is None else self.median < self.goal


def sandbox_environment(sandbox: Sandbox) -> dict[str, str]:
    """Return this process's environment with the sandbox's variables exported."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("REPLICATOR_")}
    return {**base, **sandbox.environment()}
