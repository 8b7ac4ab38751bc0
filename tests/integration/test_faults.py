"""Crash anywhere, resume, same result: fault points, SIGKILL, Ctrl-C and the lock."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

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
    table_contents,
    write_runbook,
)

RUN_STEPS = [
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
CUTOVER_STEPS = [
    "guardrails",
    "freeze",
    "drain",
    "stop_replication",
    "switch",
    "reverse_replication",
    "open_writes",
]
POINTS = ["before_apply", "after_apply", "after_journal"]
FAULT_EXIT = 70
SEEDS = range(12)
CONFLICTS_PER_SEED = 25


def journal_rows(path: Path, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(path) as connection:
        return list(connection.execute(sql))


def test_fault_walk_every_step_and_point(tmp_path: Path) -> None:
    """Crash at every step x point, resume each time: one clone, one user, one setup.

    The walk shares one sandbox and resumes from point to point; every armed
    point must fire (exit 70) before the next is armed, then an unarmed run and
    cutover complete.
    """
    sandbox = start_sandbox(tmp_path / "sandbox")
    try:
        runbook = write_runbook(
            tmp_path,
            cutover={"rollback": "reverse_replication", "require_verify_within": None},
        )
        env = sandbox_env(sandbox)
        fired = []
        for command, steps in (("run", RUN_STEPS), ("cutover", CUTOVER_STEPS)):
            for step in steps:
                for point in POINTS:
                    fault = f"{step}:{point}"
                    result = cli(
                        command,
                        str(runbook),
                        "--yes",
                        env=env,
                        cwd=tmp_path,
                        extra_env={"REPLICATOR_FAULT": fault},
                    )
                    assert result.code == FAULT_EXIT, (fault, result.stderr[-2000:])
                    assert f"fault point {fault} fired" in result.stderr
                    fired.append(fault)
            final = cli(command, str(runbook), "--yes", env=env, cwd=tmp_path)
            assert final.code == 0, final.stderr[-3000:]
            if command == "run":
                clone = root_connection(sandbox, "sandbox-clone")
                change_masters = query(
                    clone, "SHOW GLOBAL STATUS LIKE 'Com_change_master'"
                )
                source = admin_connection(sandbox)
                users = query(
                    source, "SELECT COUNT(*) FROM mysql.user WHERE User = 'repl_user'"
                )
                clusters = sandbox.rds().describe_db_clusters()["DBClusters"]
                instances = sandbox.rds().describe_db_instances()["DBInstances"]
                equal = table_contents(
                    admin_connection(sandbox, "sandbox-clone"), "shop"
                ) == (table_contents(source, "shop"))
        journal = tmp_path / ".replicator" / "sandbox.db"
        attempts = journal_rows(
            journal, "SELECT step, outcome FROM attempts ORDER BY id"
        )
        integrity = journal_rows(journal, "PRAGMA integrity_check")
        names = {
            c["DBClusterIdentifier"]
            for c in sandbox.rds().describe_db_clusters()["DBClusters"]
        }
    finally:
        manage.down(tmp_path / "sandbox")

    assert len(fired) == 3 * (len(RUN_STEPS) + len(CUTOVER_STEPS))
    assert sorted(c["DBClusterIdentifier"] for c in clusters) == [
        "sandbox-clone",
        "sandbox-source",
    ]
    assert sorted(i["DBInstanceIdentifier"] for i in instances) == [
        "sandbox-clone-1",
        "sandbox-source-1",
    ]
    assert users == [(1,)]
    assert change_masters == [("Com_change_master", "1")]
    assert equal
    assert names == {"sandbox-source", "sandbox-source-old1"}
    assert integrity == [("ok",)]
    for step in RUN_STEPS + CUTOVER_STEPS:
        outcomes = [outcome for name, outcome in attempts if name == step]
        assert outcomes[-1] == "done", (step, outcomes)
        # before_apply and after_apply leave the attempt open (closed as crashed)
        assert outcomes.count("crashed") >= 1, (step, outcomes)


def _make_conflicts(sandbox: Sandbox, first_id: int, count: int) -> None:
    """Insert rows on the clone behind replication's back, then on the source."""
    clone = root_connection(sandbox, "sandbox-clone")
    query(clone, "SET SESSION sql_log_bin = 0")
    source = admin_connection(sandbox)
    for key in range(first_id, first_id + count):
        values = (key, f"conflict{key}@faults.test", "Conflict")
        query(
            clone,
            "INSERT INTO shop.customers (id, email, name) VALUES (%s, %s, %s)",
            values,
        )
    for key in range(first_id, first_id + count):
        values = (key, f"conflict{key}@faults.test", "Conflict")
        query(
            source,
            "INSERT INTO shop.customers (id, email, name) VALUES (%s, %s, %s)",
            values,
        )
    clone.close()
    source.close()


def _wait_for_skipping(journal: Path, process: subprocess.Popen[str]) -> None:
    """Wait until the run has begun skipping (a skip row exists), or has ended."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and process.poll() is None:
        try:
            started = journal_rows(journal, "SELECT COUNT(*) FROM skips")[0][0]
        except sqlite3.OperationalError:
            started = 0
        if started:
            return
        time.sleep(0.01)


def _popen(runbook: Path, sandbox: Sandbox, cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "replicator", "run", str(runbook), "--yes"],
        env=sandbox_env(sandbox),
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_sigkill_during_catch_up_loses_and_repeats_no_skip(tmp_path: Path) -> None:
    """SIGKILL at random moments while skipping: each conflict recorded exactly once."""
    sandbox = start_sandbox(tmp_path / "sandbox")
    try:
        rule = {
            "name": "dupes",
            "errors": [1062],
            "tables": ["shop.customers"],
            "action": "skip",
        }
        runbook = write_runbook(
            tmp_path,
            catch_up={
                "poll_interval": "100ms",
                "stable_polls": 1,
                "skip_policy": [rule],
            },
        )
        assert (
            cli(
                "run", str(runbook), "--yes", env=sandbox_env(sandbox), cwd=tmp_path
            ).code
            == 0
        )
        kills = 0
        for seed in SEEDS:
            _make_conflicts(sandbox, 100_000 + seed * 100, CONFLICTS_PER_SEED)
            rng = random.Random(seed)
            process = _popen(runbook, sandbox, tmp_path)
            _wait_for_skipping(tmp_path / ".replicator" / "sandbox.db", process)
            time.sleep(rng.uniform(0.0, 0.25))
            if process.poll() is None:
                process.kill()
                kills += 1
            process.communicate()
            resumed = cli(
                "run", str(runbook), "--yes", env=sandbox_env(sandbox), cwd=tmp_path
            )
            assert resumed.code == 0, resumed.stderr[-2000:]
        final = cli(
            "run", str(runbook), "--yes", env=sandbox_env(sandbox), cwd=tmp_path
        )
        skips = json.loads(
            cli(
                "skips", str(runbook), "--json", env=sandbox_env(sandbox), cwd=tmp_path
            ).stdout
        )
        # created_at differs: the clone's conflicting rows were written separately.
        source_rows = [
            r[:4]
            for r in table_contents(admin_connection(sandbox), "shop")["customers"]
        ]
        clone_rows = [
            r[:4]
            for r in table_contents(admin_connection(sandbox, "sandbox-clone"), "shop")[
                "customers"
            ]
        ]
    finally:
        manage.down(tmp_path / "sandbox")
    keys = sorted(int(s["keys"].split("=")[1]) for s in skips)
    expected = sorted(
        100_000 + seed * 100 + n for seed in SEEDS for n in range(CONFLICTS_PER_SEED)
    )
    positions = [(s["file"], s["position"]) for s in skips]

    assert final.code == 0
    assert kills > 0
    assert keys == expected
    assert len(set(positions)) == len(positions)
    assert {s["rule"] for s in skips} == {"dupes"}
    assert clone_rows == source_rows


def _blocked_run(
    sandbox: Sandbox, runbook: Path, cwd: Path
) -> tuple[subprocess.Popen[str], object]:
    """Start a run whose catch-up cannot finish (a table locked on the clone)."""
    lock = root_connection(sandbox, "sandbox-clone")
    query(lock, "LOCK TABLES shop.products WRITE")
    source = admin_connection(sandbox)
    query(source, "UPDATE shop.products SET stock = stock + 1 WHERE id = 3")
    process = _popen(runbook, sandbox, cwd)
    time.sleep(3.0)
    return process, lock


@pytest.fixture(scope="module")
def caught_up(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    root = tmp_path_factory.mktemp("interrupt")
    sandbox = start_sandbox(root / "sandbox")
    try:
        runbook = write_runbook(root, catch_up={"poll_interval": "200ms"})
        assert (
            cli("run", str(runbook), "--yes", env=sandbox_env(sandbox), cwd=root).code
            == 0
        )
        yield sandbox, runbook, root
    finally:
        manage.down(root / "sandbox")


def test_ctrl_c_stops_within_a_second_and_says_how_to_resume(caught_up) -> None:  # type: ignore[no-untyped-def]
    """SIGINT during catch-up exits 130 within a second, naming the step."""
    sandbox, runbook, root = caught_up
    process, lock = _blocked_run(sandbox, runbook, root)
    sent = time.monotonic()
    process.send_signal(signal.SIGINT)
    _out, err = process.communicate(timeout=10)
    elapsed = time.monotonic() - sent
    query(lock, "UNLOCK TABLES")  # type: ignore[arg-type]
    attempts = journal_rows(
        root / ".replicator" / "sandbox.db",
        "SELECT outcome FROM attempts WHERE step = 'catch_up' ORDER BY id",
    )
    resumed = cli("run", str(runbook), "--yes", env=sandbox_env(sandbox), cwd=root)

    assert process.returncode == 130
    assert elapsed < 1.0
    assert "catch_up" in err
    assert "run the same command again" in err
    assert attempts[-1] == ("interrupted",)
    assert resumed.code == 0


def test_second_world_changing_command_exits_4_naming_holder(caught_up) -> None:  # type: ignore[no-untyped-def]
    """While one run holds the runbook's lock, a second run exits 4 naming it."""
    sandbox, runbook, root = caught_up
    process, lock = _blocked_run(sandbox, runbook, root)
    try:
        second = cli("run", str(runbook), "--yes", env=sandbox_env(sandbox), cwd=root)
        status = cli(
            "status", str(runbook), "--json", env=sandbox_env(sandbox), cwd=root
        )
    finally:
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=10)
        query(lock, "UNLOCK TABLES")  # type: ignore[arg-type]

    assert second.code == 4
    assert f"pid {process.pid}" in second.stderr
    assert "run" in second.stderr
    assert status.code == 0
    assert os.uname().nodename in second.stderr
