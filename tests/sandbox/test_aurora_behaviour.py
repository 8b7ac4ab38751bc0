"""The sandbox behaves like Aurora where the product depends on it.

Every test talks to running sandboxes the way the product does: boto3 against
the control plane, PyMySQL against the clusters' endpoints. Two sandboxes serve
the module, a v3 one (the shared ``sandbox`` fixture) and a v2 one started
alongside it. Tests that change a sandbox for good (binary logging on, the
clone, its replication, the upgrade, the rename) run in the order of this file;
later tests bring what they need about through idempotent helpers, so each also
runs alone.
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pymysql
import pymysql.cursors
import pytest
from botocore.exceptions import ClientError

from replicator.sandbox import manage
from replicator.sandbox.manage import Sandbox
from replicator.sandbox.mariadb import pid_alive
from tests.helpers import (
    V2_VERSION,
    V3_VERSION,
    admin_connection,
    describe_cluster,
    query,
    root_connection,
    start_sandbox,
    table_contents,
)

pytestmark = pytest.mark.sandbox

T = TypeVar("T")
if TYPE_CHECKING:
    from typing import TypeAlias

    Connection: TypeAlias = pymysql.connections.Connection[Any]

SOURCE = "sandbox-source"
SOURCE_WRITER = "sandbox-source-1"
SOURCE_PARAMS = "sandbox-source-params"
SOURCE_INSTANCE_PARAMS = "sandbox-source-instance-params"
CLONE = "shop-clone"
CLONE_WRITER = "shop-clone-1"
UNLOGGED_CLONE = "unlogged-clone"
RENAMED_CLONE = "shop-clone-renamed"
REPL_USER = "repl_user"
REPL_PASSWORD = "repl-pass-1"
INSTANCE_CLASS = "db.r6g.large"
BINLOG_FILE = re.compile(r"^mysql-bin-changelog\.\d{6}$")
POSITION_EVENT = re.compile(
    r"^Binlog position from crash recovery is (?P<file>\S+) (?P<position>\d+)$"
)
CLEAN_SHUTDOWN = re.compile(r"mariadbd: Shutdown complete$", re.MULTILINE)
PROBE_INSERT = re.compile(r"clone_probe \(id\) VALUES \((?P<id>\d+)\)")
GENERATIONS = ("v2", "v3")
DEADLINE_S = 60.0
POLL_S = 0.1

# MySQL error numbers the sandbox must reproduce.
ER_KILL_DENIED = 1095
ER_DUP_ENTRY = 1062
ER_SPECIFIC_ACCESS_DENIED = 1227
ER_OPTION_PREVENTS_STATEMENT = 1290
ER_SP_DOES_NOT_EXIST = 1305
ER_QUERY_INTERRUPTED = 1317
ER_SIGNAL_EXCEPTION = 1644
CR_CONNECTION_LOST = (2006, 2013)

PROCEDURE_NAMES = {
    "v2": {
        "rds_set_external_master",
        "rds_set_external_master_with_auto_position",
        "rds_start_replication",
        "rds_start_replication_until",
        "rds_stop_replication",
        "rds_reset_external_master",
        "rds_skip_repl_error",
        "rds_next_master_log",
        "rds_set_configuration",
        "rds_show_configuration",
        "rds_kill",
        "rds_kill_query",
    },
    "v3": {
        "rds_set_external_source",
        "rds_set_external_source_with_auto_position",
        "rds_start_replication",
        "rds_start_replication_until",
        "rds_stop_replication",
        "rds_reset_external_source",
        "rds_skip_repl_error",
        "rds_next_source_log",
        "rds_set_configuration",
        "rds_show_configuration",
        "rds_kill",
        "rds_kill_query",
    },
}
# The calls that name a generation, with arguments that would be valid.
GENERATION_CALLS = {
    "v2": (
        "CALL mysql.rds_set_external_master('127.0.0.1', 1, 'u', 'p', 'f', 4, 0)",
        "CALL mysql.rds_reset_external_master()",
        "CALL mysql.rds_next_master_log(1)",
    ),
    "v3": (
        "CALL mysql.rds_set_external_source('127.0.0.1', 1, 'u', 'p', 'f', 4, 0)",
        "CALL mysql.rds_reset_external_source()",
        "CALL mysql.rds_next_source_log(1)",
    ),
}
OTHER = {"v2": "v3", "v3": "v2"}
SET_SOURCE = {
    "v2": "mysql.rds_set_external_master",
    "v3": "mysql.rds_set_external_source",
}
RESET_SOURCE = {
    "v2": "mysql.rds_reset_external_master",
    "v3": "mysql.rds_reset_external_source",
}
NEXT_LOG = {"v2": "mysql.rds_next_master_log", "v3": "mysql.rds_next_source_log"}


# --- fixtures -----------------------------------------------------------------------


@pytest.fixture(scope="module", autouse=True)
def v2_starting(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Future[Sandbox]]:
    """Start the v2 sandbox in the background while the v3 one starts."""
    root = tmp_path_factory.mktemp("sandbox-v2")
    with ThreadPoolExecutor(max_workers=1) as pool:
        future = pool.submit(start_sandbox, root, V2_VERSION)
        try:
            yield future
        finally:
            with contextlib.suppress(Exception):
                future.result()
            manage.down(root)


@pytest.fixture(scope="module")
def sandboxes(v2_starting: Future[Sandbox], sandbox: Sandbox) -> dict[str, Sandbox]:
    """Both sandboxes by engine generation."""
    return {"v2": v2_starting.result(), "v3": sandbox}


# --- helpers ------------------------------------------------------------------------


def wait_for(check: Callable[[], T | None], what: str) -> T:
    """Poll ``check`` until it returns something truthy; fail after the deadline."""
    deadline = time.monotonic() + DEADLINE_S
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {DEADLINE_S:.0f}s waiting for {what}")
        time.sleep(POLL_S)


def mysql_errno(connection: Connection, sql: str, args: Any = None) -> int:
    """Run a statement that must fail and return the server's error number."""
    with pytest.raises(pymysql.err.MySQLError) as caught:
        query(connection, sql, args)
    errno: int = caught.value.args[0]
    return errno


def one_value(connection: Connection, sql: str, args: Any = None) -> Any:
    """Return the single value of a single-row query."""
    rows = query(connection, sql, args)
    assert len(rows) == 1, rows
    return rows[0][0]


def replica_status(connection: Connection) -> dict[str, Any] | None:
    """Return ``SHOW SLAVE STATUS`` as a dict, or None when no source is set."""
    with connection.cursor(pymysql.cursors.DictCursor) as cursor:
        cursor.execute("SHOW SLAVE STATUS")
        row: dict[str, Any] | None = cursor.fetchone()
    return row


def sql_thread_stopped(connection: Connection) -> dict[str, Any] | None:
    """Return the replica status once the SQL thread has stopped, else None."""
    status = replica_status(connection)
    if status is None or status["Slave_SQL_Running"] != "No":
        return None
    return status


def instance_of(sandbox: Sandbox, instance_id: str) -> dict[str, Any]:
    found = sandbox.rds().describe_db_instances(DBInstanceIdentifier=instance_id)
    description: dict[str, Any] = found["DBInstances"][0]
    return description


def wait_instance_available(sandbox: Sandbox, instance_id: str) -> list[str]:
    """Wait for an instance to be available; return the statuses seen on the way."""
    seen: list[str] = []

    def available() -> bool:
        status = instance_of(sandbox, instance_id)["DBInstanceStatus"]
        if not seen or seen[-1] != status:
            seen.append(status)
        assert status != "failed", f"{instance_id} failed"
        return bool(status == "available")

    wait_for(available, f"{instance_id} to be available")
    return seen


def server_of(sandbox: Sandbox, cluster: str) -> dict[str, Any]:
    servers = [s for s in sandbox.servers() if s["cluster"] == cluster]
    assert len(servers) == 1, servers
    return servers[0]


def writer_member(description: dict[str, Any]) -> dict[str, Any]:
    writers = [m for m in description["DBClusterMembers"] if m["IsClusterWriter"]]
    assert len(writers) == 1, description["DBClusterMembers"]
    writer: dict[str, Any] = writers[0]
    return writer


def position_events(sandbox: Sandbox, instance_id: str) -> list[tuple[str, int]]:
    """Return the crash-recovery binlog positions recorded for an instance."""
    events = sandbox.rds().describe_events(
        SourceType="db-instance", SourceIdentifier=instance_id
    )["Events"]
    positions = []
    for event in events:
        match = POSITION_EVENT.match(event["Message"])
        if match:
            positions.append((match["file"], int(match["position"])))
    return positions


def restore_clone(sandbox: Sandbox, clone: str, **extra: Any) -> dict[str, Any]:
    """Start a copy-on-write restore of the source, as the product does."""
    restored: dict[str, Any] = sandbox.rds().restore_db_cluster_to_point_in_time(
        DBClusterIdentifier=clone,
        SourceDBClusterIdentifier=SOURCE,
        RestoreType="copy-on-write",
        UseLatestRestorableTime=True,
        DBClusterParameterGroupName=SOURCE_PARAMS,
        **extra,
    )["DBCluster"]
    return restored


def create_writer(sandbox: Sandbox, cluster: str, instance_id: str) -> None:
    sandbox.rds().create_db_instance(
        DBInstanceIdentifier=instance_id,
        DBClusterIdentifier=cluster,
        DBInstanceClass=INSTANCE_CLASS,
        Engine="aurora-mysql",
    )


def cluster_exists(sandbox: Sandbox, cluster: str) -> bool:
    found = sandbox.rds().describe_db_clusters(
        Filters=[{"Name": "db-cluster-id", "Values": [cluster]}]
    )
    return bool(found["DBClusters"])


def ensure_binlog(sandbox: Sandbox) -> None:
    """Turn binary logging on in the source (format MIXED), once."""
    with admin_connection(sandbox) as connection:
        if one_value(connection, "SELECT @@log_bin") == 1:
            return
    set_binlog_format(sandbox, "MIXED")
    sandbox.rds().reboot_db_instance(DBInstanceIdentifier=SOURCE_WRITER)
    wait_instance_available(sandbox, SOURCE_WRITER)


def set_binlog_format(sandbox: Sandbox, binlog_format: str) -> None:
    sandbox.rds().modify_db_cluster_parameter_group(
        DBClusterParameterGroupName=SOURCE_PARAMS,
        Parameters=[
            {
                "ParameterName": "binlog_format",
                "ParameterValue": binlog_format,
                "ApplyMethod": "pending-reboot",
            }
        ],
    )


def parameter(rds: Any, group: str, name: str) -> dict[str, Any]:
    """Return one parameter of a cluster parameter group."""
    pages = rds.get_paginator("describe_db_cluster_parameters").paginate(
        DBClusterParameterGroupName=group
    )
    found = [
        p for page in pages for p in page["Parameters"] if p["ParameterName"] == name
    ]
    assert len(found) == 1, found
    only: dict[str, Any] = found[0]
    return only


def ensure_clone(sandbox: Sandbox) -> None:
    """Make the clone of the source with binary logging on, once."""
    if cluster_exists(sandbox, CLONE):
        return
    ensure_binlog(sandbox)
    restore_clone(sandbox, CLONE)
    create_writer(sandbox, CLONE, CLONE_WRITER)
    wait_instance_available(sandbox, CLONE_WRITER)


def routine_names(connection: Connection) -> set[str]:
    rows = query(
        connection,
        "SELECT ROUTINE_NAME FROM information_schema.ROUTINES "
        "WHERE ROUTINE_SCHEMA = 'mysql' AND ROUTINE_NAME LIKE 'rds\\_%%'",
    )
    return {name for (name,) in rows}


def binlog_inserts_before(
    connection: Connection, file: str, position: int
) -> tuple[set[int], set[int]]:
    """Return the probe ids inserted before and after a binlog position.

    Each probe row is inserted in its own transaction, so the statement's event
    starts before the position exactly when the transaction committed before it.
    """
    before: set[int] = set()
    after: set[int] = set()
    for log in query(connection, "SHOW BINARY LOGS"):
        name = log[0]
        with connection.cursor(pymysql.cursors.DictCursor) as cursor:
            cursor.execute(f"SHOW BINLOG EVENTS IN '{name}'")
            events = cursor.fetchall()
        for event in events:
            match = PROBE_INSERT.search(event["Info"] or "")
            if match is None:
                continue
            earlier = (name, event["Pos"]) < (file, position)
            (before if earlier else after).add(int(match["id"]))
    return before, after


class ProbeWriter:
    """Insert increasing ids into ``shop.clone_probe``, one transaction each."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.connection = admin_connection(sandbox)
        self.written = 0
        self.stopping = threading.Event()
        self.failure: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> ProbeWriter:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stopping.set()
        self.thread.join(timeout=DEADLINE_S)
        self.connection.close()

    def _run(self) -> None:
        try:
            while not self.stopping.is_set():
                query(
                    self.connection,
                    "INSERT INTO shop.clone_probe (id) VALUES (%s)",
                    (self.written + 1,),
                )
                self.written += 1
                time.sleep(0.002)
        except BaseException as error:  # reported by the test
            self.failure = error

    def wait_written(self, count: int) -> None:
        wait_for(lambda: self.written >= count or self.failure, f"{count} inserts")
        assert self.failure is None, self.failure


# --- endpoints ----------------------------------------------------------------------


def test_cluster_endpoint_reaches_the_writer_server(
    sandboxes: dict[str, Sandbox],
) -> None:
    """The cluster endpoint forwards to the writer; instances report the server's port.

    ``describe_db_clusters`` gives 127.0.0.1 and a port of its own (a forwarder
    bound to the cluster name); the member flagged ``IsClusterWriter`` is the
    writer, whose instance endpoint is the server's real address and port.
    """
    sandbox = sandboxes["v3"]
    cluster = describe_cluster(sandbox, SOURCE)
    server = server_of(sandbox, SOURCE)
    writer = instance_of(sandbox, writer_member(cluster)["DBInstanceIdentifier"])

    assert writer["DBInstanceIdentifier"] == SOURCE_WRITER
    assert (cluster["Endpoint"], cluster["ReaderEndpoint"]) == ("127.0.0.1",) * 2
    assert cluster["Port"] != server["port"]
    assert writer["Endpoint"] == {"Address": "127.0.0.1", "Port": server["port"]}
    assert writer["DbInstancePort"] == server["port"]
    assert server["instance"] == SOURCE_WRITER
    with admin_connection(sandbox) as through_cluster:
        seen = query(through_cluster, "SELECT @@port, @@server_id")
    with pymysql.connect(
        host=writer["Endpoint"]["Address"],
        port=writer["Endpoint"]["Port"],
        user="admin",
        password=sandbox.credentials["admin"],
    ) as direct:
        assert query(direct, "SELECT @@port, @@server_id") == seen
    assert seen[0][0] == server["port"]


# --- parameter groups ---------------------------------------------------------------


def test_default_parameter_groups_cannot_be_modified(
    sandboxes: dict[str, Sandbox],
) -> None:
    """Modifying a ``default.*`` group fails with AWS's InvalidParameterValue.

    The default cluster group exists for the family and reads Aurora's
    default ``binlog_format=OFF``.
    """
    rds = sandboxes["v3"].rds()
    change = [
        {
            "ParameterName": "binlog_format",
            "ParameterValue": "ROW",
            "ApplyMethod": "pending-reboot",
        }
    ]

    with pytest.raises(ClientError) as cluster_group:
        rds.modify_db_cluster_parameter_group(
            DBClusterParameterGroupName="default.aurora-mysql8.0", Parameters=change
        )
    with pytest.raises(ClientError) as instance_group:
        rds.modify_db_parameter_group(
            DBParameterGroupName="default.aurora-mysql8.0", Parameters=change
        )

    defaults = parameter(rds, "default.aurora-mysql8.0", "binlog_format")
    assert (defaults["ParameterValue"], defaults["Source"]) == ("OFF", "engine-default")
    for caught in (cluster_group, instance_group):
        assert caught.value.response["Error"]["Code"] == "InvalidParameterValue"
        assert (
            caught.value.response["Error"]["Message"]
            == "Cannot modify a default parameter group."
        )


def test_read_only_parameter_blocks_application_writes(
    sandboxes: dict[str, Sandbox],
) -> None:
    """``read_only=1`` in the writer's group makes the server refuse app writes.

    The parameter is dynamic: it applies at once (error 1290 for ``shop_app``)
    and ``read_only=0`` lifts it again.
    """
    sandbox = sandboxes["v3"]
    rds = sandbox.rds()
    cluster = describe_cluster(sandbox, SOURCE)
    insert = "INSERT INTO shop.order_events (order_id, event) VALUES (1, 'probe')"

    def set_read_only(value: str) -> None:
        rds.modify_db_parameter_group(
            DBParameterGroupName=SOURCE_INSTANCE_PARAMS,
            Parameters=[
                {
                    "ParameterName": "read_only",
                    "ParameterValue": value,
                    "ApplyMethod": "immediate",
                }
            ],
        )

    with pymysql.connect(
        host=cluster["Endpoint"],
        port=cluster["Port"],
        user="shop_app",
        password=sandbox.credentials["app"],
        autocommit=True,
    ) as app:
        set_read_only("1")
        try:
            assert one_value(app, "SELECT @@read_only") == 1
            assert mysql_errno(app, insert) == ER_OPTION_PREVENTS_STATEMENT
        finally:
            set_read_only("0")
        assert one_value(app, "SELECT @@read_only") == 0
        query(app, insert)
        query(app, "DELETE FROM shop.order_events WHERE event = 'probe'")


# --- privileges and procedures ------------------------------------------------------


@pytest.mark.parametrize("generation", GENERATIONS)
def test_admin_has_no_super_and_gets_its_generations_procedures(
    sandboxes: dict[str, Sandbox], generation: str
) -> None:
    """The admin user cannot run replication statements; the rds_* procedures can.

    ``CHANGE MASTER TO``, ``START SLAVE`` and ``SET GLOBAL
    sql_slave_skip_counter`` fail with 1227. The server carries exactly its
    generation's ``mysql.rds_*`` procedures, with definer's rights; the other
    generation's names fail with 1305.
    """
    with admin_connection(sandboxes[generation]) as admin:
        refused = [
            mysql_errno(admin, "CHANGE MASTER TO MASTER_HOST='127.0.0.1'"),
            mysql_errno(admin, "START SLAVE"),
            mysql_errno(admin, "SET GLOBAL sql_slave_skip_counter = 1"),
        ]
        routines = query(
            admin,
            "SELECT ROUTINE_NAME, SECURITY_TYPE, DEFINER "
            "FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = 'mysql' "
            "AND ROUTINE_NAME LIKE 'rds\\_%%'",
        )
        missing = [
            mysql_errno(admin, call) for call in GENERATION_CALLS[OTHER[generation]]
        ]

    assert refused == [ER_SPECIFIC_ACCESS_DENIED] * 3
    assert {name for name, _, _ in routines} == PROCEDURE_NAMES[generation]
    assert {(rights, definer) for _, rights, definer in routines} == {
        ("DEFINER", "root@localhost")
    }
    assert missing == [ER_SP_DOES_NOT_EXIST] * 3


@pytest.mark.parametrize("generation", GENERATIONS)
def test_binlog_retention_hours_set_the_binlog_expiry(
    sandboxes: dict[str, Sandbox], generation: str
) -> None:
    """``rds_set_configuration('binlog retention hours', N)`` sets the expiry.

    The server's ``binlog_expire_logs_seconds`` becomes N*3600 and
    ``rds_show_configuration`` reads N back; 0 and 2161 are refused and change
    nothing; NULL goes back to no retention.
    """
    set_hours = "CALL mysql.rds_set_configuration('binlog retention hours', %s)"
    with admin_connection(sandboxes[generation]) as admin:
        query(admin, set_hours, (24,))
        after_24 = one_value(admin, "SELECT @@binlog_expire_logs_seconds")
        shown = query(admin, "CALL mysql.rds_show_configuration")
        refused = [mysql_errno(admin, set_hours, (hours,)) for hours in (0, 2161)]
        after_refused = one_value(admin, "SELECT @@binlog_expire_logs_seconds")
        query(admin, set_hours, (2160,))
        after_2160 = one_value(admin, "SELECT @@binlog_expire_logs_seconds")
        query(admin, set_hours, (None,))
        after_null = one_value(admin, "SELECT @@binlog_expire_logs_seconds")
        shown_null = query(admin, "CALL mysql.rds_show_configuration")

    assert after_24 == 24 * 3600
    assert [row[:2] for row in shown] == [("binlog retention hours", "24")]
    assert refused == [ER_SIGNAL_EXCEPTION] * 2
    assert after_refused == 24 * 3600
    assert after_2160 == 2160 * 3600
    assert after_null == 0
    assert [row[:2] for row in shown_null] == [("binlog retention hours", None)]


@pytest.mark.parametrize("generation", GENERATIONS)
def test_rds_kill_procedures_end_other_users_sessions(
    sandboxes: dict[str, Sandbox], generation: str
) -> None:
    """Plain KILL of another user's session is refused to the admin (1095).

    ``rds_kill_query`` interrupts the session's running statement and leaves
    the session open; ``rds_kill`` ends the session.
    """
    sandbox = sandboxes[generation]
    cluster = describe_cluster(sandbox, SOURCE)
    app = pymysql.connect(
        host=cluster["Endpoint"],
        port=cluster["Port"],
        user="shop_app",
        password=sandbox.credentials["app"],
        autocommit=True,
    )
    app_id = one_value(app, "SELECT CONNECTION_ID()")
    outcome: list[Any] = []

    def sleep_long() -> None:
        try:
            outcome.append(query(app, "SELECT SLEEP(30)"))
        except pymysql.err.MySQLError as error:
            outcome.append(error.args[0])

    with admin_connection(sandbox) as admin:
        plain_kill = mysql_errno(admin, "KILL %s", (app_id,))
        sleeper = threading.Thread(target=sleep_long)
        sleeper.start()
        wait_for(
            lambda: query(
                admin,
                "SELECT 1 FROM information_schema.PROCESSLIST "
                "WHERE ID = %s AND INFO LIKE 'SELECT SLEEP%%'",
                (app_id,),
            ),
            "the app session to run its statement",
        )
        query(admin, "CALL mysql.rds_kill_query(%s)", (app_id,))
        sleeper.join(timeout=DEADLINE_S)
        still_open = query(app, "SELECT 1")
        query(admin, "CALL mysql.rds_kill(%s)", (app_id,))
        wait_for(
            lambda: (
                not query(
                    admin,
                    "SELECT 1 FROM information_schema.PROCESSLIST WHERE ID = %s",
                    (app_id,),
                )
            ),
            "the app session to end",
        )
    with pytest.raises(pymysql.err.OperationalError) as ended:
        query(app, "SELECT 1")
    app.close()

    assert plain_kill == ER_KILL_DENIED
    # MariaDB reports the interrupted SLEEP() as error 1317 (MySQL 8 returns 1).
    assert outcome == [ER_QUERY_INTERRUPTED]
    assert still_open == [(1,)]
    assert ended.value.args[0] in CR_CONNECTION_LOST


# --- the clone ----------------------------------------------------------------------


def test_copy_on_write_restore_creates_an_empty_cluster(
    sandboxes: dict[str, Sandbox],
) -> None:
    """The restore makes a cluster without instances, with the given tags and group.

    Without a group the clone gets the family's default group. Restoring or
    creating a cluster onto an identifier that exists fails with
    DBClusterAlreadyExistsFault.
    """
    sandbox = sandboxes["v3"]
    rds = sandbox.rds()
    tags = [{"Key": "replicator:run", "Value": "test-run-1"}]

    restored = restore_clone(sandbox, UNLOGGED_CLONE, Tags=tags)
    described = describe_cluster(sandbox, UNLOGGED_CLONE)
    ungrouped = rds.restore_db_cluster_to_point_in_time(
        DBClusterIdentifier="ungrouped-clone",
        SourceDBClusterIdentifier=SOURCE,
        RestoreType="copy-on-write",
        UseLatestRestorableTime=True,
    )["DBCluster"]
    refused = []
    for taken in (UNLOGGED_CLONE, SOURCE):
        with pytest.raises(ClientError) as caught:
            restore_clone(sandbox, taken)
        refused.append(caught.value.response["Error"]["Code"])
    with pytest.raises(ClientError) as created:
        rds.create_db_cluster(
            DBClusterIdentifier=SOURCE,
            Engine="aurora-mysql",
            EngineVersion=V3_VERSION,
            MasterUsername="admin",
            MasterUserPassword="another-password",
        )

    assert restored["DBClusterMembers"] == []
    assert described["DBClusterMembers"] == []
    assert described["TagList"] == tags
    assert described["DBClusterParameterGroup"] == SOURCE_PARAMS
    assert described["EngineVersion"] == V3_VERSION
    assert ungrouped["DBClusterParameterGroup"] == "default.aurora-mysql8.0"
    assert refused == ["DBClusterAlreadyExistsFault"] * 2
    assert created.value.response["Error"]["Code"] == "DBClusterAlreadyExistsFault"


def test_clone_of_a_source_without_binlog_records_no_position(
    sandboxes: dict[str, Sandbox],
) -> None:
    """With binary logging off on the source, the clone's writer gets no position event.

    The writer still starts with the source's data and users. Deleting the
    instance stops its server; deleting the cluster then removes it.
    """
    sandbox = sandboxes["v3"]
    if not cluster_exists(sandbox, UNLOGGED_CLONE):
        restore_clone(sandbox, UNLOGGED_CLONE)
    with admin_connection(sandbox) as source:
        assert one_value(source, "SELECT @@log_bin") == 0
        customers = one_value(source, "SELECT COUNT(*) FROM shop.customers")

    create_writer(sandbox, UNLOGGED_CLONE, f"{UNLOGGED_CLONE}-1")
    wait_instance_available(sandbox, f"{UNLOGGED_CLONE}-1")

    with admin_connection(sandbox, UNLOGGED_CLONE) as clone:
        assert one_value(clone, "SELECT COUNT(*) FROM shop.customers") == customers
    assert position_events(sandbox, f"{UNLOGGED_CLONE}-1") == []
    member = writer_member(describe_cluster(sandbox, UNLOGGED_CLONE))
    assert member["DBInstanceIdentifier"] == f"{UNLOGGED_CLONE}-1"

    server = server_of(sandbox, UNLOGGED_CLONE)
    rds = sandbox.rds()
    rds.delete_db_instance(
        DBInstanceIdentifier=f"{UNLOGGED_CLONE}-1", SkipFinalSnapshot=True
    )
    rds.delete_db_cluster(DBClusterIdentifier=UNLOGGED_CLONE, SkipFinalSnapshot=True)
    assert [s for s in sandbox.servers() if s["cluster"] == UNLOGGED_CLONE] == []
    assert not pid_alive(server["pid"])
    assert not cluster_exists(sandbox, UNLOGGED_CLONE)


# --- binary logging -----------------------------------------------------------------


@pytest.mark.parametrize("generation", GENERATIONS)
def test_binlog_format_takes_effect_after_a_writer_reboot(
    sandboxes: dict[str, Sandbox], generation: str
) -> None:
    """Binary logging stays off until ``binlog_format`` is set and the writer reboots.

    Between the change and the reboot the writer's member status is
    ``pending-reboot``. The reboot restarts the server cleanly: open connections
    drop, the instance goes ``rebooting`` then ``available``, and the server
    comes back with ``log_bin=ON``, the format and ``in-sync``.
    """
    sandbox = sandboxes[generation]
    rds = sandbox.rds()
    before = server_of(sandbox, SOURCE)
    open_connection = admin_connection(sandbox)
    assert one_value(open_connection, "SELECT @@log_bin") == 0

    default = parameter(rds, SOURCE_PARAMS, "binlog_format")
    set_binlog_format(sandbox, "MIXED")
    changed = parameter(rds, SOURCE_PARAMS, "binlog_format")
    pending = writer_member(describe_cluster(sandbox, SOURCE))
    still_off = one_value(open_connection, "SELECT @@log_bin")
    rebooting = rds.reboot_db_instance(DBInstanceIdentifier=SOURCE_WRITER)
    statuses = wait_instance_available(sandbox, SOURCE_WRITER)

    with pytest.raises(pymysql.err.OperationalError) as dropped:
        query(open_connection, "SELECT 1")
    open_connection.close()
    with admin_connection(sandbox) as admin:
        settings = query(admin, "SELECT @@log_bin, @@binlog_format")
        logs = [row[0] for row in query(admin, "SHOW BINARY LOGS")]
    after = server_of(sandbox, SOURCE)
    server_name = Path(after["root_socket"]).stem
    error_log = sandbox.root / "servers" / server_name / f"{server_name}.err"

    assert (default["ParameterValue"], default["Source"]) == ("OFF", "engine-default")
    assert (changed["ParameterValue"], changed["Source"]) == ("MIXED", "user")
    assert pending["DBClusterParameterGroupStatus"] == "pending-reboot"
    assert still_off == 0
    assert rebooting["DBInstance"]["DBInstanceStatus"] == "rebooting"
    assert statuses[-1] == "available"
    assert set(statuses) <= {"rebooting", "available"}
    assert dropped.value.args[0] in CR_CONNECTION_LOST
    assert settings == [(1, "MIXED")]
    assert logs
    assert all(BINLOG_FILE.match(name) for name in logs)
    assert after["pid"] != before["pid"]
    assert after["port"] == before["port"]
    assert len(CLEAN_SHUTDOWN.findall(error_log.read_text())) == 1
    member = writer_member(describe_cluster(sandbox, SOURCE))
    assert member["DBClusterParameterGroupStatus"] == "in-sync"


@pytest.mark.parametrize("generation", GENERATIONS)
def test_clone_is_a_consistent_copy_taken_during_writes(
    sandboxes: dict[str, Sandbox], generation: str
) -> None:
    """The clone's first writer holds the source as of the recorded binlog position.

    Rows are inserted into the source, one transaction each, before, during and
    after the copy: the copy holds rows written after the writer was requested
    and lacks rows written before it was available. It holds exactly the rows
    whose insert precedes the position in the instance event ``Binlog position
    from crash recovery is FILE POS`` (read from the source's binary log), the
    rest of the source's data unchanged, and its users with their passwords.
    """
    sandbox = sandboxes[generation]
    ensure_binlog(sandbox)
    with admin_connection(sandbox) as admin:
        query(admin, "CREATE TABLE shop.clone_probe (id INT PRIMARY KEY)")

    with ProbeWriter(sandbox) as writer:
        writer.wait_written(50)
        restore_clone(sandbox, CLONE)
        requested = writer.written
        create_writer(sandbox, CLONE, CLONE_WRITER)
        wait_instance_available(sandbox, CLONE_WRITER)
        available = writer.written
        writer.wait_written(available + 20)
    assert writer.failure is None, writer.failure

    positions = position_events(sandbox, CLONE_WRITER)
    assert len(positions) == 1, positions
    file, position = positions[0]
    with root_connection(sandbox, SOURCE) as source_root:
        before, after = binlog_inserts_before(source_root, file, position)
    probe_ids = "SELECT id FROM shop.clone_probe"
    with admin_connection(sandbox) as source, admin_connection(sandbox, CLONE) as clone:
        source_ids = {row[0] for row in query(source, probe_ids)}
        clone_ids = {row[0] for row in query(clone, probe_ids)}
        source_shop = table_contents(source, "shop")
        clone_shop = table_contents(clone, "shop")
        clone_users = query(
            clone,
            "SELECT User FROM mysql.user WHERE User IN ('admin', 'shop_app') "
            "ORDER BY User",
        )
    with pymysql.connect(
        host="127.0.0.1",
        port=describe_cluster(sandbox, CLONE)["Port"],
        user="shop_app",
        password=sandbox.credentials["app"],
    ) as app:
        app_reads = one_value(app, "SELECT COUNT(*) FROM shop.products")

    assert BINLOG_FILE.match(file)
    assert before | after == source_ids
    assert max(before) > requested
    assert min(after) <= available
    assert clone_ids == before
    del source_shop["clone_probe"], clone_shop["clone_probe"]
    assert clone_shop == source_shop
    assert clone_users == [("admin",), ("shop_app",)]
    assert app_reads == len(source_shop["products"])


# --- replication through the procedures -----------------------------------------------


@pytest.mark.parametrize("generation", GENERATIONS)
def test_replication_runs_through_the_rds_procedures(
    sandboxes: dict[str, Sandbox], generation: str
) -> None:
    """The admin replicates the clone from the source with the procedures alone.

    ``rds_set_external_*`` at the clone's recorded position and
    ``rds_start_replication`` start it; a duplicate key stops the SQL thread
    (1062) and ``rds_skip_repl_error`` moves past exactly that event; with no
    error it answers with a message. ``rds_stop_replication``,
    ``rds_next_*_log`` and ``rds_reset_external_*`` stop, move to the next
    source binlog and forget the source. A v3 replica does not apply the
    ``mysql`` schema, so the replication user made on the source after the
    clone reaches a v2 clone only.
    """
    sandbox = sandboxes[generation]
    ensure_clone(sandbox)
    file, position = position_events(sandbox, CLONE_WRITER)[0]
    source_cluster = describe_cluster(sandbox, SOURCE)
    with admin_connection(sandbox) as source, admin_connection(sandbox, CLONE) as clone:
        account = (REPL_USER, REPL_PASSWORD)
        query(source, "CREATE USER %s@'%%' IDENTIFIED BY %s", account)
        query(source, "GRANT REPLICATION SLAVE ON *.* TO %s@'%%'", account[:1])
        query(source, "CREATE TABLE shop.repl_probe (id INT PRIMARY KEY, origin TEXT)")

        query(
            clone,
            f"CALL {SET_SOURCE[generation]}(%s, %s, %s, %s, %s, %s, 0)",
            (
                source_cluster["Endpoint"],
                source_cluster["Port"],
                REPL_USER,
                REPL_PASSWORD,
                file,
                position,
            ),
        )
        started = query(clone, "CALL mysql.rds_start_replication")
        wait_for(
            lambda: query(
                clone,
                "SELECT 1 FROM information_schema.TABLES "
                "WHERE TABLE_SCHEMA = 'shop' AND TABLE_NAME = 'repl_probe'",
            ),
            "the probe table to replicate",
        )
        running = replica_status(clone)
        nothing_to_skip = query(clone, "CALL mysql.rds_skip_repl_error")

        query(clone, "INSERT INTO shop.repl_probe VALUES (1, 'clone')")
        query(source, "INSERT INTO shop.repl_probe VALUES (1, 'source')")
        failed = wait_for(
            lambda: sql_thread_stopped(clone),
            "the SQL thread to stop on the duplicate key",
        )
        skipped = query(clone, "CALL mysql.rds_skip_repl_error")
        query(source, "INSERT INTO shop.repl_probe VALUES (2, 'source')")
        wait_for(
            lambda: query(clone, "SELECT 1 FROM shop.repl_probe WHERE id = 2"),
            "replication to continue after the skip",
        )
        resumed = replica_status(clone)
        replicated_users = query(
            clone, "SELECT User FROM mysql.user WHERE User = %s", (REPL_USER,)
        )
        clone_rows = query(clone, "SELECT id, origin FROM shop.repl_probe ORDER BY id")

        stopped = query(clone, "CALL mysql.rds_stop_replication")
        after_stop = replica_status(clone)
        assert after_stop is not None
        current_index = int(after_stop["Master_Log_File"].rsplit(".", 1)[1])
        with root_connection(sandbox, SOURCE) as source_root:
            query(source_root, "FLUSH BINARY LOGS")
        query(source, "INSERT INTO shop.repl_probe VALUES (3, 'source')")
        query(clone, f"CALL {NEXT_LOG[generation]}(%s)", (current_index,))
        wait_for(
            lambda: query(clone, "SELECT 1 FROM shop.repl_probe WHERE id = 3"),
            "replication from the next binlog file",
        )
        next_log = replica_status(clone)
        reset = query(clone, f"CALL {RESET_SOURCE[generation]}")
        after_reset = replica_status(clone)

    assert started == [("Replica running normally.",)]
    assert running is not None
    assert (running["Slave_IO_Running"], running["Slave_SQL_Running"]) == ("Yes", "Yes")
    assert nothing_to_skip == [("Replica is running normally; no error to skip.",)]
    assert failed["Last_SQL_Errno"] == ER_DUP_ENTRY
    assert skipped == [("Statement in error has been skipped.",)]
    assert resumed is not None
    assert (resumed["Slave_SQL_Running"], resumed["Last_SQL_Errno"]) == ("Yes", 0)
    assert (resumed["Relay_Master_Log_File"], resumed["Exec_Master_Log_Pos"]) > (
        failed["Relay_Master_Log_File"],
        failed["Exec_Master_Log_Pos"],
    )
    assert clone_rows == [(1, "clone"), (2, "source")]
    assert replicated_users == ([(REPL_USER,)] if generation == "v2" else [])
    assert stopped == [("Replica is now down or disabled.",)]
    assert (after_stop["Slave_IO_Running"], after_stop["Slave_SQL_Running"]) == (
        "No",
        "No",
    )
    assert next_log is not None
    assert next_log["Master_Log_File"] == f"mysql-bin-changelog.{current_index + 1:06d}"
    assert next_log["Slave_IO_Running"] == "Yes"
    assert next_log["Slave_SQL_Running"] == "Yes"
    assert reset == [("Replication configuration removed.",)]
    assert after_reset is None


# --- upgrade and rename -------------------------------------------------------------


def test_major_upgrade_of_a_v2_clone_switches_to_v3_procedures(
    sandboxes: dict[str, Sandbox],
) -> None:
    """A clone upgraded from v2 to v3 reports the version and has v3's procedures.

    Without ``AllowMajorVersionUpgrade`` the change is refused. After the
    upgrade the v3 names exist, the v2 names fail with 1305, and the writer
    reports its own fresh binlog in a new position event.
    """
    sandbox = sandboxes["v2"]
    rds = sandbox.rds()
    ensure_clone(sandbox)
    events_before = position_events(sandbox, CLONE_WRITER)

    with pytest.raises(ClientError) as refused:
        rds.modify_db_cluster(
            DBClusterIdentifier=CLONE, EngineVersion=V3_VERSION, ApplyImmediately=True
        )
    modified = rds.modify_db_cluster(
        DBClusterIdentifier=CLONE,
        EngineVersion=V3_VERSION,
        AllowMajorVersionUpgrade=True,
        ApplyImmediately=True,
    )["DBCluster"]
    wait_for(
        lambda: describe_cluster(sandbox, CLONE)["Status"] == "available",
        "the upgrade to finish",
    )
    wait_instance_available(sandbox, CLONE_WRITER)
    with admin_connection(sandbox, CLONE) as clone:
        names = routine_names(clone)
        v2_calls = [mysql_errno(clone, call) for call in GENERATION_CALLS["v2"]]
    events_after = position_events(sandbox, CLONE_WRITER)

    assert refused.value.response["Error"]["Code"] == "InvalidParameterCombination"
    assert modified["EngineVersion"] == V3_VERSION
    assert describe_cluster(sandbox, CLONE)["EngineVersion"] == V3_VERSION
    assert instance_of(sandbox, CLONE_WRITER)["EngineVersion"] == V3_VERSION
    assert names == PROCEDURE_NAMES["v3"]
    assert v2_calls == [ER_SP_DOES_NOT_EXIST] * 3
    assert events_after[: len(events_before)] == events_before
    assert [f for f, _ in events_after[len(events_before) :]] == [
        "mysql-bin-changelog.000001"
    ]


def test_minor_version_change_is_reported_back(sandboxes: dict[str, Sandbox]) -> None:
    """A minor ``EngineVersion`` change on a clone needs no flag and is reported."""
    sandbox = sandboxes["v3"]
    ensure_clone(sandbox)
    target = "8.0.mysql_aurora.3.06.0"

    modified = sandbox.rds().modify_db_cluster(
        DBClusterIdentifier=CLONE, EngineVersion=target, ApplyImmediately=True
    )["DBCluster"]
    wait_for(
        lambda: describe_cluster(sandbox, CLONE)["Status"] == "available",
        "the upgrade to finish",
    )

    assert modified["EngineVersion"] == target
    assert describe_cluster(sandbox, CLONE)["EngineVersion"] == target
    with admin_connection(sandbox, CLONE) as clone:
        assert routine_names(clone) == PROCEDURE_NAMES["v3"]


def test_rename_moves_the_endpoint_and_instances(sandboxes: dict[str, Sandbox]) -> None:
    """``NewDBClusterIdentifier`` moves the cluster's name, endpoint and instances.

    The old name's port stops reaching a server; the new name's port reaches
    the renamed cluster's writer; the instance lists the new cluster; a name
    that is taken is refused.
    """
    sandbox = sandboxes["v3"]
    rds = sandbox.rds()
    ensure_clone(sandbox)
    old = describe_cluster(sandbox, CLONE)
    server = server_of(sandbox, CLONE)

    renamed = rds.modify_db_cluster(
        DBClusterIdentifier=CLONE,
        NewDBClusterIdentifier=RENAMED_CLONE,
        ApplyImmediately=True,
    )["DBCluster"]
    with pytest.raises(ClientError) as taken:
        rds.modify_db_cluster(
            DBClusterIdentifier=RENAMED_CLONE,
            NewDBClusterIdentifier=SOURCE,
            ApplyImmediately=True,
        )
    new = describe_cluster(sandbox, RENAMED_CLONE)
    with pytest.raises(pymysql.err.OperationalError):
        pymysql.connect(
            host="127.0.0.1",
            port=old["Port"],
            user="admin",
            password=sandbox.credentials["admin"],
            connect_timeout=5,
        )
    with admin_connection(sandbox, RENAMED_CLONE) as clone:
        reached = one_value(clone, "SELECT @@port")

    assert renamed["DBClusterIdentifier"] == RENAMED_CLONE
    assert taken.value.response["Error"]["Code"] == "DBClusterAlreadyExistsFault"
    assert not cluster_exists(sandbox, CLONE)
    assert new["Port"] != old["Port"]
    assert reached == server["port"]
    assert server_of(sandbox, RENAMED_CLONE)["port"] == server["port"]
    assert [m["DBInstanceIdentifier"] for m in new["DBClusterMembers"]] == [
        CLONE_WRITER
    ]
    assert instance_of(sandbox, CLONE_WRITER)["DBClusterIdentifier"] == RENAMED_CLONE
