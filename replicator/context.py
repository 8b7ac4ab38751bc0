"""What every step works with: the runbook, the journal, RDS and the two writers.

A :class:`Context` is built once per command. Passwords are resolved here,
registered with the secret masker before anything can log them, and handed to
the MySQL driver only. Connections and AWS clients open lazily, so ``plan``
and ``status`` touch only what they read.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from replicator.aws.rds import Clock, Rds, make_client
from replicator.errors import ConfirmationRequiredError, InputError, StepFailedError
from replicator.journal import Journal
from replicator.mysql.flavor import Generation, generation_of
from replicator.mysql.session import Session
from replicator.runbook import Runbook
from replicator.secrets import MASKER, Secret, resolve_password


def _stdin_is_terminal() -> bool:
    # Looks ``sys.stdin`` up on each call: a test or wrapper may replace it.
    return sys.stdin.isatty()


@dataclass
class Context:
    """One command's view of the run."""

    runbook: Runbook
    journal: Journal
    log: Any
    yes: bool = False
    interactive: bool = field(default_factory=_stdin_is_terminal)
    clock: Clock = field(default_factory=Clock)
    rds_factory: Callable[[str], Any] = make_client
    confirm: Callable[[str], bool] | None = None
    accept_skips: bool = False
    force: bool = False
    # How long a session keeps reconnecting to a restarting server; commands
    # that only report use a short one.
    reconnect_deadline_s: float = 180.0
    _sessions: dict[str, Session] = field(default_factory=dict)

    # --- secrets --------------------------------------------------------------------

    @cached_property
    def admin_password(self) -> Secret:
        """Return the source admin password (resolved once, masked everywhere)."""
        return self._resolve(
            self.runbook.source.admin.password, "source.admin.password"
        )

    @cached_property
    def repl_password(self) -> Secret:
        """Return the replication user's password."""
        return self._resolve(self.runbook.replication.password, "replication.password")

    def _resolve(self, source: Any, field_name: str) -> Secret:
        secret = resolve_password(
            source, field=field_name, secrets_client_factory=self._secrets_client
        )
        MASKER.register(secret)
        return secret

    def _secrets_client(self) -> Any:
        import boto3

        return boto3.client("secretsmanager", region_name=self.runbook.region)

    def resolve_secrets(self) -> None:
        """Resolve every password now, so a missing one stops before any change."""
        _ = self.admin_password
        _ = self.repl_password

    # --- AWS --------------------------------------------------------------------------

    @cached_property
    def rds(self) -> Rds:
        """Return the RDS adapter for the runbook's region."""
        client = self.rds_factory(self.runbook.region)
        return Rds(
            client,
            self.log,
            self.clock,
            region=self.runbook.region,
            record=self._record,
        )

    def _record(self, kind: str, data: dict[str, Any]) -> None:
        import structlog

        step = structlog.contextvars.get_contextvars().get("step")
        self.journal.record_event(kind, {"step": step, **data})

    def source_cluster(self) -> dict[str, Any]:
        """Return the source cluster's description; it must exist."""
        cluster = self.rds.cluster(self.runbook.source.cluster)
        if cluster is None:
            raise InputError(
                f"source cluster {self.runbook.source.cluster!r} does not exist in "
                f"{self.runbook.region}",
                hint="check source.cluster and region in the runbook, and the AWS "
                "credentials' account",
            )
        return cluster

    def clone_cluster(self) -> dict[str, Any] | None:
        """Return the clone cluster's description, or None when absent."""
        return self.rds.cluster(self.runbook.clone.cluster)

    def generation(self, cluster: dict[str, Any]) -> Generation:
        """Return a cluster's engine generation, read from its engine version."""
        return generation_of(str(cluster["EngineVersion"]))

    def source_generation(self) -> Generation:
        return self.generation(self.source_cluster())

    def require_clone_cluster(self) -> dict[str, Any]:
        """Return the clone cluster's description; it must exist."""
        cluster = self.clone_cluster()
        if cluster is None:
            raise StepFailedError(
                f"clone cluster {self.runbook.clone.cluster!r} does not exist",
                hint="run `replicator run` to create it",
            )
        return cluster

    def clone_generation(self) -> Generation:
        return self.generation(self.require_clone_cluster())

    # --- MySQL ------------------------------------------------------------------------

    def endpoint(self, cluster: dict[str, Any]) -> tuple[str, int]:
        """Return where to connect to a cluster's writer (``connect`` overrides)."""
        override = self.runbook.connect.get(str(cluster["DBClusterIdentifier"]))
        if override is not None:
            return override.host, override.port
        return str(cluster["Endpoint"]), int(cluster["Port"])

    def source_sql(self) -> Session:
        """Return the admin session on the source writer."""
        return self._session("source", self.source_cluster())

    def clone_sql(self) -> Session:
        """Return the admin session on the clone writer."""
        cluster = self.clone_cluster()
        if cluster is None:
            raise StepFailedError(
                f"clone cluster {self.runbook.clone.cluster!r} does not exist"
            )
        return self._session("clone", cluster)

    def session(self, role: str, cluster: dict[str, Any]) -> Session:
        """Return the admin session on any cluster's writer, under a role name."""
        return self._session(role, cluster)

    def cluster_by_resource_id(self, resource_id: str) -> dict[str, Any]:
        """Return the cluster with this resource id, whatever its name now."""
        for cluster in self.rds.clusters():
            if cluster.get("DbClusterResourceId") == resource_id:
                return cluster
        raise StepFailedError(
            f"no cluster has resource id {resource_id}",
            hint="was a cluster of this run deleted? `replicator status` shows the run",
        )

    def _session(self, role: str, cluster: dict[str, Any]) -> Session:
        host, port = self.endpoint(cluster)
        current = self._sessions.get(role)
        if current is not None and (current.host, current.port) == (host, port):
            return current
        if current is not None:
            current.close()
        session = Session(
            role,
            host=host,
            port=port,
            user=self.runbook.source.admin.user,
            password=self.admin_password,
            log=self.log,
            sleep=self.clock.sleep,
            reconnect_deadline_s=self.reconnect_deadline_s,
        )
        self._sessions[role] = session
        return session

    def close(self) -> None:
        """Close every session."""
        for session in self._sessions.values():
            session.close()
        self._sessions.clear()

    # --- the operator -----------------------------------------------------------------

    def require_confirmation(self, action: str) -> None:
        """Ask for a yes before a production-affecting action, or stop with exit 3."""
        if self.yes:
            self.log.info("confirmed_by_flag", action=action)
            return
        if not self.interactive:
            raise ConfirmationRequiredError(
                f"{action} needs confirmation and there is no terminal to ask",
                hint="run the command again with --yes once you have reviewed `plan`",
            )
        ask = self.confirm or _ask_terminal
        if not ask(action):
            raise ConfirmationRequiredError(
                f"{action} was not confirmed", hint="run the command again when ready"
            )


def _ask_terminal(action: str) -> bool:
    import typer

    return bool(typer.confirm(f"{action}. Proceed?", default=False, err=True))


def fault_point(step: str, point: str) -> None:
    """Exit at once with code 70 when REPLICATOR_FAULT names this point (test aid)."""
    if os.environ.get("REPLICATOR_FAULT") == f"{step}:{point}":
        sys.stderr.write(f"fault point {step}:{point} fired (REPLICATOR_FAULT)\n")
        sys.stderr.flush()
        os._exit(70)
