"""The skip policy: what to do about a replication error. Pure, no I/O.

Rules come from the runbook in order; the first rule whose error codes contain
the error and whose table globs match the failed event's table decides. I/O
thread errors are never skipped (the event was never fetched, so there is
nothing to skip); the only action for them besides halting is ``next_log``
after error 1236, which can lose data and must be allowed explicitly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Final, Literal, Protocol

from replicator.mysql.errors import ER_SOURCE_FATAL_READING_BINLOG

Action = Literal["skip", "halt", "next_log", "wait"]
Thread = Literal["io", "sql"]

SKIP: Final = "skip"
HALT: Final = "halt"
NEXT_LOG: Final = "next_log"
WAIT: Final = "wait"
IO_THREAD: Final = "io"
DEFAULT_WINDOW_SECONDS: Final = 60.0
NO_MATCH: Final = "no rule of the skip policy matches"


class RuleLike(Protocol):
    """A skip rule as the runbook loads it (read-only view)."""

    @property
    def name(self) -> str: ...

    @property
    def errors(self) -> Sequence[int]: ...

    @property
    def tables(self) -> Sequence[str] | None: ...

    @property
    def action(self) -> str: ...

    @property
    def max_skips(self) -> int | None: ...

    @property
    def max_per_minute(self) -> int | None: ...

    def matches_table(self, schema: str | None, table: str | None) -> bool: ...


@dataclass(frozen=True)
class Decision:
    """The policy's answer: an action, the rule that chose it and why."""

    action: Action
    rule: str | None
    reason: str
    wait_seconds: float = 0.0


def table_matches(
    patterns: Sequence[str] | None, schema: str | None, table: str | None
) -> bool:
    """Return whether "schema.table" matches one of the globs.

    No patterns match every event; with patterns, an unknown table matches
    none. Matching is case-sensitive, as table names are on Linux servers.
    """
    if patterns is None:
        return True
    if schema is None or table is None:
        return False
    qualified = f"{schema}.{table}"
    return any(fnmatchcase(qualified, pattern) for pattern in patterns)


def decide(
    rules: Sequence[RuleLike],
    *,
    thread: Thread,
    errno: int,
    schema: str | None,
    table: str | None,
    skips_by_rule: Mapping[str, int],
    skips_last_minute_by_rule: Mapping[str, int],
    seconds_until_window_frees: float = DEFAULT_WINDOW_SECONDS,
) -> Decision:
    """Return what to do about one replication error.

    ``errno`` uses the classic codes (see
    ``replicator.mysql.errors.classic_errno``). The skip counts are per rule
    name; ``next_log`` uses of a rule count against its limits like skips.
    """
    where = _describe_table(schema, table)
    rule = _first_match(rules, thread=thread, errno=errno, schema=schema, table=table)
    if rule is None:
        reason = f"{thread} thread error {errno} on {where}: {NO_MATCH}"
        return Decision(HALT, None, reason)
    if rule.action == HALT:
        reason = f"rule {rule.name} says halt on error {errno} ({where})"
        return Decision(HALT, rule.name, reason)
    if rule.action not in (SKIP, NEXT_LOG):
        reason = f"rule {rule.name} has an unknown action {rule.action!r}"
        return Decision(HALT, rule.name, reason)
    if rule.action == SKIP and thread == IO_THREAD:
        return Decision(HALT, rule.name, _io_skip_reason(rule, errno))

    return _within_limits(
        rule,
        skips=skips_by_rule.get(rule.name, 0),
        skips_last_minute=skips_last_minute_by_rule.get(rule.name, 0),
        seconds_until_window_frees=seconds_until_window_frees,
    )


def _first_match(
    rules: Sequence[RuleLike],
    *,
    thread: Thread,
    errno: int,
    schema: str | None,
    table: str | None,
) -> RuleLike | None:
    """Return the first rule that applies to the error, or None."""
    for rule in rules:
        if errno not in rule.errors:
            continue
        if rule.action == NEXT_LOG and not _next_log_allowed(thread, errno):
            continue
        if rule.matches_table(schema, table):
            return rule
    return None


def _next_log_allowed(thread: Thread, errno: int) -> bool:
    """Return whether moving to the next source binlog can answer the error."""
    return thread == IO_THREAD and errno == ER_SOURCE_FATAL_READING_BINLOG


def _within_limits(
    rule: RuleLike,
    *,
    skips: int,
    skips_last_minute: int,
    seconds_until_window_frees: float,
) -> Decision:
    """Return the rule's action, or halt or wait when a limit is reached."""
    if rule.max_skips is not None and skips >= rule.max_skips:
        return Decision(
            HALT,
            rule.name,
            f"rule {rule.name} reached its limit of {rule.max_skips} skips "
            f"({skips} so far)",
        )
    if rule.max_per_minute is not None and skips_last_minute >= rule.max_per_minute:
        return Decision(
            WAIT,
            rule.name,
            f"rule {rule.name} allows {rule.max_per_minute} skips per minute "
            f"({skips_last_minute} in the last minute); waiting for the window",
            wait_seconds=seconds_until_window_frees,
        )
    action: Action = NEXT_LOG if rule.action == NEXT_LOG else SKIP
    return Decision(action, rule.name, f"rule {rule.name} says {action}")


def _io_skip_reason(rule: RuleLike, errno: int) -> str:
    """Explain why a skip rule cannot answer an I/O thread error."""
    return (
        f"rule {rule.name} says skip, but error {errno} is on the I/O thread: "
        "I/O-thread errors cannot be skipped, as no event was fetched; "
        "fix the cause, or for error 1236 use a next_log rule"
    )


def _describe_table(schema: str | None, table: str | None) -> str:
    """Return "schema.table", or "an unknown table"."""
    if table is None:
        return "an unknown table"
    return f"{schema}.{table}" if schema else table
