#!/usr/bin/env bash
# Shared set-up for scripts/test.sh and scripts/run.sh, on a bare Debian machine with Python 3.11:
# a .venv with the pinned requirements ($REQUIREMENTS, default requirements.txt: the
# runtime ones). Sourced, not run.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  if ! "$PYTHON" -c 'import ensurepip, venv' 2>/dev/null; then  # Debian splits venv out
    apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y python3-venv
  fi
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -r "${REQUIREMENTS:-requirements.txt}"
export GRADIO_ANALYTICS_ENABLED=False
