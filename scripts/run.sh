#!/usr/bin/env bash
# Set up the venv, then launch the demo (extra arguments go to app.py: --bundle, --host, --port).
set -euo pipefail
source "$(dirname "$0")/setup.sh"  # also cd's to the repository root
PYTHONPATH=. exec .venv/bin/python app.py "$@"
