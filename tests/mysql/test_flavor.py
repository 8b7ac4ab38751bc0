"""Tests for replicator.mysql.flavor: the table of generation differences."""

from __future__ import annotations

from dataclasses import fields

import pytest

from replicator.errors import StepFailedError
from replicator.mysql.flavor import (
    PROCEDURES,
    REPLICA_STATUS_STATEMENTS,
    Generation,
    family_of,
    generation_of,
    parse_engine_version,
)


@pytest.mark.parametrize(
    ("version", "generation"),
    [
        ("5.7.mysql_aurora.2.11.2", Generation.V2),
        ("5.7.mysql_aurora.2.07.10", Generation.V2),
        ("5.7.12", Generation.V2),
        ("8.0.mysql_aurora.3.05.2", Generation.V3),
        ("8.0.mysql_aurora.3.04.0", Generation.V3),
        ("8.0.32", Generation.V3),
    ],
)
def test_generation_of_reads_engine_versions(
    version: str, generation: Generation
) -> None:
    """Aurora and plain MySQL version strings map to their generation."""
    assert generation_of(version) is generation


@pytest.mark.parametrize(
    "version",
    [
        "5.6.10a",
        "5.6.mysql_aurora.1.22.2",
        "8.0.mysql_aurora.2.11.2",
        "5.7.mysql_aurora.3.05.2",
        "8.4.3",
        "10.11.6",
        "8.0.mysql_aurora.3.x.1",
        "",
    ],
)
def test_generation_of_refuses_other_versions(version: str) -> None:
    """Unsupported versions raise StepFailedError naming the version and the choices."""
    with pytest.raises(StepFailedError) as raised:
        generation_of(version)

    assert raised.value.message == (
        f"engine version {version!r} is not supported: replicator works with "
        "Aurora MySQL v2 (5.7.mysql_aurora.2.x.y) and v3 (8.0.mysql_aurora.3.x.y)"
    )
    assert raised.value.hint is not None


def test_parse_engine_version_gives_the_five_numbers() -> None:
    """The key is (major, minor, Aurora major, Aurora minor, patch)."""
    assert parse_engine_version("8.0.mysql_aurora.3.05.2") == (8, 0, 3, 5, 2)
    assert parse_engine_version("5.7.12") == (5, 7, 0, 0, 12)


def test_parse_engine_version_sorts_versions() -> None:
    """Keys order Aurora releases numerically, and every 5.7 before 8.0."""
    versions = [
        "8.0.mysql_aurora.3.05.2",
        "8.0.mysql_aurora.3.10.0",
        "5.7.mysql_aurora.2.11.2",
        "8.0.mysql_aurora.3.04.0",
        "5.7.12",
    ]

    assert sorted(versions, key=parse_engine_version) == [
        "5.7.12",
        "5.7.mysql_aurora.2.11.2",
        "8.0.mysql_aurora.3.04.0",
        "8.0.mysql_aurora.3.05.2",
        "8.0.mysql_aurora.3.10.0",
    ]


@pytest.mark.parametrize(
    ("generation", "field", "procedure"),
    [
        (Generation.V2, "set_external_source", "mysql.rds_set_external_master"),
        (
            Generation.V2,
            "set_external_source_auto_position",
            "mysql.rds_set_external_master_with_auto_position",
        ),
        (Generation.V2, "reset_external_source", "mysql.rds_reset_external_master"),
        (Generation.V2, "next_source_log", "mysql.rds_next_master_log"),
        (Generation.V3, "set_external_source", "mysql.rds_set_external_source"),
        (
            Generation.V3,
            "set_external_source_auto_position",
            "mysql.rds_set_external_source_with_auto_position",
        ),
        (Generation.V3, "reset_external_source", "mysql.rds_reset_external_source"),
        (Generation.V3, "next_source_log", "mysql.rds_next_source_log"),
    ],
)
def test_procedures_differ_by_generation(
    generation: Generation, field: str, procedure: str
) -> None:
    """The renamed procedures carry MASTER on v2 and SOURCE on v3."""
    assert getattr(PROCEDURES[generation], field) == procedure


@pytest.mark.parametrize(
    ("field", "procedure"),
    [
        ("start_replication", "mysql.rds_start_replication"),
        ("stop_replication", "mysql.rds_stop_replication"),
        ("skip_repl_error", "mysql.rds_skip_repl_error"),
        ("set_configuration", "mysql.rds_set_configuration"),
        ("show_configuration", "mysql.rds_show_configuration"),
        ("kill", "mysql.rds_kill"),
        ("kill_query", "mysql.rds_kill_query"),
    ],
)
@pytest.mark.parametrize("generation", list(Generation))
def test_shared_procedures_are_the_same_on_both(
    generation: Generation, field: str, procedure: str
) -> None:
    """Procedures that kept their names are identical in both generations."""
    assert getattr(PROCEDURES[generation], field) == procedure


@pytest.mark.parametrize("generation", list(Generation))
def test_every_procedure_is_fully_qualified(generation: Generation) -> None:
    """Every procedure lives in the mysql schema and is an rds_ procedure."""
    names = [
        getattr(PROCEDURES[generation], f.name) for f in fields(PROCEDURES[generation])
    ]

    assert all(name.startswith("mysql.rds_") for name in names)


def test_replica_status_statements_in_order() -> None:
    """v3 tries SHOW REPLICA STATUS first; v2 knows only SHOW SLAVE STATUS."""
    assert REPLICA_STATUS_STATEMENTS[Generation.V3] == (
        "SHOW REPLICA STATUS",
        "SHOW SLAVE STATUS",
    )
    assert REPLICA_STATUS_STATEMENTS[Generation.V2] == ("SHOW SLAVE STATUS",)


@pytest.mark.parametrize(
    ("generation", "family"),
    [(Generation.V2, "aurora-mysql5.7"), (Generation.V3, "aurora-mysql8.0")],
)
def test_family_of(generation: Generation, family: str) -> None:
    """Each generation has its parameter group family."""
    assert family_of(generation) == family
