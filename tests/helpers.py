"""Helpers for the tests: sandboxes, the command line as a subprocess, runbooks."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pymysql
import yaml

from replicator.sandbox import manage
from replicator.sandbox.manage import Sandbox

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
SANDBOX_RUNBOOK = REPO / "runbooks" / "sandbox.yaml"
V2_VERSION = "5.7.mysql_aurora.2.11.2"
V3_VERSION = "8.0.mysql_aurora.3.05.2"
CLI_TIMEOUT_S = 600


@dataclass
class CliResult:
    """A finished ``replicator`` process."""

    code: int
    stdout: str
    stderr: str


def cli(
    *args: str,
    env: dict[str, str],
    cwd: Path,
    timeout: float = CLI_TIMEOUT_S,
    extra_env: dict[str, str] | None = None,
) -> CliResult:
    """Run ``python -m replicator ARGS`` as a separate process."""
    process = subprocess.run(
        [sys.executable, "-m", "replicator", *args],
        env={**env, **(extra_env or {})},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return CliResult(process.returncode, process.stdout, process.stderr)


def sandbox_env(sandbox: Sandbox) -> dict[str, str]:
    """Return the process environment with the sandbox's variables exported."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("REPLICATOR_")}
    return {**base, **sandbox.environment()}


def start_sandbox(root: Path, version: str = V3_VERSION) -> Sandbox:
    """Start a sandbox in ``root`` (stopped by the caller)."""
    return manage.up(root, version)


def describe_cluster(sandbox: Sandbox, cluster: str) -> dict[str, Any]:
    """Return a cluster's description from the sandbox's control plane."""
    found = sandbox.rds().describe_db_clusters(DBClusterIdentifier=cluster)
    description: dict[str, Any] = found["DBClusters"][0]
    return description


def admin_connection(
    sandbox: Sandbox, cluster: str = "sandbox-source", **kwargs: Any
) -> pymysql.connections.Connection[Any]:
    """Connect as the admin user to a cluster's endpoint."""
    description = describe_cluster(sandbox, cluster)
    return pymysql.connect(
        host=description["Endpoint"],
        port=description["Port"],
        user="admin",
        password=sandbox.credentials["admin"],
        autocommit=True,
        charset="utf8mb4",
        **kwargs,
    )


def root_connection(
    sandbox: Sandbox, cluster: str = "sandbox-source"
) -> pymysql.connections.Connection[Any]:
    """Connect as the server's operator (root over its socket)."""
    for server in sandbox.servers():
        if server["cluster"] == cluster:
            return pymysql.connect(
                unix_socket=server["root_socket"],
                user="root",
                autocommit=True,
                charset="utf8mb4",
            )
    raise LookupError(f"no server for {cluster}")


def query(
    connection: pymysql.connections.Connection[Any], sql: str, args: Any = None
) -> list[tuple[Any, ...]]:
    """Run one statement and return its rows as tuples."""
    with connection.cursor() as cursor:
        cursor.execute(sql, args)
        return list(cursor.fetchall())


def write_runbook(directory: Path, name: str = "sandbox", **overrides: Any) -> Path:
    """Write the sandbox runbook with sections overridden (deep-merged)."""
    document = yaml.safe_load(SANDBOX_RUNBOOK.read_text())
    document["name"] = name
    merged = _merge(document, overrides)
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump(merged, sort_keys=False))
    return path


def _merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    result = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(result.get(key), dict):
            result[key] = _merge(result[key], value)
        else:
            result[key] = value
    return result


def table_contents(
    connection: pymysql.connections.Connection[Any], schema: str
) -> dict[str, list[tuple[Any, ...]]]:
    """Return every base table of a schema with all its rows, sorted."""
    tables = query(
        connection,
        "SELECT TABLE_NAME FROM information_schema.TABLES "
        "WHERE TABLE_SCHEMA = %s AND TABLE_TYPE = 'BASE TABLE' ORDER BY TABLE_NAME",
        (schema,),
    )
    contents = {}
    for (table,) in tables:
        rows = query(connection, f"SELECT * FROM `{schema}`.`{table}`")
        contents[table] = sorted(rows, key=repr)
    return contents
