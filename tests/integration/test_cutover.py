"""verify, cutover, rollback, abort and report on sandboxes, under a write load."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pymysql
import pytest

from bench.workload import Workload
from replicator.sandbox import manage
from replicator.sandbox.manage import Sandbox
from tests.helpers import (
    V2_VERSION,
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


def app_connection(
    sandbox: Sandbox, cluster: str
) -> pymysql.connections.Connection[Any]:
    """Connect as the application user to a cluster's endpoint."""
    description = describe_cluster(sandbox, cluster)
    return pymysql.connect(
        host=description["Endpoint"],
        port=description["Port"],
        user="shop_app",
        password=sandbox.credentials["app"],
        autocommit=True,
    )


def clusters(sandbox: Sandbox) -> dict[str, dict[str, Any]]:
    found = sandbox.rds().describe_db_clusters()["DBClusters"]
    return {c["DBClusterIdentifier"]: c for c in found}


def run_ok(sandbox: Sandbox, root: Path, *args: str) -> Any:
    result = cli(*args, env=sandbox_env(sandbox), cwd=root)
    assert result.code == 0, result.stderr[-4000:]
    return result


@pytest.fixture(scope="module")
def migrated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """run, verify and cutover (rename) with the workload writing up to the freeze."""
    root = tmp_path_factory.mktemp("cutover")
    sandbox = start_sandbox(root / "sandbox")
    try:
        runbook = write_runbook(root, cutover={"rollback": "reverse_replication"})
        source = describe_cluster(sandbox, "sandbox-source")
        workload = Workload(
            source["Endpoint"],
            source["Port"],
            "shop_app",
            sandbox.credentials["app"],
            rate=100,
        )
        workload.start()
        run_ok(sandbox, root, "run", str(runbook), "--yes")
        before = {n: c["DbClusterResourceId"] for n, c in clusters(sandbox).items()}
        verified = run_ok(sandbox, root, "verify", str(runbook), "--json")
        cutover = run_ok(sandbox, root, "cutover", str(runbook), "--yes")
        switched_at = time.time()
        time.sleep(1.0)
        outcome = workload.stop()
        yield {
            "sandbox": sandbox,
            "root": root,
            "runbook": runbook,
            "before": before,
            "outcome": outcome,
            "verified": json.loads(verified.stdout),
            "cutover": cutover,
            "switched_at": switched_at,
        }
    finally:
        manage.down(root / "sandbox")


def test_verify_before_cutover_is_clean(migrated: dict[str, Any]) -> None:
    """verify under load reports every shop table equal (re-checks absorb the lag)."""
    report = migrated["verified"]
    tables = {f"{t['schema']}.{t['table']}": t for t in report["tables"]}

    assert report["equal"] is True
    assert set(tables) >= {
        "shop.customers",
        "shop.orders",
        "shop.order_items",
        "shop.products",
        "shop.order_events",
    }
    assert tables["shop.order_events"]["whole_table"] is True
    assert all(t["diffs"] == [] for t in tables.values())


def test_cutover_renames_like_blue_green(migrated: dict[str, Any]) -> None:
    """The former clone is sandbox-source; the old source is sandbox-source-old1."""
    found = clusters(migrated["sandbox"])
    before = migrated["before"]

    assert set(found) == {"sandbox-source", "sandbox-source-old1"}
    assert found["sandbox-source"]["DbClusterResourceId"] == before["sandbox-clone"]
    assert (
        found["sandbox-source-old1"]["DbClusterResourceId"] == before["sandbox-source"]
    )
    assert [
        m["DBInstanceIdentifier"] for m in found["sandbox-source"]["DBClusterMembers"]
    ] == ["sandbox-clone-1"]
    assert "write downtime:" in migrated["cutover"].stdout


def test_every_acknowledged_write_is_on_the_new_primary(
    migrated: dict[str, Any],
) -> None:
    """Every acknowledged write is on the new primary.

    That covers writes acknowledged before the freeze and after the switch.
    """
    sandbox = migrated["sandbox"]
    outcome = migrated["outcome"]
    new_primary = admin_connection(sandbox, "sandbox-source")

    assert len(outcome.acknowledged) > 50
    assert outcome.check_present(new_primary) == []
    assert outcome.acknowledged_after(migrated["switched_at"]) != []


def test_new_primary_takes_app_writes_and_old_is_frozen(
    migrated: dict[str, Any],
) -> None:
    """shop_app writes on the new primary; the old primary refuses shop_app logins."""
    sandbox = migrated["sandbox"]
    connection = app_connection(sandbox, "sandbox-source")
    query(
        connection,
        "INSERT INTO shop.customers (email, name) "
        "VALUES ('after@cutover.test', 'After')",
    )
    old = root_connection(sandbox, "sandbox-source-old1")
    locked = query(old, "SHOW CREATE USER 'shop_app'@'%'")[0][0]

    assert query(
        connection, "SELECT name FROM shop.customers WHERE email = 'after@cutover.test'"
    ) == [("After",)]
    assert "ACCOUNT LOCK" in locked
    with pytest.raises(pymysql.err.OperationalError) as refused:
        app_connection(sandbox, "sandbox-source-old1")
    assert refused.value.args[0] == 4151


def test_second_cutover_changes_nothing(migrated: dict[str, Any]) -> None:
    """Running cutover again after it finished exits 0 and says so."""
    sandbox, root = migrated["sandbox"], migrated["root"]
    before = sandbox.requests()
    result = run_ok(sandbox, root, "cutover", str(migrated["runbook"]), "--yes")
    after = sandbox.requests()
    mutating = [
        a
        for a in after
        if a.startswith(("Modify", "Create", "Delete", "Reboot"))
        and after[a] != before.get(a)
    ]

    assert "nothing to do" in result.stderr
    assert mutating == []


def test_report_shows_timeline_and_downtime(migrated: dict[str, Any]) -> None:
    """report --json lists every step with timings and the cutover's write downtime."""
    sandbox, root = migrated["sandbox"], migrated["root"]
    result = run_ok(sandbox, root, "report", str(migrated["runbook"]), "--json")
    document = json.loads(result.stdout)
    names = [s["name"] for s in document["steps"]]
    markdown = run_ok(sandbox, root, "report", str(migrated["runbook"])).stdout

    assert names[:3] == ["preflight", "binlog_format", "reboot_writer"]
    assert {
        "catch_up",
        "guardrails",
        "freeze",
        "drain",
        "switch",
        "reverse_replication",
        "open_writes",
    } <= set(names)
    assert len(document["cutover"]) == 1
    assert 0 < document["cutover"][0]["write_downtime_s"] < 10
    assert document["lag"]["samples"] > 0
    assert "## Cutover" in markdown
    assert "Write downtime:" in markdown


def test_rollback_returns_writes_with_new_rows(migrated: dict[str, Any]) -> None:
    """After reverse replication, rollback moves writes back with the new rows."""
    sandbox, root = migrated["sandbox"], migrated["root"]
    connection = app_connection(sandbox, "sandbox-source")
    for n in range(5):
        query(
            connection,
            "INSERT INTO shop.customers (email, name) VALUES (%s, 'Back')",
            (f"rollback{n}@cutover.test",),
        )
    connection.close()

    run_ok(sandbox, root, "rollback", str(migrated["runbook"]), "--yes")
    found = clusters(sandbox)
    back = app_connection(sandbox, "sandbox-source")
    rows = query(back, "SELECT COUNT(*) FROM shop.customers WHERE name = 'Back'")
    query(
        back,
        "INSERT INTO shop.customers (email, name) "
        "VALUES ('again@cutover.test', 'Again')",
    )

    assert set(found) == {"sandbox-source", "sandbox-clone"}
    assert (
        found["sandbox-source"]["DbClusterResourceId"]
        == migrated["before"]["sandbox-source"]
    )
    assert rows == [(5,)]
    assert (
        table_contents(admin_connection(sandbox, "sandbox-source"), "shop")["customers"]
        != []
    )


def test_verify_reports_exactly_the_changed_row(tmp_path: Path) -> None:
    """A row changed on the clone behind replication's back is the one key reported."""
    sandbox = start_sandbox(tmp_path / "sandbox")
    try:
        runbook = write_runbook(tmp_path)
        run_ok(sandbox, tmp_path, "run", str(runbook), "--yes")
        clone = root_connection(sandbox, "sandbox-clone")
        query(clone, "SET SESSION sql_log_bin = 0")
        query(clone, "UPDATE shop.products SET stock = stock + 1 WHERE id = 77")
        result = cli(
            "verify", str(runbook), "--json", env=sandbox_env(sandbox), cwd=tmp_path
        )
        guarded = cli(
            "cutover", str(runbook), "--yes", env=sandbox_env(sandbox), cwd=tmp_path
        )
    finally:
        manage.down(tmp_path / "sandbox")
    report = json.loads(result.stdout)
    differing = [t for t in report["tables"] if not t["equal"]]

    assert result.code == 1
    assert [(t["schema"], t["table"]) for t in differing] == [("shop", "products")]
    assert [d["keys"] for d in differing[0]["diffs"]] == [[[77]]]
    assert guarded.code == 3
    assert "the last verify found differences" in guarded.stderr


HOOK = """#!/bin/sh
echo "$REPLICATOR_PHASE" >> {phases}
if [ "$REPLICATOR_PHASE" = freeze ]; then
  mariadb --no-defaults -S {clone} -uroot -e "STOP SLAVE SQL_THREAD"
  mariadb --no-defaults -S {source} -uroot \\
    -e "UPDATE shop.products SET stock = stock + 1"
fi
if [ "$REPLICATOR_PHASE" = unfreeze ]; then
  mariadb --no-defaults -S {clone} -uroot -e "START SLAVE SQL_THREAD"
fi
"""


def test_drain_timeout_undoes_the_freeze(tmp_path: Path) -> None:
    """A replica that cannot drain makes cutover exit 3 with the source serving again.

    The freeze hook itself stops the clone's SQL thread and writes on the source,
    so the replica cannot reach the final position; unfreeze starts it again.
    """
    sandbox = start_sandbox(tmp_path / "sandbox")
    try:
        runbook = write_runbook(
            tmp_path,
            cutover={
                "freeze": "hook",
                "hook": str(tmp_path / "hook.sh"),
                "drain_timeout": "2s",
                "require_verify_within": None,
            },
        )
        run_ok(sandbox, tmp_path, "run", str(runbook), "--yes")
        sockets = {s["cluster"]: s["root_socket"] for s in sandbox.servers()}
        hook = tmp_path / "hook.sh"
        hook.write_text(
            HOOK.format(
                phases=tmp_path / "phases",
                clone=sockets["sandbox-clone"],
                source=sockets["sandbox-source"],
            )
        )
        hook.chmod(0o755)
        result = cli(
            "cutover", str(runbook), "--yes", env=sandbox_env(sandbox), cwd=tmp_path
        )
        status = json.loads(
            cli(
                "status", str(runbook), "--json", env=sandbox_env(sandbox), cwd=tmp_path
            ).stdout
        )
        names = set(clusters(sandbox))
    finally:
        manage.down(tmp_path / "sandbox")

    assert result.code == 3, result.stderr[-3000:]
    assert "freeze was undone" in result.stderr
    assert (tmp_path / "phases").read_text().split() == ["freeze", "unfreeze"]
    assert names == {"sandbox-source", "sandbox-clone"}
    assert (status["replica"]["io_running"], status["replica"]["sql_running"]) == (
        "Yes",
        "Yes",
    )


def test_abort_removes_clone_user_and_retention(tmp_path: Path) -> None:
    """abort deletes the clone, drops the replication user and restores retention."""
    sandbox = start_sandbox(tmp_path / "sandbox")
    try:
        runbook = write_runbook(tmp_path)
        run_ok(sandbox, tmp_path, "run", str(runbook), "--yes")
        refused = cli("abort", str(runbook), env=sandbox_env(sandbox), cwd=tmp_path)
        done = run_ok(sandbox, tmp_path, "abort", str(runbook), "--yes")
        names = set(clusters(sandbox))
        source = admin_connection(sandbox)
        users = query(
            source, "SELECT COUNT(*) FROM mysql.user WHERE User = 'repl_user'"
        )
        with source.cursor() as cursor:
            cursor.execute("CALL mysql.rds_show_configuration")
            retention = {row[0]: row[1] for row in cursor.fetchall()}
        servers = [s["cluster"] for s in sandbox.servers()]
    finally:
        manage.down(tmp_path / "sandbox")

    assert refused.code == 3
    assert "--yes" in refused.stderr
    assert "clone_deleted: yes" in done.stdout
    assert names == {"sandbox-source"}
    assert servers == ["sandbox-source"]
    assert users == [(0,)]
    assert retention["binlog retention hours"] is None


def test_version_upgrade_path_v2_to_v3(tmp_path: Path) -> None:
    """Clone a v2 source, upgrade the clone to v3, replicate, verify, cut over."""
    sandbox = start_sandbox(tmp_path / "sandbox", V2_VERSION)
    try:
        runbook = write_runbook(
            tmp_path, clone={"engine_version": "8.0.mysql_aurora.3.05.2"}
        )
        run_ok(sandbox, tmp_path, "run", str(runbook), "--yes")
        clone = describe_cluster(sandbox, "sandbox-clone")
        admin = admin_connection(sandbox, "sandbox-clone")
        with admin.cursor() as cursor:
            cursor.execute(
                "SHOW PROCEDURE STATUS "
                "WHERE Db = 'mysql' AND Name LIKE 'rds_set_external%%'"
            )
            procedures = sorted(row[1] for row in cursor.fetchall())
        source = admin_connection(sandbox)
        query(
            source,
            "INSERT INTO shop.customers (email, name) VALUES ('v2@upgrade.test', 'Up')",
        )
        run_ok(sandbox, tmp_path, "verify", str(runbook))
        run_ok(sandbox, tmp_path, "cutover", str(runbook), "--yes")
        new_primary = admin_connection(sandbox, "sandbox-source")
        moved = query(
            new_primary,
            "SELECT name FROM shop.customers WHERE email = 'v2@upgrade.test'",
        )
        version = describe_cluster(sandbox, "sandbox-source")["EngineVersion"]
    finally:
        manage.down(tmp_path / "sandbox")

    assert clone["EngineVersion"] == "8.0.mysql_aurora.3.05.2"
    assert procedures == [
        "rds_set_external_source",
        "rds_set_external_source_with_auto_position",
    ]
    assert moved == [("Up",)]
    assert version == "8.0.mysql_aurora.3.05.2"
