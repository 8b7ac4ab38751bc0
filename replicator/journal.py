"""The run's journal: a SQLite file recording everything the tool did.

The journal is the truth about what the tool did (AWS and MySQL are the truth
about the world). It records step attempts and their outputs, the runbook's
lock, generic events, lag samples and every skipped replication event.

Crash safety: a run may be killed with SIGKILL at any instant and the file
must stay readable with every committed row in it. Four settings give that:

* ``journal_mode=WAL``: a commit appends frames to the write-ahead log and
  ends with a commit frame; on the next open SQLite replays only complete,
  committed transactions and ignores a torn tail, so a kill mid-write loses
  at most the transaction in flight and never corrupts the file.
* ``synchronous=FULL``: the log is fsynced at every commit, so a committed
  row also survives a power loss or kernel crash, not just a killed process.
* Every write is its own short ``BEGIN IMMEDIATE`` ... ``COMMIT`` and is
  committed before the method returns: nothing the caller believes written
  is waiting in a buffer, and the write lock is taken up front, so two
  processes never interleave a read-check-write sequence.
* ``busy_timeout``: a second process (``status`` during ``run``) waits for
  the short write in progress instead of failing with "database is locked".

Nothing secret belongs here. Callers pass masked data; as a guard, ``mask``
is applied to every free text and every string inside a JSON payload.
"""

from __future__ import annotations

import json
import os
import re
import socket
import sqlite3
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, NamedTuple, Self

from replicator.errors import LockHeldError, ReplicatorError

Clock = Callable[[], datetime]
Mask = Callable[[str], str]

BUSY_TIMEOUT_MS = 10_000
RUN_ID_LENGTH = 12

OUTCOMES = frozenset({"done", "failed", "halted", "interrupted", "crashed"})
CRASHED = "crashed"
DONE = "done"
PENDING = "pending"
RUNNING = "running"

SKIP_PENDING = "pending"
SKIP_DONE = "done"
SKIP_VOID = "void"
UNKNOWN_TABLE = "unknown"

LOCK_TAKEOVER_EVENT = "lock_takeover"
STEP_RESET_EVENT = "step_reset"

META_SCHEMA_VERSION = "schema_version"
META_RUN_ID = "run_id"
META_CREATED = "created"
RESERVED_META_KEYS = frozenset({META_SCHEMA_VERSION, META_RUN_ID, META_CREATED})

ISO_UTC_PATTERN = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z")

# One entry per schema version: the statements that migrate from the version
# before it. Version 0 is an empty file. Append entries, never edit them.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
        """CREATE TABLE lock (
            slot INTEGER PRIMARY KEY CHECK (slot = 1),
            host TEXT NOT NULL,
            pid INTEGER NOT NULL CHECK (pid > 0),
            command TEXT NOT NULL,
            since TEXT NOT NULL)""",
        """CREATE TABLE attempts (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            step TEXT NOT NULL,
            attempt INTEGER NOT NULL,
            started TEXT NOT NULL,
            finished TEXT,
            outcome TEXT CHECK (outcome IN
                ('done', 'failed', 'halted', 'interrupted', 'crashed')),
            outputs TEXT,
            error TEXT,
            CHECK ((finished IS NULL) = (outcome IS NULL)),
            UNIQUE (step, attempt))""",
        """CREATE TABLE step_resets (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            step TEXT NOT NULL,
            time TEXT NOT NULL,
            last_attempt_id INTEGER NOT NULL)""",
        """CREATE TABLE events (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            time TEXT NOT NULL,
            kind TEXT NOT NULL,
            data TEXT NOT NULL)""",
        "CREATE INDEX events_by_kind ON events (kind, id)",
        """CREATE TABLE lag_samples (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            time TEXT NOT NULL,
            bytes_behind INTEGER,
            seconds_behind REAL,
            heartbeat_lag REAL,
            exec_file TEXT,
            exec_position INTEGER)""",
        """CREATE TABLE skips (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            state TEXT NOT NULL CHECK (state IN ('pending', 'done', 'void')),
            resolved TEXT,
            time TEXT NOT NULL,
            rule TEXT NOT NULL,
            action TEXT NOT NULL,
            errno INTEGER NOT NULL,
            error TEXT NOT NULL,
            file TEXT NOT NULL,
            position INTEGER NOT NULL,
            schema_name TEXT,
            table_name TEXT,
            keys TEXT)""",
        # A replicated event is skipped at most once, and only one skip can be
        # in flight: the indexes enforce both even against a buggy caller.
        """CREATE UNIQUE INDEX skips_done_once ON skips (file, position, errno)
            WHERE state = 'done'""",
        "CREATE UNIQUE INDEX skips_one_pending ON skips (state) "
        "WHERE state = 'pending'",
        "CREATE INDEX skips_by_rule ON skips (rule, time) WHERE state = 'done'",
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)

ATTEMPT_COLUMNS = "id, step, attempt, started, finished, outcome, outputs, error"
SKIP_COLUMNS = (
    "time, rule, action, errno, error, file, position, schema_name, table_name, keys"
)
LAG_COLUMNS = (
    "time, bytes_behind, seconds_behind, heartbeat_lag, exec_file, exec_position"
)
# Attempts of a step after its latest reset; the ones before are history.
CURRENT_ATTEMPTS = """
    FROM attempts WHERE step = :step AND id > (
        SELECT COALESCE(MAX(last_attempt_id), 0) FROM step_resets
        WHERE step = :step)"""


def utc_now() -> datetime:
    """Return the current time, timezone-aware in UTC."""
    return datetime.now(UTC)


def utc_iso(moment: datetime) -> str:
    """Format an aware datetime as ISO 8601 UTC with milliseconds and ``Z``."""
    if moment.tzinfo is None:
        raise ValueError(f"datetime {moment!r} has no timezone; pass an aware one")

    moment = moment.astimezone(UTC)
    millis = moment.microsecond // 1000
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{millis:03d}Z"


def iso_now(clock: Clock = utc_now) -> str:
    """Return the clock's current time in the journal's timestamp format."""
    return utc_iso(clock())


@dataclass(frozen=True)
class Attempt:
    """One try of a step; ``outcome`` and ``finished`` are None while open."""

    id: int
    step: str
    attempt: int
    started: str
    finished: str | None
    outcome: str | None
    outputs: dict[str, Any] | None
    error: str | None


@dataclass(frozen=True)
class StepSummary:
    """A step's state for ``status``: pending, running, or the last outcome."""

    name: str
    state: str
    started: str | None
    finished: str | None
    attempts: int


@dataclass(frozen=True)
class LockHolder:
    """The process holding the runbook's lock."""

    host: str
    pid: int
    command: str
    since: str


@dataclass(frozen=True)
class SkipRecord:
    """A replicated event the skip policy skipped, at its source coordinates."""

    time: str
    rule: str
    action: str
    errno: int
    error: str
    file: str
    position: int
    schema: str | None
    table: str | None
    keys: str | None


@dataclass(frozen=True)
class LagSample:
    """One poll of the replica's lag."""

    time: str
    bytes_behind: int | None
    seconds_behind: float | None
    heartbeat_lag: float | None
    exec_file: str | None
    exec_position: int | None


class Event(NamedTuple):
    """One generic journal event."""

    id: int
    time: str
    kind: str
    data: dict[str, Any]


class Journal:
    """A run's SQLite journal. Open it with :meth:`Journal.open`."""

    def __init__(
        self,
        db: sqlite3.Connection,
        path: Path,
        run_id: str,
        clock: Clock,
        mask: Mask | None,
    ) -> None:
        self._db = db
        self.path = path
        self.run_id = run_id
        self._clock = clock
        self._mask_text: Mask = mask if mask is not None else _unmasked

    @classmethod
    def open(
        cls, path: Path, *, clock: Clock = utc_now, mask: Mask | None = None
    ) -> Journal:
        """Open the journal at ``path``, creating it and its parents if absent.

        An existing journal is left as it is, except that an older schema is
        migrated to the current one.
        """
        path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(path, isolation_level=None)
        try:
            run_id = _prepare(db, path, clock)
        except sqlite3.DatabaseError as exc:
            db.close()
            raise ReplicatorError(
                f"cannot open the journal {path}: {exc}",
                hint="check that the path names a replicator journal",
            ) from exc
        except BaseException:
            db.close()
            raise
        return cls(db, path, run_id, clock, mask)

    def close(self) -> None:
        """Close the connection; every write was already committed."""
        self._db.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def now(self) -> str:
        """Return the journal clock's current time as a timestamp string."""
        return iso_now(self._clock)

    def created(self) -> str:
        """Return when the journal file was created."""
        return str(self._read_meta(META_CREATED))

    # -- meta -------------------------------------------------------------

    def get_meta(self, key: str) -> Any | None:
        """Return the JSON value stored under ``key``, or None."""
        return self._read_meta(key)

    def set_meta(self, key: str, value: Any) -> None:
        """Store a JSON value under ``key``; the journal's own keys are refused."""
        if key in RESERVED_META_KEYS:
            raise ValueError(f"meta key {key!r} belongs to the journal itself")

        with _immediate(self._db) as db:
            _write_meta(db, key, self._mask_json(value))

    # -- lock -------------------------------------------------------------

    def acquire_lock(self, command: str) -> None:
        """Take the runbook's lock for ``command``.

        Re-entrant for the holding process. A lock left by a dead process on
        this host is taken over and an event records it; any other holder
        raises :class:`LockHeldError`.
        """
        host, pid = socket.gethostname(), os.getpid()

        with _immediate(self._db) as db:
            holder = _read_lock(db)
            if holder is not None and (holder.host, holder.pid) == (host, pid):
                return
            if holder is not None and not _is_stale(holder, host):
                raise _lock_held(self.path, holder)
            if holder is not None:
                takeover = {"previous": asdict(holder), "pid": pid, "command": command}
                self._insert_event(db, LOCK_TAKEOVER_EVENT, takeover)
            db.execute(
                "INSERT OR REPLACE INTO lock (slot, host, pid, command, since) "
                "VALUES (1, ?, ?, ?, ?)",
                (host, pid, self._mask_text(command), self.now()),
            )

    def release_lock(self) -> None:
        """Release the lock if this process holds it; otherwise do nothing."""
        with _immediate(self._db) as db:
            db.execute(
                "DELETE FROM lock WHERE host = ? AND pid = ?",
                (socket.gethostname(), os.getpid()),
            )

    def lock_holder(self) -> LockHolder | None:
        """Return who holds the lock, or None."""
        return _read_lock(self._db)

    # -- step attempts ----------------------------------------------------

    def start_attempt(self, step: str) -> int:
        """Open a new attempt of ``step`` and return its id.

        An attempt of the step still open (its process died) is closed first
        with the outcome ``crashed``.
        """
        now = self.now()

        with _immediate(self._db) as db:
            db.execute(
                "UPDATE attempts SET outcome = ?, finished = ? "
                "WHERE step = ? AND outcome IS NULL",
                (CRASHED, now, step),
            )
            (previous,) = db.execute(
                "SELECT COUNT(*) FROM attempts WHERE step = ?", (step,)
            ).fetchone()
            cursor = db.execute(
                "INSERT INTO attempts (step, attempt, started) VALUES (?, ?, ?)",
                (step, previous + 1, now),
            )
            return _inserted_id(cursor)

    def finish_attempt(
        self,
        attempt_id: int,
        outcome: str,
        *,
        outputs: dict[str, Any] | None = None,
        error: str | None = None,
    ) -> None:
        """Close an open attempt with its outcome, outputs and error text."""
        if outcome not in OUTCOMES:
            raise ValueError(f"outcome {outcome!r} is not one of {sorted(OUTCOMES)}")

        stored_outputs = None if outputs is None else self._json(outputs)
        stored_error = None if error is None else self._mask_text(error)
        with _immediate(self._db) as db:
            cursor = db.execute(
                "UPDATE attempts SET outcome = ?, finished = ?, outputs = ?, "
                "error = ? WHERE id = ? AND outcome IS NULL",
                (outcome, self.now(), stored_outputs, stored_error, attempt_id),
            )
            if cursor.rowcount != 1:
                raise ValueError(f"attempt {attempt_id} is not an open attempt")

    def step_outputs(self, step: str) -> dict[str, Any] | None:
        """Return the outputs of the step's latest ``done`` attempt, else None.

        A done attempt that recorded no outputs gives an empty dict. Attempts
        before the step's latest reset do not count.
        """
        row = self._db.execute(
            f"SELECT outputs {CURRENT_ATTEMPTS} AND outcome = :outcome "
            "ORDER BY id DESC LIMIT 1",
            {"step": step, "outcome": DONE},
        ).fetchone()
        if row is None:
            return None
        return {} if row[0] is None else _load_object(row[0])

    def is_done(self, step: str) -> bool:
        """Tell whether the step's latest attempt since its last reset is done."""
        latest = _latest_attempt(self._db, step)
        return latest is not None and latest.outcome == DONE

    def attempts(self, step: str | None = None) -> list[Attempt]:
        """Return every attempt, or every attempt of ``step``, oldest first."""
        if step is None:
            rows = self._db.execute(
                f"SELECT {ATTEMPT_COLUMNS} FROM attempts ORDER BY id"
            )
        else:
            rows = self._db.execute(
                f"SELECT {ATTEMPT_COLUMNS} FROM attempts WHERE step = ? ORDER BY id",
                (step,),
            )
        return [_attempt(row) for row in rows]

    def summaries(self, steps: Sequence[str]) -> list[StepSummary]:
        """Summarise the given steps in the given order, read as one snapshot."""
        with _snapshot(self._db) as db:
            return [_summary(db, step) for step in steps]

    def reset_step(self, step: str) -> None:
        """Make ``step`` run again: it reads as pending, its history is kept."""
        with _immediate(self._db) as db:
            (last_id,) = db.execute(
                "SELECT COALESCE(MAX(id), 0) FROM attempts WHERE step = ?", (step,)
            ).fetchone()
            db.execute(
                "INSERT INTO step_resets (step, time, last_attempt_id) "
                "VALUES (?, ?, ?)",
                (step, self.now(), last_id),
            )
            self._insert_event(db, STEP_RESET_EVENT, {"step": step})

    # -- events -----------------------------------------------------------

    def record_event(self, kind: str, data: dict[str, Any]) -> int:
        """Append an event and return its id."""
        with _immediate(self._db) as db:
            return self._insert_event(db, kind, data)

    def events(self, kind: str | None = None, since_id: int = 0) -> list[Event]:
        """Return events with an id above ``since_id``, of ``kind`` if given."""
        query = "SELECT id, time, kind, data FROM events WHERE id > ?"
        params: tuple[Any, ...] = (since_id,)
        if kind is not None:
            query += " AND kind = ?"
            params += (kind,)

        rows = self._db.execute(query + " ORDER BY id", params)
        return [Event(row[0], row[1], row[2], _load_object(row[3])) for row in rows]

    # -- lag samples ------------------------------------------------------

    def record_lag(self, sample: LagSample) -> None:
        """Append one lag sample."""
        _require_iso(sample.time, "lag sample time")

        with _immediate(self._db) as db:
            db.execute(
                f"INSERT INTO lag_samples ({LAG_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)",
                (
                    sample.time,
                    sample.bytes_behind,
                    sample.seconds_behind,
                    sample.heartbeat_lag,
                    sample.exec_file,
                    sample.exec_position,
                ),
            )

    def lag_samples(self) -> list[LagSample]:
        """Return every lag sample, oldest first."""
        rows = self._db.execute(f"SELECT {LAG_COLUMNS} FROM lag_samples ORDER BY id")
        return [LagSample(*row) for row in rows]

    # -- skips ------------------------------------------------------------

    def begin_skip(self, record: SkipRecord) -> int:
        """Journal a skip as pending, before asking the server to skip.

        Raises ValueError when another skip is still pending or when this
        event (file, position, errno) was already skipped.
        """
        _require_iso(record.time, "skip time")

        with _immediate(self._db) as db:
            _refuse_pending_skip(db)
            _refuse_skipped_event(db, record)
            cursor = db.execute(
                f"INSERT INTO skips (state, {SKIP_COLUMNS}) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (SKIP_PENDING, *self._skip_values(record)),
            )
            return _inserted_id(cursor)

    def confirm_skip(self, skip_id: int) -> None:
        """Mark a pending skip done: the replica's position moved past it."""
        self._resolve_skip(skip_id, SKIP_DONE)

    def void_skip(self, skip_id: int) -> None:
        """Mark a pending skip void: the replica's position did not move."""
        self._resolve_skip(skip_id, SKIP_VOID)

    def pending_skip(self) -> tuple[int, SkipRecord] | None:
        """Return the skip a crash left pending, with its id, or None."""
        row = self._db.execute(
            f"SELECT id, {SKIP_COLUMNS} FROM skips WHERE state = ?", (SKIP_PENDING,)
        ).fetchone()
        if row is None:
            return None
        return row[0], SkipRecord(*row[1:])

    def skips(self) -> list[SkipRecord]:
        """Return every done skip, in the order they were journaled."""
        rows = self._db.execute(
            f"SELECT {SKIP_COLUMNS} FROM skips WHERE state = ? ORDER BY id",
            (SKIP_DONE,),
        )
        return [SkipRecord(*row) for row in rows]

    def skip_counts(self) -> dict[str, Any]:
        """Count done skips: total, by rule and by ``schema.table``."""
        with _snapshot(self._db) as db:
            (total,) = db.execute(
                "SELECT COUNT(*) FROM skips WHERE state = ?", (SKIP_DONE,)
            ).fetchone()
            by_rule = _count_done_skips(db, "rule")
            by_table = _count_done_skips(db, _TABLE_LABEL)
        return {"total": total, "by_rule": by_rule, "by_table": by_table}

    def skips_for_rule_since(self, rule: str, since: str) -> int:
        """Count done skips of ``rule`` journaled at or after ``since``."""
        _require_iso(since, "since")

        (count,) = self._db.execute(
            "SELECT COUNT(*) FROM skips WHERE state = ? AND rule = ? AND time >= ?",
            (SKIP_DONE, rule, since),
        ).fetchone()
        return int(count)

    # -- helpers ----------------------------------------------------------

    def _read_meta(self, key: str) -> Any | None:
        row = self._db.execute(
            "SELECT value FROM meta WHERE key = ?", (key,)
        ).fetchone()
        return None if row is None else json.loads(row[0])

    def _insert_event(
        self, db: sqlite3.Connection, kind: str, data: dict[str, Any]
    ) -> int:
        cursor = db.execute(
            "INSERT INTO events (time, kind, data) VALUES (?, ?, ?)",
            (self.now(), kind, self._json(data)),
        )
        return _inserted_id(cursor)

    def _resolve_skip(self, skip_id: int, state: str) -> None:
        with _immediate(self._db) as db:
            cursor = db.execute(
                "UPDATE skips SET state = ?, resolved = ? WHERE id = ? AND state = ?",
                (state, self.now(), skip_id, SKIP_PENDING),
            )
            if cursor.rowcount != 1:
                raise ValueError(f"skip {skip_id} is not pending")

    def _skip_values(self, record: SkipRecord) -> tuple[Any, ...]:
        keys = None if record.keys is None else self._mask_text(record.keys)
        return (
            record.time,
            record.rule,
            record.action,
            record.errno,
            self._mask_text(record.error),
            record.file,
            record.position,
            record.schema,
            record.table,
            keys,
        )

    def _json(self, value: Any) -> str:
        return json.dumps(self._mask_json(value), ensure_ascii=False, allow_nan=False)

    def _mask_json(self, value: Any) -> Any:
        if isinstance(value, str):
            return self._mask_text(value)
        if isinstance(value, dict):
            return {
                self._mask_json(key): self._mask_json(item)
                for key, item in value.items()
            }
        if isinstance(value, list | tuple):
            return [self._mask_json(item) for item in value]
        return value


_TABLE_LABEL = (
    "CASE WHEN schema_name IS NULL OR table_name IS NULL "
    f"THEN '{UNKNOWN_TABLE}' ELSE schema_name || '.' || table_name END"
)


def _unmasked(text: str) -> str:
    return text


def _prepare(db: sqlite3.Connection, path: Path, clock: Clock) -> str:
    """Set the connection's safety pragmas, migrate, and return the run id."""
    db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    (mode,) = db.execute("PRAGMA journal_mode = WAL").fetchone()
    if mode != "wal":
        raise ReplicatorError(
            f"the journal {path} cannot use write-ahead logging (mode {mode!r})",
            hint="put the journal on a local file system",
        )
    db.execute("PRAGMA synchronous = FULL")

    if _schema_version(db, path) < SCHEMA_VERSION:
        with _immediate(db):
            _migrate(db, path, clock)

    row = db.execute("SELECT value FROM meta WHERE key = ?", (META_RUN_ID,)).fetchone()
    run_id: str = json.loads(row[0])
    return run_id


def _schema_version(db: sqlite3.Connection, path: Path) -> int:
    tables = {
        name
        for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
    }
    if "meta" not in tables and tables:
        raise _not_a_journal(path)
    if "meta" not in tables:
        return 0

    row = db.execute(
        "SELECT value FROM meta WHERE key = ?", (META_SCHEMA_VERSION,)
    ).fetchone()
    if row is None:
        raise _not_a_journal(path)
    version = int(json.loads(row[0]))
    if version > SCHEMA_VERSION:
        raise ReplicatorError(
            f"the journal {path} has schema version {version}; this replicator "
            f"knows versions up to {SCHEMA_VERSION}",
            hint="use the replicator release that wrote this journal, or newer",
        )
    return version


def _migrate(db: sqlite3.Connection, path: Path, clock: Clock) -> None:
    """Bring the schema to the current version; the caller holds the write lock."""
    version = _schema_version(db, path)  # another process may have migrated

    for statements in MIGRATIONS[version:]:
        for statement in statements:
            db.execute(statement)
    if version == 0:
        _write_meta(db, META_RUN_ID, uuid.uuid4().hex[:RUN_ID_LENGTH])
        _write_meta(db, META_CREATED, iso_now(clock))
    _write_meta(db, META_SCHEMA_VERSION, SCHEMA_VERSION)


def _not_a_journal(path: Path) -> ReplicatorError:
    return ReplicatorError(
        f"{path} is a SQLite database but not a replicator journal",
        hint="point --state at a journal file or at a path that does not exist",
    )


@contextmanager
def _immediate(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """Run the block as one write transaction, committed when it ends."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


@contextmanager
def _snapshot(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """Run the block's reads against one consistent snapshot."""
    db.execute("BEGIN")
    try:
        yield db
    finally:
        db.execute("ROLLBACK")


def _write_meta(db: sqlite3.Connection, key: str, value: Any) -> None:
    db.execute(
        "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
        (key, json.dumps(value, ensure_ascii=False, allow_nan=False)),
    )


def _inserted_id(cursor: sqlite3.Cursor) -> int:
    if cursor.lastrowid is None:
        raise RuntimeError("SQLite reported no row id for an insert")
    return cursor.lastrowid


def _load_object(text: str) -> dict[str, Any]:
    value: dict[str, Any] = json.loads(text)
    return value


def _require_iso(value: str, field: str) -> None:
    # Timestamps are compared as strings, which only works in one format.
    if not ISO_UTC_PATTERN.fullmatch(value):
        raise ValueError(
            f"{field} {value!r} is not ISO 8601 UTC like 2024-05-01T12:00:00.000Z"
        )


def _read_lock(db: sqlite3.Connection) -> LockHolder | None:
    row = db.execute("SELECT host, pid, command, since FROM lock").fetchone()
    return None if row is None else LockHolder(*row)


def _is_stale(holder: LockHolder, host: str) -> bool:
    # Liveness can only be checked on this host. A recycled pid (after a
    # reboot, say) reads as alive and needs the operator to stop that process.
    return holder.host == host and not _pid_alive(holder.pid)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, owned by another user
    return True


def _lock_held(path: Path, holder: LockHolder) -> LockHeldError:
    return LockHeldError(
        f"the runbook's journal {path} is locked by {holder.command!r}, "
        f"pid {holder.pid} on host {holder.host}, since {holder.since}",
        hint="wait for that command to finish or stop it, then run this again",
    )


def _latest_attempt(db: sqlite3.Connection, step: str) -> Attempt | None:
    row = db.execute(
        f"SELECT {ATTEMPT_COLUMNS} {CURRENT_ATTEMPTS} ORDER BY id DESC LIMIT 1",
        {"step": step},
    ).fetchone()
    return None if row is None else _attempt(row)


def _summary(db: sqlite3.Connection, step: str) -> StepSummary:
    (count,) = db.execute(
        "SELECT COUNT(*) FROM attempts WHERE step = ?", (step,)
    ).fetchone()
    latest = _latest_attempt(db, step)

    if latest is None:
        return StepSummary(step, PENDING, None, None, count)
    state = latest.outcome if latest.outcome is not None else RUNNING
    return StepSummary(step, state, latest.started, latest.finished, count)


def _attempt(row: tuple[Any, ...]) -> Attempt:
    attempt_id, step, number, started, finished, outcome, outputs, error = row
    return Attempt(
        id=attempt_id,
        step=step,
        attempt=number,
        started=started,
        finished=finished,
        outcome=outcome,
        outputs=None if outputs is None else _load_object(outputs),
        error=error,
    )


def _refuse_pending_skip(db: sqlite3.Connection) -> None:
    row = db.execute("SELECT id FROM skips WHERE state = ?", (SKIP_PENDING,)).fetchone()
    if row is not None:
        raise ValueError(f"skip {row[0]} is still pending; confirm or void it first")


def _refuse_skipped_event(db: sqlite3.Connection, record: SkipRecord) -> None:
    row = db.execute(
        "SELECT id FROM skips WHERE state = ? AND file = ? AND position = ? "
        "AND errno = ?",
        (SKIP_DONE, record.file, record.position, record.errno),
    ).fetchone()
    if row is not None:
        raise ValueError(
            f"the event at {record.file}:{record.position} with error "
            f"{record.errno} was already skipped (skip {row[0]})"
        )


def _count_done_skips(db: sqlite3.Connection, label: str) -> dict[str, int]:
    rows = db.execute(
        f"SELECT {label} AS label, COUNT(*) FROM skips WHERE state = ? "
        "GROUP BY label ORDER BY label",
        (SKIP_DONE,),
    )
    return dict(rows)
