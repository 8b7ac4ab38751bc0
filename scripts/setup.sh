#!/usr/bin/env bash
# Install what replicator and its sandbox need on Debian/Ubuntu, idempotently:
# Debian's mariadb-server and python3-venv when missing (as root; otherwise
# print the exact command), then the project into .venv (never the system
# Python).
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
if ! command -v mariadbd >/dev/null 2>&1 && [ ! -x /usr/sbin/mariadbd ]; then
  need_apt+=(mariadb-server)
fi
if ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
  need_apt+=(python3-venv)
fi
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "missing: ${need_apt[*]}. Run as root first:" >&2
    echo "  apt-get update && apt-get install -y ${need_apt[*]}" >&2
    exit 1
  fi
  echo "installing ${need_apt[*]} from Debian's packages" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need_apt[@]}" >/dev/null
  # The packaged service is not used: the sandbox starts its own servers.
  if command -v service >/dev/null 2>&1; then service mariadb stop >/dev/null 2>&1 || true; fi
fi

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e ".[dev]"
