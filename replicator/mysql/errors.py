"""MySQL and MariaDB error codes the orchestrator acts on, by name.

Numbers are the server's (``ER_*``) and the client library's (``CR_*``). Where
MySQL 8.0 renamed a symbol from MASTER/SLAVE to SOURCE/REPLICA the new wording
is used here.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Final

# Applier (SQL thread) errors.
ER_DUP_ENTRY: Final = 1062
ER_KEY_NOT_FOUND: Final = 1032
ER_NO_REFERENCED_ROW_2: Final = 1452
ER_ROW_IS_REFERENCED_2: Final = 1451
ER_NO_SUCH_TABLE: Final = 1146
# Multi-threaded applier: coordinator and workers stopped, possibly with gaps
# between committed transactions.
ER_MTA_INCONSISTENT_DATA: Final = 1756
# Multi-threaded applier with replica_preserve_commit_order: a worker stopped
# because an earlier worker failed (MySQL 5.7.5 and later).
ER_REPLICA_WORKER_STOPPED_PREVIOUS_THD_ERROR: Final = 3030
# The relay log info repository could not be loaded when the applier started.
ER_REPLICA_RLI_INIT_REPOSITORY: Final = 1872

# Receiver (I/O thread) errors.
ER_SOURCE_FATAL_READING_BINLOG: Final = 1236
ER_ACCESS_DENIED: Final = 1045
ER_NET_PACKET_TOO_LARGE: Final = 1153
# "Fatal error: %s". The usual text says that source and replica have equal
# server ids (or equal server UUIDs).
ER_REPLICA_FATAL_ERROR: Final = 1593
ER_SOURCE_HAS_SAME_SERVER_ID: Final = ER_REPLICA_FATAL_ERROR
# MySQL 8.0 reports some receiver failures with codes from its error-log range
# (seen in Last_IO_Errno of 8.0.17 to 8.0.3x servers): 13114 wraps
# "Got fatal error 1236 from source ..." and 13117 wraps "Fatal error: ...".
ER_SOURCE_FATAL_READING_BINLOG_LOG: Final = 13114
ER_REPLICA_FATAL_ERROR_LOG: Final = 13117

# Errors of the tool's own statements.
ER_SP_DOES_NOT_EXIST: Final = 1305
ER_SPECIFIC_ACCESS_DENIED: Final = 1227
ER_OPTION_PREVENTS_STATEMENT: Final = 1290

# Client library errors: the connection could not be made or was lost.
CR_CONNECTION_ERROR: Final = 2002
CR_CONN_HOST_ERROR: Final = 2003
CR_UNKNOWN_HOST: Final = 2005
CR_SERVER_GONE: Final = 2006
CR_SERVER_LOST: Final = 2013
CR_SSL_CONNECTION_ERROR: Final = 2026
# caching_sha2_password without TLS: "Authentication requires secure connection".
CR_AUTH_PLUGIN_ERR: Final = 2061

IO_THREAD_ERRORS: Final = frozenset(
    {
        ER_SOURCE_FATAL_READING_BINLOG,
        ER_SOURCE_FATAL_READING_BINLOG_LOG,
        ER_ACCESS_DENIED,
        ER_NET_PACKET_TOO_LARGE,
        ER_REPLICA_FATAL_ERROR,
        ER_REPLICA_FATAL_ERROR_LOG,
        CR_CONNECTION_ERROR,
        CR_CONN_HOST_ERROR,
        CR_UNKNOWN_HOST,
        CR_SERVER_GONE,
        CR_SERVER_LOST,
        CR_SSL_CONNECTION_ERROR,
        CR_AUTH_PLUGIN_ERR,
    }
)
"""Receiver errors: nothing was applied, so there is no event to skip."""

TRANSIENT_CONNECTION_ERRORS: Final = frozenset(
    {CR_CONNECTION_ERROR, CR_CONN_HOST_ERROR, CR_SERVER_GONE, CR_SERVER_LOST}
)
"""Errors of the tool's own connections that a retry may cure."""

_CLASSIC_CODES: Final = MappingProxyType(
    {
        ER_SOURCE_FATAL_READING_BINLOG_LOG: ER_SOURCE_FATAL_READING_BINLOG,
        ER_REPLICA_FATAL_ERROR_LOG: ER_REPLICA_FATAL_ERROR,
    }
)

_DESCRIPTIONS: Final = MappingProxyType(
    {
        ER_DUP_ENTRY: (
            "duplicate key on insert",
            "skippable by policy; the key is recorded",
        ),
        ER_KEY_NOT_FOUND: (
            "row to update or delete not found",
            "skippable by policy; the event is recorded",
        ),
        ER_NO_REFERENCED_ROW_2: (
            "foreign key check failed: the parent row is missing",
            "skip or halt, as the policy says",
        ),
        ER_ROW_IS_REFERENCED_2: (
            "foreign key check failed: child rows still reference the row",
            "skip or halt, as the policy says",
        ),
        ER_NO_SUCH_TABLE: (
            "table does not exist on the clone",
            "halt: the clone's schema differs from the source's",
        ),
        ER_MTA_INCONSISTENT_DATA: (
            "the parallel applier stopped, possibly with gaps between "
            "committed transactions",
            "start replication again; if it fails, read the workers' errors "
            "in performance_schema.replication_applier_status_by_worker",
        ),
        ER_REPLICA_WORKER_STOPPED_PREVIOUS_THD_ERROR: (
            "a parallel applier worker stopped after another worker failed",
            "fix the failed worker's error first",
        ),
        ER_REPLICA_RLI_INIT_REPOSITORY: (
            "the applier could not load its relay log position",
            "halt: reset the external source and start replication again "
            "from the journaled position",
        ),
        ER_SOURCE_FATAL_READING_BINLOG: (
            "the source cannot send the binlog (purged or unreadable)",
            "halt; the next-log action only if the policy allows it; "
            "raise binlog retention hours",
        ),
        ER_ACCESS_DENIED: (
            "the replication user was denied",
            "halt: check the user, its password and its host",
        ),
        ER_NET_PACKET_TOO_LARGE: (
            "an event is larger than max_allowed_packet",
            "halt: raise max_allowed_packet in the parameter groups",
        ),
        ER_REPLICA_FATAL_ERROR: (
            "the receiver stopped with a fatal error, usually because source "
            "and replica have the same server id",
            "halt: give the clone a server id different from the source's",
        ),
        ER_SP_DOES_NOT_EXIST: (
            "the stored procedure does not exist",
            "check the engine generation: v2 and v3 name the rds_* "
            "procedures differently",
        ),
        ER_SPECIFIC_ACCESS_DENIED: (
            "the statement needs a privilege the user lacks (often SUPER)",
            "use the mysql.rds_* procedures instead",
        ),
        ER_OPTION_PREVENTS_STATEMENT: (
            "the server runs with an option that refuses the statement "
            "(usually read_only on a reader instance)",
            "connect to the cluster's writer endpoint",
        ),
        CR_CONNECTION_ERROR: (
            "cannot connect through the local socket",
            "retry a while, then check the host name",
        ),
        CR_CONN_HOST_ERROR: (
            "cannot reach the server",
            "retry a while, then check security groups, routes and the port",
        ),
        CR_UNKNOWN_HOST: (
            "the host name does not resolve",
            "retry a while, then check the endpoint name and DNS",
        ),
        CR_SERVER_GONE: (
            "the server closed the connection",
            "retry; check the server's restarts and wait_timeout",
        ),
        CR_SERVER_LOST: (
            "the connection was lost during a query",
            "retry; check the network and the server's restarts",
        ),
        CR_SSL_CONNECTION_ERROR: (
            "the TLS handshake failed",
            "retry a while, then check the TLS settings on both sides",
        ),
        CR_AUTH_PLUGIN_ERR: (
            "the authentication plugin refused the login "
            "(caching_sha2_password needs TLS)",
            "turn on replication TLS or create the user with mysql_native_password",
        ),
    }
)


def classic_errno(errno: int) -> int:
    """Map MySQL 8.0 error-log codes of receiver failures to the classic codes.

    Skip rules and the descriptions use the classic numbers (1236, 1593).
    """
    return _CLASSIC_CODES.get(errno, errno)


def describe(errno: int) -> str:
    """Return a short meaning and the usual handling of an error code."""
    entry = _DESCRIPTIONS.get(classic_errno(errno))
    if entry is None:
        return f"error {errno}: see the server's error message reference"
    meaning, handling = entry
    return f"error {errno}: {meaning}; usual handling: {handling}"
