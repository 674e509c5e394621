#!/usr/bin/env bash
# Set up everything (venv, pinned packages, Debian chromium for the browser test), run all tests.
set -euo pipefail
REQUIREMENTS=requirements-test.txt  # the runtime pins and the test tools
source "$(dirname "$0")/setup.sh"  # also cd's to the repository root
if [ ! -x /usr/bin/chromium ]; then
  apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium
fi
PYTHONPATH=. .venv/bin/python -m pytest -q --durations=15 tests "$@"
