"""``replicator sandbox up/status/down`` as an operator runs them.

One sandbox is started through the command line in a separate process and
stopped by the last test (and by the fixture, should a test fail first).
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pymysql
import pytest

from replicator.sandbox import manage
from replicator.sandbox.mariadb import pid_alive
from tests.helpers import REPO, cli, query, sandbox_env

pytestmark = pytest.mark.sandbox

ENVIRONMENT_KEYS = {
    "AWS_ENDPOINT_URL",
    "AWS_DEFAULT_REGION",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "REPLICATOR_SANDBOX_DIR",
    "REPLICATOR_ADMIN_PASSWORD",
    "REPLICATOR_REPL_PASSWORD",
    "REPLICATOR_APP_PASSWORD",
}
SERVER_KEYS = {"cluster", "instance", "host", "port", "pid", "root_socket"}
LOOPBACK_HEX = "0100007F"  # 127.0.0.1 as /proc/net/tcp writes it
TCP_LISTEN = "0A"
SHOP_TABLES = {"customers", "products", "orders", "order_items", "order_events"}
ER_DBACCESS_DENIED = 1044
ER_TABLEACCESS_DENIED = 1142


@dataclass
class Started:
    """The sandbox ``sandbox up --json`` started, as it described itself.

    ``env`` is the environment with the sandbox's variables exported, as an
    operator has it after ``eval "$(replicator sandbox up)"``.
    """

    root: Path
    document: dict[str, Any]
    env: dict[str, str]

    def connect(self, user: str, password_key: str) -> Any:
        endpoint = self.cluster_endpoint()
        return pymysql.connect(
            host=endpoint[0],
            port=endpoint[1],
            user=user,
            password=self.document[password_key],
            autocommit=True,
            charset="utf8mb4",
        )

    def cluster_endpoint(self) -> tuple[str, int]:
        sandbox = manage.running(self.root)
        assert sandbox is not None
        cluster = sandbox.rds().describe_db_clusters(
            DBClusterIdentifier=self.document["source_cluster"]
        )["DBClusters"][0]
        return cluster["Endpoint"], cluster["Port"]


@pytest.fixture(scope="module")
def started(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Started]:
    """A sandbox started with ``replicator sandbox up --dir D --json``."""
    root = tmp_path_factory.mktemp("cli-sandbox") / "sandbox"
    clean = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("AWS_", "REPLICATOR_"))
    }
    try:
        result = cli("sandbox", "up", "--dir", str(root), "--json", env=clean, cwd=REPO)
        assert result.code == 0, result.stderr
        sandbox = manage.running(root)
        assert sandbox is not None
        yield Started(root, json.loads(result.stdout), sandbox_env(sandbox))
    finally:
        manage.down(root)


def supervisor_pid(root: Path) -> int:
    state = json.loads((root / "supervisor.json").read_text())
    return int(state["pid"])


def listening_sockets(pids: list[int]) -> list[tuple[str, str, int]]:
    """Return (table, local address, port) of every TCP listener of the pids."""
    inodes: set[str] = set()
    for pid in pids:
        fd_dir = Path(f"/proc/{pid}/fd")
        for fd in fd_dir.iterdir():
            with contextlib.suppress(OSError):
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes.add(target[len("socket:[") : -1])
    listeners = []
    for table in ("tcp", "tcp6"):
        lines = Path(f"/proc/net/{table}").read_text().splitlines()[1:]
        for line in lines:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == TCP_LISTEN and inode in inodes:
                address, port = local.split(":")
                listeners.append((table, address, int(port, 16)))
    return listeners


def refuses(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return False
    except ConnectionRefusedError:
        return True


def test_up_json_prints_every_contract_variable(started: Started) -> None:
    """``sandbox up --json`` prints the contract's variables, names and servers."""
    document = started.document

    assert set(document) == ENVIRONMENT_KEYS | {
        "source_cluster",
        "admin_user",
        "app_user",
        "servers",
    }
    assert document["AWS_ENDPOINT_URL"].startswith("http://127.0.0.1:")
    assert document["AWS_DEFAULT_REGION"] == "us-east-1"
    assert document["REPLICATOR_SANDBOX_DIR"] == str(started.root.resolve())
    passwords = [document[f"REPLICATOR_{n}_PASSWORD"] for n in ("ADMIN", "REPL", "APP")]
    assert all(passwords)
    assert len(set(passwords)) == 3
    assert document["source_cluster"] == "sandbox-source"
    assert document["admin_user"] == "admin"
    assert document["app_user"] == "shop_app"
    assert len(document["servers"]) == 1
    server = document["servers"][0]
    assert set(server) == SERVER_KEYS
    assert (server["cluster"], server["instance"], server["host"]) == (
        "sandbox-source",
        "sandbox-source-1",
        "127.0.0.1",
    )
    assert pid_alive(server["pid"])
    assert Path(server["root_socket"]).is_socket()


def test_up_on_a_running_sandbox_prints_export_lines(started: Started) -> None:
    """Without ``--json``, ``up`` prints ``export NAME='value'`` lines.

    On a sandbox that runs already it starts nothing and prints the same values.
    """
    result = cli("sandbox", "up", "--dir", str(started.root), env=started.env, cwd=REPO)

    assert result.code == 0, result.stderr
    exported = {}
    for line in result.stdout.splitlines():
        words = shlex.split(line)
        assert words[0] == "export", line
        assert len(words) == 2, line
        name, value = words[1].split("=", 1)
        exported[name] = value
    assert exported == {key: started.document[key] for key in ENVIRONMENT_KEYS}


def test_status_json_lists_servers_and_control_plane(started: Started) -> None:
    """``sandbox status --json`` exits 0 with the servers and the control plane."""
    result = cli(
        "sandbox",
        "status",
        "--dir",
        str(started.root),
        "--json",
        env=started.env,
        cwd=REPO,
    )

    assert result.code == 0, result.stderr
    assert json.loads(result.stdout) == {
        "control_plane": started.document["AWS_ENDPOINT_URL"],
        "servers": started.document["servers"],
    }


def test_every_listening_socket_is_on_loopback(started: Started) -> None:
    """The supervisor and the servers listen on 127.0.0.1 only.

    Their listeners include the control plane, the cluster endpoint and the
    server's own port.
    """
    pids = [supervisor_pid(started.root)]
    pids += [server["pid"] for server in started.document["servers"]]

    listeners = listening_sockets(pids)

    assert {table for table, _, _ in listeners} == {"tcp"}
    assert {address for _, address, _ in listeners} == {LOOPBACK_HEX}
    expected_ports = {
        int(started.document["AWS_ENDPOINT_URL"].rsplit(":", 1)[1]),
        started.cluster_endpoint()[1],
        started.document["servers"][0]["port"],
    }
    assert expected_ports <= {port for _, _, port in listeners}


def test_demo_data_is_present(started: Started) -> None:
    """The source holds the shop: five tables, a trigger, a view, odd data.

    ``order_events`` has no primary key and is written by the trigger;
    ``orders.note`` holds 4-byte utf8mb4 text; ``products.attributes`` is JSON;
    a few thousand rows in all.
    """
    with started.connect("admin", "REPLICATOR_ADMIN_PASSWORD") as admin:
        tables = dict(
            query(
                admin,
                "SELECT TABLE_NAME, TABLE_TYPE FROM information_schema.TABLES "
                "WHERE TABLE_SCHEMA = 'shop'",
            )
        )
        triggers = query(
            admin,
            "SELECT TRIGGER_NAME, EVENT_OBJECT_TABLE FROM information_schema.TRIGGERS "
            "WHERE TRIGGER_SCHEMA = 'shop'",
        )
        keyless = query(
            admin,
            "SELECT TABLE_NAME FROM information_schema.TABLES t "
            "WHERE TABLE_SCHEMA = 'shop' AND TABLE_TYPE = 'BASE TABLE' "
            "AND NOT EXISTS (SELECT 1 FROM information_schema.TABLE_CONSTRAINTS c "
            "WHERE c.TABLE_SCHEMA = t.TABLE_SCHEMA AND c.TABLE_NAME = t.TABLE_NAME "
            "AND c.CONSTRAINT_TYPE = 'PRIMARY KEY')",
        )
        counts = {
            table: query(admin, f"SELECT COUNT(*) FROM shop.{table}")[0][0]
            for table in sorted(SHOP_TABLES)
        }
        emoji_notes = query(
            admin, "SELECT COUNT(*) FROM shop.orders WHERE note = %s", ("gift 🎁",)
        )[0][0]
        colours = query(
            admin,
            "SELECT DISTINCT JSON_VALUE(attributes, '$.colour') FROM shop.products",
        )
        totals = query(admin, "SELECT COUNT(*) FROM shop.order_totals")[0][0]

    assert tables == dict.fromkeys(SHOP_TABLES, "BASE TABLE") | {"order_totals": "VIEW"}
    assert triggers == [("orders_status_log", "orders")]
    assert keyless == [("order_events",)]
    assert counts["customers"] == 600
    assert counts["products"] == 200
    assert counts["orders"] == 1500
    assert 1500 <= counts["order_items"] <= 4500
    assert counts["order_events"] == 0
    assert sum(counts.values()) > 3000
    assert emoji_notes > 0
    assert {colour for (colour,) in colours} == {"red", "green", "blue"}
    assert totals == 1500


def test_app_user_writes_shop_and_nothing_else(started: Started) -> None:
    """``shop_app`` may change ``shop`` (the trigger logs it) and nothing else."""
    with started.connect("shop_app", "REPLICATOR_APP_PASSWORD") as app:
        (status,) = query(app, "SELECT status FROM shop.orders WHERE id = 1")[0]
        new_status = "cancelled" if status != "cancelled" else "paid"
        query(app, "UPDATE shop.orders SET status = %s WHERE id = 1", (new_status,))
        logged = query(app, "SELECT order_id, event FROM shop.order_events")
        errors = []
        for statement in (
            "SELECT COUNT(*) FROM mysql.user",
            "CREATE TABLE mysql.app_table (id INT)",
            "CREATE DATABASE app_elsewhere",
        ):
            with pytest.raises(pymysql.err.MySQLError) as caught:
                query(app, statement)
            errors.append(caught.value.args[0])

    assert logged == [(1, new_status)]
    assert errors == [ER_TABLEACCESS_DENIED, ER_TABLEACCESS_DENIED, ER_DBACCESS_DENIED]


def test_down_stops_every_process_and_port(started: Started) -> None:
    """``sandbox down`` leaves no process and no listening port; status then exits 1."""
    pids = [supervisor_pid(started.root)]
    pids += [server["pid"] for server in started.document["servers"]]
    ports = [
        int(started.document["AWS_ENDPOINT_URL"].rsplit(":", 1)[1]),
        started.cluster_endpoint()[1],
        *(server["port"] for server in started.document["servers"]),
    ]

    down = cli("sandbox", "down", "--dir", str(started.root), env=started.env, cwd=REPO)
    status = cli(
        "sandbox",
        "status",
        "--dir",
        str(started.root),
        "--json",
        env=started.env,
        cwd=REPO,
    )

    assert down.code == 0, down.stderr
    assert [pid for pid in pids if pid_alive(pid)] == []
    assert [port for port in ports if not refuses(port)] == []
    assert status.code == 1
    assert json.loads(status.stdout) == {"control_plane": None, "servers": []}
