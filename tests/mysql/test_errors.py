"""Tests for replicator.mysql.errors: named error codes and descriptions."""

from __future__ import annotations

import pytest

from replicator.mysql import errors


@pytest.mark.parametrize(
    ("name", "number"),
    [
        ("ER_DUP_ENTRY", 1062),
        ("ER_KEY_NOT_FOUND", 1032),
        ("ER_NO_REFERENCED_ROW_2", 1452),
        ("ER_ROW_IS_REFERENCED_2", 1451),
        ("ER_NO_SUCH_TABLE", 1146),
        ("ER_SOURCE_FATAL_READING_BINLOG", 1236),
        ("ER_ACCESS_DENIED", 1045),
        ("ER_NET_PACKET_TOO_LARGE", 1153),
        ("ER_REPLICA_FATAL_ERROR", 1593),
        ("ER_SOURCE_HAS_SAME_SERVER_ID", 1593),
        ("ER_MTA_INCONSISTENT_DATA", 1756),
        ("ER_REPLICA_RLI_INIT_REPOSITORY", 1872),
        ("ER_REPLICA_WORKER_STOPPED_PREVIOUS_THD_ERROR", 3030),
        ("ER_SOURCE_FATAL_READING_BINLOG_LOG", 13114),
        ("ER_REPLICA_FATAL_ERROR_LOG", 13117),
        ("ER_SP_DOES_NOT_EXIST", 1305),
        ("ER_SPECIFIC_ACCESS_DENIED", 1227),
        ("ER_OPTION_PREVENTS_STATEMENT", 1290),
        ("CR_CONNECTION_ERROR", 2002),
        ("CR_CONN_HOST_ERROR", 2003),
        ("CR_UNKNOWN_HOST", 2005),
        ("CR_SERVER_GONE", 2006),
        ("CR_SERVER_LOST", 2013),
        ("CR_SSL_CONNECTION_ERROR", 2026),
        ("CR_AUTH_PLUGIN_ERR", 2061),
    ],
)
def test_error_codes_have_the_servers_numbers(name: str, number: int) -> None:
    """Each named constant carries the number MySQL and MariaDB use."""
    assert getattr(errors, name) == number


@pytest.mark.parametrize("errno", [1236, 13114, 1045, 2003, 2005, 2026, 1593, 13117])
def test_receiver_errors_are_io_thread_errors(errno: int) -> None:
    """Binlog, login, network and server-id failures belong to the I/O thread."""
    assert errno in errors.IO_THREAD_ERRORS


@pytest.mark.parametrize("errno", [1062, 1032, 1452, 1451, 1146])
def test_applier_errors_are_not_io_thread_errors(errno: int) -> None:
    """Row and statement failures belong to the SQL thread."""
    assert errno not in errors.IO_THREAD_ERRORS


def test_transient_connection_errors() -> None:
    """Only socket, host, gone-away and lost connections are retried."""
    transient = errors.TRANSIENT_CONNECTION_ERRORS

    assert transient == frozenset({2002, 2003, 2006, 2013})


@pytest.mark.parametrize(
    ("errno", "classic"),
    [(13114, 1236), (13117, 1593), (1236, 1236), (1062, 1062)],
)
def test_classic_errno_maps_mysql8_log_codes(errno: int, classic: int) -> None:
    """MySQL 8.0's error-log codes for receiver failures map to classic codes."""
    assert errors.classic_errno(errno) == classic


def test_describe_gives_meaning_and_handling() -> None:
    """A known code is described with its meaning and its usual handling."""
    assert errors.describe(1062) == (
        "error 1062: duplicate key on insert; "
        "usual handling: skippable by policy; the key is recorded"
    )


def test_describe_uses_the_classic_code() -> None:
    """MySQL 8.0's 13114 is described as the binlog error it wraps."""
    assert errors.describe(13114) == (
        "error 13114: the source cannot send the binlog (purged or unreadable); "
        "usual handling: halt; the next-log action only if the policy allows it; "
        "raise binlog retention hours"
    )


def test_describe_unknown_code() -> None:
    """An unknown code points to the server's reference."""
    assert errors.describe(4242) == (
        "error 4242: see the server's error message reference"
    )


@pytest.mark.parametrize(
    "errno", sorted(errors.IO_THREAD_ERRORS | {1062, 1032, 1451, 1452, 1146})
)
def test_every_code_the_policy_meets_is_described(errno: int) -> None:
    """Diagnosis messages have a description for every code in the tables."""
    assert "usual handling: " in errors.describe(errno)
