"""Faults of AWS, injected at the botocore layer against the sandbox's real API.

Throttling and 5xx answers are retried with backoff and each retry logged;
still failing at the deadline, the call stops with the last error. A clone
that goes failed or incompatible-parameters, or an instance that never
becomes available, stops the run with the status and where to look, deleting
nothing. The clock is injected so no test waits for a real deadline.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import structlog
from botocore.awsrequest import AWSResponse

from replicator.aws.rds import Clock, make_client
from replicator.context import Context
from replicator.engine import run_steps
from replicator.errors import StepFailedError
from replicator.journal import Journal
from replicator.logs import get_logger
from replicator.runbook import load_runbook
from replicator.sandbox import manage
from replicator.sandbox.manage import Sandbox
from replicator.steps import RUN_STEPS
from tests.helpers import start_sandbox, write_runbook

ERROR_BODY = (
    "<ErrorResponse><Error><Type>{kind}</Type><Code>{code}</Code>"
    "<Message>{message}</Message></Error><RequestId>fault</RequestId></ErrorResponse>"
)


class _Body:
    """The raw body botocore reads from an injected response."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def stream(self, **_kwargs: Any) -> Iterator[bytes]:
        yield self.data


def error_response(status: int, code: str, message: str) -> AWSResponse:
    body = ERROR_BODY.format(
        kind="Sender" if status < 500 else "Receiver", code=code, message=message
    ).encode()
    return AWSResponse("http://fault", status, {}, _Body(body))


class FakeClock(Clock):
    """A clock whose sleep advances time at once."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []
        super().__init__(monotonic=lambda: self.now, sleep=self._sleep)

    def _sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


@pytest.fixture(scope="module")
def sandbox_module(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Sandbox, Path]]:
    root = tmp_path_factory.mktemp("aws-faults")
    sandbox = start_sandbox(root / "sandbox")
    try:
        yield sandbox, root
    finally:
        manage.down(root / "sandbox")


def make_context(
    sandbox: Sandbox,
    root: Path,
    *,
    monkeypatch: pytest.MonkeyPatch,
    register: Callable[[Any], None],
    clock: Clock | None = None,
    name: str = "faults",
    **overrides: Any,
) -> Context:
    """Build a context whose RDS client carries the injected faults."""
    for key, value in sandbox.environment().items():
        monkeypatch.setenv(key, value)
    runbook = load_runbook(write_runbook(root, name=name, **overrides))
    journal = Journal.open(root / f"{name}.db")

    def factory(region: str) -> Any:
        client = make_client(region)
        register(client.meta.events)
        return client

    return Context(
        runbook=runbook,
        journal=journal,
        log=get_logger(),
        yes=True,
        rds_factory=factory,
        clock=clock or Clock(),
    )


def fail_first(count: int, status: int, code: str) -> Callable[[Any], None]:
    """Register a handler failing the first ``count`` DescribeDBClusters calls."""
    calls = {"n": 0}

    def handler(**_kwargs: Any) -> AWSResponse | None:
        calls["n"] += 1
        if calls["n"] <= count:
            return error_response(status, code, "injected")
        return None

    return lambda events: events.register("before-send.rds.DescribeDBClusters", handler)


def test_throttling_is_retried_with_backoff_and_logged(
    sandbox_module: tuple[Sandbox, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three throttled answers, then success: three logged retries, then the answer."""
    sandbox, root = sandbox_module
    clock = FakeClock()
    ctx = make_context(
        sandbox,
        root,
        monkeypatch=monkeypatch,
        register=fail_first(3, 400, "Throttling"),
        clock=clock,
        name="throttle",
    )
    with structlog.testing.capture_logs() as logs:
        cluster = ctx.rds.cluster("sandbox-source")
    retries = [entry for entry in logs if entry["event"] == "aws_retry"]

    assert cluster is not None
    assert cluster["DBClusterIdentifier"] == "sandbox-source"
    assert [r["attempt"] for r in retries] == [1, 2, 3]
    assert all(r["operation"] == "describe_db_clusters" for r in retries)
    assert all("Throttling" in r["error"] for r in retries)
    assert len(clock.slept) == 3
    assert len(ctx.journal.events("aws_retry")) == 3


def test_5xx_until_the_deadline_stops_with_the_last_error(
    sandbox_module: tuple[Sandbox, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """503 on every call: retried until the deadline, then a failure naming it."""
    sandbox, root = sandbox_module
    clock = FakeClock()
    ctx = make_context(
        sandbox,
        root,
        monkeypatch=monkeypatch,
        register=fail_first(10_000, 503, "ServiceUnavailable"),
        clock=clock,
        name="unavailable",
    )
    with pytest.raises(StepFailedError) as failed:
        ctx.rds.cluster("sandbox-source")

    assert "describe_db_clusters" in failed.value.message
    assert "ServiceUnavailable" in failed.value.message
    assert failed.value.hint is not None
    assert "run the same command again" in failed.value.hint
    assert len(clock.slept) > 3
    assert sum(clock.slept) >= ctx.rds.call_deadline_s - 30


def rewrite(
    operation: str, edit: Callable[[dict[str, Any]], None]
) -> Callable[[Any], None]:
    """Register a handler that edits the parsed answer of an operation."""

    def handler(parsed: dict[str, Any], **_kwargs: Any) -> None:
        edit(parsed)

    return lambda events: events.register(f"after-call.rds.{operation}", handler)


def _run_to_failure(ctx: Context) -> StepFailedError:
    with pytest.raises(StepFailedError) as failed:
        run_steps(ctx, RUN_STEPS)
    return failed.value


@pytest.mark.parametrize("status", ["failed", "incompatible-parameters"])
def test_clone_in_a_failed_state_stops_and_deletes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, status: str
) -> None:
    """A clone cluster reported failed stops the run with its status; none deleted."""
    sandbox = start_sandbox(tmp_path / "sandbox")
    try:

        def edit(parsed: dict[str, Any]) -> None:
            for cluster in parsed.get("DBClusters", []):
                if cluster["DBClusterIdentifier"] == "sandbox-clone":
                    cluster["Status"] = status

        ctx = make_context(
            sandbox,
            tmp_path,
            monkeypatch=monkeypatch,
            register=rewrite("DescribeDBClusters", edit),
        )
        before = sandbox.requests()
        error = _run_to_failure(ctx)
        after = sandbox.requests()
        clusters = [
            c["DBClusterIdentifier"]
            for c in sandbox.rds().describe_db_clusters()["DBClusters"]
        ]
        attempt = ctx.journal.attempts("clone")[-1]
    finally:
        manage.down(tmp_path / "sandbox")

    assert f"clone cluster sandbox-clone is {status}" in error.message
    assert error.hint is not None
    assert "nothing was deleted" in error.hint
    assert not [
        a for a in after if a.startswith("Delete") and after[a] != before.get(a)
    ]
    assert sorted(clusters) == ["sandbox-clone", "sandbox-source"]
    assert attempt.outcome == "failed"


def test_instance_never_available_stops_at_the_deadline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A clone writer stuck in 'creating' stops at timeouts.clone, deleting nothing."""
    sandbox = start_sandbox(tmp_path / "sandbox")
    try:

        def edit(parsed: dict[str, Any]) -> None:
            for instance in parsed.get("DBInstances", []):
                if instance["DBInstanceIdentifier"] == "sandbox-clone-1":
                    instance["DBInstanceStatus"] = "creating"

        ctx = make_context(
            sandbox,
            tmp_path,
            monkeypatch=monkeypatch,
            register=rewrite("DescribeDBInstances", edit),
            timeouts={"clone": "3s"},
        )
        error = _run_to_failure(ctx)
        instances = [
            i["DBInstanceIdentifier"]
            for i in sandbox.rds().describe_db_instances()["DBInstances"]
        ]
        journal_state = {
            s.name: s.state for s in ctx.journal.summaries(["clone", "binlog_position"])
        }
    finally:
        manage.down(tmp_path / "sandbox")

    assert (
        "gave up waiting for instance sandbox-clone-1 to be available" in error.message
    )
    assert error.hint is not None
    assert "run again to keep waiting" in error.hint
    assert sorted(instances) == ["sandbox-clone-1", "sandbox-source-1"]
    assert journal_state == {"clone": "failed", "binlog_position": "pending"}
