"""`replicator run` end to end on sandboxes, v3 and v2, under a live write load."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bench.workload import Workload
from replicator.sandbox import manage
from replicator.sandbox.manage import Sandbox
from tests.helpers import (
    V2_VERSION,
    V3_VERSION,
    admin_connection,
    cli,
    describe_cluster,
    query,
    root_connection,
    sandbox_env,
    start_sandbox,
    table_contents,
    write_runbook,
)

CATCH_UP_DEADLINE_S = 60.0
MUTATING_ACTIONS_PREFIXES = (
    "Create",
    "Modify",
    "Reboot",
    "Restore",
    "Delete",
    "Add",
    "Remove",
    "Start",
    "Stop",
    "Failover",
)
MUTATING_SQL = (
    "INSERT",
    "UPDATE",
    "DELETE",
    "REPLACE",
    "CREATE",
    "DROP",
    "ALTER",
    "GRANT",
    "REVOKE",
    "SET GLOBAL",
    "CHANGE",
    "START",
    "STOP",
    "KILL",
    "CALL MYSQL.RDS_SET",
    "CALL MYSQL.RDS_START",
    "CALL MYSQL.RDS_STOP",
    "CALL MYSQL.RDS_RESET",
    "CALL MYSQL.RDS_SKIP",
    "CALL MYSQL.RDS_NEXT",
    "CALL MYSQL.RDS_KILL",
)


def wait_caught_up(sandbox: Sandbox) -> None:
    """Wait until the clone has executed everything the source has written."""
    source = admin_connection(sandbox)
    clone = admin_connection(sandbox, "sandbox-clone")
    deadline = time.monotonic() + CATCH_UP_DEADLINE_S
    try:
        while time.monotonic() < deadline:
            file, position = query(source, "SHOW MASTER STATUS")[0][:2]
            with clone.cursor() as cursor:
                cursor.execute("SHOW SLAVE STATUS")
                names = [c[0] for c in cursor.description]
                row = dict(zip(names, cursor.fetchone(), strict=True))
            if (row["Relay_Master_Log_File"], row["Exec_Master_Log_Pos"]) == (
                file,
                position,
            ):
                return
            time.sleep(0.2)
    finally:
        source.close()
        clone.close()
    raise AssertionError("the clone did not catch up with the source")


def app_endpoint(sandbox: Sandbox) -> tuple[str, int]:
    cluster = describe_cluster(sandbox, "sandbox-source")
    return cluster["Endpoint"], cluster["Port"]


@pytest.fixture(scope="module", params=[V3_VERSION, V2_VERSION], ids=["v3", "v2"])
def ran(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Sandbox, Path, Any]]:
    """A sandbox on which `run` completed under load, the load then stopped."""
    root = tmp_path_factory.mktemp("run")
    sandbox = start_sandbox(root / "sandbox", request.param)
    try:
        runbook = write_runbook(root)
        host, port = app_endpoint(sandbox)
        workload = Workload(host, port, "shop_app", sandbox.credentials["app"], rate=50)
        workload.start()
        result = cli("run", str(runbook), "--yes", env=sandbox_env(sandbox), cwd=root)
        outcome = workload.stop()
        assert result.code == 0, result.stderr[-3000:]
        wait_caught_up(sandbox)
        yield sandbox, root, outcome
    finally:
        manage.down(root / "sandbox")


def test_run_leaves_identical_tables_after_load(ran: tuple[Sandbox, Path, Any]) -> None:
    """Every table of shop holds identical rows on source and clone after the load."""
    sandbox, _root, outcome = ran
    source = admin_connection(sandbox)
    clone = admin_connection(sandbox, "sandbox-clone")

    assert len(outcome.acknowledged) > 20
    assert outcome.check_present(source) == []
    assert outcome.check_present(clone) == []
    assert table_contents(clone, "shop") == table_contents(source, "shop")


def test_second_run_changes_nothing(ran: tuple[Sandbox, Path, Any]) -> None:
    """A second run exits 0 and sends no mutating AWS call and no mutating SQL."""
    sandbox, root, _outcome = ran
    runbook = root / "sandbox.yaml"
    logs = [root_connection(sandbox, c) for c in ("sandbox-source", "sandbox-clone")]
    for connection in logs:
        query(connection, "TRUNCATE mysql.general_log")
        query(connection, "SET GLOBAL log_output = 'TABLE'")
        query(connection, "SET GLOBAL general_log = ON")
    before = sandbox.requests()

    result = cli("run", str(runbook), "--yes", env=sandbox_env(sandbox), cwd=root)

    after = sandbox.requests()
    statements = []
    for connection in logs:
        query(connection, "SET GLOBAL general_log = OFF")
        statements += [
            str(row[0], "utf-8") if isinstance(row[0], bytes) else str(row[0])
            for row in query(
                connection,
                "SELECT argument FROM mysql.general_log "
                "WHERE command_type = 'Query' AND user_host LIKE 'admin%%'",
            )
        ]
    sent = {action: after[action] - before.get(action, 0) for action in after}
    mutating_calls = {
        action: count
        for action, count in sent.items()
        if count and action.startswith(MUTATING_ACTIONS_PREFIXES)
    }
    mutating_sql = [s for s in statements if s.strip().upper().startswith(MUTATING_SQL)]
    assert result.code == 0, result.stderr[-3000:]
    assert "nothing to do" in result.stderr
    assert mutating_calls == {}
    assert mutating_sql == []
    assert sent.get("DescribeDBClusters", 0) > 0
    assert len(statements) > 0


def test_status_json_reports_caught_up_replica(ran: tuple[Sandbox, Path, Any]) -> None:
    """status --json lists every step done and the replica at the source's position."""
    sandbox, root, _outcome = ran
    import json

    result = cli(
        "status",
        str(root / "sandbox.yaml"),
        "--json",
        env=sandbox_env(sandbox),
        cwd=root,
    )
    document = json.loads(result.stdout)
    replica = document["replica"]

    assert result.code == 0
    assert [s["state"] for s in document["steps"]] == ["done"] * 9
    assert (replica["io_running"], replica["sql_running"]) == ("Yes", "Yes")
    assert (replica["exec_file"], replica["exec_position"]) == (
        replica["source_file"],
        replica["source_position"],
    )
    assert replica["bytes_behind"] == 0
    assert document["skips"] == {"total": 0, "by_rule": {}, "by_table": {}}


def test_plan_on_fresh_sandbox_lists_every_step_and_changes_nothing(
    tmp_path: Path,
) -> None:
    """plan on a fresh sandbox lists every step and sends no mutating call."""
    sandbox = start_sandbox(tmp_path / "sandbox")
    try:
        runbook = write_runbook(tmp_path)
        before = sandbox.requests()
        result = cli("plan", str(runbook), env=sandbox_env(sandbox), cwd=tmp_path)
        after = sandbox.requests()
        source = admin_connection(sandbox)
        log_bin = query(source, "SELECT @@log_bin")[0][0]
        clusters = sandbox.rds().describe_db_clusters()["DBClusters"]
    finally:
        manage.down(tmp_path / "sandbox")
    steps = [
        line.split(" ")[0]
        for line in result.stdout.splitlines()
        if not line.startswith(" ")
    ]
    sent = {
        a: after[a] - before.get(a, 0) for a in after if after[a] - before.get(a, 0)
    }

    assert result.code == 0, result.stderr
    assert steps == [
        "preflight",
        "binlog_format",
        "reboot_writer",
        "replication_user",
        "binlog_retention",
        "clone",
        "binlog_position",
        "start_replication",
        "catch_up",
    ]
    assert not [a for a in sent if a.startswith(MUTATING_ACTIONS_PREFIXES)]
    assert log_bin == 0
    assert [c["DBClusterIdentifier"] for c in clusters] == ["sandbox-source"]
    assert "'***'" in result.stdout
    assert sandbox.credentials["repl"] not in result.stdout
