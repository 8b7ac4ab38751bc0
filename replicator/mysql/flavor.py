"""Differences between Aurora MySQL generations, kept in one table.

Aurora MySQL v2 is built on MySQL 5.7, v3 on MySQL 8.0. The ``mysql.rds_*``
procedure names, the replica status statement and the parameter group family
differ between them; everything else in the product asks this module.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import Final

from replicator.errors import StepFailedError

AURORA_MARKER: Final = "mysql_aurora"
SUPPORTED_VERSIONS: Final = (
    "Aurora MySQL v2 (5.7.mysql_aurora.2.x.y) and v3 (8.0.mysql_aurora.3.x.y)"
)


class Generation(StrEnum):
    """An Aurora MySQL engine generation."""

    V2 = "v2"
    V3 = "v3"


# (MySQL major, MySQL minor) -> (generation, Aurora major version).
_BASES: Final = MappingProxyType(
    {
        (5, 7): (Generation.V2, 2),
        (8, 0): (Generation.V3, 3),
    }
)
_AURORA_PARTS: Final = 6  # "8.0.mysql_aurora.3.05.2"
_PLAIN_PARTS: Final = 3  # "5.7.12"


@dataclass(frozen=True)
class Procedures:
    """Fully qualified names of the ``mysql.rds_*`` procedures of one generation."""

    set_external_source: str
    set_external_source_auto_position: str
    start_replication: str
    start_replication_until: str
    stop_replication: str
    reset_external_source: str
    skip_repl_error: str
    next_source_log: str
    set_configuration: str
    show_configuration: str
    kill: str
    kill_query: str


PROCEDURES: Final = MappingProxyType(
    {
        Generation.V2: Procedures(
            set_external_source="mysql.rds_set_external_master",
            set_external_source_auto_position=(
                "mysql.rds_set_external_master_with_auto_position"
            ),
            start_replication="mysql.rds_start_replication",
            # Aurora MySQL 3.04 and later; older versions answer 1305 and verify
            # falls back to waiting for the clone (see replicator.verify).
            start_replication_until="mysql.rds_start_replication_until",
            stop_replication="mysql.rds_stop_replication",
            reset_external_source="mysql.rds_reset_external_master",
            skip_repl_error="mysql.rds_skip_repl_error",
            next_source_log="mysql.rds_next_master_log",
            set_configuration="mysql.rds_set_configuration",
            show_configuration="mysql.rds_show_configuration",
            kill="mysql.rds_kill",
            kill_query="mysql.rds_kill_query",
        ),
        Generation.V3: Procedures(
            set_external_source="mysql.rds_set_external_source",
            set_external_source_auto_position=(
                "mysql.rds_set_external_source_with_auto_position"
            ),
            start_replication="mysql.rds_start_replication",
            # Aurora MySQL 3.04 and later; older versions answer 1305 and verify
            # falls back to waiting for the clone (see replicator.verify).
            start_replication_until="mysql.rds_start_replication_until",
            stop_replication="mysql.rds_stop_replication",
            reset_external_source="mysql.rds_reset_external_source",
            skip_repl_error="mysql.rds_skip_repl_error",
            next_source_log="mysql.rds_next_source_log",
            set_configuration="mysql.rds_set_configuration",
            show_configuration="mysql.rds_show_configuration",
            kill="mysql.rds_kill",
            kill_query="mysql.rds_kill_query",
        ),
    }
)

# v3 (MySQL 8.0.23+) knows SHOW REPLICA STATUS with the new column names and
# still accepts the deprecated SHOW SLAVE STATUS; v2 knows only the latter.
REPLICA_STATUS_STATEMENTS: Final = MappingProxyType(
    {
        Generation.V2: ("SHOW SLAVE STATUS",),
        Generation.V3: ("SHOW REPLICA STATUS", "SHOW SLAVE STATUS"),
    }
)

_FAMILIES: Final = MappingProxyType(
    {
        Generation.V2: "aurora-mysql5.7",
        Generation.V3: "aurora-mysql8.0",
    }
)


def parse_engine_version(version: str) -> tuple[int, int, int, int, int]:
    """Return a sortable key (major, minor, Aurora major, Aurora minor, patch).

    The old "5.7.12" form has no Aurora part and sorts before every
    "5.7.mysql_aurora.2.x.y" version. Raises StepFailedError for anything else.
    """
    parts = version.strip().split(".")
    if len(parts) == _AURORA_PARTS and parts[2] == AURORA_MARKER:
        numbers = _numbers(version, parts[:2] + parts[3:])
        key = (numbers[0], numbers[1], numbers[2], numbers[3], numbers[4])
    elif len(parts) == _PLAIN_PARTS:
        numbers = _numbers(version, parts)
        key = (numbers[0], numbers[1], 0, 0, numbers[2])
    else:
        raise _unsupported(version)

    base = _BASES.get(key[:2])
    if base is None or key[2] not in (0, base[1]):
        raise _unsupported(version)
    return key


def generation_of(engine_version: str) -> Generation:
    """Return the generation of an engine version string as RDS reports it."""
    key = parse_engine_version(engine_version)
    return _BASES[key[:2]][0]


def family_of(generation: Generation) -> str:
    """Return the parameter group family of a generation."""
    return _FAMILIES[generation]


def _numbers(version: str, parts: list[str]) -> list[int]:
    """Convert version components to integers, or fail naming the version."""
    if not all(part.isascii() and part.isdigit() for part in parts):
        raise _unsupported(version)
    return [int(part) for part in parts]


def _unsupported(version: str) -> StepFailedError:
    """Build the error for an engine version this tool cannot handle."""
    return StepFailedError(
        f"engine version {version!r} is not supported: "
        f"replicator works with {SUPPORTED_VERSIONS}",
        hint="check the cluster's EngineVersion; upgrade Aurora MySQL v1 "
        "(5.6) clusters to v2 or v3 first",
    )
