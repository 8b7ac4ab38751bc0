#!/usr/bin/env bash
# The main job on the local sandbox: install what is missing, start the
# sandbox, run runbooks/sandbox.yaml to a caught-up clone, show its status.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
eval "$(.venv/bin/replicator sandbox up)"
.venv/bin/replicator run runbooks/sandbox.yaml --yes
.venv/bin/replicator status runbooks/sandbox.yaml
echo "the sandbox keeps running; stop it with: .venv/bin/replicator sandbox down" >&2
