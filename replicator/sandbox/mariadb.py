"""One MariaDB server of the sandbox's data plane: a cluster writer.

Each server is a ``mariadbd --no-defaults`` on 127.0.0.1 with its own data
directory, port, socket and ``server_id``. Binary logging follows the cluster
parameter group: Aurora's ``binlog_format=OFF`` means no binary log at all, so
the server starts without ``--log-bin`` until a format is set and the writer is
rebooted.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pymysql
import pymysql.cursors

BINLOG_BASENAME = "mysql-bin-changelog"
# Unix socket paths are limited to 108 bytes on Linux; deep sandbox
# directories (pytest's tmp_path) put sockets in a short directory instead.
_MAX_SOCKET_PATH = 100
_START_DEADLINE_S = 60.0
_BIND_ATTEMPTS = 5
_BIND_FAILURE = "Do you already have another server running on port"
_STOP_DEADLINE_S = 60.0

# Settings that keep a sandbox server small and quick to start; they are not
# Aurora's and nothing in the product depends on them.
_SMALL_SERVER_OPTIONS = (
    "--innodb-buffer-pool-size=64M",
    "--innodb-log-file-size=16M",
    "--innodb-flush-log-at-trx-commit=2",
    "--sync-binlog=0",
    "--max-connections=400",
    "--character-set-server=utf8mb4",
    "--collation-server=utf8mb4_general_ci",
    "--skip-name-resolve",
    "--performance-schema=ON",
    "--performance-schema-max-table-instances=500",
    "--performance-schema-digests-size=1000",
)


def find_mariadb_binary(name: str) -> str:
    """Return the path of a MariaDB program, looking in sbin too."""
    for candidate in (shutil.which(name), f"/usr/sbin/{name}", f"/usr/bin/{name}"):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise FileNotFoundError(
        f"{name} not found: install Debian's mariadb-server "
        "(apt-get install mariadb-server)"
    )


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def socket_path(base: Path, name: str) -> Path:
    """Return a unix socket path for ``name`` that fits the kernel's limit."""
    wanted = base / f"{name}.sock"
    if len(str(wanted)) <= _MAX_SOCKET_PATH:
        return wanted
    digest = hashlib.sha1(str(base).encode(), usedforsecurity=False).hexdigest()[:10]
    short = Path(tempfile.gettempdir()) / f"rsb-{digest}"
    short.mkdir(mode=0o700, exist_ok=True)
    return short / f"{name}.sock"


def _run_as_root_options() -> tuple[str, ...]:
    return ("--user=root",) if os.geteuid() == 0 else ()


def _tmpdir(datadir: Path) -> Path:
    """Return a private temporary directory beside a data directory.

    Servers of several sandboxes sharing /tmp collide on temporary table
    names while they bootstrap; each server gets its own.
    """
    tmp = datadir.parent / f"{datadir.name}.tmp"
    tmp.mkdir(parents=True, exist_ok=True)
    return tmp


def create_template(path: Path) -> None:
    """Initialise an empty data directory to copy for every new server."""
    if (path / "mysql").is_dir():
        return
    path.mkdir(parents=True, exist_ok=True)
    command = [
        find_mariadb_binary("mariadb-install-db"),
        "--no-defaults",
        f"--datadir={path}",
        "--auth-root-authentication-method=normal",
        "--skip-test-db",
        "--innodb-log-file-size=16M",
        f"--tmpdir={_tmpdir(path)}",
        *_run_as_root_options(),
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"mariadb-install-db failed: {result.stderr[-2000:]}")


class PortTakenError(RuntimeError):
    """The port chosen for a server was taken before the server bound it."""


@dataclass
class ServerOptions:
    """What the control plane asks of a server: binary logging and read-only."""

    binlog_format: str | None = None
    read_only: bool = False
    extra: Mapping[str, str] = field(default_factory=dict)


@dataclass
class MariaDBServer:
    """A mariadbd process the sandbox started, stopped and restarted by it."""

    name: str
    datadir: Path
    port: int
    server_id: int
    socket: Path
    pid: int | None = None
    options: ServerOptions = field(default_factory=ServerOptions)
    _process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    _served: bool = field(default=False, repr=False)
    _log_start: int = field(default=0, repr=False)

    @property
    def log_path(self) -> Path:
        return self.datadir.parent / f"{self.name}.err"

    def command(self) -> list[str]:
        """Return the mariadbd command line (it carries no secret)."""
        command = [
            find_mariadb_binary("mariadbd"),
            "--no-defaults",
            f"--datadir={self.datadir}",
            f"--port={self.port}",
            "--bind-address=127.0.0.1",
            f"--socket={self.socket}",
            f"--pid-file={self.datadir.parent / (self.name + '.pid')}",
            f"--server-id={self.server_id}",
            f"--log-error={self.log_path}",
            f"--tmpdir={_tmpdir(self.datadir)}",
            "--relay-log=relay-bin",
            "--relay-log-recovery=ON",
            "--skip-slave-start",
            *_SMALL_SERVER_OPTIONS,
            *_run_as_root_options(),
        ]
        if self.options.binlog_format:
            command += [
                f"--log-bin={BINLOG_BASENAME}",
                f"--binlog-format={self.options.binlog_format}",
            ]
        if self.options.read_only:
            command.append("--read-only=ON")
        command += [f"--{key}={value}" for key, value in self.options.extra.items()]
        return command

    def start(self) -> None:
        """Start the server and wait until it accepts connections.

        A port found free can be taken by another process before the server
        binds it; the server then exits at once, and it is started again on a
        new port (only before it ever served: a restart keeps its port).
        """
        for _attempt in range(_BIND_ATTEMPTS):
            try:
                self._start_once()
                return
            except PortTakenError:
                if self._served:
                    raise
                self.port = free_port()
        raise RuntimeError(
            f"mariadbd {self.name} found no free port; see {self.log_path}"
        )

    def _start_once(self) -> None:
        self.socket.parent.mkdir(parents=True, exist_ok=True)
        log_start = self.log_path.stat().st_size if self.log_path.exists() else 0
        self._log_start = log_start
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                self.command(),
                stdout=log,
                stderr=log,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        self.pid = self._process.pid
        self._wait_ready()
        self._served = True

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + _START_DEADLINE_S
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                if _BIND_FAILURE in self._log_since_start():
                    raise PortTakenError(self.port)
                raise RuntimeError(
                    f"mariadbd {self.name} exited at start; see {self.log_path}"
                )
            try:
                with self.root_connection():
                    return
            except pymysql.err.OperationalError:
                time.sleep(0.1)
        raise RuntimeError(f"mariadbd {self.name} not ready; see {self.log_path}")

    def _log_since_start(self) -> str:
        with self.log_path.open("rb") as log:
            log.seek(self._log_start)
            return log.read().decode(errors="replace")

    def stop(self) -> None:
        """Shut the server down cleanly and wait for the process to exit."""
        if self.pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGTERM)
        self._wait_exit()
        self.pid = None
        self._process = None

    def _wait_exit(self) -> None:
        assert self.pid is not None
        deadline = time.monotonic() + _STOP_DEADLINE_S
        while time.monotonic() < deadline:
            if self._process is not None:
                if self._process.poll() is not None:
                    return
            elif not pid_alive(self.pid):
                return
            time.sleep(0.05)
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)

    def restart(self, options: ServerOptions | None = None) -> None:
        """Stop cleanly and start again, with new options when given."""
        self.stop()
        if options is not None:
            self.options = options
        self.start()

    @contextlib.contextmanager
    def root_connection(
        self, database: str | None = None
    ) -> Iterator[pymysql.connections.Connection[Any]]:
        """Connect as the server's operator (root over the unix socket)."""
        connection = pymysql.connect(
            unix_socket=str(self.socket),
            user="root",
            password="",
            database=database,
            autocommit=True,
            connect_timeout=5,
            charset="utf8mb4",
        )
        try:
            yield connection
        finally:
            connection.close()

    def execute(self, *statements: str) -> None:
        """Run statements as root, one after another."""
        with self.root_connection() as connection, connection.cursor() as cursor:
            for statement in statements:
                cursor.execute(statement)

    def query(self, statement: str, args: Any = None) -> list[dict[str, Any]]:
        """Run one statement as root and return its rows as dicts."""
        with (
            self.root_connection() as connection,
            connection.cursor(pymysql.cursors.DictCursor) as cursor,
        ):
            cursor.execute(statement, args)
            return list(cursor.fetchall())


def pid_alive(pid: int) -> bool:
    """Tell whether a process of that pid exists (and is not a zombie)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    with contextlib.suppress(OSError):
        return stat.read_text().split(") ", 1)[1][:1] != "Z"
    return True


def copy_template(template: Path, datadir: Path) -> None:
    """Lay out a fresh data directory from the template."""
    if datadir.exists():
        shutil.rmtree(datadir)
    shutil.copytree(template, datadir)
