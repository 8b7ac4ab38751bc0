"""``replicator sandbox up/down/status``: the sandbox's life cycle, from outside.

``up`` starts the supervisor in the background and then builds the source
cluster through the RDS API it serves, exactly as an operator's account would
hold it: a custom cluster parameter group, a writer, demo data and an
application user. Passwords are generated once per sandbox and kept in
``DIR/credentials.json`` (mode 0600); they reach the supervisor through the
API, never through a command line.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from replicator.errors import ReplicatorError, StepFailedError
from replicator.mysql.flavor import family_of, generation_of
from replicator.sandbox.mariadb import pid_alive

DEFAULT_DIR = Path(".replicator/sandbox")
DEFAULT_ENGINE_VERSION = "8.0.mysql_aurora.3.05.2"
REGION = "us-east-1"
SOURCE_CLUSTER = "sandbox-source"
SOURCE_WRITER = "sandbox-source-1"
SOURCE_PARAMS = "sandbox-source-params"
SOURCE_INSTANCE_PARAMS = "sandbox-source-instance-params"
ADMIN_USER = "admin"
APP_USER = "shop_app"
STATE_FILE = "supervisor.json"
CREDENTIALS_FILE = "credentials.json"
READY_DEADLINE_S = 60.0
STOP_DEADLINE_S = 60.0
# moto accepts any credentials; these name the sandbox, not a real account.
SANDBOX_ACCESS_KEY = "sandbox"
SANDBOX_SECRET_KEY = "sandbox"  # noqa: S105 - not a secret: moto ignores it


class SandboxError(ReplicatorError):
    """The sandbox could not be started, reached or stopped."""


@dataclass(frozen=True)
class Sandbox:
    """A running sandbox: where its control plane listens and its credentials."""

    root: Path
    host: str
    port: int
    supervisor_pid: int
    credentials: dict[str, str]

    @property
    def endpoint_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def environment(self) -> dict[str, str]:
        """Return the variables an operator exports to use this sandbox."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_ACCESS_KEY_ID": SANDBOX_ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SANDBOX_SECRET_KEY,
            "REPLICATOR_SANDBOX_DIR": str(self.root),
            "REPLICATOR_ADMIN_PASSWORD": self.credentials["admin"],
            "REPLICATOR_REPL_PASSWORD": self.credentials["repl"],
            "REPLICATOR_APP_PASSWORD": self.credentials["app"],
        }

    def servers(self) -> list[dict[str, Any]]:
        """Return the servers the supervisor runs now."""
        url = f"{self.endpoint_url}/_sandbox/status"
        with urllib.request.urlopen(url, timeout=10) as answer:  # noqa: S310 - loopback
            body: dict[str, Any] = json.loads(answer.read())
        servers: list[dict[str, Any]] = body["servers"]
        return servers

    def requests(self) -> dict[str, int]:
        """Return the API calls the control plane has received, by action."""
        url = f"{self.endpoint_url}/_sandbox/requests"
        with urllib.request.urlopen(url, timeout=10) as answer:  # noqa: S310 - loopback
            counts: dict[str, int] = json.loads(answer.read())
        return counts

    def describe(self) -> dict[str, Any]:
        """Return ``sandbox up --json``'s document."""
        return {
            **self.environment(),
            "source_cluster": SOURCE_CLUSTER,
            "admin_user": ADMIN_USER,
            "app_user": APP_USER,
            "servers": self.servers(),
        }

    def rds(self) -> Any:
        """Return a boto3 RDS client bound to this sandbox."""
        import boto3

        return boto3.client(
            "rds",
            region_name=REGION,
            endpoint_url=self.endpoint_url,
            aws_access_key_id=SANDBOX_ACCESS_KEY,
            aws_secret_access_key=SANDBOX_SECRET_KEY,
        )


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data


def _credentials(root: Path) -> dict[str, str]:
    path = root / CREDENTIALS_FILE
    existing = _read_json(path)
    if existing is not None:
        return {key: str(value) for key, value in existing.items()}
    generated = {
        "admin": "adm-" + secrets.token_urlsafe(15),
        "repl": "rpl-" + secrets.token_urlsafe(15),
        "app": "app-" + secrets.token_urlsafe(15),
    }
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        json.dump(generated, handle)
    return generated


def running(root: Path) -> Sandbox | None:
    """Return the sandbox running in ``root``, or None."""
    state = _read_json(root / STATE_FILE)
    credentials = _read_json(root / CREDENTIALS_FILE)
    if state is None or credentials is None or not pid_alive(int(state["pid"])):
        return None
    return Sandbox(
        root=root,
        host=str(state["host"]),
        port=int(state["port"]),
        supervisor_pid=int(state["pid"]),
        credentials={key: str(value) for key, value in credentials.items()},
    )


def up(root: Path, engine_version: str = DEFAULT_ENGINE_VERSION) -> Sandbox:
    """Start the sandbox in ``root`` (or return the one already running)."""
    root = root.resolve()
    existing = running(root)
    if existing is not None:
        return existing
    generation_of(engine_version)
    _clear(root)
    root.mkdir(parents=True, exist_ok=True)
    credentials = _credentials(root)
    pid = _spawn_supervisor(root)
    state = _wait_for_state(root, pid)
    sandbox = Sandbox(root, str(state["host"]), int(state["port"]), pid, credentials)
    try:
        _build_source(sandbox, engine_version)
    except Exception:
        down(root)
        raise
    return sandbox


def _clear(root: Path) -> None:
    """Remove what a stopped sandbox left, so ``up`` starts from nothing."""
    for name in ("servers", STATE_FILE, "servers.json", CREDENTIALS_FILE):
        path = root / name
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)


def _spawn_supervisor(root: Path) -> int:
    log = (root / "supervisor.log").open("ab")
    process = subprocess.Popen(
        [sys.executable, "-m", "replicator.sandbox.supervisor", str(root), REGION],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=log,
        start_new_session=True,
    )
    log.close()
    return process.pid


def _wait_for_state(root: Path, pid: int) -> dict[str, Any]:
    deadline = time.monotonic() + READY_DEADLINE_S
    while time.monotonic() < deadline:
        state = _read_json(root / STATE_FILE)
        if state is not None and int(state["pid"]) == pid:
            return state
        if not pid_alive(pid) or _zombie(pid):
            break
        time.sleep(0.1)
    raise SandboxError(
        "the sandbox supervisor did not start",
        hint=f"read {root / 'supervisor.log'}; is mariadb-server installed?",
    )


def _zombie(pid: int) -> bool:
    with contextlib.suppress(ChildProcessError):
        finished, _ = os.waitpid(pid, os.WNOHANG)
        return finished == pid
    return False


def _build_source(sandbox: Sandbox, engine_version: str) -> None:
    """Create the source cluster, its writer, demo data and the app user."""
    rds = sandbox.rds()
    family = family_of(generation_of(engine_version))
    rds.create_db_cluster_parameter_group(
        DBClusterParameterGroupName=SOURCE_PARAMS,
        DBParameterGroupFamily=family,
        Description="sandbox source cluster parameters",
    )
    rds.create_db_parameter_group(
        DBParameterGroupName=SOURCE_INSTANCE_PARAMS,
        DBParameterGroupFamily=family,
        Description="sandbox source writer parameters",
    )
    rds.create_db_cluster(
        DBClusterIdentifier=SOURCE_CLUSTER,
        Engine="aurora-mysql",
        EngineVersion=engine_version,
        MasterUsername=ADMIN_USER,
        MasterUserPassword=sandbox.credentials["admin"],
        DBClusterParameterGroupName=SOURCE_PARAMS,
        DBSubnetGroupName="default",
        VpcSecurityGroupIds=[_security_group(sandbox)],
    )
    rds.create_db_instance(
        DBInstanceIdentifier=SOURCE_WRITER,
        DBClusterIdentifier=SOURCE_CLUSTER,
        DBInstanceClass="db.r6g.large",
        Engine="aurora-mysql",
        DBParameterGroupName=SOURCE_INSTANCE_PARAMS,
    )
    _wait_available(rds, SOURCE_WRITER)
    _load_demo(sandbox, rds)


def _security_group(sandbox: Sandbox) -> str:
    """Create the database security group, admitting its own members by reference.

    Clones get the source's groups, so replication from a clone to the source
    is allowed the way an operator's account should allow it. Ports are
    chosen at run time, hence the whole unprivileged range.
    """
    import boto3

    ec2 = boto3.client(
        "ec2",
        region_name=REGION,
        endpoint_url=sandbox.endpoint_url,
        aws_access_key_id=SANDBOX_ACCESS_KEY,
        aws_secret_access_key=SANDBOX_SECRET_KEY,
    )
    group = ec2.create_security_group(
        GroupName="sandbox-db", Description="sandbox database clusters"
    )["GroupId"]
    ec2.authorize_security_group_ingress(
        GroupId=group,
        IpPermissions=[
            {
                "IpProtocol": "tcp",
                "FromPort": 1024,
                "ToPort": 65535,
                "UserIdGroupPairs": [{"GroupId": group}],
            }
        ],
    )
    return str(group)


def _wait_available(rds: Any, instance: str) -> None:
    deadline = time.monotonic() + READY_DEADLINE_S
    while time.monotonic() < deadline:
        found = rds.describe_db_instances(DBInstanceIdentifier=instance)
        status = found["DBInstances"][0]["DBInstanceStatus"]
        if status == "available":
            return
        if status == "failed":
            break
        time.sleep(0.2)
    raise SandboxError(f"sandbox writer {instance} did not become available")


def _load_demo(sandbox: Sandbox, rds: Any) -> None:
    import pymysql

    from replicator.sandbox import demo

    cluster = rds.describe_db_clusters(DBClusterIdentifier=SOURCE_CLUSTER)
    endpoint = cluster["DBClusters"][0]
    connection = pymysql.connect(
        host=endpoint["Endpoint"],
        port=endpoint["Port"],
        user=ADMIN_USER,
        password=sandbox.credentials["admin"],
        charset="utf8mb4",
    )
    try:
        demo.load(connection)
        demo.create_app_user(connection, APP_USER, sandbox.credentials["app"])
    finally:
        connection.close()


def down(root: Path) -> list[int]:
    """Stop the sandbox in ``root``; return the pids that were stopped."""
    root = root.resolve()
    stopped: list[int] = []
    state = _read_json(root / STATE_FILE)
    servers = _read_json(root / "servers.json") or {}
    if state is not None and pid_alive(int(state["pid"])):
        _request_shutdown(str(state["host"]), int(state["port"]))
        _wait_gone(int(state["pid"]))
        stopped.append(int(state["pid"]))
    for name, pid in (servers.get("servers") or {}).items():
        if pid_alive(pid) and _is_our_server(pid, root / "servers" / name):
            os.kill(pid, signal.SIGTERM)
            _wait_gone(pid)
            stopped.append(pid)
    _clear(root)
    return stopped


def _request_shutdown(host: str, port: int) -> None:
    request = urllib.request.Request(
        f"http://{host}:{port}/_sandbox/shutdown", method="POST"
    )
    with contextlib.suppress(OSError), urllib.request.urlopen(request, timeout=10):  # noqa: S310
        pass


def _wait_gone(pid: int) -> None:
    deadline = time.monotonic() + STOP_DEADLINE_S
    while time.monotonic() < deadline:
        if not pid_alive(pid) or _zombie(pid):
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def _is_our_server(pid: int, datadir_parent: Path) -> bool:
    """Tell whether ``pid`` is a mariadbd of this sandbox, not a recycled pid."""
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return False
    return str(datadir_parent) in command


def status(root: Path) -> tuple[bool, dict[str, Any]]:
    """Return (everything runs, ``sandbox status --json``'s document)."""
    sandbox = running(root.resolve())
    if sandbox is None:
        return False, {"control_plane": None, "servers": []}
    try:
        servers = sandbox.servers()
    except OSError:
        return False, {"control_plane": sandbox.endpoint_url, "servers": []}
    healthy = bool(servers) and all(pid_alive(int(s["pid"])) for s in servers)
    return healthy, {"control_plane": sandbox.endpoint_url, "servers": servers}


def require_running(root: Path) -> Sandbox:
    """Return the running sandbox or stop with what to do."""
    sandbox = running(root.resolve())
    if sandbox is None:
        raise StepFailedError(
            f"no sandbox runs in {root}", hint="start one with: replicator sandbox up"
        )
    return sandbox
