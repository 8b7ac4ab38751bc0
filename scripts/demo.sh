#!/usr/bin/env bash
# The main job on the local sandbox: install what is missing, start the
# sandbox, run runbooks/sandbox.yaml to a caught-up clone, show its status.
# Idempotent: run it again and it resumes or says there is nothing to do.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
eval "$(.venv/bin/replicator sandbox up)"
# run ends by printing the run's status (steps, live replica, skips).
.venv/bin/replicator run runbooks/sandbox.yaml --yes
echo "the sandbox keeps running; stop it with: .venv/bin/replicator sandbox down" >&2
