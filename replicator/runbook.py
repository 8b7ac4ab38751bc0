"""Load and validate a runbook before anything touches AWS.

A runbook is a YAML file kept in version control. Loading it reports every
problem at once, each with its file, line and field, so the operator can fix
the whole file in one pass. The models are frozen: a loaded runbook is the
plan of record for the run.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from fnmatch import fnmatchcase
from pathlib import Path
from types import NoneType, UnionType
from typing import (
    Annotated,
    Any,
    Literal,
    TypeGuard,
    Union,
    get_args,
    get_origin,
)

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_serializer,
    model_validator,
)
from pydantic_core import ErrorDetails, PydanticCustomError

from replicator.errors import InputError

Loc = tuple[str | int, ...]

# MySQL error the replica reports when it cannot read the source's binary log
# (ER_MASTER_FATAL_ERROR_READING_BINLOG, ER_SOURCE_... since 8.0.24).
ER_SOURCE_FATAL_ERROR_READING_BINLOG = 1236

# Aurora MySQL keeps binary logs for at most 90 days.
MAX_BINLOG_RETENTION_HOURS = 2160
MAX_CLUSTER_ID_LENGTH = 63
MAX_PARAMETER_GROUP_NAME_LENGTH = 255
MAX_MYSQL_USER_LENGTH = 32

DURATION_EXPECTED = "a duration such as 90s, 15m or 2h"
WINDOW_EXPECTED = "a weekly UTC window such as 'sun:02:00-sun:04:00'"
SOURCE_FORMS_EXPECTED = "one of {env: NAME}, {file: PATH}, {secret: ID}"
PLAIN_STRING_FOUND = "a plain string (passwords are never written into runbooks)"
STATEMENT_EXPECTED = (
    "MIXED or ROW (STATEMENT cannot replicate safely to a clone: statements"
    " such as UUID(), NOW() or LIMIT without ORDER BY can write different rows"
    " on the replica)"
)
RETENTION_EXPECTED = (
    f"an integer from 1 to {MAX_BINLOG_RETENTION_HOURS} hours (Aurora MySQL"
    f" keeps binary logs for at most {MAX_BINLOG_RETENTION_HOURS} hours, and"
    " without retention it purges them before the clone can read them)"
)
NEXT_LOG_EXPECTED = (
    f"only error {ER_SOURCE_FATAL_ERROR_READING_BINLOG} for a next_log rule"
    " (moving to the next binary log only recovers from a log the replica"
    " cannot read)"
)
RERUN_HINT = "fix the runbook and run the command again; nothing was changed"


# --- problems ---------------------------------------------------------------


@dataclass(frozen=True)
class Problem:
    """One mistake in a runbook: where it is, what was found, what is expected."""

    file: str
    line: int | None
    field: str
    found: str
    expected: str

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        return f"{where}: {self.field}: found {self.found}, expected {self.expected}"


class RunbookError(InputError):
    """The runbook has problems; every one of them is listed."""

    def __init__(self, file: str, problems: list[Problem]) -> None:
        count = len(problems)
        noun = "problem" if count == 1 else "problems"
        lines = [f"runbook {file} has {count} {noun}:"]
        lines += [f"  {problem}" for problem in problems]
        super().__init__("\n".join(lines), hint=RERUN_HINT)
        self.problems = problems


def _describe(value: object) -> str:
    """Render a found value the way it would be written in YAML."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "a mapping" if value else "an empty mapping"
    if isinstance(value, list):
        return "a list" if value else "an empty list"
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _value_error(
    found: object, expected: str, *, key: str | None = None, described: bool = False
) -> PydanticCustomError:
    """Build a validation error that load_runbook turns into one Problem.

    ``key`` names a field below the one being validated, for checks that span
    several fields of a model.
    """
    context: dict[str, Any] = {
        "found": found if described else _describe(found),
        "expected": expected,
    }
    if key is not None:
        context["key"] = key
    return PydanticCustomError("runbook_value", "{expected}", context)


# --- durations --------------------------------------------------------------

_DURATION = re.compile(
    r"(?:(?P<d>\d+)d)?(?:(?P<h>\d+)h)?(?:(?P<m>\d+)m(?!s))?"
    r"(?:(?P<s>\d+)s)?(?:(?P<ms>\d+)ms)?"
)
_UNIT_MILLISECONDS = {
    "d": 86_400_000,
    "h": 3_600_000,
    "m": 60_000,
    "s": 1_000,
    "ms": 1,
}


def parse_duration(text: str) -> float:
    """Return the seconds in a duration such as ``90s``, ``1h30m`` or ``500ms``."""
    match = _DURATION.fullmatch(text.strip())
    if match is None or not any(match.groupdict().values()):
        raise ValueError(f"{text!r} is not {DURATION_EXPECTED}")
    parts = match.groupdict().items()
    millis = sum(
        int(count) * _UNIT_MILLISECONDS[unit] for unit, count in parts if count
    )
    return millis / 1000


def format_duration(seconds: float) -> str:
    """Write seconds as the shortest duration string, e.g. 5400 -> ``1h30m``."""
    if seconds < 0:
        raise ValueError(f"a duration cannot be negative: {seconds}")
    millis = round(seconds * 1000)
    parts = []
    for unit, size in _UNIT_MILLISECONDS.items():
        count, millis = divmod(millis, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"


def _duration_field(value: object) -> float:
    if isinstance(value, str):
        with suppress(ValueError):
            return parse_duration(value)
    raise _value_error(value, DURATION_EXPECTED)


def _positive_duration_field(value: object) -> float:
    seconds = _duration_field(value)
    if seconds <= 0:
        raise _value_error(value, "a duration longer than zero, such as 2s")
    return seconds


Duration = Annotated[
    float, PlainValidator(_duration_field), PlainSerializer(format_duration)
]
PositiveDuration = Annotated[
    float, PlainValidator(_positive_duration_field), PlainSerializer(format_duration)
]


# --- maintenance window -----------------------------------------------------

_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_WINDOW = re.compile(r"([a-z]{3}):(\d\d):(\d\d)-([a-z]{3}):(\d\d):(\d\d)")
_MINUTES_PER_DAY = 24 * 60


def _as_utc(when: datetime) -> datetime:
    """Read a naive datetime as UTC; convert an aware one to UTC."""
    if when.tzinfo is None:
        return when.replace(tzinfo=UTC)
    return when.astimezone(UTC)


def _week_minute(day: str, hour: str, minute: str) -> int:
    if day not in _DAYS or int(hour) > 23 or int(minute) > 59:
        raise ValueError(f"{day}:{hour}:{minute} is not a day and time")
    return _DAYS.index(day) * _MINUTES_PER_DAY + int(hour) * 60 + int(minute)


@dataclass(frozen=True)
class MaintenanceWindow:
    """A weekly window in UTC, ``ddd:hh:mm-ddd:hh:mm``; it may wrap the week.

    ``start`` and ``end`` count minutes from Monday 00:00 UTC; the end is
    excluded.
    """

    start: int
    end: int
    text: str

    @classmethod
    def parse(cls, text: str) -> MaintenanceWindow:
        """Read the window form AWS uses, e.g. ``sun:02:00-sun:04:00``."""
        match = _WINDOW.fullmatch(text.strip().lower())
        if match is None:
            raise ValueError(f"{text!r} is not {WINDOW_EXPECTED}")
        start = _week_minute(*match.group(1, 2, 3))
        end = _week_minute(*match.group(4, 5, 6))
        if start == end:
            raise ValueError(f"{text!r} is an empty window")
        return cls(start, end, text.strip())

    def contains(self, when: datetime) -> bool:
        """Tell whether ``when`` (naive means UTC) falls inside the window."""
        moment = _as_utc(when)
        minute = (
            moment.weekday() * _MINUTES_PER_DAY
            + moment.hour * 60
            + moment.minute
            + (moment.second + moment.microsecond / 1e6) / 60
        )
        if self.start < self.end:
            return self.start <= minute < self.end
        return minute >= self.start or minute < self.end

    def next_start(self, after: datetime) -> datetime:
        """Return the first start of the window at or after ``after``, in UTC."""
        moment = _as_utc(after)
        monday = moment - timedelta(days=moment.weekday())
        week = monday.replace(hour=0, minute=0, second=0, microsecond=0)
        start = week + timedelta(minutes=self.start)
        return start if start >= moment else start + timedelta(days=7)

    def __str__(self) -> str:
        return self.text


def _window_field(value: object) -> MaintenanceWindow | None:
    if value is None or isinstance(value, MaintenanceWindow):
        return value
    if isinstance(value, str):
        with suppress(ValueError):
            return MaintenanceWindow.parse(value)
    raise _value_error(value, WINDOW_EXPECTED)


def _window_text(window: MaintenanceWindow | None) -> str | None:
    return None if window is None else str(window)


Window = Annotated[
    MaintenanceWindow | None,
    PlainValidator(_window_field),
    PlainSerializer(_window_text),
]


# --- scalar checks ----------------------------------------------------------


def _pattern(regex: str, expected: str, max_length: int) -> AfterValidator:
    compiled = re.compile(regex)

    def check(value: str) -> str:
        if len(value) > max_length or not compiled.fullmatch(value):
            raise _value_error(value, expected)
        return value

    return AfterValidator(check)


def _int_range(low: int, high: int | None = None) -> AfterValidator:
    if high is None:
        expected = f"an integer of at least {low}"
    else:
        expected = f"an integer from {low} to {high}"

    def check(value: int) -> int:
        if value < low or (high is not None and value > high):
            raise _value_error(value, expected)
        return value

    return AfterValidator(check)


_AWS_NAME = r"[A-Za-z](?:-?[A-Za-z0-9])*"
ClusterId = Annotated[
    str,
    _pattern(
        _AWS_NAME,
        "a DB cluster identifier: 1 to 63 letters, digits or hyphens, starting"
        " with a letter, without a trailing or double hyphen",
        MAX_CLUSTER_ID_LENGTH,
    ),
]
ParameterGroupName = Annotated[
    str,
    _pattern(
        _AWS_NAME,
        "a parameter group name: letters, digits or hyphens, starting with a"
        " letter, without a trailing or double hyphen",
        MAX_PARAMETER_GROUP_NAME_LENGTH,
    ),
]
RunbookName = Annotated[
    str,
    _pattern(
        r"[A-Za-z0-9][A-Za-z0-9_.-]*",
        "a name of letters, digits, '_', '.' or '-' starting with a letter or"
        " digit (it names the journal file)",
        255,
    ),
]
Region = Annotated[
    str, _pattern(r"[a-z]{2}(?:-[a-z]+)+-\d+", "an AWS region such as us-east-1", 32)
]
InstanceClass = Annotated[
    str, _pattern(r"db\.\S+", "an instance class such as db.r6g.large", 64)
]
MySQLUserName = Annotated[
    str,
    _pattern(r".+", "a MySQL user name of 1 to 32 characters", MAX_MYSQL_USER_LENGTH),
]
TableGlob = Annotated[
    str,
    _pattern(r"[^.]+\.[^.]+", "a 'schema.table' glob with exactly one dot", 255),
]
Port = Annotated[int, _int_range(1, 65535)]
AtLeastOne = Annotated[int, _int_range(1)]


# --- models -----------------------------------------------------------------


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


def _password_found(data: object) -> str | None:
    """Describe what is wrong with a password source, or None when it is fine."""
    if not isinstance(data, dict):
        return "a list" if isinstance(data, list) else PLAIN_STRING_FOUND
    if not data:
        return "an empty mapping"
    unknown = [key for key in data if key not in ("env", "file", "secret")]
    if unknown:
        return f"unknown key {unknown[0]!r}"
    if len(data) > 1:
        return "keys " + ", ".join(repr(key) for key in data)
    value = next(iter(data.values()))
    if not isinstance(value, str | Path) or not str(value).strip():
        return f"{next(iter(data))}: {_describe(value)}"
    return None


class PasswordSource(_Model):
    """Where a password comes from: exactly one of env, file or secret."""

    env: str | None = None
    file: Path | None = None
    secret: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _exactly_one_source(cls, data: object, info: ValidationInfo) -> object:
        if isinstance(data, PasswordSource):
            return data
        found = _password_found(data)
        if found is not None or not isinstance(data, dict):
            raise _value_error(found, SOURCE_FORMS_EXPECTED, described=True)
        if "file" not in data:
            return data
        path = Path(data["file"]).expanduser()
        base = (info.context or {}).get("base_dir")
        if base is not None and not path.is_absolute():
            path = Path(base) / path
        return {"file": path}

    @property
    def kind(self) -> Literal["env", "file", "secret"]:
        """Which of the three sources this is."""
        if self.env is not None:
            return "env"
        return "file" if self.file is not None else "secret"

    @property
    def reference(self) -> str:
        """The variable name, file path or secret id (never the password)."""
        return str(self.env or self.file or self.secret)

    @model_serializer
    def _as_written(self) -> dict[str, str]:
        return {self.kind: self.reference}

    def __str__(self) -> str:
        return f"{{{self.kind}: {self.reference}}}"


class Credentials(_Model):
    """A MySQL user and where its password comes from."""

    user: MySQLUserName
    password: PasswordSource


class SourceSpec(_Model):
    """The cluster whose traffic moves to the clone."""

    cluster: ClusterId
    parameter_group: ParameterGroupName | None = None
    create_parameter_group: bool = False
    admin: Credentials


class CloneSpec(_Model):
    """The copy-on-write clone that replicates from the source."""

    cluster: ClusterId
    instance_class: InstanceClass = "db.r6g.large"
    parameter_group: ParameterGroupName | None = None
    engine_version: str | None = None
    tags: dict[str, str] = Field(default_factory=dict)


class ReplicationSpec(_Model):
    """How the clone replicates from the source."""

    user: MySQLUserName = "repl_user"
    password: PasswordSource
    binlog_format: Literal["MIXED", "ROW"] = "MIXED"
    binlog_retention_hours: int = 168
    tls: bool = False
    source_host: str | None = None

    @field_validator("binlog_format", mode="before")
    @classmethod
    def _refuse_statement(cls, value: object) -> object:
        if isinstance(value, str) and value.upper() == "STATEMENT":
            raise _value_error(value, STATEMENT_EXPECTED)
        return value

    @field_validator("binlog_retention_hours")
    @classmethod
    def _retention_within_aurora_limits(cls, hours: int) -> int:
        if not 1 <= hours <= MAX_BINLOG_RETENTION_HOURS:
            raise _value_error(hours, RETENTION_EXPECTED)
        return hours


class Timeouts(_Model):
    """Deadlines of the long waits, in seconds."""

    reboot: PositiveDuration = 15 * 60.0
    clone: PositiveDuration = 2 * 3600.0
    position_event: PositiveDuration = 30 * 60.0
    catch_up: PositiveDuration = 24 * 3600.0


class SkipRule(_Model):
    """One rule of the skip policy; the first rule that matches an error decides."""

    name: str = ""  # unnamed rules are called "#1", "#2", ... by position
    errors: list[AtLeastOne] = Field(min_length=1)
    tables: list[TableGlob] | None = None
    action: Literal["skip", "halt", "next_log"]
    max_skips: AtLeastOne | None = None
    max_per_minute: AtLeastOne | None = None

    @model_validator(mode="after")
    def _next_log_only_for_unreadable_log(self) -> SkipRule:
        if self.action == "next_log" and set(self.errors) != {
            ER_SOURCE_FATAL_ERROR_READING_BINLOG
        }:
            raise _value_error(
                str(self.errors), NEXT_LOG_EXPECTED, key="errors", described=True
            )
        return self

    def matches_table(self, schema: str | None, table: str | None) -> bool:
        """Tell whether the rule covers ``schema.table`` (globs, case-sensitive).

        A rule without tables covers every event; a rule with tables never
        covers an event whose table is unknown.
        """
        if self.tables is None:
            return True
        if schema is None or table is None:
            return False
        name = f"{schema}.{table}"
        return any(fnmatchcase(name, pattern) for pattern in self.tables)


class CatchUpSpec(_Model):
    """How catch-up polls the replica and which errors it may skip."""

    poll_interval: PositiveDuration = 2.0
    stable_polls: AtLeastOne = 3
    heartbeat: bool = False
    skip_policy: list[SkipRule] = Field(default_factory=list)

    @field_validator("skip_policy")
    @classmethod
    def _number_unnamed_rules(cls, rules: list[SkipRule]) -> list[SkipRule]:
        return [
            rule if rule.name else rule.model_copy(update={"name": f"#{number}"})
            for number, rule in enumerate(rules, start=1)
        ]


class Route53Spec(_Model):
    """The DNS record that cutover points at the clone."""

    zone_id: str
    record: str


class CutoverSpec(_Model):
    """How cutover freezes writes, switches traffic and can roll back."""

    freeze: Literal["lock_users", "parameter_group", "hook"] = "lock_users"
    app_users: list[str] = Field(default_factory=list)
    hook: str | None = Field(default=None, validate_default=True)
    switch: Literal["rename", "route53", "none"] = "rename"
    route53: Route53Spec | None = Field(default=None, validate_default=True)
    drain_timeout: Duration = 60.0
    require_verify_within: Duration | None = 3600.0
    rollback: Literal["none", "reverse_replication"] = "none"

    @field_validator("hook")
    @classmethod
    def _hook_when_freeze_is_hook(
        cls, hook: str | None, info: ValidationInfo
    ) -> str | None:
        if hook is None and info.data.get("freeze") == "hook":
            raise _value_error(
                "nothing", "a command to run, because freeze is hook", described=True
            )
        return hook

    @field_validator("route53")
    @classmethod
    def _record_when_switch_is_route53(
        cls, route53: Route53Spec | None, info: ValidationInfo
    ) -> Route53Spec | None:
        if route53 is None and info.data.get("switch") == "route53":
            raise _value_error(
                "nothing",
                "{zone_id: ..., record: ...}, because switch is route53",
                described=True,
            )
        return route53


class Endpoint(_Model):
    """Where to reach a cluster's writer when its AWS endpoint is not reachable."""

    host: str
    port: Port


class Runbook(_Model):
    """A whole runbook; field names are the YAML keys."""

    name: RunbookName
    region: Region = "us-east-1"
    source: SourceSpec
    clone: CloneSpec
    replication: ReplicationSpec
    timeouts: Timeouts = Field(default_factory=Timeouts)
    maintenance_window: Window = None
    catch_up: CatchUpSpec = Field(default_factory=CatchUpSpec)
    cutover: CutoverSpec = Field(default_factory=CutoverSpec)
    connect: dict[str, Endpoint] = Field(default_factory=dict)

    _path: Path = PrivateAttr(default_factory=Path)

    @field_validator("clone")
    @classmethod
    def _clone_differs_from_source(
        cls, clone: CloneSpec, info: ValidationInfo
    ) -> CloneSpec:
        source = info.data.get("source")
        if isinstance(source, SourceSpec) and source.cluster == clone.cluster:
            raise _value_error(
                clone.cluster,
                "an identifier different from source.cluster",
                key="cluster",
            )
        return clone

    @property
    def path(self) -> Path:
        """The file the runbook was loaded from (``.`` when built in code)."""
        return self._path

    def default_state_path(self) -> Path:
        """The journal's path when no ``--state`` is given, relative to the cwd."""
        return Path(".replicator") / f"{self.name}.db"


# --- loading ----------------------------------------------------------------


def load_runbook(path: Path) -> Runbook:
    """Read and validate a runbook; raise RunbookError listing every problem."""
    file = str(path)
    root, data = _parse(file, _read_text(path))
    if root is None or not isinstance(data, dict):
        raise RunbookError(file, [_top_level_problem(file, root, data)])

    lines, problems = _index_lines(file, root)
    try:
        runbook = Runbook.model_validate(data, context={"base_dir": path.parent})
    except ValidationError as exc:
        problems += [_problem_from_error(file, e, lines) for e in exc.errors()]
    if problems:
        problems.sort(key=lambda p: (p.line is None, p.line or 0))
        raise RunbookError(file, problems)

    runbook._path = path
    return runbook


def _read_text(path: Path) -> str:
    file = str(path)
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        found = "bytes that are not UTF-8 text"
    except OSError as exc:
        found = (exc.strerror or type(exc).__name__).lower()
    problem = Problem(file, None, "(file)", found, "a readable YAML runbook file")
    raise RunbookError(file, [problem])


def _parse(file: str, text: str) -> tuple[yaml.Node | None, object]:
    """Parse once into the node tree (for line numbers) and the plain data."""
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
        data = None if root is None else loader.construct_document(root)
    except yaml.YAMLError as exc:
        raise RunbookError(file, [_syntax_problem(file, exc)]) from None
    finally:
        loader.dispose()
    return root, data


def _syntax_problem(file: str, exc: yaml.YAMLError) -> Problem:
    mark = getattr(exc, "problem_mark", None)
    line = None if mark is None else mark.line + 1
    found = getattr(exc, "problem", None) or str(exc)
    return Problem(file, line, "(syntax)", found, "valid YAML")


def _top_level_problem(file: str, root: yaml.Node | None, data: object) -> Problem:
    expected = "a mapping with name, source, clone and replication"
    if root is None:
        return Problem(file, None, "(top level)", "an empty file", expected)
    line = root.start_mark.line + 1
    return Problem(file, line, "(top level)", _describe(data), expected)


# --- line numbers -----------------------------------------------------------

_MAX_DEPTH = 32  # deeper than any runbook; stops recursive YAML aliases


def _index_lines(file: str, root: yaml.Node) -> tuple[dict[Loc, int], list[Problem]]:
    """Map each key path to its line; report keys written twice in a mapping."""
    lines: dict[Loc, int] = {(): root.start_mark.line + 1}
    duplicates: list[Problem] = []
    _walk(root, (), lines, lambda loc, line: duplicates.append(_twice(file, loc, line)))
    return lines, duplicates


def _walk(
    node: yaml.Node,
    loc: Loc,
    lines: dict[Loc, int],
    on_duplicate: Callable[[Loc, int], None],
) -> None:
    if len(loc) > _MAX_DEPTH:
        return
    for child_loc, mark_node, child in _children(node, loc):
        line = mark_node.start_mark.line + 1
        if child_loc in lines and isinstance(node, yaml.MappingNode):
            on_duplicate(child_loc, line)
        lines.setdefault(child_loc, line)
        _walk(child, child_loc, lines, on_duplicate)


def _children(node: yaml.Node, loc: Loc) -> list[tuple[Loc, yaml.Node, yaml.Node]]:
    """The (path, node giving the line, value node) of each child of a node."""
    if isinstance(node, yaml.SequenceNode):
        return [((*loc, i), item, item) for i, item in enumerate(node.value)]
    if not isinstance(node, yaml.MappingNode):
        return []
    return [
        ((*loc, str(key.value)), key, value)
        for key, value in node.value
        if isinstance(key, yaml.ScalarNode) and key.value != "<<"
    ]


def _twice(file: str, loc: Loc, line: int) -> Problem:
    found = f"key {loc[-1]!r} a second time"
    return Problem(file, line, _field_name(loc), found, "each key once")


def _line_for(loc: Loc, lines: dict[Loc, int]) -> int | None:
    """The line of the key at ``loc``, else of its nearest written ancestor."""
    for end in range(len(loc), -1, -1):
        if loc[:end] in lines:
            return lines[loc[:end]]
    return None


def _field_name(loc: Loc) -> str:
    name = ""
    for part in loc:
        name += f"[{part}]" if isinstance(part, int) else f".{part}"
    return name.lstrip(".")


# --- pydantic errors to problems --------------------------------------------

_EXPECTED_BY_TYPE = {
    "string_type": "a string",
    "int_type": "an integer",
    "bool_type": "true or false",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "list_type": "a list",
    "too_short": "a non-empty list",
}


def _problem_from_error(
    file: str, error: ErrorDetails, lines: dict[Loc, int]
) -> Problem:
    loc: Loc = tuple(error["loc"])
    key = error.get("ctx", {}).get("key")
    if key is not None:
        loc = (*loc, key)
    explain = _EXPLAINERS.get(error["type"], _explain_by_type)
    found, expected = explain(error, loc)
    return Problem(file, _line_for(loc, lines), _field_name(loc), found, expected)


def _explain_custom(error: ErrorDetails, loc: Loc) -> tuple[str, str]:
    context = error.get("ctx", {})
    return str(context["found"]), str(context["expected"])


def _explain_unknown_key(error: ErrorDetails, loc: Loc) -> tuple[str, str]:
    known = list(_model_fields_at(loc[:-1]))
    guess = difflib.get_close_matches(str(loc[-1]), known, n=1)
    if guess:
        expected = f"a known key (did you mean {guess[0]!r}?)"
    else:
        expected = "a known key: " + ", ".join(known)
    return f"unknown key {loc[-1]!r}", expected


def _explain_missing(error: ErrorDetails, loc: Loc) -> tuple[str, str]:
    return "nothing", "this required key"


def _explain_literal(error: ErrorDetails, loc: Loc) -> tuple[str, str]:
    choices = re.findall(r"'([^']*)'", str(error.get("ctx", {}).get("expected")))
    return _describe(error["input"]), "one of " + ", ".join(choices)


def _explain_by_type(error: ErrorDetails, loc: Loc) -> tuple[str, str]:
    expected = _EXPECTED_BY_TYPE.get(error["type"], error["msg"])
    found = error["input"]
    if expected == "a mapping":
        # The value may be a password written in the wrong place: never echo it.
        return _kind_of(found), expected
    return _describe(found), expected


def _kind_of(value: object) -> str:
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool) or value is None:
        return _describe(value)
    return "a number" if isinstance(value, int | float) else _describe(value)


_EXPLAINERS: dict[str, Callable[[ErrorDetails, Loc], tuple[str, str]]] = {
    "runbook_value": _explain_custom,
    "extra_forbidden": _explain_unknown_key,
    "missing": _explain_missing,
    "literal_error": _explain_literal,
}


def _model_fields_at(loc: Loc) -> list[str]:
    """The keys the model at ``loc`` accepts, found by walking the annotations."""
    annotation: object = Runbook
    for part in loc:
        annotation = _unwrap(annotation)
        if _is_model(annotation) and isinstance(part, str):
            field = annotation.model_fields.get(part)
            annotation = None if field is None else field.annotation
        else:
            args = get_args(annotation)  # list[X] -> X, dict[str, X] -> X
            annotation = args[-1] if args else None
    annotation = _unwrap(annotation)
    return list(annotation.model_fields) if _is_model(annotation) else []


def _unwrap(annotation: object) -> object:
    """Strip Annotated metadata and ``| None`` from a type."""
    if get_origin(annotation) is Annotated:
        return _unwrap(get_args(annotation)[0])
    if get_origin(annotation) in (Union, UnionType):
        members = [arg for arg in get_args(annotation) if arg is not NoneType]
        return _unwrap(members[0]) if len(members) == 1 else annotation
    return annotation


def _is_model(annotation: object) -> TypeGuard[type[BaseModel]]:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)
