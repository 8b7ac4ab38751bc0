"""Output helpers: results to stdout, messages to stderr."""

from __future__ import annotations

import typer


def echo_out(text: str) -> None:
    """Print a result line to stdout."""
    typer.echo(text)


def echo_err(text: str) -> None:
    """Print a message line to stderr."""
    typer.echo(text, err=True)
