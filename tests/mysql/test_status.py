"""Tests for replicator.mysql.status: replica status in both vocabularies."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import pytest

from replicator.mysql.status import (
    BinlogCoordinates,
    ReplicaStatus,
    bytes_behind,
    is_caught_up,
    normalise_status,
    parse_binlog_file_index,
)

SOURCE_HOST = "sandbox-source.cluster-c1x2y3z4w5v6.us-east-1.rds.amazonaws.com"
BINLOG = "mysql-bin-changelog.000118"

# One row of SHOW REPLICA STATUS from MySQL 8.0.32, every column, with the
# types PyMySQL returns (numbers as int, NULL as None).
MYSQL80_REPLICA_ROW: Mapping[str, Any] = {
    "Replica_IO_State": "Waiting for source to send event",
    "Source_Host": SOURCE_HOST,
    "Source_User": "repl_user",
    "Source_Port": 3306,
    "Connect_Retry": 60,
    "Source_Log_File": BINLOG,
    "Read_Source_Log_Pos": 245880,
    "Relay_Log_File": "relaylog.000004",
    "Relay_Log_Pos": 1217,
    "Relay_Source_Log_File": BINLOG,
    "Replica_IO_Running": "Yes",
    "Replica_SQL_Running": "Yes",
    "Replicate_Do_DB": "",
    "Replicate_Ignore_DB": "",
    "Replicate_Do_Table": "",
    "Replicate_Ignore_Table": "",
    "Replicate_Wild_Do_Table": "",
    "Replicate_Wild_Ignore_Table": "",
    "Last_Errno": 0,
    "Last_Error": "",
    "Skip_Counter": 0,
    "Exec_Source_Log_Pos": 245880,
    "Relay_Log_Space": 1634,
    "Until_Condition": "None",
    "Until_Log_File": "",
    "Until_Log_Pos": 0,
    "Source_SSL_Allowed": "No",
    "Source_SSL_CA_File": "",
    "Source_SSL_CA_Path": "",
    "Source_SSL_Cert": "",
    "Source_SSL_Cipher": "",
    "Source_SSL_Key": "",
    "Seconds_Behind_Source": 0,
    "Source_SSL_Verify_Server_Cert": "No",
    "Last_IO_Errno": 0,
    "Last_IO_Error": "",
    "Last_SQL_Errno": 0,
    "Last_SQL_Error": "",
    "Replicate_Ignore_Server_Ids": "",
    "Source_Server_Id": 1829374650,
    "Source_UUID": "5f0c4d7a-8e21-3b94-a6c2-1d7e9b3f0a58",
    "Source_Info_File": "mysql.slave_master_info",
    "SQL_Delay": 0,
    "SQL_Remaining_Delay": None,
    "Replica_SQL_Running_State": (
        "Replica has read all relay log; waiting for more updates"
    ),
    "Source_Retry_Count": 86400,
    "Source_Bind": "",
    "Last_IO_Error_Timestamp": "",
    "Last_SQL_Error_Timestamp": "",
    "Source_SSL_Crl": "",
    "Source_SSL_Crlpath": "",
    "Retrieved_Gtid_Set": "",
    "Executed_Gtid_Set": "",
    "Auto_Position": 0,
    "Replicate_Rewrite_DB": "",
    "Channel_Name": "",
    "Source_TLS_Version": "",
    "Source_public_key_path": "",
    "Get_Source_public_key": 0,
    "Network_Namespace": "",
}

# One row of SHOW SLAVE STATUS from MariaDB 10.11, every column.
MARIADB1011_SLAVE_ROW: Mapping[str, Any] = {
    "Slave_IO_State": "Waiting for master to send event",
    "Master_Host": SOURCE_HOST,
    "Master_User": "repl_user",
    "Master_Port": 3306,
    "Connect_Retry": 60,
    "Master_Log_File": BINLOG,
    "Read_Master_Log_Pos": 245880,
    "Relay_Log_File": "mariadb-relay-bin.000002",
    "Relay_Log_Pos": 1027,
    "Relay_Master_Log_File": BINLOG,
    "Slave_IO_Running": "Yes",
    "Slave_SQL_Running": "Yes",
    "Replicate_Do_DB": "",
    "Replicate_Ignore_DB": "",
    "Replicate_Do_Table": "",
    "Replicate_Ignore_Table": "",
    "Replicate_Wild_Do_Table": "",
    "Replicate_Wild_Ignore_Table": "",
    "Last_Errno": 0,
    "Last_Error": "",
    "Skip_Counter": 0,
    "Exec_Master_Log_Pos": 245880,
    "Relay_Log_Space": 1338,
    "Until_Condition": "None",
    "Until_Log_File": "",
    "Until_Log_Pos": 0,
    "Master_SSL_Allowed": "No",
    "Master_SSL_CA_File": "",
    "Master_SSL_CA_Path": "",
    "Master_SSL_Cert": "",
    "Master_SSL_Cipher": "",
    "Master_SSL_Key": "",
    "Seconds_Behind_Master": 0,
    "Master_SSL_Verify_Server_Cert": "No",
    "Last_IO_Errno": 0,
    "Last_IO_Error": "",
    "Last_SQL_Errno": 0,
    "Last_SQL_Error": "",
    "Replicate_Ignore_Server_Ids": "",
    "Master_Server_Id": 1829374650,
    "Master_SSL_Crl": "",
    "Master_SSL_Crlpath": "",
    "Using_Gtid": "No",
    "Gtid_IO_Pos": "",
    "Replicate_Do_Domain_Ids": "",
    "Replicate_Ignore_Domain_Ids": "",
    "Parallel_Mode": "optimistic",
    "SQL_Delay": 0,
    "SQL_Remaining_Delay": None,
    "Slave_SQL_Running_State": "Slave has read all relay log; waiting for more updates",
    "Slave_DDL_Groups": 4,
    "Slave_Non_Transactional_Groups": 0,
    "Slave_Transactional_Groups": 1187,
    "Replicate_Rewrite_DB": "",
}


@dataclass(frozen=True)
class Vocabulary:
    """One server's column names, and a recorded row to vary."""

    name: str
    recorded: Mapping[str, Any]
    columns: Mapping[str, str]
    relay_file: str
    relay_position: int

    def row(self, **changes: Any) -> dict[str, Any]:
        """Return the recorded row with columns changed by their short names."""
        row = dict(self.recorded)
        for short, value in changes.items():
            row[self.columns.get(short, short)] = value
        return row


NEW_NAMES = Vocabulary(
    name="mysql80-replica",
    recorded=MYSQL80_REPLICA_ROW,
    columns={
        "io": "Replica_IO_Running",
        "sql": "Replica_SQL_Running",
        "read_file": "Source_Log_File",
        "read_pos": "Read_Source_Log_Pos",
        "exec_file": "Relay_Source_Log_File",
        "exec_pos": "Exec_Source_Log_Pos",
        "behind": "Seconds_Behind_Source",
        "host": "Source_Host",
    },
    relay_file="relaylog.000004",
    relay_position=1217,
)
OLD_NAMES = Vocabulary(
    name="mariadb1011-slave",
    recorded=MARIADB1011_SLAVE_ROW,
    columns={
        "io": "Slave_IO_Running",
        "sql": "Slave_SQL_Running",
        "read_file": "Master_Log_File",
        "read_pos": "Read_Master_Log_Pos",
        "exec_file": "Relay_Master_Log_File",
        "exec_pos": "Exec_Master_Log_Pos",
        "behind": "Seconds_Behind_Master",
        "host": "Master_Host",
    },
    relay_file="mariadb-relay-bin.000002",
    relay_position=1027,
)
VOCABULARIES = pytest.mark.parametrize(
    "vocabulary", [NEW_NAMES, OLD_NAMES], ids=lambda v: v.name
)


def status_of(row: Mapping[str, Any]) -> ReplicaStatus:
    """Normalise a row that must give a status."""
    status = normalise_status(row)
    assert status is not None
    return status


def at(file_index: int, position: int) -> BinlogCoordinates:
    """Return coordinates in the sandbox source's binlog series."""
    return BinlogCoordinates(f"mysql-bin-changelog.{file_index:06d}", position)


@VOCABULARIES
def test_normalises_a_recorded_row(vocabulary: Vocabulary) -> None:
    """A full recorded row gives every field, whatever the column names."""
    assert status_of(vocabulary.recorded) == ReplicaStatus(
        io_running="Yes",
        sql_running="Yes",
        source_host=SOURCE_HOST,
        source_port=3306,
        read_file=BINLOG,
        read_position=245880,
        exec_file=BINLOG,
        exec_position=245880,
        relay_file=vocabulary.relay_file,
        relay_position=vocabulary.relay_position,
        seconds_behind=0,
        last_errno=0,
        last_error="",
        last_io_errno=0,
        last_io_error="",
        last_sql_errno=0,
        last_sql_error="",
        source_server_id=1829374650,
    )


@VOCABULARIES
def test_decodes_bytes_and_numbers_given_as_text(vocabulary: Vocabulary) -> None:
    """Values sent as bytes or as decimal text give the same status."""
    raw = {
        name: str(value).encode() if value is not None else None
        for name, value in vocabulary.recorded.items()
    }

    assert status_of(raw) == status_of(vocabulary.recorded)


@VOCABULARIES
def test_empty_file_names_and_null_lag_become_none(vocabulary: Vocabulary) -> None:
    """Empty file names, an empty host and NULL lag are read as unknown."""
    status = status_of(
        vocabulary.row(read_file="", exec_file=b"", host="", behind=None)
    )

    assert (status.read_file, status.exec_file) == (None, None)
    assert (status.source_host, status.seconds_behind) == (None, None)
    assert (status.read_coordinates, status.exec_coordinates) == (None, None)


@pytest.mark.parametrize("row", [None, {}])
def test_no_replica_configured_gives_none(row: Mapping[str, Any] | None) -> None:
    """An empty result (no replica configured) normalises to None."""
    assert normalise_status(row) is None


def test_missing_columns_are_tolerated() -> None:
    """A row with few columns still normalises, unknown values left empty."""
    status = status_of({"Slave_IO_Running": "Connecting", "Unheard_Of": 7})

    assert status == ReplicaStatus(
        io_running="Connecting",
        sql_running="No",
        source_host=None,
        source_port=None,
        read_file=None,
        read_position=None,
        exec_file=None,
        exec_position=None,
        relay_file=None,
        relay_position=None,
        seconds_behind=None,
        last_errno=0,
        last_error="",
        last_io_errno=0,
        last_io_error="",
        last_sql_errno=0,
        last_sql_error="",
        source_server_id=None,
    )


def test_column_names_are_matched_in_any_case() -> None:
    """Lower-case column names (some drivers) are read as well."""
    status = status_of({"replica_io_running": "Yes", "read_source_log_pos": "42"})

    assert (status.io_running, status.read_position) == ("Yes", 42)


def test_non_numeric_position_names_the_column() -> None:
    """A position that is not a number fails naming its column."""
    with pytest.raises(ValueError, match="Read_Master_Log_Pos: expected a number"):
        normalise_status({"Read_Master_Log_Pos": "far"})


@VOCABULARIES
def test_io_error_is_reported_on_the_io_thread(vocabulary: Vocabulary) -> None:
    """An I/O error (binlog purged) names the io thread and stops it."""
    text = (
        "Got fatal error 1236 from source when reading data from binary log: "
        "'Could not find first log file name in binary log index file'"
    )
    status = status_of(
        vocabulary.row(io="No", behind=None, Last_IO_Errno=13114, Last_IO_Error=text)
    )

    assert (status.error_thread, status.last_io_errno) == ("io", 13114)
    assert status.last_io_error == text
    assert (status.io_ok, status.sql_ok, status.running) == (False, True, False)


@VOCABULARIES
def test_sql_error_is_reported_on_the_sql_thread(vocabulary: Vocabulary) -> None:
    """A SQL error names the sql thread and stops it."""
    status = status_of(
        vocabulary.row(
            sql="No",
            Last_Errno=1062,
            Last_SQL_Errno=1062,
            Last_SQL_Error="Could not execute Write_rows event on table shop.t; ...",
        )
    )

    assert (status.error_thread, status.last_sql_errno) == ("sql", 1062)
    assert (status.io_ok, status.sql_ok, status.running) == (True, False, False)


@VOCABULARIES
def test_no_error_has_no_error_thread(vocabulary: Vocabulary) -> None:
    """A healthy replica reports no error thread."""
    assert status_of(vocabulary.recorded).error_thread is None


@VOCABULARIES
def test_caught_up_when_executed_reaches_source(vocabulary: Vocabulary) -> None:
    """Both threads run, exec equals read, and both are at the source's position."""
    status = status_of(vocabulary.recorded)

    assert is_caught_up(status, at(118, 245880)) is True
    assert is_caught_up(status, at(118, 120000)) is True
    assert is_caught_up(status, at(117, 9000000)) is True


@VOCABULARIES
def test_zero_lag_with_unapplied_events_is_not_caught_up(
    vocabulary: Vocabulary,
) -> None:
    """Seconds_Behind 0 does not help while the SQL thread is behind the I/O."""
    status = status_of(vocabulary.row(exec_pos=245000, behind=0))

    assert is_caught_up(status, at(118, 245000)) is False


@VOCABULARIES
def test_zero_lag_behind_the_source_is_not_caught_up(vocabulary: Vocabulary) -> None:
    """Seconds_Behind 0 while the I/O thread trails the source is not caught up."""
    status = status_of(vocabulary.row(behind=0))

    assert is_caught_up(status, at(118, 300000)) is False
    assert is_caught_up(status, at(119, 4)) is False


@VOCABULARIES
def test_null_lag_with_a_stopped_thread_is_not_caught_up(
    vocabulary: Vocabulary,
) -> None:
    """A stopped SQL thread (Seconds_Behind NULL) is never caught up."""
    status = status_of(vocabulary.row(sql="No", behind=None))

    assert is_caught_up(status, at(118, 1)) is False


@VOCABULARIES
def test_connecting_io_thread_is_not_caught_up(vocabulary: Vocabulary) -> None:
    """An I/O thread still connecting (lag shown as 0) is not caught up."""
    status = status_of(vocabulary.row(io="Connecting", behind=0))

    assert status.io_running == "Connecting"
    assert status.io_ok is False
    assert is_caught_up(status, at(118, 1)) is False


@VOCABULARIES
def test_unknown_coordinates_are_not_caught_up(vocabulary: Vocabulary) -> None:
    """Without executed coordinates nothing can be compared."""
    status = status_of(vocabulary.row(exec_file="", exec_pos=None))

    assert is_caught_up(status, at(1, 4)) is False


def test_binlog_file_index() -> None:
    """The index is the file name's numeric extension."""
    assert parse_binlog_file_index("mysql-bin-changelog.000118") == 118
    assert at(118, 4).index == 118
    assert at(118, 4).base_name == "mysql-bin-changelog"


@pytest.mark.parametrize(
    "name", ["mysql-bin-changelog", "binlog.index", "log.0x1F", ""]
)
def test_binlog_file_index_needs_a_numeric_extension(name: str) -> None:
    """Names without a numeric extension are refused."""
    with pytest.raises(ValueError, match="does not end in a numeric extension"):
        parse_binlog_file_index(name)


def test_coordinates_order_by_file_then_position() -> None:
    """A later file is ahead whatever the positions; same file compares positions."""
    assert at(117, 9000000) < at(118, 4)
    assert at(118, 4) < at(118, 5)
    assert at(118, 5) <= at(118, 5)
    assert at(119, 4) > at(118, 245880)
    assert at(118, 245880) >= at(118, 245880)
    assert sorted([at(119, 4), at(117, 9), at(118, 7), at(118, 3)]) == [
        at(117, 9),
        at(118, 3),
        at(118, 7),
        at(119, 4),
    ]


def test_coordinates_compare_the_index_as_a_number() -> None:
    """Past 999999 the extension grows a digit; order stays numeric."""
    last_six_digit = BinlogCoordinates("mysql-bin-changelog.999999", 4)
    first_seven_digit = BinlogCoordinates("mysql-bin-changelog.1000000", 4)

    assert last_six_digit < first_seven_digit


def test_coordinates_of_different_series_are_not_comparable() -> None:
    """Files with different base names cannot be ordered."""
    with pytest.raises(ValueError, match="different binlog series"):
        _ = BinlogCoordinates("mysql-bin.000003", 4) < at(3, 4)


def test_coordinates_print_as_file_and_position() -> None:
    """Coordinates print as file:position."""
    assert str(at(118, 245880)) == "mysql-bin-changelog.000118:245880"


def test_bytes_behind_in_one_file() -> None:
    """Within one file the distance is the difference of positions."""
    assert bytes_behind(at(118, 245880), at(118, 200000), None) == 45880


def test_bytes_behind_is_never_negative() -> None:
    """Executed coordinates past the source's give zero."""
    assert bytes_behind(at(118, 100), at(118, 200), None) == 0
    assert bytes_behind(at(118, 100), at(119, 4), None) == 0


def test_bytes_behind_across_files_uses_sizes() -> None:
    """Across files: rest of the executed file, files between, source position."""
    sizes = {
        "mysql-bin-changelog.000116": 1000,
        "mysql-bin-changelog.000117": 5000,
        "mysql-bin-changelog.000118": 7000,
    }

    assert bytes_behind(at(118, 300), at(116, 400), sizes) == 600 + 5000 + 300


def test_bytes_behind_across_files_without_sizes_is_unknown() -> None:
    """A missing size makes the distance unknown."""
    sizes = {"mysql-bin-changelog.000116": 1000}

    assert bytes_behind(at(118, 300), at(116, 400), sizes) is None
    assert bytes_behind(at(118, 300), at(116, 400), None) is None


def test_normalised_status_is_immutable() -> None:
    """Statuses are values: replace() gives a new one."""
    status = status_of(MYSQL80_REPLICA_ROW)

    assert replace(status, sql_running="No").running is False
    assert status.running is True
