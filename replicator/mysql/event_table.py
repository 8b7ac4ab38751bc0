"""Which table a failed replication event touched, read from the error text.

The SQL thread's error names the table in several ways: row events name it
directly ("... event on table shop.customers; ..."); statement events carry
the statement and often ``Default database: ''``, so the table comes from
parsing the statement (with sqlglot, never with patterns); some messages name
it inside their own text (missing table, foreign key). With parallel appliers
(MySQL 8) the top-level text only says that the coordinator stopped: the real
error is in ``performance_schema.replication_applier_status_by_worker``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError

from replicator.mysql.status import to_int, to_text

SQL_DIALECT: Final = "mysql"
COORDINATOR_STOPPED: Final = (
    "Coordinator stopped because there were error(s) in the worker(s)"
)

# Patterns below read the server's own message templates, never SQL.
_ROW_EVENT: Final = re.compile(
    r"Could not execute \w+ event on table (?P<schema>[^.;]+)\.(?P<table>[^;]+);"
)
_DUPLICATE: Final = re.compile(
    r"Duplicate entry '(?P<value>.*?)' for key '(?P<key>[^']*)'"
)
_MISSING_TABLE: Final = re.compile(
    r"Table '(?P<schema>[^.']+)\.(?P<table>[^']+)' doesn't exist"
)
_CHILD_ROW: Final = re.compile(
    r"Cannot add or update a child row: a foreign key constraint fails "
    r"\(`(?P<schema>(?:[^`]|``)+)`\.`(?P<table>(?:[^`]|``)+)`"
)
# MariaDB's error log appends the GTID and the code after the statement.
_MARIADB_SUFFIX: Final = re.compile(
    r"(?:, Gtid \d+-\d+-\d+)?, Internal MariaDB error code: \d+\s*$"
)
_STATEMENT_EVENT: Final = " on query. Default database: '"
_QUERY: Final = "'. Query: '"
_QUOTE: Final = "'"

# MySQL statement modifiers that sqlglot does not parse; they never name a table.
_MODIFIERS: Final = frozenset(
    {"LOW_PRIORITY", "HIGH_PRIORITY", "DELAYED", "QUICK", "IGNORE"}
)
_DML_VERBS: Final = frozenset({"INSERT", "UPDATE", "DELETE"})
_REPLACE: Final = "REPLACE"
_INSERT: Final = "INSERT"
_NO_TABLE: Final = (None, None)


@dataclass(frozen=True)
class FailedEvent:
    """What an error text tells about the failed event; None where unknown."""

    schema: str | None
    table: str | None
    keys: str | None
    statement: str | None


def analyse_error(error_text: str) -> FailedEvent:
    """Return the schema, table, duplicate key and statement of a failed event."""
    text = error_text.strip()
    default_schema, statement = _statement_event(text)
    schema, table = _table(text, statement, default_schema)
    return FailedEvent(
        schema=schema,
        table=table,
        keys=_keys(text, table),
        statement=statement,
    )


def target_table(
    statement: str, default_schema: str | None = None
) -> tuple[str | None, str | None]:
    """Return (schema, table) a statement writes to, or (None, None).

    Handles INSERT, REPLACE, UPDATE, DELETE (the first target of multi-table
    forms, aliases resolved) and table DDL. An unqualified table takes
    ``default_schema``. Unparseable text gives (None, None).
    """
    tree = _parse(statement)
    table = _written_table(tree) if tree is not None else None
    if table is None or not table.name:
        return _NO_TABLE
    return (table.db or default_schema or None), table.name


def is_coordinator_error(error_text: str) -> bool:
    """Return whether the text is the parallel applier's coordinator summary."""
    return COORDINATOR_STOPPED in error_text


def worker_error(rows: Sequence[Mapping[str, Any]]) -> tuple[int, str] | None:
    """Return (errno, message) of the latest failed applier worker, or None.

    ``rows`` come from performance_schema.replication_applier_status_by_worker;
    the worker with a non-zero LAST_ERROR_NUMBER and the latest
    LAST_ERROR_TIMESTAMP wins.
    """
    workers = [_upper_keys(row) for row in rows]
    failed = [row for row in workers if to_int(row.get("LAST_ERROR_NUMBER"))]
    if not failed:
        return None
    latest = max(failed, key=lambda row: _timestamp(row.get("LAST_ERROR_TIMESTAMP")))
    errno = to_int(latest["LAST_ERROR_NUMBER"]) or 0
    return errno, to_text(latest.get("LAST_ERROR_MESSAGE")) or ""


def _statement_event(text: str) -> tuple[str | None, str | None]:
    """Return (default database, statement) quoted in a statement event's error."""
    event = text.find(_STATEMENT_EVENT)
    if event < 0:
        return None, None
    start = event + len(_STATEMENT_EVENT)
    query = text.find(_QUERY, start)
    if query < 0:
        return None, None

    statement = _MARIADB_SUFFIX.sub("", text[query + len(_QUERY) :])
    return text[start:query] or None, statement.removesuffix(_QUOTE) or None


def _table(
    text: str, statement: str | None, default_schema: str | None
) -> tuple[str | None, str | None]:
    """Return (schema, table) from the row event, the statement or the message."""
    row_event = _ROW_EVENT.search(text)
    if row_event:
        return row_event["schema"], row_event["table"]
    if statement is not None:
        found = target_table(statement, default_schema)
        if found != _NO_TABLE:
            return found

    for pattern in (_MISSING_TABLE, _CHILD_ROW):
        named = pattern.search(text)
        if named:
            return _unquote(named["schema"]), _unquote(named["table"])
    return _NO_TABLE


def _keys(text: str, table: str | None) -> str | None:
    """Return "key=value" of a duplicate-key error, the table prefix removed."""
    duplicate = _DUPLICATE.search(text)
    if duplicate is None:
        return None
    key = duplicate["key"]
    if table is not None:
        # MySQL 8.0.19+ names the key as "table.key".
        key = key.removeprefix(f"{table}.")
    return f"{key}={duplicate['value']}"


def _unquote(identifier: str) -> str:
    """Undo the doubling of backticks inside a quoted identifier."""
    return identifier.replace("``", "`")


def _parse(statement: str) -> exp.Expr | None:
    """Parse the first statement of the text, or return None."""
    try:
        trees = sqlglot.parse(_parseable(statement), read=SQL_DIALECT)
    except SqlglotError:
        return None
    return next((tree for tree in trees if tree is not None), None)


def _parseable(statement: str) -> str:
    """Rewrite REPLACE as INSERT and drop modifiers sqlglot does not parse.

    Works on tokens from sqlglot's tokenizer: REPLACE has INSERT's grammar,
    and LOW_PRIORITY, DELAYED, QUICK or IGNORE after the verb name no table.
    """
    tokens = sqlglot.tokenize(statement, read=SQL_DIALECT)
    if not tokens:
        return statement
    verb = tokens[0]
    if verb.text.upper() == _REPLACE:
        return _parseable(f"{_INSERT} {statement[verb.end + 1 :]}")
    if verb.text.upper() not in _DML_VERBS:
        return statement

    rest = next((t for t in tokens[1:] if t.text.upper() not in _MODIFIERS), None)
    if rest is None or rest is tokens[1]:
        return statement
    return f"{verb.text} {statement[rest.start :]}"


def _written_table(tree: exp.Expr) -> exp.Table | None:
    """Return the table node a parsed statement writes to."""
    if isinstance(tree, exp.Delete):
        return _delete_target(tree)
    if isinstance(tree, exp.Insert | exp.Update | exp.Alter | exp.Create):
        node = tree.this
    elif isinstance(tree, exp.Drop):
        node = _first(tree.args.get("tables"))
    elif isinstance(tree, exp.TruncateTable):
        node = _first(tree.expressions)
    else:
        return None

    if isinstance(node, exp.Schema):
        node = node.this
    elif isinstance(node, exp.Index):
        node = node.args.get("table")
    return node if isinstance(node, exp.Table) else None


def _delete_target(tree: exp.Delete) -> exp.Table | None:
    """Return the first table a DELETE removes rows from, aliases resolved."""
    target = _first(tree.args.get("tables")) or tree.this
    if not isinstance(target, exp.Table):
        return None
    if target.db:
        return target
    for source in _delete_sources(tree):
        if source.alias == target.name:
            return source
    return target


def _delete_sources(tree: exp.Delete) -> list[exp.Table]:
    """Return the tables of a DELETE's FROM and USING clauses, joins included."""
    roots = [tree.this, *(tree.args.get("using") or [])]
    tables = []
    for root in roots:
        if not isinstance(root, exp.Table):
            continue
        tables.append(root)
        for join in root.args.get("joins") or []:
            if isinstance(join.this, exp.Table):
                tables.append(join.this)
    return tables


def _first(nodes: Sequence[Any] | None) -> Any:
    """Return the first node of a list argument, or None."""
    return nodes[0] if nodes else None


def _upper_keys(row: Mapping[str, Any]) -> dict[str, Any]:
    """Return the row with upper-case column names."""
    return {str(name).upper(): value for name, value in row.items()}


def _timestamp(value: object) -> str:
    """Return a sortable text form of a LAST_ERROR_TIMESTAMP value."""
    if isinstance(value, datetime):
        return value.isoformat(sep=" ", timespec="microseconds")
    return to_text(value) or ""
