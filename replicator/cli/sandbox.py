"""``replicator sandbox up/down/status``: the local Aurora sandbox."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Annotated

import typer

from replicator.cli.render import echo_out

app = typer.Typer(
    help="Run the local Aurora sandbox: moto's RDS API and MariaDB servers.",
    no_args_is_help=True,
)

DirOption = Annotated[
    Path, typer.Option("--dir", help="Sandbox directory.", show_default=True)
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON.")]
DEFAULT_DIR = Path(".replicator/sandbox")


@app.command()
def up(
    directory: DirOption = DEFAULT_DIR,
    engine_version: Annotated[
        str,
        typer.Option(
            "--engine-version",
            help="Source engine version; 5.7.mysql_aurora.2.* makes a v2 sandbox.",
        ),
    ] = "8.0.mysql_aurora.3.05.2",
    as_json: JsonOption = False,
) -> None:
    """Start the sandbox in the background and print its variables."""
    from replicator.sandbox import manage

    sandbox = manage.up(directory, engine_version)
    if as_json:
        echo_out(json.dumps(sandbox.describe(), indent=2))
        return
    for name, value in sandbox.environment().items():
        echo_out(f"export {name}={shlex.quote(value)}")


@app.command()
def down(directory: DirOption = DEFAULT_DIR) -> None:
    """Stop every process the sandbox started and remove its data."""
    from replicator.sandbox import manage

    stopped = manage.down(directory)
    typer.echo(f"sandbox stopped ({len(stopped)} processes)", err=True)


@app.command()
def status(directory: DirOption = DEFAULT_DIR, as_json: JsonOption = False) -> None:
    """Show the sandbox's control plane and servers; exit 1 unless all run."""
    from replicator.sandbox import manage

    healthy, document = manage.status(directory)
    if as_json:
        echo_out(json.dumps(document, indent=2))
    else:
        echo_out(f"control plane: {document['control_plane'] or 'not running'}")
        for server in document["servers"]:
            echo_out(
                f"{server['cluster']:<24} {server['instance'] or '-':<24} "
                f"{server['host']}:{server['port']}  pid {server['pid']}"
            )
    if not healthy:
        raise typer.Exit(1)
