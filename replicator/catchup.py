"""Catch-up: poll the replica until it is truly caught up, applying the skip policy.

"Caught up" means both replica threads run, the SQL thread has executed all
the I/O thread read, and the executed source coordinates are at or past the
source's coordinates read just before the replica poll, held for
``stable_polls`` polls. ``Seconds_Behind_Master`` is recorded but never
trusted.

Every skip is journaled in two phases so a crash can neither lose nor repeat
one: ``begin_skip`` before calling ``rds_skip_repl_error``, ``confirm_skip``
once the replica's position has moved. On resume a pending skip is settled
first by looking at where the replica stands.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import Any

from replicator import policy
from replicator.context import Context
from replicator.errors import HaltedError, StepFailedError
from replicator.journal import LagSample, SkipRecord, utc_iso
from replicator.mysql import errors as codes
from replicator.mysql.event_table import (
    analyse_error,
    is_coordinator_error,
    worker_error,
)
from replicator.mysql.flavor import Generation
from replicator.mysql.session import Session
from replicator.mysql.status import (
    BinlogCoordinates,
    ReplicaStatus,
    bytes_behind,
    is_caught_up,
    parse_binlog_file_index,
)

SKIP_CONFIRM_DEADLINE_S = 30.0
STALL_POLLS = 5
NETWORK_GRACE_S = 120.0
NETWORK_ERRORS = frozenset(
    {
        codes.CR_CONNECTION_ERROR,
        codes.CR_CONN_HOST_ERROR,
        codes.CR_UNKNOWN_HOST,
        codes.CR_SSL_CONNECTION_ERROR,
        codes.CR_SERVER_GONE,
        codes.CR_SERVER_LOST,
    }
)
HEARTBEAT_SCHEMA = "replicator_heartbeat"
WORKER_STATUS = (
    "SELECT * FROM performance_schema.replication_applier_status_by_worker "
    "WHERE LAST_ERROR_NUMBER <> 0"
)


@dataclass
class Poll:
    """One look at where replication stands."""

    source: BinlogCoordinates
    status: ReplicaStatus
    bytes_behind: int | None
    heartbeat_lag: float | None
    caught_up: bool


@dataclass
class CatchUpState:
    """What the loop remembers between polls."""

    stable: int = 0
    polls: int = 0
    last_exec: BinlogCoordinates | None = None
    unmoved: int = 0
    stall_reported: bool = False
    network_error_since: float | None = None
    retried_error: bool = False
    skips_this_run: int = 0
    history: list[Poll] = field(default_factory=list)


class CatchUp:
    """The catch-up loop, shared by ``run`` and ``watch``."""

    def __init__(
        self, ctx: Context, on_poll: Callable[[Poll, CatchUpState], None] | None = None
    ) -> None:
        self.ctx = ctx
        self.on_poll = on_poll
        self.spec = ctx.runbook.catch_up
        self.state = CatchUpState()
        self._by_rule: dict[str, int] | None = None

    # Resolved once per loop: each resolution describes the cluster through the
    # RDS API, and a loop that polls every second (and skips thousands of
    # events) would otherwise make several API calls per poll and per skip,
    # slow and throttled on a real account. The endpoints cannot change while
    # the loop runs: renames happen in cutover, which waits for the lock.
    @cached_property
    def source(self) -> Session:
        return self.ctx.source_sql()

    @cached_property
    def clone(self) -> Session:
        return self.ctx.clone_sql()

    @cached_property
    def generation(self) -> Generation:
        return self.ctx.clone_generation()

    # --- the loop ---------------------------------------------------------------------

    def run(self, *, until_caught_up: bool = True) -> dict[str, Any]:
        """Poll until caught up for ``stable_polls`` polls (or forever for watch)."""
        self.settle_pending_skip()
        self._retry_stopped_event()
        started = self.ctx.clock.monotonic()
        deadline = self.ctx.runbook.timeouts.catch_up
        while True:
            poll = self.poll()
            if until_caught_up and self.state.stable >= self.spec.stable_polls:
                return self._outputs(poll)
            if self.ctx.clock.monotonic() - started > deadline:
                raise StepFailedError(
                    f"not caught up after {round(deadline)}s "
                    f"({poll.bytes_behind} bytes behind)",
                    hint="run `replicator watch` to keep going, or raise "
                    "timeouts.catch_up",
                )
            if poll.status.error_thread is None:
                self.ctx.clock.sleep(self.spec.poll_interval)

    def poll(self) -> Poll:
        """Take one poll: read, journal the lag, act on an error, count stability."""
        source_before = self._source_coordinates()
        status = self._replica_status()
        heartbeat = self._heartbeat_lag() if self.spec.heartbeat else None
        behind = self._bytes_behind(source_before, status)
        caught_up = is_caught_up(status, source_before) and status.error_thread is None
        poll = Poll(source_before, status, behind, heartbeat, caught_up)

        self._record_lag(poll)
        self.state.polls += 1
        self.state.stable = self.state.stable + 1 if caught_up else 0
        self._watch_for_stall(poll)
        if self.on_poll is not None:
            self.on_poll(poll, self.state)
        if status.error_thread is not None:
            self.handle_error(status)
        elif not status.running:
            self._start_stopped_threads(status)
        return poll

    def _outputs(self, poll: Poll) -> dict[str, Any]:
        executed = poll.status.exec_coordinates
        return {
            "exec_file": executed.file if executed else None,
            "exec_position": executed.position if executed else None,
            "polls": self.state.polls,
            "skips": len(self.ctx.journal.skips()),
            "caught_up_at": utc_iso(datetime.now(UTC)),
        }

    # --- reading ----------------------------------------------------------------------

    def _source_coordinates(self) -> BinlogCoordinates:
        coordinates = self.source.binlog_coordinates()
        if coordinates is None:
            raise StepFailedError(
                "binary logging is off on the source",
                hint="the source writer was restarted without binlog_format; "
                "check its parameter group",
            )
        return coordinates

    def _replica_status(self) -> ReplicaStatus:
        status = self.clone.replica_status(self.generation)
        if status is None:
            raise StepFailedError(
                "the clone has no replication configured",
                hint="run `replicator run` to configure it",
            )
        return status

    def _bytes_behind(
        self, source: BinlogCoordinates, status: ReplicaStatus
    ) -> int | None:
        executed = status.exec_coordinates
        if executed is None:
            return None
        sizes = self.source.binary_logs() if executed.file != source.file else None
        try:
            return bytes_behind(source, executed, sizes)
        except ValueError:
            return None

    def _heartbeat_lag(self) -> float | None:
        """Write a heartbeat row on the source; return how old the clone's copy is."""
        self.source.execute(f"CREATE DATABASE IF NOT EXISTS {HEARTBEAT_SCHEMA}")
        self.source.execute(
            f"CREATE TABLE IF NOT EXISTS {HEARTBEAT_SCHEMA}.heartbeat "
            "(id TINYINT PRIMARY KEY, ts DATETIME(6) NOT NULL)"
        )
        self.source.execute(
            f"INSERT INTO {HEARTBEAT_SCHEMA}.heartbeat (id, ts) "
            "VALUES (1, UTC_TIMESTAMP(6)) "
            "ON DUPLICATE KEY UPDATE ts = VALUES(ts)"
        )
        try:
            rows = self.clone.query(
                "SELECT TIMESTAMPDIFF(MICROSECOND, ts, UTC_TIMESTAMP(6)) AS lag "
                f"FROM {HEARTBEAT_SCHEMA}.heartbeat WHERE id = 1"
            )
        except Exception:  # the table has not reached the clone yet
            return None
        return (
            float(rows[0]["lag"]) / 1e6 if rows and rows[0]["lag"] is not None else None
        )

    def _record_lag(self, poll: Poll) -> None:
        executed = poll.status.exec_coordinates
        self.ctx.journal.record_lag(
            LagSample(
                time=self.ctx.journal.now(),
                bytes_behind=poll.bytes_behind,
                seconds_behind=(
                    None
                    if poll.status.seconds_behind is None
                    else float(poll.status.seconds_behind)
                ),
                heartbeat_lag=poll.heartbeat_lag,
                exec_file=executed.file if executed else None,
                exec_position=executed.position if executed else None,
            )
        )

    def _watch_for_stall(self, poll: Poll) -> None:
        executed = poll.status.exec_coordinates
        moving_source = executed is not None and poll.source > executed
        if executed == self.state.last_exec and moving_source and poll.status.running:
            self.state.unmoved += 1
        else:
            self.state.unmoved = 0
            self.state.stall_reported = False
        self.state.last_exec = executed
        if self.state.unmoved >= STALL_POLLS and not self.state.stall_reported:
            self.ctx.log.warning(
                "replica_stalled",
                polls=self.state.unmoved,
                exec=str(executed),
                source=str(poll.source),
                hint="threads say running but the replica does not advance: look for "
                "a long transaction or lock on the clone",
            )
            self.state.stall_reported = True

    # --- threads stopped --------------------------------------------------------------

    def _start_stopped_threads(self, status: ReplicaStatus) -> None:
        if status.io_running == "Connecting":
            return
        self.ctx.log.info(
            "replica_threads_starting", io=status.io_running, sql=status.sql_running
        )
        self.clone.call_rds(self.generation, "start_replication")

    def _retry_stopped_event(self) -> None:
        """Retry once per command what the operator may have fixed since the halt.

        A failed SQL event is executed again. A receiver that failed to log in
        or to read the binlog is reconnected now: left alone it retries only
        after its connect-retry interval (60 s by default), and until then the
        old error would halt this command although the cause is fixed.
        """
        status = self._replica_status()
        # Each thread on its own: a receiver still reconnecting after an outage
        # must not keep the failed event from its retry.
        sql_failed = not status.sql_ok and bool(
            status.last_sql_errno or status.last_errno
        )
        io_failed = bool(status.last_io_errno) and (
            status.last_io_errno not in NETWORK_ERRORS
        )
        if sql_failed:
            self.ctx.log.info("retrying_failed_event", errno=status.last_sql_errno)
        if io_failed:
            self.ctx.log.info("reconnecting_receiver", errno=status.last_io_errno)
            self.clone.call_rds(self.generation, "stop_replication")
        if sql_failed or io_failed:
            self.clone.call_rds(self.generation, "start_replication")
            self.ctx.clock.sleep(1.0)

    # --- errors -----------------------------------------------------------------------

    def handle_error(self, status: ReplicaStatus) -> None:
        """Apply the skip policy to the replica's error, and to the next ones.

        After a skip, the status read to confirm it shows whether the next
        event failed too; errors in a row are handled from that status, one
        by one, each on record, without a full poll in between.
        """
        current: ReplicaStatus | None = status
        while current is not None and current.error_thread is not None:
            current = self._handle_one(current)

    def _handle_one(self, status: ReplicaStatus) -> ReplicaStatus | None:
        """Handle one error; return the status after a skip, else None."""
        thread = status.error_thread
        if thread is None:
            return None
        errno, text = self._error_of(status, thread)
        if thread == "io" and errno in NETWORK_ERRORS:
            self._tolerate_network_error(errno, text)
            return None
        self.state.network_error_since = None
        event = analyse_error(text)
        decision = policy.decide(
            self.spec.skip_policy,
            thread=thread,
            errno=errno,
            schema=event.schema,
            table=event.table,
            skips_by_rule=self._skips_by_rule(),
            skips_last_minute_by_rule=self._skips_last_minute(),
            seconds_until_window_frees=self._window_frees_in(),
        )
        self.ctx.log.info(
            "replication_error",
            thread=thread,
            errno=errno,
            table=event.table,
            decision=decision.action,
            rule=decision.rule,
        )
        if decision.action == policy.SKIP:
            return self._skip(status, errno, text, decision, event)
        if decision.action == policy.NEXT_LOG:
            self._next_log(status, errno, text, decision)
        elif decision.action == policy.WAIT:
            self.ctx.log.warning(
                "skip_rate_limited",
                rule=decision.rule,
                wait_s=decision.wait_seconds,
                reason=decision.reason,
            )
            self.ctx.clock.sleep(decision.wait_seconds)
        else:
            message, hint = diagnose(self.ctx, status, errno, text, decision.reason)
            raise HaltedError(message, hint=hint)
        return None

    def _error_of(self, status: ReplicaStatus, thread: str) -> tuple[int, str]:
        if thread == "io":
            return codes.classic_errno(status.last_io_errno), status.last_io_error
        errno = status.last_sql_errno or status.last_errno
        text = status.last_sql_error or status.last_error
        if is_coordinator_error(text):
            worker = worker_error(self.clone.query(WORKER_STATUS))
            if worker is not None:
                return worker
        return errno, text

    def _tolerate_network_error(self, errno: int, text: str) -> None:
        now = self.ctx.clock.monotonic()
        if self.state.network_error_since is None:
            self.state.network_error_since = now
            self.ctx.log.warning("replica_cannot_reach_source", errno=errno, error=text)
        if now - self.state.network_error_since < NETWORK_GRACE_S:
            self.ctx.clock.sleep(self.spec.poll_interval)
            return
        raise HaltedError(
            "the clone has not reached the source for "
            f"{round(now - self.state.network_error_since)}s: "
            f"error {errno}: {text}",
            hint="check the security groups (the clone's groups must reach the "
            "source's "
            "port), the source endpoint, and TLS settings (replication.tls)",
        )

    def _skips_by_rule(self) -> dict[str, int]:
        # Read from the journal once per loop, then kept by _confirm_moved:
        # counting every skip again on every error made clearing N events
        # cost O(N) journal reads each.
        if self._by_rule is None:
            self._by_rule = dict(self.ctx.journal.skip_counts()["by_rule"])
        return dict(self._by_rule)

    def _counted(self, rule: str) -> None:
        """Keep the per-rule count in step with a skip just confirmed."""
        if self._by_rule is not None:
            self._by_rule[rule] = self._by_rule.get(rule, 0) + 1

    def _journal_now(self) -> datetime:
        # Skip records are stamped by the journal's clock: measure the rate
        # window with the same clock, or an injected clock would disagree.
        return datetime.fromisoformat(self.ctx.journal.now().replace("Z", "+00:00"))

    def _skips_last_minute(self) -> dict[str, int]:
        since = utc_iso(self._journal_now() - timedelta(minutes=1))
        rules = {rule.name for rule in self.spec.skip_policy if rule.max_per_minute}
        return {
            rule: self.ctx.journal.skips_for_rule_since(rule, since) for rule in rules
        }

    def _window_frees_in(self) -> float:
        # Reading every skip of the journal on every error made clearing N
        # events cost O(N^2); only a rule with max_per_minute needs the window.
        if not any(rule.max_per_minute for rule in self.spec.skip_policy):
            return 0.0
        now = self._journal_now()
        since = now - timedelta(minutes=1)
        times = [
            datetime.fromisoformat(skip.time.replace("Z", "+00:00"))
            for skip in self.ctx.journal.skips()
        ]
        recent = [moment for moment in times if moment >= since]
        if not recent:
            return 0.0
        return max(
            0.1,
            (min(recent) + timedelta(minutes=1) - now).total_seconds(),
        )

    # --- skipping ---------------------------------------------------------------------

    def _skip(
        self,
        status: ReplicaStatus,
        errno: int,
        text: str,
        decision: policy.Decision,
        event: Any,
    ) -> ReplicaStatus:
        executed = status.exec_coordinates
        if executed is None:
            raise StepFailedError(
                "the replica reports an error but no executed position"
            )
        record = SkipRecord(
            time=self.ctx.journal.now(),
            rule=decision.rule or "",
            action=policy.SKIP,
            errno=errno,
            error=text,
            file=executed.file,
            position=executed.position,
            schema=event.schema,
            table=event.table,
            keys=event.keys,
        )
        skip_id = self.ctx.journal.begin_skip(record)
        from replicator.context import fault_point

        fault_point("catch_up", "skip_before_call")
        self.clone.call_rds(self.generation, "skip_repl_error")
        fault_point("catch_up", "skip_after_call")
        return self._confirm_moved(skip_id, record)

    def _confirm_moved(self, skip_id: int, record: SkipRecord) -> ReplicaStatus:
        where = BinlogCoordinates(record.file, record.position)
        started = time.monotonic()
        while time.monotonic() - started < SKIP_CONFIRM_DEADLINE_S:
            status = self._replica_status()
            if skip_took_effect(status, record, where):
                self.ctx.journal.confirm_skip(skip_id)
                self.state.skips_this_run += 1
                self._counted(record.rule)
                self.ctx.log.info(
                    "event_skipped",
                    rule=record.rule,
                    errno=record.errno,
                    table=f"{record.schema}.{record.table}",
                    keys=record.keys,
                    file=record.file,
                    position=record.position,
                )
                return status
            time.sleep(0.005)
        self.ctx.journal.void_skip(skip_id)
        raise StepFailedError(
            f"skipping the event at {where} did not move the replica",
            hint="read SHOW REPLICA STATUS on the clone; the skip was not recorded",
        )

    def settle_pending_skip(self) -> None:
        """Confirm or void a skip a crash left pending, by where the replica stands."""
        pending = self.ctx.journal.pending_skip()
        if pending is None:
            return
        skip_id, record = pending
        status = self._replica_status()
        where = BinlogCoordinates(record.file, record.position)
        if skip_took_effect(status, record, where):
            self.ctx.journal.confirm_skip(skip_id)
            self.ctx.log.info(
                "pending_skip_confirmed", file=record.file, position=record.position
            )
        else:
            self.ctx.journal.void_skip(skip_id)
            self.ctx.log.info(
                "pending_skip_voided", file=record.file, position=record.position
            )

    def _next_log(
        self, status: ReplicaStatus, errno: int, text: str, decision: policy.Decision
    ) -> None:
        read = status.read_coordinates
        if read is None:
            raise StepFailedError("the replica reports error 1236 but no read position")
        index = parse_binlog_file_index(read.file)
        record = SkipRecord(
            time=self.ctx.journal.now(),
            rule=decision.rule or "",
            action=policy.NEXT_LOG,
            errno=errno,
            error=text,
            file=read.file,
            position=read.position,
            schema=None,
            table=None,
            keys=None,
        )
        skip_id = self.ctx.journal.begin_skip(record)
        self.ctx.log.warning(
            "moving_to_next_binlog",
            file=read.file,
            position=read.position,
            warning="every event between this position and the start of the next "
            "file is lost on the clone",
        )
        self.clone.call_rds(self.generation, "next_source_log", index)
        self.ctx.journal.confirm_skip(skip_id)
        self._counted(record.rule)


def skip_took_effect(
    status: ReplicaStatus, record: SkipRecord, where: BinlogCoordinates
) -> bool:
    """Tell whether the replica has moved past a skipped event."""
    executed = status.exec_coordinates
    still_failing = (
        not status.sql_ok
        and (status.last_sql_errno or status.last_errno) == record.errno
        and executed == where
    )
    if still_failing:
        return False
    return executed != where or status.sql_ok


def diagnose(
    ctx: Context, status: ReplicaStatus, errno: int, text: str, reason: str
) -> tuple[str, str]:
    """Return (message, next action) for a halt."""
    event = analyse_error(text)
    table = f"{event.schema}.{event.table}" if event.table else "an unknown table"
    where = (
        status.exec_coordinates
        if status.error_thread == "sql"
        else status.read_coordinates
    )
    message = (
        f"replication halted on error {errno} ({codes.describe(errno)}) "
        f"on {table}{' key ' + event.keys if event.keys else ''} at {where}: {reason}\n"
        f"  server said: {text[:500]}"
    )
    return message, _next_action(ctx, errno, table)


def _next_action(ctx: Context, errno: int, table: str) -> str:
    if errno == codes.ER_SOURCE_FATAL_READING_BINLOG:
        needed = _retention_needed(ctx)
        return (
            "binlog retention too short: the source purged a binlog the clone still "
            f"needed; a retention of at least {needed} hours would have kept it. Raise "
            "replication.binlog_retention_hours and recreate the clone "
            "(`abort`, `run`), "
            "or add a next_log rule for 1236 to move on and record the loss"
        )
    if errno == codes.ER_ACCESS_DENIED:
        return (
            "the clone cannot log in to the source as "
            f"{ctx.runbook.replication.user!r}: "
            "check the user exists with its grants and the password source, then "
            "`replicator run` (the replication_user step re-creates it); the clone "
            "keeps the password replication was started with, so a password changed "
            "in the runbook since then must be put back"
        )
    if errno == codes.ER_NO_SUCH_TABLE:
        return (
            f"{table} is missing on the clone: the schemas differ; create it "
            "there, then `replicator run`"
        )
    return (
        f"fix the row on the clone, or add a skip rule for error {errno} on {table} if "
        "losing the event is acceptable, then `replicator run` (the failed event "
        "is retried once)"
    )


def _retention_needed(ctx: Context) -> int:
    position = ctx.journal.step_outputs("binlog_position") or {}
    date = str(position.get("event_date") or "")
    try:
        since = datetime.fromisoformat(date)
    except ValueError:
        return ctx.runbook.replication.binlog_retention_hours
    if since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    hours = (datetime.now(UTC) - since).total_seconds() / 3600
    return max(1, math.ceil(hours) + 1)
