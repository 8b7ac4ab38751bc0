"""Compare source and clone table by table, in primary-key chunks.

Each table is walked along its primary key on the source. A chunk is a
bounded key range ``lower < key <= upper`` (the first chunk has no lower bound,
the last no upper bound, so rows the clone has outside the source's keys are
seen too). Both servers compute the chunk's checksum themselves; only one row
per chunk crosses the network.

The row checksum
----------------
Every row is reduced to ``CRC32(CONCAT_WS('#', piece_1, ..., piece_n))`` over
all its columns in table order, where each column's piece is

* numbers, DATE, TIME, DATETIME, YEAR: the value's text;
* TIMESTAMP: ``UNIX_TIMESTAMP(col)``, so the session time zones of the two
  connections do not matter;
* every other type (CHAR, VARCHAR, TEXT, BLOB, BINARY, ENUM, SET, BIT, JSON,
  spatial, anything unknown): ``CRC32(col)``, the checksum of the stored bytes
  (JSON first turned into its text: MySQL stores it in a binary form);
* in a nullable column, NULL is ``N``: ``COALESCE(piece, 'N')``.

No piece can hold the ``#`` separator and none but NULL's is ``N``, so the
concatenation decodes to one row: NULL differs from ``''``, and
``('a#', 'b')`` differs from ``('a', '#b')``. Text reaches the checksum as the
bytes stored, whatever its character set, and never meets another column's
collation. NOT NULL columns skip the COALESCE, which would add about a
quarter to the checksum's time on MariaDB 10.11; a NULL that shows up anyway
(a clone whose column is nullable) is skipped by CONCAT_WS and leaves one
field fewer, so it still cannot be mistaken for a row of the source.

A chunk's checksum is ``COUNT(*)`` and ``BIT_XOR`` of the row checksums: the
order rows are read in does not matter. Tables without a primary key are
checksummed whole and also carry ``SUM`` of the row checksums, because two
identical rows cancel out under XOR and such tables may hold duplicates.

Chunk size and load
-------------------
Chunk boundaries come from the source's primary key index
(``ORDER BY key LIMIT 2 OFFSET n-1``). The number of rows per chunk starts at
``chunk_rows`` and follows the slower of the two checksum queries toward
``chunk_time`` seconds, at most doubling or quartering per chunk. Each server
runs one of our queries at a time; the source and the clone work in parallel.

Composite keys are compared column by column,
``a > x OR (a = x AND b > y)``: MariaDB (10.11) does not turn row constructor
comparisons ``(a, b) > (x, y)`` into an index range and would scan the table.

A moving source
---------------
The first comparison of a chunk reads both sides at once. When they differ the
chunk is re-checked: the source side is read inside a consistent snapshot
together with the binary log coordinates of that snapshot, and the clone side
is read as of exactly those coordinates (the caller's ``clone_control`` pauses
the replica and lets it apply events up to them), or, without a clone
control, once ``wait_clone_past`` says the clone has executed past them.
Only chunks that still differ after ``rechecks`` re-checks are reported; for
chunks of at most ``KEY_LIST_LIMIT`` rows the re-checks read
each row's checksum too and the report names the differing primary keys.

Limitations
-----------
Numbers are compared in the text form the server prints: a FLOAT or DOUBLE
printed differently by two major versions (a clone upgraded from 5.7 to 8.0)
shows as a difference. A table without a primary key is read in one query,
however large. Without a clone control (a server
without ``rds_start_replication_until``) a chunk that keeps changing can still
be reported after every re-check; verify again when writes are quiet.
"""

from __future__ import annotations

import fnmatch
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as time_of_day
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Final, Protocol, TypeAlias

import pymysql.cursors

from replicator.errors import InputError, StepFailedError
from replicator.mysql.status import BinlogCoordinates, to_int, to_text

if TYPE_CHECKING:
    import pymysql.connections

    Connection: TypeAlias = pymysql.connections.Connection[Any]

Key: TypeAlias = tuple[Any, ...]
WaitClonePast: TypeAlias = Callable[[BinlogCoordinates, float], bool]


class CloneControl(Protocol):
    """Holds the clone's replica at an exact source position for a re-check."""

    def pause(self) -> bool:
        """Stop applying events; False when the clone cannot be held."""

    def run_until(self, coordinates: BinlogCoordinates, timeout: float) -> bool:
        """Apply events up to exactly ``coordinates`` and stop there."""

    def resume(self) -> None:
        """Apply events again."""


Progress: TypeAlias = Callable[[str, int, int], None]

SYSTEM_SCHEMAS: Final = ("mysql", "information_schema", "performance_schema", "sys")
DEFAULT_CHUNK_TIME_S: Final = 0.25
INITIAL_CHUNK_ROWS: Final = 1000
MIN_CHUNK_ROWS: Final = 100
MAX_CHUNK_ROWS: Final = 500_000
MAX_GROWTH: Final = 2.0
MAX_SHRINK: Final = 0.25
DEFAULT_RECHECKS: Final = 3
DEFAULT_WAIT_TIMEOUT_S: Final = 60.0
# Chunks of at most this many rows report their differing primary keys.
KEY_LIST_LIMIT: Final = 1000

_SEPARATOR: Final = "#"
_NULL_PIECE: Final = "N"
_TIMESTAMP_TYPE: Final = "timestamp"
_JSON_TYPE: Final = "json"
_NULLABLE: Final = "YES"
# Types whose text form never holds the separator (digits, signs, points,
# exponents, dashes, colons and spaces).
_PLAIN_TYPES: Final = frozenset(
    {
        "tinyint",
        "smallint",
        "mediumint",
        "int",
        "integer",
        "bigint",
        "decimal",
        "numeric",
        "float",
        "double",
        "real",
        "year",
        "date",
        "time",
        "datetime",
    }
)


# --- report ---------------------------------------------------------------------


@dataclass(frozen=True)
class ChunkDiff:
    """A key range that still differs after every re-check.

    ``lower`` is exclusive and ``upper`` inclusive; None means unbounded. Both
    are None for a table compared whole. ``keys`` lists the differing primary
    keys when the chunk was small enough to compare row by row, else None.
    """

    schema: str
    table: str
    lower: Key | None
    upper: Key | None
    source_rows: int
    clone_rows: int
    keys: list[Key] | None


@dataclass(frozen=True)
class TableResult:
    """How one table compared: chunks checked, source rows, differences.

    ``whole_table`` is True for a table without a primary key, compared in one
    checksum. ``columns_differ`` is True when the clone's table has other
    columns than the source's; its rows are then not compared.
    """

    schema: str
    table: str
    chunks: int
    rows: int
    whole_table: bool
    equal: bool
    diffs: list[ChunkDiff]
    seconds: float
    missing_on_clone: bool
    columns_differ: bool = False


@dataclass(frozen=True)
class VerifyReport:
    """Every table compared, with the UTC times the comparison ran."""

    tables: list[TableResult]
    equal: bool
    started: str
    finished: str
    objects: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """Return the report as JSON-serialisable data (keys as lists)."""
        return {
            "equal": self.equal,
            "started": self.started,
            "finished": self.finished,
            "tables": [_table_json(result) for result in self.tables],
            "objects": list(self.objects),
        }


def _table_json(result: TableResult) -> dict[str, Any]:
    """Return one table's result as JSON-serialisable data."""
    return {
        "schema": result.schema,
        "table": result.table,
        "chunks": result.chunks,
        "rows": result.rows,
        "whole_table": result.whole_table,
        "equal": result.equal,
        "seconds": round(result.seconds, 3),
        "missing_on_clone": result.missing_on_clone,
        "columns_differ": result.columns_differ,
        "diffs": [_diff_json(diff) for diff in result.diffs],
    }


def _diff_json(diff: ChunkDiff) -> dict[str, Any]:
    """Return one differing chunk as JSON-serialisable data."""
    return {
        "lower": _key_json(diff.lower),
        "upper": _key_json(diff.upper),
        "source_rows": diff.source_rows,
        "clone_rows": diff.clone_rows,
        "keys": None if diff.keys is None else [_key_json(key) for key in diff.keys],
    }


def _key_json(key: Key | None) -> list[Any] | None:
    """Return a primary key as a list of JSON values."""
    if key is None:
        return None
    return [_value_json(value) for value in key]


def _value_json(value: Any) -> Any:
    """Return a column value as a JSON value: bytes as 0x-hex, times as ISO text."""
    if isinstance(value, bytes | bytearray):
        return "0x" + bytes(value).hex()
    if isinstance(value, datetime | date | time_of_day):
        return value.isoformat()
    if isinstance(value, Decimal | timedelta):
        return str(value)
    return value


# --- tables and their shape -----------------------------------------------------


def quote_identifier(name: str) -> str:
    """Quote a schema, table or column name with backticks."""
    return "`" + name.replace("`", "``") + "`"


def _ident(name: str) -> str:
    """Quote a name for a statement sent with parameters, ``%`` doubled too.

    Every statement here goes through the driver's parameter formatting (with
    an empty tuple when it has no values), which reads ``%%`` as ``%``.
    """
    return quote_identifier(name).replace("%", "%%")


def list_tables(conn: Connection, pattern: str | None) -> list[tuple[str, str]]:
    """List the base tables of non-system schemas, filtered by ``pattern``.

    ``pattern`` is a comma-separated list of ``schema.table`` globs
    (``shop.*,sakila.film*``); a glob without a dot matches whole schemas.
    """
    placeholders = ", ".join(["%s"] * len(SYSTEM_SCHEMAS))
    rows = _fetch_all(
        conn,
        "SELECT TABLE_SCHEMA, TABLE_NAME FROM information_schema.TABLES "
        f"WHERE TABLE_TYPE = 'BASE TABLE' AND TABLE_SCHEMA NOT IN ({placeholders}) "
        "ORDER BY TABLE_SCHEMA, TABLE_NAME",
        SYSTEM_SCHEMAS,
    )
    tables = [(_text(row[0]), _text(row[1])) for row in rows]

    globs = _parse_pattern(pattern)
    if not globs:
        return tables
    return [table for table in tables if _matches(table, globs)]


# Schema objects compared by name (their bodies print differently across
# versions): tables and views, triggers with their table, timing and event,
# and stored routines.
_OBJECT_QUERIES: Final = (
    (
        "table",
        "SELECT TABLE_SCHEMA, TABLE_NAME, TABLE_TYPE FROM information_schema.TABLES "
        "WHERE TABLE_SCHEMA IN ({schemas})",
    ),
    (
        "trigger",
        "SELECT TRIGGER_SCHEMA, TRIGGER_NAME, CONCAT(EVENT_OBJECT_TABLE, ' ', "
        "ACTION_TIMING, ' ', EVENT_MANIPULATION) FROM information_schema.TRIGGERS "
        "WHERE TRIGGER_SCHEMA IN ({schemas})",
    ),
    (
        "routine",
        "SELECT ROUTINE_SCHEMA, ROUTINE_NAME, ROUTINE_TYPE FROM "
        "information_schema.ROUTINES WHERE ROUTINE_SCHEMA IN ({schemas})",
    ),
)


def compare_objects(
    source: Connection, clone: Connection, schemas: Sequence[str]
) -> list[str]:
    """Return the schema objects that differ between source and clone, by name."""
    if not schemas:
        return []
    marks = ", ".join(["%s"] * len(schemas))
    differences = []
    for kind, query in _OBJECT_QUERIES:
        statement = query.format(schemas=marks)
        ours = _objects(source, statement, schemas)
        theirs = _objects(clone, statement, schemas)
        for name in sorted(ours.keys() - theirs.keys()):
            differences.append(f"{kind} {name} is missing on the clone")
        for name in sorted(theirs.keys() - ours.keys()):
            differences.append(f"{kind} {name} exists only on the clone")
        for name in sorted(ours.keys() & theirs.keys()):
            if ours[name] != theirs[name]:
                differences.append(
                    f"{kind} {name} is {ours[name]} on the source but "
                    f"{theirs[name]} on the clone"
                )
    return differences


def _objects(
    conn: Connection, statement: str, schemas: Sequence[str]
) -> dict[str, str]:
    rows = _fetch_all(conn, statement, tuple(schemas))
    return {f"{_text(row[0])}.{_text(row[1])}": _text(row[2]) for row in rows}


def _parse_pattern(pattern: str | None) -> list[str]:
    """Split a table pattern into ``schema.table`` globs."""
    globs = [part.strip() for part in (pattern or "").split(",") if part.strip()]
    return [glob if "." in glob else f"{glob}.*" for glob in globs]


def _matches(table: tuple[str, str], globs: Sequence[str]) -> bool:
    """Tell whether ``schema.table`` matches one of the globs."""
    name = f"{table[0]}.{table[1]}"
    return any(fnmatch.fnmatchcase(name, glob) for glob in globs)


@dataclass(frozen=True)
class Column:
    """A column's name, lower-case data type and whether it admits NULL."""

    name: str
    data_type: str
    nullable: bool = True


@dataclass(frozen=True)
class TableShape:
    """What the checksums need to know of a table: columns and primary key."""

    schema: str
    table: str
    columns: tuple[Column, ...]
    key: tuple[str, ...]

    @property
    def label(self) -> str:
        """Return ``schema.table``."""
        return f"{self.schema}.{self.table}"

    @property
    def quoted(self) -> str:
        """Return the quoted ``schema.table``."""
        return f"{_ident(self.schema)}.{_ident(self.table)}"


def read_shape(conn: Connection, schema: str, table: str) -> TableShape | None:
    """Read a base table's columns and primary key; None when it does not exist."""
    columns = _fetch_all(
        conn,
        "SELECT c.COLUMN_NAME, c.DATA_TYPE, c.IS_NULLABLE "
        "FROM information_schema.COLUMNS c "
        "JOIN information_schema.TABLES t "
        "ON t.TABLE_SCHEMA = c.TABLE_SCHEMA AND t.TABLE_NAME = c.TABLE_NAME "
        "WHERE c.TABLE_SCHEMA = %s AND c.TABLE_NAME = %s "
        "AND t.TABLE_TYPE = 'BASE TABLE' ORDER BY c.ORDINAL_POSITION",
        (schema, table),
    )
    if not columns:
        return None

    key = _fetch_all(
        conn,
        "SELECT COLUMN_NAME FROM information_schema.STATISTICS "
        "WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s AND INDEX_NAME = 'PRIMARY' "
        "ORDER BY SEQ_IN_INDEX",
        (schema, table),
    )
    return TableShape(
        schema=schema,
        table=table,
        columns=tuple(_column(row) for row in columns),
        key=tuple(_text(row[0]) for row in key),
    )


def _column(row: Sequence[Any]) -> Column:
    """Return a column from a row of name, data type and IS_NULLABLE."""
    return Column(
        name=_text(row[0]),
        data_type=_text(row[1]).lower(),
        nullable=_text(row[2]).upper() == _NULLABLE,
    )


# --- SQL ------------------------------------------------------------------------
# The statements are sent with parameters: names in them have ``%`` doubled.


def row_checksum_sql(columns: Sequence[Column]) -> str:
    """Return the SQL expression of a row's checksum (see the module docstring)."""
    pieces = ", ".join(_column_piece(column) for column in columns)
    return f"CRC32(CONCAT_WS('{_SEPARATOR}', {pieces}))"


def _column_piece(column: Column) -> str:
    """Return one column's piece of the row checksum, NULL as its own mark."""
    piece = _column_value(column)
    if not column.nullable:
        return piece
    return f"COALESCE({piece}, '{_NULL_PIECE}')"


def _column_value(column: Column) -> str:
    """Return an expression for a column's value that cannot hold a ``#``."""
    name = _ident(column.name)
    if column.data_type == _TIMESTAMP_TYPE:
        return f"UNIX_TIMESTAMP({name})"
    if column.data_type in _PLAIN_TYPES:
        return name
    if column.data_type == _JSON_TYPE:
        return f"CRC32(CAST({name} AS CHAR CHARACTER SET utf8mb4))"
    return f"CRC32({name})"


def key_after_sql(key: Sequence[str], bound: Key) -> tuple[str, list[Any]]:
    """Return a condition ``key > bound`` with its parameters, column by column."""
    return _compare_key(key, bound, ">", ">")


def key_at_most_sql(key: Sequence[str], bound: Key) -> tuple[str, list[Any]]:
    """Return a condition ``key <= bound`` with its parameters, column by column."""
    return _compare_key(key, bound, "<", "<=")


def _compare_key(
    key: Sequence[str], bound: Key, strict: str, last: str
) -> tuple[str, list[Any]]:
    """Return ``a STRICT x OR (a = x AND (rest))``, ending in ``LAST`` on one column."""
    column = _ident(key[0])
    value = bound[0]
    if len(key) == 1:
        return f"{column} {last} %s", [value]

    rest, params = _compare_key(key[1:], bound[1:], strict, last)
    return f"({column} {strict} %s OR ({column} = %s AND {rest}))", [
        value,
        value,
        *params,
    ]


@dataclass(frozen=True)
class Chunk:
    """A key range: ``lower < key <= upper``; None means unbounded."""

    lower: Key | None
    upper: Key | None


def _where(key: Sequence[str], chunk: Chunk) -> tuple[str, list[Any]]:
    """Return the WHERE clause selecting a chunk, and its parameters."""
    conditions: list[str] = []
    params: list[Any] = []
    if chunk.lower is not None:
        condition, values = key_after_sql(key, chunk.lower)
        conditions.append(f"({condition})")
        params += values
    if chunk.upper is not None:
        condition, values = key_at_most_sql(key, chunk.upper)
        conditions.append(f"({condition})")
        params += values
    if not conditions:
        return "", params
    return " WHERE " + " AND ".join(conditions), params


def _source_table(shape: TableShape) -> str:
    """Return the table reference, read along the primary key when it has one."""
    if not shape.key:
        return shape.quoted
    return f"{shape.quoted} FORCE INDEX (`PRIMARY`)"


def _key_list(shape: TableShape) -> str:
    """Return the quoted primary key columns, comma-separated."""
    return ", ".join(_ident(column) for column in shape.key)


def checksum_sql(shape: TableShape, chunk: Chunk) -> tuple[str, list[Any]]:
    """Return the chunk checksum query: count, XOR and (without a key) sum."""
    crc = row_checksum_sql(shape.columns)
    total = "0" if shape.key else f"COALESCE(SUM({crc}), 0)"
    where, params = _where(shape.key, chunk)
    sql = (
        f"SELECT COUNT(*), COALESCE(BIT_XOR({crc}), 0), {total} "
        f"FROM {_source_table(shape)}{where}"
    )
    return sql, params


def row_checksums_sql(shape: TableShape, chunk: Chunk) -> tuple[str, list[Any]]:
    """Return the query of each row's key and checksum, one row past the limit."""
    keys = _key_list(shape)
    where, params = _where(shape.key, chunk)
    sql = (
        f"SELECT {keys}, {row_checksum_sql(shape.columns)} "
        f"FROM {_source_table(shape)}{where} ORDER BY {keys} "
        f"LIMIT {KEY_LIST_LIMIT + 1}"
    )
    return sql, params


def boundary_sql(
    shape: TableShape, lower: Key | None, rows: int
) -> tuple[str, list[Any]]:
    """Return the query of the ``rows``-th key after ``lower`` and the key after it."""
    keys = _key_list(shape)
    where, params = _where(shape.key, Chunk(lower, None))
    sql = (
        f"SELECT {keys} FROM {_source_table(shape)}{where} "
        f"ORDER BY {keys} LIMIT 2 OFFSET %s"
    )
    return sql, [*params, rows - 1]


# --- reading checksums ----------------------------------------------------------


@dataclass(frozen=True)
class ChunkSum:
    """One side's checksum of a chunk; ``rows_by_key`` when read row by row."""

    rows: int
    bit_xor: int
    total: int
    rows_by_key: dict[Key, int] | None = None

    def matches(self, other: ChunkSum) -> bool:
        """Tell whether both sides hold the same rows."""
        return (self.rows, self.bit_xor, self.total) == (
            other.rows,
            other.bit_xor,
            other.total,
        )


def read_checksum(
    conn: Connection, shape: TableShape, chunk: Chunk, *, by_row: bool = False
) -> ChunkSum:
    """Checksum a chunk on one server; also each row's when ``by_row``."""
    sql, params = checksum_sql(shape, chunk)
    row = _fetch_all(conn, sql, params)[0]
    rows_by_key = _read_row_checksums(conn, shape, chunk) if by_row else None
    return ChunkSum(
        rows=_number(row[0]),
        bit_xor=_number(row[1]),
        total=_number(row[2]),
        rows_by_key=rows_by_key,
    )


def _read_row_checksums(
    conn: Connection, shape: TableShape, chunk: Chunk
) -> dict[Key, int] | None:
    """Return each row's checksum by primary key; None past KEY_LIST_LIMIT rows."""
    sql, params = row_checksums_sql(shape, chunk)
    rows = _fetch_all(conn, sql, params)
    if len(rows) > KEY_LIST_LIMIT:
        return None
    width = len(shape.key)
    return {tuple(row[:width]): _number(row[width]) for row in rows}


def read_source_snapshot(
    conn: Connection, shape: TableShape, chunk: Chunk, *, by_row: bool
) -> tuple[ChunkSum, BinlogCoordinates]:
    """Checksum a chunk in a consistent snapshot; return it with its coordinates.

    The snapshot needs REPEATABLE READ, set for this one transaction. The
    coordinates are read inside the snapshot: every transaction it sees was
    written to the binary log before them, so a clone that has executed past
    them holds at least what the snapshot holds.
    """
    with conn.cursor(pymysql.cursors.Cursor) as cursor:
        cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        cursor.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
    try:
        coordinates = snapshot_coordinates(conn)
        checksum = read_checksum(conn, shape, chunk, by_row=by_row)
    finally:
        conn.rollback()
    return checksum, coordinates


def snapshot_coordinates(conn: Connection) -> BinlogCoordinates:
    """Return the source's binary log coordinates for the open snapshot.

    MariaDB reports the snapshot's exact coordinates in the
    ``Binlog_snapshot_file``/``_position`` status variables. MySQL has none:
    SHOW MASTER STATUS read after the snapshot started is at or past the
    snapshot, which can only make the wait for the clone longer, never short.
    """
    status = {
        _text(row[0]).lower(): row[1]
        for row in _fetch_all(conn, "SHOW STATUS LIKE %s", ("binlog_snapshot_%",))
    }
    file = to_text(status.get("binlog_snapshot_file"))
    position = to_int(status.get("binlog_snapshot_position"))
    if file and position is not None:
        return BinlogCoordinates(file, position)

    rows = _fetch_all(conn, "SHOW MASTER STATUS")
    if not rows:
        raise StepFailedError(
            "verify: the source has no binary log, so a differing chunk cannot "
            "be re-checked after the clone catches up",
            hint="turn binary logging on (binlog_format) and run verify again",
        )
    return BinlogCoordinates(_text(rows[0][0]), _number(rows[0][1]))


def differing_keys(source: ChunkSum, clone: ChunkSum) -> list[Key] | None:
    """Return the keys whose rows differ or exist on one side only."""
    if source.rows_by_key is None or clone.rows_by_key is None:
        return None
    on_source, on_clone = source.rows_by_key, clone.rows_by_key
    keys = {key for key, crc in on_source.items() if on_clone.get(key) != crc}
    keys |= on_clone.keys() - on_source.keys()
    try:
        return sorted(keys)
    except TypeError:
        return list(keys)


def _fetch_all(
    conn: Connection, sql: str, params: Sequence[Any] = ()
) -> list[tuple[Any, ...]]:
    """Run one statement with driver-escaped parameters; return its rows."""
    with conn.cursor(pymysql.cursors.Cursor) as cursor:
        cursor.execute(sql, tuple(params))
        return list(cursor.fetchall())


def _text(value: object) -> str:
    """Return a server value as text; NULL as empty text."""
    return to_text(value) or ""


def _number(value: object) -> int:
    """Return a server value (int, Decimal or text) as an integer; NULL as 0."""
    if isinstance(value, Decimal):
        return int(value)
    return to_int(value) or 0


# --- chunk size -----------------------------------------------------------------


@dataclass
class ChunkSizer:
    """Rows per chunk, steered toward a time per checksum query.

    ``target`` None keeps the size fixed. Each observation scales the size by
    target / elapsed, bounded by MAX_SHRINK and MAX_GROWTH and kept within
    MIN_CHUNK_ROWS..MAX_CHUNK_ROWS.
    """

    rows: int = INITIAL_CHUNK_ROWS
    target: float | None = DEFAULT_CHUNK_TIME_S

    def observe(self, rows: int, elapsed: float) -> None:
        """Adjust the size after a chunk of ``rows`` rows took ``elapsed`` seconds."""
        if self.target is None or rows < self.rows:
            return
        factor = self.target / max(elapsed, 1e-6)
        factor = min(max(factor, MAX_SHRINK), MAX_GROWTH)
        self.rows = min(max(int(self.rows * factor), MIN_CHUNK_ROWS), MAX_CHUNK_ROWS)


# --- comparing ------------------------------------------------------------------


@dataclass(frozen=True)
class _Settings:
    """How chunks are compared and re-checked."""

    wait_clone_past: WaitClonePast
    clone_control: CloneControl | None
    chunk_time: float | None
    chunk_rows: int
    rechecks: int
    wait_timeout: float
    progress: Progress | None


@dataclass(frozen=True)
class _Outcome:
    """One chunk compared: its source rows and, when it differs, the diff."""

    rows: int
    diff: ChunkDiff | None


@dataclass
class _Tally:
    """Running totals of one table's comparison."""

    chunks: int = 0
    rows: int = 0
    diffs: list[ChunkDiff] = field(default_factory=list)


class _Verifier:
    """Compare tables of a source and a clone, clone reads on a worker thread."""

    def __init__(
        self,
        source: Connection,
        clone: Connection,
        settings: _Settings,
        pool: ThreadPoolExecutor,
    ) -> None:
        self.source = source
        self.clone = clone
        self.settings = settings
        self.pool = pool

    def compare_table(self, schema: str, table: str) -> TableResult:
        """Compare one table chunk by chunk; a missing table is a difference."""
        started = time.monotonic()
        shape = read_shape(self.source, schema, table)
        if shape is None:
            raise StepFailedError(
                f"verify: table {schema}.{table} vanished from the source"
            )
        clone_shape = read_shape(self.clone, schema, table)

        if clone_shape is None:
            return _absent(shape, started, missing=True)
        if {c.name for c in clone_shape.columns} != {c.name for c in shape.columns}:
            return _absent(shape, started, missing=False)

        tally = _Tally()
        sizer = ChunkSizer(self.settings.chunk_rows, self.settings.chunk_time)
        for chunk in self._chunks(shape, sizer):
            outcome = self._compare_chunk(shape, chunk, sizer)
            tally.chunks += 1
            tally.rows += outcome.rows
            if outcome.diff is not None:
                tally.diffs.append(outcome.diff)
            if self.settings.progress is not None:
                self.settings.progress(shape.label, tally.chunks, tally.rows)
        return _result(shape, tally, started)

    def _chunks(self, shape: TableShape, sizer: ChunkSizer) -> Iterator[Chunk]:
        """Yield the key ranges covering the table, sized as the sizer says now."""
        if not shape.key:
            yield Chunk(None, None)
            return

        lower: Key | None = None
        while True:
            sql, params = boundary_sql(shape, lower, sizer.rows)
            bounds = _fetch_all(self.source, sql, params)
            if len(bounds) < 2:
                yield Chunk(lower, None)
                return
            upper = tuple(bounds[0])
            yield Chunk(lower, upper)
            lower = upper

    def _compare_chunk(
        self, shape: TableShape, chunk: Chunk, sizer: ChunkSizer
    ) -> _Outcome:
        """Compare a chunk at once on both sides, re-checking when it differs."""
        clone_read = self.pool.submit(_timed_checksum, self.clone, shape, chunk)
        source_sum, source_time = _timed_checksum(self.source, shape, chunk)
        clone_sum, clone_time = clone_read.result()
        sizer.observe(source_sum.rows, max(source_time, clone_time))

        if source_sum.matches(clone_sum):
            return _Outcome(source_sum.rows, None)
        return self._recheck(shape, chunk, source_sum, clone_sum)

    def _recheck(
        self, shape: TableShape, chunk: Chunk, source_sum: ChunkSum, clone_sum: ChunkSum
    ) -> _Outcome:
        """Re-read a differing chunk once the clone has caught up with the source."""
        by_row = bool(shape.key) and max(source_sum.rows, clone_sum.rows) <= (
            KEY_LIST_LIMIT
        )
        for _ in range(self.settings.rechecks):
            source_sum, clone_sum = self._read_at_one_point(shape, chunk, by_row)
            if source_sum.matches(clone_sum):
                return _Outcome(source_sum.rows, None)

        diff = ChunkDiff(
            schema=shape.schema,
            table=shape.table,
            lower=chunk.lower,
            upper=chunk.upper,
            source_rows=source_sum.rows,
            clone_rows=clone_sum.rows,
            keys=differing_keys(source_sum, clone_sum),
        )
        return _Outcome(source_sum.rows, diff)

    def _read_at_one_point(
        self, shape: TableShape, chunk: Chunk, by_row: bool
    ) -> tuple[ChunkSum, ChunkSum]:
        """Read both sides of a chunk as of the same source position.

        With a clone control the replica is paused first, the source is read
        in a snapshot at coordinates S (at or past where the replica stopped),
        and the replica applies events up to exactly S before the clone side is
        read: the two reads see the same transactions even under a steady
        write load. Without one (or when the clone cannot be held) the clone
        is read once it has executed at or past S, which a chunk written
        continuously may never match.
        """
        control = self.settings.clone_control
        held = control is not None and control.pause()
        try:
            source_sum, coordinates = read_source_snapshot(
                self.source, shape, chunk, by_row=by_row
            )
            timeout = self.settings.wait_timeout
            if not (
                held and control is not None and control.run_until(coordinates, timeout)
            ):
                self.settings.wait_clone_past(coordinates, timeout)
            clone_sum = read_checksum(self.clone, shape, chunk, by_row=by_row)
        finally:
            if held and control is not None:
                control.resume()
        return source_sum, clone_sum


def _timed_checksum(
    conn: Connection, shape: TableShape, chunk: Chunk
) -> tuple[ChunkSum, float]:
    """Checksum a chunk and return it with the seconds the query took."""
    started = time.monotonic()
    checksum = read_checksum(conn, shape, chunk)
    return checksum, time.monotonic() - started


def _absent(shape: TableShape, started: float, *, missing: bool) -> TableResult:
    """Return the result of a table missing on the clone or with other columns."""
    return TableResult(
        schema=shape.schema,
        table=shape.table,
        chunks=0,
        rows=0,
        whole_table=not shape.key,
        equal=False,
        diffs=[],
        seconds=time.monotonic() - started,
        missing_on_clone=missing,
        columns_differ=not missing,
    )


def _result(shape: TableShape, tally: _Tally, started: float) -> TableResult:
    """Return the result of a table compared chunk by chunk."""
    return TableResult(
        schema=shape.schema,
        table=shape.table,
        chunks=tally.chunks,
        rows=tally.rows,
        whole_table=not shape.key,
        equal=not tally.diffs,
        diffs=tally.diffs,
        seconds=time.monotonic() - started,
        missing_on_clone=False,
    )


def verify(
    source: Connection,
    clone: Connection,
    *,
    pattern: str | None = None,
    wait_clone_past: WaitClonePast,
    clone_control: CloneControl | None = None,
    chunk_time: float | None = DEFAULT_CHUNK_TIME_S,
    chunk_rows: int = INITIAL_CHUNK_ROWS,
    rechecks: int = DEFAULT_RECHECKS,
    wait_timeout: float = DEFAULT_WAIT_TIMEOUT_S,
    progress: Progress | None = None,
) -> VerifyReport:
    """Compare every matching table of the source with the clone.

    ``wait_clone_past(coordinates, timeout)`` must return once the clone has
    executed the source's binary log past ``coordinates``, False after
    ``wait_timeout`` seconds; the re-check then compares what the clone has.
    ``clone_control``, when given, holds the replica at exactly the source
    snapshot's position for each re-check instead (see ``CloneControl``).
    ``chunk_time`` None keeps ``chunk_rows`` fixed. With ``rechecks=0`` a
    differing chunk is reported at once, without keys. ``progress`` is called
    with (``schema.table``, chunks done, rows done) after every chunk. Raises
    InputError when ``pattern`` matches no table.
    """
    _check_arguments(chunk_time, chunk_rows, rechecks)
    tables = list_tables(source, pattern)
    if pattern and not tables:
        raise InputError(
            f"verify: --tables {pattern!r} matches no base table on the source",
            hint="give schema.table globs such as 'shop.*,sakila.film*'",
        )

    started = _utc_now()
    settings = _Settings(
        wait_clone_past,
        clone_control,
        chunk_time,
        chunk_rows,
        rechecks,
        wait_timeout,
        progress,
    )
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="verify") as pool:
        verifier = _Verifier(source, clone, settings, pool)
        results = [verifier.compare_table(schema, table) for schema, table in tables]
    objects = compare_objects(source, clone, sorted({schema for schema, _ in tables}))
    return VerifyReport(
        tables=results,
        equal=all(result.equal for result in results) and not objects,
        started=started,
        finished=_utc_now(),
        objects=objects,
    )


def _check_arguments(chunk_time: float | None, chunk_rows: int, rechecks: int) -> None:
    """Refuse settings that cannot work."""
    if chunk_time is not None and chunk_time <= 0:
        raise InputError(f"verify: chunk_time must be positive, got {chunk_time}")
    if chunk_rows < 1:
        raise InputError(f"verify: chunk_rows must be at least 1, got {chunk_rows}")
    if rechecks < 0:
        raise InputError(f"verify: rechecks must be 0 or more, got {rechecks}")


def _utc_now() -> str:
    """Return the current UTC time in ISO 8601 with a Z."""
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
