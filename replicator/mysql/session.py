"""Connections to the source and clone writers, and what the steps read from them.

Every statement sent is logged (``sql`` events at debug level) with its
parameters; parameters that are :class:`~replicator.secrets.Secret` are logged
as ``***`` and revealed only to the driver, which escapes them. A connection
lost while a server restarts (2003, 2006, 2013) is retried by a named policy.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from replicator.errors import StepFailedError
from replicator.mysql import errors as codes
from replicator.mysql.flavor import PROCEDURES, REPLICA_STATUS_STATEMENTS, Generation
from replicator.mysql.status import BinlogCoordinates, ReplicaStatus, normalise_status
from replicator.secrets import Secret

T = TypeVar("T")
CONNECT_TIMEOUT_S = 5
READ_TIMEOUT_S = 120
RECONNECT_DEADLINE_S = 180.0
ER_PARSE_ERROR = 1064


def mysql_errno(error: BaseException) -> int | None:
    """Return the MySQL error number carried by a PyMySQL error."""
    args = getattr(error, "args", ())
    if args and isinstance(args[0], int):
        return args[0]
    return None


def is_transient(error: BaseException) -> bool:
    """Tell whether a MySQL error means 'the server is (re)starting': retry."""
    import pymysql

    if not isinstance(error, pymysql.err.OperationalError | pymysql.err.InterfaceError):
        return False
    errno = mysql_errno(error)
    return errno is None or errno in codes.TRANSIENT_CONNECTION_ERRORS


class Session:
    """One logged connection to a writer, reconnecting when it restarts."""

    def __init__(
        self,
        role: str,
        *,
        host: str,
        port: int,
        user: str,
        password: Secret,
        log: Any,
        sleep: Callable[[float], None] = time.sleep,
        reconnect_deadline_s: float = RECONNECT_DEADLINE_S,
    ) -> None:
        self.role = role
        self.host = host
        self.port = port
        self.user = user
        self._password = password
        self.log = log.bind(server=role, host=host, port=port)
        self._sleep = sleep
        self._deadline = reconnect_deadline_s
        self._connection: Any = None

    # --- connecting -----------------------------------------------------------------

    def connect(self) -> Any:
        """Return the open connection, opening it when needed."""
        import pymysql

        if self._connection is not None and self._connection.open:
            return self._connection
        self._connection = pymysql.connect(
            host=self.host,
            port=self.port,
            user=self.user,
            # Bytes: the driver would encode a str as latin-1 and fail, quoting
            # the character, on anything else.
            password=self._password.reveal().encode(),
            autocommit=True,
            charset="utf8mb4",
            connect_timeout=CONNECT_TIMEOUT_S,
            read_timeout=READ_TIMEOUT_S,
            write_timeout=READ_TIMEOUT_S,
            cursorclass=pymysql.cursors.DictCursor,
        )
        return self._connection

    def close(self) -> None:
        """Close the connection if open."""
        if self._connection is not None:
            # Closing a dead connection is not an error.
            with contextlib.suppress(Exception):
                self._connection.close()
            self._connection = None

    def _retrying(self, action: Callable[[], T], *, retry: bool = True) -> T:
        import tenacity

        if not retry:
            return action()
        policy = tenacity.Retrying(
            retry=tenacity.retry_if_exception(is_transient),
            wait=tenacity.wait_exponential(multiplier=0.2, max=5),
            stop=tenacity.stop_after_delay(self._deadline),
            sleep=self._sleep,
            before_sleep=self._log_reconnect,
            reraise=True,
        )
        started = time.monotonic()
        try:
            return policy(action)
        except Exception as error:
            if not is_transient(error):
                raise
            waited = round(time.monotonic() - started)
            raise StepFailedError(
                f"cannot reach the {self.role} writer at {self.host}:{self.port} "
                f"(tried for {waited}s): {error}",
                hint="check that the cluster is available (`replicator status`), "
                "the network path, and the runbook's `connect` section; the "
                "journal keeps the state",
            ) from error

    def _log_reconnect(self, state: Any) -> None:
        self.close()
        error = state.outcome.exception() if state.outcome else None
        self.log.warning(
            "mysql_reconnect", attempt=state.attempt_number, error=str(error)
        )

    # --- statements -----------------------------------------------------------------

    def query(
        self, sql: str, args: Sequence[Any] = (), *, retry: bool = True
    ) -> list[dict[str, Any]]:
        """Run a statement and return its rows (retried across restarts)."""

        def run() -> list[dict[str, Any]]:
            return self._execute(sql, args)

        return self._retrying(run, retry=retry)

    def execute(self, sql: str, args: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """Run a statement that changes something; never retried blindly."""
        return self._execute(sql, args)

    def call(self, procedure: str, args: Sequence[Any] = ()) -> list[dict[str, Any]]:
        """Call a stored procedure and return the rows of its first result."""
        placeholders = ", ".join(["%s"] * len(args))
        return self._execute(f"CALL {procedure}({placeholders})", args)

    def _execute(self, sql: str, args: Sequence[Any]) -> list[dict[str, Any]]:
        shown = ["***" if isinstance(arg, Secret) else arg for arg in args]
        self.log.debug("sql", statement=sql, args=shown)
        values = [arg.reveal() if isinstance(arg, Secret) else arg for arg in args]
        connection = self.connect()
        with connection.cursor() as cursor:
            cursor.execute(sql, values or None)
            rows = list(cursor.fetchall() or [])
            while cursor.nextset():
                pass
        return rows

    # --- what the steps read ----------------------------------------------------------

    def variable(self, name: str) -> str | None:
        """Return a global variable's value."""
        rows = self.query("SELECT @@GLOBAL." + _identifier(name) + " AS value")
        value = rows[0]["value"] if rows else None
        return None if value is None else _text(value)

    def binlog_coordinates(self) -> BinlogCoordinates | None:
        """Return the source's current binlog file and position (None: no binlog)."""
        rows = self.query("SHOW MASTER STATUS")
        if not rows:
            return None
        return BinlogCoordinates(_text(rows[0]["File"]), int(rows[0]["Position"]))

    def binary_logs(self) -> dict[str, int]:
        """Return the source's binlog files with their sizes."""
        rows = self.query("SHOW BINARY LOGS")
        return {_text(row["Log_name"]): int(row["File_size"]) for row in rows}

    def replica_status(self, generation: Generation) -> ReplicaStatus | None:
        """Return the normalised replica status (None: no replication set up)."""
        import pymysql

        for statement in REPLICA_STATUS_STATEMENTS[generation]:
            try:
                rows = self.query(statement)
            except pymysql.err.ProgrammingError as error:
                if mysql_errno(error) == ER_PARSE_ERROR:
                    continue
                raise
            return normalise_status(rows[0] if rows else None)
        return None

    def call_rds(
        self, generation: Generation, purpose: str, *args: Any
    ) -> list[dict[str, Any]]:
        """Call the ``mysql.rds_*`` procedure for ``purpose`` of this generation."""
        procedure = getattr(PROCEDURES[generation], purpose)
        return self.call(procedure, args)


def _identifier(name: str) -> str:
    if not name.replace("_", "").isalnum():
        raise StepFailedError(f"not a variable name: {name!r}")
    return name


def _text(value: Any) -> str:
    if isinstance(value, bytes | bytearray):
        return value.decode()
    return str(value)
