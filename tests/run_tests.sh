#!/usr/bin/env bash
# Sets up the environment (tools/setup_env.sh) and runs the whole test suite from the repository root.
set -euo pipefail
cd "$(dirname "$0")/.."
source tools/setup_env.sh
# The browser test (tests/test_app.py) drives Debian's Chromium: installed here when we are root with apt-get (CI: a
# fresh Debian). Where it cannot be, that test skips; a failed install never stops the suite.
if [ ! -x /usr/bin/chromium ] && [ "$(id -u)" = 0 ] && command -v apt-get > /dev/null; then
    echo "[setup] installing chromium (apt-get; log in /tmp/chromium-install.log)"
    { timeout 600 apt-get update -qq && DEBIAN_FRONTEND=noninteractive timeout 900 apt-get install -y -qq \
        --no-install-recommends chromium; } \
        > /tmp/chromium-install.log 2>&1 || echo "[setup] chromium install failed: the browser test will skip"
fi
python -m pytest -q "$@"
