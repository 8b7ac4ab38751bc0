"""Errors the operator sees, each with the exit code the command line returns.

Only the command line turns these into messages and exit codes. Every message
names what is at fault (step, cluster, field, value) and the next action.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Exit codes of every command, as documented in the README."""

    OK = 0
    FAILED = 1
    INVALID_INPUT = 2
    HALTED = 3
    LOCKED = 4
    FAULT_INJECTED = 70
    INTERRUPTED = 130


class ReplicatorError(Exception):
    """Base of every error the tool reports to the operator.

    ``hint`` is the next action, printed on its own line after the message.
    Never put a secret into ``message`` or ``hint``.
    """

    exit_code: ExitCode = ExitCode.FAILED

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message}\n  next: {self.hint}"
        return self.message


class InputError(ReplicatorError):
    """The runbook, an option or a password source is wrong; nothing was changed."""

    exit_code = ExitCode.INVALID_INPUT


class StepFailedError(ReplicatorError):
    """A step failed or a deadline passed; the journal keeps the state."""

    exit_code = ExitCode.FAILED


class HaltedError(ReplicatorError):
    """Stopped on purpose (skip policy, guardrail, confirmation); needs an operator."""

    exit_code = ExitCode.HALTED


class ConfirmationRequiredError(HaltedError):
    """A production-affecting action needs a yes from a terminal or ``--yes``."""


class LockHeldError(ReplicatorError):
    """Another command holds the runbook's lock."""

    exit_code = ExitCode.LOCKED


class FaultInjectedError(ReplicatorError):
    """A fault point armed with REPLICATOR_FAULT fired (testing aid)."""

    exit_code = ExitCode.FAULT_INJECTED
