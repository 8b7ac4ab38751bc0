#!/usr/bin/env bash
# The test command: lint, format check, strict types, then every test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check replicator tests bench
.venv/bin/ruff format --check replicator tests bench
.venv/bin/mypy --strict replicator
.venv/bin/pytest -q "$@"
