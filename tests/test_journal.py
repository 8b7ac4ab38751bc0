"""Tests of the journal: real SQLite files, real processes for locks and kills."""

from __future__ import annotations

import os
import re
import signal
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from replicator.errors import ExitCode, LockHeldError, ReplicatorError
from replicator.journal import (
    SCHEMA_VERSION,
    Attempt,
    Event,
    Journal,
    LagSample,
    LockHolder,
    SkipRecord,
    StepSummary,
    utc_iso,
)

START = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)
CHILD_SINCE = "2024-05-01T09:30:00.000Z"
CHILD_TIMEOUT_S = 5
KILL_AFTER_IDS = 40

# Every child process opens the same journal with a clock fixed at CHILD_SINCE.
CHILD_PRELUDE = """
import socket, sys
from datetime import UTC, datetime
from pathlib import Path
from replicator.errors import LockHeldError
from replicator.journal import Journal

journal = Journal.open(
    Path(sys.argv[1]), clock=lambda: datetime(2024, 5, 1, 9, 30, tzinfo=UTC)
)
"""
HOLD_LOCK = """
journal.acquire_lock("run")
print("locked", flush=True)
sys.stdin.readline()
"""
TAKE_LOCK_AND_EXIT = """
journal.acquire_lock("run")
"""
TAKE_LOCK_ELSEWHERE_AND_EXIT = """
socket.gethostname = lambda: "bastion-2"
journal.acquire_lock("run")
"""
RACE_FOR_LOCK = """
print("ready", flush=True)
sys.stdin.readline()
try:
    journal.acquire_lock("run")
    print("won", flush=True)
except LockHeldError:
    print("held", flush=True)
sys.stdin.readline()
"""
WRITE_EVENTS_FOREVER = """
payload = "x" * 4096
while True:
    print(journal.record_event("tick", {"payload": payload}), flush=True)
"""


class FakeClock:
    """A clock that stands still until the test moves it."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "nested" / "sandbox.db"


@pytest.fixture
def journal(path: Path, clock: FakeClock) -> Iterator[Journal]:
    with Journal.open(path, clock=clock) as opened:
        yield opened


def child_command(body: str, path: Path) -> list[str]:
    return [sys.executable, "-c", CHILD_PRELUDE + body, str(path)]


def run_child(body: str, path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        child_command(body, path),
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT_S,
        check=True,
    )


@contextmanager
def spawn_child(body: str, path: Path) -> Iterator[subprocess.Popen[str]]:
    child = subprocess.Popen(
        child_command(body, path),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        yield child
    finally:
        if child.poll() is None:
            child.kill()
        child.communicate(timeout=CHILD_TIMEOUT_S)


def skip_record(
    *,
    time: str = "2024-05-01T12:00:00.000Z",
    rule: str = "late-orders",
    errno: int = 1062,
    position: int = 4711,
    schema: str | None = "shop",
    table: str | None = "order_items",
) -> SkipRecord:
    return SkipRecord(
        time=time,
        rule=rule,
        action="skip",
        errno=errno,
        error="Duplicate entry '42' for key 'PRIMARY'",
        file="mysql-bin-changelog.000123",
        position=position,
        schema=schema,
        table=table,
        keys="id=42",
    )


# -- timestamps --------------------------------------------------------------


def test_utc_iso_has_milliseconds_and_z_in_utc() -> None:
    """Aware datetimes are converted to UTC and cut to milliseconds."""
    plus_two = timezone(timedelta(hours=2))
    moment = datetime(2024, 5, 1, 14, 3, 4, 567891, tzinfo=plus_two)

    assert utc_iso(moment) == "2024-05-01T12:03:04.567Z"
    assert utc_iso(datetime(2024, 5, 1, tzinfo=UTC)) == "2024-05-01T00:00:00.000Z"


def test_utc_iso_refuses_naive_datetime() -> None:
    """A datetime without a timezone is ambiguous and refused."""
    with pytest.raises(ValueError, match="no timezone"):
        utc_iso(datetime(2024, 5, 1, 12, 0))


# -- opening -----------------------------------------------------------------


def test_open_creates_parents_schema_and_run_id(path: Path, clock: FakeClock) -> None:
    """A new journal gets its directories, the schema version and a run id."""
    with Journal.open(path, clock=clock) as journal:
        assert path.is_file()
        assert journal.path == path
        assert len(journal.run_id) == 12
        assert int(journal.run_id, 16) >= 0
        assert journal.created() == "2024-05-01T12:00:00.000Z"
        assert journal.get_meta("schema_version") == SCHEMA_VERSION
        assert journal.get_meta("run_id") == journal.run_id


def test_reopen_keeps_run_id_and_leaves_file_unchanged(
    path: Path, clock: FakeClock
) -> None:
    """Reopening a current journal reads it and writes nothing to it."""
    with Journal.open(path, clock=clock) as first:
        first.record_event("note", {"text": "hello"})
    before = path.read_bytes()

    clock.advance(3600)
    with Journal.open(path, clock=clock) as second:
        assert second.run_id == first.run_id
        assert second.created() == "2024-05-01T12:00:00.000Z"
        assert second.events() == [
            Event(1, "2024-05-01T12:00:00.000Z", "note", {"text": "hello"})
        ]

    assert path.read_bytes() == before


def test_open_refuses_a_newer_schema(path: Path) -> None:
    """A journal written by a newer release is not touched."""
    Journal.open(path).close()
    with sqlite3.connect(path) as db:
        db.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    db.close()

    with pytest.raises(ReplicatorError) as raised:
        Journal.open(path)

    assert raised.value.message == (
        f"the journal {path} has schema version 99; this replicator knows "
        f"versions up to {SCHEMA_VERSION}"
    )


def test_open_refuses_another_sqlite_database(tmp_path: Path) -> None:
    """A SQLite file with foreign tables is not turned into a journal."""
    path = tmp_path / "app.db"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE customers (id INTEGER)")
    db.close()

    with pytest.raises(ReplicatorError) as raised:
        Journal.open(path)

    assert raised.value.message == (
        f"{path} is a SQLite database but not a replicator journal"
    )


def test_open_refuses_a_file_that_is_not_sqlite(tmp_path: Path) -> None:
    """Garbage at the path is reported as an unreadable journal, not a crash."""
    path = tmp_path / "notes.db"
    path.write_text("not a database, just words " * 100)

    with pytest.raises(ReplicatorError) as raised:
        Journal.open(path)

    assert raised.value.message == (
        f"cannot open the journal {path}: file is not a database"
    )


# -- meta --------------------------------------------------------------------


def test_meta_round_trips_json_and_guards_own_keys(journal: Journal) -> None:
    """Meta values come back as stored; the journal's own keys are refused."""
    journal.set_meta("source", {"cluster": "sandbox-source", "generation": 3})
    journal.set_meta("source", {"cluster": "sandbox-source", "generation": 2})

    assert journal.get_meta("source") == {"cluster": "sandbox-source", "generation": 2}
    assert journal.get_meta("absent") is None
    with pytest.raises(ValueError, match="'run_id' belongs to the journal"):
        journal.set_meta("run_id", "0123456789ab")


# -- step attempts -----------------------------------------------------------


def test_attempts_are_numbered_and_open_ones_closed_as_crashed(
    journal: Journal, clock: FakeClock
) -> None:
    """A new attempt closes the step's open one as crashed and counts on."""
    first = journal.start_attempt("clone")
    clock.advance(60)
    second = journal.start_attempt("clone")
    other = journal.start_attempt("preflight")
    clock.advance(1.5)
    journal.finish_attempt(second, "done", outputs={"cluster": "sandbox-clone"})

    assert journal.attempts("clone") == [
        Attempt(
            id=first,
            step="clone",
            attempt=1,
            started="2024-05-01T12:00:00.000Z",
            finished="2024-05-01T12:01:00.000Z",
            outcome="crashed",
            outputs=None,
            error=None,
        ),
        Attempt(
            id=second,
            step="clone",
            attempt=2,
            started="2024-05-01T12:01:00.000Z",
            finished="2024-05-01T12:01:01.500Z",
            outcome="done",
            outputs={"cluster": "sandbox-clone"},
            error=None,
        ),
    ]
    assert [attempt.id for attempt in journal.attempts()] == [first, second, other]


def test_finish_attempt_refuses_bad_outcome_and_closed_attempt(
    journal: Journal,
) -> None:
    """Only the five outcomes close an attempt, and only an open one."""
    attempt = journal.start_attempt("clone")

    with pytest.raises(ValueError, match="outcome 'ok' is not one of"):
        journal.finish_attempt(attempt, "ok")
    journal.finish_attempt(attempt, "failed", error="InvalidParameterValue")
    with pytest.raises(ValueError, match=f"attempt {attempt} is not an open attempt"):
        journal.finish_attempt(attempt, "done")
    assert journal.attempts("clone")[0].error == "InvalidParameterValue"


def test_step_outputs_come_from_the_latest_done_attempt(journal: Journal) -> None:
    """Outputs are the latest done attempt's; a later failure hides is_done only."""
    assert journal.step_outputs("binlog_position") is None

    for position in (4, 154):
        attempt = journal.start_attempt("binlog_position")
        journal.finish_attempt(attempt, "done", outputs={"position": position})
    assert journal.is_done("binlog_position") is True

    failed = journal.start_attempt("binlog_position")
    journal.finish_attempt(failed, "failed", error="timeout")

    assert journal.step_outputs("binlog_position") == {"position": 154}
    assert journal.is_done("binlog_position") is False


def test_done_attempt_without_outputs_gives_empty_outputs(journal: Journal) -> None:
    """A step done without outputs reads as done with an empty dict."""
    attempt = journal.start_attempt("binlog_format")
    journal.finish_attempt(attempt, "done")

    assert journal.step_outputs("binlog_format") == {}
    assert journal.is_done("binlog_format") is True


def test_summaries_follow_the_given_order(journal: Journal, clock: FakeClock) -> None:
    """Each step shows its latest attempt's state and times, in the asked order."""
    done = journal.start_attempt("preflight")
    clock.advance(2)
    journal.finish_attempt(done, "done")
    halted = journal.start_attempt("catch_up")
    clock.advance(5)
    journal.finish_attempt(halted, "halted", error="rule #1 reached max_skips")
    journal.start_attempt("clone")

    summaries = journal.summaries(["clone", "preflight", "reboot_writer", "catch_up"])

    assert summaries == [
        StepSummary("clone", "running", "2024-05-01T12:00:07.000Z", None, 1),
        StepSummary(
            "preflight",
            "done",
            "2024-05-01T12:00:00.000Z",
            "2024-05-01T12:00:02.000Z",
            1,
        ),
        StepSummary("reboot_writer", "pending", None, None, 0),
        StepSummary(
            "catch_up",
            "halted",
            "2024-05-01T12:00:02.000Z",
            "2024-05-01T12:00:07.000Z",
            1,
        ),
    ]


def test_reset_step_makes_it_pending_and_keeps_history(journal: Journal) -> None:
    """After a reset the step is pending with no outputs; its attempts remain."""
    first = journal.start_attempt("replication_user")
    journal.finish_attempt(first, "done", outputs={"user": "repl_user"})

    journal.reset_step("replication_user")

    assert journal.is_done("replication_user") is False
    assert journal.step_outputs("replication_user") is None
    assert journal.summaries(["replication_user"]) == [
        StepSummary("replication_user", "pending", None, None, 1)
    ]
    assert [a.outcome for a in journal.attempts("replication_user")] == ["done"]
    assert journal.events("step_reset") == [
        Event(1, "2024-05-01T12:00:00.000Z", "step_reset", {"step": "replication_user"})
    ]

    second = journal.start_attempt("replication_user")
    journal.finish_attempt(second, "done", outputs={"user": "repl_user2"})
    assert journal.attempts("replication_user")[1].attempt == 2
    assert journal.step_outputs("replication_user") == {"user": "repl_user2"}


# -- events and lag ----------------------------------------------------------


def test_events_filter_by_kind_and_since_id(journal: Journal) -> None:
    """Events come back oldest first, filtered by kind and by id."""
    first = journal.record_event("rds_event", {"message": "reboot started"})
    journal.record_event("note", {"text": "operator paused"})
    third = journal.record_event("rds_event", {"message": "reboot finished"})

    assert [event.id for event in journal.events()] == [first, first + 1, third]
    assert journal.events("rds_event", since_id=first) == [
        (third, "2024-05-01T12:00:00.000Z", "rds_event", {"message": "reboot finished"})
    ]


def test_lag_samples_round_trip(journal: Journal) -> None:
    """Lag samples are stored as given, nulls included, oldest first."""
    samples = [
        LagSample("2024-05-01T12:00:00.000Z", 1024, 3.0, None, "mysql-bin.000002", 4),
        LagSample("2024-05-01T12:00:02.000Z", None, None, 0.25, None, None),
    ]
    for sample in samples:
        journal.record_lag(sample)

    assert journal.lag_samples() == samples
    with pytest.raises(ValueError, match="lag sample time '12:00' is not ISO 8601"):
        journal.record_lag(LagSample("12:00", 0, 0.0, None, None, None))


# -- lock --------------------------------------------------------------------


def test_lock_is_reentrant_and_released_by_its_holder(journal: Journal) -> None:
    """The holding process may take the lock again; releasing frees it."""
    journal.acquire_lock("run")
    journal.acquire_lock("run")

    assert journal.lock_holder() == LockHolder(
        socket.gethostname(), os.getpid(), "run", "2024-05-01T12:00:00.000Z"
    )
    journal.release_lock()
    assert journal.lock_holder() is None


def test_lock_held_by_a_live_process_is_refused(journal: Journal, path: Path) -> None:
    """Another live process's lock raises LockHeldError naming it, exit code 4."""
    with spawn_child(HOLD_LOCK, path) as child:
        assert child.stdout is not None
        assert child.stdout.readline() == "locked\n"

        with pytest.raises(LockHeldError) as raised:
            journal.acquire_lock("cutover")
        journal.release_lock()

        assert raised.value.message == (
            f"the runbook's journal {path} is locked by 'run', pid {child.pid} "
            f"on host {socket.gethostname()}, since {CHILD_SINCE}"
        )
        assert raised.value.exit_code == ExitCode.LOCKED
        assert int(raised.value.exit_code) == 4
        assert journal.lock_holder() == LockHolder(
            socket.gethostname(), child.pid, "run", CHILD_SINCE
        )


def test_stale_lock_of_a_dead_process_is_taken_over(
    journal: Journal, path: Path
) -> None:
    """A lock left by a dead process on this host is taken and the takeover logged."""
    run_child(TAKE_LOCK_AND_EXIT, path)
    stale = journal.lock_holder()
    assert stale is not None

    journal.acquire_lock("cutover")

    assert journal.lock_holder() == LockHolder(
        socket.gethostname(), os.getpid(), "cutover", "2024-05-01T12:00:00.000Z"
    )
    assert journal.events("lock_takeover") == [
        Event(
            1,
            "2024-05-01T12:00:00.000Z",
            "lock_takeover",
            {
                "previous": {
                    "host": socket.gethostname(),
                    "pid": stale.pid,
                    "command": "run",
                    "since": CHILD_SINCE,
                },
                "pid": os.getpid(),
                "command": "cutover",
            },
        )
    ]


def test_lock_from_another_host_is_never_taken_over(
    journal: Journal, path: Path
) -> None:
    """Liveness cannot be checked elsewhere: another host's lock stays held."""
    run_child(TAKE_LOCK_ELSEWHERE_AND_EXIT, path)
    holder = journal.lock_holder()
    assert holder is not None

    with pytest.raises(LockHeldError, match=f"pid {holder.pid} on host bastion-2"):
        journal.acquire_lock("run")
    journal.release_lock()

    assert journal.lock_holder() == LockHolder(
        "bastion-2", holder.pid, "run", CHILD_SINCE
    )
    assert journal.events() == []


def test_concurrent_acquire_has_exactly_one_winner(path: Path) -> None:
    """Three processes racing for the lock: one wins, the others see it held."""
    Journal.open(path).close()

    with (
        spawn_child(RACE_FOR_LOCK, path) as first,
        spawn_child(RACE_FOR_LOCK, path) as second,
        spawn_child(RACE_FOR_LOCK, path) as third,
    ):
        children = [first, second, third]
        results = race(children)
        with Journal.open(path) as observer:
            holder = observer.lock_holder()

    assert sorted(results.values()) == ["held", "held", "won"]
    winner = next(pid for pid, result in results.items() if result == "won")
    assert holder == LockHolder(socket.gethostname(), winner, "run", CHILD_SINCE)


def race(children: list[subprocess.Popen[str]]) -> dict[int, str]:
    for child in children:
        assert child.stdout is not None
        assert child.stdout.readline() == "ready\n"

    for child in children:
        assert child.stdin is not None
        child.stdin.write("go\n")
        child.stdin.flush()

    results = {}
    for child in children:
        assert child.stdout is not None
        results[child.pid] = child.stdout.readline().strip()
    return results


# -- skips -------------------------------------------------------------------


def test_skip_is_pending_until_confirmed(journal: Journal) -> None:
    """A begun skip is pending, survives a reopen, and counts once confirmed."""
    record = skip_record()
    skip_id = journal.begin_skip(record)

    assert journal.pending_skip() == (skip_id, record)
    assert journal.skips() == []
    with Journal.open(journal.path) as reopened:
        assert reopened.pending_skip() == (skip_id, record)

    journal.confirm_skip(skip_id)

    assert journal.pending_skip() is None
    assert journal.skips() == [record]


def test_voided_skip_is_not_counted_and_may_be_begun_again(journal: Journal) -> None:
    """A skip whose position did not move is void; the event can be tried again."""
    record = skip_record()
    voided = journal.begin_skip(record)
    journal.void_skip(voided)

    assert journal.pending_skip() is None
    assert journal.skips() == []
    retried = journal.begin_skip(record)
    journal.confirm_skip(retried)
    assert journal.skips() == [record]


def test_event_already_skipped_is_refused(journal: Journal) -> None:
    """The same (file, position, errno) is skipped at most once."""
    journal.confirm_skip(journal.begin_skip(skip_record()))

    with pytest.raises(
        ValueError, match=re.escape("mysql-bin-changelog.000123:4711 with error 1062")
    ):
        journal.begin_skip(skip_record(time="2024-05-01T12:00:05.000Z"))
    other_error = journal.begin_skip(skip_record(errno=1032))

    assert journal.pending_skip() == (other_error, skip_record(errno=1032))


def test_second_skip_is_refused_while_one_is_pending(journal: Journal) -> None:
    """A pending skip must be confirmed or voided before the next begins."""
    pending = journal.begin_skip(skip_record())

    with pytest.raises(ValueError, match=f"skip {pending} is still pending"):
        journal.begin_skip(skip_record(position=9000))
    with pytest.raises(ValueError, match="skip 999 is not pending"):
        journal.confirm_skip(999)


def test_skip_counts_by_rule_and_table(journal: Journal) -> None:
    """Counts cover done skips only; unknown tables are counted as 'unknown'."""
    done = [
        skip_record(position=100),
        skip_record(position=200, rule="#2", table="orders"),
        skip_record(position=300, schema=None, table=None),
        skip_record(position=400, rule="#2", table=None),
    ]
    for record in done:
        journal.confirm_skip(journal.begin_skip(record))
    journal.void_skip(journal.begin_skip(skip_record(position=500)))

    assert journal.skip_counts() == {
        "total": 4,
        "by_rule": {"#2": 2, "late-orders": 2},
        "by_table": {"shop.order_items": 1, "shop.orders": 1, "unknown": 2},
    }


def test_skips_for_rule_since_counts_the_window(journal: Journal) -> None:
    """Only done skips of the rule at or after the given time are counted."""
    times = ["2024-05-01T12:00:00.000Z", "2024-05-01T12:00:30.000Z"]
    for position, time in enumerate(times, start=1):
        journal.confirm_skip(
            journal.begin_skip(skip_record(time=time, position=position))
        )
    journal.confirm_skip(journal.begin_skip(skip_record(rule="#2", position=3)))

    assert journal.skips_for_rule_since("late-orders", "2024-05-01T12:00:00.000Z") == 2
    assert journal.skips_for_rule_since("late-orders", "2024-05-01T12:00:30.000Z") == 1
    assert journal.skips_for_rule_since("late-orders", "2024-05-01T12:00:30.001Z") == 0


# -- secrets -----------------------------------------------------------------


def test_mask_is_applied_before_anything_is_stored(
    path: Path, clock: FakeClock
) -> None:
    """Error texts, skip keys and every JSON string pass through the mask."""

    def mask(text: str) -> str:
        return text.replace("s3cret", "*****")

    with Journal.open(path, clock=clock, mask=mask) as journal:
        attempt = journal.start_attempt("replication_user")
        journal.finish_attempt(
            attempt,
            "failed",
            outputs={"dsn": "repl:s3cret@db", "s3cret": ["a s3cret", 3, None]},
            error="Access denied for repl_user using password s3cret",
        )
        journal.record_event("note", {"nested": {"text": "s3cret!"}})
        journal.set_meta("dsn", "admin:s3cret@source")
        skip = SkipRecord(
            CHILD_SINCE,
            "#1",
            "skip",
            1062,
            "dup s3cret",
            "f",
            4,
            None,
            None,
            "pw=s3cret",
        )
        journal.begin_skip(skip)

    with Journal.open(path) as reopened:
        stored = reopened.attempts()[0]
        assert stored.error == "Access denied for repl_user using password *****"
        assert stored.outputs == {"dsn": "repl:*****@db", "*****": ["a *****", 3, None]}
        assert reopened.events()[0].data == {"nested": {"text": "*****!"}}
        assert reopened.get_meta("dsn") == "admin:*****@source"
        pending = reopened.pending_skip()
        assert pending is not None
        assert (pending[1].error, pending[1].keys) == ("dup *****", "pw=*****")
    for stored_file in path.parent.iterdir():
        assert b"s3cret" not in stored_file.read_bytes()


# -- crash safety ------------------------------------------------------------


def test_sigkill_during_writes_keeps_every_committed_row(path: Path) -> None:
    """A writer killed mid-loop leaves an intact journal with all it reported."""
    Journal.open(path).close()

    with spawn_child(WRITE_EVENTS_FOREVER, path) as child:
        assert child.stdout is not None
        reported = [int(child.stdout.readline()) for _ in range(KILL_AFTER_IDS)]
        os.kill(child.pid, signal.SIGKILL)
        tail = child.stdout.read()
        assert child.wait(timeout=CHILD_TIMEOUT_S) == -signal.SIGKILL
    reported += [
        int(line) for line in tail.splitlines(keepends=True) if line[-1] == "\n"
    ]

    assert path.with_name(path.name + "-wal").exists()  # recovery will run
    with sqlite3.connect(path) as db:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    db.close()
    with Journal.open(path) as journal:
        ids = [event.id for event in journal.events("tick")]
    assert set(reported) <= set(ids)
    assert ids == list(range(1, len(ids) + 1))
