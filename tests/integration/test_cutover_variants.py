"""Cutover variants: freeze by parameter group, switch none, the skip and
version guardrails, and a run on a source that sits on a default group."""

from __future__ import annotations

from pathlib import Path

import pymysql
import pytest

from replicator.sandbox import manage
from tests.helpers import (
    V2_VERSION,
    admin_connection,
    cli,
    describe_cluster,
    query,
    root_connection,
    sandbox_env,
    start_sandbox,
    write_runbook,
)

NO_VERIFY = {"require_verify_within": None}


def test_parameter_group_freeze_and_switch_none(tmp_path: Path) -> None:
    """read_only=1 freezes the old writer; switch none renames nothing."""
    sandbox = start_sandbox(tmp_path / "sandbox")
    try:
        runbook = write_runbook(
            tmp_path,
            cutover={**NO_VERIFY, "freeze": "parameter_group", "switch": "none"},
        )
        assert (
            cli(
                "run", str(runbook), "--yes", env=sandbox_env(sandbox), cwd=tmp_path
            ).code
            == 0
        )
        result = cli(
            "cutover", str(runbook), "--yes", env=sandbox_env(sandbox), cwd=tmp_path
        )
        names = sorted(
            c["DBClusterIdentifier"]
            for c in sandbox.rds().describe_db_clusters()["DBClusters"]
        )
        old_read_only = query(admin_connection(sandbox), "SELECT @@read_only")
        clone = describe_cluster(sandbox, "sandbox-clone")
        source = describe_cluster(sandbox, "sandbox-source")
        app = pymysql.connect(
            host=source["Endpoint"],
            port=source["Port"],
            user="shop_app",
            password=sandbox.credentials["app"],
            autocommit=True,
        )
        with pytest.raises(pymysql.err.OperationalError) as refused:
            query(
                app, "INSERT INTO shop.customers (email, name) VALUES ('x@y.test', 'X')"
            )
        clone_app = pymysql.connect(
            host=clone["Endpoint"],
            port=clone["Port"],
            user="shop_app",
            password=sandbox.credentials["app"],
            autocommit=True,
        )
        query(
            clone_app,
            "INSERT INTO shop.customers (email, name) VALUES ('n@y.test', 'N')",
        )
    finally:
        manage.down(tmp_path / "sandbox")

    assert result.code == 0, result.stderr[-3000:]
    assert f"primary: sandbox-clone at 127.0.0.1:{clone['Port']}" in result.stdout
    assert names == ["sandbox-clone", "sandbox-source"]
    assert old_read_only == [(1,)]
    assert refused.value.args[0] == 1290


def test_skipped_events_need_accept_skips(tmp_path: Path) -> None:
    """After a skip, cutover halts (exit 3) until --accept-skips says it is reviewed."""
    sandbox = start_sandbox(tmp_path / "sandbox")
    try:
        rule = {
            "name": "dupes",
            "errors": [1062],
            "tables": ["shop.customers"],
            "action": "skip",
        }
        runbook = write_runbook(
            tmp_path, catch_up={"skip_policy": [rule]}, cutover=NO_VERIFY
        )
        assert (
            cli(
                "run", str(runbook), "--yes", env=sandbox_env(sandbox), cwd=tmp_path
            ).code
            == 0
        )
        clone = root_connection(sandbox, "sandbox-clone")
        query(clone, "SET SESSION sql_log_bin = 0")
        row = (90001, "dupe@skips.test", "Dupe")
        query(
            clone,
            "INSERT INTO shop.customers (id, email, name) VALUES (%s, %s, %s)",
            row,
        )
        query(
            admin_connection(sandbox),
            "INSERT INTO shop.customers (id, email, name) VALUES (%s, %s, %s)",
            row,
        )
        assert (
            cli(
                "run", str(runbook), "--yes", env=sandbox_env(sandbox), cwd=tmp_path
            ).code
            == 0
        )
        refused = cli(
            "cutover", str(runbook), "--yes", env=sandbox_env(sandbox), cwd=tmp_path
        )
        accepted = cli(
            "cutover",
            str(runbook),
            "--yes",
            "--accept-skips",
            env=sandbox_env(sandbox),
            cwd=tmp_path,
        )
    finally:
        manage.down(tmp_path / "sandbox")

    assert refused.code == 3
    assert "1 replication events were skipped during catch-up" in refused.stderr
    assert "--accept-skips" in refused.stderr
    assert accepted.code == 0, accepted.stderr[-3000:]


def test_reverse_replication_to_an_older_major_needs_force(tmp_path: Path) -> None:
    """A v2 source with a v3 clone refuses reverse replication unless forced."""
    sandbox = start_sandbox(tmp_path / "sandbox", V2_VERSION)
    try:
        runbook = write_runbook(
            tmp_path,
            clone={"engine_version": "8.0.mysql_aurora.3.05.2"},
            cutover={**NO_VERIFY, "rollback": "reverse_replication"},
        )
        assert (
            cli(
                "run", str(runbook), "--yes", env=sandbox_env(sandbox), cwd=tmp_path
            ).code
            == 0
        )
        refused = cli(
            "cutover", str(runbook), "--yes", env=sandbox_env(sandbox), cwd=tmp_path
        )
        forced = cli(
            "cutover",
            str(runbook),
            "--yes",
            "--force",
            env=sandbox_env(sandbox),
            cwd=tmp_path,
        )
        old = root_connection(sandbox, "sandbox-source-old1")
        with old.cursor() as cursor:
            cursor.execute("SHOW SLAVE STATUS")
            names = [c[0] for c in cursor.description]
            status = dict(zip(names, cursor.fetchone(), strict=True))
    finally:
        manage.down(tmp_path / "sandbox")

    assert refused.code == 3
    assert (
        "from 8.0.mysql_aurora.3.05.2 back to 5.7.mysql_aurora.2.11.2" in refused.stderr
    )
    assert "--force" in refused.stderr
    assert forced.code == 0, forced.stderr[-3000:]
    assert (status["Slave_IO_Running"], status["Slave_SQL_Running"]) == ("Yes", "Yes")


def test_source_on_a_default_group_gets_a_custom_one(tmp_path: Path) -> None:
    """With create_parameter_group, a source on default.* gets its own group."""
    sandbox = start_sandbox(tmp_path / "sandbox")
    try:
        rds = sandbox.rds()
        rds.create_db_cluster(
            DBClusterIdentifier="plain",
            Engine="aurora-mysql",
            EngineVersion="8.0.mysql_aurora.3.05.2",
            MasterUsername="admin",
            MasterUserPassword=sandbox.credentials["admin"],
        )
        rds.create_db_instance(
            DBInstanceIdentifier="plain-1",
            DBClusterIdentifier="plain",
            DBInstanceClass="db.r6g.large",
            Engine="aurora-mysql",
        )
        rds.get_waiter("db_instance_available").wait(
            DBInstanceIdentifier="plain-1", WaiterConfig={"Delay": 1, "MaxAttempts": 60}
        )
        runbook = write_runbook(
            tmp_path,
            source={
                "cluster": "plain",
                "parameter_group": None,
                "create_parameter_group": True,
            },
            clone={"cluster": "plain-clone"},
        )
        result = cli(
            "run", str(runbook), "--yes", env=sandbox_env(sandbox), cwd=tmp_path
        )
        plain = describe_cluster(sandbox, "plain")
        log_bin = query(
            admin_connection(sandbox, "plain"), "SELECT @@log_bin, @@binlog_format"
        )
    finally:
        manage.down(tmp_path / "sandbox")

    assert result.code == 0, result.stderr[-3000:]
    assert (
        "a custom cluster parameter group will replace default.aurora-mysql8.0"
        in result.stderr
    )
    assert plain["DBClusterParameterGroup"] == "plain-replicator"
    assert log_bin == [(1, "MIXED")]
