"""Structured logging: events with context, secrets masked, to stderr.

Console rendering on a terminal, JSON lines otherwise (``--log-format``).
Every event passes through the secret masker last, so a password that reaches
an event by any path leaves as ``***``.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any, Literal

import structlog

from replicator.secrets import MASKER

LogFormat = Literal["console", "json"]


def _mask_event(
    _logger: Any, _name: str, event: MutableMapping[str, Any]
) -> Mapping[str, Any]:
    return {key: _mask_value(value) for key, value in event.items()}


def _mask_value(value: Any) -> Any:
    if isinstance(value, str):
        return MASKER.mask(value)
    if isinstance(value, list | tuple):
        return [_mask_value(item) for item in value]
    if isinstance(value, dict):
        return {key: _mask_value(item) for key, item in value.items()}
    return value


def configure(log_format: LogFormat | None = None, *, debug: bool = False) -> None:
    """Set up structlog for the command line."""
    chosen = log_format or ("console" if sys.stderr.isatty() else "json")
    renderer: Any = (
        structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
        if chosen == "console"
        else structlog.processors.JSONRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            _mask_event,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.DEBUG if debug else logging.INFO
        ),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )


def get_logger(**context: Any) -> Any:
    """Return a logger with ``context`` bound to every event."""
    return structlog.get_logger("replicator").bind(**context)
