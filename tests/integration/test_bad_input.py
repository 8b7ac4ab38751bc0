"""Bad input stops `run` with exit 2 before any change; late problems exit 1.

Input mistakes (the runbook, an option, a password source, a cluster that is
not what the runbook says) are found before anything is changed: no mutating
AWS call, binary logging still off on the source, no clone, no step done.
Problems only the world can reveal later (a missing position event, a purged
binary log) exit 1 with the journal kept, nothing done past the failing step,
and a message saying what to do.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pymysql
import pytest
import yaml

from replicator.aws.rds import RUN_TAG
from replicator.journal import Journal
from replicator.runbook import RERUN_HINT
from replicator.sandbox import manage
from replicator.sandbox.manage import Sandbox
from replicator.steps import RUN_STEPS
from tests.helpers import (
    SANDBOX_RUNBOOK,
    V2_VERSION,
    V3_VERSION,
    CliResult,
    admin_connection,
    cli,
    query,
    root_connection,
    sandbox_env,
    start_sandbox,
    write_runbook,
)

MUTATING_PREFIXES = (
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
STEP_NAMES = [step.name for step in RUN_STEPS]
SOURCE = "sandbox-source"
PLAIN_SOURCE = "plain-source"
UNTAGGED_CLONE = "someone-elses-clone"
OTHER_RUN_CLONE = "other-run-clone"
OTHER_RUN_ID = "0123456789ab"
ALL_CLUSTERS = sorted([SOURCE, PLAIN_SOURCE, UNTAGGED_CLONE, OTHER_RUN_CLONE])
ER_SP_DOES_NOT_EXIST = 1305
AVAILABLE_DEADLINE_S = 60.0

UNCHANGED = {
    "mutating_calls": {},
    "log_bin": {SOURCE: 0, PLAIN_SOURCE: 0},
    "clusters": ALL_CLUSTERS,
}
ALL_PENDING = dict.fromkeys(STEP_NAMES, "pending")
PREFLIGHT_FAILED = {**ALL_PENDING, "preflight": "failed"}


# --- the untouched sandbox ------------------------------------------------------------


def wait_instance_available(sandbox: Sandbox, instance: str) -> None:
    """Wait until an instance of the sandbox reports available."""
    rds = sandbox.rds()
    deadline = time.monotonic() + AVAILABLE_DEADLINE_S
    while time.monotonic() < deadline:
        found = rds.describe_db_instances(DBInstanceIdentifier=instance)
        if found["DBInstances"][0]["DBInstanceStatus"] == "available":
            return
        time.sleep(0.2)
    raise AssertionError(f"{instance} did not become available")


def restore_clone(sandbox: Sandbox, cluster: str, tags: list[dict[str, str]]) -> None:
    """Make a copy-on-write clone of the source the way someone else would."""
    sandbox.rds().restore_db_cluster_to_point_in_time(
        DBClusterIdentifier=cluster,
        SourceDBClusterIdentifier=SOURCE,
        RestoreType="copy-on-write",
        UseLatestRestorableTime=True,
        Tags=tags,
    )


@pytest.fixture(scope="module")
def untouched(sandbox: Sandbox) -> Sandbox:
    """The module's sandbox plus what the bad runbooks point at.

    A second cluster on its engine's default parameter group (with a writer),
    and two clones that this run did not make: one without any run tag, one
    with another run's tag. Binary logging stays off everywhere, so no event
    marks these clones; none gets an instance.
    """
    rds = sandbox.rds()
    rds.create_db_cluster(
        DBClusterIdentifier=PLAIN_SOURCE,
        Engine="aurora-mysql",
        EngineVersion=V3_VERSION,
        MasterUsername="admin",
        MasterUserPassword=sandbox.credentials["admin"],
    )
    rds.create_db_instance(
        DBInstanceIdentifier=f"{PLAIN_SOURCE}-1",
        DBClusterIdentifier=PLAIN_SOURCE,
        DBInstanceClass="db.r6g.large",
        Engine="aurora-mysql",
    )
    restore_clone(sandbox, UNTAGGED_CLONE, [{"Key": "owner", "Value": "analytics"}])
    restore_clone(sandbox, OTHER_RUN_CLONE, [{"Key": RUN_TAG, "Value": OTHER_RUN_ID}])
    wait_instance_available(sandbox, f"{PLAIN_SOURCE}-1")
    return sandbox


def log_bin(sandbox: Sandbox, cluster: str) -> int:
    """Return a cluster writer's ``@@log_bin``."""
    connection = admin_connection(sandbox, cluster)
    try:
        return int(query(connection, "SELECT @@log_bin")[0][0])
    finally:
        connection.close()


def changes_since(sandbox: Sandbox, before: dict[str, int]) -> dict[str, Any]:
    """What changed since ``before``: mutating calls, binary logging, clusters."""
    after = sandbox.requests()
    sent = {action: after[action] - before.get(action, 0) for action in after}
    clusters = sandbox.rds().describe_db_clusters()["DBClusters"]
    return {
        "mutating_calls": {
            action: count
            for action, count in sent.items()
            if count and action.startswith(MUTATING_PREFIXES)
        },
        "log_bin": {
            cluster: log_bin(sandbox, cluster) for cluster in (SOURCE, PLAIN_SOURCE)
        },
        "clusters": sorted(c["DBClusterIdentifier"] for c in clusters),
    }


def journal_path(root: Path, name: str = "sandbox") -> Path:
    """Return where `run` keeps a runbook's journal when started in ``root``."""
    return root / ".replicator" / f"{name}.db"


def step_states(root: Path, name: str = "sandbox") -> dict[str, str] | None:
    """Return each step's journaled state, or None when no journal was made."""
    path = journal_path(root, name)
    if not path.exists():
        return None
    with Journal.open(path) as journal:
        return {s.name: s.state for s in journal.summaries(STEP_NAMES)}


def run_id(root: Path, name: str = "sandbox") -> str:
    """Return the run id of a runbook's journal (made now when absent)."""
    with Journal.open(journal_path(root, name)) as journal:
        return journal.run_id


def attempt_run(
    sandbox: Sandbox,
    root: Path,
    runbook: Path,
    *options: str,
    extra_env: dict[str, str] | None = None,
) -> tuple[CliResult, dict[str, Any]]:
    """Run `run --yes` and return its result and what it changed in the world."""
    before = sandbox.requests()
    result = cli(
        "run",
        str(runbook),
        "--yes",
        *options,
        env=sandbox_env(sandbox),
        cwd=root,
        extra_env=extra_env,
    )
    return result, changes_since(sandbox, before)


def set_admin_password(runbook: Path, source: dict[str, str]) -> None:
    """Replace the admin password source of a runbook (not merged into the old one)."""
    document = yaml.safe_load(runbook.read_text())
    document["source"]["admin"]["password"] = source
    runbook.write_text(yaml.safe_dump(document, sort_keys=False))


def line_of(path: Path, text: str) -> int:
    """Return the number of the first line of ``path`` that contains ``text``."""
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if text in line:
            return number
    raise LookupError(text)


def runbook_error(path: Path, *problems: str) -> str:
    """Return the stderr of a runbook refused for ``problems``."""
    noun = "problem" if len(problems) == 1 else "problems"
    lines = [f"error: runbook {path} has {len(problems)} {noun}:"]
    lines += [f"  {problem}" for problem in problems]
    lines.append(f"  next: {RERUN_HINT}")
    return "\n".join(lines) + "\n"


# --- the runbook ----------------------------------------------------------------------


def test_malformed_yaml_names_the_line(untouched: Sandbox, tmp_path: Path) -> None:
    """Broken YAML exits 2 naming the file and line; nothing is changed."""
    runbook = tmp_path / "sandbox.yaml"
    text = SANDBOX_RUNBOOK.read_text()
    runbook.write_text(text.replace("  cluster: sandbox-clone", "  cluster: [sandbox"))
    line = line_of(runbook, "[sandbox")

    result, changed = attempt_run(untouched, tmp_path, runbook)

    assert result.code == 2
    assert result.stderr.startswith(f"error: runbook {runbook} has 1 problem:\n")
    assert f"  {runbook}:{line + 1}: (syntax): found " in result.stderr
    assert "expected ',' or ']', but got ':'" in result.stderr
    assert result.stderr.endswith(f", expected valid YAML\n  next: {RERUN_HINT}\n")
    assert changed == UNCHANGED
    assert step_states(tmp_path) is None


def test_unknown_key_suggests_the_known_one(untouched: Sandbox, tmp_path: Path) -> None:
    """A misspelt key exits 2 naming it and the key it probably means."""
    runbook = write_runbook(tmp_path, timeouts={"rebot": "5m"})

    result, changed = attempt_run(untouched, tmp_path, runbook)

    assert result.code == 2
    assert result.stderr == runbook_error(
        runbook,
        f"{runbook}:{line_of(runbook, 'rebot')}: timeouts.rebot: found unknown key"
        " 'rebot', expected a known key (did you mean 'reboot'?)",
    )
    assert changed == UNCHANGED
    assert step_states(tmp_path) is None


def test_generation_is_not_a_runbook_key(untouched: Sandbox, tmp_path: Path) -> None:
    """The engine generation cannot be set by hand: it is read from the cluster."""
    runbook = write_runbook(tmp_path, source={"generation": "v2"})

    result, changed = attempt_run(untouched, tmp_path, runbook)

    assert result.code == 2
    assert result.stderr == runbook_error(
        runbook,
        f"{runbook}:{line_of(runbook, 'generation')}: source.generation: found"
        " unknown key 'generation', expected a known key: cluster, parameter_group,"
        " create_parameter_group, admin",
    )
    assert changed == UNCHANGED
    assert step_states(tmp_path) is None


def test_wrong_type_names_field_and_type(untouched: Sandbox, tmp_path: Path) -> None:
    """A string where an integer belongs exits 2 naming the field and the type."""
    runbook = write_runbook(tmp_path, catch_up={"stable_polls": "three"})

    result, changed = attempt_run(untouched, tmp_path, runbook)

    assert result.code == 2
    assert result.stderr == runbook_error(
        runbook,
        f"{runbook}:{line_of(runbook, 'stable_polls')}: catch_up.stable_polls:"
        " found 'three', expected an integer",
    )
    assert changed == UNCHANGED
    assert step_states(tmp_path) is None


def test_bad_duration_shows_the_form(untouched: Sandbox, tmp_path: Path) -> None:
    """A duration written in words exits 2 with an example of the form."""
    runbook = write_runbook(tmp_path, timeouts={"reboot": "5 minutes"})

    result, changed = attempt_run(untouched, tmp_path, runbook)

    assert result.code == 2
    assert result.stderr == runbook_error(
        runbook,
        f"{runbook}:{line_of(runbook, '5 minutes')}: timeouts.reboot: found"
        " '5 minutes', expected a duration such as 90s, 15m or 2h",
    )
    assert changed == UNCHANGED
    assert step_states(tmp_path) is None


@pytest.mark.parametrize("hours", [0, 2161])
def test_retention_outside_aurora_limits(
    untouched: Sandbox, tmp_path: Path, hours: int
) -> None:
    """Retention of 0 or over 2160 hours exits 2 with Aurora's range."""
    runbook = write_runbook(tmp_path, replication={"binlog_retention_hours": hours})

    result, changed = attempt_run(untouched, tmp_path, runbook)

    assert result.code == 2
    assert result.stderr == runbook_error(
        runbook,
        f"{runbook}:{line_of(runbook, 'binlog_retention_hours')}:"
        f" replication.binlog_retention_hours: found {hours}, expected an integer"
        " from 1 to 2160 hours (Aurora MySQL keeps binary logs for at most 2160"
        " hours, and without retention it purges them before the clone can read"
        " them)",
    )
    assert changed == UNCHANGED
    assert step_states(tmp_path) is None


def test_statement_format_is_refused(untouched: Sandbox, tmp_path: Path) -> None:
    """binlog_format STATEMENT exits 2 saying why it cannot replicate safely."""
    runbook = write_runbook(tmp_path, replication={"binlog_format": "STATEMENT"})

    result, changed = attempt_run(untouched, tmp_path, runbook)

    assert result.code == 2
    assert result.stderr == runbook_error(
        runbook,
        f"{runbook}:{line_of(runbook, 'STATEMENT')}: replication.binlog_format:"
        " found 'STATEMENT', expected MIXED or ROW (STATEMENT cannot replicate"
        " safely to a clone: statements such as UUID(), NOW() or LIMIT without"
        " ORDER BY can write different rows on the replica)",
    )
    assert changed == UNCHANGED
    assert step_states(tmp_path) is None


def test_clone_named_like_source_is_refused(untouched: Sandbox, tmp_path: Path) -> None:
    """A clone identifier equal to the source's exits 2 naming both fields."""
    runbook = write_runbook(tmp_path, clone={"cluster": SOURCE})
    line = line_of(runbook, "clone:") + 1

    result, changed = attempt_run(untouched, tmp_path, runbook)

    assert result.code == 2
    assert result.stderr == runbook_error(
        runbook,
        f"{runbook}:{line}: clone.cluster: found 'sandbox-source', expected an"
        " identifier different from source.cluster",
    )
    assert changed == UNCHANGED
    assert step_states(tmp_path) is None


def test_unknown_log_format_is_refused(untouched: Sandbox, tmp_path: Path) -> None:
    """An unknown --log-format exits 2 naming the value and the choices."""
    runbook = write_runbook(tmp_path)

    result, changed = attempt_run(untouched, tmp_path, runbook, "--log-format", "xml")

    assert result.code == 2
    assert result.stderr == (
        "error: --log-format 'xml' is not known\n  next: use console or json\n"
    )
    assert changed == UNCHANGED
    assert step_states(tmp_path) is None


# --- password sources -----------------------------------------------------------------


def test_missing_password_variable(untouched: Sandbox, tmp_path: Path) -> None:
    """An unset password variable exits 2 naming the field and what to export."""
    runbook = write_runbook(
        tmp_path, replication={"password": {"env": "REPLICATOR_NO_SUCH_PASSWORD"}}
    )

    result, changed = attempt_run(untouched, tmp_path, runbook)

    assert result.code == 2
    assert result.stderr == (
        "error: replication.password: environment variable"
        " REPLICATOR_NO_SUCH_PASSWORD is not set\n"
        "  next: export REPLICATOR_NO_SUCH_PASSWORD=... before running\n"
    )
    assert changed == UNCHANGED
    assert step_states(tmp_path) == ALL_PENDING


@pytest.mark.parametrize(
    ("name", "reason"),
    [("absent.txt", "no such file or directory"), ("a-directory", "is a directory")],
)
def test_unreadable_password_file(
    untouched: Sandbox, tmp_path: Path, name: str, reason: str
) -> None:
    """A password file that cannot be read exits 2 naming the file and the cause."""
    path = tmp_path / name
    if name == "a-directory":
        path.mkdir()
    runbook = write_runbook(tmp_path)
    set_admin_password(runbook, {"file": str(path)})

    result, changed = attempt_run(untouched, tmp_path, runbook)

    assert result.code == 2
    assert result.stderr == (
        f"error: source.admin.password: cannot read password file {path}: {reason}\n"
        f"  next: write the password into {path}, readable by this user only\n"
    )
    assert changed == UNCHANGED
    assert step_states(tmp_path) == ALL_PENDING


def test_overlong_replication_password(untouched: Sandbox, tmp_path: Path) -> None:
    """A replication password over MySQL's 32 characters exits 2, value unshown."""
    runbook = write_runbook(
        tmp_path, replication={"password": {"env": "REPLICATOR_LONG_PASSWORD"}}
    )
    password = "rpl-long-" + "x" * 24

    result, changed = attempt_run(
        untouched,
        tmp_path,
        runbook,
        extra_env={"REPLICATOR_LONG_PASSWORD": password},
    )

    assert result.code == 2
    assert result.stderr.endswith(
        "error: replication.password {env: REPLICATOR_LONG_PASSWORD} holds 33"
        " characters; MySQL accepts at most 32 for a replication source\n"
        "  next: set a replication password of at most 32 characters\n"
    )
    assert password not in result.stderr + result.stdout
    assert changed == UNCHANGED
    assert step_states(tmp_path) == PREFLIGHT_FAILED


# --- the world is not what the runbook says -------------------------------------------


def test_missing_source_cluster(untouched: Sandbox, tmp_path: Path) -> None:
    """A source cluster that does not exist exits 2 naming it and the region."""
    runbook = write_runbook(tmp_path, source={"cluster": "no-such-cluster"})

    result, changed = attempt_run(untouched, tmp_path, runbook)

    assert result.code == 2
    assert result.stderr.endswith(
        "error: source cluster 'no-such-cluster' does not exist in us-east-1\n"
        "  next: check source.cluster and region in the runbook, and the AWS"
        " credentials' account\n"
    )
    assert changed == UNCHANGED
    assert step_states(tmp_path) == PREFLIGHT_FAILED


def test_default_parameter_group_needs_creation(
    untouched: Sandbox, tmp_path: Path
) -> None:
    """A source on its default group exits 2 unless create_parameter_group is set."""
    runbook = write_runbook(
        tmp_path, source={"cluster": PLAIN_SOURCE, "parameter_group": None}
    )

    result, changed = attempt_run(untouched, tmp_path, runbook)

    assert result.code == 2
    assert result.stderr.endswith(
        "error: source cluster plain-source uses the default parameter group"
        " default.aurora-mysql8.0, which cannot be modified\n"
        "  next: set source.create_parameter_group: true (a custom group is created"
        " and attached) or attach a custom group yourself\n"
    )
    assert changed == UNCHANGED
    assert step_states(tmp_path) == PREFLIGHT_FAILED


def test_wrong_admin_password(untouched: Sandbox, tmp_path: Path) -> None:
    """A wrong admin password exits 2 naming the user and the password source."""
    runbook = write_runbook(tmp_path)
    wrong = "adm-not-the-password-0000"

    result, changed = attempt_run(
        untouched,
        tmp_path,
        runbook,
        extra_env={"REPLICATOR_ADMIN_PASSWORD": wrong},
    )

    assert result.code == 2
    assert result.stderr.endswith(
        "error: the source refused user 'admin': wrong password or user\n"
        "  next: check source.admin.user and the password source"
        " {env: REPLICATOR_ADMIN_PASSWORD}\n"
    )
    assert wrong not in result.stderr + result.stdout
    assert changed == UNCHANGED
    assert step_states(tmp_path) == PREFLIGHT_FAILED


@pytest.mark.parametrize(
    ("clone", "tag"), [(UNTAGGED_CLONE, None), (OTHER_RUN_CLONE, OTHER_RUN_ID)]
)
def test_clone_name_taken_by_another(
    untouched: Sandbox, tmp_path: Path, clone: str, tag: str | None
) -> None:
    """A clone name held by a cluster without this run's tag exits 2."""
    runbook = write_runbook(tmp_path, clone={"cluster": clone})

    result, changed = attempt_run(untouched, tmp_path, runbook)

    assert result.code == 2
    assert result.stderr.endswith(
        f"error: clone.cluster {clone!r} is taken by a cluster this run did not"
        f" create (its {RUN_TAG} tag is {tag!r}, this run is"
        f" {run_id(tmp_path)!r})\n"
        "  next: choose another clone.cluster, or remove that cluster yourself\n"
    )
    assert changed == UNCHANGED
    assert step_states(tmp_path) == PREFLIGHT_FAILED


def test_target_version_older_than_source(untouched: Sandbox, tmp_path: Path) -> None:
    """An upgrade target older than the source's version exits 2 naming both."""
    runbook = write_runbook(
        tmp_path, clone={"engine_version": "8.0.mysql_aurora.3.01.0"}
    )

    result, changed = attempt_run(untouched, tmp_path, runbook)

    assert result.code == 2
    assert result.stderr.endswith(
        "error: clone.engine_version 8.0.mysql_aurora.3.01.0 is older than the"
        " source's 8.0.mysql_aurora.3.05.2: replication to an older version is"
        " unsafe\n"
        "  next: choose a version at or above the source's, or leave it out\n"
    )
    assert changed == UNCHANGED
    assert step_states(tmp_path) == PREFLIGHT_FAILED


# --- problems the world reveals later -------------------------------------------------

LATE = "late"
LATE_CLONE = "late-clone"


def status_document(sandbox: Sandbox, root: Path, runbook: Path) -> dict[str, Any]:
    """Return `status --json` of a runbook."""
    result = cli("status", str(runbook), "--json", env=sandbox_env(sandbox), cwd=root)
    assert result.code == 0, result.stderr
    document: dict[str, Any] = json.loads(result.stdout)
    return document


def states(document: dict[str, Any]) -> dict[str, str]:
    """Return each step's state from a `status --json` document."""
    return {step["name"]: step["state"] for step in document["steps"]}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Sandbox, Path]]:
    """A v3 sandbox holding a clone this run made while binary logging was off.

    The clone carries the run's tag (so the run adopts it) but no position
    event, because the source had no binary log when it was copied.
    """
    root = tmp_path_factory.mktemp("world")
    sandbox = start_sandbox(root / "sandbox")
    try:
        write_runbook(
            root,
            name=LATE,
            clone={"cluster": LATE_CLONE},
            timeouts={"position_event": "3s"},
        )
        restore_clone(
            sandbox, LATE_CLONE, [{"Key": RUN_TAG, "Value": run_id(root, LATE)}]
        )
        sandbox.rds().create_db_instance(
            DBInstanceIdentifier=f"{LATE_CLONE}-1",
            DBClusterIdentifier=LATE_CLONE,
            DBInstanceClass="db.r6g.large",
            Engine="aurora-mysql",
        )
        wait_instance_available(sandbox, f"{LATE_CLONE}-1")
        yield sandbox, root
    finally:
        manage.down(root / "sandbox")


def test_missing_position_event_fails_at_deadline(
    world: tuple[Sandbox, Path],
) -> None:
    """No position event by the deadline exits 1; later steps stay pending."""
    sandbox, root = world
    runbook = root / f"{LATE}.yaml"

    result = cli("run", str(runbook), "--yes", env=sandbox_env(sandbox), cwd=root)
    document = status_document(sandbox, root, runbook)

    assert result.code == 1, result.stderr[-2000:]
    waited = re.search(
        r"error: gave up waiting for the crash-recovery binlog position event of"
        r" late-clone-1 after (\d+)s\n",
        result.stderr,
    )
    assert waited is not None, result.stderr[-2000:]
    assert int(waited[1]) >= 3
    assert result.stderr.endswith(
        "  next: the event may be late: run again to keep waiting; if late-clone-1"
        " never reports it, binary logging was off on the source when it was"
        " cloned\n"
    )
    assert states(document) == {
        "preflight": "done",
        "binlog_format": "done",
        "reboot_writer": "done",
        "replication_user": "done",
        "binlog_retention": "done",
        "clone": "done",
        "binlog_position": "failed",
        "start_replication": "pending",
        "catch_up": "pending",
    }
    assert document["replica"] is None


def test_purged_start_file_fails_with_retention_advice(
    world: tuple[Sandbox, Path],
) -> None:
    """A start file purged from the source exits 1 naming it and the retention fix."""
    sandbox, root = world
    runbook = write_runbook(root, name="purged")
    env = sandbox_env(sandbox)

    crashed = cli(
        "run",
        str(runbook),
        "--yes",
        env=env,
        cwd=root,
        extra_env={"REPLICATOR_FAULT": "clone:after_journal"},
    )
    operator = root_connection(sandbox)
    try:
        start_file = query(operator, "SHOW MASTER STATUS")[0][0]
        query(operator, "FLUSH BINARY LOGS")
        newest = query(operator, "SHOW MASTER STATUS")[0][0]
        query(operator, "PURGE BINARY LOGS TO %s", (newest,))
    finally:
        operator.close()
    result = cli("run", str(runbook), "--yes", env=env, cwd=root)
    document = status_document(sandbox, root, runbook)

    assert crashed.code == 70, crashed.stderr[-2000:]
    assert result.code == 1, result.stderr[-2000:]
    assert result.stderr.endswith(
        f"error: the clone's start file {start_file} is no longer on the source"
        f" (it has {newest})\n"
        "  next: binlog retention was too short: raise"
        " replication.binlog_retention_hours, then recreate the clone (`abort`,"
        " `run`)\n"
    )
    assert states(document) == {
        "preflight": "done",
        "binlog_format": "done",
        "reboot_writer": "done",
        "replication_user": "done",
        "binlog_retention": "done",
        "clone": "done",
        "binlog_position": "failed",
        "start_replication": "pending",
        "catch_up": "pending",
    }
    assert document["replica"] is None


# --- the generation comes from the engine version -------------------------------------


@pytest.fixture(scope="module")
def v2_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """A fresh v2 (Aurora MySQL 5.7) sandbox."""
    root = tmp_path_factory.mktemp("v2")
    sandbox = start_sandbox(root, V2_VERSION)
    try:
        yield sandbox
    finally:
        manage.down(root)


def test_v2_source_gets_v2_procedures(v2_sandbox: Sandbox, tmp_path: Path) -> None:
    """On v2 `run` calls rds_set_external_master; v3's name does not exist there."""
    runbook = write_runbook(tmp_path)
    env = sandbox_env(v2_sandbox)
    stopped = cli(
        "run",
        str(runbook),
        "--yes",
        env=env,
        cwd=tmp_path,
        extra_env={"REPLICATOR_FAULT": "binlog_position:after_journal"},
    )
    operator = root_connection(v2_sandbox, "sandbox-clone")
    query(operator, "SET GLOBAL log_output = 'TABLE'")
    query(operator, "SET GLOBAL general_log = ON")

    result = cli("run", str(runbook), "--yes", env=env, cwd=tmp_path)

    query(operator, "SET GLOBAL general_log = OFF")
    calls = [
        re.match(r"CALL (\S+?)\(", text)
        for (text,) in query(
            operator,
            "SELECT CONVERT(argument USING utf8mb4) FROM mysql.general_log "
            "WHERE command_type = 'Query' AND user_host LIKE 'admin%%' "
            "AND argument LIKE 'CALL %%' ORDER BY event_time",
        )
    ]
    operator.close()
    clone = admin_connection(v2_sandbox, "sandbox-clone")
    with pytest.raises(pymysql.err.OperationalError) as missing:
        query(clone, "CALL mysql.rds_set_external_source('h', 1, 'u', 'p', 'f', 4, 0)")
    clone.close()

    assert stopped.code == 70, stopped.stderr[-2000:]
    assert result.code == 0, result.stderr[-2000:]
    assert [call[1] if call else None for call in calls] == [
        "mysql.rds_set_external_master",
        "mysql.rds_start_replication",
    ]
    assert missing.value.args[0] == ER_SP_DOES_NOT_EXIST
