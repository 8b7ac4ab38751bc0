"""Replication user statements, which differ between MySQL 8 and MariaDB.

MySQL 8 (Aurora v3) defaults to ``caching_sha2_password``, which needs TLS on
the replication connection; without TLS the user is created with
``mysql_native_password``. MariaDB has no ``IDENTIFIED WITH plugin BY`` form
and uses the native plugin by default. MariaDB prints ``BINLOG MONITOR`` where
MySQL prints ``REPLICATION CLIENT``.
"""

from __future__ import annotations

import re
from typing import Final

REPLICATION_GRANTS: Final = frozenset({"REPLICATION SLAVE", "REPLICATION CLIENT"})
_GRANT_ALIASES: Final = {"BINLOG MONITOR": "REPLICATION CLIENT"}
_GRANT_LINE: Final = re.compile(r"^GRANT (?P<privileges>.+?) ON (?P<scope>\S+) TO ")


def is_mariadb(version: str) -> bool:
    """Tell whether ``SELECT VERSION()`` came from MariaDB."""
    return "mariadb" in version.lower()


def identified_clause(version: str, *, tls: bool) -> str:
    """Return the IDENTIFIED clause (with one %s for the password) for this server."""
    if is_mariadb(version) or version.startswith("5.7") or tls:
        return "IDENTIFIED BY %s"
    return "IDENTIFIED WITH mysql_native_password BY %s"


def granted_privileges(grant_lines: list[str]) -> dict[str, frozenset[str]]:
    """Return privileges by scope from ``SHOW GRANTS`` lines, aliases normalised."""
    scopes: dict[str, set[str]] = {}
    for line in grant_lines:
        match = _GRANT_LINE.match(line)
        if not match:
            continue
        names = {p.strip().upper() for p in match["privileges"].split(",")}
        names = {_GRANT_ALIASES.get(name, name) for name in names} - {"USAGE"}
        scopes.setdefault(match["scope"].replace("`", ""), set()).update(names)
    return {scope: frozenset(names) for scope, names in scopes.items() if names}
