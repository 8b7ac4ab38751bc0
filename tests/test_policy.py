"""Tests for replicator.policy: the skip policy's decisions."""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase

import pytest

from replicator.policy import NO_MATCH, Decision, RuleLike, decide, table_matches


@dataclass(frozen=True)
class Rule:
    """A skip rule as the runbook would load it."""

    name: str
    errors: list[int]
    action: str = "skip"
    tables: list[str] | None = None
    max_skips: int | None = None
    max_per_minute: int | None = None

    def matches_table(self, schema: str | None, table: str | None) -> bool:
        """Match "schema.table" against the globs; unknown tables match none."""
        if self.tables is None:
            return True
        if schema is None or table is None:
            return False
        return any(fnmatchcase(f"{schema}.{table}", glob) for glob in self.tables)


def sql_error(
    rules: list[RuleLike],
    *,
    errno: int = 1062,
    schema: str | None = "shop",
    table: str | None = "order_items",
    skips: dict[str, int] | None = None,
    last_minute: dict[str, int] | None = None,
) -> Decision:
    """Decide about an SQL thread error with the given counts."""
    return decide(
        rules,
        thread="sql",
        errno=errno,
        schema=schema,
        table=table,
        skips_by_rule=skips or {},
        skips_last_minute_by_rule=last_minute or {},
    )


def io_error(rules: list[RuleLike], errno: int) -> Decision:
    """Decide about an I/O thread error (no table is known)."""
    return decide(
        rules,
        thread="io",
        errno=errno,
        schema=None,
        table=None,
        skips_by_rule={},
        skips_last_minute_by_rule={},
    )


def test_first_matching_rule_decides() -> None:
    """Of two matching rules the first one in the runbook decides."""
    rules: list[RuleLike] = [
        Rule("late-orders", [1062, 1032], tables=["shop.order_*"]),
        Rule("stop-all", [1062], action="halt"),
    ]

    assert sql_error(rules) == Decision(
        "skip", "late-orders", "rule late-orders says skip"
    )


def test_rules_for_other_errors_are_passed_over() -> None:
    """A rule whose error list lacks the error does not match."""
    rules: list[RuleLike] = [Rule("#1", [1032]), Rule("#2", [1062], action="halt")]

    assert sql_error(rules) == Decision(
        "halt", "#2", "rule #2 says halt on error 1062 (shop.order_items)"
    )


@pytest.mark.parametrize(
    ("table", "rule"),
    [("order_items", "orders"), ("orders", "orders"), ("customers", "catch-all")],
)
def test_table_globs_select_the_rule(table: str, rule: str) -> None:
    """schema.table globs decide which rule applies."""
    rules: list[RuleLike] = [
        Rule("orders", [1062], tables=["shop.order*"]),
        Rule("catch-all", [1062]),
    ]

    assert sql_error(rules, table=table).rule == rule


def test_unknown_table_does_not_match_a_rule_with_tables() -> None:
    """With the table unknown, only rules without tables can match."""
    rules: list[RuleLike] = [Rule("orders", [1062], tables=["shop.*"])]

    assert sql_error(rules, schema=None, table=None) == Decision(
        "halt", None, f"sql thread error 1062 on an unknown table: {NO_MATCH}"
    )
    assert sql_error([Rule("any", [1062])], schema=None, table=None).action == "skip"


def test_no_rules_halt() -> None:
    """An empty policy halts, naming the error and the table."""
    assert sql_error([]) == Decision(
        "halt",
        None,
        "sql thread error 1062 on shop.order_items: no rule of the skip policy matches",
    )


@pytest.mark.parametrize("errno", [1236, 2003, 1045])
def test_io_errors_are_never_skipped(errno: int) -> None:
    """A skip rule matching an I/O-thread error halts and says why."""
    decision = io_error([Rule("lenient", [errno])], errno)

    assert (decision.action, decision.rule) == ("halt", "lenient")
    assert decision.reason == (
        f"rule lenient says skip, but error {errno} is on the I/O thread: "
        "I/O-thread errors cannot be skipped, as no event was fetched; "
        "fix the cause, or for error 1236 use a next_log rule"
    )


def test_next_log_answers_io_error_1236() -> None:
    """A next_log rule moves on to the next source binlog after I/O error 1236."""
    rules: list[RuleLike] = [Rule("purged", [1236], action="next_log")]

    assert io_error(rules, 1236) == Decision(
        "next_log", "purged", "rule purged says next_log"
    )


def test_next_log_rules_match_nothing_else() -> None:
    """next_log rules are ignored for other I/O errors and for SQL errors."""
    rules: list[RuleLike] = [Rule("odd", [1236, 1045, 1062], action="next_log")]

    assert io_error(rules, 1045).action == "halt"
    assert io_error(rules, 1045).rule is None
    assert sql_error(rules).rule is None
    assert sql_error(rules, errno=1236).rule is None


def test_next_log_rule_is_passed_over_for_later_rules() -> None:
    """A next_log rule that cannot apply lets the next rule decide."""
    rules: list[RuleLike] = [
        Rule("purged", [1062], action="next_log"),
        Rule("dups", [1062]),
    ]

    assert sql_error(rules).rule == "dups"


def test_max_skips_reached_halts() -> None:
    """A rule at its skip limit halts, naming the limit and the count."""
    rules: list[RuleLike] = [Rule("late-orders", [1062], max_skips=100)]

    assert sql_error(rules, skips={"late-orders": 100}) == Decision(
        "halt",
        "late-orders",
        "rule late-orders reached its limit of 100 skips (100 so far)",
    )
    assert sql_error(rules, skips={"late-orders": 99}).action == "skip"


def test_max_per_minute_reached_waits() -> None:
    """A rule at its per-minute limit waits for the window to free up."""
    rules: list[RuleLike] = [Rule("late-orders", [1062], max_per_minute=60)]

    decision = decide(
        rules,
        thread="sql",
        errno=1062,
        schema="shop",
        table="order_items",
        skips_by_rule={"late-orders": 60},
        skips_last_minute_by_rule={"late-orders": 60},
        seconds_until_window_frees=12.5,
    )

    assert decision == Decision(
        "wait",
        "late-orders",
        "rule late-orders allows 60 skips per minute (60 in the last minute); "
        "waiting for the window",
        wait_seconds=12.5,
    )


def test_below_per_minute_limit_skips() -> None:
    """Below the per-minute limit the rule skips and nothing waits."""
    rules: list[RuleLike] = [Rule("late-orders", [1062], max_per_minute=60)]

    decision = sql_error(rules, last_minute={"late-orders": 59})

    assert (decision.action, decision.wait_seconds) == ("skip", 0.0)


def test_halt_rule_halts_with_its_name() -> None:
    """A halt rule stops replication and names itself."""
    rules: list[RuleLike] = [Rule("schema-drift", [1146], action="halt")]

    assert sql_error(rules, errno=1146, table="missing") == Decision(
        "halt",
        "schema-drift",
        "rule schema-drift says halt on error 1146 (shop.missing)",
    )


def test_unknown_action_halts() -> None:
    """An action the policy does not know halts rather than guessing."""
    rules: list[RuleLike] = [Rule("typo", [1062], action="skpi")]

    assert sql_error(rules) == Decision(
        "halt", "typo", "rule typo has an unknown action 'skpi'"
    )


@pytest.mark.parametrize(
    ("patterns", "schema", "table", "expected"),
    [
        (None, None, None, True),
        (None, "shop", "orders", True),
        (["shop.order_*"], "shop", "order_items", True),
        (["shop.order_*"], "shop", "orders", False),
        (["shop.*", "audit.events"], "audit", "events", True),
        (["*.orders"], "Shop", "orders", True),
        (["shop.orders"], "Shop", "orders", False),
        (["shop.*"], None, "orders", False),
        (["shop.*"], "shop", None, False),
        ([], "shop", "orders", False),
    ],
)
def test_table_matches(
    patterns: list[str] | None, schema: str | None, table: str | None, expected: bool
) -> None:
    """Globs match "schema.table" case-sensitively; unknown tables match none."""
    assert table_matches(patterns, schema, table) is expected
