"""No password shows in output, the journal, an error, `plan` or a command line.

One sandbox runs the whole flow with recognisable passwords: `run` with JSON
and with console logs at debug level, `plan`, `status --json`, `skips --json`,
a run whose replication password comes from a file, and two runs that fail on
a password (a wrong admin password, a replication password too long for
MySQL). Every line those commands print, every journal file, the sandbox's
supervisor log and the command line of every process seen while the flow ran
are searched for each password, whole or in part.
"""

from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from replicator.sandbox import manage
from replicator.sandbox.manage import Sandbox
from tests.helpers import CliResult, cli, sandbox_env, start_sandbox, write_runbook

# A password quoted in part (servers cut long values in their messages) still
# leaks: any run of FRAGMENT of its characters counts, taken past the first
# PREFIX characters, which hold the recognisable, non-secret prefixes.
FRAGMENT = 12
PREFIX = 10
SAMPLE_INTERVAL_S = 0.01


def fragments(password: str) -> list[bytes]:
    """Return every run of FRAGMENT characters past the prefix, as bytes."""
    data = password.encode()
    assert len(data) >= PREFIX + FRAGMENT
    return [data[i : i + FRAGMENT] for i in range(PREFIX, len(data) - FRAGMENT + 1)]


def leaked(data: bytes | str, passwords: dict[str, str]) -> list[str]:
    """Return the names of the passwords found in ``data``, whole or in part."""
    blob = data.encode() if isinstance(data, str) else data
    return sorted(
        name
        for name, password in passwords.items()
        if any(piece in blob for piece in fragments(password))
    )


class ProcessSampler(threading.Thread):
    """Read every process's command line, and the journals' WAL, until stopped."""

    def __init__(self, journal_dir: Path, passwords: dict[str, str]) -> None:
        super().__init__(daemon=True)
        self.journal_dir = journal_dir
        self.passwords = passwords
        self.command_lines: set[bytes] = set()
        self.wal_leaks: set[str] = set()
        self.wal_reads = 0
        self.failure: str | None = None
        self.stopping = threading.Event()

    def run(self) -> None:
        try:
            while not self.stopping.is_set():
                self.sample()
                self.stopping.wait(SAMPLE_INTERVAL_S)
            self.sample()
        except Exception as error:  # a dead sampler is reported to the test
            self.failure = repr(error)

    def sample(self) -> None:
        passwords = self.passwords  # replaced whole, never changed in place
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    self.command_lines.add((entry / "cmdline").read_bytes())
                except OSError:
                    continue
        for wal in self.journal_dir.glob("*-wal"):
            try:
                content = wal.read_bytes()
            except OSError:
                continue
            self.wal_reads += 1
            self.wal_leaks.update(leaked(content, passwords))

    def stop(self) -> None:
        self.stopping.set()
        self.join()


@dataclass
class Flow:
    """What the flow printed and left behind, for the tests to search."""

    root: Path
    passwords: dict[str, str]
    results: dict[str, CliResult] = field(default_factory=dict)
    command_lines: set[bytes] = field(default_factory=set)
    wal_leaks: set[str] = field(default_factory=set)
    wal_reads: int = 0
    sampler_failure: str | None = None
    supervisor_log: bytes = b""


def replace_password(runbook: Path, section: str, source: dict[str, str]) -> None:
    """Point a runbook's ``admin`` or ``replication`` password at another source."""
    document = yaml.safe_load(runbook.read_text())
    owner = document["source"]["admin"] if section == "admin" else document[section]
    owner["password"] = source
    runbook.write_text(yaml.safe_dump(document, sort_keys=False))


def run_flow(sandbox: Sandbox, flow: Flow, extra_env: dict[str, str]) -> None:
    """Run every command of the flow and keep its result under a label."""
    root = flow.root
    env = {**sandbox_env(sandbox), **extra_env}
    main = str(write_runbook(root))
    from_file = write_runbook(
        root,
        name="from-file",
        clone={"cluster": "file-clone"},
        replication={"user": "repl_file"},
    )
    replace_password(from_file, "replication", {"file": str(root / "repl.txt")})
    wrong_admin = write_runbook(
        root, name="wrong-admin", clone={"cluster": "wrong-admin-clone"}
    )
    replace_password(wrong_admin, "admin", {"env": "REPLICATOR_WRONG_ADMIN"})
    too_long = write_runbook(
        root,
        name="too-long",
        clone={"cluster": "too-long-clone"},
        replication={"user": "repl_long"},
    )
    replace_password(too_long, "replication", {"env": "REPLICATOR_LONG_REPL"})

    commands = {
        "run json": ("run", main, "--yes", "--debug", "--log-format", "json"),
        "run console": ("run", main, "--yes", "--debug", "--log-format", "console"),
        "plan": ("plan", main, "--debug"),
        "status": ("status", main, "--json", "--debug"),
        "skips": ("skips", main, "--json", "--debug"),
        "run from file": ("run", str(from_file), "--yes", "--debug"),
        "plan from file": ("plan", str(from_file), "--debug"),
        "run wrong admin": (
            "run",
            str(wrong_admin),
            "--yes",
            "--debug",
            "--log-format",
            "console",
        ),
        "run too long": ("run", str(too_long), "--yes", "--debug"),
    }
    for label, arguments in commands.items():
        flow.results[label] = cli(*arguments, env=env, cwd=root)


@pytest.fixture(scope="module")
def flow(tmp_path_factory: pytest.TempPathFactory) -> Flow:
    """Run the whole flow once on a fresh sandbox, sampling processes throughout."""
    root = tmp_path_factory.mktemp("secrets")
    extra = {
        "file": "rpl-file-" + secrets.token_urlsafe(15),
        "wrong_admin": "adm-wrong-" + secrets.token_urlsafe(15),
        "too_long": "rpl-long-" + secrets.token_urlsafe(75),
    }
    flow = Flow(root, passwords=dict(extra))
    sampler = ProcessSampler(root / ".replicator", dict(extra))
    sampler.start()
    try:
        sandbox = start_sandbox(root / "sandbox")
        try:
            flow.passwords.update(sandbox.credentials)
            sampler.passwords = dict(flow.passwords)
            password_file = root / "repl.txt"
            password_file.write_text(extra["file"] + "\n")
            password_file.chmod(0o600)
            run_flow(
                sandbox,
                flow,
                {
                    "REPLICATOR_WRONG_ADMIN": extra["wrong_admin"],
                    "REPLICATOR_LONG_REPL": extra["too_long"],
                },
            )
        finally:
            manage.down(root / "sandbox")
    finally:
        sampler.stop()
    flow.command_lines = sampler.command_lines
    flow.wal_leaks = sampler.wal_leaks
    flow.wal_reads = sampler.wal_reads
    flow.sampler_failure = sampler.failure
    flow.supervisor_log = (root / "sandbox" / "supervisor.log").read_bytes()
    return flow


def test_flow_ran_with_the_expected_outcomes(flow: Flow) -> None:
    """Every command ended as the scenario intends, so every path was exercised."""
    codes = {label: result.code for label, result in flow.results.items()}

    assert codes == {
        "run json": 0,
        "run console": 0,
        "plan": 0,
        "status": 0,
        "skips": 0,
        "run from file": 0,
        "plan from file": 0,
        "run wrong admin": 2,
        "run too long": 2,
    }, {label: r.stderr[-1500:] for label, r in flow.results.items() if r.code}
    assert "nothing to do" in flow.results["run console"].stderr
    assert sorted(flow.passwords) == [
        "admin",
        "app",
        "file",
        "repl",
        "too_long",
        "wrong_admin",
    ]
    assert [p[:4] for _, p in sorted(flow.passwords.items())] == [
        "adm-",
        "app-",
        "rpl-",
        "rpl-",
        "rpl-",
        "adm-",
    ]


def test_no_output_line_holds_a_password(flow: Flow) -> None:
    """No stdout or stderr line of any command holds a password, even in part."""
    found = {
        (label, stream, number): leaked(line, flow.passwords)
        for label, result in flow.results.items()
        for stream, text in (("stdout", result.stdout), ("stderr", result.stderr))
        for number, line in enumerate(text.splitlines(), start=1)
        if leaked(line, flow.passwords)
    }
    lines = sum(
        len(r.stdout.splitlines()) + len(r.stderr.splitlines())
        for r in flow.results.values()
    )

    assert found == {}
    assert lines > 200


def test_failures_name_the_source_not_the_password(flow: Flow) -> None:
    """The errors of a wrong admin password and a too long one show only sources."""
    wrong = flow.results["run wrong admin"].stderr
    too_long = flow.results["run too long"].stderr

    assert "Traceback (most recent call last)" in wrong
    assert wrong.endswith(
        "error: the source refused user 'admin': wrong password or user\n"
        "  next: check source.admin.user and the password source"
        " {env: REPLICATOR_WRONG_ADMIN}\n"
    )
    assert too_long.endswith(
        "error: replication.password {env: REPLICATOR_LONG_REPL} holds 109"
        " characters; MySQL accepts at most 32 for a replication source\n"
        "  next: set a replication password of at most 32 characters\n"
    )
    assert leaked(wrong + too_long, flow.passwords) == []


def test_plan_masks_passwords(flow: Flow) -> None:
    """`plan` shows '***' where a password goes and never the password."""
    for label in ("plan", "plan from file"):
        result = flow.results[label]

        assert "'***'" in result.stdout
        assert leaked(result.stdout + result.stderr, flow.passwords) == []


def test_journals_hold_no_password(flow: Flow) -> None:
    """No journal file (database, -wal, -shm) holds a password, even in part."""
    files = sorted((flow.root / ".replicator").iterdir())
    found = {f.name: leaked(f.read_bytes(), flow.passwords) for f in files}

    assert sorted(f.name for f in files if f.suffix == ".db") == [
        "from-file.db",
        "sandbox.db",
        "too-long.db",
        "wrong-admin.db",
    ]
    assert {name: names for name, names in found.items() if names} == {}
    assert flow.wal_reads > 0
    assert flow.wal_leaks == set()


def test_no_command_line_holds_a_password(flow: Flow) -> None:
    """No process seen during the flow had a password on its command line."""
    ours = [line for line in flow.command_lines if str(flow.root).encode() in line]
    found = [
        line.replace(b"\0", b" ")
        for line in flow.command_lines
        if leaked(line, flow.passwords)
    ]

    assert flow.sampler_failure is None
    assert found == []
    assert any(b"mariadbd" in line for line in ours)
    assert any(b"replicator.sandbox.supervisor" in line for line in ours)
    assert any(b"-m\0replicator\0run\0" in line for line in ours)


def test_supervisor_log_holds_no_password(flow: Flow) -> None:
    """The sandbox supervisor's log (it logs every request) holds no password."""
    assert b"POST / HTTP/1.1" in flow.supervisor_log
    assert leaked(flow.supervisor_log, flow.passwords) == []
