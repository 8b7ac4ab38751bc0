"""verify under a steady write load: re-checks read both sides at one position."""

from __future__ import annotations

import json
from pathlib import Path

from bench.workload import Workload
from replicator.sandbox import manage
from tests.helpers import (
    cli,
    describe_cluster,
    query,
    root_connection,
    sandbox_env,
    start_sandbox,
    write_runbook,
)

VERIFY_RUNS = 3


def test_verify_reports_no_false_difference_under_load(tmp_path: Path) -> None:
    """With shop_app writing hard, every verify is clean and replication resumes.

    Differing chunks (rows written between the two first reads) are re-read
    with the replica held at the source snapshot's exact position, so a chunk
    that is written continuously still compares equal.
    """
    sandbox = start_sandbox(tmp_path / "sandbox")
    try:
        runbook = write_runbook(tmp_path)
        assert (
            cli(
                "run", str(runbook), "--yes", env=sandbox_env(sandbox), cwd=tmp_path
            ).code
            == 0
        )
        source = describe_cluster(sandbox, "sandbox-source")
        workload = Workload(
            source["Endpoint"],
            source["Port"],
            "shop_app",
            sandbox.credentials["app"],
            rate=None,
            threads=4,
        )
        workload.start()
        results = [
            cli(
                "verify", str(runbook), "--json", env=sandbox_env(sandbox), cwd=tmp_path
            )
            for _ in range(VERIFY_RUNS)
        ]
        outcome = workload.stop()
        clone = root_connection(sandbox, "sandbox-clone")
        with clone.cursor() as cursor:
            cursor.execute("SHOW SLAVE STATUS")
            names = [c[0] for c in cursor.description]
            status = dict(zip(names, cursor.fetchone(), strict=True))
        events = query(clone, "SELECT COUNT(*) FROM shop.order_events")
    finally:
        manage.down(tmp_path / "sandbox")
    reports = [json.loads(r.stdout) for r in results]

    assert [r.code for r in results] == [0] * VERIFY_RUNS, [
        r.stderr[-1500:] for r in results
    ]
    assert all(report["equal"] for report in reports)
    assert len(outcome.acknowledged) > 500
    assert (status["Slave_IO_Running"], status["Slave_SQL_Running"]) == ("Yes", "Yes")
    assert status["Until_Condition"] == "None"
    assert events[0][0] > 0
