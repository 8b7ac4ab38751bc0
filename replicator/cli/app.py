"""The ``replicator`` command: parse, call the commands module, render, exit.

Options follow the command: ``replicator COMMAND RUNBOOK [--state PATH]
[--log-format console|json] [--debug] [--yes]``. Results go to stdout; logs
and progress to stderr. Errors become a message and an exit code here and
nowhere else; tracebacks only with ``--debug``.
"""

from __future__ import annotations

import json
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from replicator.cli import sandbox
from replicator.cli.render import echo_err, echo_out
from replicator.errors import ExitCode, ReplicatorError

app = typer.Typer(
    name="replicator",
    help="Move an Aurora MySQL cluster to a binlog-replicated clone, resumably.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(sandbox.app, name="sandbox")

_debug = {"on": False}

RunbookArgument = Annotated[
    Path, typer.Argument(help="The runbook (YAML).", show_default=False)
]
StateOption = Annotated[
    Path | None,
    typer.Option("--state", help="Journal file (default .replicator/<name>.db)."),
]
LogFormatOption = Annotated[
    str | None,
    typer.Option(
        "--log-format",
        help="console or json (default: console on a terminal, else json).",
    ),
]
DebugOption = Annotated[bool, typer.Option("--debug", help="Debug logs, tracebacks.")]
YesOption = Annotated[
    bool, typer.Option("--yes", help="Confirm production-affecting actions.")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON.")]


def _options(
    runbook: Path,
    state: Path | None,
    log_format: str | None,
    debug: bool,
    yes: bool = False,
) -> Any:
    from replicator import logs
    from replicator.commands import Options
    from replicator.errors import InputError

    if log_format not in (None, "console", "json"):
        raise InputError(
            f"--log-format {log_format!r} is not known", hint="use console or json"
        )
    _debug["on"] = debug
    logs.configure(log_format, debug=debug)  # type: ignore[arg-type]
    return Options(runbook=runbook, state=state, yes=yes)


@app.command()
def run(
    runbook: RunbookArgument,
    state: StateOption = None,
    log_format: LogFormatOption = None,
    debug: DebugOption = False,
    yes: YesOption = False,
) -> None:
    """Run or resume the steps up to and including catch-up."""
    from replicator import commands

    result = commands.run(_options(runbook, state, log_format, debug, yes))
    if "phase" in result:
        echo_err(f"nothing to do: this run is {result['phase']} (nothing was changed)")
    elif not result["changed"]:
        echo_err("nothing to do: every step was already done (nothing was changed)")
    _render_status(result["status"])


@app.command()
def plan(
    runbook: RunbookArgument,
    state: StateOption = None,
    log_format: LogFormatOption = None,
    debug: DebugOption = False,
) -> None:
    """Show what each remaining step would do; change nothing."""
    from replicator import commands

    for item in commands.plan(_options(runbook, state, log_format, debug)):
        echo_out(f"{item['step']} [{item['state']}]")
        for action in item["actions"]:
            echo_out(f"    {action}")


@app.command()
def status(
    runbook: RunbookArgument,
    state: StateOption = None,
    log_format: LogFormatOption = None,
    debug: DebugOption = False,
    as_json: JsonOption = False,
) -> None:
    """Show steps, timings, the live replica state and skip counts."""
    from replicator import commands

    document = commands.status(_options(runbook, state, log_format, debug))
    if as_json:
        echo_out(json.dumps(document, indent=2))
    else:
        _render_status(document)


def _render_status(document: dict[str, Any]) -> None:
    echo_out(f"runbook {document['runbook']}")
    for step in document["steps"]:
        timing = f"{step['started'] or '-'} .. {step['finished'] or '-'}"
        echo_out(
            f"  {step['name']:<18} {step['state']:<12} {timing}  "
            f"attempts {step['attempts']}"
        )
    replica = document["replica"]
    if replica is None:
        echo_out("replica: none")
    else:
        echo_out(
            f"replica: io={replica['io_running']} sql={replica['sql_running']} "
            f"exec={replica['exec_file']}:{replica['exec_position']} "
            f"source={replica['source_file']}:{replica['source_position']} "
            f"behind={replica['bytes_behind']} bytes / {replica['seconds_behind']} s"
        )
        if replica["last_errno"]:
            echo_out(f"  error {replica['last_errno']}: {replica['last_error']}")
    skips = document["skips"]
    echo_out(f"skips: {skips['total']}")
    for rule, count in skips["by_rule"].items():
        echo_out(f"  rule {rule}: {count}")
    for table, count in skips["by_table"].items():
        echo_out(f"  table {table}: {count}")


@app.command()
def watch(
    runbook: RunbookArgument,
    state: StateOption = None,
    log_format: LogFormatOption = None,
    debug: DebugOption = False,
) -> None:
    """Keep catch-up going with the skip policy applied, with a live line."""
    from replicator import commands

    def show(poll: Any, loop_state: Any) -> None:
        status = poll.status
        line = (
            f"io={status.io_running} sql={status.sql_running} "
            f"behind={poll.bytes_behind}B/{status.seconds_behind}s "
            f"caught_up={'yes' if poll.caught_up else 'no'} "
            f"skips={loop_state.skips_this_run} polls={loop_state.polls}"
        )
        sys.stderr.write("\r" + line.ljust(100) if sys.stderr.isatty() else line + "\n")
        sys.stderr.flush()

    commands.watch(_options(runbook, state, log_format, debug), show)


@app.command()
def skips(
    runbook: RunbookArgument,
    state: StateOption = None,
    log_format: LogFormatOption = None,
    debug: DebugOption = False,
    as_json: JsonOption = False,
) -> None:
    """List every skipped event with its error, coordinates and table."""
    from replicator import commands

    records = commands.skips(_options(runbook, state, log_format, debug))
    if as_json:
        echo_out(json.dumps(records, indent=2))
        return
    for r in records:
        table = f"{r['schema']}.{r['table']}" if r["table"] else "-"
        echo_out(
            f"{r['time']}  {r['rule']:<12} {r['action']:<8} {r['errno']}  "
            f"{r['file']}:{r['position']}  {table}  {r['keys'] or ''}"
        )
    echo_err(f"{len(records)} skipped events")


@app.command()
def verify(
    runbook: RunbookArgument,
    *,
    state: StateOption = None,
    log_format: LogFormatOption = None,
    debug: DebugOption = False,
    tables: Annotated[
        str | None,
        typer.Option("--tables", help="schema.table globs, comma-separated."),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Compare source and clone chunk by chunk; exit 1 when they differ."""
    from replicator import commands

    document = commands.verify(_options(runbook, state, log_format, debug), tables)
    if as_json:
        echo_out(json.dumps(document, indent=2, default=str))
    else:
        for table in document["tables"]:
            verdict = "equal" if table["equal"] else "DIFFERS"
            whole = " (no primary key: compared whole)" if table["whole_table"] else ""
            echo_out(
                f"{table['schema']}.{table['table']:<30} {verdict:<8} "
                f"{table['rows']} rows, {table['chunks']} chunks{whole}"
            )
            for diff in table["diffs"]:
                echo_out(
                    f"    keys {diff['lower']}..{diff['upper']}: source "
                    f"{diff['source_rows']} rows, clone {diff['clone_rows']} rows"
                    + (f"; differing keys {diff['keys']}" if diff["keys"] else "")
                )
        for difference in document["objects"]:
            echo_out(f"schema object: {difference}")
    if not document["equal"]:
        raise typer.Exit(int(ExitCode.FAILED))


@app.command()
def cutover(
    runbook: RunbookArgument,
    *,
    state: StateOption = None,
    log_format: LogFormatOption = None,
    debug: DebugOption = False,
    yes: YesOption = False,
    accept_skips: Annotated[
        bool, typer.Option("--accept-skips", help="The skipped events were reviewed.")
    ] = False,
    force: Annotated[
        bool,
        typer.Option(
            "--force", help="Allow reverse replication to an older major version."
        ),
    ] = False,
) -> None:
    """Switch traffic to the clone (guardrails, freeze, drain, switch, open)."""
    from replicator import commands

    result = commands.cutover(
        _options(runbook, state, log_format, debug, yes),
        accept_skips=accept_skips,
        force=force,
    )
    _render_switch(result)


@app.command()
def rollback(
    runbook: RunbookArgument,
    state: StateOption = None,
    log_format: LogFormatOption = None,
    debug: DebugOption = False,
    yes: YesOption = False,
) -> None:
    """Switch traffic back to the old cluster (needs reverse replication)."""
    from replicator import commands

    _render_switch(commands.rollback(_options(runbook, state, log_format, debug, yes)))


def _render_switch(result: dict[str, Any]) -> None:
    switch = result["switch"] or {}
    writes = result["writes"] or {}
    if not result["changed"]:
        echo_err("nothing to do: already switched")
    echo_out(
        f"primary: {switch.get('cluster')} at "
        f"{switch.get('endpoint')}:{switch.get('port')}"
    )
    echo_out(f"write downtime: {writes.get('write_downtime_s')} s")


@app.command()
def abort(
    runbook: RunbookArgument,
    *,
    state: StateOption = None,
    log_format: LogFormatOption = None,
    debug: DebugOption = False,
    yes: YesOption = False,
    binlog_format: Annotated[
        bool,
        typer.Option("--binlog-format", help="Also set binlog_format back to OFF."),
    ] = False,
) -> None:
    """Undo what the run created: the clone, the user, the retention change."""
    from replicator import commands

    done = commands.abort(
        _options(runbook, state, log_format, debug, yes), binlog_format=binlog_format
    )
    for key, value in done.items():
        echo_out(f"{key}: {'yes' if value else 'no'}")


@app.command()
def report(
    runbook: RunbookArgument,
    state: StateOption = None,
    log_format: LogFormatOption = None,
    debug: DebugOption = False,
    as_json: JsonOption = False,
) -> None:
    """The run's timeline in Markdown (or JSON)."""
    from replicator import commands
    from replicator.report import to_markdown

    document = commands.report(_options(runbook, state, log_format, debug))
    echo_out(json.dumps(document, indent=2) if as_json else to_markdown(document))


def main(argv: list[str] | None = None) -> int:
    """Run the command line; return the exit code."""
    try:
        # Without standalone mode click returns an Exit's code instead of exiting.
        returned = app(args=argv, standalone_mode=False)
    except (Exception, KeyboardInterrupt) as error:
        return _exit_code_for(error)
    if isinstance(returned, int) and not isinstance(returned, bool):
        return returned
    return int(ExitCode.OK)


def _exit_code_for(error: Exception | KeyboardInterrupt) -> int:
    """Tell the operator what went wrong; return the exit code for it."""
    handler = next(
        handler for kind, handler in _ERROR_HANDLERS if isinstance(error, kind)
    )
    return handler(error)


def _print_traceback() -> None:
    """Print the current traceback with every known secret masked."""
    from replicator.secrets import MASKER

    echo_err(MASKER.mask(traceback.format_exc()).rstrip())


def _replicator_error(error: ReplicatorError) -> int:
    from replicator.secrets import MASKER

    if _debug["on"]:
        _print_traceback()
    echo_err(MASKER.mask(f"error: {error}"))
    return int(error.exit_code)


def _click_exit(done: Any) -> int:
    return int(done.exit_code)


def _click_abort(_abort: Any) -> int:
    echo_err("interrupted")
    return int(ExitCode.INTERRUPTED)


def _click_error(error: Any) -> int:
    error.show()
    return int(ExitCode.INVALID_INPUT)


def _parser_exceptions() -> tuple[tuple[type[BaseException], ...], ...]:
    """Return (exit, abort, usage error) classes of the command-line parser.

    typer 0.29 carries its own copy of click's parser (``typer._click``);
    earlier versions raise click's own classes. Both are recognised.
    """
    exits: list[type[BaseException]] = [typer.Exit]
    aborts: list[type[BaseException]] = [typer.Abort]
    usage: list[type[BaseException]] = []
    try:
        from typer._click.exceptions import ClickException

        usage.append(ClickException)
    except ImportError:
        pass
    try:
        import click

        exits.append(click.exceptions.Exit)
        aborts.append(click.exceptions.Abort)
        usage.append(click.ClickException)
    except ImportError:
        pass
    return tuple(exits), tuple(aborts), tuple(usage)


_EXITS, _ABORTS, _USAGE = _parser_exceptions()


def _keyboard_interrupt(_interrupt: KeyboardInterrupt) -> int:
    echo_err("interrupted; the journal keeps the state: run the same command to resume")
    return int(ExitCode.INTERRUPTED)


def _unexpected_error(error: Exception) -> int:
    from replicator.secrets import MASKER

    if _debug["on"]:
        _print_traceback()
    echo_err(MASKER.mask(f"error: unexpected {type(error).__name__}: {error}"))
    echo_err(
        "  next: run again with --debug for the traceback; the journal keeps the state"
    )
    return int(ExitCode.FAILED)


# The first entry whose type matches handles the error, so the order matters:
# ``Exception`` comes last and turns anything unforeseen into FAILED.
_ERROR_HANDLERS: tuple[tuple[type[BaseException], Callable[[Any], int]], ...] = (
    (ReplicatorError, _replicator_error),
    *((kind, _click_exit) for kind in _EXITS),
    *((kind, _click_abort) for kind in _ABORTS),
    *((kind, _click_error) for kind in _USAGE),
    (KeyboardInterrupt, _keyboard_interrupt),
    (Exception, _unexpected_error),
)
