"""Operator paths on one sandbox, in order: enhanced binlog, the maintenance
window, watch, and a cutover that switches by Route 53."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest

from replicator.sandbox import manage
from replicator.sandbox.manage import Sandbox
from tests.helpers import (
    admin_connection,
    cli,
    query,
    root_connection,
    sandbox_env,
    start_sandbox,
    write_runbook,
)

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def window_around(moment: datetime, hours: int) -> str:
    """Return a weekly window from ``moment`` for ``hours`` hours (UTC)."""
    start, end = moment, moment + timedelta(hours=hours)
    return f"{DAYS[start.weekday()]}:{start:%H:%M}-{DAYS[end.weekday()]}:{end:%H:%M}"


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Sandbox, Path]]:
    root = tmp_path_factory.mktemp("operator")
    sandbox = start_sandbox(root / "sandbox")
    try:
        yield sandbox, root
    finally:
        manage.down(root / "sandbox")


def set_enhanced_binlog(sandbox: Sandbox, value: str) -> None:
    sandbox.rds().modify_db_cluster_parameter_group(
        DBClusterParameterGroupName="sandbox-source-params",
        Parameters=[
            {
                "ParameterName": "aurora_enhanced_binlog",
                "ParameterValue": value,
                "ApplyMethod": "pending-reboot",
            }
        ],
    )


def test_enhanced_binlog_stops_preflight(lab: tuple[Sandbox, Path]) -> None:
    """With aurora_enhanced_binlog=1 run stops at preflight (exit 1) and explains."""
    sandbox, root = lab
    set_enhanced_binlog(sandbox, "1")
    runbook = write_runbook(root, name="enhanced")
    result = cli("run", str(runbook), "--yes", env=sandbox_env(sandbox), cwd=root)
    set_enhanced_binlog(sandbox, "0")
    log_bin = query(admin_connection(sandbox), "SELECT @@log_bin")

    assert result.code == 1
    assert "enhanced binlog is on in sandbox-source-params" in result.stderr
    assert "not copy enhanced binlog files to clones" in result.stderr
    assert log_bin == [(0,)]


def test_reboot_waits_for_the_maintenance_window(lab: tuple[Sandbox, Path]) -> None:
    """Outside the window run halts (exit 3) before the reboot; inside it proceeds."""
    sandbox, root = lab
    now = datetime.now(UTC)
    later = window_around(now + timedelta(days=2), 2)
    outside = write_runbook(root, maintenance_window=later)
    halted = cli("run", str(outside), "--yes", env=sandbox_env(sandbox), cwd=root)
    log_bin = query(admin_connection(sandbox), "SELECT @@log_bin")
    inside = write_runbook(
        root, maintenance_window=window_around(now - timedelta(hours=1), 3)
    )
    done = cli("run", str(inside), "--yes", env=sandbox_env(sandbox), cwd=root)

    assert halted.code == 3
    assert f"maintenance window {later}" in halted.stderr
    assert "run the same command again inside the window" in halted.stderr
    assert log_bin == [(0,)]
    assert done.code == 0, done.stderr[-3000:]


def test_watch_shows_a_live_line_until_interrupted(lab: tuple[Sandbox, Path]) -> None:
    """watch polls with the policy applied, prints live lines, exits 130 on Ctrl-C."""
    sandbox, root = lab
    process = subprocess.Popen(
        [sys.executable, "-m", "replicator", "watch", str(root / "sandbox.yaml")],
        env=sandbox_env(sandbox),
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(4.0)
    process.send_signal(signal.SIGINT)
    _out, err = process.communicate(timeout=10)
    lines = [line for line in err.splitlines() if line.startswith("io=")]

    assert process.returncode == 130
    assert len(lines) >= 2
    assert lines[-1].startswith("io=Yes sql=Yes behind=0B")
    assert "caught_up=yes" in lines[-1]


def test_clone_restart_during_catch_up_is_waited_out(lab: tuple[Sandbox, Path]) -> None:
    """A clone writer reboot while run catches up: waited out, nothing skipped."""
    sandbox, root = lab
    clone = root_connection(sandbox, "sandbox-clone")
    query(clone, "LOCK TABLES shop.products WRITE")
    query(admin_connection(sandbox), "UPDATE shop.products SET stock = stock + 1")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "replicator",
            "run",
            str(root / "sandbox.yaml"),
            "--yes",
        ],
        env=sandbox_env(sandbox),
        cwd=root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(3.0)
    sandbox.rds().reboot_db_instance(DBInstanceIdentifier="sandbox-clone-1")
    _out, err = process.communicate(timeout=300)
    skips = json.loads(
        cli(
            "skips",
            str(root / "sandbox.yaml"),
            "--json",
            env=sandbox_env(sandbox),
            cwd=root,
        ).stdout
    )
    source_stock = query(
        admin_connection(sandbox), "SELECT SUM(stock) FROM shop.products"
    )
    clone_stock = query(
        admin_connection(sandbox, "sandbox-clone"),
        "SELECT SUM(stock) FROM shop.products",
    )

    assert process.returncode == 0, err[-3000:]
    assert "mysql_reconnect" in err
    assert skips == []
    assert clone_stock == source_stock


def test_cutover_by_route53_points_the_record_at_the_clone(
    lab: tuple[Sandbox, Path],
) -> None:
    """switch: route53 upserts the CNAME to the clone endpoint; names stay as is."""
    sandbox, root = lab
    route53 = boto3.client("route53", **_aws(sandbox))
    zone = route53.create_hosted_zone(
        Name="db.example.test", CallerReference=str(time.time())
    )
    zone_id = zone["HostedZone"]["Id"].split("/")[-1]
    record = "orders.db.example.test"
    route53.change_resource_record_sets(
        HostedZoneId=zone_id,
        ChangeBatch={
            "Changes": [
                {
                    "Action": "CREATE",
                    "ResourceRecordSet": {
                        "Name": record,
                        "Type": "CNAME",
                        "TTL": 60,
                        "ResourceRecords": [{"Value": "old-primary.example.test"}],
                    },
                }
            ]
        },
    )
    runbook = write_runbook(
        root,
        cutover={
            "switch": "route53",
            "route53": {"zone_id": zone_id, "record": record},
            "require_verify_within": None,
        },
    )
    result = cli("cutover", str(runbook), "--yes", env=sandbox_env(sandbox), cwd=root)
    records = route53.list_resource_record_sets(HostedZoneId=zone_id)[
        "ResourceRecordSets"
    ]
    values = [r["ResourceRecords"][0]["Value"] for r in records if r["Type"] == "CNAME"]
    report = json.loads(
        cli("report", str(runbook), "--json", env=sandbox_env(sandbox), cwd=root).stdout
    )
    clusters = {
        c["DBClusterIdentifier"]: c
        for c in sandbox.rds().describe_db_clusters()["DBClusters"]
    }

    assert result.code == 0, result.stderr[-3000:]
    assert values == [clusters["sandbox-clone"]["Endpoint"]]
    assert set(clusters) == {"sandbox-source", "sandbox-clone"}
    assert (
        f"primary: sandbox-clone at 127.0.0.1:{clusters['sandbox-clone']['Port']}"
        in result.stdout
    )
    assert len(report["cutover"]) == 1


def _aws(sandbox: Sandbox) -> dict[str, Any]:
    env = sandbox.environment()
    return {
        "endpoint_url": env["AWS_ENDPOINT_URL"],
        "region_name": env["AWS_DEFAULT_REGION"],
        "aws_access_key_id": env["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": env["AWS_SECRET_ACCESS_KEY"],
    }


def test_plan_checks_inputs_like_run(lab: tuple[Sandbox, Path]) -> None:
    """plan exits 2 on a missing password variable or a source that does not exist."""
    sandbox, root = lab
    env = sandbox_env(sandbox)
    del env["REPLICATOR_REPL_PASSWORD"]
    missing = cli("plan", str(write_runbook(root, name="plan-a")), env=env, cwd=root)
    absent = write_runbook(root, name="plan-b", source={"cluster": "no-such-cluster"})
    unknown = cli("plan", str(absent), env=sandbox_env(sandbox), cwd=root)

    assert missing.code == 2
    assert "REPLICATOR_REPL_PASSWORD is not set" in missing.stderr
    assert unknown.code == 2
    assert "source cluster 'no-such-cluster' does not exist" in unknown.stderr
