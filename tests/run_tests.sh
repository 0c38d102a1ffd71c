#!/usr/bin/env bash
# Sets up the environment (tools/setup_env.sh) and runs the whole test suite from the repository root.
set -euo pipefail
cd "$(dirname "$0")/.."
source tools/setup_env.sh
python -m pytest -q "$@"
