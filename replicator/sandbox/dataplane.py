"""The sandbox's data plane: MariaDB servers behind the clusters of the control plane.

The control plane (moto, adapted in :mod:`replicator.sandbox.control_plane`)
calls into :class:`DataPlane` when an API call needs a server started,
restarted, copied or removed. All server work happens here, under one lock.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from replicator.mysql.flavor import Generation, generation_of
from replicator.sandbox import procedures
from replicator.sandbox.mariadb import (
    MariaDBServer,
    ServerOptions,
    copy_template,
    create_template,
    find_mariadb_binary,
    free_port,
    socket_path,
)
from replicator.sandbox.proxy import Endpoint

# Aurora's master user: everything an operator needs, but no SUPER and none of
# the replication-admin rights that SUPER carries on MariaDB.
MASTER_USER_PRIVILEGES = (
    "SELECT, INSERT, UPDATE, DELETE, CREATE, DROP, RELOAD, PROCESS, REFERENCES, "
    "INDEX, ALTER, SHOW DATABASES, CREATE TEMPORARY TABLES, LOCK TABLES, EXECUTE, "
    "REPLICATION SLAVE, BINLOG MONITOR, SLAVE MONITOR, CREATE VIEW, SHOW VIEW, "
    "CREATE ROUTINE, ALTER ROUTINE, CREATE USER, EVENT, TRIGGER"
)
SYSTEM_SCHEMAS = ("mysql", "information_schema", "performance_schema", "sys")
SYSTEM_USERS = ("root", "mariadb.sys", "")
POSITION_EVENT = "Binlog position from crash recovery is {file} {position}"
_DUMP_POSITION = re.compile(
    r"CHANGE MASTER TO MASTER_LOG_FILE='(?P<file>[^']+)', MASTER_LOG_POS=(?P<pos>\d+)"
)

EventSink = Callable[[str, str], None]
"""Called with (instance identifier, message) to record an RDS instance event."""


@dataclass
class ClusterData:
    """What the data plane knows of one cluster."""

    cluster_id: str
    generation: Generation
    restored_from: str | None = None
    writer_instance: str | None = None
    server: MariaDBServer | None = None
    applied_group: str | None = None
    applied_parameters: dict[str, str] = field(default_factory=dict)


class DataPlane:
    """Starts, restarts, copies and removes the servers behind the clusters."""

    def __init__(self, root: Path, record_event: EventSink) -> None:
        self.root = root
        self.template = root / "template"
        self.servers_dir = root / "servers"
        self.record_event = record_event
        self.clusters: dict[str, ClusterData] = {}
        self.endpoints: dict[str, Endpoint] = {}
        self.lock = threading.RLock()
        self._next_server_id = 1
        self._serial = 0

    # --- life cycle -----------------------------------------------------------

    def prepare(self) -> None:
        """Make the template data directory every new server starts from."""
        self.servers_dir.mkdir(parents=True, exist_ok=True)
        create_template(self.template)

    def shutdown(self) -> None:
        """Stop every server and close every endpoint."""
        with self.lock:
            for endpoint in self.endpoints.values():
                endpoint.close()
            for cluster in self.clusters.values():
                if cluster.server is not None:
                    cluster.server.stop()
            self._save_pids()

    # --- clusters and endpoints --------------------------------------------------

    def register_cluster(
        self, cluster_id: str, engine_version: str, restored_from: str | None
    ) -> int:
        """Record a new cluster and return the port of its endpoint."""
        with self.lock:
            self.clusters[cluster_id] = ClusterData(
                cluster_id, generation_of(engine_version), restored_from
            )
            return self.endpoint_port(cluster_id)

    def endpoint_port(self, name: str) -> int:
        """Return the endpoint port bound to a cluster name, creating it once."""
        with self.lock:
            if name not in self.endpoints:
                self.endpoints[name] = Endpoint(name, lambda: self._writer_port(name))
            return self.endpoints[name].port

    def _writer_port(self, name: str) -> int | None:
        cluster = self.clusters.get(name)
        if cluster is None or cluster.server is None or cluster.server.pid is None:
            return None
        return cluster.server.port

    def rename(self, old: str, new: str) -> int:
        """Move a cluster to a new name; its endpoint name follows."""
        with self.lock:
            self.clusters[new] = self.clusters.pop(old)
            self.clusters[new].cluster_id = new
            return self.endpoint_port(new)

    def forget(self, cluster_id: str) -> None:
        """Drop a deleted cluster (its writer was removed before)."""
        with self.lock:
            self.clusters.pop(cluster_id, None)

    # --- writers ------------------------------------------------------------------

    def _new_server(self, instance_id: str, options: ServerOptions) -> MariaDBServer:
        self._serial += 1
        name = f"{instance_id}-{self._serial}"
        datadir = self.servers_dir / name / "data"
        copy_template(self.template, datadir)
        server = MariaDBServer(
            name=name,
            datadir=datadir,
            port=free_port(),
            server_id=self._next_server_id,
            socket=socket_path(self.servers_dir, name),
            options=options,
        )
        self._next_server_id += 1
        return server

    def _start_fresh(self, server: MariaDBServer) -> None:
        """Start a server laid out from the template and close its open doors.

        ``mariadb-install-db`` leaves password-less root accounts for TCP
        hosts; only root over the unix socket may stay.
        """
        server.start()
        rows = server.query(
            "SELECT User, Host FROM mysql.user "
            "WHERE User = 'root' AND Host <> 'localhost'"
        )
        for row in rows:
            with server.root_connection() as connection, connection.cursor() as cursor:
                cursor.execute("DROP USER %s@%s", (row["User"], row["Host"]))

    def start_writer(
        self,
        cluster_id: str,
        instance_id: str,
        master: tuple[str, str],
        options: ServerOptions,
        group: str,
    ) -> MariaDBServer:
        """Start a new, empty writer with the cluster's master user."""
        with self.lock:
            cluster = self.clusters[cluster_id]
            server = self._new_server(
                instance_id, self._with_generation(cluster, options)
            )
            self._start_fresh(server)
            self._install(server, cluster.generation)
            user, password = master
            with server.root_connection() as connection, connection.cursor() as cursor:
                cursor.execute("CREATE USER %s@'%%' IDENTIFIED BY %s", (user, password))
                cursor.execute(
                    f"GRANT {MASTER_USER_PRIVILEGES} ON *.* TO %s@'%%' "
                    "WITH GRANT OPTION",
                    (user,),
                )
            self._attach(cluster, instance_id, server, options, group)
            return server

    def clone_writer(
        self, cluster_id: str, instance_id: str, options: ServerOptions, group: str
    ) -> MariaDBServer:
        """Start the first writer of a clone with a consistent copy of its source.

        The copy is taken inside one consistent snapshot while the source keeps
        taking writes; the snapshot's binlog position becomes the writer's
        crash-recovery event, as on Aurora. No binary log on the source, no
        event.
        """
        with self.lock:
            cluster = self.clusters[cluster_id]
            assert cluster.restored_from is not None
            source = self.clusters[cluster.restored_from].server
            if source is None:
                raise RuntimeError(f"source of {cluster_id} has no running writer")
            server = self._new_server(
                instance_id, self._with_generation(cluster, options)
            )
            self._start_fresh(server)
            position = copy_data(source, server, self.servers_dir / server.name)
            self._install(server, cluster.generation)
            self._attach(cluster, instance_id, server, options, group)
        if position is not None:
            self.record_event(instance_id, POSITION_EVENT.format(**position))
        return server

    def reboot(self, cluster_id: str, options: ServerOptions, group: str) -> None:
        """Restart the writer cleanly with the parameters now in its groups."""
        with self.lock:
            cluster = self.clusters[cluster_id]
            assert cluster.server is not None
            cluster.server.restart(self._with_generation(cluster, options))
            self._after_start(cluster.server)
            cluster.applied_group = group
            cluster.applied_parameters = _static(options)
            self._save_pids()

    def upgrade(self, cluster_id: str, engine_version: str) -> None:
        """Switch the writer to another engine generation, as an upgrade does.

        The upgraded writer starts a fresh binary log and reports it in a new
        crash-recovery event, which is not the source's position.
        """
        with self.lock:
            cluster = self.clusters[cluster_id]
            cluster.generation = generation_of(engine_version)
            server = cluster.server
            assert server is not None
            server.restart(self._with_generation(cluster, server.options))
            self._install(server, cluster.generation)
            position = self._fresh_binlog(server)
            instance = cluster.writer_instance
            self._save_pids()
        if position is not None and instance is not None:
            self.record_event(instance, POSITION_EVENT.format(**position))

    def remove_writer(self, cluster_id: str) -> None:
        """Stop the writer and delete its data, as deleting the instance does."""
        with self.lock:
            cluster = self.clusters.get(cluster_id)
            if cluster is None or cluster.server is None:
                return
            cluster.server.stop()
            shutil.rmtree(cluster.server.datadir.parent, ignore_errors=True)
            cluster.server = None
            cluster.writer_instance = None
            self._save_pids()

    def set_read_only(self, cluster_id: str, read_only: bool) -> None:
        """Apply the writer's ``read_only`` parameter at once (it is dynamic)."""
        with self.lock:
            server = self.clusters[cluster_id].server
            if server is None:
                return
            server.options.read_only = read_only
            server.execute(f"SET GLOBAL read_only = {1 if read_only else 0}")

    def member_status(self, cluster_id: str, group: str, static: dict[str, str]) -> str:
        """Return the writer's parameter group status: in-sync or pending-reboot."""
        cluster = self.clusters.get(cluster_id)
        if cluster is None or cluster.server is None:
            return "in-sync"
        if cluster.applied_group != group or cluster.applied_parameters != static:
            return "pending-reboot"
        return "in-sync"

    def servers(self) -> list[dict[str, Any]]:
        """Describe every running server, for ``sandbox status``."""
        with self.lock:
            return [
                {
                    "cluster": cluster.cluster_id,
                    "instance": cluster.writer_instance,
                    "host": "127.0.0.1",
                    "port": cluster.server.port,
                    "pid": cluster.server.pid,
                    "root_socket": str(cluster.server.socket),
                }
                for cluster in self.clusters.values()
                if cluster.server is not None
            ]

    # --- helpers -----------------------------------------------------------------

    def _with_generation(
        self, cluster: ClusterData, options: ServerOptions
    ) -> ServerOptions:
        extra = {"log-bin-trust-function-creators": "ON"}
        if cluster.generation is Generation.V3:
            # Aurora v3 does not replicate the mysql schema into a replica.
            extra["replicate-wild-ignore-table"] = "mysql.%"
        return ServerOptions(options.binlog_format, options.read_only, extra)

    def _attach(
        self,
        cluster: ClusterData,
        instance_id: str,
        server: MariaDBServer,
        options: ServerOptions,
        group: str,
    ) -> None:
        cluster.server = server
        cluster.writer_instance = instance_id
        cluster.applied_group = group
        cluster.applied_parameters = _static(options)
        self._save_pids()

    def _install(self, server: MariaDBServer, generation: Generation) -> None:
        server.execute(*procedures.install_statements(generation))
        self._after_start(server)

    def _after_start(self, server: MariaDBServer) -> None:
        rows = server.query(procedures.retention_statement())
        seconds = int(rows[0]["seconds"]) if rows else 0
        server.execute(f"SET GLOBAL binlog_expire_logs_seconds = {seconds}")

    def _fresh_binlog(self, server: MariaDBServer) -> dict[str, Any] | None:
        if not server.options.binlog_format:
            return None
        server.execute("RESET MASTER")
        rows = server.query("SHOW MASTER STATUS")
        return {"file": rows[0]["File"], "position": rows[0]["Position"]}

    def _save_pids(self) -> None:
        """Keep the pids of every server on disk, so ``down`` can find them."""
        pids = {
            cluster.server.name: cluster.server.pid
            for cluster in self.clusters.values()
            if cluster.server is not None and cluster.server.pid is not None
        }
        path = self.root / "servers.json"
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps({"pid": os.getpid(), "servers": pids}))
        temporary.replace(path)


def _static(options: ServerOptions) -> dict[str, str]:
    return {"binlog_format": options.binlog_format or "OFF"}


def copy_data(
    source: MariaDBServer, target: MariaDBServer, workdir: Path
) -> dict[str, Any] | None:
    """Copy schemas and users from source to target; return the binlog position.

    ``mariadb-dump --single-transaction --master-data=2`` reads every table in
    one consistent snapshot and notes the binlog coordinates of that snapshot
    (MariaDB's ``Binlog_snapshot_file``/``_position``), without stopping writes.
    """
    binlog_on = bool(source.options.binlog_format)
    schemas = [
        row["Database"]
        for row in source.query("SHOW DATABASES")
        if row["Database"] not in SYSTEM_SCHEMAS
    ]
    dump = workdir / "clone.sql"
    _dump(source, schemas, dump, binlog_on)
    _copy_users(source, target)
    if schemas:
        _load(target, dump)
    position = _dump_position(dump) if binlog_on else None
    dump.unlink()
    return position


def _dump(
    source: MariaDBServer, schemas: list[str], path: Path, binlog_on: bool
) -> None:
    command = [
        find_mariadb_binary("mariadb-dump"),
        "--no-defaults",
        f"--socket={source.socket}",
        "--user=root",
        "--single-transaction",
        "--routines",
        "--triggers",
        "--events",
        "--hex-blob",
        "--default-character-set=utf8mb4",
    ]
    if binlog_on:
        command.append("--master-data=2")
    command += (
        ["--databases", *schemas] if schemas else ["--all-databases", "--no-data"]
    )
    with path.open("wb") as out:
        result = subprocess.run(
            command, stdout=out, stderr=subprocess.PIPE, check=False
        )
    if result.returncode != 0:
        raise RuntimeError(f"clone copy failed: {result.stderr.decode()[-2000:]}")


def _load(target: MariaDBServer, path: Path) -> None:
    command = [
        find_mariadb_binary("mariadb"),
        "--no-defaults",
        f"--socket={target.socket}",
        "--user=root",
        "--default-character-set=utf8mb4",
    ]
    with path.open("rb") as dump:
        result = subprocess.run(command, stdin=dump, capture_output=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"clone load failed: {result.stderr.decode()[-2000:]}")


def _dump_position(path: Path) -> dict[str, Any]:
    with path.open("r", encoding="utf-8", errors="replace") as dump:
        for number, line in enumerate(dump):
            match = _DUMP_POSITION.search(line)
            if match:
                return {"file": match["file"], "position": int(match["pos"])}
            if number > 200:
                break
    raise RuntimeError("the clone copy carries no binlog position")


def _copy_users(source: MariaDBServer, target: MariaDBServer) -> None:
    """Copy every account with its password hash and grants."""
    accounts = source.query("SELECT User, Host FROM mysql.user")
    statements: list[str] = []
    for account in accounts:
        if account["User"] in SYSTEM_USERS:
            continue
        user_host = (account["User"], account["Host"])
        created = source.query("SHOW CREATE USER %s@%s", user_host)
        statements.append(next(iter(created[0].values())))
        for grant in source.query("SHOW GRANTS FOR %s@%s", user_host):
            statements.append(next(iter(grant.values())))
    with contextlib.ExitStack():
        target.execute(*statements)
