"""Tests of runbook loading: models, defaults, and problems with their lines."""

from __future__ import annotations

import textwrap
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pydantic
import pytest

from replicator.errors import ExitCode, InputError
from replicator.runbook import (
    MaintenanceWindow,
    Problem,
    Runbook,
    RunbookError,
    SkipRule,
    format_duration,
    load_runbook,
    parse_duration,
)

DESIGN_SAMPLE = """\
name: sandbox                        # journal: .replicator/<name>.db
region: us-east-1
source:
  cluster: sandbox-source
  parameter_group: sandbox-source-params
  create_parameter_group: false
  admin: {user: admin, password: {env: REPLICATOR_ADMIN_PASSWORD}}
clone:
  cluster: sandbox-clone
  instance_class: db.r6g.large
  parameter_group: null              # default: the source's group
  engine_version: null               # set it to upgrade the clone
  tags: {}
replication:
  user: repl_user
  password: {env: REPLICATOR_REPL_PASSWORD}
  binlog_format: MIXED               # or ROW
  binlog_retention_hours: 168        # 1..2160
  tls: false
  source_host: null                  # default: the source cluster endpoint
timeouts: {reboot: 15m, clone: 2h, position_event: 30m, catch_up: 24h}
maintenance_window: null             # e.g. "sun:02:00-sun:04:00" (UTC)
catch_up:
  poll_interval: 2s
  stable_polls: 3
  heartbeat: false
  skip_policy: []                    # rules: see the catch-up section below
cutover:
  freeze: lock_users                 # lock_users | parameter_group | hook
  app_users: [shop_app]
  hook: null
  switch: rename                     # rename | route53 | none
  route53: null                      # {zone_id: ..., record: ...}
  drain_timeout: 60s
  require_verify_within: 1h
  rollback: none                     # none | reverse_replication
connect: {}                          # {cluster-id: {host: ..., port: ...}}
"""

# Eight lines; text appended with two-space indentation extends `replication`.
MINIMAL = """\
name: shop
source:
  cluster: shop-source
  admin: {user: admin, password: {env: ADMIN_PW}}
clone:
  cluster: shop-clone
replication:
  password: {env: REPL_PW}
"""


def write(tmp_path: Path, text: str, name: str = "runbook.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def problems_in(path: Path) -> list[Problem]:
    with pytest.raises(RunbookError) as caught:
        load_runbook(path)
    return caught.value.problems


def where(problems: list[Problem]) -> list[tuple[int | None, str]]:
    return [(problem.line, problem.field) for problem in problems]


def only_problem(tmp_path: Path, text: str) -> Problem:
    problems = problems_in(write(tmp_path, text))
    assert len(problems) == 1, problems
    return problems[0]


# --- valid runbooks ----------------------------------------------------------


def test_design_sample_loads(tmp_path: Path) -> None:
    """The sample runbook of DESIGN.md loads with its values and durations."""
    runbook = load_runbook(write(tmp_path, DESIGN_SAMPLE))

    assert runbook.name == "sandbox"
    assert runbook.source.cluster == "sandbox-source"
    assert runbook.source.admin.password.env == "REPLICATOR_ADMIN_PASSWORD"
    assert runbook.clone.cluster == "sandbox-clone"
    assert runbook.replication.binlog_format == "MIXED"
    assert runbook.timeouts.reboot == 900.0
    assert runbook.timeouts.catch_up == 86400.0
    assert runbook.cutover.app_users == ["shop_app"]
    assert runbook.cutover.require_verify_within == 3600.0
    assert runbook.maintenance_window is None


def test_minimal_runbook_takes_the_documented_defaults(tmp_path: Path) -> None:
    """Keys left out take the defaults the runbook contract documents."""
    runbook = load_runbook(write(tmp_path, MINIMAL))

    assert runbook.region == "us-east-1"
    assert runbook.clone.instance_class == "db.r6g.large"
    assert runbook.replication.user == "repl_user"
    assert runbook.replication.binlog_format == "MIXED"
    assert runbook.replication.binlog_retention_hours == 168
    assert runbook.timeouts.model_dump() == {
        "reboot": "15m",
        "clone": "2h",
        "position_event": "30m",
        "catch_up": "1d",
    }
    assert runbook.catch_up.poll_interval == 2.0
    assert runbook.catch_up.stable_polls == 3
    assert runbook.cutover.freeze == "lock_users"
    assert runbook.cutover.switch == "rename"
    assert runbook.cutover.drain_timeout == 60.0
    assert runbook.connect == {}


def test_loaded_runbook_knows_its_file_and_journal_path(tmp_path: Path) -> None:
    """A loaded runbook keeps its path; its journal is .replicator/<name>.db."""
    path = write(tmp_path, MINIMAL)

    runbook = load_runbook(path)

    assert runbook.path == path
    assert runbook.default_state_path() == Path(".replicator/shop.db")


def test_runbook_is_frozen(tmp_path: Path) -> None:
    """A loaded runbook cannot be changed in place."""
    runbook = load_runbook(write(tmp_path, MINIMAL))

    with pytest.raises(pydantic.ValidationError):
        runbook.name = "other"  # type: ignore[misc]


def test_dump_round_trips_to_an_equal_runbook(tmp_path: Path) -> None:
    """model_dump writes the YAML forms, so validating it gives the same runbook."""
    runbook = load_runbook(write(tmp_path, DESIGN_SAMPLE))

    again = Runbook.model_validate(runbook.model_dump())

    assert again.model_dump() == runbook.model_dump()
    assert again.replication.password.model_dump() == {
        "env": "REPLICATOR_REPL_PASSWORD"
    }


def test_connect_endpoints_load(tmp_path: Path) -> None:
    """connect maps cluster ids to a host and port."""
    text = MINIMAL + "connect: {shop-clone: {host: 127.0.0.1, port: 33061}}\n"

    runbook = load_runbook(write(tmp_path, text))

    assert runbook.connect["shop-clone"].host == "127.0.0.1"
    assert runbook.connect["shop-clone"].port == 33061


# --- reporting ---------------------------------------------------------------


def test_every_problem_is_reported_at_once_with_its_line(tmp_path: Path) -> None:
    """A runbook with many mistakes yields one problem per mistake, by line."""
    text = """\
        name: shop runbook
        region: us-east-1
        source:
          cluster: 1-source
          admin: {user: admin, password: {env: ADMIN_PW}}
        clone:
          cluster: shop-clone
          instance_class: r6g.large
        replication:
          password: {env: REPL_PW}
          binlog_format: STATEMENT
          binlog_retention_hours: 0
        timeouts: {reboot: 15, clone: 2h}
        catch_up:
          stable_polls: 0
          skip_policy:
            - errors: [1062]
              action: next_log
        cutover:
          freeze: hook
        colour: blue
        """

    problems = problems_in(write(tmp_path, text))

    assert where(problems) == [
        (1, "name"),
        (4, "source.cluster"),
        (8, "clone.instance_class"),
        (11, "replication.binlog_format"),
        (12, "replication.binlog_retention_hours"),
        (13, "timeouts.reboot"),
        (15, "catch_up.stable_polls"),
        (17, "catch_up.skip_policy[0].errors"),
        (19, "cutover.hook"),
        (21, "colour"),
    ]


def test_problem_renders_file_line_field_found_expected() -> None:
    """A problem prints as file:line: field: found ..., expected ...."""
    problem = Problem(
        "runbooks/x.yaml", 12, "replication.binlog_format", "'X'", "one of MIXED, ROW"
    )

    assert str(problem) == (
        "runbooks/x.yaml:12: replication.binlog_format: found 'X',"
        " expected one of MIXED, ROW"
    )


def test_problem_without_line_renders_file_only() -> None:
    """A problem that has no line prints the file name alone as its place."""
    problem = Problem("x.yaml", None, "(file)", "an empty file", "a mapping")

    assert str(problem) == "x.yaml: (file): found an empty file, expected a mapping"


def test_error_message_lists_problems_under_a_header(tmp_path: Path) -> None:
    """The error's message counts the problems and lists one per line, with a hint."""
    path = write(tmp_path, MINIMAL + "  tls: maybe\n  user: ''\n")

    with pytest.raises(RunbookError) as caught:
        load_runbook(path)

    error = caught.value
    assert isinstance(error, InputError)
    assert error.exit_code == ExitCode.INVALID_INPUT
    assert error.message == (
        f"runbook {path} has 2 problems:\n"
        f"  {path}:9: replication.tls: found 'maybe', expected true or false\n"
        f"  {path}:10: replication.user: found '', expected a MySQL user name"
        " of 1 to 32 characters"
    )
    assert (
        error.hint == "fix the runbook and run the command again; nothing was changed"
    )


def test_misspelled_key_suggests_the_known_key(tmp_path: Path) -> None:
    """An unknown key close to a known one names the key it probably means."""
    problem = only_problem(tmp_path, MINIMAL + "  binlog_fromat: ROW\n")

    assert (problem.line, problem.field) == (9, "replication.binlog_fromat")
    assert problem.found == "unknown key 'binlog_fromat'"
    assert problem.expected == "a known key (did you mean 'binlog_format'?)"


def test_unknown_key_without_a_close_match_lists_the_known_keys(
    tmp_path: Path,
) -> None:
    """An unknown key that resembles nothing lists the keys of its section."""
    text = MINIMAL + "connect: {db: {host: h, port: 1, weight: 3}}\n"

    problem = only_problem(tmp_path, text)

    assert (problem.line, problem.field) == (9, "connect.db.weight")
    assert problem.expected == "a known key: host, port"


def test_missing_required_key_points_at_its_section(tmp_path: Path) -> None:
    """A missing required key is reported on the line of the mapping it belongs in."""
    text = MINIMAL.replace("  cluster: shop-clone\n", "  tags: {}\n")

    problem = only_problem(tmp_path, text)

    assert (problem.line, problem.field) == (5, "clone.cluster")
    assert (problem.found, problem.expected) == ("nothing", "this required key")


def test_key_written_twice_is_a_problem(tmp_path: Path) -> None:
    """A key repeated in one mapping is reported at its second occurrence."""
    problem = only_problem(tmp_path, MINIMAL + "name: shop2\n")

    assert (problem.line, problem.field) == (9, "name")
    assert problem.found == "key 'name' a second time"


def test_malformed_yaml_is_one_problem_at_the_parser_line(tmp_path: Path) -> None:
    """A YAML syntax error gives a single problem at the line the parser names."""
    problem = only_problem(tmp_path, "name: shop\nsource:\n  cluster: [a, b\n")

    assert (problem.line, problem.field) == (4, "(syntax)")
    assert problem.expected == "valid YAML"


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    """A runbook file that does not exist is reported with its path."""
    path = tmp_path / "absent.yaml"

    with pytest.raises(RunbookError) as caught:
        load_runbook(path)

    assert str(path) in caught.value.message
    assert caught.value.problems == [
        Problem(
            str(path),
            None,
            "(file)",
            "no such file or directory",
            "a readable YAML runbook file",
        )
    ]


def test_file_that_is_not_utf8_is_a_problem(tmp_path: Path) -> None:
    """A runbook that is not UTF-8 text is refused before parsing."""
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"name: caf\xe9\n")

    problems = problems_in(path)

    assert [p.found for p in problems] == ["bytes that are not UTF-8 text"]


@pytest.mark.parametrize(
    ("text", "line", "found"),
    [
        ("- name: shop\n", 1, "a list"),
        ("just a string\n", 1, "'just a string'"),
        ("# nothing but a comment\n", None, "an empty file"),
    ],
)
def test_top_level_must_be_a_mapping(
    tmp_path: Path, text: str, line: int | None, found: str
) -> None:
    """A runbook whose top level is not a mapping is one problem."""
    problem = only_problem(tmp_path, text)

    assert (problem.line, problem.field, problem.found) == (line, "(top level)", found)


# --- names and identifiers ---------------------------------------------------


@pytest.mark.parametrize(
    "cluster", ["1shop", "shop-", "shop--clone", "shop_clone", "a" * 64]
)
def test_cluster_identifier_rules(tmp_path: Path, cluster: str) -> None:
    """Cluster ids start with a letter, have no trailing or double hyphen, <= 63."""
    text = MINIMAL.replace("shop-clone", cluster)

    problem = only_problem(tmp_path, text)

    assert (problem.line, problem.field) == (6, "clone.cluster")
    assert problem.expected.startswith("a DB cluster identifier")


def test_longest_cluster_identifier_is_accepted(tmp_path: Path) -> None:
    """A 63-character cluster id is within the AWS limit."""
    runbook = load_runbook(write(tmp_path, MINIMAL.replace("shop-clone", "a" * 63)))

    assert runbook.clone.cluster == "a" * 63


def test_clone_must_differ_from_source(tmp_path: Path) -> None:
    """The clone cannot use the source's cluster identifier."""
    problem = only_problem(tmp_path, MINIMAL.replace("shop-clone", "shop-source"))

    assert (problem.line, problem.field) == (6, "clone.cluster")
    assert problem.expected == "an identifier different from source.cluster"


def test_runbook_name_must_be_usable_as_a_file_name(tmp_path: Path) -> None:
    """The name becomes the journal's file name, so path characters are refused."""
    problem = only_problem(tmp_path, MINIMAL.replace("name: shop", "name: ../shop"))

    assert (problem.line, problem.field, problem.found) == (1, "name", "'../shop'")


def test_instance_class_must_start_with_db(tmp_path: Path) -> None:
    """An instance class without the db. prefix is refused."""
    text = MINIMAL.replace(
        "  cluster: shop-clone\n",
        "  cluster: shop-clone\n  instance_class: r6g.large\n",
    )

    problem = only_problem(tmp_path, text)

    assert (problem.line, problem.field) == (7, "clone.instance_class")
    assert problem.expected == "an instance class such as db.r6g.large"


def test_replication_user_longer_than_32_characters_is_refused(
    tmp_path: Path,
) -> None:
    """MySQL user names hold at most 32 characters."""
    problem = only_problem(tmp_path, MINIMAL + f"  user: {'u' * 33}\n")

    assert (problem.line, problem.field) == (9, "replication.user")


# --- replication -------------------------------------------------------------


def test_statement_binlog_format_is_refused_with_a_reason(tmp_path: Path) -> None:
    """STATEMENT is refused and the problem says why it is unsafe for a clone."""
    problem = only_problem(tmp_path, MINIMAL + "  binlog_format: STATEMENT\n")

    assert (problem.line, problem.field) == (9, "replication.binlog_format")
    assert problem.found == "'STATEMENT'"
    assert problem.expected.startswith(
        "MIXED or ROW (STATEMENT cannot replicate safely to a clone: "
    )


def test_unknown_binlog_format_lists_the_choices(tmp_path: Path) -> None:
    """Any other unknown format lists the accepted values."""
    problem = only_problem(tmp_path, MINIMAL + "  binlog_format: row\n")

    assert str(problem).endswith(
        "runbook.yaml:9: replication.binlog_format: found 'row',"
        " expected one of MIXED, ROW"
    )


@pytest.mark.parametrize("hours", [0, 2161])
def test_binlog_retention_outside_aurora_limits_is_refused(
    tmp_path: Path, hours: int
) -> None:
    """Retention must be 1 to 2160 hours; the problem explains Aurora's limit."""
    problem = only_problem(tmp_path, MINIMAL + f"  binlog_retention_hours: {hours}\n")

    assert (problem.line, problem.found) == (9, str(hours))
    assert problem.expected.startswith("an integer from 1 to 2160 hours (Aurora MySQL")


# --- password sources --------------------------------------------------------


def test_plain_string_password_is_refused_without_echoing_it(tmp_path: Path) -> None:
    """A password written into the runbook is refused and never repeated."""
    text = MINIMAL.replace("{env: REPL_PW}", "hunter2-hunter2")

    with pytest.raises(RunbookError) as caught:
        load_runbook(write(tmp_path, text))

    problem = caught.value.problems[0]
    assert (problem.line, problem.field) == (8, "replication.password")
    assert problem.found == "a plain string (passwords are never written into runbooks)"
    assert problem.expected == "one of {env: NAME}, {file: PATH}, {secret: ID}"
    assert "hunter2" not in str(caught.value)


def test_credentials_written_as_a_string_are_not_echoed(tmp_path: Path) -> None:
    """A string where the admin mapping belongs is described, not repeated."""
    text = MINIMAL.replace(
        "{user: admin, password: {env: ADMIN_PW}}", "admin:hunter2-hunter2"
    )

    with pytest.raises(RunbookError) as caught:
        load_runbook(write(tmp_path, text))

    assert caught.value.problems[0].found == "a string"
    assert "hunter2" not in str(caught.value)


@pytest.mark.parametrize(
    ("source", "found"),
    [
        ("{env: A, file: b}", "keys 'env', 'file'"),
        ("{vault: x}", "unknown key 'vault'"),
        ("{}", "an empty mapping"),
        ("{env: ''}", "env: ''"),
    ],
)
def test_password_source_needs_exactly_one_known_key(
    tmp_path: Path, source: str, found: str
) -> None:
    """A password source is exactly one of env, file or secret, with a value."""
    problem = only_problem(tmp_path, MINIMAL.replace("{env: REPL_PW}", source))

    assert (problem.line, problem.field, problem.found) == (
        8,
        "replication.password",
        found,
    )


def test_relative_password_file_resolves_against_the_runbook(tmp_path: Path) -> None:
    """A relative {file: PATH} is taken from the runbook's directory."""
    runbooks = tmp_path / "runbooks"
    runbooks.mkdir()
    text = MINIMAL.replace("{env: REPL_PW}", "{file: secrets/repl.txt}")

    runbook = load_runbook(write(runbooks, text))

    assert runbook.replication.password.kind == "file"
    assert runbook.replication.password.file == runbooks / "secrets/repl.txt"


def test_absolute_password_file_is_kept(tmp_path: Path) -> None:
    """An absolute {file: PATH} is used as written."""
    text = MINIMAL.replace("{env: REPL_PW}", "{file: /run/secrets/repl}")

    runbook = load_runbook(write(tmp_path, text))

    assert runbook.replication.password.file == Path("/run/secrets/repl")


def test_secret_password_source_keeps_its_id(tmp_path: Path) -> None:
    """A {secret: ID} source keeps the id and prints as written."""
    text = MINIMAL.replace("{env: REPL_PW}", "{secret: prod/repl}")

    password = load_runbook(write(tmp_path, text)).replication.password

    assert (password.kind, password.reference) == ("secret", "prod/repl")
    assert str(password) == "{secret: prod/repl}"


# --- durations ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90s", 90.0),
        ("15m", 900.0),
        ("2h", 7200.0),
        ("1d", 86400.0),
        ("1h30m", 5400.0),
        ("500ms", 0.5),
        ("1m30s", 90.0),
        ("0s", 0.0),
    ],
)
def test_parse_duration(text: str, seconds: float) -> None:
    """Durations are unit-suffixed, alone or compound, largest unit first."""
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["90", "", "2x", "1.5h", "30m1h", "-5s", "h"])
def test_parse_duration_refuses_other_forms(text: str) -> None:
    """Bare numbers, unknown units and out-of-order units are refused."""
    with pytest.raises(ValueError, match="a duration such as 90s, 15m or 2h"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(5400, "1h30m"), (2, "2s"), (0.5, "500ms"), (0, "0s"), (86400, "1d")],
)
def test_format_duration(seconds: float, text: str) -> None:
    """Seconds are written as the shortest compound duration."""
    assert format_duration(seconds) == text


def test_bare_number_duration_is_refused(tmp_path: Path) -> None:
    """A duration written as a bare number is a problem on its field."""
    problem = only_problem(tmp_path, MINIMAL + "timeouts: {reboot: 900}\n")

    assert (problem.line, problem.field, problem.found) == (9, "timeouts.reboot", "900")
    assert problem.expected == "a duration such as 90s, 15m or 2h"


def test_zero_poll_interval_is_refused(tmp_path: Path) -> None:
    """The catch-up poll interval must be longer than zero."""
    problem = only_problem(tmp_path, MINIMAL + "catch_up: {poll_interval: 0s}\n")

    assert (problem.line, problem.field) == (9, "catch_up.poll_interval")


def test_verify_window_may_be_null(tmp_path: Path) -> None:
    """require_verify_within: null turns the verify guardrail off."""
    text = MINIMAL + "cutover: {require_verify_within: null}\n"

    runbook = load_runbook(write(tmp_path, text))

    assert runbook.cutover.require_verify_within is None


# --- maintenance window ------------------------------------------------------


def test_maintenance_window_is_parsed_from_its_string(tmp_path: Path) -> None:
    """The window string becomes a MaintenanceWindow that prints as written."""
    text = MINIMAL + 'maintenance_window: "sun:02:00-sun:04:00"\n'

    window = load_runbook(write(tmp_path, text)).maintenance_window

    assert window == MaintenanceWindow(start=8760, end=8880, text="sun:02:00-sun:04:00")
    assert str(window) == "sun:02:00-sun:04:00"


@pytest.mark.parametrize(
    "window", ["sun:25:00-sun:04:00", "sunday:02:00-sun:04:00", "sun:02:00", "x"]
)
def test_bad_maintenance_window_is_a_problem(tmp_path: Path, window: str) -> None:
    """A window not in ddd:hh:mm-ddd:hh:mm form is a problem naming the field."""
    problem = only_problem(tmp_path, MINIMAL + f'maintenance_window: "{window}"\n')

    assert (problem.line, problem.field) == (9, "maintenance_window")
    assert problem.found == repr(window)


def test_window_start_equal_to_end_is_refused() -> None:
    """A window that starts where it ends is empty and refused."""
    with pytest.raises(ValueError, match="empty window"):
        MaintenanceWindow.parse("mon:01:00-mon:01:00")


# 2024-01-07 was a Sunday.
@pytest.mark.parametrize(
    ("when", "inside"),
    [
        (datetime(2024, 1, 7, 22, 59, tzinfo=UTC), False),
        (datetime(2024, 1, 7, 23, 0, tzinfo=UTC), True),
        (datetime(2024, 1, 8, 0, 59, 59, tzinfo=UTC), True),
        (datetime(2024, 1, 8, 1, 0, tzinfo=UTC), False),
        (datetime(2024, 1, 8, 0, 30), True),
        (datetime(2024, 1, 8, 2, 30, tzinfo=timezone(timedelta(hours=2))), True),
    ],
)
def test_window_that_wraps_the_week_contains(when: datetime, inside: bool) -> None:
    """A Sunday-to-Monday window wraps the week; naive times are read as UTC."""
    window = MaintenanceWindow.parse("sun:23:00-mon:01:00")

    assert window.contains(when) is inside


@pytest.mark.parametrize(
    ("after", "start"),
    [
        (
            datetime(2024, 1, 3, 12, 0, tzinfo=UTC),
            datetime(2024, 1, 7, 2, 0, tzinfo=UTC),
        ),
        (
            datetime(2024, 1, 7, 2, 0, tzinfo=UTC),
            datetime(2024, 1, 7, 2, 0, tzinfo=UTC),
        ),
        (
            datetime(2024, 1, 7, 2, 1, tzinfo=UTC),
            datetime(2024, 1, 14, 2, 0, tzinfo=UTC),
        ),
    ],
)
def test_window_next_start(after: datetime, start: datetime) -> None:
    """next_start is the first start at or after the given time."""
    window = MaintenanceWindow.parse("sun:02:00-sun:04:00")

    assert window.next_start(after) == start


# --- skip policy -------------------------------------------------------------


def test_unnamed_skip_rules_are_numbered_by_position(tmp_path: Path) -> None:
    """Rules without a name are called #1, #2... after their place in the list."""
    text = MINIMAL + textwrap.dedent("""\
        catch_up:
          skip_policy:
            - {errors: [1062], action: skip}
            - {name: late-orders, errors: [1032], action: halt}
            - {errors: [1236], action: next_log}
        """)

    rules = load_runbook(write(tmp_path, text)).catch_up.skip_policy

    assert [rule.name for rule in rules] == ["#1", "late-orders", "#3"]


def test_design_skip_rule_example_loads(tmp_path: Path) -> None:
    """The skip rule example of DESIGN.md loads with all its fields."""
    text = MINIMAL + textwrap.dedent("""\
        catch_up:
          skip_policy:
            - name: late-orders
              errors: [1062, 1032]
              tables: ["shop.order_*"]
              action: skip
              max_skips: 100
              max_per_minute: 60
        """)

    rule = load_runbook(write(tmp_path, text)).catch_up.skip_policy[0]

    assert rule == SkipRule(
        name="late-orders",
        errors=[1062, 1032],
        tables=["shop.order_*"],
        action="skip",
        max_skips=100,
        max_per_minute=60,
    )


def test_next_log_rule_must_list_only_error_1236(tmp_path: Path) -> None:
    """next_log only recovers from an unreadable binlog, so only 1236 may use it."""
    text = MINIMAL + textwrap.dedent("""\
        catch_up:
          skip_policy:
            - errors: [1236, 1062]
              action: next_log
        """)

    problem = only_problem(tmp_path, text)

    assert (problem.line, problem.field) == (11, "catch_up.skip_policy[0].errors")
    assert problem.found == "[1236, 1062]"


@pytest.mark.parametrize(
    ("rule", "field", "expected"),
    [
        ("{errors: [], action: skip}", "errors", "a non-empty list"),
        ("{errors: [0], action: skip}", "errors[0]", "an integer of at least 1"),
        ("{errors: [1062], action: drop}", "action", "one of skip, halt, next_log"),
        (
            "{errors: [1062], tables: [orders], action: skip}",
            "tables[0]",
            "a 'schema.table' glob with exactly one dot",
        ),
        (
            "{errors: [1062], action: skip, max_skips: 0}",
            "max_skips",
            "an integer of at least 1",
        ),
    ],
)
def test_skip_rule_field_problems(
    tmp_path: Path, rule: str, field: str, expected: str
) -> None:
    """Each malformed skip rule field is a problem on that field of that rule."""
    text = MINIMAL + f"catch_up:\n  skip_policy:\n    - {rule}\n"

    problem = only_problem(tmp_path, text)

    assert (problem.line, problem.field) == (11, f"catch_up.skip_policy[0].{field}")
    assert problem.expected == expected


@pytest.mark.parametrize(
    ("tables", "schema", "table", "matches"),
    [
        (None, None, None, True),
        (["shop.order_*"], "shop", "order_items", True),
        (["shop.order_*"], "shop", "orders", False),
        (["shop.order_*"], "Shop", "order_items", False),
        (["shop.order_*"], None, None, False),
        (["*.audit", "shop.x"], "billing", "audit", True),
    ],
)
def test_skip_rule_matches_table(
    tables: list[str] | None, schema: str | None, table: str | None, matches: bool
) -> None:
    """Tables are case-sensitive schema.table globs; unknown tables match no list."""
    rule = SkipRule(errors=[1062], tables=tables, action="skip")

    assert rule.matches_table(schema, table) is matches


# --- cutover -----------------------------------------------------------------


def test_hook_freeze_needs_a_hook(tmp_path: Path) -> None:
    """freeze: hook without a hook command is a problem on cutover.hook."""
    problem = only_problem(tmp_path, MINIMAL + "cutover:\n  freeze: hook\n")

    assert (problem.line, problem.field) == (9, "cutover.hook")
    assert problem.expected == "a command to run, because freeze is hook"


def test_route53_switch_needs_a_record(tmp_path: Path) -> None:
    """switch: route53 without route53 settings is a problem on cutover.route53."""
    text = MINIMAL + "cutover:\n  switch: route53\n  route53: null\n"

    problem = only_problem(tmp_path, text)

    assert (problem.line, problem.field) == (11, "cutover.route53")


def test_route53_switch_with_a_record_loads(tmp_path: Path) -> None:
    """switch: route53 with a zone and record loads."""
    text = (
        MINIMAL
        + "cutover:\n  switch: route53\n  route53: {zone_id: Z1, record: db.x}\n"
    )

    route53 = load_runbook(write(tmp_path, text)).cutover.route53

    assert route53 is not None
    assert (route53.zone_id, route53.record) == ("Z1", "db.x")


def test_endpoint_port_out_of_range_is_refused(tmp_path: Path) -> None:
    """Ports run from 1 to 65535."""
    text = MINIMAL + "connect: {shop-clone: {host: h, port: 70000}}\n"

    problem = only_problem(tmp_path, text)

    assert (problem.line, problem.field, problem.found) == (
        9,
        "connect.shop-clone.port",
        "70000",
    )
    assert problem.expected == "an integer from 1 to 65535"
