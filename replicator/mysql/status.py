"""Replica status in one shape, whatever the server calls its columns.

MySQL 8.0.22 renamed the columns of the replica status (``Source_*``,
``Replica_*``); ``SHOW SLAVE STATUS`` and MariaDB keep the old names
(``Master_*``, ``Slave_*``). Both are read into ``ReplicaStatus``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

THREAD_RUNNING: Final = "Yes"
THREAD_STOPPED: Final = "No"
_TEXT_ENCODING: Final = "utf-8"


@dataclass(frozen=True)
class BinlogCoordinates:
    """A position in a source's binary log: file name and byte offset.

    Ordering compares the file's numeric extension, then the position. Files
    of different binlog series (base names) cannot be ordered: comparing them
    raises ValueError.
    """

    file: str
    position: int

    @property
    def index(self) -> int:
        """Return the file's numeric extension (118 for ``....000118``)."""
        return parse_binlog_file_index(self.file)

    @property
    def base_name(self) -> str:
        """Return the file name without its numeric extension."""
        return self.file.rpartition(".")[0]

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, BinlogCoordinates):
            return NotImplemented
        return self._key() < other._key_against(self)

    def __le__(self, other: object) -> bool:
        if not isinstance(other, BinlogCoordinates):
            return NotImplemented
        return self._key() <= other._key_against(self)

    def __gt__(self, other: object) -> bool:
        if not isinstance(other, BinlogCoordinates):
            return NotImplemented
        return self._key() > other._key_against(self)

    def __ge__(self, other: object) -> bool:
        if not isinstance(other, BinlogCoordinates):
            return NotImplemented
        return self._key() >= other._key_against(self)

    def __str__(self) -> str:
        return f"{self.file}:{self.position}"

    def _key(self) -> tuple[int, int]:
        """Return (file index, position), the ordering key."""
        return (self.index, self.position)

    def _key_against(self, other: BinlogCoordinates) -> tuple[int, int]:
        """Return the ordering key after checking both share a binlog series."""
        if self.base_name != other.base_name:
            raise ValueError(
                f"binlog files {other.file!r} and {self.file!r} belong to "
                "different binlog series and cannot be compared"
            )
        return self._key()


@dataclass(frozen=True)
class ReplicaStatus:
    """The replica status fields the orchestrator uses, normalised.

    ``read_*`` is how far the I/O thread has fetched the source's binlog;
    ``exec_*`` is how far the SQL thread has applied it, in source coordinates;
    ``relay_*`` is the SQL thread's position in the replica's own relay log.
    """

    io_running: str
    sql_running: str
    source_host: str | None
    source_port: int | None
    read_file: str | None
    read_position: int | None
    exec_file: str | None
    exec_position: int | None
    relay_file: str | None
    relay_position: int | None
    seconds_behind: int | None
    last_errno: int
    last_error: str
    last_io_errno: int
    last_io_error: str
    last_sql_errno: int
    last_sql_error: str
    source_server_id: int | None

    @property
    def io_ok(self) -> bool:
        """Return whether the I/O thread is running and connected."""
        return self.io_running == THREAD_RUNNING

    @property
    def sql_ok(self) -> bool:
        """Return whether the SQL thread is running."""
        return self.sql_running == THREAD_RUNNING

    @property
    def running(self) -> bool:
        """Return whether both replica threads are running."""
        return self.io_ok and self.sql_ok

    @property
    def error_thread(self) -> Literal["io", "sql"] | None:
        """Return which thread reports an error, the I/O thread first."""
        if self.last_io_errno:
            return "io"
        if self.last_sql_errno or self.last_errno:
            return "sql"
        return None

    @property
    def read_coordinates(self) -> BinlogCoordinates | None:
        """Return the source coordinates the I/O thread has read up to."""
        return _coordinates(self.read_file, self.read_position)

    @property
    def exec_coordinates(self) -> BinlogCoordinates | None:
        """Return the source coordinates the SQL thread has executed up to."""
        return _coordinates(self.exec_file, self.exec_position)


def normalise_status(row: Mapping[str, Any] | None) -> ReplicaStatus | None:
    """Read one row of SHOW REPLICA STATUS or SHOW SLAVE STATUS.

    Accepts MySQL 8's and the old (MySQL 5.7, MariaDB) column names, in any
    letter case, with values as str, int, bytes or None. Returns None when no
    replica is configured (no row). Unknown columns are ignored.
    """
    if not row:
        return None
    columns = {str(name).lower(): value for name, value in row.items()}

    return ReplicaStatus(
        io_running=_state(columns, "Replica_IO_Running", "Slave_IO_Running"),
        sql_running=_state(columns, "Replica_SQL_Running", "Slave_SQL_Running"),
        source_host=_name(columns, "Source_Host", "Master_Host"),
        source_port=_number(columns, "Source_Port", "Master_Port"),
        read_file=_name(columns, "Source_Log_File", "Master_Log_File"),
        read_position=_number(columns, "Read_Source_Log_Pos", "Read_Master_Log_Pos"),
        exec_file=_name(columns, "Relay_Source_Log_File", "Relay_Master_Log_File"),
        exec_position=_number(columns, "Exec_Source_Log_Pos", "Exec_Master_Log_Pos"),
        relay_file=_name(columns, "Relay_Log_File"),
        relay_position=_number(columns, "Relay_Log_Pos"),
        seconds_behind=_number(
            columns, "Seconds_Behind_Source", "Seconds_Behind_Master"
        ),
        last_errno=_number(columns, "Last_Errno") or 0,
        last_error=_text(columns, "Last_Error") or "",
        last_io_errno=_number(columns, "Last_IO_Errno") or 0,
        last_io_error=_text(columns, "Last_IO_Error") or "",
        last_sql_errno=_number(columns, "Last_SQL_Errno") or 0,
        last_sql_error=_text(columns, "Last_SQL_Error") or "",
        source_server_id=_number(columns, "Source_Server_Id", "Master_Server_Id"),
    )


def parse_binlog_file_index(name: str) -> int:
    """Return the numeric extension of a binlog file name (118 for ``.000118``)."""
    _, dot, extension = name.rpartition(".")
    if not dot or not (extension.isascii() and extension.isdigit()):
        raise ValueError(
            f"binlog file name {name!r} does not end in a numeric extension "
            "such as .000118"
        )
    return int(extension)


def bytes_behind(
    source: BinlogCoordinates,
    executed: BinlogCoordinates,
    file_sizes: Mapping[str, int] | None = None,
) -> int | None:
    """Return how many binlog bytes separate executed from source coordinates.

    Within one file this is the difference of positions. Across files it needs
    the sizes of the executed file and of every file in between (as listed by
    SHOW BINARY LOGS); when one is unknown the answer is None. Never negative.
    Raises ValueError when the files belong to different binlog series.
    """
    if executed >= source:
        return 0
    if executed.file == source.file:
        return source.position - executed.position

    sizes = file_sizes or {}
    behind = source.position
    for name in _files_between(executed, source):
        size = sizes.get(name)
        if size is None:
            return None
        behind += size
    return behind - executed.position


def is_caught_up(status: ReplicaStatus, source_before: BinlogCoordinates) -> bool:
    """Return whether the replica has applied everything the source had.

    ``source_before`` are the source's binlog coordinates read just before the
    replica status. Caught up means: both threads running, the SQL thread has
    executed everything the I/O thread read, and the executed coordinates are
    at or past ``source_before``. Seconds_Behind is deliberately not used: it
    is NULL while a thread is stopped and 0 while the I/O thread connects.
    """
    if not status.running:
        return False
    read = status.read_coordinates
    executed = status.exec_coordinates
    if read is None or executed is None or executed != read:
        return False
    return executed >= source_before


def to_text(value: object) -> str | None:
    """Return a column value as text: bytes decoded, None kept."""
    if value is None:
        return None
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode(_TEXT_ENCODING, errors="replace")
    return str(value)


def to_int(value: object, *, column: str = "value") -> int | None:
    """Return a column value as an integer; None and empty text give None."""
    if value is None or isinstance(value, int):
        return value
    text = (to_text(value) or "").strip()
    if not text:
        return None
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{column}: expected a number, got {text!r}") from None


def _files_between(executed: BinlogCoordinates, source: BinlogCoordinates) -> list[str]:
    """Return the executed file and every file before the source's file."""
    width = len(source.file) - len(source.base_name) - 1
    return [
        f"{source.base_name}.{index:0{width}d}"
        for index in range(executed.index, source.index)
    ]


def _coordinates(file: str | None, position: int | None) -> BinlogCoordinates | None:
    """Return coordinates when both parts are known."""
    if file is None or position is None:
        return None
    return BinlogCoordinates(file, position)


def _pick(columns: Mapping[str, Any], names: tuple[str, ...]) -> tuple[str, Any]:
    """Return the first of the named columns present, with its value."""
    for name in names:
        if name.lower() in columns:
            return name, columns[name.lower()]
    return names[0], None


def _text(columns: Mapping[str, Any], *names: str) -> str | None:
    """Return a text column; absent or NULL gives None."""
    return to_text(_pick(columns, names)[1])


def _name(columns: Mapping[str, Any], *names: str) -> str | None:
    """Return a host or file name column; empty text gives None."""
    return _text(columns, *names) or None


def _number(columns: Mapping[str, Any], *names: str) -> int | None:
    """Return an integer column; absent, NULL or empty gives None."""
    name, value = _pick(columns, names)
    return to_int(value, column=name)


def _state(columns: Mapping[str, Any], *names: str) -> str:
    """Return a thread state column ("Yes", "No", "Connecting"); absent is "No"."""
    return _name(columns, *names) or THREAD_STOPPED
