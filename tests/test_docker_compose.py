"""``docker-compose.yml`` runs the sandbox in a container on the host's network."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers import REPO

# Compose substitutes ${NAME} and $NAME itself; the shell must receive "$$".
_COMPOSE_VARIABLE = re.compile(r"(?<!\$)\$(?!\$)")


@pytest.fixture(scope="module")
def service() -> dict[str, Any]:
    document = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    services = document["services"]
    assert list(services) == ["sandbox"]
    found: dict[str, Any] = services["sandbox"]
    return found


def script(service: dict[str, Any]) -> str:
    command = service["command"]
    assert command[:2] == ["bash", "-c"]
    text: str = command[2]
    return text


def test_uses_host_networking(service: dict[str, Any]) -> None:
    """The container shares the host's network: ports are chosen at run time."""
    assert service["network_mode"] == "host"
    assert "ports" not in service


def test_mounts_the_repository_as_the_working_directory(
    service: dict[str, Any],
) -> None:
    """The repository is mounted and is the working directory of the command."""
    mounts = [volume.split(":") for volume in service["volumes"]]

    assert [".", service["working_dir"]] in mounts
    assert Path(service["working_dir"]).is_absolute()


def test_command_installs_and_runs_the_sandbox(service: dict[str, Any]) -> None:
    """The command installs MariaDB and the project, starts the sandbox, stays up.

    It stops the sandbox on the container's stop signal, and passes no
    unescaped ``$`` for compose to substitute.
    """
    lines = [line.strip() for line in script(service).splitlines()]

    assert service["image"] == "python:3.11-slim-bookworm"
    assert any("apt-get install" in line and "mariadb-server" in line for line in lines)
    assert any(line.startswith("pip install") and "[sandbox]" in line for line in lines)
    assert any(line.startswith("replicator sandbox up") for line in lines)
    assert any("replicator sandbox down" in line and "trap" in line for line in lines)
    assert any("tail -F .replicator/sandbox/supervisor.log" in line for line in lines)
    assert _COMPOSE_VARIABLE.search(script(service)) is None
    assert service["healthcheck"]["test"] == ["CMD", "replicator", "sandbox", "status"]


def test_command_is_valid_shell(service: dict[str, Any]) -> None:
    """The command parses as a bash script once compose has unescaped ``$$``."""
    checked = subprocess.run(
        ["bash", "-n", "-c", script(service).replace("$$", "$")],
        capture_output=True,
        text=True,
        check=False,
    )

    assert checked.returncode == 0, checked.stderr
